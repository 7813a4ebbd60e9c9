/* tests/dist/test_ddp.c - data-parallel training under mpirun -np N:
 *   - N ranks each taking B/N events of a batch end with the same
 *     parameters after 5 steps as one process with all B events
 *     (relative 1e-5), and all ranks hold bitwise the same parameters;
 *   - with N = 1 the result is bitwise plain training;
 *   - with many small buckets, the first bucket's all-reduce starts before
 *     the backward pass ends (overlap is real: order, not speed).
 * Prints "DDP-OK" on rank 0 and exits 0 when all hold.
 *
 *   test_ddp          CPU contexts, the MPI backend
 *   test_ddp cuda     CUDA contexts (device local rank % devices), the NCCL
 *                     backend bootstrapped over MPI; batches uploaded.
 *   test_ddp cuda-emu the same in the emulated build, where the emulated
 *                     NCCL also traces its
 *                     operations (GPUML_EMU_NCCL_TRACE): one send/recv
 *                     group per bucket, queued on the communicator's
 *                     stream in the reducer's order as the buckets start,
 *                     the first one before backward ends. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gpuml/gpuml.h>

static bool g_cuda;

#define B 12
#define F 3
#define STEPS 5

#define DIE_IF(x)                                                                                       \
    do {                                                                                                \
        gpuml_status s_ = (x);                                                                          \
        if (s_ != GPUML_OK) {                                                                           \
            fprintf(stderr, "rank ?: %s: %s: %s\n", #x, gpuml_status_string(s_), gpuml_last_error());    \
            exit(1);                                                                                    \
        }                                                                                               \
    } while (0)

static const char *k_cfg =
    "{\"inputs\": [{\"name\": \"x\", \"features\": 3}], \"nodes\": ["
    " {\"name\": \"l1\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 8},"
    " {\"name\": \"a1\", \"op\": \"tanh\", \"inputs\": [\"l1\"]},"
    " {\"name\": \"g\", \"op\": \"gravnet\", \"inputs\": [\"a1\"], \"out\": 8, \"space\": 2, \"prop\": 4, \"k\": 4},"
    " {\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"g\"], \"reduce\": \"mean\"},"
    " {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"p\"], \"out\": 3}],"
    " \"outputs\": [\"cls\"]}";

typedef struct {
    int64_t rs[B + 1];
    float *x;
    int64_t labels[B];
} batch_data;

static void make_data(batch_data *d)
{
    uint64_t s = 99;
    d->rs[0] = 0;
    for (int e = 0; e < B; e++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        d->rs[e + 1] = d->rs[e] + 5 + (int64_t)((s >> 33) % 11);
        d->labels[e] = e % 3;
    }
    d->x = malloc((size_t)d->rs[B] * F * sizeof(float));
    for (int64_t i = 0; i < d->rs[B] * F; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        d->x[i] = (float)((double)(s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
    }
}

/* Train STEPS steps on events [e0, e1); the parameters end in model. */
static void train(gpuml_ctx *ctx, gpuml_model *m, gpuml_ddp *ddp, const batch_data *d, int e0, int e1)
{
    int64_t r0 = d->rs[e0], nrows = d->rs[e1] - r0, nev = e1 - e0, rs[B + 1];
    for (int e = 0; e <= nev; e++)
        rs[e] = d->rs[e0 + e] - r0;
    gpuml_tensor *tx, *trs, *tl;
    if (g_cuda) { /* the batch on the device, as the loader would bring it */
        DIE_IF(gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){nrows, F}, &tx));
        DIE_IF(gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){nev + 1}, &trs));
        DIE_IF(gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){nev}, &tl));
        DIE_IF(gpuml_tensor_copy_from_host(ctx, tx, d->x + r0 * F, (size_t)(nrows * F) * sizeof(float)));
        DIE_IF(gpuml_tensor_copy_from_host(ctx, trs, rs, (size_t)(nev + 1) * sizeof(int64_t)));
        DIE_IF(gpuml_tensor_copy_from_host(ctx, tl, d->labels + e0, (size_t)nev * sizeof(int64_t)));
    } else {
        DIE_IF(gpuml_tensor_wrap(d->x + r0 * F, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 2,
                                 (int64_t[]){nrows, F}, NULL, NULL, &tx));
        DIE_IF(gpuml_tensor_wrap(rs, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_I64, 1, (int64_t[]){nev + 1}, NULL,
                                 NULL, &trs));
        DIE_IF(gpuml_tensor_wrap((void *)(d->labels + e0), (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_I64, 1,
                                 (int64_t[]){nev}, NULL, NULL, &tl));
    }
    gpuml_trainer_config tc;
    gpuml_trainer_config_init_defaults(&tc);
    tc.loss = GPUML_LOSS_CROSS_ENTROPY;
    tc.optim.kind = GPUML_OPTIM_SGD; /* no Adam normalisation: rounding noise stays noise */
    tc.optim.lr = 0.1f;
    tc.optim.momentum = 0.9f;
    tc.optim.weight_decay = 0.0f;
    gpuml_trainer *tr;
    DIE_IF(gpuml_trainer_create(m, &tc, &tr));
    gpuml_trainer_set_ddp(tr, ddp);
    const gpuml_tensor *ins[1] = {tx};
    for (int s = 0; s < STEPS; s++)
        DIE_IF(gpuml_trainer_step(tr, ins, trs, tl, NULL));
    gpuml_trainer_destroy(tr);
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(trs);
    gpuml_tensor_destroy(tl);
}

/* The host copy of a tensor (malloc'd). */
static void *to_host(gpuml_ctx *ctx, const gpuml_tensor *t)
{
    void *h = malloc(gpuml_tensor_nbytes(t) + 1);
    DIE_IF(gpuml_tensor_copy_to_host(ctx, t, h, gpuml_tensor_nbytes(t)));
    return h;
}

/* The emulated NCCL's trace of this process (see tests/cudaemu/nccl.cpp):
 * the last step's send/recv groups (the deterministic sum's exchange, one
 * per bucket) were queued in bucket order, each after its bucket started,
 * the first one before backward ended. */
static int check_trace(const char *dir, int rank, int nb, const double *starts, double bend)
{
    char path[600];
    snprintf(path, sizeof path, "%s/nccl.%d.trace", dir, (int)getpid());
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("FAIL rank=%d no emulated NCCL trace at %s\n", rank, path);
        return 0;
    }
    double enq[256], run0[256];
    int k = 0, r, nr, dev;
    char op[32];
    size_t bytes;
    double te, ts, tend;
    while (fscanf(f, "%d %d %d %31s %zu %lf %lf %lf", &r, &nr, &dev, op, &bytes, &te, &ts, &tend) == 8)
        if (!strcmp(op, "sendrecv") && te >= starts[0] && k < 256) {
            enq[k] = te;
            run0[k++] = ts;
        }
    fclose(f);
    int ok = k == nb;
    for (int i = 0; ok && i < k; i++)
        ok = enq[i] >= starts[i] && (i == 0 || enq[i] >= enq[i - 1]);
    ok = ok && enq[0] < bend; /* when it ran depends on the device's backlog: reported, not required */
    printf("%s rank=%d emulated streams: %d send/recv groups in the last step for %d buckets; the first queued "
           "%.6f s after its bucket started and %.6f s before backward ended; it started running %.6f s before "
           "backward ended\n", ok ? "ok" : "FAIL", rank, k, nb, k ? enq[0] - starts[0] : -1.0, k ? bend - enq[0] : -1.0,
           k ? bend - run0[0] : -1.0);
    return ok;
}

int main(int argc, char **argv)
{
    g_cuda = argc > 1 && !strncmp(argv[1], "cuda", 4);
    char trace_dir[512] = "";
    if (argc > 1 && !strcmp(argv[1], "cuda-emu")) { /* the emulated NCCL traces its work there */
        snprintf(trace_dir, sizeof trace_dir, "/tmp/gpuml-ddp-trace-XXXXXX");
        if (mkdtemp(trace_dir))
            setenv("GPUML_EMU_NCCL_TRACE", trace_dir, 1);
        else
            trace_dir[0] = 0;
    }
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.timeout_s = 60;
    if (g_cuda)
        cc.backend = GPUML_COMM_NCCL;
    gpuml_comm *comm;
    DIE_IF(gpuml_comm_create(&cc, &comm));
    int rank = gpuml_comm_rank(comm), size = gpuml_comm_size(comm);
    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.num_threads = 1;
    if (g_cuda)
        xc.device = gpuml_comm_device(comm); /* local rank % devices */
    gpuml_ctx *ctx;
    DIE_IF(gpuml_ctx_create(&xc, &ctx));
    batch_data d;
    make_data(&d);
    int ok = 1;

    /* distributed: rank r takes its contiguous share of the B events */
    gpuml_model *m;
    DIE_IF(gpuml_model_create(ctx, k_cfg, &m));
    DIE_IF(gpuml_model_init_params(m, rank == 0 ? 5 : 1000 + (uint64_t)rank)); /* others are overwritten */
    gpuml_ddp_config dc;
    gpuml_ddp_config_init_defaults(&dc);
    dc.first_bucket_bytes = 64; /* many buckets: exercise ordering and overlap */
    dc.bucket_bytes = 256;
    gpuml_ddp *ddp;
    DIE_IF(gpuml_ddp_create(comm, m, &dc, &ddp));
    int e0 = rank * B / size, e1 = (rank + 1) * B / size;
    train(ctx, m, ddp, &d, e0, e1);
    int nb = gpuml_ddp_num_buckets(ddp);
    double starts[256], bend;
    gpuml_ddp_last_timeline(ddp, starts, 256, &bend);
    if (g_cuda && size > 1 && trace_dir[0] && !check_trace(trace_dir, rank, nb, starts, bend))
        ok = 0;
    if (nb < 3 || !(starts[0] > 0 && starts[0] < bend)) {
        printf("FAIL rank=%d overlap: %d buckets, first started %.6f, backward ended %.6f\n", rank, nb, starts[0],
               bend);
        ok = 0;
    }

    /* every rank holds bitwise rank 0's parameters */
    gpuml_tensor *slab = gpuml_model_param_slab(m), *copy;
    DIE_IF(gpuml_tensor_create(ctx, GPUML_F32, 1, gpuml_tensor_shape(slab), &copy));
    DIE_IF(gpuml_tensor_copy(ctx, copy, slab));
    DIE_IF(gpuml_comm_broadcast(comm, ctx, copy, 0));
    int64_t n = gpuml_tensor_numel(slab);
    float *hcopy = to_host(ctx, copy), *hslab = to_host(ctx, slab);
    if (memcmp(hcopy, hslab, (size_t)n * sizeof(float)) != 0) {
        printf("FAIL rank=%d parameters differ from rank 0's\n", rank);
        ok = 0;
    }

    if (rank == 0) { /* the reference: one process, all B events */
        gpuml_model *ref;
        DIE_IF(gpuml_model_create(ctx, k_cfg, &ref));
        DIE_IF(gpuml_model_init_params(ref, 5));
        train(ctx, ref, NULL, &d, 0, B);
        const float *a = hslab, *b = to_host(ctx, gpuml_model_param_slab(ref));
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < n; i++)
            scale = fmax(scale, fabs(b[i]));
        for (int64_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(a[i] - b[i]) / scale);
        printf("DDP %s ranks=%d buckets=%d max |p_N - p_1| / max|p| = %.3g\n", g_cuda ? "cuda/nccl" : "cpu/mpi", size, nb, worst);
        if (worst > 1e-5) {
            printf("FAIL equivalence: %.3g > 1e-5\n", worst);
            ok = 0;
        }
        if (size == 1 && memcmp(a, b, (size_t)n * sizeof(float)) != 0) {
            printf("FAIL one rank is not bitwise plain training\n");
            ok = 0;
        }
        free((void *)b);
        gpuml_model_destroy(ref);
    }
    free(hcopy);
    free(hslab);
    int all_ok;
    {
        int32_t v = ok;
        gpuml_tensor *t;
        DIE_IF(gpuml_tensor_create(ctx, GPUML_I32, 1, (int64_t[]){1}, &t));
        DIE_IF(gpuml_tensor_copy_from_host(ctx, t, &v, sizeof v));
        DIE_IF(gpuml_comm_allreduce(comm, ctx, GPUML_COMM_MIN, t, t));
        DIE_IF(gpuml_tensor_copy_to_host(ctx, t, &v, sizeof v));
        all_ok = v;
        gpuml_tensor_destroy(t);
    }
    if (rank == 0 && all_ok)
        printf("DDP-OK\n");
    gpuml_tensor_destroy(copy);
    gpuml_ddp_destroy(ddp);
    gpuml_model_destroy(m);
    free(d.x);
    gpuml_ctx_destroy(ctx);
    gpuml_comm_destroy(comm);
    if (trace_dir[0]) {
        char path[600];
        snprintf(path, sizeof path, "%s/nccl.%d.trace", trace_dir, (int)getpid());
        remove(path);
        rmdir(trace_dir);
    }
    return all_ok ? 0 : 1;
}
