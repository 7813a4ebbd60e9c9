/*
 * gpuml/io.h - HDF5 files: named tensors and attributes, ragged event
 * datasets, and the training data loader.
 *
 * Three layers, each usable alone:
 *
 * 1. gpuml_h5_writer / gpuml_h5_reader: tensors as datasets at paths like
 *    "/weights/conv1/weight", plus string / integer / float attributes. The
 *    writer works on a temporary file next to the target and renames it
 *    over the target on commit, so a crash never leaves a half-written file
 *    under the real name. Datasets get Fletcher32 checksums, and the whole
 *    file a BLAKE2b-256 checksum in a 512-byte HDF5 user block (h5py and
 *    h5ls skip it), written on commit. The reader checks that checksum with
 *    plain file I/O before HDF5 parses anything, so a corrupted file is a
 *    FORMAT error and never reaches HDF5's own parser (which crashes on some
 *    corruptions); files without one (h5py, other tools, older gpuml) are
 *    read as before. It trusts nothing in the file: dtype, rank, shape and
 *    size are checked against what the caller expects before anything is
 *    allocated.
 *
 *        gpuml_h5_writer *w;
 *        GPUML_TRY(gpuml_h5_writer_open("model.h5", &w));
 *        gpuml_h5_writer_set_attr_string(w, "/", "format", "gpuml-model");
 *        gpuml_h5_writer_write(w, ctx, "/weights/conv1/weight", weight);
 *        st = gpuml_h5_writer_commit(w);      // w is gone either way
 *
 *        gpuml_h5_reader *r;
 *        GPUML_TRY(gpuml_h5_reader_open("model.h5", &r));
 *        st = gpuml_h5_reader_read(r, ctx, "/weights/conv1/weight", weight);
 *        gpuml_h5_reader_close(r);
 *
 * 2. Ragged event datasets (DESIGN.md section 7), readable and writable
 *    with h5py:
 *        /row_splits        i64 [B+1]   event b owns rows row_splits[b]..[b+1]-1
 *        /<name>            [N, ...]    per-row fields ("features", "truth_id")
 *        /event/<name>      [B, ...]    per-event fields ("event/label")
 *    A field's dataset may carry an attribute "columns" (array of strings)
 *    naming its last axis. The root may carry format = "gpuml-dataset" and
 *    format_version = 1; files written by other tools may omit both.
 *    Field names in this API include the "event/" prefix of per-event
 *    fields. Supported dtypes: all gpuml dtypes (bool as h5py's enum).
 *
 * 3. gpuml_loader: shuffled, sharded batches of whole events, prepared on a
 *    background thread and handed out as tensors on a context's device.
 *
 *        gpuml_loader_config lc;
 *        gpuml_loader_config_init_defaults(&lc);
 *        const char *fields[] = {"features", "truth_id"};
 *        lc.path = "hgcal.h5"; lc.fields = fields; lc.num_fields = 2;
 *        lc.max_rows = 100000; lc.max_events = 64; lc.seed = 1;
 *        gpuml_loader *ld;
 *        GPUML_TRY(gpuml_loader_create(ctx, &lc, &ld));
 *        for (int epoch = 0; epoch < 10; epoch++) {
 *            gpuml_batch *b;
 *            while ((st = gpuml_loader_next(ld, &b)) == GPUML_OK && b) {
 *                train_step(gpuml_batch_row_splits(b), gpuml_batch_field(b, 0), ...);
 *                gpuml_batch_destroy(b);
 *            }
 *            if (st != GPUML_OK) break;           // read error, bad file, ...
 *        }
 *        gpuml_loader_destroy(ld);
 *
 * Threading: HDF5 (the serial library gpuml links against) is not
 * thread-safe, so every HDF5 call gpuml makes holds one library-wide mutex;
 * gpuml objects of this header may be used from different threads, each
 * object by one thread at a time. A host that calls HDF5 itself, on other
 * threads, while gpuml does, needs a thread-safe HDF5 build. gpuml switches
 * off HDF5's automatic error printing only for the duration of its own calls
 * (and restores it); HDF5's error text goes into gpuml's message instead.
 *
 * Errors: GPUML_ERR_IO (cannot create, open, sync or rename a file; a file
 * cut short while a reader or loader has it open, which HDF5 would
 * otherwise read as zeros that pass the checksums),
 * GPUML_ERR_FORMAT (not HDF5, truncated, checksum mismatch, wrong dtype /
 * rank / shape, inconsistent structure), GPUML_ERR_NOT_FOUND (no such
 * dataset, group, attribute or field), GPUML_ERR_HDF5 (HDF5 failed while
 * writing), GPUML_ERR_INVALID_ARGUMENT, GPUML_ERR_STATE. Messages name the
 * file and the dataset or attribute. Known HDF5 limitation: before 1.14.5,
 * a file whose object header is corrupted makes HDF5 itself leak a little
 * memory and print "HDF5: infinite loop closing library" when the process
 * exits (HDFGroup/hdf5#3790); gpuml still returns GPUML_ERR_FORMAT.
 */
#ifndef GPUML_IO_H
#define GPUML_IO_H

#include <stddef.h>
#include <stdint.h>

#include "gpuml/context.h"
#include "gpuml/export.h"
#include "gpuml/status.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A list of strings returned by the library (group members, string-array
 * attributes). Release with gpuml_strings_free. */
typedef struct gpuml_strings {
    size_t count;
    char **items; /* count NUL-terminated UTF-8 strings */
} gpuml_strings;

/* Free the items and set *s to {0, NULL}. NULL: no-op. */
GPUML_API void gpuml_strings_free(gpuml_strings *s);

/* ==== 1. named tensors and attributes ================================= */

typedef struct gpuml_h5_writer gpuml_h5_writer;
typedef struct gpuml_h5_reader gpuml_h5_reader;

/* Start writing `path`. The file is created as "<path>.tmp.<pid>.<id>" in
 * the same directory; nothing appears under `path` before commit. An
 * existing file at `path` stays intact until commit replaces it.
 * Errors: INVALID_ARGUMENT, IO (directory missing or not writable). */
GPUML_API gpuml_status gpuml_h5_writer_open(const char *path, gpuml_h5_writer **out);

/* Write tensor t as a new dataset at `name` ("/weights/conv1/weight"; the
 * leading '/' is optional), creating missing groups. Chunked with Fletcher32
 * checksums (scalars and empty tensors: plain contiguous, no checksum).
 * A CUDA tensor is copied to the host through ctx (a CUDA context on its
 * device; this synchronises ctx's stream); ctx may be NULL for a CPU tensor.
 * Errors: INVALID_ARGUMENT (bad name, name already used), DEVICE_MISMATCH,
 * HDF5 / IO (after which commit refuses: see below). */
GPUML_API gpuml_status gpuml_h5_writer_write(gpuml_h5_writer *w, gpuml_ctx *ctx, const char *name,
                                             const gpuml_tensor *t);

/* Attributes on the object at `obj` ("/" or NULL: the root; a group or a
 * dataset already written; a path that does not exist yet is created as a
 * group). An attribute of the same name is replaced. Strings are stored as
 * variable-length UTF-8, as h5py does. */
GPUML_API gpuml_status gpuml_h5_writer_set_attr_string(gpuml_h5_writer *w, const char *obj,
                                                       const char *name, const char *value);
GPUML_API gpuml_status gpuml_h5_writer_set_attr_strings(gpuml_h5_writer *w, const char *obj,
                                                        const char *name, const char *const *values,
                                                        size_t count);
GPUML_API gpuml_status gpuml_h5_writer_set_attr_i64(gpuml_h5_writer *w, const char *obj, const char *name,
                                                    int64_t value);
GPUML_API gpuml_status gpuml_h5_writer_set_attr_f64(gpuml_h5_writer *w, const char *obj, const char *name,
                                                    double value);
/* [count] i64; count may be 0. */
GPUML_API gpuml_status gpuml_h5_writer_set_attr_i64_array(gpuml_h5_writer *w, const char *obj,
                                                          const char *name, const int64_t *values,
                                                          size_t count);

/* Flush and close the temporary file, fsync it, rename it over `path` and
 * fsync the directory. Ends the writer in every case (w is freed); on
 * failure the temporary file is removed and `path` is left as it was.
 * Refuses (STATE) when an earlier write on w failed inside HDF5 or the file
 * system, since the file may be incomplete. NULL: INVALID_ARGUMENT. */
GPUML_API gpuml_status gpuml_h5_writer_commit(gpuml_h5_writer *w);

/* Close and delete the temporary file; `path` is left as it was. Frees w.
 * NULL: no-op. */
GPUML_API void gpuml_h5_writer_abort(gpuml_h5_writer *w);

/* Open an existing file read-only. A file that carries gpuml's whole-file
 * checksum is verified first (see gpuml_file_verify).
 * Errors: IO (missing or unreadable), FORMAT (checksum mismatch, not HDF5,
 * truncated). */
GPUML_API gpuml_status gpuml_h5_reader_open(const char *path, gpuml_h5_reader **out);
GPUML_API void gpuml_h5_reader_close(gpuml_h5_reader *r); /* NULL: no-op */

typedef enum gpuml_h5_kind {
    GPUML_H5_NONE = 0,    /* no object at the path */
    GPUML_H5_GROUP = 1,
    GPUML_H5_DATASET = 2,
    GPUML_H5_OTHER = 3    /* named datatype, soft or external link, ... */
} gpuml_h5_kind;

/* What is at `path` (GPUML_H5_NONE when nothing is; not an error). */
GPUML_API gpuml_status gpuml_h5_reader_kind(gpuml_h5_reader *r, const char *path, gpuml_h5_kind *out);

/* dtype and shape of the dataset at `name`, validated (a dtype gpuml knows,
 * rank <= GPUML_MAX_DIMS, a byte size the file can actually hold).
 * shape receives ndim entries. Errors: NOT_FOUND, FORMAT. */
GPUML_API gpuml_status gpuml_h5_reader_info(gpuml_h5_reader *r, const char *name, gpuml_dtype *dtype,
                                            int *ndim, int64_t shape[GPUML_MAX_DIMS]);

/* Read the dataset at `name` into dst, whose dtype and shape must equal
 * the file's (FORMAT otherwise; dst untouched). dst may be on a CUDA device
 * (ctx: a CUDA context on that device; the copy is ordered on its stream);
 * ctx may be NULL for a CPU dst. A Fletcher32 mismatch is FORMAT. */
GPUML_API gpuml_status gpuml_h5_reader_read(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *name,
                                            gpuml_tensor *dst);

/* Read the dataset at `name` into a new tensor on ctx's device. The file's
 * dtype must be `dtype` and its rank `ndim`; shape[i] >= 0 must match,
 * shape[i] = -1 accepts any extent (shape may be NULL: all -1).
 * *out receives the tensor (caller destroys). */
GPUML_API gpuml_status gpuml_h5_reader_read_new(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *name,
                                                gpuml_dtype dtype, int ndim, const int64_t *shape,
                                                gpuml_tensor **out);

/* Attributes of the object at `obj` ("/" or NULL: root). Type checks:
 * string attributes must be strings (fixed or variable length), i64 any
 * integer type whose value fits, f64 a float type; scalars may also be
 * one-element arrays. Errors: NOT_FOUND (object or attribute), FORMAT. */
/* Copies the string with its NUL into buf (size bytes); *len (may be NULL)
 * receives strlen. buf too small (or NULL with size 0, to ask for the
 * length): INVALID_ARGUMENT, with *len set. */
GPUML_API gpuml_status gpuml_h5_reader_attr_string(gpuml_h5_reader *r, const char *obj, const char *name,
                                                   char *buf, size_t size, size_t *len);
/* A scalar or 1-D string attribute as a list (caller frees with
 * gpuml_strings_free). */
GPUML_API gpuml_status gpuml_h5_reader_attr_strings(gpuml_h5_reader *r, const char *obj, const char *name,
                                                    gpuml_strings *out);
GPUML_API gpuml_status gpuml_h5_reader_attr_i64(gpuml_h5_reader *r, const char *obj, const char *name,
                                                int64_t *out);
GPUML_API gpuml_status gpuml_h5_reader_attr_f64(gpuml_h5_reader *r, const char *obj, const char *name,
                                                double *out);
/* Up to cap values into values; *count receives the attribute's length.
 * More than cap values: INVALID_ARGUMENT (values untouched). */
GPUML_API gpuml_status gpuml_h5_reader_attr_i64_array(gpuml_h5_reader *r, const char *obj, const char *name,
                                                      int64_t *values, size_t cap, size_t *count);

/* Names of the members of the group at `group`, sorted by name (caller
 * frees with gpuml_strings_free). Errors: NOT_FOUND, FORMAT (not a group). */
GPUML_API gpuml_status gpuml_h5_reader_list(gpuml_h5_reader *r, const char *group, gpuml_strings *out);

/* Check the whole-file checksum that gpuml's writers put in the HDF5 user
 * block (model files, checkpoints, datasets), with plain file I/O: HDF5 is
 * not called. *verified = 1 when the file carries a checksum and it
 * matches, 0 when the file carries none (written by h5py, another tool or
 * a gpuml before checksums). Reads the whole file.
 * Errors: FORMAT (mismatch, size differs from the recorded one, unknown
 * checksum layout; *verified = 0), IO, INVALID_ARGUMENT. */
GPUML_API gpuml_status gpuml_file_verify(const char *path, int *verified);

/* ==== 2. ragged event datasets ======================================== */

typedef struct gpuml_dataset gpuml_dataset;
typedef struct gpuml_dataset_writer gpuml_dataset_writer;

typedef struct gpuml_field_info {
    const char *name;   /* "features", "event/label"; valid while the dataset is open */
    int per_event;      /* 1: one entry per event ([B, ...]); 0: per row ([N, ...]) */
    gpuml_dtype dtype;
    int ndim;           /* rank of one row / event: the dataset's rank - 1 */
    int64_t shape[GPUML_MAX_DIMS]; /* its shape (ndim entries) */
} gpuml_field_info;

/* Open a dataset file and validate its whole structure: /row_splits is i64
 * [B+1], starts at 0, never decreases and ends at N; every other dataset
 * at the root is a per-row field with N rows; /event holds only per-event
 * fields with B rows; every field has a supported dtype, a byte size the
 * file can hold, and a "columns" attribute (if any) that matches its last
 * axis; no links leave the file. Errors: IO, FORMAT, NOT_FOUND. */
GPUML_API gpuml_status gpuml_dataset_open(const char *path, gpuml_dataset **out);
GPUML_API void gpuml_dataset_close(gpuml_dataset *ds); /* NULL: no-op */

GPUML_API int64_t gpuml_dataset_num_events(const gpuml_dataset *ds); /* B */
GPUML_API int64_t gpuml_dataset_num_rows(const gpuml_dataset *ds);   /* N */
/* Host copy of /row_splits ([B+1]), valid while ds is open. */
GPUML_API const int64_t *gpuml_dataset_row_splits(const gpuml_dataset *ds);
GPUML_API int gpuml_dataset_num_fields(const gpuml_dataset *ds);
/* Field i in [0, num_fields): per-row fields first, then per-event fields,
 * each sorted by name. */
GPUML_API gpuml_status gpuml_dataset_field(const gpuml_dataset *ds, int i, gpuml_field_info *out);
/* Index of the field called name. Errors: NOT_FOUND. */
GPUML_API gpuml_status gpuml_dataset_find(const gpuml_dataset *ds, const char *name, int *index);
/* The field's "columns" attribute (count 0 when it has none). */
GPUML_API gpuml_status gpuml_dataset_columns(gpuml_dataset *ds, const char *name, gpuml_strings *out);

/* Read events [first, first + count) into new tensors on ctx's device:
 * *row_splits [count+1] i64 (starting at 0) and, for each of the nfields
 * names, out[i] = [n, ...] (per-row) or [count, ...] (per-event). Caller
 * destroys them. On error nothing is returned. */
GPUML_API gpuml_status gpuml_dataset_read(gpuml_dataset *ds, gpuml_ctx *ctx, int64_t first, int64_t count,
                                          int nfields, const char *const *names, gpuml_tensor **row_splits,
                                          gpuml_tensor **out);

/* Write a dataset file event by event (atomic, like gpuml_h5_writer: the
 * file appears under `path` on commit). Datasets are chunked, extendible,
 * with Fletcher32 checksums; the root gets format = "gpuml-dataset",
 * format_version = 1. */
GPUML_API gpuml_status gpuml_dataset_writer_create(const char *path, gpuml_dataset_writer **out);

/* Declare a field before the first append. name: "features" (per-row) or
 * "event/label" (per-event). One row (event) of it is `ndim` dims of
 * `shape` (every extent >= 1; ndim 0: a scalar per row). columns: NULL or
 * num_columns names of the last axis (num_columns = shape[ndim-1], or 1
 * when ndim = 0), stored as the dataset's "columns" attribute. */
GPUML_API gpuml_status gpuml_dataset_writer_add_field(gpuml_dataset_writer *w, const char *name,
                                                      gpuml_dtype dtype, int ndim, const int64_t *shape,
                                                      const char *const *columns, int num_columns);

/* Append one event of n_rows rows. data[i] points to field i's values (in
 * add order), in host memory: n_rows rows for a per-row field, one entry
 * for a per-event field. Values are copied (buffered, written in chunks). */
GPUML_API gpuml_status gpuml_dataset_writer_append(gpuml_dataset_writer *w, int64_t n_rows,
                                                   const void *const *data);

/* The underlying file, for extra attributes (e.g. on "/" or a field). Do
 * not commit or abort it (STATE); it lives as long as w. */
GPUML_API gpuml_h5_writer *gpuml_dataset_writer_file(gpuml_dataset_writer *w);

GPUML_API int64_t gpuml_dataset_writer_num_events(const gpuml_dataset_writer *w);

/* Write what is buffered, then commit like gpuml_h5_writer_commit. Frees
 * w in every case. */
GPUML_API gpuml_status gpuml_dataset_writer_commit(gpuml_dataset_writer *w);
GPUML_API void gpuml_dataset_writer_abort(gpuml_dataset_writer *w); /* NULL: no-op */

/* ==== 3. data loader ================================================== */

typedef struct gpuml_loader gpuml_loader;
typedef struct gpuml_batch gpuml_batch;

typedef struct gpuml_loader_config {
    const char *path;            /* dataset file (copied)                             */
    const char *const *fields;   /* names of the fields each batch carries (copied)   */
    int num_fields;
    int64_t max_rows;            /* rows per batch (default 65536); an event with more
                                    rows than this is a batch of its own            */
    int64_t max_events;          /* events per batch (default 32)                     */
    uint64_t seed;               /* shuffling seed (default 0)                        */
    int shuffle;                 /* default 1; 0: file order                          */
    int rank, world_size;        /* data-parallel shard (default 0 of 1)              */
    int prefetch;                /* batches prepared ahead on a background thread
                                    (default 2); 0: no thread, next() reads          */
    int in_memory;               /* 1: read the fields into memory at creation;
                                    0: read each batch from the file; -1 (default):
                                    in memory when they take <= in_memory_limit     */
    size_t in_memory_limit;      /* default 1 GiB                                     */
} gpuml_loader_config;

GPUML_API void gpuml_loader_config_init_defaults(gpuml_loader_config *cfg);

/* Where a loader stands: the next batch gpuml_loader_next returns is
 * number `batch` of epoch `epoch` (batch == the epoch's batch count: the
 * end-of-epoch marker). fingerprint identifies the batch plan (file's
 * row_splits, seed, shuffle, limits, rank, world size): restoring a
 * position into a loader with another plan is refused. Store all three in
 * a checkpoint. */
typedef struct gpuml_loader_position {
    int64_t epoch;
    int64_t batch;
    uint64_t fingerprint;
} gpuml_loader_position;

/* Create a loader handing out batches on ctx's device. Opens and validates
 * the file, checks the fields exist, sets up the pinned staging buffers
 * (from ctx) and starts the prefetch thread at epoch 0, batch 0.
 *
 * Epoch plan, a pure function of (file, seed, epoch, limits, rank, world):
 * the events are shuffled with a generator seeded by (seed, epoch); each
 * event, in that order, goes to the rank with the fewest rows so far (then
 * fewest events, then lowest rank), which balances rows across ranks and
 * gives every rank a disjoint shard; each rank cuts its shard, in order,
 * into batches of at most max_rows rows and max_events events, never
 * splitting an event. All ranks then get the same number of batches: a rank
 * with fewer splits its batches with the most events in two; when none has
 * two events left, it repeats events of its shard, one per batch (only
 * with tiny shards or very uneven events). Within a batch, events are in
 * file order.
 *
 * ctx: the device of the batches; used only by gpuml_loader_next, on the
 * calling thread (the prefetch thread never touches it). The loader must be
 * destroyed before ctx. Errors: INVALID_ARGUMENT (limits, rank, fields,
 * fewer events than ranks), IO, FORMAT, NOT_FOUND, OUT_OF_MEMORY. */
GPUML_API gpuml_status gpuml_loader_create(gpuml_ctx *ctx, const gpuml_loader_config *cfg, gpuml_loader **out);

/* Stop the prefetch thread (finishing the read in progress) and free
 * everything. Safe at any point, also while prefetching. NULL: no-op. */
GPUML_API void gpuml_loader_destroy(gpuml_loader *l);

/* The next batch, as a new gpuml_batch (caller destroys), or *out = NULL at
 * the end of an epoch (the following call starts the next epoch). Waits
 * only when the batch is not prefetched yet. Device copies are enqueued on
 * ctx's stream (asynchronous on CUDA: use the tensors on that stream).
 * A read error of the prefetch thread is returned by the call that would
 * have returned that batch (and by every later call until
 * gpuml_loader_set_position); an allocation error leaves the position
 * unchanged so the call can be retried. */
GPUML_API gpuml_status gpuml_loader_next(gpuml_loader *l, gpuml_batch **out);

/* Number of batches of `epoch` (the same on every rank). */
GPUML_API gpuml_status gpuml_loader_num_batches(gpuml_loader *l, int64_t epoch, int64_t *out);

GPUML_API gpuml_status gpuml_loader_get_position(const gpuml_loader *l, gpuml_loader_position *out);

/* Continue from pos (e.g. from a checkpoint): the batches that follow are
 * bitwise those the saved loader would have returned. Discards prefetched
 * batches and a pending error. pos->fingerprint 0 skips the plan check.
 * Errors: INVALID_ARGUMENT (epoch not in [0, GPUML_LOADER_MAX_EPOCH], batch
 * out of range), STATE (other plan). */
#define GPUML_LOADER_MAX_EPOCH ((int64_t)1 << 53)
GPUML_API gpuml_status gpuml_loader_set_position(gpuml_loader *l, const gpuml_loader_position *pos);

/* A batch of b events and n rows. Its tensors belong to the batch (views
 * made from them keep their memory alive). */
GPUML_API int64_t gpuml_batch_num_events(const gpuml_batch *b);
GPUML_API int64_t gpuml_batch_num_rows(const gpuml_batch *b);
GPUML_API int64_t gpuml_batch_epoch(const gpuml_batch *b);
GPUML_API int64_t gpuml_batch_index(const gpuml_batch *b);   /* within its epoch */
/* [b+1] i64 on the loader's device. */
GPUML_API gpuml_tensor *gpuml_batch_row_splits(const gpuml_batch *b);
/* The i-th configured field: [n, ...] per-row or [b, ...] per-event;
 * NULL when i is out of range. */
GPUML_API gpuml_tensor *gpuml_batch_field(const gpuml_batch *b, int i);
/* Host array of the b events' indices in the file. */
GPUML_API const int64_t *gpuml_batch_event_ids(const gpuml_batch *b);
GPUML_API void gpuml_batch_destroy(gpuml_batch *b); /* NULL: no-op */

#ifdef __cplusplus
}
#endif
#endif
