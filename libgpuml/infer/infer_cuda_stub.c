/* The engine's CUDA calls in a build without CUDA: unreachable, since no
 * CUDA context (hence no CUDA engine) can be created. */
#include "infer/engine_impl.h"

static gpuml_status no_cuda(void)
{
    return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, "gpuml_engine", "this gpuml was built without CUDA");
}

gpuml_status eng_cuda_set_device(int device)
{
    (void)device;
    return no_cuda();
}
gpuml_status eng_cuda_event_create(int device, void **ev)
{
    (void)device, (void)ev;
    return no_cuda();
}
void eng_cuda_event_destroy(int device, void *ev) { (void)device, (void)ev; }
gpuml_status eng_cuda_event_record(int device, void *ev, void *stream)
{
    (void)device, (void)ev, (void)stream;
    return no_cuda();
}
gpuml_status eng_cuda_event_sync(int device, void *ev)
{
    (void)device, (void)ev;
    return no_cuda();
}
gpuml_status eng_cuda_stream_wait(int device, void *stream, void *ev)
{
    (void)device, (void)stream, (void)ev;
    return no_cuda();
}
gpuml_status eng_cuda_stream_sync(int device, void *stream)
{
    (void)device, (void)stream;
    return no_cuda();
}
gpuml_status eng_cuda_memcpy_async(int device, void *dst, const void *src, size_t n, eng_copy_kind kind, void *stream)
{
    (void)device, (void)dst, (void)src, (void)n, (void)kind, (void)stream;
    return no_cuda();
}
