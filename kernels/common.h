/*
 * kernels/common.h - what every kernel body and driver shares.
 *
 * A kernel body (kernels/<op>.h) is the arithmetic for one output element or
 * one row, written once as GPUML_HD functions: __host__ __device__ under
 * nvcc, plain static inline under the C compiler. The CPU driver
 * (kernels/cpu/<op>.c) loops over elements through gpuml_kfor (kernels/
 * cpu/parallel.h, the context's executor) and calls the body;
 * the CUDA launcher (kernels/cuda/<op>.cu) computes its index and calls the
 * same body. Bodies allocate nothing, do no I/O and call no backend.
 *
 * Floating-point contraction is off on both sides (-ffp-contract=off,
 * nvcc --fmad=false); where a fused multiply-add is wanted it is written as
 * fmaf, so both compilers produce the same operation.
 */
#ifndef GPUML_KERNELS_COMMON_H
#define GPUML_KERNELS_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuml/status.h"

#ifdef __CUDACC__
#define GPUML_HD __host__ __device__
#define GPUML_RESTRICT __restrict__
#elif defined(__cplusplus)
/* Host C++: the emulated CUDA build compiles the launchers and the bodies
 * as C++, where restrict is spelled __restrict__. */
#define GPUML_HD
#define GPUML_RESTRICT __restrict__
#else
#define GPUML_HD
#define GPUML_RESTRICT restrict
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Why a kernel failed, beside the status it returns. Kernels format
 * nothing, allocate nothing and call nothing above them: they fill this
 * with static text and values, and the op layer (ops/dispatch.h,
 * gpuml_launch_done) writes the message the caller sees:
 *   "<what> (<v0>[, <v1>]): <detail> (<code>)"
 * with the parts that are set. */
typedef struct gpuml_kfail {
    const char *op;     /* the kernel, as the message names it           */
    const char *what;   /* what was wrong: static text                   */
    const char *detail; /* a backend's own static error text, or NULL    */
    const char *code;   /* the backend's error name (cudaErrorXxx), NULL */
    long long v[2];     /* the values what speaks of, nv of them          */
    int nv;
} gpuml_kfail;

/* What a driver needs from the context, in a form both C and CUDA C++ can
 * read (the context struct itself is C-only). */
struct gpuml_executor;
typedef struct gpuml_kctx {
    const struct gpuml_executor *exec; /* CPU: where loops run (never NULL) */
    int nthreads;    /* CPU: the executor's maximum worker count: per-worker
                        scratch is sized by it                              */
    int64_t par_work;/* CPU: loops of more work than this are split (0: the
                        default GPUML_PAR_GRAIN; tests lower it)            */
    void *stream;    /* CUDA: cudaStream_t                                  */
    int device;      /* CUDA: device ordinal                                */
    int *dev_error;  /* CUDA: word set by kernels on invalid input          */
    void *cublas;    /* CUDA: cublasHandle_t bound to stream                */
    gpuml_kfail *fail;/* where a failing kernel says why (NULL: nowhere)    */
} gpuml_kctx;

#ifdef __cplusplus
}
#endif

/* Returns st after recording why in k->fail (when there is one). what,
 * detail and code must be static strings. */
static inline gpuml_status gpuml_k_fail(const gpuml_kctx *k, gpuml_status st, const char *op, const char *what,
                                        const char *detail, const char *code, int nv, long long v0, long long v1)
{
    if (k && k->fail) {
        k->fail->op = op;
        k->fail->what = what;
        k->fail->detail = detail;
        k->fail->code = code;
        k->fail->v[0] = v0;
        k->fail->v[1] = v1;
        k->fail->nv = nv;
    }
    return st;
}

/* Below this many elements a CPU loop runs on one thread: forking costs more. */
#define GPUML_PAR_GRAIN 32768

/* On a CPU driver's per-row helper: an AVX2 clone picked at load time where
 * the CPU has it, beside the baseline x86-64 one. The same IEEE operations
 * in more lanes (contraction stays off, loops keep their order), so the
 * bits do not change - only the speed. Off under Address- and
 * ThreadSanitizer (ifunc resolvers run before their runtimes are up, and
 * crash the program at load) and off the host compiler. */
#if defined(__x86_64__) && !defined(__CUDACC__) && defined(__has_attribute) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#if __has_attribute(target_clones)
#define GPUML_CPU_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef GPUML_CPU_SIMD_CLONES
#define GPUML_CPU_SIMD_CLONES
#endif

/* Device error codes written to gpuml_kctx.dev_error. */
#define GPUML_DEVERR_ROW_SPLITS 1

/* Largest index handled as 32-bit inside device loops is not assumed:
 * element counts are int64 everywhere. */

GPUML_HD static inline int64_t gpuml_k_min64(int64_t a, int64_t b) { return a < b ? a : b; }
GPUML_HD static inline int64_t gpuml_k_max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Row range of event b from row_splits, clamped into [0, n] and made
 * non-decreasing, so that a kernel given bad splits stays in bounds. *bad is
 * set when clamping changed anything. */
GPUML_HD static inline void gpuml_k_segment(const int64_t *GPUML_RESTRICT row_splits, int64_t b, int64_t n,
                                            int64_t *begin, int64_t *end, int *bad)
{
    int64_t s = row_splits[b], e = row_splits[b + 1];
    int64_t cs = gpuml_k_min64(gpuml_k_max64(s, 0), n);
    int64_t ce = gpuml_k_min64(gpuml_k_max64(e, cs), n);
    if (cs != s || ce != e || (b == 0 && s != 0))
        *bad = 1;
    *begin = cs;
    *end = ce;
}

/* Event of row r: the last b in [0, batch) with row_splits[b] <= r (binary
 * search; empty events are skipped over). Used by every ragged op. */
GPUML_HD static inline int64_t gpuml_k_event_of_row(const int64_t *GPUML_RESTRICT row_splits, int64_t batch, int64_t r)
{
    int64_t lo = 0, hi = batch;
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (row_splits[mid] <= r)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

#endif
