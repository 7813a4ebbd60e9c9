/* kernels/cpu/parallel.h - the one loop helper of the CPU drivers.
 *
 * Every CPU driver runs its loops through gpuml_kfor, which hands them to
 * the context's executor (gpuml/executor.h: the host's pool, gpuml's pool,
 * OpenMP or the calling thread). A loop body is a function over a range
 * of iterations plus a struct of the driver's arguments:
 *
 *     typedef struct { const float *x; float *y; } relu_args;
 *     GPUML_KRANGE(relu_range, relu_args)    // (void *, begin, end, worker); a: the args
 *     {
 *         for (int64_t i = begin; i < end; i++)
 *             a->y[i] = a->x[i] > 0 ? a->x[i] : 0;
 *     }
 *     relu_args a = {x, y};
 *     gpuml_kfor(k, n, n, 0, relu_range, &a);
 *
 * How the loop is cut depends only on n, work and grain - never on who
 * runs it or how many workers there are - and iterations must be
 * independent (each writes its own outputs), so results are bitwise the
 * same on every executor and worker count. `worker` (in [0, k->nthreads))
 * indexes per-worker scratch, which must only hold temporaries.
 */
#ifndef GPUML_KERNELS_CPU_PARALLEL_H
#define GPUML_KERNELS_CPU_PARALLEL_H

#include "../common.h"
#include "gpuml/executor.h"

/* Run fn over [0, n). work: the loop's total cost in element operations;
 * at most GPUML_PAR_GRAIN (k->par_work when set) runs on the calling thread
 * (forking costs more). grain: iterations per piece, or 0 for pieces of
 * about GPUML_PAR_PIECE operations (a quarter of k->par_work). */
void gpuml_kfor(const gpuml_kctx *k, int64_t n, int64_t work, int64_t grain, gpuml_range_fn fn, void *arg);

/* Operations per piece when the driver gives no grain: small enough for a
 * few pieces per worker at the threshold, large enough that claiming a
 * piece (one atomic) is noise. */
#define GPUML_PAR_PIECE (GPUML_PAR_GRAIN / 4)

/* Defines the range function `name` (a gpuml_range_fn) whose body sees its
 * arguments as `const T *a` and its range as [begin, end), worker:
 *     GPUML_KRANGE(relu_range, relu_args) { for (int64_t i = begin; i < end; i++) ... a->x[i] ... } */
#define GPUML_KRANGE(name, T)                                                                       \
    static void name##_body(const T *a, int64_t begin, int64_t end, int worker);                    \
    static void name(void *arg_, int64_t begin_, int64_t end_, int worker_)                         \
    {                                                                                               \
        name##_body((const T *)arg_, begin_, end_, worker_);                                        \
    }                                                                                               \
    static void name##_body(const T *a, int64_t begin, int64_t end, __attribute__((unused)) int worker)

/* Around a call into the OpenMP build of OpenBLAS from a piece: the calling
 * thread's OpenMP thread count set to 1 and restored, so BLAS starts no
 * team of its own on a host's (or gpuml's) worker thread. */
int gpuml_kblas_enter(void);
void gpuml_kblas_leave(int saved);

#endif
