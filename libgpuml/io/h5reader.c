/* gpuml_h5_reader: validated reads of tensors and attributes. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/filesum.h"
#include "io/h5.h"

/* Bounds on what an attribute or a group listing may make us allocate. */
#define IO_MAX_ATTR_BYTES (64u << 20)
#define IO_MAX_ATTR_COUNT (1u << 24)
#define IO_MAX_MEMBERS (1u << 22)

gpuml_status io_file_open(const char *path, hid_t *out, const char *fn)
{
    if (!path || !path[0])
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'path' is %s", path ? "empty" : "NULL");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        return gpuml_fail(NULL, GPUML_ERR_IO, fn, "cannot open '%s': %s", path, strerror(e));
    }
    struct stat sb;
    int se = fstat(fd, &sb);
    close(fd);
    if (se != 0 || !S_ISREG(sb.st_mode))
        return gpuml_fail(NULL, GPUML_ERR_IO, fn, "'%s' is not a regular file", path);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' is not an HDF5 file", path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        fapl = -1;
    }
    hid_t f = fapl < 0 ? -1 : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    gpuml_status st = GPUML_OK;
    if (f < 0) /* before any other HDF5 call, which would clear HDF5's error stack */
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "cannot open '%s' (damaged or truncated HDF5 file?)", path);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (st == GPUML_OK)
        *out = f;
    return st;
}

void io_file_guard_init(hid_t file, io_file_guard *g)
{
    g->fd = -1;
    g->size = 0;
    hid_t fapl = H5Fget_access_plist(file);
    void *handle = NULL;
    struct stat sb;
    if (fapl >= 0 && H5Fget_vfd_handle(file, fapl, &handle) >= 0 && handle && fstat(*(int *)handle, &sb) == 0) {
        g->fd = *(int *)handle;
        g->size = (long long)sb.st_size;
    }
    if (fapl >= 0)
        H5Pclose(fapl);
    H5Eclear2(H5E_DEFAULT);
}

gpuml_status io_file_check(const io_file_guard *g, const char *fname, const char *fn)
{
    struct stat sb;
    if (g->fd < 0 || fstat(g->fd, &sb) != 0 || (long long)sb.st_size >= g->size)
        return GPUML_OK;
    return gpuml_fail(NULL, GPUML_ERR_IO, fn, "file '%s' was cut short while open (%lld bytes, was %lld)", fname,
                      (long long)sb.st_size, g->size);
}

static gpuml_status open_locked(const char *path, gpuml_h5_reader **out, const char *fn)
{
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    hid_t f = -1;
    GPUML_TRY(io_file_open(path, &f, fn));
    gpuml_h5_reader *r = calloc(1, sizeof *r);
    if (r)
        r->path = malloc(strlen(path) + 1);
    if (!r || !r->path) {
        free(r);
        H5Fclose(f);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the reader");
    }
    strcpy(r->path, path);
    r->file = f;
    io_file_guard_init(f, &r->guard);
    *out = r;
    return GPUML_OK;
}

/* The checksum is checked with plain file I/O, outside the HDF5 lock and
 * before HDF5 sees a byte of the file. */
gpuml_status gpuml_h5_reader_open(const char *path, gpuml_h5_reader **out)
{
    static const char fn[] = "gpuml_h5_reader_open";
    if (out)
        *out = NULL;
    if (path && path[0]) {
        bool verified;
        GPUML_TRY(io_sum_check(path, &verified, fn));
    }
    IO_LOCKED_RETURN(open_locked(path, out, fn));
}

gpuml_status io_reader_open_verified(const gpuml_ctx *ctx, bool require, const char *path, gpuml_h5_reader **out,
                                     const char *fn)
{
    *out = NULL;
    if (!path || !path[0])
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'path' is %s", path ? "empty" : "NULL");
    GPUML_TRY(io_sum_verify(ctx, require, path, fn));
    IO_LOCKED_RETURN(open_locked(path, out, fn));
}

gpuml_status gpuml_file_verify(const char *path, int *verified)
{
    static const char fn[] = "gpuml_file_verify";
    if (!path || !path[0] || !verified)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is %s", verified ? "path" : "verified",
                          verified && path ? "empty" : "NULL");
    bool v = false;
    gpuml_status st = io_sum_check(path, &v, fn);
    *verified = v;
    return st;
}

void gpuml_h5_reader_close(gpuml_h5_reader *r)
{
    if (!r)
        return;
    io_h5_guard g;
    io_h5_lock(&g);
    H5Fclose(r->file);
    io_h5_unlock(&g);
    free(r->path);
    free(r);
}

static gpuml_status kind_locked(gpuml_h5_reader *r, const char *path, gpuml_h5_kind *out, const char *fn)
{
    if (!r || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", r ? "out" : "r");
    char p[IO_PATH_MAX];
    GPUML_TRY(io_path_normalize(fn, "path", path, p));
    return io_h5_kind(r->file, p, out, r->path, fn);
}

gpuml_status gpuml_h5_reader_kind(gpuml_h5_reader *r, const char *path, gpuml_h5_kind *out)
{
    IO_LOCKED_RETURN(kind_locked(r, path, out, "gpuml_h5_reader_kind"));
}

/* Open and validate the dataset `name`; p receives the normalized path. */
static gpuml_status open_dataset(gpuml_h5_reader *r, const char *name, char p[IO_PATH_MAX], hid_t *d, io_dsinfo *info,
                                 const char *fn)
{
    if (!r)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'r' is NULL");
    GPUML_TRY(io_path_normalize(fn, "name", name, p));
    GPUML_TRY(io_h5_open(r->file, p, GPUML_H5_DATASET, d, r->path, fn));
    gpuml_status st = io_h5_inspect(*d, info, r->path, p, fn);
    if (st != GPUML_OK)
        H5Dclose(*d);
    return st;
}

static gpuml_status info_locked(gpuml_h5_reader *r, const char *name, gpuml_dtype *dtype, int *ndim, int64_t *shape,
                                const char *fn)
{
    if (!dtype || !ndim || !shape)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "an output argument is NULL");
    char p[IO_PATH_MAX];
    hid_t d;
    io_dsinfo info;
    GPUML_TRY(open_dataset(r, name, p, &d, &info, fn));
    H5Dclose(d);
    *dtype = info.dtype;
    *ndim = info.ndim;
    for (int i = 0; i < info.ndim; i++)
        shape[i] = info.shape[i];
    return GPUML_OK;
}

gpuml_status gpuml_h5_reader_info(gpuml_h5_reader *r, const char *name, gpuml_dtype *dtype, int *ndim,
                                  int64_t shape[GPUML_MAX_DIMS])
{
    IO_LOCKED_RETURN(info_locked(r, name, dtype, ndim, shape, "gpuml_h5_reader_info"));
}

/* Read the whole (validated) dataset into host memory buf. */
static gpuml_status read_all(gpuml_h5_reader *r, hid_t d, const io_dsinfo *info, void *buf, const char *p,
                             const char *fn)
{
    if (info->nbytes == 0)
        return GPUML_OK;
    GPUML_TRY(io_file_check(&r->guard, r->path, fn));
    hid_t mt = io_h5_read_type(d, info->dtype);
    if (mt < 0)
        return io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "file '%s': dataset '%s': cannot make its memory type", r->path, p);
    gpuml_status st = GPUML_OK;
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read dataset '%s' (damaged data?)", r->path, p);
    H5Tclose(mt);
    GPUML_TRY(st);
    if (info->dtype == GPUML_BOOL)
        return io_check_bool(buf, info->nbytes, r->path, p, fn);
    return GPUML_OK;
}

static gpuml_status check_device(gpuml_ctx *ctx, const gpuml_tensor *t, const char *fn)
{
    if (t->device.type == GPUML_DEVICE_CUDA && (!ctx || !gpuml_on_cuda(ctx) || ctx->device.index != t->device.index))
        return gpuml_fail(ctx, GPUML_ERR_DEVICE_MISMATCH, fn,
                          "argument 'dst' is on cuda:%d: pass a CUDA context on that device", t->device.index);
    return GPUML_OK;
}

static gpuml_status read_locked(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *name, gpuml_tensor *dst,
                                const char *fn)
{
    if (!dst)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'dst' is NULL");
    GPUML_TRY(check_device(ctx, dst, fn));
    char p[IO_PATH_MAX];
    hid_t d;
    io_dsinfo info;
    GPUML_TRY(open_dataset(r, name, p, &d, &info, fn));
    bool same = info.dtype == dst->dtype && info.ndim == dst->ndim;
    for (int i = 0; same && i < info.ndim; i++)
        same = info.shape[i] == dst->shape[i];
    gpuml_status st = GPUML_OK;
    if (!same) {
        char a[160], b[160];
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s' is %s %s, expected %s %s", r->path, p,
                        gpuml_shape_str(info.ndim, info.shape, a, sizeof a), gpuml_dtype_name(info.dtype),
                        gpuml_shape_str(dst->ndim, dst->shape, b, sizeof b), gpuml_dtype_name(dst->dtype));
        goto out;
    }
    if (info.nbytes == 0)
        goto out;
    /* Through a host buffer, so that dst is untouched if the read fails
     * half-way (a checksum mismatch in a later chunk). */
    void *host = malloc(info.nbytes);
    if (!host) {
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate %zu bytes for '%s'", info.nbytes, p);
        goto out;
    }
    st = read_all(r, d, &info, host, p, fn);
    if (st == GPUML_OK) {
        if (dst->device.type == GPUML_DEVICE_CPU)
            memcpy(dst->data, host, info.nbytes);
        else
            st = gpuml_tensor_copy_from_host(ctx, dst, host, info.nbytes);
    }
    free(host);
out:
    H5Dclose(d);
    return st;
}

gpuml_status gpuml_h5_reader_read(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *name, gpuml_tensor *dst)
{
    io_h5_guard g;
    io_h5_lock(&g);
    gpuml_status st = read_locked(r, ctx, name, dst, "gpuml_h5_reader_read");
    io_h5_unlock(&g);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(ctx);
    return st;
}

static gpuml_status read_new_locked(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *name, gpuml_dtype dtype, int ndim,
                                    const int64_t *shape, gpuml_tensor **out, const char *fn)
{
    if (!ctx || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ctx ? "out" : "ctx");
    *out = NULL;
    if (gpuml_dtype_size(dtype) == 0 || ndim < 0 || ndim > GPUML_MAX_DIMS)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "dtype %d / ndim %d is invalid", (int)dtype, ndim);
    char p[IO_PATH_MAX];
    hid_t d;
    io_dsinfo info;
    GPUML_TRY(open_dataset(r, name, p, &d, &info, fn));
    bool ok = info.dtype == dtype && info.ndim == ndim;
    for (int i = 0; ok && shape && i < ndim; i++)
        ok = shape[i] < 0 || shape[i] == info.shape[i];
    gpuml_status st = GPUML_OK;
    gpuml_tensor *t = NULL;
    void *host = NULL;
    if (!ok) {
        char a[160], b[160];
        int64_t want[GPUML_MAX_DIMS];
        for (int i = 0; i < ndim; i++)
            want[i] = shape ? shape[i] : -1;
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s' is %s %s, expected %s %s (-1: any)",
                        r->path, p, gpuml_shape_str(info.ndim, info.shape, a, sizeof a), gpuml_dtype_name(info.dtype),
                        gpuml_shape_str(ndim, want, b, sizeof b), gpuml_dtype_name(dtype));
        goto out;
    }
    st = gpuml_tensor_create(ctx, dtype, ndim, info.shape, &t);
    if (st != GPUML_OK || info.nbytes == 0)
        goto out;
    if (gpuml_on_cuda(ctx)) {
        host = malloc(info.nbytes);
        if (!host) {
            st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate %zu bytes for '%s'", info.nbytes, p);
            goto out;
        }
    }
    st = read_all(r, d, &info, host ? host : t->data, p, fn);
    if (st == GPUML_OK && host)
        st = gpuml_tensor_copy_from_host(ctx, t, host, info.nbytes);
out:
    free(host);
    H5Dclose(d);
    if (st != GPUML_OK)
        gpuml_tensor_destroy(t);
    else
        *out = t;
    return st;
}

gpuml_status gpuml_h5_reader_read_new(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *name, gpuml_dtype dtype,
                                      int ndim, const int64_t *shape, gpuml_tensor **out)
{
    io_h5_guard g;
    io_h5_lock(&g);
    gpuml_status st = read_new_locked(r, ctx, name, dtype, ndim, shape, out, "gpuml_h5_reader_read_new");
    io_h5_unlock(&g);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(ctx);
    return st;
}

/* ---- attributes ------------------------------------------------------- */

typedef struct {
    hid_t attr, type, space;
    char obj[IO_PATH_MAX];
    const char *name;
    size_t n; /* number of elements: 1 for a scalar */
} attr_handle;

static void attr_close(attr_handle *a)
{
    if (a->space >= 0)
        H5Sclose(a->space);
    if (a->type >= 0)
        H5Tclose(a->type);
    if (a->attr >= 0)
        H5Aclose(a->attr);
}

/* Open attribute `name` of `obj`, with its type, and an element count from
 * a scalar or 1-D dataspace. */
static gpuml_status attr_open(gpuml_h5_reader *r, const char *obj, const char *name, attr_handle *a, const char *fn)
{
    a->attr = a->type = a->space = -1;
    a->name = name;
    if (!r || !name)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", r ? "name" : "r");
    GPUML_TRY(io_path_normalize(fn, "obj", obj ? obj : "/", a->obj));
    gpuml_h5_kind k;
    GPUML_TRY(io_h5_kind(r->file, a->obj, &k, r->path, fn));
    if (k == GPUML_H5_NONE)
        return gpuml_fail(NULL, GPUML_ERR_NOT_FOUND, fn, "file '%s' has no object '%s'", r->path, a->obj);
    if (k == GPUML_H5_OTHER)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': '%s' is neither a group nor a dataset", r->path,
                          a->obj);
    hid_t o = H5Oopen(r->file, a->obj, H5P_DEFAULT);
    if (o < 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot open '%s'", r->path, a->obj);
    htri_t ex = H5Aexists(o, name);
    if (ex > 0)
        a->attr = H5Aopen(o, name, H5P_DEFAULT);
    gpuml_status st = GPUML_OK;
    if (ex == 0)
        st = gpuml_fail(NULL, GPUML_ERR_NOT_FOUND, fn, "file '%s': '%s' has no attribute '%s'", r->path, a->obj, name);
    else if (a->attr < 0 || (a->type = H5Aget_type(a->attr)) < 0 || (a->space = H5Aget_space(a->attr)) < 0)
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot open attribute '%s' of '%s'", r->path, name,
                        a->obj);
    H5Oclose(o);
    if (st == GPUML_OK) {
        H5S_class_t sc = H5Sget_simple_extent_type(a->space);
        int nd = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(a->space) : sc == H5S_SCALAR ? 0 : -1;
        hsize_t dim = 1;
        if (nd == 1 && H5Sget_simple_extent_dims(a->space, &dim, NULL) < 0)
            nd = -1;
        if (nd < 0 || nd > 1 || dim > IO_MAX_ATTR_COUNT)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                            "file '%s': attribute '%s' of '%s' is not a scalar or a 1-D array of sane length", r->path,
                            name, a->obj);
        a->n = (size_t)dim;
    }
    if (st != GPUML_OK)
        attr_close(a);
    return st;
}

static gpuml_status attr_type_error(gpuml_h5_reader *r, attr_handle *a, const char *want, const char *fn)
{
    char why[96];
    H5T_class_t c = H5Tget_class(a->type);
    snprintf(why, sizeof why, "HDF5 class %d", (int)c);
    const char *cn = c == H5T_INTEGER ? "an integer" : c == H5T_FLOAT ? "a float" : c == H5T_STRING ? "a string" : why;
    return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s' is %s, expected %s", r->path,
                      a->name, a->obj, cn, want);
}

static gpuml_status read_strings(gpuml_h5_reader *r, attr_handle *a, gpuml_strings *out, const char *fn)
{
    if (H5Tget_class(a->type) != H5T_STRING)
        return attr_type_error(r, a, "a string", fn);
    gpuml_strings s = {a->n, calloc(a->n ? a->n : 1, sizeof(char *))};
    if (!s.items)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate %zu strings", a->n);
    gpuml_status st = GPUML_OK;
    hid_t mt = H5Tcopy(H5T_C_S1);
    htri_t var = H5Tis_variable_str(a->type);
    size_t fsize = H5Tget_size(a->type);
    if (mt < 0 || var < 0 || H5Tset_cset(mt, H5Tget_cset(a->type)) < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s': bad string type", r->path,
                        a->name, a->obj);
    } else if (var) {
        char **p = calloc(a->n ? a->n : 1, sizeof(char *));
        if (!p || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a->attr, mt, p) < 0) {
            st = p ? io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read attribute '%s' of '%s'", r->path,
                                a->name, a->obj)
                   : gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
        } else {
            size_t total = 0;
            for (size_t i = 0; i < a->n && st == GPUML_OK; i++) {
                size_t len = p[i] ? strlen(p[i]) : 0;
                total += len;
                if (total > IO_MAX_ATTR_BYTES)
                    st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s' is absurdly long",
                                    r->path, a->name, a->obj);
                else if (!(s.items[i] = malloc(len + 1)))
                    st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
                else
                    memcpy(s.items[i], p[i] ? p[i] : "", len + 1);
            }
            H5Dvlen_reclaim(mt, a->space, H5P_DEFAULT, p);
        }
        free(p);
    } else if (fsize == 0 || fsize > IO_MAX_ATTR_BYTES / (a->n ? a->n : 1)) {
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s' has an absurd size", r->path,
                        a->name, a->obj);
    } else {
        H5T_str_t pad = H5Tget_strpad(a->type);
        char *buf = malloc(fsize * (a->n ? a->n : 1));
        if (!buf || H5Tset_size(mt, fsize) < 0 || H5Tset_strpad(mt, pad) < 0 || H5Aread(a->attr, mt, buf) < 0) {
            st = buf ? io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read attribute '%s' of '%s'", r->path,
                                  a->name, a->obj)
                     : gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
        } else {
            for (size_t i = 0; i < a->n && st == GPUML_OK; i++) {
                const char *src = buf + i * fsize;
                size_t len = 0;
                while (len < fsize && src[len])
                    len++;
                if (pad == H5T_STR_SPACEPAD)
                    while (len > 0 && src[len - 1] == ' ')
                        len--;
                if (!(s.items[i] = malloc(len + 1))) {
                    st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
                } else {
                    memcpy(s.items[i], src, len);
                    s.items[i][len] = '\0';
                }
            }
        }
        free(buf);
    }
    if (mt >= 0)
        H5Tclose(mt);
    if (st != GPUML_OK)
        gpuml_strings_free(&s);
    else
        *out = s;
    return st;
}

static gpuml_status attr_strings_locked(gpuml_h5_reader *r, const char *obj, const char *name, gpuml_strings *out,
                                        const char *fn)
{
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    attr_handle a;
    GPUML_TRY(attr_open(r, obj, name, &a, fn));
    gpuml_status st = read_strings(r, &a, out, fn);
    attr_close(&a);
    return st;
}

gpuml_status gpuml_h5_reader_attr_strings(gpuml_h5_reader *r, const char *obj, const char *name, gpuml_strings *out)
{
    IO_LOCKED_RETURN(attr_strings_locked(r, obj, name, out, "gpuml_h5_reader_attr_strings"));
}

static gpuml_status attr_string_locked(gpuml_h5_reader *r, const char *obj, const char *name, char *buf, size_t size,
                                       size_t *len, const char *fn)
{
    if (!buf && size)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'buf' is NULL but size is %zu", size);
    attr_handle a;
    GPUML_TRY(attr_open(r, obj, name, &a, fn));
    gpuml_strings s = {0, NULL};
    gpuml_status st = read_strings(r, &a, &s, fn);
    if (st == GPUML_OK && s.count != 1)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s' holds %zu strings, expected 1",
                        r->path, name, a.obj, s.count);
    attr_close(&a);
    if (st != GPUML_OK) {
        gpuml_strings_free(&s);
        return st;
    }
    size_t n = strlen(s.items[0]);
    if (len)
        *len = n;
    if (n + 1 > size)
        st = gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "attribute '%s' needs a buffer of %zu bytes, got %zu",
                        name, n + 1, size);
    else
        memcpy(buf, s.items[0], n + 1);
    gpuml_strings_free(&s);
    return st;
}

gpuml_status gpuml_h5_reader_attr_string(gpuml_h5_reader *r, const char *obj, const char *name, char *buf,
                                         size_t size, size_t *len)
{
    IO_LOCKED_RETURN(attr_string_locked(r, obj, name, buf, size, len, "gpuml_h5_reader_attr_string"));
}

static gpuml_status attr_i64_locked(gpuml_h5_reader *r, const char *obj, const char *name, int64_t *values,
                                    size_t cap, size_t *count, bool scalar, const char *fn)
{
    if (!values && cap)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'values' is NULL");
    attr_handle a;
    GPUML_TRY(attr_open(r, obj, name, &a, fn));
    gpuml_status st = GPUML_OK;
    int64_t *tmp = NULL;
    if (H5Tget_class(a.type) != H5T_INTEGER) {
        st = attr_type_error(r, &a, "an integer", fn);
        goto out;
    }
    if (count)
        *count = a.n;
    if (scalar && a.n != 1) {
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s' holds %zu values, expected 1",
                        r->path, name, a.obj, a.n);
        goto out;
    }
    if (a.n > cap) {
        st = gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                        "attribute '%s' of '%s' holds %zu values, more than cap = %zu", name, a.obj, a.n, cap);
        goto out;
    }
    if (a.n == 0)
        goto out;
    tmp = malloc(a.n * sizeof *tmp);
    if (!tmp) {
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
        goto out;
    }
    /* Unsigned 64-bit values above INT64_MAX would be clipped silently by
     * HDF5's conversion: read them as they are and check. */
    bool u64 = H5Tget_sign(a.type) == H5T_SGN_NONE && H5Tget_size(a.type) >= 8;
    if (H5Aread(a.attr, u64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64, tmp) < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read attribute '%s' of '%s' as int64", r->path,
                        name, a.obj);
        goto out;
    }
    for (size_t i = 0; u64 && i < a.n; i++)
        if ((uint64_t)tmp[i] > (uint64_t)INT64_MAX) {
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s' = %" PRIu64
                            " does not fit int64", r->path, name, a.obj, (uint64_t)tmp[i]);
            goto out;
        }
    memcpy(values, tmp, a.n * sizeof *tmp);
out:
    free(tmp);
    attr_close(&a);
    return st;
}

gpuml_status gpuml_h5_reader_attr_i64(gpuml_h5_reader *r, const char *obj, const char *name, int64_t *out)
{
    static const char fn[] = "gpuml_h5_reader_attr_i64";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    IO_LOCKED_RETURN(attr_i64_locked(r, obj, name, out, 1, NULL, true, fn));
}

gpuml_status gpuml_h5_reader_attr_i64_array(gpuml_h5_reader *r, const char *obj, const char *name, int64_t *values,
                                            size_t cap, size_t *count)
{
    IO_LOCKED_RETURN(attr_i64_locked(r, obj, name, values, cap, count, false, "gpuml_h5_reader_attr_i64_array"));
}

static gpuml_status attr_f64_locked(gpuml_h5_reader *r, const char *obj, const char *name, double *out, const char *fn)
{
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    attr_handle a;
    GPUML_TRY(attr_open(r, obj, name, &a, fn));
    gpuml_status st = GPUML_OK;
    double v;
    if (H5Tget_class(a.type) != H5T_FLOAT)
        st = attr_type_error(r, &a, "a float", fn);
    else if (a.n != 1)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': attribute '%s' of '%s' holds %zu values, expected 1",
                        r->path, name, a.obj, a.n);
    else if (H5Aread(a.attr, H5T_NATIVE_DOUBLE, &v) < 0)
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read attribute '%s' of '%s'", r->path, name,
                        a.obj);
    else
        *out = v;
    attr_close(&a);
    return st;
}

gpuml_status gpuml_h5_reader_attr_f64(gpuml_h5_reader *r, const char *obj, const char *name, double *out)
{
    IO_LOCKED_RETURN(attr_f64_locked(r, obj, name, out, "gpuml_h5_reader_attr_f64"));
}

/* ---- listing ---------------------------------------------------------- */

typedef struct {
    gpuml_strings s;
    size_t cap;
    gpuml_status st;
} list_state;

static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g, (void)info;
    list_state *ls = data;
    if (ls->s.count >= IO_MAX_MEMBERS) {
        ls->st = GPUML_ERR_FORMAT;
        return 1;
    }
    if (ls->s.count == ls->cap) {
        size_t nc = ls->cap ? 2 * ls->cap : 16;
        char **ni = realloc(ls->s.items, nc * sizeof *ni);
        if (!ni) {
            ls->st = GPUML_ERR_OUT_OF_MEMORY;
            return 1;
        }
        ls->s.items = ni;
        ls->cap = nc;
    }
    size_t n = strlen(name) + 1;
    char *c = malloc(n);
    if (!c) {
        ls->st = GPUML_ERR_OUT_OF_MEMORY;
        return 1;
    }
    memcpy(c, name, n);
    ls->s.items[ls->s.count++] = c;
    return 0;
}

static gpuml_status list_locked(gpuml_h5_reader *r, const char *group, gpuml_strings *out, const char *fn)
{
    if (!r || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", r ? "out" : "r");
    char p[IO_PATH_MAX];
    GPUML_TRY(io_path_normalize(fn, "group", group ? group : "/", p));
    hid_t g;
    GPUML_TRY(io_h5_open(r->file, p, GPUML_H5_GROUP, &g, r->path, fn));
    list_state ls = {{0, NULL}, 0, GPUML_OK};
    hsize_t idx = 0;
    herr_t e = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &ls);
    gpuml_status st = GPUML_OK;
    if (ls.st == GPUML_ERR_OUT_OF_MEMORY)
        st = gpuml_fail(NULL, ls.st, fn, "out of memory listing '%s'", p);
    else if (ls.st != GPUML_OK)
        st = gpuml_fail(NULL, ls.st, fn, "file '%s': group '%s' has more than %u members", r->path, p, IO_MAX_MEMBERS);
    else if (e < 0)
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot list group '%s'", r->path, p);
    H5Gclose(g);
    if (st != GPUML_OK)
        gpuml_strings_free(&ls.s);
    else
        *out = ls.s;
    return st;
}

gpuml_status gpuml_h5_reader_list(gpuml_h5_reader *r, const char *group, gpuml_strings *out)
{
    IO_LOCKED_RETURN(list_locked(r, group, out, "gpuml_h5_reader_list"));
}
