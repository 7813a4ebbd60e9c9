/* libgpuml/core/dynlib.h - optional libraries loaded when first needed.
 *
 * gpuml links only what it needs to load (the C runtime, HDF5, jansson,
 * BLAS, and on a CUDA build cudart and cuBLAS, which every CUDA context
 * uses). Optional GPU libraries - NCCL for the CUDA communicator, cuDNN for
 * the opt-in batch norm - are opened with dlopen when the first object that
 * needs them is created. A process that never makes one never loads them,
 * and a process that already has its own copy (PyTorch ships a newer
 * libnccl.so.2 and libcudnn.so.9) is not handed ours first: `import gpuml`
 * followed by `import torch` works.
 *
 * The library's file name comes from an environment variable when it is set
 * (GPUML_NCCL_LIBRARY, GPUML_CUDNN_LIBRARY: a path or a soname), else from
 * the build (meson variables nccl_soname / cudnn_soname, which the emulated
 * CUDA build points at its shims). Libraries are opened RTLD_LOCAL (their
 * symbols do not leak into the process's namespace) and RTLD_NODELETE (NCCL
 * keeps proxy threads that must never find their code unmapped), so nothing
 * has to be closed and there is no global handle to keep.
 */
#ifndef GPUML_CORE_DYNLIB_H
#define GPUML_CORE_DYNLIB_H

#include <stddef.h>

#include "gpuml/status.h"

/* Open the library (env_var's value, else soname) and resolve the n symbols
 * names[i] into fns[i] (function pointers stored as void *: POSIX dlsym).
 * what names the library in messages ("NCCL"). On failure nothing is
 * written to fns and the status is GPUML_ERR_UNSUPPORTED, with a message
 * naming fn, the file tried, the dlerror text and the variable that
 * overrides the name. */
gpuml_status gpuml_dynlib_load(const char *what, const char *env_var, const char *soname, const char *const *names,
                               void **fns, size_t n, const char *fn);

#endif
