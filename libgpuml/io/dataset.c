/* gpuml_dataset: opening (with validation of the whole structure) and
 * reading ragged event datasets. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"

#define IO_MAX_FIELDS 4096
#define IO_FORMAT_VERSION 1

static void dataset_free(gpuml_dataset *ds)
{
    for (int i = 0; i < ds->nfields; i++) {
        if (ds->fields[i].dset >= 0)
            H5Dclose(ds->fields[i].dset);
        if (ds->fields[i].mtype >= 0)
            H5Tclose(ds->fields[i].mtype);
        free(ds->fields[i].name);
    }
    free(ds->fields);
    free(ds->row_splits);
    if (ds->file >= 0)
        H5Fclose(ds->file);
    free(ds->path);
    free(ds);
}

/* Optional format attributes: files from other tools may lack them, but a
 * file that says what it is must say the right thing. */
static gpuml_status check_format(gpuml_dataset *ds, gpuml_h5_reader *r, const char *fn)
{
    char fmt[64];
    gpuml_status st = gpuml_h5_reader_attr_string(r, "/", "format", fmt, sizeof fmt, NULL);
    if (st == GPUML_ERR_INVALID_ARGUMENT)
        st = GPUML_ERR_FORMAT, fmt[0] = '\0'; /* longer than any format name */
    if (st == GPUML_OK && strcmp(fmt, "gpuml-dataset") != 0)
        st = GPUML_ERR_FORMAT;
    if (st == GPUML_ERR_FORMAT)
        return gpuml_fail(NULL, st, fn, "file '%s': attribute 'format' is not \"gpuml-dataset\"", ds->path);
    if (st != GPUML_OK && st != GPUML_ERR_NOT_FOUND)
        return st;
    int64_t version;
    st = gpuml_h5_reader_attr_i64(r, "/", "format_version", &version);
    if (st == GPUML_OK && (version < 1 || version > IO_FORMAT_VERSION))
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                          "file '%s': format_version %" PRId64 " (this gpuml reads version %d)", ds->path, version,
                          IO_FORMAT_VERSION);
    return st == GPUML_ERR_NOT_FOUND ? GPUML_OK : st;
}

static gpuml_status read_row_splits(gpuml_dataset *ds, const char *fn)
{
    hid_t d;
    GPUML_TRY(io_h5_open(ds->file, "/row_splits", GPUML_H5_DATASET, &d, ds->path, fn));
    io_dsinfo info;
    gpuml_status st = io_h5_inspect(d, &info, ds->path, "/row_splits", fn);
    if (st == GPUML_OK && (info.dtype != GPUML_I64 || info.ndim != 1 || info.shape[0] < 1)) {
        char s[160];
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': '/row_splits' is %s %s, expected [B+1] i64 with B >= 0",
                        ds->path, gpuml_shape_str(info.ndim, info.shape, s, sizeof s), gpuml_dtype_name(info.dtype));
    }
    if (st == GPUML_OK) {
        ds->row_splits = malloc(info.nbytes);
        if (!ds->row_splits)
            st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate row_splits (%zu bytes)", info.nbytes);
        else if (H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->row_splits) < 0)
            st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read '/row_splits'", ds->path);
    }
    H5Dclose(d);
    GPUML_TRY(st);
    int64_t b = info.shape[0] - 1;
    const int64_t *rs = ds->row_splits;
    if (rs[0] != 0)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': row_splits[0] = %" PRId64 ", expected 0", ds->path,
                          rs[0]);
    for (int64_t i = 0; i < b; i++)
        if (rs[i + 1] < rs[i])
            return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                              "file '%s': row_splits decreases at event %" PRId64 " (%" PRId64 " after %" PRId64 ")",
                              ds->path, i, rs[i + 1], rs[i]);
    ds->nevents = b;
    ds->nrows = rs[b];
    return GPUML_OK;
}

/* Open, validate and append the field at `path` ("/features" or
 * "/event/label"). */
static gpuml_status add_field(gpuml_dataset *ds, gpuml_h5_reader *r, const char *path, bool per_event, const char *fn)
{
    if (ds->nfields >= IO_MAX_FIELDS)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s' has more than %d fields", ds->path, IO_MAX_FIELDS);
    io_field *f = &ds->fields[ds->nfields];
    memset(f, 0, sizeof *f);
    f->dset = f->mtype = -1;
    f->per_event = per_event;
    f->name = malloc(strlen(path));
    if (!f->name)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    strcpy(f->name, path + 1);
    ds->nfields++; /* from here on dataset_free cleans it up */
    GPUML_TRY(io_h5_open(ds->file, path, GPUML_H5_DATASET, &f->dset, ds->path, fn));
    GPUML_TRY(io_h5_inspect(f->dset, &f->info, ds->path, path, fn));
    int64_t want = per_event ? ds->nevents : ds->nrows;
    if (f->info.ndim < 1 || f->info.shape[0] != want) {
        char s[160];
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': %s field '%s' is %s, expected %" PRId64 " %s",
                          ds->path,
                          per_event ? "per-event" : "per-row", path,
                          gpuml_shape_str(f->info.ndim, f->info.shape, s, sizeof s), want,
                          per_event ? "events (row_splits has B+1 entries)" : "rows (row_splits ends there)");
    }
    f->unit_bytes = gpuml_dtype_size(f->info.dtype) * (size_t)gpuml_numel(f->info.ndim - 1, f->info.shape + 1);
    f->mtype = io_h5_read_type(f->dset, f->info.dtype);
    if (f->mtype < 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': field '%s': no memory type", ds->path, path);
    /* "columns", when present, must name the last axis. */
    gpuml_strings cols = {0, NULL};
    gpuml_status st = gpuml_h5_reader_attr_strings(r, path, "columns", &cols);
    if (st == GPUML_ERR_NOT_FOUND)
        return GPUML_OK;
    GPUML_TRY(st);
    int64_t ncol = f->info.ndim >= 2 ? f->info.shape[f->info.ndim - 1] : 1;
    size_t got = cols.count;
    gpuml_strings_free(&cols);
    if ((int64_t)got != ncol)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                          "file '%s': field '%s' has %zu column names for %" PRId64 " columns", ds->path, path, got,
                          ncol);
    return GPUML_OK;
}

static gpuml_status add_fields(gpuml_dataset *ds, gpuml_h5_reader *r, const char *fn)
{
    gpuml_strings top = {0, NULL}, ev = {0, NULL};
    GPUML_TRY(gpuml_h5_reader_list(r, "/", &top));
    gpuml_status st = GPUML_OK;
    bool has_event = false;
    for (size_t i = 0; i < top.count && st == GPUML_OK; i++) {
        gpuml_h5_kind k;
        char path[IO_PATH_MAX];
        st = io_path_normalize(fn, "member", top.items[i], path);
        if (st == GPUML_OK)
            st = io_h5_kind(ds->file, path, &k, ds->path, fn);
        if (st != GPUML_OK)
            break;
        if (!strcmp(top.items[i], "event") && k == GPUML_H5_GROUP)
            has_event = true;
        else if (!strcmp(top.items[i], "event") || (k != GPUML_H5_DATASET))
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                            "file '%s': unexpected %s '%s' (a dataset file holds /row_splits, per-row datasets and "
                            "the group /event)",
                            ds->path, k == GPUML_H5_GROUP ? "group" : k == GPUML_H5_DATASET ? "dataset" : "link",
                            path);
    }
    size_t nev = 0;
    if (st == GPUML_OK && has_event) {
        st = gpuml_h5_reader_list(r, "/event", &ev);
        nev = ev.count;
    }
    if (st == GPUML_OK && top.count + nev > IO_MAX_FIELDS)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s' has more than %d fields", ds->path, IO_MAX_FIELDS);
    if (st == GPUML_OK && !(ds->fields = calloc(top.count + nev + 1, sizeof *ds->fields)))
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    char path[IO_PATH_MAX];
    for (size_t i = 0; i < top.count && st == GPUML_OK; i++)
        if (strcmp(top.items[i], "row_splits") && strcmp(top.items[i], "event")) {
            snprintf(path, sizeof path, "/%s", top.items[i]);
            st = add_field(ds, r, path, false, fn);
        }
    for (size_t i = 0; i < nev && st == GPUML_OK; i++) {
        if (strlen(ev.items[i]) + 8 >= IO_PATH_MAX) {
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': a member of /event has an absurdly long name",
                            ds->path);
            break;
        }
        snprintf(path, sizeof path, "/event/%s", ev.items[i]);
        gpuml_h5_kind k;
        st = io_h5_kind(ds->file, path, &k, ds->path, fn);
        if (st == GPUML_OK && k != GPUML_H5_DATASET)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                            "file '%s': '%s' is not a dataset (/event holds per-event fields)", ds->path, path);
        if (st == GPUML_OK)
            st = add_field(ds, r, path, true, fn);
    }
    gpuml_strings_free(&top);
    gpuml_strings_free(&ev);
    return st;
}

static gpuml_status open_locked(const char *path, gpuml_dataset **out, const char *fn)
{
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    hid_t file;
    GPUML_TRY(io_file_open(path, &file, fn));
    gpuml_dataset *ds = calloc(1, sizeof *ds);
    if (ds)
        ds->path = malloc(strlen(path) + 1);
    if (!ds || !ds->path) {
        free(ds);
        H5Fclose(file);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the dataset");
    }
    strcpy(ds->path, path);
    ds->file = file;
    io_file_guard_init(file, &ds->guard);
    gpuml_h5_reader r = {file, ds->path, ds->guard};
    gpuml_status st = check_format(ds, &r, fn);
    if (st == GPUML_OK)
        st = read_row_splits(ds, fn);
    if (st == GPUML_OK)
        st = add_fields(ds, &r, fn);
    if (st != GPUML_OK) {
        /* The inner calls name their own function; say which one failed. */
        if (strncmp(gpuml_last_error(), fn, strlen(fn)) != 0) {
            char inner[GPUML_MSG_MAX];
            snprintf(inner, sizeof inner, "%s", gpuml_last_error());
            gpuml_fail(NULL, st, fn, "%s", inner);
        }
        dataset_free(ds);
        return st;
    }
    *out = ds;
    return GPUML_OK;
}

gpuml_status gpuml_dataset_open(const char *path, gpuml_dataset **out)
{
    IO_LOCKED_RETURN(open_locked(path, out, "gpuml_dataset_open"));
}

void gpuml_dataset_close(gpuml_dataset *ds)
{
    if (!ds)
        return;
    io_h5_guard g;
    io_h5_lock(&g);
    dataset_free(ds);
    io_h5_unlock(&g);
}

int64_t gpuml_dataset_num_events(const gpuml_dataset *ds) { return ds ? ds->nevents : 0; }
int64_t gpuml_dataset_num_rows(const gpuml_dataset *ds) { return ds ? ds->nrows : 0; }
const int64_t *gpuml_dataset_row_splits(const gpuml_dataset *ds) { return ds ? ds->row_splits : NULL; }
int gpuml_dataset_num_fields(const gpuml_dataset *ds) { return ds ? ds->nfields : 0; }

gpuml_status gpuml_dataset_field(const gpuml_dataset *ds, int i, gpuml_field_info *out)
{
    static const char fn[] = "gpuml_dataset_field";
    if (!ds || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ds ? "out" : "ds");
    if (i < 0 || i >= ds->nfields)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "field index %d is not in [0, %d)", i, ds->nfields);
    const io_field *f = &ds->fields[i];
    memset(out, 0, sizeof *out);
    out->name = f->name;
    out->per_event = f->per_event;
    out->dtype = f->info.dtype;
    out->ndim = f->info.ndim - 1;
    for (int d = 1; d < f->info.ndim; d++)
        out->shape[d - 1] = f->info.shape[d];
    return GPUML_OK;
}

gpuml_status gpuml_dataset_find(const gpuml_dataset *ds, const char *name, int *index)
{
    static const char fn[] = "gpuml_dataset_find";
    if (!ds || !name || !index)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !ds ? "ds" : !name ? "name" : "index");
    const char *n = name[0] == '/' ? name + 1 : name;
    for (int i = 0; i < ds->nfields; i++)
        if (!strcmp(ds->fields[i].name, n)) {
            *index = i;
            return GPUML_OK;
        }
    return gpuml_fail(NULL, GPUML_ERR_NOT_FOUND, fn, "file '%s' has no field '%s'", ds->path, name);
}

static gpuml_status columns_locked(gpuml_dataset *ds, const char *name, gpuml_strings *out, const char *fn)
{
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    int i;
    GPUML_TRY(gpuml_dataset_find(ds, name, &i));
    char path[IO_PATH_MAX];
    snprintf(path, sizeof path, "/%s", ds->fields[i].name);
    gpuml_h5_reader r = {ds->file, ds->path, ds->guard};
    gpuml_status st = gpuml_h5_reader_attr_strings(&r, path, "columns", out);
    if (st == GPUML_ERR_NOT_FOUND) {
        out->count = 0;
        out->items = NULL;
        gpuml_clear_error();
        return GPUML_OK;
    }
    return st;
}

gpuml_status gpuml_dataset_columns(gpuml_dataset *ds, const char *name, gpuml_strings *out)
{
    IO_LOCKED_RETURN(columns_locked(ds, name, out, "gpuml_dataset_columns"));
}

static gpuml_status read_runs_locked(gpuml_dataset *ds, int fi, const int64_t *start, const int64_t *len,
                                     int64_t nruns, int64_t total, void *dst, const char *fn)
{
    io_field *f = &ds->fields[fi];
    if (total == 0 || f->unit_bytes == 0)
        return GPUML_OK;
    GPUML_TRY(io_file_check(&ds->guard, ds->path, fn));
    int nd = f->info.ndim;
    hsize_t s[GPUML_MAX_DIMS] = {0}, c[GPUML_MAX_DIMS];
    for (int d = 0; d < nd; d++)
        c[d] = (hsize_t)f->info.shape[d];
    hid_t fspace = H5Dget_space(f->dset);
    if (fspace < 0)
        return io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': field '%s': no dataspace", ds->path, f->name);
    /* One read per run, each a single regular hyperslab into a memory
     * space of the same shape: HDF5 then copies whole pieces of chunks. A
     * union of the runs in one read would be one call, but HDF5 (1.10)
     * maps irregular selections to chunks element by element, ~20x
     * slower for a batch of scattered events. */
    gpuml_status st = GPUML_OK;
    char *out = dst;
    for (int64_t i = 0; i < nruns && st == GPUML_OK; i++) {
        if (len[i] == 0)
            continue;
        s[0] = (hsize_t)start[i];
        c[0] = (hsize_t)len[i];
        hid_t mspace = H5Screate_simple(nd, c, NULL);
        if (mspace < 0 || H5Sselect_hyperslab(fspace, H5S_SELECT_SET, s, NULL, c, NULL) < 0 ||
            H5Dread(f->dset, f->mtype, mspace, fspace, H5P_DEFAULT, out) < 0)
            st = io_h5_fail(NULL, GPUML_ERR_FORMAT, fn, "file '%s': cannot read field '%s' (damaged data?)",
                            ds->path, f->name);
        if (mspace >= 0)
            H5Sclose(mspace);
        out += (size_t)len[i] * f->unit_bytes;
    }
    H5Sclose(fspace);
    if (st == GPUML_OK && f->info.dtype == GPUML_BOOL)
        st = io_check_bool(dst, (size_t)total * f->unit_bytes, ds->path, f->name, fn);
    return st;
}

gpuml_status io_dataset_read_runs(gpuml_dataset *ds, int f, const int64_t *start, const int64_t *len, int64_t nruns,
                                  int64_t total, void *dst, const char *fn)
{
    IO_LOCKED_RETURN(read_runs_locked(ds, f, start, len, nruns, total, dst, fn));
}

gpuml_status gpuml_dataset_read(gpuml_dataset *ds, gpuml_ctx *ctx, int64_t first, int64_t count, int nfields,
                                const char *const *names, gpuml_tensor **row_splits, gpuml_tensor **out)
{
    static const char fn[] = "gpuml_dataset_read";
    if (!ds || !ctx || !row_splits || (nfields > 0 && (!names || !out)))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "a required argument is NULL");
    if (nfields < 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "nfields %d is negative", nfields);
    if (first < 0 || count < 0 || first > ds->nevents || count > ds->nevents - first)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "events [%" PRId64 ", %" PRId64 ") are outside [0, %" PRId64 ")", first, first + count,
                          ds->nevents);
    int *idx = calloc((size_t)nfields + 1, sizeof *idx);
    gpuml_tensor **made = calloc((size_t)nfields + 1, sizeof *made);
    gpuml_tensor *rs = NULL;
    void *host = NULL;
    gpuml_status st = GPUML_OK;
    if (!idx || !made) {
        st = gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
        goto out;
    }
    for (int i = 0; i < nfields && st == GPUML_OK; i++)
        st = gpuml_dataset_find(ds, names[i], &idx[i]);
    if (st != GPUML_OK)
        goto out;
    const int64_t *srs = ds->row_splits;
    int64_t r0 = srs[first], nrows = srs[first + count] - r0;
    int64_t n1 = count + 1;
    st = gpuml_tensor_create(ctx, GPUML_I64, 1, &n1, &rs);
    if (st != GPUML_OK)
        goto out;
    int64_t *rsh = malloc((size_t)n1 * sizeof *rsh);
    if (!rsh) {
        st = gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
        goto out;
    }
    for (int64_t e = 0; e <= count; e++)
        rsh[e] = srs[first + e] - r0;
    st = gpuml_tensor_copy_from_host(ctx, rs, rsh, (size_t)n1 * sizeof *rsh);
    free(rsh);
    for (int i = 0; i < nfields && st == GPUML_OK; i++) {
        io_field *f = &ds->fields[idx[i]];
        int64_t shape[GPUML_MAX_DIMS];
        memcpy(shape, f->info.shape, sizeof shape);
        int64_t start = f->per_event ? first : r0;
        shape[0] = f->per_event ? count : nrows;
        st = gpuml_tensor_create(ctx, f->info.dtype, f->info.ndim, shape, &made[i]);
        if (st != GPUML_OK)
            break;
        size_t nb = gpuml_tensor_nbytes(made[i]);
        void *dst = gpuml_tensor_data(made[i]);
        if (gpuml_on_cuda(ctx) && nb > 0) {
            free(host);
            if (!(host = malloc(nb))) {
                st = gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
                break;
            }
            dst = host;
        }
        st = io_dataset_read_runs(ds, idx[i], &start, &shape[0], 1, shape[0], dst, fn);
        if (st == GPUML_OK && dst == host && nb > 0)
            st = gpuml_tensor_copy_from_host(ctx, made[i], host, nb);
    }
out:
    if (st == GPUML_OK) {
        *row_splits = rs;
        for (int i = 0; i < nfields; i++)
            out[i] = made[i];
    } else {
        gpuml_ctx_adopt_error(ctx);
        gpuml_tensor_destroy(rs);
        for (int i = 0; made && i < nfields; i++)
            gpuml_tensor_destroy(made[i]);
    }
    free(host);
    free(idx);
    free(made);
    return st;
}
