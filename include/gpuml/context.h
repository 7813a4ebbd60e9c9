/*
 * gpuml/context.h - the execution context.
 *
 * A context binds one device (the CPU, or one CUDA device) with one stream,
 * the math-library handles, a caching allocator, a counter-based random
 * generator and the executor that runs its CPU loops. All gpuml state lives
 * in contexts; the library has no mutable globals.
 *
 *     gpuml_ctx_config cfg;
 *     gpuml_ctx_config_init_defaults(&cfg);      // CPU, gpuml's pool on every CPU
 *     cfg.device.type = GPUML_DEVICE_CUDA;        // ask for GPU 0
 *     gpuml_ctx *ctx = NULL;
 *     if (gpuml_ctx_create(&cfg, &ctx) == GPUML_ERR_NO_DEVICE) {
 *         cfg.device.type = GPUML_DEVICE_CPU;     // no GPU here: fall back
 *         gpuml_ctx_create(&cfg, &ctx);
 *     }
 *     ...
 *     gpuml_ctx_destroy(ctx);
 *
 * Threading: a context is used by one thread at a time (different contexts
 * may be used concurrently). Tensors created from a context must be
 * destroyed before or after the context, from any thread: the allocator they
 * came from lives until its last tensor is gone.
 *
 * Threads (CPU contexts). The context's loops run on cfg.executor when it
 * is set: the host's thread pool (gpuml/executor.h; in CMSSW the TBB
 * adapter of examples/cmssw/gpuml_tbb_executor.h), and gpuml starts no
 * compute thread. Otherwise the context makes its own executor:
 *   num_threads == 1: the calling thread only (serial);
 *   num_threads > 1:  gpuml's pool of that many workers (the caller and
 *                     num_threads - 1 threads that block when idle);
 *   num_threads <= 0: the pool, with gpuml_default_num_threads() workers
 *                     (OMP_NUM_THREADS if set, else the CPUs of the
 *                     process's affinity mask).
 * Why all CPUs by default: a context made without a word is a training or
 * analysis job owning its machine, and there the cores are wanted. A
 * library inside a framework should be given the framework's executor (or
 * num_threads = 1); the inference engine, made for that setting, defaults
 * to single-threaded instances (gpuml/infer.h). The pool never spins for
 * more than microseconds, so an idle or waiting context leaves its cores to
 * others; the OpenMP executor (GPUML_EXECUTOR_OPENMP) is there for hosts
 * that already run OpenMP. Results are bitwise the same on every executor.
 *
 * Streams: device work is enqueued on the context's stream and is
 * asynchronous unless a function's comment says it synchronises. On the CPU
 * every call completes before it returns.
 */
#ifndef GPUML_CONTEXT_H
#define GPUML_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "gpuml/executor.h"
#include "gpuml/export.h"
#include "gpuml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gpuml_device_type {
    GPUML_DEVICE_CPU = 0,
    GPUML_DEVICE_CUDA = 1
} gpuml_device_type;

typedef struct gpuml_device {
    gpuml_device_type type;
    int index; /* CUDA device ordinal; 0 for the CPU */
} gpuml_device;

typedef struct gpuml_ctx gpuml_ctx;

typedef struct gpuml_ctx_config {
    gpuml_device device;   /* default: CPU                                   */
    void *stream;          /* caller's cudaStream_t, or NULL: the context
                              creates (and later destroys) its own
                              non-blocking stream. Ignored on the CPU.       */
    int num_threads;       /* CPU workers when executor is NULL (see Threads
                              above); <= 0: gpuml_default_num_threads()      */
    const gpuml_executor *executor; /* the host's executor for CPU loops, or
                              NULL: a built-in per num_threads. Borrowed: it
                              must outlive the context.                      */
    uint64_t seed;         /* random generator seed; default 0               */
    gpuml_log_fn log_fn;   /* NULL: stderr                                   */
    void *log_user;
    gpuml_log_level log_level; /* default GPUML_LOG_WARN                     */
    int require_checksum;  /* model files and checkpoints read through this
                              context (gpuml_model_load, _load_weights,
                              gpuml_checkpoint_load) must carry gpuml's
                              whole-file checksum: 1 refuses one without
                              (FORMAT); 0 (default) reads it unverified with
                              a WARN log. A checksum that does not match is
                              FORMAT either way.                            */
    size_t mem_cap_bytes;  /* cap on the context's device memory (host memory
                              of a CPU context), cached blocks included; 0
                              (default): none. See "memory caps" below.     */
} gpuml_ctx_config;

/* Fill cfg with the defaults above. Always call it before setting fields. */
GPUML_API void gpuml_ctx_config_init_defaults(gpuml_ctx_config *cfg);

/* Create a context. *out receives the new context (NULL on failure).
 * Errors: GPUML_ERR_NO_DEVICE when a CUDA device is asked for and none is
 * usable (no driver, no GPU, index out of range, or a build without CUDA);
 * GPUML_ERR_INVALID_ARGUMENT; GPUML_ERR_CUDA / _CUBLAS on handle creation.
 * The calling thread's current CUDA device is left as it was. */
GPUML_API gpuml_status gpuml_ctx_create(const gpuml_ctx_config *cfg, gpuml_ctx **out);

/* Wait for the context's stream, then release its handles and its own
 * stream. Cached device memory is freed once no tensor uses it. NULL: no-op. */
GPUML_API void gpuml_ctx_destroy(gpuml_ctx *ctx);

/* Block until all work enqueued on the context's stream is done, and report
 * any asynchronous error (kernel fault, invalid row_splits seen on the
 * device). No-op on the CPU. */
GPUML_API gpuml_status gpuml_ctx_synchronize(gpuml_ctx *ctx);

GPUML_API gpuml_device gpuml_ctx_device(const gpuml_ctx *ctx);
GPUML_API void *gpuml_ctx_stream(const gpuml_ctx *ctx); /* cudaStream_t; NULL on CPU */
/* The executor's worker count (1 for serial). */
GPUML_API int gpuml_ctx_num_threads(const gpuml_ctx *ctx);
/* Replace the context's own executor by a built-in one of num_threads
 * workers (serial for 1, else the pool). Not while another thread uses the
 * context. Errors: INVALID_ARGUMENT (not in [1, 4096]); STATE when the
 * context runs on a host's executor (cfg.executor: the host decides). */
GPUML_API gpuml_status gpuml_ctx_set_num_threads(gpuml_ctx *ctx, int num_threads);
/* The executor running the context's CPU loops (never NULL for a live
 * context): the host's, or the context's own built-in. */
GPUML_API const gpuml_executor *gpuml_ctx_executor(const gpuml_ctx *ctx);

/* Message of the last error raised through this context ("" if none). */
GPUML_API const char *gpuml_ctx_last_error(const gpuml_ctx *ctx);

/* Emit a message through the context's log callback (used by gpuml's own
 * layers; available to callers who want one sink). */
GPUML_API void gpuml_ctx_log(const gpuml_ctx *ctx, gpuml_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Number of usable CUDA devices: 0 when there is no driver or no GPU, or
 * when gpuml was built without CUDA. Never fails. */
GPUML_API int gpuml_cuda_device_count(void);

/* 1 when this build of gpuml contains the named feature ("cuda", "cudnn",
 * "nccl", "mpi", "openmp", "blas"), else 0. */
GPUML_API int gpuml_has_feature(const char *name);

/* ---- random numbers ---------------------------------------------------
 * Counter-based (Philox-4x32-10): element i of a draw depends only on
 * (seed, counter, i), so CPU and CUDA give the same numbers and the result
 * does not depend on thread counts. Every draw advances the counter. */
GPUML_API void gpuml_ctx_set_seed(gpuml_ctx *ctx, uint64_t seed); /* also resets counter */
GPUML_API void gpuml_ctx_get_rng_state(const gpuml_ctx *ctx, uint64_t *seed, uint64_t *counter);
GPUML_API void gpuml_ctx_set_rng_state(gpuml_ctx *ctx, uint64_t seed, uint64_t counter);

/* ---- memory -----------------------------------------------------------
 * Device memory comes from a caching allocator owned by the context: freed
 * blocks are kept in size buckets for reuse on the same stream. */
typedef struct gpuml_alloc_stats {
    size_t bytes_in_use;    /* handed out and not yet returned              */
    size_t bytes_peak;      /* max of bytes_in_use since creation / reset   */
    size_t bytes_cached;    /* held in free lists, not in use               */
    size_t bytes_reserved;  /* obtained from the system (in use + cached)   */
    uint64_t num_allocs;    /* allocation requests served                   */
    uint64_t num_cache_hits;/* ... of which from the cache                  */
    uint64_t num_system_allocs; /* malloc / cudaMalloc calls                */
    size_t bytes_cap;       /* the cap on bytes_reserved; 0: none            */
} gpuml_alloc_stats;

/* Statistics of the context's device allocator (pinned != 0: of its pinned
 * host staging allocator). */
GPUML_API void gpuml_ctx_alloc_stats(const gpuml_ctx *ctx, int pinned, gpuml_alloc_stats *out);
GPUML_API void gpuml_ctx_reset_peak(gpuml_ctx *ctx);

/* Return all cached (unused) blocks to the system. */
GPUML_API void gpuml_ctx_release_cached(gpuml_ctx *ctx);

/* ---- memory caps --------------------------------------------------------
 * For a GPU shared with other jobs (time-sliced, or a MIG slice of a few
 * GiB): a cap on the bytes the context's allocator holds from the system,
 * in use AND cached, so that gpuml stays inside its share. An allocation
 * whose new block would pass the cap first gives the cache back (cudaFree
 * of every cached block, after the device is idle), retries, and only then
 * fails with GPUML_ERR_OUT_OF_MEMORY, whose message names the cap, the
 * request and the bytes in use and cached. A real out-of-memory
 * (cudaMalloc failing) is handled the same way: cache released, retried,
 * then OUT_OF_MEMORY. The failing call changes nothing: no partial
 * allocation is kept and its outputs are untouched; tensors already
 * allocated stay valid, and the context stays usable (a smaller request
 * may succeed).
 * What counts: tensors, op workspaces and arenas (a training step's
 * activations) of the context - everything gpuml allocates on its device
 * through the context. Not counted: the pinned host staging memory, the
 * CUDA context itself, cuBLAS/cuDNN workspaces and handles, NCCL buffers,
 * and tensors wrapping caller memory. Leave the CUDA runtime's own share
 * (hundreds of MiB) outside the cap. On a CPU context the same cap bounds
 * its host memory for tensors (the code is the same). */

/* Set the cap (0: none) on a live context: from now on. Releases the cache
 * when it holds more than the new cap. Not while another thread uses the
 * context. Errors: INVALID_ARGUMENT (ctx NULL); STATE when more than
 * `bytes` is in use now (the cap is then unchanged). */
GPUML_API gpuml_status gpuml_ctx_set_mem_cap(gpuml_ctx *ctx, size_t bytes);
/* The context's cap (0: none, or ctx NULL). Bytes in use and cached:
 * gpuml_ctx_alloc_stats (its bytes_cap is this value too). */
GPUML_API size_t gpuml_ctx_mem_cap(const gpuml_ctx *ctx);

/* Pinned (page-locked) host memory for staging: cudaHostAlloc on a CUDA
 * context, ordinary aligned memory on the CPU. Cached like device memory.
 * Free with gpuml_pinned_free on the same context. */
GPUML_API gpuml_status gpuml_pinned_alloc(gpuml_ctx *ctx, size_t nbytes, void **out);
GPUML_API void gpuml_pinned_free(gpuml_ctx *ctx, void *ptr);

/* ---- per-step arena ---------------------------------------------------
 * A bump allocator over device memory from the context's allocator, for
 * short-lived tensors (a training step's intermediates). Reset is O(1) and
 * keeps the memory, so a steady-state loop allocates nothing. Tensors made
 * in an arena (gpuml_tensor_create_in_arena) are invalid after the reset;
 * gpuml_tensor_destroy on them is a no-op. Not thread-safe. */
typedef struct gpuml_arena gpuml_arena;
GPUML_API gpuml_status gpuml_arena_create(gpuml_ctx *ctx, size_t initial_bytes, gpuml_arena **out);
GPUML_API void gpuml_arena_destroy(gpuml_arena *arena);
GPUML_API void gpuml_arena_reset(gpuml_arena *arena);
GPUML_API size_t gpuml_arena_used(const gpuml_arena *arena);     /* bytes since reset */
GPUML_API size_t gpuml_arena_capacity(const gpuml_arena *arena); /* bytes held        */

#ifdef __cplusplus
}
#endif
#endif
