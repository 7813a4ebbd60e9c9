/* gpuml/export.h - symbol visibility. Only functions marked GPUML_API are
 * exported from libgpuml; everything else is hidden. */
#ifndef GPUML_EXPORT_H
#define GPUML_EXPORT_H

#if defined(_WIN32)
#  if defined(GPUML_BUILDING)
#    define GPUML_API __declspec(dllexport)
#  else
#    define GPUML_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define GPUML_API __attribute__((visibility("default")))
#else
#  define GPUML_API
#endif

#endif
