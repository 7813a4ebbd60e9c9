/*
 * gpuml/dist.h - communicators and collectives for data-parallel training.
 *
 * A communicator connects the ranks (processes) of a job. Backends:
 *   GPUML_COMM_MPI   CPU tensors, over MPI (Open MPI); works under mpirun and
 *                    under srun when Open MPI has PMI/PMIx support.
 *   GPUML_COMM_NCCL  CUDA tensors, over NCCL; bootstrapped over MPI (then CPU
 *                    tensors go over MPI on the same communicator) or, where
 *                    SLURM offers no PMI, through a shared file or an
 *                    environment variable.
 *   GPUML_COMM_SELF  one rank, no library: every collective is a local copy.
 *                    Works in every build.
 * A build without MPI (or NCCL) returns GPUML_ERR_UNSUPPORTED from
 * gpuml_comm_create for that backend; NCCL on a machine without a usable GPU
 * gets GPUML_ERR_NO_DEVICE.
 *
 *     gpuml_comm_config cc;
 *     gpuml_comm_config_init_defaults(&cc);        // MPI, deterministic
 *     cc.timeout_s = 120;                          // a stalled peer -> TIMEOUT
 *     gpuml_comm *comm;
 *     if (gpuml_comm_create(&cc, &comm) != GPUML_OK) { puts(gpuml_last_error()); return 1; }
 *     gpuml_comm_broadcast(comm, ctx, params, 0);   // initial weights from rank 0
 *     for (...) {
 *         ... backward; for each gradient bucket, when its gradients are final:
 *         gpuml_comm_allreduce_start(comm, ctx, GPUML_COMM_AVG, bucket[i], bucket[i], &req[i]);
 *         ... more backward, calling gpuml_comm_progress(comm) between ops ...
 *         for (i) if (gpuml_comm_wait(req[i], -1) != GPUML_OK) goto fault;  // before the step
 *         ... optimizer step ...
 *     }
 *     gpuml_comm_destroy(comm);
 *
 * MPI lifetime: gpuml_comm_create initialises MPI (MPI_Init_thread, asking
 * for MPI_THREAD_MULTIPLE) when the host has not; gpuml then finalises it
 * when the last communicator it created is destroyed - unless a collective
 * failed, because MPI_Finalize waits for every rank and would hang on a
 * stuck or dead peer (the process should then simply exit). MPI cannot be
 * initialised twice in a process, so a host that needs MPI after gpuml is
 * done must initialise MPI itself. gpuml never finalises a host's MPI, never
 * changes the error handler of a host's communicator (it duplicates it and
 * sets MPI_ERRORS_RETURN on its own copies), and calls MPI only from the
 * threads that call gpuml_comm_* functions.
 *
 * Ranks and devices: rank and size come from MPI (or, without MPI, from
 * the config, else SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, else Open
 * MPI's OMPI_COMM_WORLD_* variables). The local rank is the rank among the
 * processes of the same node (MPI_Comm_split_type SHARED). An NCCL
 * communicator uses CUDA device (local_rank % visible devices) unless
 * cfg.device says otherwise: create the gpuml context for gpuml_comm_device.
 *
 * Timeouts and faults: no collective waits forever. One that does not
 * complete within the timeout returns GPUML_ERR_TIMEOUT; an MPI or NCCL
 * error returns GPUML_ERR_MPI / GPUML_ERR_NCCL with the library's text.
 * Either way the communicator becomes broken, and the other ranks are told
 * (over MPI, when present): their pending collectives fail with the same
 * status within milliseconds instead of waiting out their own timeout.
 * Every later call on a broken communicator returns GPUML_ERR_STATE at
 * once. A broken communicator cannot be repaired; destroy it and end the
 * process with an error. A dead rank:
 * Open MPI 4.1's mpirun kills the whole job when a rank dies unless it runs
 * with `--enable-recovery`; with it, the survivors get the error and can exit
 * on their own (mpirun then exits 0 whatever the ranks return: judge the job
 * by the ranks' own reports). Under srun, use `--kill-on-bad-exit=0`.
 *
 * Validation (cfg.validate, on by default): before an MPI collective the
 * ranks exchange a small header (collective, dtype, shapes, op, root, call
 * number), so that mismatched calls become the same error on every rank -
 * GPUML_ERR_SHAPE, _DTYPE, _INVALID_ARGUMENT, the communicator staying
 * usable - rather than a hang or corrupted data. A rank whose own arguments
 * are bad still takes part in the header exchange, so the others fail fast
 * too. Ranks that call different collectives at the same point get
 * GPUML_ERR_STATE (the communicator stays usable); a rank that skipped a
 * call is caught when the headers stop matching or, at the latest, by the
 * timeout. With validate = 0 (all ranks alike) a mismatch is undefined: an
 * MPI error, wrong data or a timeout. NCCL collectives are checked locally
 * only.
 *
 * Determinism (cfg.deterministic, on by default): a floating-point SUM or
 * AVG all-reduce / reduce-scatter is computed as
 *     out[i] = (float)( ((double)x_0[i] + x_1[i]) + ... + x_{n-1}[i] )   (/ n for AVG)
 * in rank order, accumulated in double for f32 (f64 in f64), on every
 * backend: bitwise the same on every rank, in every run, for every message
 * size or bucketing, MPI version and algorithm, on MPI and NCCL. It is
 * built from data movement only (all-to-all of chunks, local sum,
 * all-gather), moving as many bytes per rank as a ring all-reduce, with a
 * scratch buffer about the tensor's size from ctx's allocator. Off, MPI's
 * and NCCL's own algorithms run: Open MPI 4.1's are reproducible for a
 * fixed message size and rank count but not in rank order, and change with
 * size, MCA parameters and between its blocking and non-blocking
 * implementations. Integer sums and MAX/MIN are exact in any order and
 * always use the native algorithm.
 *
 * Progress and overlap: Open MPI progresses non-blocking collectives only
 * inside MPI calls. gpuml has no progress thread; call gpuml_comm_progress
 * (or gpuml_comm_test) at hook points while computing - after each backward
 * op, say. See bench/README-dist.md for what this overlaps on Open MPI 4.1.
 * NCCL collectives progress on the GPU by themselves.
 *
 * Tensors: CPU tensors go over MPI, CUDA tensors over NCCL; they must be on
 * the context's device, contiguous, and (for NCCL) on gpuml_comm_device.
 * Reductions take f32, f64, i32, i64 (NCCL also f16/bf16, not deterministic);
 * AVG floats only. Data movement (broadcast, all-gather) takes any dtype.
 *
 * Threading: a communicator is used by one thread at a time, like a context.
 */
#ifndef GPUML_DIST_H
#define GPUML_DIST_H

#include <stdint.h>

#include "gpuml/context.h"
#include "gpuml/export.h"
#include "gpuml/status.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpuml_comm gpuml_comm;
typedef struct gpuml_comm_request gpuml_comm_request;

typedef enum gpuml_comm_backend {
    GPUML_COMM_SELF = 0,
    GPUML_COMM_MPI = 1,
    GPUML_COMM_NCCL = 2
} gpuml_comm_backend;

/* How an NCCL communicator's ranks find each other (the NCCL unique id). */
typedef enum gpuml_comm_bootstrap {
    GPUML_BOOTSTRAP_MPI = 0,  /* rank 0's id broadcast over MPI; rank, size and
                                 local rank from MPI                          */
    GPUML_BOOTSTRAP_FILE = 1, /* rank 0 writes the id to bootstrap_path (write
                                 to a temporary name, then rename: atomic), the
                                 others poll for it until the timeout. The path
                                 must be on a file system all ranks see and
                                 unique to the job (e.g. contain
                                 $SLURM_JOB_ID); a file left by another job is
                                 recognised by its tag and ignored.          */
    GPUML_BOOTSTRAP_ENV = 2   /* the id, as 256 hex digits from
                                 gpuml_comm_nccl_unique_id, in the environment
                                 variable bootstrap_env, set by the launcher
                                 for every rank                               */
} gpuml_comm_bootstrap;

typedef enum gpuml_comm_op {
    GPUML_COMM_SUM = 0,
    GPUML_COMM_AVG = 1, /* sum / size; floating-point dtypes only            */
    GPUML_COMM_MAX = 2, /* NaN inputs give an unspecified result             */
    GPUML_COMM_MIN = 3,
    GPUML_COMM_OP_COUNT_
} gpuml_comm_op;

typedef struct gpuml_comm_config {
    gpuml_comm_backend backend; /* default GPUML_COMM_MPI                           */
    const void *mpi_comm;       /* address of the caller's MPI_Comm (from the same
                                   MPI gpuml was built with) to duplicate; NULL:
                                   MPI_COMM_WORLD                                   */
    double timeout_s;           /* a collective (or creation) that does not finish
                                   within this many seconds fails with
                                   GPUML_ERR_TIMEOUT; default 300; must be > 0      */
    int deterministic;          /* default 1: see the overview                      */
    int validate;               /* default 1: cross-rank header check (MPI)         */
    /* Without MPI (NCCL with FILE or ENV bootstrap): -1 = from the environment. */
    int rank, size, local_rank;
    int device;                 /* NCCL: CUDA device; -1 (default): local_rank % count */
    gpuml_comm_bootstrap bootstrap;  /* NCCL: default GPUML_BOOTSTRAP_MPI           */
    const char *bootstrap_path;      /* FILE: the rendezvous file                   */
    const char *bootstrap_env;       /* ENV: variable name; NULL: "GPUML_NCCL_ID"   */
    const char *bootstrap_tag;       /* FILE: job tag written with the id; NULL:
                                        $SLURM_JOB_ID.$SLURM_STEP_ID when set       */
    gpuml_log_fn log_fn;        /* NULL: stderr                                     */
    void *log_user;
    gpuml_log_level log_level;  /* default GPUML_LOG_WARN                           */
} gpuml_comm_config;

/* Fill cfg with the defaults above. Always call it before setting fields. */
GPUML_API void gpuml_comm_config_init_defaults(gpuml_comm_config *cfg);

/* Create a communicator; collective over the ranks (every rank calls it with
 * the same backend and settings). *out receives it (NULL on failure).
 * Errors: INVALID_ARGUMENT; UNSUPPORTED (backend not in this build);
 * NO_DEVICE (NCCL without a usable GPU); STATE (MPI already finalised);
 * TIMEOUT (a rank did not arrive); MPI, NCCL, CUDA, IO (rendezvous file). */
GPUML_API gpuml_status gpuml_comm_create(const gpuml_comm_config *cfg, gpuml_comm **out);

/* Release the communicator, and finalise MPI if gpuml initialised it, this
 * was its last communicator, and no fault happened (see the overview); only
 * that MPI_Finalize waits for the other ranks. Requests not yet waited for are abandoned:
 * their tensors are kept alive, as MPI may still write them. NULL: no-op. */
GPUML_API void gpuml_comm_destroy(gpuml_comm *comm);

GPUML_API int gpuml_comm_rank(const gpuml_comm *comm);
GPUML_API int gpuml_comm_size(const gpuml_comm *comm);
GPUML_API int gpuml_comm_local_rank(const gpuml_comm *comm); /* rank within the node */
/* Ranks on this node; -1 when unknown (NCCL bootstrapped without MPI). */
GPUML_API int gpuml_comm_local_size(const gpuml_comm *comm);
GPUML_API gpuml_comm_backend gpuml_comm_get_backend(const gpuml_comm *comm);
/* The device the communicator reduces on: CUDA device for NCCL, else CPU. */
GPUML_API gpuml_device gpuml_comm_device(const gpuml_comm *comm);

/* GPUML_OK while usable; after a fault, the status that broke it. */
GPUML_API gpuml_status gpuml_comm_status(const gpuml_comm *comm);

/* Change the timeout for later collectives (seconds, > 0). */
GPUML_API gpuml_status gpuml_comm_set_timeout(gpuml_comm *comm, double timeout_s);

/* Break the communicator on purpose (this rank cannot go on: a NaN loss, a
 * failed read): the other ranks' pending collectives fail with
 * GPUML_ERR_CANCELLED within milliseconds, later ones with GPUML_ERR_STATE
 * (over MPI; an NCCL-only communicator is aborted locally and the others
 * time out). Never blocks. */
GPUML_API void gpuml_comm_abort(gpuml_comm *comm);

/* Rows of a tensor with `rows` rows that rank `rank` owns in
 * gpuml_comm_reduce_scatter: [*start, *start + *count), the first rows %
 * size ranks holding one row more. */
GPUML_API void gpuml_comm_shard_rows(int64_t rows, int size, int rank, int64_t *start, int64_t *count);

/* ---- collectives --------------------------------------------------------
 * Every rank calls the same collectives in the same order. Each returns
 * when the result is in place (on CUDA: the host waits for the GPU, with
 * the timeout; use the _start form to overlap). On error the outputs are
 * undefined unless the error came from argument checks. ctx supplies the
 * stream, the scratch memory and the error message. */

/* out = op over ranks of in. in, out: same shape and dtype on every rank;
 * out may be in (in place). */
GPUML_API gpuml_status gpuml_comm_allreduce(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_comm_op op,
                                            const gpuml_tensor *in, gpuml_tensor *out);

/* t = root's t on every rank (same shape and dtype everywhere). */
GPUML_API gpuml_status gpuml_comm_broadcast(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_tensor *t, int root);

/* in [M_r, ...] on rank r (M_r may differ by rank, even be 0; trailing shape
 * and dtype the same) -> out [M_0 + ... + M_{n-1}, ...] on every rank, rank
 * r's rows after those of ranks < r. in and out must not overlap. */
GPUML_API gpuml_status gpuml_comm_allgather(gpuml_comm *comm, gpuml_ctx *ctx, const gpuml_tensor *in,
                                            gpuml_tensor *out);

/* in [R, ...] (same on every rank) -> out [count_r, ...]: rows
 * gpuml_comm_shard_rows(R, size, rank) of the all-reduce of in. */
GPUML_API gpuml_status gpuml_comm_reduce_scatter(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_comm_op op,
                                                 const gpuml_tensor *in, gpuml_tensor *out);

/* Returns when every rank has entered it (or with TIMEOUT). */
GPUML_API gpuml_status gpuml_comm_barrier(gpuml_comm *comm);

/* ---- non-blocking ------------------------------------------------------
 * gpuml_comm_allreduce_start begins the all-reduce and returns at once with
 * a request. in and out must stay allocated and untouched until
 * gpuml_comm_wait (gpuml holds a reference to their memory, so destroying a
 * handle early is safe, but the data is undefined). ctx must stay alive too.
 * On CUDA the collective runs on the communicator's own stream, after the
 * work already enqueued on ctx's stream; gpuml_comm_wait makes ctx's stream
 * wait for it. Several requests may be in flight; they complete in any
 * order but must be started in the same order on every rank. */
GPUML_API gpuml_status gpuml_comm_allreduce_start(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_comm_op op,
                                                  const gpuml_tensor *in, gpuml_tensor *out,
                                                  gpuml_comm_request **req);

/* Advance the request without blocking; *done = 1 when it has completed
 * (then gpuml_comm_wait returns at once). Returns the request's error, if
 * any; the request stays valid until gpuml_comm_wait. */
GPUML_API gpuml_status gpuml_comm_test(gpuml_comm_request *req, int *done);

/* Wait for the request for at most timeout_s seconds (< 0: the
 * communicator's timeout) and release it, whatever the outcome. Expiry is a
 * fault: GPUML_ERR_TIMEOUT, and the communicator breaks. */
GPUML_API gpuml_status gpuml_comm_wait(gpuml_comm_request *req, double timeout_s);

/* Advance every request in flight on the communicator (cheap when there is
 * nothing to do). Call it at hook points while computing. Returns the first
 * fault seen, if any. */
GPUML_API gpuml_status gpuml_comm_progress(gpuml_comm *comm);

/* ---- NCCL bootstrap helper ---------------------------------------------
 * Write a fresh NCCL unique id as 256 hex digits plus NUL into hex[257], for
 * a launcher to put into every rank's environment (GPUML_BOOTSTRAP_ENV).
 * Errors: UNSUPPORTED without NCCL; NCCL. */
GPUML_API gpuml_status gpuml_comm_nccl_unique_id(char hex[257]);

#ifdef __cplusplus
}
#endif
#endif
