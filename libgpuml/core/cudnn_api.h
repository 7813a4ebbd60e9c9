/* libgpuml/core/cudnn_api.h - the cuDNN functions gpuml calls, as a table
 * filled by dlopen when a context first uses cuDNN (core/dynlib.h: cuDNN is
 * optional and not linked, so that gpuml can share a process with
 * PyTorch's own cuDNN). Part of the runtime layer: included by
 * core/cuda_rt.c, which loads it, and by the layer above,
 * kernels/cuda/batchnorm.cu, which calls through it; C and CUDA C++. Only
 * in builds with cuDNN's header (GPUML_HAVE_CUDNN). */
#ifndef GPUML_CORE_CUDNN_API_H
#define GPUML_CORE_CUDNN_API_H

#include <cudnn.h>

/* Names without the "cudnn" prefix. */
#define GPUML_CUDNN_FUNCS(X)                                                                                          \
    X(Create) X(Destroy) X(SetStream) X(GetErrorString) X(CreateTensorDescriptor) X(DestroyTensorDescriptor)         \
    X(SetTensor4dDescriptor) X(BatchNormalizationForwardTraining) X(BatchNormalizationForwardInference)              \
    X(BatchNormalizationBackward)

/* A context's cuDNN: its handle (bound to the context's stream) and the
 * library's functions. Owned by the context (ctx->cudnn). */
typedef struct gpuml_cudnn {
#define GPUML_CUDNN_FIELD(name) __typeof__(&cudnn##name) name;
    GPUML_CUDNN_FUNCS(GPUML_CUDNN_FIELD)
#undef GPUML_CUDNN_FIELD
    cudnnHandle_t handle;
} gpuml_cudnn;

#endif
