/* libgpuml/core/align.h - the one rounding of workspace pieces: every
 * piece of a workspace carved from one allocation starts on 256 bytes
 * (cudaMalloc's alignment, enough for any vector load and for the i64 / f64
 * arrays that follow f32 ones). Used by core and by the kernels' workspace
 * carving alike (tools/check_kernels_once.py rejects hand-written copies in
 * the launchers). */
#ifndef GPUML_CORE_ALIGN_H
#define GPUML_CORE_ALIGN_H

#include <stddef.h>

#define GPUML_ALIGN 256

static inline size_t gpuml_align_up(size_t bytes)
{
    return (bytes + GPUML_ALIGN - 1) / GPUML_ALIGN * GPUML_ALIGN;
}

#endif
