/*
 * gpuml/ddp.h - data-parallel training: gradient buckets all-reduced over a
 * communicator (gpuml/dist.h) while the backward pass is still running.
 *
 *     gpuml_comm *comm;  gpuml_comm_create(&cc, &comm);     // under mpirun / srun
 *     gpuml_ddp *ddp;    gpuml_ddp_create(comm, model, NULL, &ddp);  // broadcasts rank 0's weights
 *     gpuml_trainer_set_ddp(trainer, ddp);                  // the trainer calls begin / end
 *
 * or by hand around a step:
 *     gpuml_ddp_begin(ddp, tape, 1);      // before the forward
 *     ... forward, loss, gpuml_backward ...
 *     gpuml_ddp_end(ddp);                 // gradients now averaged over the ranks
 *     gpuml_optim_step(opt);
 *
 * Buckets cover the model's gradient slab in reverse layer order (the order
 * in which backward finishes them): a small first bucket, then buckets of
 * about bucket_bytes. A bucket's all-reduce (average) starts from the
 * tape's gradient hook as soon as the last of its gradients is final, and
 * buckets start in the same order on every rank. With MPI the hook also
 * progresses the requests in flight; with NCCL they run on the GPU.
 *
 * Equivalence: with the communicator's deterministic mode (the default),
 * N ranks that each take B/N events of a batch compute the mean-reduced
 * loss's gradient of the whole batch (same up to float rounding), and the
 * result is bitwise reproducible run to run; one rank is bitwise plain
 * training. Batch-norm statistics are per rank (as PyTorch's DDP without
 * SyncBatchNorm); with broadcast_buffers the running statistics of rank 0
 * are broadcast at each synchronised step, so all ranks keep the same.
 *
 * Faults: a failed or timed-out collective breaks the communicator and is
 * returned by gpuml_ddp_end (and every later call) on every surviving rank.
 * Threading: one thread at a time, the thread of the tape.
 */
#ifndef GPUML_DDP_H
#define GPUML_DDP_H

#include "gpuml/autograd.h"
#include "gpuml/dist.h"
#include "gpuml/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpuml_ddp_config {
    int64_t first_bucket_bytes; /* default 1 MiB                               */
    int64_t bucket_bytes;       /* default 25 MiB                              */
    int broadcast_buffers;      /* default 1: rank 0's buffers each sync step   */
} gpuml_ddp_config;

GPUML_API void gpuml_ddp_config_init_defaults(gpuml_ddp_config *cfg);

typedef struct gpuml_ddp gpuml_ddp;

/* Collective: broadcasts rank 0's parameters and buffers to every rank.
 * cfg may be NULL (defaults). The model's context is used for the
 * collectives; its device must be the communicator's. */
GPUML_API gpuml_status gpuml_ddp_create(gpuml_comm *comm, gpuml_model *model, const gpuml_ddp_config *cfg,
                                        gpuml_ddp **out);
GPUML_API void gpuml_ddp_destroy(gpuml_ddp *ddp);

/* Before a step's forward on `tape` (installs the gradient hook). sync 0:
 * gradients only accumulate locally (gradient accumulation); the next
 * synchronised step reduces the sum. */
GPUML_API gpuml_status gpuml_ddp_begin(gpuml_ddp *ddp, gpuml_tape *tape, int sync);
/* After backward: starts the buckets still waiting, waits for all, and
 * reports any fault. No-op after a begin with sync 0. */
GPUML_API gpuml_status gpuml_ddp_end(gpuml_ddp *ddp);

GPUML_API int gpuml_ddp_num_buckets(const gpuml_ddp *ddp);
/* Monotonic times (seconds) of the last synchronised step: when each
 * bucket's all-reduce started, and when gpuml_ddp_end was entered (the end
 * of backward). starts: up to cap entries. */
GPUML_API void gpuml_ddp_last_timeline(const gpuml_ddp *ddp, double *starts, int cap, double *backward_end);

#ifdef __cplusplus
}
#endif
#endif
