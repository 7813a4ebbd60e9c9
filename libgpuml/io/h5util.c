/* HDF5 lock, error text, path and type validation shared by the io part. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"

/* The one piece of process-wide state in gpuml's io: serial HDF5 must not
 * be entered by two threads at once. Recursive, so that a public function
 * may call another while holding it. */
static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t h5_mutex;

static void h5_mutex_init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&h5_mutex, &a);
    pthread_mutexattr_destroy(&a);
}

void io_h5_lock(io_h5_guard *g)
{
    pthread_once(&h5_once, h5_mutex_init);
    pthread_mutex_lock(&h5_mutex);
    g->func = NULL;
    g->data = NULL;
    if (H5Eget_auto2(H5E_DEFAULT, &g->func, &g->data) < 0) {
        g->func = NULL;
        g->data = NULL;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void io_h5_unlock(io_h5_guard *g)
{
    H5Eset_auto2(H5E_DEFAULT, g->func, g->data);
    pthread_mutex_unlock(&h5_mutex);
}

typedef struct {
    char *buf;
    size_t size, used;
    int entries;
} walk_state;

/* Walked from the innermost (most specific) entry outwards; the first few
 * say what went wrong, the rest only repeat it at each API level. */
static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data)
{
    (void)n;
    walk_state *w = data;
    if (w->entries >= 3 || w->used + 8 >= w->size)
        return 0;
    const char *desc = (err->desc && err->desc[0]) ? err->desc : err->func_name;
    if (!desc)
        return 0;
    if (w->entries && strstr(w->buf, desc))
        return 0;
    int k = snprintf(w->buf + w->used, w->size - w->used, "%s%s", w->entries ? "; " : "", desc);
    if (k > 0)
        w->used += (size_t)k < w->size - w->used ? (size_t)k : w->size - w->used - 1;
    w->entries++;
    return 0;
}

gpuml_status io_h5_fail(const gpuml_ctx *ctx, gpuml_status status, const char *fn, const char *fmt, ...)
{
    char body[GPUML_MSG_MAX - 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    char stack[400] = "";
    walk_state w = {stack, sizeof stack, 0, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    if (w.entries)
        return gpuml_fail(ctx, status, fn, "%s (HDF5: %s)", body, stack);
    return gpuml_fail(ctx, status, fn, "%s", body);
}

gpuml_status io_path_normalize(const char *fn, const char *what, const char *path, char buf[IO_PATH_MAX])
{
    if (!path)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", what);
    size_t n = strlen(path);
    if (n == 0)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is empty", what);
    if (n + 2 > IO_PATH_MAX)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is longer than %d characters", what,
                          IO_PATH_MAX - 2);
    snprintf(buf, IO_PATH_MAX, "%s%s", path[0] == '/' ? "" : "/", path);
    if (!strcmp(buf, "/"))
        return GPUML_OK;
    /* Walk the components after the leading '/'. */
    const char *p = buf + 1;
    while (1) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "argument '%s' = '%s' has an empty, '.' or '..' component", what, path);
        if (!e)
            break;
        p = e + 1;
    }
    return GPUML_OK;
}

static hid_t half_type(unsigned epos, unsigned esize, unsigned msize, unsigned ebias)
{
    hid_t t = H5Tcopy(H5T_NATIVE_FLOAT);
    if (t < 0)
        return t;
    if (H5Tset_fields(t, 15, epos, esize, 0, msize) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, ebias) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

hid_t io_h5_type(gpuml_dtype dtype)
{
    switch (dtype) {
    case GPUML_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
    case GPUML_F64: return H5Tcopy(H5T_NATIVE_DOUBLE);
    case GPUML_I32: return H5Tcopy(H5T_NATIVE_INT32);
    case GPUML_I64: return H5Tcopy(H5T_NATIVE_INT64);
    case GPUML_U8: return H5Tcopy(H5T_NATIVE_UINT8);
    case GPUML_F16: return half_type(10, 5, 10, 15);  /* IEEE binary16, as numpy/h5py float16 */
    case GPUML_BF16: return half_type(7, 8, 7, 127);  /* binary32's upper half */
    case GPUML_BOOL: {
        /* h5py stores numpy bool as this enum; reading it back gives bool. */
        hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
        int8_t f = 0, tr = 1;
        if (t >= 0 && (H5Tenum_insert(t, "FALSE", &f) < 0 || H5Tenum_insert(t, "TRUE", &tr) < 0)) {
            H5Tclose(t);
            return -1;
        }
        return t;
    }
    default: return -1;
    }
}

hid_t io_h5_read_type(hid_t dset, gpuml_dtype dtype)
{
    if (dtype != GPUML_BOOL)
        return io_h5_type(dtype);
    hid_t ft = H5Dget_type(dset);
    if (ft < 0)
        return ft;
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    H5Tclose(ft);
    return mt;
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

/* Map a file datatype to a gpuml dtype; why receives the reason when not. */
static bool file_dtype(hid_t t, gpuml_dtype *out, char *why, size_t whysize)
{
    H5T_class_t c = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    if (c == H5T_FLOAT) {
        if (size == 4) { *out = GPUML_F32; return true; }
        if (size == 8) { *out = GPUML_F64; return true; }
        if (size == 2) {
            size_t spos, epos, esize, mpos, msize;
            size_t ebias = H5Tget_ebias(t);
            if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 && mpos == 0) {
                if (epos == 10 && esize == 5 && msize == 10 && ebias == 15) { *out = GPUML_F16; return true; }
                if (epos == 7 && esize == 8 && msize == 7 && ebias == 127) { *out = GPUML_BF16; return true; }
            }
            snprintf(why, whysize, "a 16-bit float that is neither IEEE binary16 nor bfloat16");
            return false;
        }
        snprintf(why, whysize, "a %zu-byte float", size);
        return false;
    }
    if (c == H5T_INTEGER) {
        H5T_sign_t s = H5Tget_sign(t);
        if (s == H5T_SGN_2 && size == 4) { *out = GPUML_I32; return true; }
        if (s == H5T_SGN_2 && size == 8) { *out = GPUML_I64; return true; }
        if (s == H5T_SGN_NONE && size == 1) { *out = GPUML_U8; return true; }
        snprintf(why, whysize, "%s %zu-bit integer (gpuml has int32, int64, uint8)",
                 s == H5T_SGN_NONE ? "an unsigned" : "a signed", size * 8);
        return false;
    }
    if (c == H5T_ENUM && size == 1 && H5Tget_nmembers(t) == 2) {
        /* bool: members with values 0 and 1, whatever their names. */
        hid_t base = H5Tget_super(t);
        bool ok = base >= 0 && H5Tget_class(base) == H5T_INTEGER && H5Tget_size(base) == 1;
        for (unsigned i = 0; ok && i < 2; i++) {
            uint8_t v = 0xff;
            ok = H5Tget_member_value(t, i, &v) >= 0 && v == i;
        }
        if (base >= 0)
            H5Tclose(base);
        if (ok) {
            *out = GPUML_BOOL;
            return true;
        }
    }
    snprintf(why, whysize, "of HDF5 class %s (%zu bytes)", class_name(c), size);
    return false;
}

gpuml_status io_h5_kind(hid_t file, const char *path, gpuml_h5_kind *out, const char *fname, const char *fn)
{
    *out = GPUML_H5_NONE;
    if (!strcmp(path, "/")) {
        *out = GPUML_H5_GROUP;
        return GPUML_OK;
    }
    char prefix[IO_PATH_MAX];
    size_t n = strlen(path);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        htri_t ex = H5Lexists(file, prefix, H5P_DEFAULT);
        if (ex < 0)
            return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot look up '%s'", fname, prefix);
        if (ex == 0)
            return GPUML_OK;
        H5L_info_t li;
        if (H5Lget_info(file, prefix, &li, H5P_DEFAULT) < 0)
            return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read the link '%s'", fname, prefix);
        if (li.type != H5L_TYPE_HARD) {
            *out = GPUML_H5_OTHER;
            return GPUML_OK;
        }
        hid_t o = H5Oopen(file, prefix, H5P_DEFAULT);
        if (o < 0)
            return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot open '%s'", fname, prefix);
        H5I_type_t t = H5Iget_type(o);
        H5Oclose(o);
        gpuml_h5_kind k = t == H5I_GROUP ? GPUML_H5_GROUP : t == H5I_DATASET ? GPUML_H5_DATASET : GPUML_H5_OTHER;
        if (i == n) {
            *out = k;
            return GPUML_OK;
        }
        if (k != GPUML_H5_GROUP)
            return GPUML_OK; /* a dataset has no members: nothing further down */
    }
    return GPUML_OK;
}

gpuml_status io_h5_open(hid_t file, const char *path, gpuml_h5_kind want, hid_t *out, const char *fname,
                        const char *fn)
{
    gpuml_h5_kind k;
    GPUML_TRY(io_h5_kind(file, path, &k, fname, fn));
    const char *wname = want == GPUML_H5_GROUP ? "group" : "dataset";
    if (k == GPUML_H5_NONE)
        return gpuml_fail(NULL, GPUML_ERR_NOT_FOUND, fn, "file '%s' has no %s '%s'", fname, wname, path);
    if (k != want)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': '%s' is %s, expected a %s", fname, path,
                          k == GPUML_H5_GROUP ? "a group" : k == GPUML_H5_DATASET ? "a dataset"
                                                                                 : "a link or named type",
                          wname);
    hid_t o = want == GPUML_H5_GROUP ? H5Gopen2(file, path, H5P_DEFAULT) : H5Dopen2(file, path, H5P_DEFAULT);
    if (o < 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot open %s '%s'", fname, wname, path);
    *out = o;
    return GPUML_OK;
}

/* Largest expansion of HDF5's deflate (zlib) is about 1032:1; no filter HDF5
 * ships can turn fewer stored bytes into more data than this. */
#define IO_MAX_EXPANSION 1100

static gpuml_status check_storage(hid_t dset, size_t nbytes, const char *fname, const char *dname, const char *fn)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s': cannot read its properties",
                          fname, dname);
    gpuml_status st = GPUML_OK;
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int next = H5Pget_external_count(dcpl);
    int nf = H5Pget_nfilters(dcpl);
    bool shrinks = false;
    for (int i = 0; i < nf; i++) {
        unsigned flags;
        size_t nelem = 0;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelem, NULL, 0, NULL, NULL);
        if (id != H5Z_FILTER_FLETCHER32 && id != H5Z_FILTER_SHUFFLE)
            shrinks = true;
    }
    if (layout < 0 || nf < 0 || next < 0)
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s': cannot read its layout", fname, dname);
    else if (layout == H5D_VIRTUAL || next != 0)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                        "file '%s': dataset '%s' keeps its data in other files (virtual or external storage)", fname,
                        dname);
    H5Pclose(dcpl);
    if (st != GPUML_OK || nbytes == 0)
        return st;
    hsize_t stored = H5Dget_storage_size(dset);
    if (!shrinks && stored < nbytes)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                        "file '%s': dataset '%s' stores %llu bytes but its shape needs %zu "
                        "(truncated or never written)",
                        fname, dname, (unsigned long long)stored, nbytes);
    else if (shrinks && (nbytes - (nbytes < 65536 ? nbytes : 65536)) / IO_MAX_EXPANSION > stored)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                        "file '%s': dataset '%s' claims %zu bytes but stores only %llu compressed", fname, dname,
                        nbytes, (unsigned long long)stored);
    return st;
}

gpuml_status io_h5_inspect(hid_t dset, io_dsinfo *out, const char *fname, const char *dname, const char *fn)
{
    io_dsinfo info;
    memset(&info, 0, sizeof info);
    hid_t space = H5Dget_space(dset);
    if (space < 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s': cannot read its dataspace", fname,
                          dname);
    H5S_class_t sc = H5Sget_simple_extent_type(space);
    int nd = sc == H5S_SCALAR ? 0 : sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[H5S_MAX_RANK];
    if (nd > 0 && nd <= GPUML_MAX_DIMS && H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        nd = -2;
    gpuml_status st = GPUML_OK;
    if (nd == -1)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s' has a null dataspace (no data)", fname,
                        dname);
    else if (nd < 0)
        st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s': cannot read its shape", fname, dname);
    H5Sclose(space);
    GPUML_TRY(st);
    if (nd > GPUML_MAX_DIMS)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s' has rank %d, gpuml allows at most %d",
                          fname, dname, nd, GPUML_MAX_DIMS);
    info.ndim = nd;

    hid_t type = H5Dget_type(dset);
    if (type < 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s': cannot read its datatype", fname,
                          dname);
    char why[128];
    bool known = file_dtype(type, &info.dtype, why, sizeof why);
    H5Tclose(type);
    if (!known)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s' is %s, not a gpuml dtype", fname,
                          dname, why);

    uint64_t n = gpuml_dtype_size(info.dtype);
    bool empty = false;
    for (int i = 0; i < nd; i++) {
        if (dims[i] >= (UINT64_C(1) << 62))
            return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                              "file '%s': dataset '%s' has an absurd extent %llu on axis %d", fname, dname,
                              (unsigned long long)dims[i], i);
        info.shape[i] = (int64_t)dims[i];
        empty |= dims[i] == 0;
    }
    for (int i = 0; i < nd && !empty; i++) {
        if (dims[i] > (UINT64_C(1) << 62) / n) {
            char s[160];
            return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s' of shape %s is absurdly large",
                              fname, dname, gpuml_shape_str(nd, info.shape, s, sizeof s));
        }
        n *= dims[i];
    }
    if (!empty && n > SIZE_MAX / 2)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': dataset '%s' is too large for this machine",
                          fname, dname);
    info.nbytes = empty ? 0 : (size_t)n;
    GPUML_TRY(check_storage(dset, info.nbytes, fname, dname, fn));
    *out = info;
    return GPUML_OK;
}

gpuml_status io_check_bool(const void *data, size_t n, const char *fname, const char *dname, const char *fn)
{
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++)
        if (b[i] > 1)
            return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': bool dataset '%s' holds %u at element %zu",
                              fname, dname, (unsigned)b[i], i);
    return GPUML_OK;
}

void gpuml_strings_free(gpuml_strings *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->count; i++)
        free(s->items[i]);
    free(s->items);
    s->items = NULL;
    s->count = 0;
}
