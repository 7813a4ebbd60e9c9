/*
 * libgpuml/io/h5.h - what the io part shares internally: the HDF5 lock,
 * error text from HDF5's error stack, path and type validation, and the
 * writer/dataset structs the dataset writer and the loader build on.
 *
 * Locking: serial HDF5 keeps global state and is not thread-safe, so every
 * HDF5 call in gpuml runs between io_h5_lock and io_h5_unlock (one
 * recursive, library-wide mutex). The lock also switches HDF5's automatic
 * error printing off for the calling thread's call and restores the
 * caller's handler on unlock, so nothing is left changed.
 */
#ifndef GPUML_IO_H5_H
#define GPUML_IO_H5_H

#include <hdf5.h>
#include <stdbool.h>

#include "core/internal.h"
#include "gpuml/io.h"

#define IO_PATH_MAX 1024

typedef struct io_h5_guard {
    H5E_auto2_t func;
    void *data;
} io_h5_guard;

void io_h5_lock(io_h5_guard *g);
void io_h5_unlock(io_h5_guard *g);

/* Run `call` (a gpuml_status expression) under the lock and return it. */
#define IO_LOCKED_RETURN(call)                      \
    do {                                            \
        io_h5_guard io_g_;                          \
        io_h5_lock(&io_g_);                         \
        gpuml_status io_st_ = (call);               \
        io_h5_unlock(&io_g_);                       \
        return io_st_;                              \
    } while (0)

/* gpuml_fail with " (HDF5: <the most specific entries of HDF5's error
 * stack>)" appended when the stack has any. Call with the lock held. */
gpuml_status io_h5_fail(const gpuml_ctx *ctx, gpuml_status status, const char *fn, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Validate an object path ("a/b", "/a/b", "/" for the root) and write it
 * with a leading '/' into buf. Rejects empty components, ".", "..", and
 * names over IO_PATH_MAX. */
gpuml_status io_path_normalize(const char *fn, const char *what, const char *path, char buf[IO_PATH_MAX]);

/* Open an existing HDF5 file read-only: IO when it cannot be opened or is
 * not a regular file, FORMAT when it is not (valid) HDF5. */
gpuml_status io_file_open(const char *path, hid_t *out, const char *fn);

/* The open file's descriptor and size at open. HDF5 reads past the end of
 * a file as zeros, and an all-zero chunk passes its Fletcher32 check, so a
 * file cut short while open would read as zeros without an error:
 * io_file_check fails (IO) once the file is smaller than it was. */
typedef struct io_file_guard {
    int fd;      /* -1: not available (a driver without descriptors) */
    long long size;
} io_file_guard;

void io_file_guard_init(hid_t file, io_file_guard *g);
gpuml_status io_file_check(const io_file_guard *g, const char *fname, const char *fn);

/* Memory (and file) type of a gpuml dtype; the caller closes it. */
hid_t io_h5_type(gpuml_dtype dtype);
/* Memory type for reading dataset dset of (validated) dtype: io_h5_type,
 * except bool, read in the file's own enum (names need not match). */
hid_t io_h5_read_type(hid_t dset, gpuml_dtype dtype);

/* What is at `path` (normalized): NONE, GROUP, DATASET or OTHER. Every
 * link on the way must be a hard link (soft and external links would let a
 * file point us elsewhere: OTHER). */
gpuml_status io_h5_kind(hid_t file, const char *path, gpuml_h5_kind *out, const char *fname, const char *fn);

/* Open the group or dataset at `path` (normalized). NOT_FOUND when absent,
 * FORMAT when it is something else. */
gpuml_status io_h5_open(hid_t file, const char *path, gpuml_h5_kind want, hid_t *out, const char *fname,
                        const char *fn);

/* A validated dataset: a gpuml dtype, rank <= 8, every extent < 2^62, a
 * byte size that fits size_t and that the file's storage can hold. */
typedef struct io_dsinfo {
    gpuml_dtype dtype;
    int ndim;
    int64_t shape[GPUML_MAX_DIMS];
    size_t nbytes;
} io_dsinfo;

gpuml_status io_h5_inspect(hid_t dset, io_dsinfo *out, const char *fname, const char *dname, const char *fn);

/* After reading bool data: every byte must be 0 or 1. */
gpuml_status io_check_bool(const void *data, size_t n, const char *fname, const char *dname, const char *fn);

/* ---- writer internals (used by the dataset writer) -------------------- */
struct gpuml_h5_writer {
    hid_t file;
    char *path;
    char *tmp_path;
    bool failed;   /* an HDF5 / file-system write failed: commit refuses */
    bool owned;    /* belongs to a dataset writer: commit/abort via that  */
};

/* Create an extendible, chunked, Fletcher32 dataset of shape [0, inner...]
 * (maxdims [unlimited, inner...]) at `name` (normalized). */
gpuml_status io_writer_create_extendible(gpuml_h5_writer *w, const char *name, gpuml_dtype dtype, int inner_ndim,
                                         const int64_t *inner_shape, hid_t *out, const char *fn);
/* Append `rows` leading-axis entries from host memory to an extendible
 * dataset that has `have` of them. */
gpuml_status io_writer_append(gpuml_h5_writer *w, hid_t dset, gpuml_dtype dtype, int64_t have, int64_t rows,
                              const void *data, const char *name, const char *fn);
gpuml_status io_writer_commit_locked(gpuml_h5_writer *w, const char *fn);
void io_writer_abort_locked(gpuml_h5_writer *w);
gpuml_status io_writer_open_locked(const char *path, gpuml_h5_writer **out, const char *fn);

/* A reader is only a file and its name: the dataset reader wraps its own
 * file in one (on the stack) to reuse the attribute and listing code. */
struct gpuml_h5_reader {
    hid_t file;
    char *path;
    io_file_guard guard;
};

/* gpuml_h5_reader_open for gpuml's own files (model files, checkpoints):
 * io_sum_verify(ctx, require) first, so a file without a checksum is
 * logged (WARN) or, with require, refused (FORMAT). */
gpuml_status io_reader_open_verified(const gpuml_ctx *ctx, bool require, const char *path, gpuml_h5_reader **out,
                                     const char *fn);

/* ---- dataset internals (used by the loader) --------------------------- */
typedef struct io_field {
    char *name;        /* "features", "event/label" */
    bool per_event;
    io_dsinfo info;    /* of the whole dataset */
    size_t unit_bytes; /* bytes of one row / event */
    hid_t dset;
    hid_t mtype;       /* memory type for reads */
} io_field;

struct gpuml_dataset {
    char *path;
    hid_t file;
    io_file_guard guard;
    int64_t nevents, nrows;
    int64_t *row_splits; /* [nevents + 1] */
    int nfields;
    io_field *fields;
};

/* Read entries (rows of a per-row field, or events of a per-event field)
 * of field f for the given runs [start[i], start[i] + len[i]) (ascending,
 * not overlapping) into dst, packed in that order. total = sum of len.
 * Takes the HDF5 lock; no context (the loader thread calls it). */
gpuml_status io_dataset_read_runs(gpuml_dataset *ds, int f, const int64_t *start, const int64_t *len, int64_t nruns,
                                  int64_t total, void *dst, const char *fn);

#endif
