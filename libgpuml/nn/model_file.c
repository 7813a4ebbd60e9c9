/* Model files (DESIGN.md section 7, layouts in nn/model_io.h) on the HDF5
 * layer of gpuml/io.h. Everything read is staged in temporaries and
 * validated before the model is touched, so a bad file changes nothing.
 * Files are checked against their whole-file checksum before HDF5 opens
 * them (io/filesum.h). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "nn/model_io.h"

#define INDEX_COLS (2 + GPUML_MAX_DIMS) /* offset, ndim, shape */
#define NAME_MAX_BYTES 160              /* "layer.param" and its separator */

/* One kind of tensor of a model: its parameters or its buffers. */
typedef struct {
    const char *root; /* "weights" or "buffers" */
    bool buffers;
    int n;
    gpuml_tensor *slab; /* the model's (may be NULL for buffers) */
} kind_t;

static kind_t kind_of(const gpuml_model *m, bool buffers)
{
    kind_t k = {buffers ? "buffers" : "weights", buffers,
                buffers ? gpuml_model_num_buffers(m) : gpuml_model_num_params(m),
                buffers ? gpuml_model_buffer_slab(m) : gpuml_model_param_slab(m)};
    return k;
}

/* Entry i of kind k: name, value view, offset (elements) in the slab. */
static void entry(const gpuml_model *m, const kind_t *k, int i, const char **name, gpuml_tensor **v, int64_t *offset)
{
    if (k->buffers) {
        gpuml_model_buffer(m, i, name, v);
        *offset = (int64_t)(((char *)gpuml_tensor_data(*v) - (char *)gpuml_tensor_data(k->slab)) / sizeof(float));
    } else {
        gpuml_model_param(m, i, name, v, NULL, NULL);
        *offset = gpuml_model_param_offset(m, i);
    }
}

/* "layer.param" -> "/<root>/layer/param" (layout 1) */
static void v1_path(char *buf, size_t size, const char *root, const char *name)
{
    snprintf(buf, size, "/%s/%s", root, name);
    char *dot = strchr(buf + strlen(root) + 2, '.');
    if (dot)
        *dot = '/';
}

/* ---- writing (layout 2) ------------------------------------------------------ */
static gpuml_status write_host(gpuml_h5_writer *w, const char *name, void *data, gpuml_dtype dtype, int ndim,
                               const int64_t *shape)
{
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    gpuml_tensor *t;
    GPUML_TRY(gpuml_tensor_wrap(data, host, dtype, ndim, shape, NULL, NULL, &t));
    gpuml_status st = gpuml_h5_writer_write(w, NULL, name, t);
    gpuml_tensor_destroy(t);
    return st;
}

static gpuml_status write_kind(gpuml_h5_writer *w, const gpuml_model *m, const kind_t *k)
{
    static const char fn[] = "gpuml_model_save";
    if (k->buffers && k->n == 0)
        return GPUML_OK;
    int64_t total = 0;
    size_t name_bytes = 0;
    for (int i = 0; i < k->n; i++) {
        const char *name;
        gpuml_tensor *v;
        int64_t off;
        entry(m, k, i, &name, &v, &off);
        total += gpuml_tensor_numel(v);
        name_bytes += strlen(name) + 1;
    }
    size_t slab_bytes = gpuml_tensor_nbytes(k->slab);
    float *slab = malloc(slab_bytes ? slab_bytes : 1), *values = malloc(total > 0 ? (size_t)total * 4 : 1);
    int64_t *index = calloc((size_t)k->n * INDEX_COLS + 1, sizeof *index);
    char *names = malloc(name_bytes + 1);
    gpuml_status st = GPUML_OK;
    if (!slab || !values || !index || !names)
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    if (st == GPUML_OK) /* one copy of the whole slab (synchronises on CUDA) */
        st = gpuml_tensor_copy_to_host(gpuml_model_ctx(m), k->slab, slab, slab_bytes);
    int64_t packed = 0;
    size_t at = 0;
    for (int i = 0; i < k->n && st == GPUML_OK; i++) {
        const char *name;
        gpuml_tensor *v;
        int64_t off;
        entry(m, k, i, &name, &v, &off);
        int64_t numel = gpuml_tensor_numel(v);
        memcpy(values + packed, slab + off, (size_t)numel * sizeof(float));
        int64_t *row = index + (size_t)i * INDEX_COLS;
        row[0] = packed;
        row[1] = gpuml_tensor_ndim(v);
        memcpy(row + 2, gpuml_tensor_shape(v), (size_t)gpuml_tensor_ndim(v) * sizeof *row);
        packed += numel;
        size_t len = strlen(name);
        memcpy(names + at, name, len);
        at += len;
        if (i + 1 < k->n)
            names[at++] = '\n';
    }
    char path[64];
    if (st == GPUML_OK) {
        snprintf(path, sizeof path, "/%s/values", k->root);
        st = write_host(w, path, values, GPUML_F32, 1, &total);
    }
    if (st == GPUML_OK) {
        snprintf(path, sizeof path, "/%s/index", k->root);
        st = write_host(w, path, index, GPUML_I64, 2, (int64_t[]){k->n, INDEX_COLS});
    }
    if (st == GPUML_OK) {
        snprintf(path, sizeof path, "/%s/names", k->root);
        st = write_host(w, path, names, GPUML_U8, 1, (int64_t[]){(int64_t)at});
    }
    free(slab);
    free(values);
    free(index);
    free(names);
    return st;
}

gpuml_status model_io_write(gpuml_h5_writer *w, const gpuml_model *m)
{
    GPUML_TRY(gpuml_h5_writer_set_attr_string(w, "/", "format", MODEL_FORMAT));
    GPUML_TRY(gpuml_h5_writer_set_attr_i64(w, "/", "format_version", MODEL_FORMAT_VERSION));
    GPUML_TRY(gpuml_h5_writer_set_attr_string(w, "/", "gpuml_version", gpuml_version()));
    GPUML_TRY(gpuml_h5_writer_set_attr_string(w, "/", "config", gpuml_model_config(m)));
    kind_t p = kind_of(m, false), b = kind_of(m, true);
    GPUML_TRY(write_kind(w, m, &p));
    return write_kind(w, m, &b);
}

gpuml_status gpuml_model_save(const gpuml_model *m, const char *path)
{
    static const char fn[] = "gpuml_model_save";
    if (!m || !path)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", m ? "path" : "m");
    gpuml_h5_writer *w;
    GPUML_TRY(gpuml_h5_writer_open(path, &w));
    gpuml_status st = model_io_write(w, m);
    if (st != GPUML_OK) {
        gpuml_h5_writer_abort(w);
        return st;
    }
    return gpuml_h5_writer_commit(w);
}

/* ---- reading ----------------------------------------------------------------- */
gpuml_status model_io_read_header(gpuml_h5_reader *r, const char *path, const char *fn, char **config,
                                  int64_t *version)
{
    char fmt[64];
    gpuml_status st = gpuml_h5_reader_attr_string(r, "/", "format", fmt, sizeof fmt, NULL);
    if (st != GPUML_OK || strcmp(fmt, MODEL_FORMAT) != 0)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' is not a gpuml model file (root attribute format != '%s')",
                          path, MODEL_FORMAT);
    GPUML_TRY(gpuml_h5_reader_attr_i64(r, "/", "format_version", version));
    if (*version < 1 || *version > MODEL_FORMAT_VERSION)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                          "'%s' has format_version %" PRId64 "; this gpuml reads versions 1 to %d", path, *version,
                          MODEL_FORMAT_VERSION);
    size_t len = 0;
    st = gpuml_h5_reader_attr_string(r, "/", "config", NULL, 0, &len);
    if (st != GPUML_OK && st != GPUML_ERR_INVALID_ARGUMENT)
        return st;
    if (len == 0 || len > ((size_t)64 << 20))
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': the config attribute is empty or absurdly long", path);
    *config = malloc(len + 1);
    if (!*config)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    st = gpuml_h5_reader_attr_string(r, "/", "config", *config, len + 1, NULL);
    if (st != GPUML_OK) {
        free(*config);
        *config = NULL;
    }
    return st;
}

/* Layout 1: counts the datasets under /<root>/<layer>/<name>; any other
 * structure is an error. */
static gpuml_status v1_count(gpuml_h5_reader *r, const char *root, const char *path, const char *fn, int64_t *count)
{
    *count = 0;
    gpuml_h5_kind kind;
    char g[256];
    snprintf(g, sizeof g, "/%s", root);
    GPUML_TRY(gpuml_h5_reader_kind(r, g, &kind));
    if (kind == GPUML_H5_NONE)
        return GPUML_OK;
    gpuml_strings layers = {0};
    GPUML_TRY(gpuml_h5_reader_list(r, g, &layers));
    gpuml_status st = GPUML_OK;
    for (size_t i = 0; i < layers.count && st == GPUML_OK; i++) {
        gpuml_strings members = {0};
        char lg[256];
        snprintf(lg, sizeof lg, "/%s/%s", root, layers.items[i]);
        st = gpuml_h5_reader_list(r, lg, &members);
        if (st != GPUML_OK) {
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': %s is not a group of tensors", path, lg);
            break;
        }
        *count += (int64_t)members.count;
        gpuml_strings_free(&members);
    }
    gpuml_strings_free(&layers);
    return st;
}

static gpuml_status v1_stage_kind(gpuml_h5_reader *r, const gpuml_model *m, const kind_t *k, float *dst,
                                  const char *path, const char *fn)
{
    int64_t count;
    GPUML_TRY(v1_count(r, k->root, path, fn, &count));
    if (count != k->n)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds %" PRId64 " %s tensors, the model has %d", path,
                          count, k->root, k->n);
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    char dpath[256];
    for (int i = 0; i < k->n; i++) {
        const char *name;
        gpuml_tensor *v, view;
        int64_t off;
        entry(m, k, i, &name, &v, &off);
        gpuml_tensor_init_view(&view, dst + off, host, GPUML_F32, gpuml_tensor_ndim(v), gpuml_tensor_shape(v));
        v1_path(dpath, sizeof dpath, k->root, name);
        GPUML_TRY(gpuml_h5_reader_read(r, NULL, dpath, &view));
    }
    return GPUML_OK;
}

/* Read dataset `name` into new host memory, after checking that its dtype
 * and shape are exactly the expected ones (so the model, not the file,
 * bounds the allocation). */
static gpuml_status read_exact(gpuml_h5_reader *r, const char *name, gpuml_dtype dtype, int ndim,
                               const int64_t *shape, void **out, const char *path, const char *fn)
{
    *out = NULL;
    gpuml_dtype fd;
    int fnd;
    int64_t fs[GPUML_MAX_DIMS];
    gpuml_status st = gpuml_h5_reader_info(r, name, &fd, &fnd, fs);
    if (st == GPUML_ERR_NOT_FOUND)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' has no dataset %s", path, name);
    GPUML_TRY(st);
    bool same = fd == dtype && fnd == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = fs[d] == shape[d];
    if (!same)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': %s has the wrong dtype or shape for this model", path,
                          name);
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    gpuml_tensor *t;
    size_t bytes = (size_t)gpuml_numel(ndim, shape) * gpuml_dtype_size(dtype);
    void *data = malloc(bytes ? bytes : 1);
    if (!data)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    st = gpuml_tensor_wrap(data, host, dtype, ndim, shape, NULL, NULL, &t);
    if (st == GPUML_OK) {
        st = gpuml_h5_reader_read(r, NULL, name, t);
        gpuml_tensor_destroy(t);
    }
    if (st != GPUML_OK) {
        free(data);
        return st;
    }
    *out = data;
    return GPUML_OK;
}

typedef struct {
    const char *name;
    int i;
} named_t;

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const named_t *)a)->name, ((const named_t *)b)->name);
}

/* Layout 2: the index, names and values of one kind, matched to the model
 * by name and scattered into dst (laid out like the model's slab). */
static gpuml_status v2_stage_kind(gpuml_h5_reader *r, const gpuml_model *m, const kind_t *k, float *dst,
                                  const char *path, const char *fn)
{
    char g[64], dn[96];
    snprintf(g, sizeof g, "/%s", k->root);
    gpuml_h5_kind kind;
    GPUML_TRY(gpuml_h5_reader_kind(r, g, &kind));
    if (kind == GPUML_H5_NONE) {
        if (k->n == 0)
            return GPUML_OK;
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' has no /%s; the model has %d such tensors", path, k->root,
                          k->n);
    }
    int64_t total = 0;
    for (int i = 0; i < k->n; i++) {
        const char *name;
        gpuml_tensor *v;
        int64_t off;
        entry(m, k, i, &name, &v, &off);
        total += gpuml_tensor_numel(v);
    }
    /* names: a length the model bounds, then exactly n names */
    gpuml_dtype fd;
    int fnd;
    int64_t fs[GPUML_MAX_DIMS];
    snprintf(dn, sizeof dn, "%s/names", g);
    gpuml_status st = gpuml_h5_reader_info(r, dn, &fd, &fnd, fs);
    if (st == GPUML_ERR_NOT_FOUND)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' has no dataset %s", path, dn);
    GPUML_TRY(st);
    if (fd != GPUML_U8 || fnd != 1 || fs[0] > (int64_t)k->n * NAME_MAX_BYTES)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': %s is not u8 [<= %d bytes per tensor]", path, dn,
                          NAME_MAX_BYTES);
    int64_t nlen = fs[0];
    char *names = NULL;
    int64_t *index = NULL;
    float *values = NULL;
    named_t *byname = NULL;
    char *matched = NULL;
    const char **fnames = NULL;
    GPUML_TRY(read_exact(r, dn, GPUML_U8, 1, &nlen, (void **)&names, path, fn));
    snprintf(dn, sizeof dn, "%s/index", g);
    st = read_exact(r, dn, GPUML_I64, 2, (int64_t[]){k->n, INDEX_COLS}, (void **)&index, path, fn);
    snprintf(dn, sizeof dn, "%s/values", g);
    if (st == GPUML_OK)
        st = read_exact(r, dn, GPUML_F32, 1, &total, (void **)&values, path, fn);
    byname = calloc((size_t)k->n + 1, sizeof *byname);
    matched = calloc((size_t)k->n + 1, 1);
    fnames = calloc((size_t)k->n + 1, sizeof *fnames);
    char *text = realloc(names, (size_t)nlen + 1); /* room for a final NUL */
    if (text)
        names = text;
    if (st == GPUML_OK && (!byname || !matched || !fnames || !text))
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    /* split the names: n pieces, each non-empty, no NUL inside */
    if (st == GPUML_OK) {
        names[nlen] = '\0';
        int count = 0;
        char *p = names;
        for (int64_t i = 0; i <= nlen && st == GPUML_OK; i++) {
            if (i < nlen && names[i] == '\0')
                st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /%s/names holds a NUL byte", path, k->root);
            else if (i == nlen || names[i] == '\n') {
                names[i] = '\0';
                if (count < k->n && *p)
                    fnames[count] = p;
                else if (k->n > 0)
                    st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                                    "'%s': /%s/names must hold %d non-empty names separated by newlines", path,
                                    k->root, k->n);
                count++;
                p = names + i + 1;
            }
        }
        if (st == GPUML_OK && count != (k->n > 0 ? k->n : 1))
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /%s/names holds %d names, the model has %d tensors",
                            path, k->root, count, k->n);
        if (st == GPUML_OK && k->n == 0 && nlen != 0)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /%s/names is not empty, the model has no tensors",
                            path, k->root);
    }
    /* match by name (sorted model names, binary search) and scatter */
    if (st == GPUML_OK) {
        for (int i = 0; i < k->n; i++) {
            gpuml_tensor *v;
            int64_t off;
            entry(m, k, i, &byname[i].name, &v, &off);
            byname[i].i = i;
        }
        qsort(byname, (size_t)k->n, sizeof *byname, cmp_named);
    }
    for (int e = 0; e < k->n && st == GPUML_OK; e++) {
        named_t key = {fnames[e], 0};
        named_t *hit = bsearch(&key, byname, (size_t)k->n, sizeof *byname, cmp_named);
        if (!hit) {
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /%s holds '%.80s', which the model does not have", path,
                            k->root, fnames[e]);
            break;
        }
        if (matched[hit->i]) {
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /%s holds '%s' twice", path, k->root, fnames[e]);
            break;
        }
        matched[hit->i] = 1;
        const char *name;
        gpuml_tensor *v;
        int64_t off;
        entry(m, k, hit->i, &name, &v, &off);
        const int64_t *row = index + (size_t)e * INDEX_COLS;
        int nd = gpuml_tensor_ndim(v);
        int64_t numel = gpuml_tensor_numel(v);
        bool ok = row[1] == nd && row[0] >= 0 && row[0] <= total - numel;
        for (int d = 0; ok && d < GPUML_MAX_DIMS; d++)
            ok = row[2 + d] == (d < nd ? gpuml_tensor_shape(v)[d] : 0);
        if (!ok) {
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                            "'%s': the index entry of '%s' in /%s (offset, rank or shape) does not fit the model",
                            path, name, k->root);
            break;
        }
        memcpy(dst + off, values + row[0], (size_t)numel * sizeof(float));
    }
    free(names);
    free(index);
    free(values);
    free(byname);
    free(matched);
    free(fnames);
    return st;
}

gpuml_status model_io_stage(gpuml_h5_reader *r, int64_t version, const gpuml_model *m, const char *path,
                            const char *fn, gpuml_tensor **pslab, gpuml_tensor **bslab)
{
    *pslab = *bslab = NULL;
    kind_t kinds[2] = {kind_of(m, false), kind_of(m, true)};
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    gpuml_status st = GPUML_OK;
    void *data[2] = {NULL, NULL};
    gpuml_tensor **out[2] = {pslab, bslab};
    for (int j = 0; j < 2 && st == GPUML_OK; j++) {
        if (!kinds[j].slab)
            continue;
        size_t bytes = gpuml_tensor_nbytes(kinds[j].slab);
        data[j] = calloc(1, bytes ? bytes : 1);
        if (!data[j]) {
            st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
            break;
        }
        st = version == 1 ? v1_stage_kind(r, m, &kinds[j], data[j], path, fn)
                          : v2_stage_kind(r, m, &kinds[j], data[j], path, fn);
        if (st == GPUML_OK)
            st = gpuml_tensor_wrap(data[j], host, GPUML_F32, 1, gpuml_tensor_shape(kinds[j].slab), NULL, NULL, out[j]);
        if (st == GPUML_OK)
            data[j] = NULL; /* owned by the staged tensor now */
    }
    if (st == GPUML_OK && !kinds[1].slab) {
        /* a model without buffers: the file must have none either */
        int64_t count = 0;
        if (version == 1)
            st = v1_count(r, "buffers", path, fn, &count);
        else {
            gpuml_h5_kind kind;
            st = gpuml_h5_reader_kind(r, "/buffers", &kind);
            count = kind != GPUML_H5_NONE;
        }
        if (st == GPUML_OK && count != 0)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds buffers, the model has none", path);
    }
    free(data[0]);
    free(data[1]);
    if (st != GPUML_OK) {
        model_io_free_staged(*pslab);
        model_io_free_staged(*bslab);
        *pslab = *bslab = NULL;
    }
    return st;
}

void model_io_free_staged(gpuml_tensor *t)
{
    if (!t)
        return;
    void *d = gpuml_tensor_data(t);
    gpuml_tensor_destroy(t);
    free(d);
}

bool model_io_same_config(const char *a, const char *b)
{
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    bool same = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

gpuml_status model_io_apply(gpuml_model *m, gpuml_tensor *pslab, gpuml_tensor *bslab)
{
    gpuml_ctx *ctx = gpuml_model_ctx(m);
    gpuml_tensor *bs = gpuml_model_buffer_slab(m);
    GPUML_TRY(gpuml_tensor_copy(ctx, gpuml_model_param_slab(m), pslab));
    if (bs && bslab)
        GPUML_TRY(gpuml_tensor_copy(ctx, bs, bslab));
    return gpuml_ctx_synchronize(ctx); /* the staging memory is freed next */
}

static gpuml_status load_weights_from(gpuml_h5_reader *r, gpuml_model *m, const char *path, const char *fn,
                                      bool check_config)
{
    char *config = NULL;
    int64_t version;
    GPUML_TRY(model_io_read_header(r, path, fn, &config, &version));
    if (check_config && !model_io_same_config(config, gpuml_model_config(m))) {
        free(config);
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' was written for another model (configs differ)", path);
    }
    free(config);
    gpuml_tensor *ps, *bs;
    GPUML_TRY(model_io_stage(r, version, m, path, fn, &ps, &bs));
    gpuml_status st = model_io_apply(m, ps, bs);
    model_io_free_staged(ps);
    model_io_free_staged(bs);
    return st;
}

gpuml_status gpuml_model_load_weights(gpuml_model *m, const char *path)
{
    static const char fn[] = "gpuml_model_load_weights";
    if (!m || !path)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", m ? "path" : "m");
    gpuml_ctx *ctx = gpuml_model_ctx(m);
    gpuml_h5_reader *r;
    GPUML_TRY(io_reader_open_verified(ctx, ctx->require_checksum, path, &r, fn));
    gpuml_status st = load_weights_from(r, m, path, fn, true);
    gpuml_h5_reader_close(r);
    return st;
}

gpuml_status gpuml_model_load(gpuml_ctx *ctx, const char *path, gpuml_model **out)
{
    static const char fn[] = "gpuml_model_load";
    if (!ctx || !path || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !ctx ? "ctx" : !path ? "path" : "out");
    *out = NULL;
    gpuml_h5_reader *r;
    GPUML_TRY(io_reader_open_verified(ctx, ctx->require_checksum, path, &r, fn));
    char *config = NULL;
    int64_t version;
    gpuml_status st = model_io_read_header(r, path, fn, &config, &version);
    gpuml_model *m = NULL;
    if (st == GPUML_OK) {
        st = gpuml_model_create(ctx, config, &m);
        if (st != GPUML_OK)
            st = gpuml_fail(ctx, st, fn, "'%s': the stored config does not build: %s", path, gpuml_last_error());
    }
    free(config);
    if (st == GPUML_OK)
        st = load_weights_from(r, m, path, fn, false);
    gpuml_h5_reader_close(r);
    if (st != GPUML_OK) {
        gpuml_model_destroy(m);
        return st;
    }
    *out = m;
    return GPUML_OK;
}
