/* Tensors: creation, wrapping, views, copies. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/internal.h"

static const size_t dtype_sizes[GPUML_DTYPE_COUNT_] = {4, 2, 2, 8, 4, 8, 1, 1};
static const char *const dtype_names[GPUML_DTYPE_COUNT_] = {"f32", "f16", "bf16", "f64",
                                                            "i32", "i64", "u8",  "bool"};

size_t gpuml_dtype_size(gpuml_dtype dtype)
{
    return ((int)dtype >= 0 && dtype < GPUML_DTYPE_COUNT_) ? dtype_sizes[dtype] : 0;
}

const char *gpuml_dtype_name(gpuml_dtype dtype)
{
    return ((int)dtype >= 0 && dtype < GPUML_DTYPE_COUNT_) ? dtype_names[dtype] : "?";
}

int64_t gpuml_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

/* Checks dtype, ndim and shape; computes the byte size without overflow. */
static gpuml_status check_layout(const gpuml_ctx *ctx, const char *fn, gpuml_dtype dtype, int ndim,
                                 const int64_t *shape, size_t *nbytes)
{
    if (gpuml_dtype_size(dtype) == 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "dtype %d is not a gpuml_dtype", (int)dtype);
    if (ndim < 0 || ndim > GPUML_MAX_DIMS)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "ndim %d is not in [0, %d]", ndim, GPUML_MAX_DIMS);
    if (ndim > 0 && !shape)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'shape' is NULL");
    uint64_t n = gpuml_dtype_size(dtype);
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "shape[%d] = %" PRId64 " is negative", i, shape[i]);
        if (shape[i] == 0)
            empty = true;
    }
    if (empty) {
        *nbytes = 0;
        return GPUML_OK;
    }
    for (int i = 0; i < ndim; i++) {
        if ((uint64_t)shape[i] > (UINT64_C(1) << 62) / n)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "shape is too large (byte size overflows)");
        n *= (uint64_t)shape[i];
    }
    if (n > SIZE_MAX / 2)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "shape is too large for this machine");
    *nbytes = (size_t)n;
    return GPUML_OK;
}

static void set_layout(gpuml_tensor *t, gpuml_dtype dtype, int ndim, const int64_t *shape)
{
    t->dtype = dtype;
    t->ndim = ndim;
    memset(t->shape, 0, sizeof t->shape);
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
}

void gpuml_tensor_init_view(gpuml_tensor *t, void *data, gpuml_device device, gpuml_dtype dtype,
                            int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    set_layout(t, dtype, ndim, shape);
    t->data = data;
    t->device = device;
    t->storage = NULL;
    t->flags = GPUML_TENSOR_IN_ARENA; /* not owned: destroy is a no-op */
}

gpuml_status gpuml_tensor_create(gpuml_ctx *ctx, gpuml_dtype dtype, int ndim, const int64_t *shape,
                                 gpuml_tensor **out)
{
    static const char fn[] = "gpuml_tensor_create";
    if (!ctx || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ctx ? "out" : "ctx");
    size_t nbytes;
    GPUML_TRY(check_layout(ctx, fn, dtype, ndim, shape, &nbytes));
    if (gpuml_ctx_alloc_should_fail(ctx, fn))
        return GPUML_ERR_OUT_OF_MEMORY;
    gpuml_tensor *t = calloc(1, sizeof *t);
    gpuml_storage *s = calloc(1, sizeof *s);
    if (!t || !s) {
        free(t);
        free(s);
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the tensor descriptor");
    }
    atomic_init(&s->refcount, 1);
    if (nbytes == 0) {
        s->kind = GPUML_STORAGE_NONE;
    } else {
        if (gpuml_ctx_alloc_should_fail(ctx, fn)) {
            free(t);
            free(s);
            return GPUML_ERR_OUT_OF_MEMORY;
        }
        s->kind = GPUML_STORAGE_ALLOC;
        s->size = nbytes;
        gpuml_status st = gpuml_allocator_alloc(ctx->alloc, &s->size, &s->ptr, fn);
        if (st != GPUML_OK) {
            free(t);
            free(s);
            gpuml_ctx_adopt_error(ctx);
            return st;
        }
        s->alloc = ctx->alloc;
        gpuml_allocator_retain(s->alloc);
    }
    set_layout(t, dtype, ndim, shape);
    t->data = s->ptr;
    t->device = ctx->device;
    t->storage = s;
    *out = t;
    return GPUML_OK;
}

gpuml_status gpuml_tensor_zeros(gpuml_ctx *ctx, gpuml_dtype dtype, int ndim, const int64_t *shape,
                                gpuml_tensor **out)
{
    gpuml_tensor *t = NULL;
    GPUML_TRY(gpuml_tensor_create(ctx, dtype, ndim, shape, &t));
    gpuml_status st = gpuml_memzero(ctx, t->data, gpuml_tensor_nbytes(t), "gpuml_tensor_zeros");
    if (st != GPUML_OK) {
        gpuml_tensor_destroy(t);
        return st;
    }
    *out = t;
    return GPUML_OK;
}

gpuml_status gpuml_tensor_create_in_arena(gpuml_arena *arena, gpuml_dtype dtype, int ndim,
                                          const int64_t *shape, gpuml_tensor **out)
{
    static const char fn[] = "gpuml_tensor_create_in_arena";
    if (!arena || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", arena ? "out" : "arena");
    gpuml_ctx *ctx = gpuml_arena_ctx(arena);
    size_t nbytes;
    GPUML_TRY(check_layout(ctx, fn, dtype, ndim, shape, &nbytes));
    void *meta = NULL, *data = NULL;
    GPUML_TRY(gpuml_arena_alloc_meta(arena, sizeof(gpuml_tensor), &meta, fn));
    if (nbytes > 0)
        GPUML_TRY(gpuml_arena_alloc(arena, nbytes, &data, fn));
    gpuml_tensor *t = meta;
    gpuml_tensor_init_view(t, data, ctx->device, dtype, ndim, shape);
    *out = t;
    return GPUML_OK;
}

gpuml_status gpuml_tensor_wrap(void *data, gpuml_device device, gpuml_dtype dtype, int ndim,
                               const int64_t *shape, gpuml_deleter deleter, void *deleter_user,
                               gpuml_tensor **out)
{
    static const char fn[] = "gpuml_tensor_wrap";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    size_t nbytes;
    GPUML_TRY(check_layout(NULL, fn, dtype, ndim, shape, &nbytes));
    if (device.type != GPUML_DEVICE_CPU && device.type != GPUML_DEVICE_CUDA)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "device.type %d is not a device type", (int)device.type);
    if (nbytes > 0 && !data)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'data' is NULL for a non-empty tensor");
    if (data && ((uintptr_t)data % gpuml_dtype_size(dtype)) != 0)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "data %p is not aligned to its dtype %s (%zu bytes)",
                          data, gpuml_dtype_name(dtype), gpuml_dtype_size(dtype));
    gpuml_tensor *t = calloc(1, sizeof *t);
    gpuml_storage *s = calloc(1, sizeof *s);
    if (!t || !s) {
        free(t);
        free(s);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the tensor descriptor");
    }
    atomic_init(&s->refcount, 1);
    s->kind = GPUML_STORAGE_WRAP;
    s->ptr = data;
    s->size = nbytes;
    s->deleter = deleter;
    s->deleter_user = deleter_user;
    set_layout(t, dtype, ndim, shape);
    t->data = data;
    t->device = device;
    if (device.type == GPUML_DEVICE_CPU)
        t->device.index = 0;
    t->storage = s;
    *out = t;
    return GPUML_OK;
}

void gpuml_storage_retain(gpuml_storage *s)
{
    if (s)
        atomic_fetch_add(&s->refcount, 1);
}

void gpuml_storage_release(gpuml_storage *s)
{
    if (!s || atomic_fetch_sub(&s->refcount, 1) != 1)
        return;
    switch (s->kind) {
    case GPUML_STORAGE_ALLOC:
        gpuml_allocator_free(s->alloc, s->ptr, s->size);
        gpuml_allocator_release(s->alloc);
        break;
    case GPUML_STORAGE_WRAP:
        if (s->deleter)
            s->deleter(s->ptr, s->deleter_user);
        break;
    case GPUML_STORAGE_NONE:
        break;
    }
    free(s);
}

void gpuml_tensor_destroy(gpuml_tensor *t)
{
    if (!t || (t->flags & GPUML_TENSOR_IN_ARENA))
        return;
    gpuml_storage_release(t->storage);
    free(t);
}

gpuml_dtype gpuml_tensor_dtype(const gpuml_tensor *t) { return t->dtype; }
int gpuml_tensor_ndim(const gpuml_tensor *t) { return t->ndim; }
const int64_t *gpuml_tensor_shape(const gpuml_tensor *t) { return t->shape; }
int64_t gpuml_tensor_numel(const gpuml_tensor *t) { return gpuml_numel(t->ndim, t->shape); }
size_t gpuml_tensor_nbytes(const gpuml_tensor *t)
{
    return (size_t)gpuml_tensor_numel(t) * gpuml_dtype_size(t->dtype);
}
gpuml_device gpuml_tensor_device(const gpuml_tensor *t) { return t->device; }
void *gpuml_tensor_data(const gpuml_tensor *t) { return t->data; }

int64_t gpuml_tensor_dim(const gpuml_tensor *t, int axis)
{
    if (axis < 0)
        axis += t->ndim;
    return (axis >= 0 && axis < t->ndim) ? t->shape[axis] : -1;
}

static gpuml_status make_view(const gpuml_tensor *t, void *data, int ndim, const int64_t *shape,
                              gpuml_tensor **out, const char *fn)
{
    gpuml_tensor *v = calloc(1, sizeof *v);
    if (!v)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the view descriptor");
    set_layout(v, t->dtype, ndim, shape);
    v->data = data;
    v->device = t->device;
    v->storage = t->storage;
    v->flags = t->flags & GPUML_TENSOR_IN_ARENA;
    if (v->flags & GPUML_TENSOR_IN_ARENA) {
        /* A view of an arena tensor (or of a stack view) owns nothing and
         * lives in host memory of its own: destroy must free it. */
        v->flags = 0;
        v->storage = NULL;
    } else if (v->storage) {
        atomic_fetch_add(&v->storage->refcount, 1);
    }
    *out = v;
    return GPUML_OK;
}

gpuml_status gpuml_tensor_reshape(const gpuml_tensor *t, int ndim, const int64_t *shape, gpuml_tensor **out)
{
    static const char fn[] = "gpuml_tensor_reshape";
    if (!t || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", t ? "out" : "t");
    if (ndim < 0 || ndim > GPUML_MAX_DIMS || (ndim > 0 && !shape))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "ndim %d / shape is invalid", ndim);
    int64_t s[GPUML_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "more than one -1 in shape");
            infer = i;
        } else if (shape[i] < 0) {
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "shape[%d] = %" PRId64 " is negative", i, shape[i]);
        } else {
            known *= shape[i];
        }
    }
    int64_t n = gpuml_tensor_numel(t);
    if (infer >= 0) {
        if (known == 0 || n % known != 0)
            return gpuml_fail(NULL, GPUML_ERR_SHAPE, fn, "cannot infer dimension %d: %" PRId64 " elements", infer, n);
        s[infer] = n / known;
        known *= s[infer];
    }
    if (known != n) {
        char a[128], b[128];
        return gpuml_fail(NULL, GPUML_ERR_SHAPE, fn, "cannot view %s (%" PRId64 " elements) as %s",
                          gpuml_shape_str(t->ndim, t->shape, a, sizeof a), n,
                          gpuml_shape_str(ndim, s, b, sizeof b));
    }
    return make_view(t, t->data, ndim, s, out, fn);
}

gpuml_status gpuml_tensor_slice_rows(const gpuml_tensor *t, int64_t start, int64_t count, gpuml_tensor **out)
{
    static const char fn[] = "gpuml_tensor_slice_rows";
    if (!t || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", t ? "out" : "t");
    if (t->ndim < 1)
        return gpuml_fail(NULL, GPUML_ERR_SHAPE, fn, "a scalar has no rows");
    if (start < 0 || count < 0 || start > t->shape[0] || count > t->shape[0] - start)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "rows [%" PRId64 ", %" PRId64 ") are outside [0, %" PRId64 ")", start, start + count, t->shape[0]);
    int64_t s[GPUML_MAX_DIMS];
    memcpy(s, t->shape, sizeof s);
    s[0] = count;
    size_t row_bytes = (size_t)gpuml_numel(t->ndim - 1, t->shape + 1) * gpuml_dtype_size(t->dtype);
    void *data = t->data ? (char *)t->data + (size_t)start * row_bytes : NULL;
    return make_view(t, data, t->ndim, s, out, fn);
}

gpuml_status gpuml_tensor_copy_from_host(gpuml_ctx *ctx, gpuml_tensor *dst, const void *src, size_t nbytes)
{
    static const char fn[] = "gpuml_tensor_copy_from_host";
    if (!ctx || !dst || (!src && nbytes))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", !ctx ? "ctx" : !dst ? "dst" : "src");
    if (nbytes != gpuml_tensor_nbytes(dst))
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "nbytes %zu != the tensor's %zu bytes", nbytes, gpuml_tensor_nbytes(dst));
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    return gpuml_memcpy(ctx, dst->data, dst->device, src, host, nbytes, fn);
}

gpuml_status gpuml_tensor_copy_to_host(gpuml_ctx *ctx, const gpuml_tensor *src, void *dst, size_t nbytes)
{
    static const char fn[] = "gpuml_tensor_copy_to_host";
    if (!ctx || !src || (!dst && nbytes))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", !ctx ? "ctx" : !src ? "src" : "dst");
    if (nbytes != gpuml_tensor_nbytes(src))
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "nbytes %zu != the tensor's %zu bytes", nbytes, gpuml_tensor_nbytes(src));
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    return gpuml_memcpy(ctx, dst, host, src->data, src->device, nbytes, fn);
}

gpuml_status gpuml_tensor_copy(gpuml_ctx *ctx, gpuml_tensor *dst, const gpuml_tensor *src)
{
    static const char fn[] = "gpuml_tensor_copy";
    if (!ctx || !dst || !src)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", !ctx ? "ctx" : !dst ? "dst" : "src");
    if (dst->dtype != src->dtype)
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "dst is %s but src is %s", gpuml_dtype_name(dst->dtype),
                          gpuml_dtype_name(src->dtype));
    if (gpuml_tensor_numel(dst) != gpuml_tensor_numel(src))
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "dst has %" PRId64 " elements but src %" PRId64,
                          gpuml_tensor_numel(dst), gpuml_tensor_numel(src));
    if (dst->data == src->data)
        return GPUML_OK;
    return gpuml_memcpy(ctx, dst->data, dst->device, src->data, src->device, gpuml_tensor_nbytes(src), fn);
}

const char *gpuml_tensor_describe(const gpuml_tensor *t, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    if (!t) {
        snprintf(buf, size, "(null)");
        return buf;
    }
    char shape[160];
    gpuml_shape_str(t->ndim, t->shape, shape, sizeof shape);
    if (t->device.type == GPUML_DEVICE_CUDA)
        snprintf(buf, size, "%s %s cuda:%d", shape, gpuml_dtype_name(t->dtype), t->device.index);
    else
        snprintf(buf, size, "%s %s cpu", shape, gpuml_dtype_name(t->dtype));
    return buf;
}

/* ---- copies ----------------------------------------------------------- */
gpuml_status gpuml_memcpy(gpuml_ctx *ctx, void *dst, gpuml_device dst_dev, const void *src,
                          gpuml_device src_dev, size_t n, const char *fn)
{
    if (n == 0)
        return GPUML_OK;
    bool dc = dst_dev.type == GPUML_DEVICE_CUDA, sc = src_dev.type == GPUML_DEVICE_CUDA;
    if (!dc && !sc) {
        memmove(dst, src, n);
        return GPUML_OK;
    }
    if (!gpuml_on_cuda(ctx))
        return gpuml_fail(ctx, GPUML_ERR_DEVICE_MISMATCH, fn,
                          "a CUDA tensor cannot be copied through a CPU context; use a CUDA context");
    gpuml_copy_kind kind = dc && sc ? GPUML_COPY_D2D : dc ? GPUML_COPY_H2D : GPUML_COPY_D2H;
    return gpuml_cuda_rt_memcpy(ctx, dst, src, n, kind, fn);
}

gpuml_status gpuml_memzero(gpuml_ctx *ctx, void *dst, size_t n, const char *fn)
{
    if (n == 0)
        return GPUML_OK;
    if (!gpuml_on_cuda(ctx)) {
        memset(dst, 0, n);
        return GPUML_OK;
    }
    return gpuml_cuda_rt_memset(ctx, dst, 0, n, fn);
}
