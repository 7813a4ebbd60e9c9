/* bench/bench_allreduce.c - all-reduce bandwidth of the MPI backend over
 * message sizes, with nccl-tests' definitions: algbw = bytes / time,
 * busbw = algbw * 2(n-1)/n (the bandwidth a ring would need per link).
 *
 *   mpirun -np 2 build/bench/bench_allreduce [max_bytes] [repeats] [novalidate]
 *
 * Three columns per size (f32 SUM, in place): raw MPI_Allreduce as the
 * baseline, gpuml with cfg.deterministic = 0 (MPI_Iallreduce polled with a
 * deadline), and gpuml's default deterministic rank-order sum. Time is the
 * slowest rank's mean over a batch of iterations (~20 ms); the best of
 * `repeats` batches is reported, the methods' batches interleaved. `novalidate` turns off gpuml's cross-rank header
 * check (cfg.validate = 0), to show what it costs. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "../examples/common/cli.h"

#include <gpuml/gpuml.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef enum { M_MPI, M_NATIVE, M_DET, M_COUNT } method;

static int run(method m, gpuml_comm *native, gpuml_comm *det, gpuml_ctx *ctx, gpuml_tensor *t, int iters)
{
    for (int i = 0; i < iters; i++) {
        if (m == M_MPI) {
            if (MPI_Allreduce(MPI_IN_PLACE, gpuml_tensor_data(t), (int)gpuml_tensor_numel(t), MPI_FLOAT, MPI_SUM,
                              MPI_COMM_WORLD) != MPI_SUCCESS)
                return 1;
        } else if (gpuml_comm_allreduce(m == M_DET ? det : native, ctx, GPUML_COMM_SUM, t, t) != GPUML_OK) {
            fprintf(stderr, "%s\n", gpuml_last_error());
            return 1;
        }
    }
    return 0;
}

/* Iterations per batch: about 20 ms worth, from a probe (the same on every
 * rank). */
static int batch_iters(method m, gpuml_comm *native, gpuml_comm *det, gpuml_ctx *ctx, gpuml_tensor *t)
{
    if (run(m, native, det, ctx, t, 2))
        return -1;
    double t0 = now();
    run(m, native, det, ctx, t, 1);
    double one = now() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &one, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int iters = one > 0 ? (int)(0.02 / one) : 1000;
    return iters < 3 ? 3 : iters > 2000 ? 2000 : iters;
}

/* Mean seconds per all-reduce of one batch: the slowest rank's. */
static double batch(method m, gpuml_comm *native, gpuml_comm *det, gpuml_ctx *ctx, gpuml_tensor *t, int iters)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    if (run(m, native, det, ctx, t, iters))
        return -1;
    double dt = (now() - t0) / iters;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return dt;
}

static gpuml_comm *make_comm(int det, int validate)
{
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.deterministic = det;
    cc.validate = validate;
    gpuml_comm *c = NULL;
    if (gpuml_comm_create(&cc, &c) != GPUML_OK) {
        fprintf(stderr, "gpuml_comm_create: %s\n", gpuml_last_error());
        exit(1);
    }
    return c;
}

int main(int argc, char **argv)
{
    int64_t max_bytes_opt = (int64_t)64 << 20;
    int repeats = 5;
    const char *novalidate = NULL;
    cli_opt table[] = {
        CLI_POS_NUM(CLI_T_I64, "MAX_BYTES", &max_bytes_opt, 4, (int64_t)1 << 40, "largest message"),
        CLI_POS_NUM(CLI_T_INT, "REPEATS", &repeats, 1, 1000000, "batches per size (best is reported)"),
        {.name = "novalidate", .type = CLI_T_CHOICE, .dst = &novalidate, .choices = "novalidate", .positional = 1,
         .help = "turn off gpuml's cross-rank header check"},
        CLI_END};
    cli_parse(argc, argv, "all-reduce bandwidth of the MPI backend (run under mpirun)", table); /* before MPI_Init */
    size_t max_bytes = (size_t)max_bytes_opt;
    int validate = novalidate == NULL;
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    gpuml_comm *native = make_comm(0, validate), *det = make_comm(1, validate);
    int rank = gpuml_comm_rank(det), n = gpuml_comm_size(det);
    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.num_threads = 1;
    gpuml_ctx *ctx = NULL;
    gpuml_ctx_create(&xc, &ctx);
    if (rank == 0) {
        printf("# all-reduce f32 SUM in place, %d ranks; time in us (slowest rank, best of %d), bandwidths in GB/s; "
               "gpuml validation %s\n", n, repeats, validate ? "on" : "off");
        printf("# %10s %10s | %9s %7s %7s | %9s %7s %7s | %9s %7s %7s\n", "", "", "MPI_Allreduce", "", "",
               "gpuml native", "", "", "gpuml deterministic", "", "");
        printf("# %10s %10s | %9s %7s %7s | %9s %7s %7s | %9s %7s %7s\n", "bytes", "count", "time", "algbw", "busbw",
               "time", "algbw", "busbw", "time", "algbw", "busbw");
    }
    for (size_t bytes = 8; bytes <= max_bytes; bytes *= 2) {
        int64_t count = (int64_t)(bytes / sizeof(float));
        gpuml_tensor *t = NULL;
        if (gpuml_tensor_zeros(ctx, GPUML_F32, 1, &count, &t) != GPUML_OK)
            return 1;
        double tm[M_COUNT];
        int iters[M_COUNT];
        for (int m = 0; m < M_COUNT; m++) {
            tm[m] = 1e30;
            if ((iters[m] = batch_iters((method)m, native, det, ctx, t)) < 0)
                return 1;
        }
        /* Methods interleaved, so that load changes hit them alike; best batch. */
        for (int r = 0; r < repeats; r++)
            for (int m = 0; m < M_COUNT; m++) {
                double dt = batch((method)m, native, det, ctx, t, iters[m]);
                if (dt < 0)
                    return 1;
                tm[m] = dt < tm[m] ? dt : tm[m];
            }
        gpuml_tensor_destroy(t);
        if (rank == 0) {
            printf("  %10zu %10lld", bytes, (long long)count);
            for (int m = 0; m < M_COUNT; m++) {
                double algbw = (double)bytes / tm[m] / 1e9;
                printf(" | %9.2f %7.3f %7.3f", tm[m] * 1e6, algbw, algbw * 2.0 * (n - 1) / n);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    gpuml_comm_destroy(native);
    gpuml_comm_destroy(det);
    gpuml_ctx_destroy(ctx);
    MPI_Finalize();
    return 0;
}
