/* Communicator creation and destruction: the backends' create and destroy
 * (see comm.c for the services they use). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_internal.h"
#include "dist/rendezvous.h"

static gpuml_status check_config(const gpuml_comm_config *cfg, const char *fn)
{
    if ((unsigned)cfg->backend > GPUML_COMM_NCCL)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->backend %d is not a backend", (int)cfg->backend);
    if (!(cfg->timeout_s > 0) || !isfinite(cfg->timeout_s))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->timeout_s = %g must be > 0 and finite",
                          cfg->timeout_s);
    if ((int)cfg->log_level < GPUML_LOG_DEBUG || cfg->log_level > GPUML_LOG_OFF)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->log_level %d is out of range",
                          (int)cfg->log_level);
    if (cfg->backend == GPUML_COMM_NCCL) {
        if ((unsigned)cfg->bootstrap > GPUML_BOOTSTRAP_ENV)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->bootstrap %d is not a bootstrap method",
                              (int)cfg->bootstrap);
        if (cfg->bootstrap == GPUML_BOOTSTRAP_FILE && (!cfg->bootstrap_path || !*cfg->bootstrap_path))
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "cfg->bootstrap is GPUML_BOOTSTRAP_FILE but cfg->bootstrap_path is not set");
    }
    if (cfg->size == 0 || cfg->size < -1 || cfg->rank < -1 || cfg->local_rank < -1 || cfg->device < -1)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "cfg->rank %d / size %d / local_rank %d / device %d: use -1 for 'from the environment'",
                          cfg->rank, cfg->size, cfg->local_rank, cfg->device);
    if (cfg->size > 0 && cfg->rank >= cfg->size)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->rank %d is not in [0, cfg->size = %d)",
                          cfg->rank, cfg->size);
    return GPUML_OK;
}

#if GPUML_HAVE_NCCL
static gpuml_status create_nccl(gpuml_comm *comm, const gpuml_comm_config *cfg, const char *fn)
{
    if (gpuml_cuda_device_count() <= 0)
        return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, fn,
                          "the NCCL backend needs a CUDA device, and none is usable here (no driver, no GPU, or "
                          "CUDA_VISIBLE_DEVICES hides them); use GPUML_COMM_MPI for CPU tensors");
    if (cfg->bootstrap == GPUML_BOOTSTRAP_MPI) {
#if GPUML_HAVE_MPI
        GPUML_TRY(gpuml_mpi_create(comm, cfg, fn));
#else
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                          "GPUML_BOOTSTRAP_MPI needs MPI, and this gpuml was built without it; use "
                          "GPUML_BOOTSTRAP_FILE or GPUML_BOOTSTRAP_ENV");
#endif
    } else {
        char err[512];
        int rank = cfg->rank, size = cfg->size, local = cfg->local_rank;
        if (gpuml_rdv_env_ranks(&rank, &size, &local, err, sizeof err) != 0)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "%s", err);
        comm->rank = rank;
        comm->size = size;
        comm->local_rank = local;
        comm->local_size = -1; /* unknown without MPI */
    }
    gpuml_status st = gpuml_nccl_create(comm, cfg, fn);
#if GPUML_HAVE_MPI
    if (st != GPUML_OK && comm->mpi)
        gpuml_mpi_destroy(comm);
#endif
    return st;
}
#endif

gpuml_status gpuml_comm_create(const gpuml_comm_config *cfg, gpuml_comm **out)
{
    static const char fn[] = "gpuml_comm_create";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    if (!cfg)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'cfg' is NULL");
    GPUML_TRY(check_config(cfg, fn));

    gpuml_comm *comm = calloc(1, sizeof *comm);
    if (!comm)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the communicator");
    comm->backend = cfg->backend;
    comm->timeout_s = cfg->timeout_s;
    comm->deterministic = cfg->deterministic != 0;
    comm->validate = cfg->validate != 0;
    comm->log_fn = cfg->log_fn;
    comm->log_user = cfg->log_user;
    comm->log_level = cfg->log_level;
    comm->device.type = GPUML_DEVICE_CPU;
    comm->rank = 0;
    comm->size = comm->local_size = 1;

    gpuml_status st = GPUML_OK;
    switch (cfg->backend) {
    case GPUML_COMM_SELF:
        if (cfg->size > 1)
            st = gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "GPUML_COMM_SELF has one rank, cfg->size is %d",
                            cfg->size);
        break;
    case GPUML_COMM_MPI:
#if GPUML_HAVE_MPI
        st = gpuml_mpi_create(comm, cfg, fn);
#else
        st = gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                        "this gpuml was built without MPI (configure with an MPI installation, e.g. Debian's "
                        "libopenmpi-dev, and -Dmpi=enabled); GPUML_COMM_SELF works for a single process");
#endif
        break;
    case GPUML_COMM_NCCL:
#if GPUML_HAVE_NCCL
        st = create_nccl(comm, cfg, fn);
#else
        st = gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                        "this gpuml was built without NCCL (it needs the CUDA toolkit and NCCL under "
                        "-Dtoolkit_root, and -Dnccl=enabled); use GPUML_COMM_MPI for CPU tensors");
#endif
        break;
    }
    if (st != GPUML_OK) {
        free(comm);
        return st;
    }
    gpuml_comm_log(comm, GPUML_LOG_INFO, "communicator up: %s, rank %d of %d, local rank %d of %d, device %s:%d",
                   comm->backend == GPUML_COMM_NCCL ? "NCCL" : comm->backend == GPUML_COMM_MPI ? "MPI" : "self",
                   comm->rank, comm->size, comm->local_rank, comm->local_size,
                   comm->device.type == GPUML_DEVICE_CUDA ? "cuda" : "cpu", comm->device.index);
    *out = comm;
    return GPUML_OK;
}

void gpuml_comm_destroy(gpuml_comm *comm)
{
    if (!comm)
        return;
    /* Requests never waited for: their collective may still run, so they
     * are abandoned like those of a broken communicator. */
    for (gpuml_comm_request *r = comm->inflight_head; r; r = r->next) {
        r->abandoned = true;
#if GPUML_HAVE_MPI
        if (!r->on_nccl)
            gpuml_mpi_abandon(r);
#endif
    }
    if (comm->inflight_head && comm->broken == GPUML_OK)
        gpuml_comm_log(comm, GPUML_LOG_WARN, "gpuml_comm_destroy: collectives still in flight were abandoned");
#if GPUML_HAVE_NCCL
    if (comm->nccl)
        gpuml_nccl_destroy(comm);
#endif
#if GPUML_HAVE_MPI
    if (comm->mpi)
        gpuml_mpi_destroy(comm);
#endif
    gpuml_comm_request *r = comm->all;
    while (r) {
        gpuml_comm_request *next = r->all_next;
        if (!r->abandoned)
            gpuml_req_free_bs(r);
        free(r);
        r = next;
    }
    free(comm);
}

gpuml_status gpuml_comm_nccl_unique_id(char hex[257])
{
    static const char fn[] = "gpuml_comm_nccl_unique_id";
    if (!hex)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'hex' is NULL");
#if GPUML_HAVE_NCCL
    unsigned char id[128];
    GPUML_TRY(gpuml_nccl_unique_id_bytes(id, fn));
    gpuml_rdv_hex_encode(id, sizeof id, hex);
    return GPUML_OK;
#else
    return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn, "this gpuml was built without NCCL");
#endif
}
