/*
 * gpuml/tensor.h - dense, contiguous, row-major tensors on a device.
 *
 * A tensor is a handle to a block of memory (its storage) plus a dtype and a
 * shape of up to GPUML_MAX_DIMS dimensions. Storage is reference counted:
 * views (reshape, leading-row slices) share it and keep it alive, so a view
 * may outlive the tensor it came from.
 *
 *     int64_t shape[2] = {n, 3};
 *     gpuml_tensor *x = NULL;
 *     gpuml_tensor_create(ctx, GPUML_F32, 2, shape, &x);   // from ctx allocator
 *     gpuml_tensor_copy_from_host(ctx, x, host_xyz, n * 3 * sizeof(float));
 *     ...
 *     gpuml_tensor_destroy(x);
 *
 * Zero copy: gpuml_tensor_wrap makes a tensor over memory the caller owns
 * (a numpy array, a CMSSW product, a device buffer). gpuml never frees it
 * unless a deleter is given, which is called once, when the last handle
 * sharing the storage is destroyed.
 *
 * Threading: a tensor may be read concurrently; writes need the caller's
 * ordering. Handles are destroyed from any thread.
 */
#ifndef GPUML_TENSOR_H
#define GPUML_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "gpuml/context.h"
#include "gpuml/export.h"
#include "gpuml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPUML_MAX_DIMS 8

typedef enum gpuml_dtype {
    GPUML_F32 = 0,
    GPUML_F16 = 1,  /* IEEE binary16                         */
    GPUML_BF16 = 2, /* bfloat16 (upper half of a binary32)   */
    GPUML_F64 = 3,
    GPUML_I32 = 4,
    GPUML_I64 = 5,
    GPUML_U8 = 6,
    GPUML_BOOL = 7, /* one byte, 0 or 1                      */
    GPUML_DTYPE_COUNT_ = 8
} gpuml_dtype;

GPUML_API size_t gpuml_dtype_size(gpuml_dtype dtype);     /* 0 for an invalid dtype */
GPUML_API const char *gpuml_dtype_name(gpuml_dtype dtype);/* "f32", ...; "?" if invalid */

typedef struct gpuml_tensor gpuml_tensor;

/* Deleter for wrapped memory: called with the wrapped pointer and user. */
typedef void (*gpuml_deleter)(void *data, void *user);

/* New tensor with uninitialised contents on the context's device, memory
 * from the context's caching allocator. ndim in [0, 8] (0: a scalar);
 * every shape[i] >= 0 (0-sized tensors are allowed and own no memory).
 * Errors: INVALID_ARGUMENT, OUT_OF_MEMORY. */
GPUML_API gpuml_status gpuml_tensor_create(gpuml_ctx *ctx, gpuml_dtype dtype, int ndim,
                                           const int64_t *shape, gpuml_tensor **out);

/* As gpuml_tensor_create, with every element set to zero. */
GPUML_API gpuml_status gpuml_tensor_zeros(gpuml_ctx *ctx, gpuml_dtype dtype, int ndim,
                                          const int64_t *shape, gpuml_tensor **out);

/* New tensor inside an arena (see context.h): no system allocation once the
 * arena is warm; valid until gpuml_arena_reset. */
GPUML_API gpuml_status gpuml_tensor_create_in_arena(gpuml_arena *arena, gpuml_dtype dtype,
                                                    int ndim, const int64_t *shape,
                                                    gpuml_tensor **out);

/* Wrap caller memory without copying. data must hold the tensor contiguously
 * (row-major) on `device`, aligned to the dtype size, and stay valid until
 * the deleter runs (or, without deleter, until the last handle is
 * destroyed). deleter may be NULL. On failure the deleter is NOT called and
 * the caller still owns data. */
GPUML_API gpuml_status gpuml_tensor_wrap(void *data, gpuml_device device, gpuml_dtype dtype,
                                         int ndim, const int64_t *shape, gpuml_deleter deleter,
                                         void *deleter_user, gpuml_tensor **out);

/* Release the handle; storage is freed (or its deleter called) when no
 * handle uses it. NULL, and arena tensors: no-op. */
GPUML_API void gpuml_tensor_destroy(gpuml_tensor *t);

GPUML_API gpuml_dtype gpuml_tensor_dtype(const gpuml_tensor *t);
GPUML_API int gpuml_tensor_ndim(const gpuml_tensor *t);
GPUML_API int64_t gpuml_tensor_dim(const gpuml_tensor *t, int axis); /* axis < 0 counts from the end */
GPUML_API const int64_t *gpuml_tensor_shape(const gpuml_tensor *t);  /* ndim entries */
GPUML_API int64_t gpuml_tensor_numel(const gpuml_tensor *t);
GPUML_API size_t gpuml_tensor_nbytes(const gpuml_tensor *t);
GPUML_API gpuml_device gpuml_tensor_device(const gpuml_tensor *t);
GPUML_API void *gpuml_tensor_data(const gpuml_tensor *t); /* device pointer on CUDA */

/* A view with another shape over the same elements (same numel). One entry
 * of shape may be -1, inferred. Errors: SHAPE, INVALID_ARGUMENT. */
GPUML_API gpuml_status gpuml_tensor_reshape(const gpuml_tensor *t, int ndim, const int64_t *shape,
                                            gpuml_tensor **out);

/* A view of rows [start, start + count) along axis 0. */
GPUML_API gpuml_status gpuml_tensor_slice_rows(const gpuml_tensor *t, int64_t start, int64_t count,
                                               gpuml_tensor **out);

/* Copy nbytes == gpuml_tensor_nbytes(dst) from host memory into dst, on the
 * context's stream. For a CUDA tensor the copy is asynchronous; src may be
 * reused when the call returns unless it is pinned memory, which must stay
 * untouched until the stream reaches the copy. */
GPUML_API gpuml_status gpuml_tensor_copy_from_host(gpuml_ctx *ctx, gpuml_tensor *dst,
                                                   const void *src, size_t nbytes);

/* Copy src into host memory dst (nbytes == gpuml_tensor_nbytes(src)).
 * Synchronises the context's stream: dst is filled on return. */
GPUML_API gpuml_status gpuml_tensor_copy_to_host(gpuml_ctx *ctx, const gpuml_tensor *src,
                                                 void *dst, size_t nbytes);

/* Copy between tensors of equal dtype and numel, on any devices, ordered on
 * the context's stream. Device-to-host copies synchronise. */
GPUML_API gpuml_status gpuml_tensor_copy(gpuml_ctx *ctx, gpuml_tensor *dst, const gpuml_tensor *src);

/* Write "[3, 4] f32 cpu" into buf (always NUL-terminated); returns buf. */
GPUML_API const char *gpuml_tensor_describe(const gpuml_tensor *t, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
