/* gpuml_h5_writer: tensors and attributes into a temporary file that commit
 * renames over the target. */
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

/* Chunks of about this size: large enough that per-chunk overhead (index
 * entry, checksum) is negligible, small enough to fit HDF5's chunk cache. */
#define IO_CHUNK_BYTES (1u << 20)
#define IO_EVENT_CHUNK_BYTES (32u << 10)

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static hid_t file_access_plist(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return fapl;
    /* STRONG: closing the file closes whatever is still open in it, so a
     * missed close cannot keep the file (or a lock on it) alive. The 1.8
     * format gives object headers and the superblock checksums; h5py and
     * every HDF5 since 1.8 read it. */
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

gpuml_status io_writer_open_locked(const char *path, gpuml_h5_writer **out, const char *fn)
{
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    if (!path || !path[0])
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'path' is %s", path ? "empty" : "NULL");
    gpuml_h5_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path) + 64;
    if (w)
        w->tmp_path = malloc(n);
    if (w)
        w->path = dup_str(path);
    if (!w || !w->tmp_path || !w->path) {
        if (w) {
            free(w->tmp_path);
            free(w->path);
        }
        free(w);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the writer");
    }
    /* pid + the writer's address: unique among live writers of all
     * processes, so two writers of one target never share a temporary. */
    snprintf(w->tmp_path, n, "%s.tmp.%ld.%lx", path, (long)getpid(), (unsigned long)(uintptr_t)w);
    hid_t fapl = file_access_plist();
    /* The user block holds the whole-file checksum, filled in on commit. */
    hid_t fcpl = fapl < 0 ? -1 : io_sum_fcpl();
    w->file = fcpl < 0 ? -1 : H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, fcpl, fapl);
    gpuml_status st = GPUML_OK;
    if (w->file < 0) /* before any other HDF5 call, which would clear HDF5's error stack */
        st = io_h5_fail(NULL, GPUML_ERR_IO, fn, "cannot create '%s' (for '%s')", w->tmp_path, path);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (st != GPUML_OK) {
        unlink(w->tmp_path);
        free(w->tmp_path);
        free(w->path);
        free(w);
        return st;
    }
    *out = w;
    return GPUML_OK;
}

gpuml_status gpuml_h5_writer_open(const char *path, gpuml_h5_writer **out)
{
    IO_LOCKED_RETURN(io_writer_open_locked(path, out, "gpuml_h5_writer_open"));
}

static void writer_free(gpuml_h5_writer *w)
{
    free(w->path);
    free(w->tmp_path);
    free(w);
}

void io_writer_abort_locked(gpuml_h5_writer *w)
{
    if (w->file >= 0)
        H5Fclose(w->file);
    unlink(w->tmp_path);
    writer_free(w);
}

void gpuml_h5_writer_abort(gpuml_h5_writer *w)
{
    if (!w || w->owned)
        return;
    io_h5_guard g;
    io_h5_lock(&g);
    io_writer_abort_locked(w);
    io_h5_unlock(&g);
}

static gpuml_status fsync_path(const char *path, bool dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
        return errno;
    int e = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    /* Some file systems cannot sync a directory; the rename is still done. */
    if (dir && (e == EINVAL || e == ENOTSUP || e == EBADF))
        e = 0;
    return e;
}

gpuml_status io_writer_commit_locked(gpuml_h5_writer *w, const char *fn)
{
    gpuml_status st = GPUML_OK;
    if (w->failed) {
        st = gpuml_fail(NULL, GPUML_ERR_STATE, fn,
                        "an earlier write to '%s' failed; refusing to publish a possibly incomplete file", w->path);
        goto fail;
    }
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "cannot flush '%s'", w->tmp_path);
        goto fail;
    }
    herr_t ce = H5Fclose(w->file);
    w->file = -1;
    if (ce < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "cannot close '%s'", w->tmp_path);
        goto fail;
    }
    /* Checksum the closed file and fsync it: what is renamed is final. */
    st = io_sum_write(w->tmp_path, fn);
    if (st != GPUML_OK)
        goto fail;
    int e;
    if (rename(w->tmp_path, w->path) != 0) {
        e = errno;
        st = gpuml_fail(NULL, GPUML_ERR_IO, fn, "cannot rename '%s' to '%s': %s", w->tmp_path, w->path, strerror(e));
        goto fail;
    }
    /* Make the rename itself durable. */
    char *dir = dup_str(w->path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            strcpy(dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        e = fsync_path(dir, true);
        free(dir);
        if (e) {
            /* The file is in place; only its durability is in doubt. */
            st = gpuml_fail(NULL, GPUML_ERR_IO, fn, "'%s' written, but syncing its directory failed: %s", w->path,
                            strerror(e));
        }
    }
    writer_free(w);
    return st;
fail:
    io_writer_abort_locked(w);
    return st;
}

gpuml_status gpuml_h5_writer_commit(gpuml_h5_writer *w)
{
    static const char fn[] = "gpuml_h5_writer_commit";
    if (!w)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'w' is NULL");
    if (w->owned)
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn, "this writer belongs to a dataset writer: commit that instead");
    IO_LOCKED_RETURN(io_writer_commit_locked(w, fn));
}

/* Every existing prefix of path must be a group; path itself must not
 * exist. Checked before anything is created, so that a bad name is an
 * argument error and leaves the file as it was. */
static gpuml_status check_new_path(gpuml_h5_writer *w, const char *path, const char *fn)
{
    char prefix[IO_PATH_MAX];
    size_t n = strlen(path);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        gpuml_h5_kind k;
        GPUML_TRY(io_h5_kind(w->file, prefix, &k, w->tmp_path, fn));
        if (k == GPUML_H5_NONE)
            return GPUML_OK;
        if (i == n)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "'%s' already exists in '%s'", path, w->path);
        if (k != GPUML_H5_GROUP)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "'%s': '%s' is not a group", path, prefix);
    }
    return GPUML_OK;
}

static hid_t link_create_plist(void)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && (H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
                      H5Pset_char_encoding(lcpl, H5T_CSET_UTF8) < 0)) {
        H5Pclose(lcpl);
        return -1;
    }
    return lcpl;
}

/* Halve the outermost axis that is still > 1 until a chunk holds at most
 * IO_CHUNK_BYTES (or one element). */
static void chunk_shape(int ndim, const int64_t *shape, size_t esize, hsize_t *chunk)
{
    uint64_t bytes = esize;
    for (int i = 0; i < ndim; i++) {
        chunk[i] = (hsize_t)(shape[i] > 0 ? shape[i] : 1);
        bytes *= chunk[i];
    }
    for (int i = 0; i < ndim && bytes > IO_CHUNK_BYTES; i++) {
        while (chunk[i] > 1 && bytes > IO_CHUNK_BYTES) {
            bytes /= chunk[i];
            chunk[i] = (chunk[i] + 1) / 2;
            bytes *= chunk[i];
        }
    }
}

/* Create the dataset (with groups on the way) and write data (host memory,
 * nbytes) into it. space/dcpl owned by the caller. */
static gpuml_status create_and_write(gpuml_h5_writer *w, const char *name, gpuml_dtype dtype, hid_t space, hid_t dcpl,
                                     const void *data, size_t nbytes, hid_t *keep, const char *fn)
{
    hid_t type = io_h5_type(dtype);
    hid_t lcpl = link_create_plist();
    hid_t d = -1;
    gpuml_status st = GPUML_OK;
    if (type < 0 || lcpl < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot set up the dataset '%s'", w->path, name);
        goto out;
    }
    d = H5Dcreate2(w->file, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    if (d < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot create the dataset '%s'", w->path, name);
        goto out;
    }
    if (nbytes > 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot write the dataset '%s'", w->path, name);
out:
    if (st != GPUML_OK)
        w->failed = true;
    if (keep && st == GPUML_OK)
        *keep = d;
    else if (d >= 0)
        H5Dclose(d);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (type >= 0)
        H5Tclose(type);
    return st;
}

static gpuml_status write_locked(gpuml_h5_writer *w, gpuml_ctx *ctx, const char *name, const gpuml_tensor *t,
                                 const char *fn)
{
    if (!w || !t)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", w ? "t" : "w");
    char path[IO_PATH_MAX];
    GPUML_TRY(io_path_normalize(fn, "name", name, path));
    if (!strcmp(path, "/"))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'name' is the root group");
    if (gpuml_dtype_size(t->dtype) == 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 't' has an invalid dtype");
    bool on_cuda = t->device.type == GPUML_DEVICE_CUDA;
    if (on_cuda && (!ctx || !gpuml_on_cuda(ctx) || ctx->device.index != t->device.index))
        return gpuml_fail(ctx, GPUML_ERR_DEVICE_MISMATCH, fn,
                          "'%s' is a tensor on cuda:%d: pass a CUDA context on that device", path, t->device.index);
    GPUML_TRY(check_new_path(w, path, fn));

    size_t nbytes = gpuml_tensor_nbytes(t);
    const void *data = t->data;
    void *host = NULL;
    if (on_cuda && nbytes > 0) {
        host = malloc(nbytes);
        if (!host)
            return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate %zu bytes to stage '%s'", nbytes,
                              path);
        gpuml_status st = gpuml_tensor_copy_to_host(ctx, t, host, nbytes);
        if (st != GPUML_OK) {
            free(host);
            return st;
        }
        data = host;
    }

    hsize_t dims[GPUML_MAX_DIMS], chunk[GPUML_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = (hsize_t)t->shape[i];
    hid_t space = t->ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(t->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    gpuml_status st = GPUML_OK;
    if (space < 0 || dcpl < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot set up the dataset '%s'", w->path, path);
        w->failed = true;
        goto out;
    }
    /* Checksums need chunks, and chunks need a rank >= 1 and no empty axis. */
    if (t->ndim > 0 && nbytes > 0) {
        chunk_shape(t->ndim, t->shape, gpuml_dtype_size(t->dtype), chunk);
        if (H5Pset_chunk(dcpl, t->ndim, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) {
            st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot set chunks for '%s'", w->path, path);
            w->failed = true;
            goto out;
        }
    }
    st = create_and_write(w, path, t->dtype, space, dcpl, data, nbytes, NULL, fn);
out:
    if (space >= 0)
        H5Sclose(space);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    free(host);
    return st;
}

gpuml_status gpuml_h5_writer_write(gpuml_h5_writer *w, gpuml_ctx *ctx, const char *name, const gpuml_tensor *t)
{
    static const char fn[] = "gpuml_h5_writer_write";
    io_h5_guard g;
    io_h5_lock(&g);
    gpuml_status st = write_locked(w, ctx, name, t, fn);
    io_h5_unlock(&g);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(ctx);
    return st;
}

gpuml_status io_writer_create_extendible(gpuml_h5_writer *w, const char *name, gpuml_dtype dtype, int inner_ndim,
                                         const int64_t *inner_shape, hid_t *out, const char *fn)
{
    GPUML_TRY(check_new_path(w, name, fn));
    int nd = inner_ndim + 1;
    hsize_t dims[GPUML_MAX_DIMS], maxdims[GPUML_MAX_DIMS], chunk[GPUML_MAX_DIMS];
    int64_t cshape[GPUML_MAX_DIMS];
    size_t row = gpuml_dtype_size(dtype);
    for (int i = 0; i < inner_ndim; i++)
        row *= (size_t)inner_shape[i];
    dims[0] = 0;
    maxdims[0] = H5S_UNLIMITED;
    /* Small chunks (IO_EVENT_CHUNK_BYTES): the loader reads single events
     * at random, and every read decodes (and checksums) whole chunks. */
    cshape[0] = (int64_t)(IO_EVENT_CHUNK_BYTES / row > 0 ? IO_EVENT_CHUNK_BYTES / row : 1);
    for (int i = 0; i < inner_ndim; i++) {
        dims[i + 1] = maxdims[i + 1] = (hsize_t)inner_shape[i];
        cshape[i + 1] = inner_shape[i];
    }
    chunk_shape(nd, cshape, gpuml_dtype_size(dtype), chunk);
    hid_t space = H5Screate_simple(nd, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    gpuml_status st = GPUML_OK;
    if (space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, nd, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot set up the dataset '%s'", w->path, name);
        w->failed = true;
    } else {
        st = create_and_write(w, name, dtype, space, dcpl, NULL, 0, out, fn);
    }
    if (space >= 0)
        H5Sclose(space);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    return st;
}

gpuml_status io_writer_append(gpuml_h5_writer *w, hid_t dset, gpuml_dtype dtype, int64_t have, int64_t rows,
                              const void *data, const char *name, const char *fn)
{
    if (rows == 0)
        return GPUML_OK;
    hsize_t dims[GPUML_MAX_DIMS], start[GPUML_MAX_DIMS] = {0}, count[GPUML_MAX_DIMS];
    hid_t type = io_h5_type(dtype);
    hid_t fspace = -1, mspace = -1;
    gpuml_status st = GPUML_OK;
    int nd = -1;
    hid_t space = H5Dget_space(dset);
    if (space >= 0) {
        nd = H5Sget_simple_extent_ndims(space);
        if (nd > 0)
            H5Sget_simple_extent_dims(space, dims, NULL);
        H5Sclose(space);
    }
    if (type < 0 || nd < 1) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot extend '%s'", w->path, name);
        goto out;
    }
    dims[0] = (hsize_t)(have + rows);
    memcpy(count, dims, sizeof count);
    count[0] = (hsize_t)rows;
    start[0] = (hsize_t)have;
    if (H5Dset_extent(dset, dims) < 0 || (fspace = H5Dget_space(dset)) < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        (mspace = H5Screate_simple(nd, count, NULL)) < 0 ||
        H5Dwrite(dset, type, mspace, fspace, H5P_DEFAULT, data) < 0)
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot append %" PRId64 " entries to '%s'", w->path, rows,
                        name);
out:
    if (st != GPUML_OK)
        w->failed = true;
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (type >= 0)
        H5Tclose(type);
    return st;
}

/* ---- attributes ------------------------------------------------------- */

/* Open (or create, as a group) the object at obj. */
static gpuml_status attr_target(gpuml_h5_writer *w, const char *obj, const char *name, hid_t *out, const char *fn)
{
    if (!w)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'w' is NULL");
    if (!name || !name[0] || strlen(name) > 255 || strchr(name, '/') || !strcmp(name, "."))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "attribute name '%s' is invalid",
                          name ? name : "(null)");
    char path[IO_PATH_MAX];
    GPUML_TRY(io_path_normalize(fn, "obj", obj ? obj : "/", path));
    gpuml_h5_kind k;
    GPUML_TRY(io_h5_kind(w->file, path, &k, w->tmp_path, fn));
    hid_t o;
    if (k == GPUML_H5_NONE) {
        GPUML_TRY(check_new_path(w, path, fn));
        hid_t lcpl = link_create_plist();
        o = lcpl < 0 ? -1 : H5Gcreate2(w->file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        gpuml_status st = GPUML_OK;
        if (o < 0) {
            w->failed = true;
            st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot create the group '%s'", w->path, path);
        }
        if (lcpl >= 0)
            H5Pclose(lcpl);
        GPUML_TRY(st);
    } else if (k == GPUML_H5_GROUP || k == GPUML_H5_DATASET) {
        o = H5Oopen(w->file, path, H5P_DEFAULT);
    } else {
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "'%s' is neither a group nor a dataset", path);
    }
    if (o < 0) {
        w->failed = true;
        return io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot open or create '%s'", w->path, path);
    }
    htri_t ex = H5Aexists(o, name);
    if (ex > 0 && H5Adelete(o, name) < 0)
        ex = -1;
    if (ex < 0) {
        w->failed = true;
        gpuml_status st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot replace attribute '%s' of '%s'", w->path,
                                     name, path);
        H5Oclose(o);
        return st;
    }
    *out = o;
    return GPUML_OK;
}

static gpuml_status put_attr(gpuml_h5_writer *w, const char *obj, const char *name, hid_t type, int rank, hsize_t n,
                             const void *data, const char *fn)
{
    hid_t o;
    GPUML_TRY(attr_target(w, obj, name, &o, fn));
    hid_t acpl = H5Pcreate(H5P_ATTRIBUTE_CREATE);
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = -1;
    gpuml_status st = GPUML_OK;
    if (acpl < 0 || space < 0 || H5Pset_char_encoding(acpl, H5T_CSET_UTF8) < 0 ||
        (a = H5Acreate2(o, name, type, space, acpl, H5P_DEFAULT)) < 0 || H5Awrite(a, type, data) < 0) {
        st = io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "'%s': cannot write attribute '%s' of '%s'", w->path, name,
                        obj ? obj : "/");
        w->failed = true;
    }
    if (a >= 0)
        H5Aclose(a);
    if (space >= 0)
        H5Sclose(space);
    if (acpl >= 0)
        H5Pclose(acpl);
    H5Oclose(o);
    return st;
}

static hid_t vlen_string_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static gpuml_status set_strings_locked(gpuml_h5_writer *w, const char *obj, const char *name,
                                       const char *const *values, size_t count, int rank, const char *fn)
{
    if (count > 0 && !values)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'values' is NULL");
    for (size_t i = 0; i < count; i++)
        if (!values[i])
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "values[%zu] is NULL", i);
    hid_t t = vlen_string_type();
    if (t < 0)
        return io_h5_fail(NULL, GPUML_ERR_HDF5, fn, "cannot make a string type");
    static const char *const none[1] = {""};
    gpuml_status st = put_attr(w, obj, name, t, rank, count, count ? values : none, fn);
    H5Tclose(t);
    return st;
}

gpuml_status gpuml_h5_writer_set_attr_string(gpuml_h5_writer *w, const char *obj, const char *name, const char *value)
{
    static const char fn[] = "gpuml_h5_writer_set_attr_string";
    if (!value)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'value' is NULL");
    IO_LOCKED_RETURN(set_strings_locked(w, obj, name, &value, 1, 0, fn));
}

gpuml_status gpuml_h5_writer_set_attr_strings(gpuml_h5_writer *w, const char *obj, const char *name,
                                              const char *const *values, size_t count)
{
    IO_LOCKED_RETURN(set_strings_locked(w, obj, name, values, count, 1, "gpuml_h5_writer_set_attr_strings"));
}

gpuml_status gpuml_h5_writer_set_attr_i64(gpuml_h5_writer *w, const char *obj, const char *name, int64_t value)
{
    IO_LOCKED_RETURN(put_attr(w, obj, name, H5T_NATIVE_INT64, 0, 1, &value, "gpuml_h5_writer_set_attr_i64"));
}

gpuml_status gpuml_h5_writer_set_attr_f64(gpuml_h5_writer *w, const char *obj, const char *name, double value)
{
    IO_LOCKED_RETURN(put_attr(w, obj, name, H5T_NATIVE_DOUBLE, 0, 1, &value, "gpuml_h5_writer_set_attr_f64"));
}

gpuml_status gpuml_h5_writer_set_attr_i64_array(gpuml_h5_writer *w, const char *obj, const char *name,
                                                const int64_t *values, size_t count)
{
    static const char fn[] = "gpuml_h5_writer_set_attr_i64_array";
    if (count > 0 && !values)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'values' is NULL");
    static const int64_t none = 0;
    IO_LOCKED_RETURN(put_attr(w, obj, name, H5T_NATIVE_INT64, 1, count, count ? values : &none, fn));
}
