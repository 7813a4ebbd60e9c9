/*
 * gpuml/executor.h - who runs gpuml's CPU loops: the host's thread pool.
 *
 * Every CPU kernel is a loop over independent pieces (rows, elements, kNN
 * cells, matrix tiles). gpuml hands such a loop to an executor: the host's
 * thread pool (CMSSW: TBB; see examples/cmssw/gpuml_tbb_executor.h), one of
 * gpuml's built-ins, or nobody (the calling thread). gpuml itself then
 * starts no compute threads.
 *
 *     // the host's pool, in C: run fn on pieces of [0, n), in parallel
 *     static void my_for(void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg)
 *     {
 *         my_pool *p = self;
 *         my_pool_run_chunks(p, n, grain, fn, arg);   // calls fn(arg, b, e, worker)
 *     }
 *     static int my_workers(void *self) { return my_pool_size(self); }
 *     gpuml_executor ex = {my_for, my_workers, pool};
 *     gpuml_ctx_config cfg;
 *     gpuml_ctx_config_init_defaults(&cfg);
 *     cfg.executor = &ex;                              // borrowed: outlives the context
 *
 * Results do not depend on the executor: gpuml cuts a loop into pieces by
 * its size alone, every piece is computed the same way wherever it runs,
 * and per-worker scratch only holds temporaries. Serial, OpenMP, gpuml's
 * pool and a host's TBB pool give bitwise the same outputs, for any number
 * of workers (tests/test_ops.c checks every op table with each of them).
 *
 * Matrix products are tiles of single-threaded CBLAS calls, one tile per
 * piece, so BLAS never starts threads of its own under an executor.
 *
 * Waiting: the OpenMP executor inherits libgomp's barriers, which spin
 * (about 0.3 ms per wait unless OMP_WAIT_POLICY=passive, a process-wide
 * setting that belongs to the host). The pool executor's idle workers and
 * waiting caller block on a condition variable after a spin of a few
 * microseconds, so they leave their core to whoever needs it. The pool is
 * what a context uses when nobody says otherwise (see gpuml/context.h).
 */
#ifndef GPUML_EXECUTOR_H
#define GPUML_EXECUTOR_H

#include <stdint.h>

#include "gpuml/export.h"
#include "gpuml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One piece of a loop: iterations [begin, end). worker is in
 * [0, max_workers) and no two pieces of the same parallel_for running at
 * the same time have the same worker: gpuml indexes per-worker scratch
 * with it. */
typedef void (*gpuml_range_fn)(void *arg, int64_t begin, int64_t end, int worker);

/* An executor: two functions and their state. A plain struct the host
 * fills (and owns); gpuml only borrows it.
 *   parallel_for(self, n, grain, fn, arg): call fn on contiguous pieces
 *     that cover [0, n) exactly once, and return when every call has
 *     returned. gpuml passes n >= 2 and 1 <= grain < n: pieces of `grain`
 *     iterations are what it would make itself (a piece is some thousands
 *     of operations); the executor may make pieces of other sizes (TBB's
 *     simple_partitioner makes pieces of at most grain). Any piece may run
 *     on the calling thread. It must not return early, lose a piece or run
 *     one twice; fn does not throw and does not block on other pieces.
 *     parallel_for may be called from several threads at once (different
 *     contexts sharing one executor), and from inside a piece of another
 *     executor's loop.
 *   max_workers(self): the bound on `worker` above (>= 1), constant over
 *     the executor's life: gpuml sizes per-worker scratch by it. */
typedef struct gpuml_executor {
    void (*parallel_for)(void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg);
    int (*max_workers)(void *self);
    void *self;
} gpuml_executor;

/* The calling thread alone (max_workers 1). A constant object: never
 * destroyed, shareable by any number of contexts and threads. */
GPUML_API const gpuml_executor *gpuml_executor_serial(void);

typedef enum gpuml_executor_kind {
    GPUML_EXECUTOR_POOL = 0,   /* gpuml's threads, started on first use; idle ones block */
    GPUML_EXECUTOR_OPENMP = 1, /* an OpenMP team per loop (libgomp's spinning barriers)  */
    GPUML_EXECUTOR_SERIAL = 2, /* the calling thread                                     */
} gpuml_executor_kind;

/* Create a built-in executor of num_threads workers (the calling thread is
 * one of them). num_threads <= 0: gpuml_default_num_threads(). The POOL's
 * num_threads - 1 threads start at the first parallel loop and sleep when
 * there is no work; a pool runs one loop at a time (a second caller, or a
 * loop started from inside a piece, runs on its own thread). *out: free
 * with gpuml_executor_destroy after every context using it is destroyed.
 * Errors: INVALID_ARGUMENT (NULL out, num_threads > 4096), UNSUPPORTED
 * (OPENMP in a build without OpenMP), OUT_OF_MEMORY. */
GPUML_API gpuml_status gpuml_executor_create(gpuml_executor_kind kind, int num_threads, gpuml_executor **out);

/* Stop and join a built-in executor's threads and free it. NULL: no-op.
 * Only for executors from gpuml_executor_create. */
GPUML_API void gpuml_executor_destroy(gpuml_executor *ex);

/* The thread count gpuml uses when nobody gives one: OMP_NUM_THREADS when
 * it is set to a positive number (the convention scripts already follow),
 * else the CPUs this process may run on (sched_getaffinity). */
GPUML_API int gpuml_default_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
