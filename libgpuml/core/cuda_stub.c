/* The CUDA runtime layer of a build without CUDA: no device exists, and
 * nothing here can be reached with a CUDA context (none can be created). */
#include "core/internal.h"
#include "core/runtime.h"

int gpuml_cuda_rt_device_count(void) { return 0; }

static gpuml_status no_cuda(const gpuml_ctx *ctx, const char *fn)
{
    return gpuml_fail(ctx, GPUML_ERR_NO_DEVICE, fn, "this gpuml was built without CUDA");
}

gpuml_status gpuml_cuda_rt_ctx_init(gpuml_ctx *ctx, const char *fn) { return no_cuda(ctx, fn); }
void gpuml_cuda_rt_ctx_fini(gpuml_ctx *ctx) { (void)ctx; }
gpuml_status gpuml_cuda_rt_sync(gpuml_ctx *ctx, const char *fn) { return no_cuda(ctx, fn); }
gpuml_status gpuml_cuda_rt_cudnn(gpuml_ctx *ctx, const char *fn, void **handle)
{
    (void)handle;
    return no_cuda(ctx, fn);
}
gpuml_status gpuml_cuda_rt_malloc(int device, size_t n, void **p, const char *fn)
{
    (void)device, (void)n, (void)p;
    return no_cuda(NULL, fn);
}
void gpuml_cuda_rt_free(int device, void *p) { (void)device, (void)p; }
gpuml_status gpuml_cuda_rt_host_alloc(size_t n, void **p, const char *fn)
{
    (void)n, (void)p;
    return no_cuda(NULL, fn);
}
void gpuml_cuda_rt_host_free(void *p) { (void)p; }
gpuml_status gpuml_cuda_rt_memcpy(gpuml_ctx *ctx, void *dst, const void *src, size_t n, gpuml_copy_kind kind,
                                  const char *fn)
{
    (void)dst, (void)src, (void)n, (void)kind;
    return no_cuda(ctx, fn);
}
gpuml_status gpuml_cuda_rt_memset(gpuml_ctx *ctx, void *dst, int value, size_t n, const char *fn)
{
    (void)dst, (void)value, (void)n;
    return no_cuda(ctx, fn);
}
gpuml_status gpuml_cuda_rt_check_launch(gpuml_ctx *ctx, const char *fn) { return no_cuda(ctx, fn); }

gpuml_status gpuml_cuda_rt_set_device(int device, const char *fn)
{
    (void)device;
    return no_cuda(NULL, fn);
}
gpuml_status gpuml_cuda_rt_event_create(int device, int flags, void **ev, const char *fn)
{
    (void)device, (void)flags, (void)ev;
    return no_cuda(NULL, fn);
}
void gpuml_cuda_rt_event_destroy(int device, void *ev) { (void)device, (void)ev; }
gpuml_status gpuml_cuda_rt_event_record(int device, void *ev, void *stream, const char *fn)
{
    (void)device, (void)ev, (void)stream;
    return no_cuda(NULL, fn);
}
gpuml_status gpuml_cuda_rt_event_sync(int device, void *ev, const char *fn)
{
    (void)device, (void)ev;
    return no_cuda(NULL, fn);
}
gpuml_status gpuml_cuda_rt_stream_wait(int device, void *stream, void *ev, const char *fn)
{
    (void)device, (void)stream, (void)ev;
    return no_cuda(NULL, fn);
}
gpuml_status gpuml_cuda_rt_stream_sync(int device, void *stream, const char *fn)
{
    (void)device, (void)stream;
    return no_cuda(NULL, fn);
}
gpuml_status gpuml_cuda_rt_stream_create(int device, void **stream, const char *fn)
{
    (void)device, (void)stream;
    return no_cuda(NULL, fn);
}
void gpuml_cuda_rt_stream_destroy(int device, void *stream) { (void)device, (void)stream; }
gpuml_status gpuml_cuda_rt_event_query(int device, void *ev, bool *done, const char *fn)
{
    (void)device, (void)ev;
    *done = false;
    return no_cuda(NULL, fn);
}
void gpuml_cuda_rt_event_release(int device, void *ev) { (void)device, (void)ev; }
gpuml_status gpuml_cuda_rt_memcpy_async(int device, void *dst, const void *src, size_t n, gpuml_copy_kind kind,
                                        void *stream, const char *fn)
{
    (void)device, (void)dst, (void)src, (void)n, (void)kind, (void)stream;
    return no_cuda(NULL, fn);
}
