/*
 * libgpuml/core/internal.h - what the library's parts share and callers do
 * not see: the context and tensor structs, error raising, the allocator, and
 * the thin CUDA runtime layer (stubbed when gpuml is built without CUDA).
 */
#ifndef GPUML_CORE_INTERNAL_H
#define GPUML_CORE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuml/gpuml.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors -------------------------------------------------------------
 * gpuml_fail records "fn: message" as the calling thread's last error (and
 * the context's, when given), logs it at DEBUG, and returns status. */
gpuml_status gpuml_fail(const gpuml_ctx *ctx, gpuml_status status, const char *fn, const char *fmt,
                        ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Copy the thread's last error into the context (after a context-less
 * helper such as the allocator failed on the context's behalf). */
void gpuml_ctx_adopt_error(gpuml_ctx *ctx);

#define GPUML_TRY(expr)                         \
    do {                                        \
        gpuml_status gpuml_try_st_ = (expr);    \
        if (gpuml_try_st_ != GPUML_OK)          \
            return gpuml_try_st_;               \
    } while (0)

/* Write "[3, 4]" into buf. */
const char *gpuml_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

/* ---- allocator ----------------------------------------------------------
 * Size-bucketed caching allocator for one memory kind on one device. Blocks
 * are rounded up to a bucket size (512 B granules below 4 KiB, then four
 * buckets per power of two) and kept in per-bucket free lists on release.
 * Thread-safe; reference counted (the context holds one reference, every
 * live block-owning storage another). */
typedef enum gpuml_mem_kind {
    GPUML_MEM_HOST = 0,   /* aligned host memory (CPU context device memory) */
    GPUML_MEM_CUDA = 1,   /* cudaMalloc on a device                         */
    GPUML_MEM_PINNED = 2  /* cudaHostAlloc                                  */
} gpuml_mem_kind;

typedef struct gpuml_allocator gpuml_allocator;

gpuml_status gpuml_allocator_create(gpuml_mem_kind kind, int device, gpuml_allocator **out);
void gpuml_allocator_retain(gpuml_allocator *a);
void gpuml_allocator_release(gpuml_allocator *a); /* drops a reference */
/* *size is rounded up to the block size actually reserved; pass the same
 * value back to gpuml_allocator_free. fn names the caller for messages. */
gpuml_status gpuml_allocator_alloc(gpuml_allocator *a, size_t *size, void **out, const char *fn);
void gpuml_allocator_free(gpuml_allocator *a, void *p, size_t size);
/* Free straight to the system, not into the cache: for blocks of a size
 * that will not be asked for again (an arena's outgrown chunks). */
void gpuml_allocator_free_to_system(gpuml_allocator *a, void *p, size_t size);
void gpuml_allocator_stats(gpuml_allocator *a, gpuml_alloc_stats *out);
void gpuml_allocator_reset_peak(gpuml_allocator *a);
void gpuml_allocator_release_cached(gpuml_allocator *a);
size_t gpuml_allocator_round(size_t size);

/* Memory caps (gpuml/context.h, "memory caps"). An allocator's own cap
 * bounds its reserved bytes (in use + cached); a new block that would pass
 * it first empties the cache, then fails with OUT_OF_MEMORY naming the cap.
 * set_cap: STATE (nothing changed) when more than cap is in use now; 0
 * removes the cap. */
gpuml_status gpuml_allocator_set_cap(gpuml_allocator *a, size_t cap, const char *fn);
size_t gpuml_allocator_cap(gpuml_allocator *a);
/* A budget is a cap shared by several allocators (an engine's contexts):
 * their reserved bytes together stay under it. An allocator refused by it
 * empties its own cache, then the other members' caches, before it fails.
 * Reference counted: each member holds a reference. join_budget before
 * the allocator's first use, at most one budget per allocator. */
typedef struct gpuml_mem_budget gpuml_mem_budget;
gpuml_status gpuml_mem_budget_create(size_t cap, gpuml_mem_budget **out);
void gpuml_mem_budget_release(gpuml_mem_budget *b); /* drops a reference */
size_t gpuml_mem_budget_cap(const gpuml_mem_budget *b);
size_t gpuml_mem_budget_reserved(gpuml_mem_budget *b);
gpuml_status gpuml_allocator_join_budget(gpuml_allocator *a, gpuml_mem_budget *b);

/* ---- context ------------------------------------------------------------ */
#define GPUML_MSG_MAX 1024

struct gpuml_ctx {
    gpuml_device device;
    int num_threads;       /* the executor's max_workers                    */
    const gpuml_executor *exec; /* CPU loops: the host's, or own_exec       */
    gpuml_executor *own_exec;   /* a built-in the context created, or NULL  */
    bool host_exec;             /* exec is cfg.executor (the host's)        */
    int64_t par_work;           /* testing: split threshold (0: default)    */
    void *stream;          /* cudaStream_t                                  */
    bool owns_stream;
    void *cublas;          /* cublasHandle_t, created with the context      */
    void *cudnn;           /* cudnnHandle_t, created on first use           */
    int *dev_error;        /* device word kernels set on bad input (CUDA)   */
    gpuml_allocator *alloc;   /* device memory (host memory on the CPU)     */
    gpuml_allocator *pinned;  /* staging host memory                        */
    long fail_countdown;      /* testing: fail the n-th allocation          */
    uint64_t rng_seed;
    uint64_t rng_counter;
    gpuml_log_fn log_fn;
    void *log_user;
    gpuml_log_level log_level;
    bool require_checksum; /* gpuml_ctx_config.require_checksum              */
    char last_error[GPUML_MSG_MAX];
};

/* gpuml_ctx_create for one of `share` workers that split the machine (an
 * engine's instances and direct lanes): unless cfg names an executor or a
 * thread count, the default thread count divided by share (at least 1). */
gpuml_status gpuml_ctx_create_shared(const gpuml_ctx_config *cfg, int share, gpuml_ctx **out);

/* True when the testing countdown says this allocation must fail (and
 * records the OUT_OF_MEMORY error). */
bool gpuml_ctx_alloc_should_fail(gpuml_ctx *ctx, const char *fn);

/* Temporary device memory for an op (workspace), from the context's
 * allocator. Free with the same size. Stream-ordered on CUDA. */
gpuml_status gpuml_scratch_alloc(gpuml_ctx *ctx, size_t nbytes, void **out, const char *fn);
void gpuml_scratch_free(gpuml_ctx *ctx, void *p, size_t nbytes);

/* Reserve `count` consecutive Philox counters for one draw and return the
 * first: a draw of n elements takes ceil(n / 4) counters. */
uint64_t gpuml_ctx_rng_take(gpuml_ctx *ctx, uint64_t count);

/* ---- tensors ------------------------------------------------------------ */
typedef enum gpuml_storage_kind {
    GPUML_STORAGE_ALLOC = 0, /* block from an allocator                     */
    GPUML_STORAGE_WRAP = 1,  /* caller memory, optional deleter             */
    GPUML_STORAGE_NONE = 2   /* 0 bytes, or arena memory: nothing to free   */
} gpuml_storage_kind;

typedef struct gpuml_storage {
    atomic_int refcount;
    gpuml_storage_kind kind;
    void *ptr;
    size_t size;              /* bytes reserved (allocator block size)      */
    gpuml_allocator *alloc;   /* ALLOC: the allocator holding the block     */
    gpuml_deleter deleter;    /* WRAP                                       */
    void *deleter_user;
} gpuml_storage;

enum { GPUML_TENSOR_IN_ARENA = 1 };

struct gpuml_tensor {
    gpuml_dtype dtype;
    int ndim;
    int64_t shape[GPUML_MAX_DIMS];
    void *data;               /* first element                              */
    gpuml_device device;
    gpuml_storage *storage;   /* NULL for arena tensors                     */
    int flags;
};

/* Take / drop a reference on a storage (NULL: no-op); the last release
 * frees the memory or calls the deleter. Used to keep the memory of tensors
 * alive while a non-blocking collective may still write it. */
void gpuml_storage_retain(gpuml_storage *s);
void gpuml_storage_release(gpuml_storage *s);

int64_t gpuml_numel(int ndim, const int64_t *shape);

/* A tensor descriptor on the caller's stack over existing memory (no
 * ownership): for the library's own temporaries and views inside ops. */
void gpuml_tensor_init_view(gpuml_tensor *t, void *data, gpuml_device device, gpuml_dtype dtype,
                            int ndim, const int64_t *shape);

/* ---- argument checks (each records an error naming fn and arg) --------- */
gpuml_status gpuml_check_tensor(const gpuml_ctx *ctx, const char *fn, const char *arg,
                                const gpuml_tensor *t);
gpuml_status gpuml_check_dtype(const gpuml_ctx *ctx, const char *fn, const char *arg,
                               const gpuml_tensor *t, gpuml_dtype want);
gpuml_status gpuml_check_same_shape(const gpuml_ctx *ctx, const char *fn, const char *arg_a,
                                    const gpuml_tensor *a, const char *arg_b,
                                    const gpuml_tensor *b);
gpuml_status gpuml_check_index_dtype(const gpuml_ctx *ctx, const char *fn, const char *arg,
                                     const gpuml_tensor *t);
/* Validate a ragged-batch row_splits: i64 [B+1], on ctx's device. On the
 * CPU also checks the values: starts at 0, non-decreasing, ends at n_rows.
 * On CUDA the values are not read (no host sync); kernels clamp them and
 * flag the context's device error word instead. *batch receives B. */
gpuml_status gpuml_check_row_splits(const gpuml_ctx *ctx, const char *fn, const char *arg,
                                    const gpuml_tensor *row_splits, int64_t n_rows,
                                    int64_t *batch);

static inline bool gpuml_on_cuda(const gpuml_ctx *ctx)
{
    return ctx->device.type == GPUML_DEVICE_CUDA;
}

/* ---- CUDA runtime layer (core/cuda_rt.c, or core/cuda_stub.c) ----------- */
typedef enum gpuml_copy_kind {
    GPUML_COPY_H2D = 1,
    GPUML_COPY_D2H = 2,
    GPUML_COPY_D2D = 3,
    GPUML_COPY_H2H = 4
} gpuml_copy_kind;

int gpuml_cuda_rt_device_count(void);
gpuml_status gpuml_cuda_rt_ctx_init(gpuml_ctx *ctx, const char *fn);
void gpuml_cuda_rt_ctx_fini(gpuml_ctx *ctx);
gpuml_status gpuml_cuda_rt_sync(gpuml_ctx *ctx, const char *fn);
/* The context's cuDNN handle (on its stream), created on first use and
 * destroyed with the context. UNSUPPORTED in a build without cuDNN. */
gpuml_status gpuml_cuda_rt_cudnn(gpuml_ctx *ctx, const char *fn, void **handle);
gpuml_status gpuml_cuda_rt_malloc(int device, size_t n, void **p, const char *fn);
void gpuml_cuda_rt_free(int device, void *p);
gpuml_status gpuml_cuda_rt_host_alloc(size_t n, void **p, const char *fn);
void gpuml_cuda_rt_host_free(void *p);
gpuml_status gpuml_cuda_rt_memcpy(gpuml_ctx *ctx, void *dst, const void *src, size_t n,
                                  gpuml_copy_kind kind, const char *fn);
gpuml_status gpuml_cuda_rt_memset(gpuml_ctx *ctx, void *dst, int value, size_t n, const char *fn);
/* Record the context's CUDA error from the last launch, naming the op. */
gpuml_status gpuml_cuda_rt_check_launch(gpuml_ctx *ctx, const char *fn);

/* Copy with the right kind for the two devices, on ctx's stream (host-side
 * memcpy for H2H). Synchronises for D2H. */
gpuml_status gpuml_memcpy(gpuml_ctx *ctx, void *dst, gpuml_device dst_dev, const void *src,
                          gpuml_device src_dev, size_t n, const char *fn);
/* Set n bytes of device memory to zero, on ctx's stream. */
gpuml_status gpuml_memzero(gpuml_ctx *ctx, void *dst, size_t n, const char *fn);

#ifdef __cplusplus
}
#endif
#endif
