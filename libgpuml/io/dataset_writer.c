/* gpuml_dataset_writer: ragged event datasets written event by event,
 * buffered in memory and appended to extendible datasets in large pieces. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"

/* Appends go to the file once this much is buffered. */
#define IO_FLUSH_BYTES (4u << 20)
#define IO_MAX_UNIT_BYTES (64u << 20)

typedef struct wfield {
    char path[IO_PATH_MAX];
    bool per_event;
    gpuml_dtype dtype;
    size_t unit_bytes;
    hid_t dset;
    char *buf;
    int64_t buffered, cap, written; /* in rows / events */
} wfield;

struct gpuml_dataset_writer {
    gpuml_h5_writer *w;
    int nfields;
    wfield *fields;
    hid_t rs_dset;
    int64_t *rs_buf;
    int64_t rs_buffered, rs_cap, rs_written;
    int64_t nevents, nrows;
    size_t buffered_bytes;
};

static void free_buffers(gpuml_dataset_writer *dw)
{
    for (int i = 0; i < dw->nfields; i++) {
        if (dw->fields[i].dset >= 0)
            H5Dclose(dw->fields[i].dset);
        free(dw->fields[i].buf);
    }
    if (dw->rs_dset >= 0)
        H5Dclose(dw->rs_dset);
    free(dw->fields);
    free(dw->rs_buf);
    free(dw);
}

static gpuml_status create_locked(const char *path, gpuml_dataset_writer **out, const char *fn)
{
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    gpuml_dataset_writer *dw = calloc(1, sizeof *dw);
    if (!dw)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the writer");
    dw->rs_dset = -1;
    dw->rs_cap = 1024;
    dw->rs_buf = malloc((size_t)dw->rs_cap * sizeof *dw->rs_buf);
    if (!dw->rs_buf) {
        free(dw);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the writer");
    }
    gpuml_status st = io_writer_open_locked(path, &dw->w, fn);
    if (st == GPUML_OK)
        st = io_writer_create_extendible(dw->w, "/row_splits", GPUML_I64, 0, NULL, &dw->rs_dset, fn);
    if (st != GPUML_OK) {
        if (dw->w)
            io_writer_abort_locked(dw->w);
        free_buffers(dw);
        return st;
    }
    dw->w->owned = true;
    dw->rs_buf[dw->rs_buffered++] = 0;
    *out = dw;
    return GPUML_OK;
}

gpuml_status gpuml_dataset_writer_create(const char *path, gpuml_dataset_writer **out)
{
    IO_LOCKED_RETURN(create_locked(path, out, "gpuml_dataset_writer_create"));
}

static gpuml_status add_field_locked(gpuml_dataset_writer *dw, const char *name, gpuml_dtype dtype, int ndim,
                                     const int64_t *shape, const char *const *columns, int num_columns, const char *fn)
{
    if (!dw)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'w' is NULL");
    if (dw->nevents > 0)
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn, "fields must be added before the first append");
    char path[IO_PATH_MAX];
    GPUML_TRY(io_path_normalize(fn, "name", name, path));
    const char *slash = strchr(path + 1, '/');
    bool per_event = !strncmp(path, "/event/", 7);
    if ((per_event && strchr(path + 7, '/')) || (!per_event && slash) || !strcmp(path, "/row_splits") ||
        !strcmp(path, "/event") || !strcmp(path, "/"))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "field name '%s' is not 'name' (per-row) or 'event/name' (per-event)", name);
    if (gpuml_dtype_size(dtype) == 0)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "dtype %d is not a gpuml dtype", (int)dtype);
    if (ndim < 0 || ndim >= GPUML_MAX_DIMS || (ndim > 0 && !shape))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "ndim %d is not in [0, %d) (or shape is NULL)", ndim,
                          GPUML_MAX_DIMS);
    size_t unit = gpuml_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || (uint64_t)shape[i] > IO_MAX_UNIT_BYTES / unit)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "field '%s': shape[%d] = %" PRId64 " (each entry must be >= 1, a row <= %u bytes)", name,
                              i, shape[i], IO_MAX_UNIT_BYTES);
        unit *= (size_t)shape[i];
    }
    int64_t want_cols = ndim > 0 ? shape[ndim - 1] : 1;
    if (columns && num_columns != want_cols)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "field '%s': %d column names for %" PRId64 " columns",
                          name, num_columns, want_cols);
    for (int i = 0; i < dw->nfields; i++)
        if (!strcmp(dw->fields[i].path, path))
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "field '%s' was already added", name);
    wfield *nf = realloc(dw->fields, (size_t)(dw->nfields + 1) * sizeof *nf);
    if (!nf)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    dw->fields = nf;
    wfield *f = &nf[dw->nfields];
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->per_event = per_event;
    f->dtype = dtype;
    f->unit_bytes = unit;
    f->dset = -1;
    GPUML_TRY(io_writer_create_extendible(dw->w, path, dtype, ndim, shape, &f->dset, fn));
    dw->nfields++;
    if (columns)
        GPUML_TRY(gpuml_h5_writer_set_attr_strings(dw->w, path, "columns", columns, (size_t)num_columns));
    return GPUML_OK;
}

gpuml_status gpuml_dataset_writer_add_field(gpuml_dataset_writer *w, const char *name, gpuml_dtype dtype, int ndim,
                                            const int64_t *shape, const char *const *columns, int num_columns)
{
    IO_LOCKED_RETURN(add_field_locked(w, name, dtype, ndim, shape, columns, num_columns,
                                      "gpuml_dataset_writer_add_field"));
}

static gpuml_status flush_locked(gpuml_dataset_writer *dw, const char *fn)
{
    for (int i = 0; i < dw->nfields; i++) {
        wfield *f = &dw->fields[i];
        GPUML_TRY(io_writer_append(dw->w, f->dset, f->dtype, f->written, f->buffered, f->buf, f->path, fn));
        f->written += f->buffered;
        f->buffered = 0;
    }
    GPUML_TRY(io_writer_append(dw->w, dw->rs_dset, GPUML_I64, dw->rs_written, dw->rs_buffered, dw->rs_buf,
                               "/row_splits", fn));
    dw->rs_written += dw->rs_buffered;
    dw->rs_buffered = 0;
    dw->buffered_bytes = 0;
    return GPUML_OK;
}

static bool grow(void **buf, int64_t *cap, int64_t need, size_t unit)
{
    if (need <= *cap)
        return true;
    int64_t nc = *cap ? *cap : 256;
    while (nc < need)
        nc *= 2;
    void *nb = realloc(*buf, (size_t)nc * (unit ? unit : 1));
    if (!nb)
        return false;
    *buf = nb;
    *cap = nc;
    return true;
}

static gpuml_status append_locked(gpuml_dataset_writer *dw, int64_t n_rows, const void *const *data, const char *fn)
{
    if (!dw)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'w' is NULL");
    if (n_rows < 0 || n_rows > (INT64_C(1) << 40))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "n_rows = %" PRId64 " is out of range", n_rows);
    if (dw->nfields > 0 && !data)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'data' is NULL");
    /* Make room everywhere first, so that a failure appends nothing. */
    for (int i = 0; i < dw->nfields; i++) {
        wfield *f = &dw->fields[i];
        int64_t n = f->per_event ? 1 : n_rows;
        if (n > 0 && !data[i])
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "data[%d] (field '%s') is NULL", i, f->path + 1);
        if (!grow((void **)&f->buf, &f->cap, f->buffered + n, f->unit_bytes))
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory buffering field '%s'", f->path + 1);
    }
    if (!grow((void **)&dw->rs_buf, &dw->rs_cap, dw->rs_buffered + 1, sizeof(int64_t)))
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory buffering row_splits");
    for (int i = 0; i < dw->nfields; i++) {
        wfield *f = &dw->fields[i];
        int64_t n = f->per_event ? 1 : n_rows;
        size_t nb = (size_t)n * f->unit_bytes;
        if (nb)
            memcpy(f->buf + (size_t)f->buffered * f->unit_bytes, data[i], nb);
        f->buffered += n;
        dw->buffered_bytes += nb;
    }
    dw->nrows += n_rows;
    dw->nevents++;
    dw->rs_buf[dw->rs_buffered++] = dw->nrows;
    if (dw->buffered_bytes >= IO_FLUSH_BYTES)
        return flush_locked(dw, fn);
    return GPUML_OK;
}

gpuml_status gpuml_dataset_writer_append(gpuml_dataset_writer *w, int64_t n_rows, const void *const *data)
{
    IO_LOCKED_RETURN(append_locked(w, n_rows, data, "gpuml_dataset_writer_append"));
}

gpuml_h5_writer *gpuml_dataset_writer_file(gpuml_dataset_writer *w) { return w ? w->w : NULL; }

int64_t gpuml_dataset_writer_num_events(const gpuml_dataset_writer *w) { return w ? w->nevents : 0; }

static gpuml_status commit_locked(gpuml_dataset_writer *dw, const char *fn)
{
    gpuml_status st = flush_locked(dw, fn);
    if (st == GPUML_OK)
        st = gpuml_h5_writer_set_attr_string(dw->w, "/", "format", "gpuml-dataset");
    if (st == GPUML_OK)
        st = gpuml_h5_writer_set_attr_i64(dw->w, "/", "format_version", 1);
    /* Close our datasets before the file goes. */
    for (int i = 0; i < dw->nfields; i++) {
        H5Dclose(dw->fields[i].dset);
        dw->fields[i].dset = -1;
    }
    H5Dclose(dw->rs_dset);
    dw->rs_dset = -1;
    if (st == GPUML_OK)
        st = io_writer_commit_locked(dw->w, fn);
    else
        io_writer_abort_locked(dw->w);
    free_buffers(dw);
    return st;
}

gpuml_status gpuml_dataset_writer_commit(gpuml_dataset_writer *w)
{
    static const char fn[] = "gpuml_dataset_writer_commit";
    if (!w)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'w' is NULL");
    IO_LOCKED_RETURN(commit_locked(w, fn));
}

void gpuml_dataset_writer_abort(gpuml_dataset_writer *w)
{
    if (!w)
        return;
    io_h5_guard g;
    io_h5_lock(&g);
    for (int i = 0; i < w->nfields; i++) {
        H5Dclose(w->fields[i].dset);
        w->fields[i].dset = -1;
    }
    H5Dclose(w->rs_dset);
    w->rs_dset = -1;
    io_writer_abort_locked(w->w);
    free_buffers(w);
    io_h5_unlock(&g);
}
