/* Context: device, stream, handles, allocators, RNG, thread count. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "gpuml/testing.h"
#include "gpuml_config.h"

const char *gpuml_version(void) { return GPUML_VERSION_STRING; }

int gpuml_has_feature(const char *name)
{
    if (!name)
        return 0;
    if (!strcmp(name, "cuda")) return GPUML_HAVE_CUDA;
    if (!strcmp(name, "cudnn")) return GPUML_HAVE_CUDNN;
    if (!strcmp(name, "nccl")) return GPUML_HAVE_NCCL;
    if (!strcmp(name, "mpi")) return GPUML_HAVE_MPI;
    if (!strcmp(name, "openmp")) return GPUML_HAVE_OPENMP;
    if (!strcmp(name, "blas")) return GPUML_HAVE_BLAS;
    return 0;
}

int gpuml_cuda_device_count(void) { return gpuml_cuda_rt_device_count(); }

/* The context's own executor for n workers: serial for one, else the pool
 * (gpuml/context.h, Threads). */
static gpuml_status make_executor(gpuml_ctx *ctx, int n)
{
    gpuml_executor *ex = NULL;
    if (n > 1)
        GPUML_TRY(gpuml_executor_create(GPUML_EXECUTOR_POOL, n, &ex));
    gpuml_executor_destroy(ctx->own_exec);
    ctx->own_exec = ex;
    ctx->exec = ex ? ex : gpuml_executor_serial();
    ctx->num_threads = ctx->exec->max_workers(ctx->exec->self);
    return GPUML_OK;
}

void gpuml_ctx_config_init_defaults(gpuml_ctx_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->device.type = GPUML_DEVICE_CPU;
    cfg->device.index = 0;
    cfg->num_threads = 0;
    cfg->seed = 0;
    cfg->log_level = GPUML_LOG_WARN;
}

gpuml_status gpuml_ctx_create(const gpuml_ctx_config *cfg, gpuml_ctx **out)
{
    static const char fn[] = "gpuml_ctx_create";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    if (!cfg)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'cfg' is NULL");
    if (cfg->device.type != GPUML_DEVICE_CPU && cfg->device.type != GPUML_DEVICE_CUDA)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->device.type %d is not a device type",
                          (int)cfg->device.type);
    if (cfg->executor && (!cfg->executor->parallel_for || !cfg->executor->max_workers))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "cfg->executor lacks parallel_for or max_workers (both are required)");
    if (cfg->executor && cfg->executor->max_workers(cfg->executor->self) < 1)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->executor->max_workers returned %d (must be >= 1)",
                          cfg->executor->max_workers(cfg->executor->self));
    if (cfg->num_threads > 4096)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->num_threads %d is above 4096",
                          cfg->num_threads);
    if ((int)cfg->log_level < GPUML_LOG_DEBUG || cfg->log_level > GPUML_LOG_OFF)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->log_level %d is out of range",
                          (int)cfg->log_level);
    if (cfg->device.type == GPUML_DEVICE_CUDA) {
        int n = gpuml_cuda_rt_device_count();
        if (!GPUML_HAVE_CUDA)
            return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, fn,
                              "a CUDA device was requested but this gpuml was built without CUDA");
        if (n <= 0)
            return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, fn,
                              "a CUDA device was requested but no usable GPU was found "
                              "(no driver, no device, or CUDA_VISIBLE_DEVICES hides them); "
                              "use GPUML_DEVICE_CPU");
        if (cfg->device.index < 0 || cfg->device.index >= n)
            return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, fn,
                              "CUDA device %d requested but only %d device(s) are visible",
                              cfg->device.index, n);
    }

    gpuml_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the context");
    ctx->device = cfg->device;
    if (ctx->device.type == GPUML_DEVICE_CPU)
        ctx->device.index = 0;
    ctx->rng_seed = cfg->seed;
    ctx->log_fn = cfg->log_fn;
    ctx->log_user = cfg->log_user;
    ctx->log_level = cfg->log_level;
    ctx->require_checksum = cfg->require_checksum != 0;
    ctx->stream = cfg->stream;

    gpuml_status st;
    bool cuda = ctx->device.type == GPUML_DEVICE_CUDA;
    if (cfg->executor) {
        ctx->exec = cfg->executor;
        ctx->host_exec = true;
        ctx->num_threads = cfg->executor->max_workers(cfg->executor->self);
        st = GPUML_OK;
    } else {
        st = make_executor(ctx, cfg->num_threads > 0 ? cfg->num_threads : gpuml_default_num_threads());
    }
    if (st == GPUML_OK)
        st = gpuml_allocator_create(cuda ? GPUML_MEM_CUDA : GPUML_MEM_HOST, ctx->device.index, &ctx->alloc);
    if (st == GPUML_OK)
        st = gpuml_allocator_create(cuda ? GPUML_MEM_PINNED : GPUML_MEM_HOST, ctx->device.index,
                                    &ctx->pinned);
    if (st == GPUML_OK && cfg->mem_cap_bytes)
        st = gpuml_allocator_set_cap(ctx->alloc, cfg->mem_cap_bytes, fn);
    if (st == GPUML_OK && cuda)
        st = gpuml_cuda_rt_ctx_init(ctx, fn);
    if (st != GPUML_OK) {
        gpuml_allocator_release(ctx->alloc);
        gpuml_allocator_release(ctx->pinned);
        gpuml_executor_destroy(ctx->own_exec);
        free(ctx);
        return st;
    }
    *out = ctx;
    return GPUML_OK;
}

void gpuml_ctx_destroy(gpuml_ctx *ctx)
{
    if (!ctx)
        return;
    if (gpuml_on_cuda(ctx))
        gpuml_cuda_rt_ctx_fini(ctx); /* synchronises, frees handles and dev_error */
    gpuml_allocator_release(ctx->alloc);
    gpuml_allocator_release(ctx->pinned);
    gpuml_executor_destroy(ctx->own_exec);
    free(ctx);
}

gpuml_status gpuml_ctx_synchronize(gpuml_ctx *ctx)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_ctx_synchronize",
                          "argument 'ctx' is NULL");
    if (!gpuml_on_cuda(ctx))
        return GPUML_OK;
    return gpuml_cuda_rt_sync(ctx, "gpuml_ctx_synchronize");
}

/* Accessors tolerate NULL (a host's teardown order is not ours to trust):
 * the CPU device, no stream, 0 threads. */
gpuml_device gpuml_ctx_device(const gpuml_ctx *ctx)
{
    if (!ctx) {
        gpuml_device d = {GPUML_DEVICE_CPU, 0};
        return d;
    }
    return ctx->device;
}
void *gpuml_ctx_stream(const gpuml_ctx *ctx) { return ctx ? ctx->stream : NULL; }
int gpuml_ctx_num_threads(const gpuml_ctx *ctx) { return ctx ? ctx->num_threads : 0; }

gpuml_status gpuml_ctx_set_num_threads(gpuml_ctx *ctx, int num_threads)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_ctx_set_num_threads",
                          "argument 'ctx' is NULL");
    if (num_threads <= 0 || num_threads > 4096)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, "gpuml_ctx_set_num_threads",
                          "num_threads %d is not in [1, 4096]", num_threads);
    if (ctx->host_exec)
        return gpuml_fail(ctx, GPUML_ERR_STATE, "gpuml_ctx_set_num_threads",
                          "the context runs on the host's executor (cfg.executor), which decides the threads");
    gpuml_status st = make_executor(ctx, num_threads);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(ctx);
    return st;
}

void gpuml_ctx_set_parallel_threshold(gpuml_ctx *ctx, int64_t work)
{
    if (ctx)
        ctx->par_work = work > 0 ? work : 0;
}

const gpuml_executor *gpuml_ctx_executor(const gpuml_ctx *ctx) { return ctx ? ctx->exec : NULL; }

void gpuml_ctx_set_seed(gpuml_ctx *ctx, uint64_t seed)
{
    if (!ctx)
        return;
    ctx->rng_seed = seed;
    ctx->rng_counter = 0;
}

void gpuml_ctx_get_rng_state(const gpuml_ctx *ctx, uint64_t *seed, uint64_t *counter)
{
    if (!ctx)
        return;
    if (seed)
        *seed = ctx->rng_seed;
    if (counter)
        *counter = ctx->rng_counter;
}

void gpuml_ctx_set_rng_state(gpuml_ctx *ctx, uint64_t seed, uint64_t counter)
{
    if (!ctx)
        return;
    ctx->rng_seed = seed;
    ctx->rng_counter = counter;
}

uint64_t gpuml_ctx_rng_take(gpuml_ctx *ctx, uint64_t count)
{
    uint64_t first = ctx->rng_counter;
    ctx->rng_counter += count;
    return first;
}

void gpuml_ctx_alloc_stats(const gpuml_ctx *ctx, int pinned, gpuml_alloc_stats *out)
{
    if (!ctx || !out)
        return;
    gpuml_allocator_stats(pinned ? ctx->pinned : ctx->alloc, out);
}

void gpuml_ctx_reset_peak(gpuml_ctx *ctx)
{
    if (!ctx)
        return;
    gpuml_allocator_reset_peak(ctx->alloc);
    gpuml_allocator_reset_peak(ctx->pinned);
}

void gpuml_ctx_release_cached(gpuml_ctx *ctx)
{
    if (!ctx)
        return;
    if (gpuml_on_cuda(ctx))
        (void)gpuml_cuda_rt_sync(ctx, "gpuml_ctx_release_cached");
    gpuml_allocator_release_cached(ctx->alloc);
    gpuml_allocator_release_cached(ctx->pinned);
}

gpuml_status gpuml_ctx_set_mem_cap(gpuml_ctx *ctx, size_t bytes)
{
    static const char fn[] = "gpuml_ctx_set_mem_cap";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    /* The cache may be released: finish the queued work first, as
     * gpuml_ctx_release_cached does (and report its errors here). */
    if (gpuml_on_cuda(ctx))
        GPUML_TRY(gpuml_cuda_rt_sync(ctx, fn));
    gpuml_status st = gpuml_allocator_set_cap(ctx->alloc, bytes, fn);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(ctx);
    return st;
}

size_t gpuml_ctx_mem_cap(const gpuml_ctx *ctx) { return ctx ? gpuml_allocator_cap(ctx->alloc) : 0; }

void gpuml_ctx_fail_allocation_after(gpuml_ctx *ctx, long n)
{
    if (ctx)
        ctx->fail_countdown = n > 0 ? n : 0;
}

bool gpuml_ctx_alloc_should_fail(gpuml_ctx *ctx, const char *fn)
{
    if (ctx->fail_countdown <= 0)
        return false;
    if (--ctx->fail_countdown > 0)
        return false;
    gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "allocation failed (injected by gpuml_ctx_fail_allocation_after)");
    return true;
}

gpuml_status gpuml_scratch_alloc(gpuml_ctx *ctx, size_t nbytes, void **out, const char *fn)
{
    if (gpuml_ctx_alloc_should_fail(ctx, fn))
        return GPUML_ERR_OUT_OF_MEMORY;
    size_t size = nbytes;
    gpuml_status st = gpuml_allocator_alloc(ctx->alloc, &size, out, fn);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(ctx);
    return st;
}

void gpuml_scratch_free(gpuml_ctx *ctx, void *p, size_t nbytes)
{
    if (p)
        gpuml_allocator_free(ctx->alloc, p, gpuml_allocator_round(nbytes ? nbytes : 1));
}

/* Pinned blocks carry their size in a 64-byte header (pinned memory is host
 * memory), so that gpuml_pinned_free needs only the pointer. */
#define PINNED_HEADER 64

gpuml_status gpuml_pinned_alloc(gpuml_ctx *ctx, size_t nbytes, void **out)
{
    static const char fn[] = "gpuml_pinned_alloc";
    if (!ctx || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ctx ? "out" : "ctx");
    if (nbytes > SIZE_MAX - PINNED_HEADER)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "nbytes %zu is too large", nbytes);
    if (gpuml_ctx_alloc_should_fail(ctx, fn))
        return GPUML_ERR_OUT_OF_MEMORY;
    size_t size = nbytes + PINNED_HEADER;
    void *p = NULL;
    gpuml_status st = gpuml_allocator_alloc(ctx->pinned, &size, &p, fn);
    if (st != GPUML_OK) {
        gpuml_ctx_adopt_error(ctx);
        return st;
    }
    *(size_t *)p = size;
    *out = (char *)p + PINNED_HEADER;
    return GPUML_OK;
}

void gpuml_pinned_free(gpuml_ctx *ctx, void *ptr)
{
    if (!ctx || !ptr)
        return;
    char *base = (char *)ptr - PINNED_HEADER;
    gpuml_allocator_free(ctx->pinned, base, *(size_t *)base);
}

gpuml_status gpuml_ctx_create_shared(const gpuml_ctx_config *cfg, int share, gpuml_ctx **out)
{
    GPUML_TRY(gpuml_ctx_create(cfg, out));
    if (!cfg->executor && cfg->num_threads <= 0 && share > 0) {
        int nt = gpuml_ctx_num_threads(*out) / share;
        (void)gpuml_ctx_set_num_threads(*out, nt > 0 ? nt : 1);
    }
    return GPUML_OK;
}
