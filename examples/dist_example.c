/* examples/dist_example.c - data-parallel gradient averaging in a few lines.
 *
 *   mpirun -np 4 build/examples/dist_example      (or srun --mpi=pmix -n 4 ...)
 *   build/examples/dist_example                   (one process: size 1)
 *
 * Every rank makes a "gradient" that depends on its rank, starts its
 * all-reduce (AVG), keeps computing while calling gpuml_comm_progress, and
 * waits before the "optimizer step". All ranks end with the same bits. */
#include <stdio.h>

#include <gpuml/gpuml.h>

#include "common/cli.h"

int main(int argc, char **argv)
{
    cli_opt no_options[] = {CLI_END};
    cli_parse(argc, argv, "data-parallel gradient averaging (run it under mpirun or alone)", no_options);
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);           /* MPI, deterministic  */
    cc.timeout_s = 60;                              /* a dead peer: error  */
    gpuml_comm *comm = NULL;
    gpuml_status st = gpuml_comm_create(&cc, &comm);
    if (st == GPUML_ERR_UNSUPPORTED) {              /* built without MPI   */
        cc.backend = GPUML_COMM_SELF;
        st = gpuml_comm_create(&cc, &comm);
    }
    if (st != GPUML_OK) {
        fprintf(stderr, "%s\n", gpuml_last_error());
        return 1;
    }
    int rank = gpuml_comm_rank(comm), size = gpuml_comm_size(comm);

    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.device = gpuml_comm_device(comm);            /* CPU for MPI; for NCCL the local rank's GPU */
    gpuml_ctx *ctx = NULL;
    gpuml_ctx_create(&xc, &ctx);
    int64_t n = 1000;
    gpuml_tensor *grad = NULL;
    gpuml_tensor_create(ctx, GPUML_F32, 1, &n, &grad);
    float *g = gpuml_tensor_data(grad);
    for (int64_t i = 0; i < n; i++)
        g[i] = (float)(rank + 1) * 0.001f * (float)i;

    gpuml_comm_request *req = NULL;
    st = gpuml_comm_allreduce_start(comm, ctx, GPUML_COMM_AVG, grad, grad, &req);
    for (int op = 0; st == GPUML_OK && op < 10; op++)
        st = gpuml_comm_progress(comm);             /* ... backward ops in between ... */
    if (st == GPUML_OK)
        st = gpuml_comm_wait(req, -1);              /* before the optimizer step */
    if (st != GPUML_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, gpuml_last_error());
        return 1;                                   /* communicator broken: end the job */
    }
    if (rank == 0)
        printf("%d rank(s): averaged gradient[999] = %.6f (expected %.6f)\n", size, g[999],
               0.999 * (size + 1) / 2.0);
    gpuml_tensor_destroy(grad);
    gpuml_ctx_destroy(ctx);
    gpuml_comm_destroy(comm);
    return 0;
}
