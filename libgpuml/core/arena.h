/* Internal arena entry points (the public part is in gpuml/context.h). */
#ifndef GPUML_CORE_ARENA_H
#define GPUML_CORE_ARENA_H

#include "core/internal.h"

gpuml_ctx *gpuml_arena_ctx(const gpuml_arena *a);
/* Device memory (256-byte aligned) valid until the next reset. */
gpuml_status gpuml_arena_alloc(gpuml_arena *a, size_t nbytes, void **out, const char *fn);
/* Host memory for descriptors (16-byte aligned), valid until the next reset. */
gpuml_status gpuml_arena_alloc_meta(gpuml_arena *a, size_t nbytes, void **out, const char *fn);

#endif
