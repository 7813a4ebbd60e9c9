/* bench/bench_overlap.c - does a non-blocking all-reduce overlap with
 * computation under Open MPI's default progress (no asynchronous progress
 * thread in its ob1/vader path)? One all-reduce of `bytes` and a fixed
 * amount of single-threaded compute (calibrated to `compute_ms`), timed:
 *
 *   allreduce alone, compute alone, serial (one after the other),
 *   start; compute; wait                          (nobody calls MPI meanwhile)
 *   start; compute, gpuml_comm_progress every ~1 ms; wait   (hook points)
 *   raw MPI_Iallreduce + a progress thread calling MPI_Test (spin / 50 us nap)
 *
 * hidden = (serial - t) / allreduce alone: the share of the communication
 * time taken off the critical path (1 = fully overlapped, 0 = none,
 * negative = worse than not overlapping at all). tail = time from the end
 * of the compute to the all-reduce's completion: ~0 when the collective
 * progressed during the compute, ~the all-reduce time when it did not.
 *
 *   mpirun -np 2 build/bench/bench_overlap [bytes] [compute_ms] [repeats] */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
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

static volatile double g_sink;
static double g_units_per_s;

/* A fixed amount of work (not a fixed time: a thread that steals the core
 * must show up as a longer compute). */
static void compute_units(long units)
{
    double a = 0;
    for (long u = 0; u < units; u++)
        for (int i = 0; i < 1000; i++)
            a += sqrt((double)i + (double)u);
    g_sink = a;
}

static void calibrate(void)
{
    long units = 0;
    double t0 = now();
    while (now() - t0 < 0.2) {
        compute_units(100);
        units += 100;
    }
    g_units_per_s = (double)units / (now() - t0);
    MPI_Allreduce(MPI_IN_PLACE, &g_units_per_s, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
}

static MPI_Request g_req;
static atomic_int g_run;
static int g_nap_us;

static void *progress_thread(void *arg)
{
    (void)arg;
    while (atomic_load(&g_run)) {
        int done = 0;
        MPI_Test(&g_req, &done, MPI_STATUS_IGNORE);
        if (done) {
            atomic_store(&g_run, 0);
            break;
        }
        if (g_nap_us) {
            struct timespec ts = {0, g_nap_us * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

enum { ALONE, COMPUTE, SERIAL, NO_PROGRESS, HOOKS, THREAD_SPIN, THREAD_NAP, N_MODES };
static const char *const names[N_MODES] = {
    "allreduce alone", "compute alone", "serial: allreduce, then compute", "start; compute; wait",
    "start; compute + gpuml_comm_progress/1 ms; wait", "MPI_Iallreduce + progress thread (spin)",
    "MPI_Iallreduce + progress thread (50 us naps)"};

static double g_tail;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void one(int mode, gpuml_comm *comm, gpuml_ctx *ctx, gpuml_tensor *t, long units)
{
    double t_end;
    g_tail = 0;
    gpuml_comm_request *r = NULL;
    long per_ms = (long)(g_units_per_s / 1000.0);
    per_ms = per_ms < 1 ? 1 : per_ms;
    switch (mode) {
    case ALONE: gpuml_comm_allreduce(comm, ctx, GPUML_COMM_SUM, t, t); break;
    case COMPUTE: compute_units(units); break;
    case SERIAL:
        gpuml_comm_allreduce(comm, ctx, GPUML_COMM_SUM, t, t);
        compute_units(units);
        break;
    case NO_PROGRESS:
        gpuml_comm_allreduce_start(comm, ctx, GPUML_COMM_SUM, t, t, &r);
        compute_units(units);
        t_end = now();
        gpuml_comm_wait(r, -1);
        g_tail = now() - t_end;
        break;
    case HOOKS:
        gpuml_comm_allreduce_start(comm, ctx, GPUML_COMM_SUM, t, t, &r);
        for (long done = 0; done < units; done += per_ms) {
            compute_units(per_ms < units - done ? per_ms : units - done);
            gpuml_comm_progress(comm);
        }
        t_end = now();
        gpuml_comm_wait(r, -1);
        g_tail = now() - t_end;
        break;
    default: { /* raw MPI: gpuml has no progress thread to compare with */
        g_nap_us = mode == THREAD_NAP ? 50 : 0;
        MPI_Iallreduce(MPI_IN_PLACE, gpuml_tensor_data(t), (int)gpuml_tensor_numel(t), MPI_FLOAT, MPI_SUM,
                       MPI_COMM_WORLD, &g_req);
        atomic_store(&g_run, 1);
        pthread_t th;
        pthread_create(&th, NULL, progress_thread, NULL);
        compute_units(units);
        t_end = now();
        pthread_join(th, NULL);
        g_tail = now() - t_end;
        break;
    }
    }
}

int main(int argc, char **argv)
{
    int64_t bytes_opt = (int64_t)16 << 20;
    double compute_ms = 30.0;
    int repeats = 7;
    cli_opt table[] = {
        CLI_POS_NUM(CLI_T_I64, "BYTES", &bytes_opt, 4, (int64_t)1 << 40, "all-reduce size"),
        CLI_POS_NUM(CLI_T_F64, "COMPUTE_MS", &compute_ms, 0, 1e6, "compute per step, milliseconds"),
        CLI_POS_NUM(CLI_T_INT, "REPEATS", &repeats, 1, 1000000, "repeats (best and median)"), CLI_END};
    cli_parse(argc, argv, "does a non-blocking all-reduce overlap compute? (run under mpirun)", table);
    size_t bytes = (size_t)bytes_opt;
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    calibrate();
    long units = (long)(compute_ms * 1e-3 * g_units_per_s);
    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.num_threads = 1;
    gpuml_ctx *ctx = NULL;
    gpuml_ctx_create(&xc, &ctx);
    int64_t count = (int64_t)(bytes / sizeof(float));
    gpuml_tensor *t = NULL;
    gpuml_tensor_zeros(ctx, GPUML_F32, 1, &count, &t);
    for (int det = 0; det <= 1; det++) {
        gpuml_comm_config cc;
        gpuml_comm_config_init_defaults(&cc);
        cc.deterministic = det;
        gpuml_comm *comm = NULL;
        if (gpuml_comm_create(&cc, &comm) != GPUML_OK) {
            fprintf(stderr, "%s\n", gpuml_last_error());
            return 1;
        }
        double best[N_MODES], tail[N_MODES], med[N_MODES], med_tail[N_MODES];
        double *all = calloc((size_t)N_MODES * (size_t)repeats * 2, sizeof(double));
        for (int m = 0; m < N_MODES; m++)
            best[m] = 1e30;
        /* Modes interleaved, so that a change in the machine's load hits
         * them all alike. */
        for (int r = 0; r < repeats; r++) {
            for (int m = 0; m < N_MODES; m++) {
                if (det && m >= THREAD_SPIN)
                    continue; /* raw MPI rows: once */
                MPI_Barrier(MPI_COMM_WORLD);
                double t0 = now();
                one(m, comm, ctx, t, units);
                double dt[2] = {now() - t0, g_tail};
                MPI_Allreduce(MPI_IN_PLACE, dt, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                if (dt[0] < best[m]) {
                    best[m] = dt[0];
                    tail[m] = dt[1];
                }
                all[(size_t)(m * repeats + r) * 2] = dt[0];
                all[(size_t)(m * repeats + r) * 2 + 1] = dt[1];
            }
        }
        for (int m = 0; m < N_MODES; m++) {
            double tot[512], tl[512];
            int k = repeats < 512 ? repeats : 512;
            for (int r = 0; r < k; r++) {
                tot[r] = all[(size_t)(m * repeats + r) * 2];
                tl[r] = all[(size_t)(m * repeats + r) * 2 + 1];
            }
            qsort(tot, (size_t)k, sizeof(double), cmp_double);
            qsort(tl, (size_t)k, sizeof(double), cmp_double);
            med[m] = tot[k / 2];
            med_tail[m] = tl[k / 2];
        }
        free(all);
        if (rank == 0) {
            printf("# %zu bytes f32, compute %.0f ms, gpuml %s; %d runs, slowest rank; best | median\n", bytes,
                   compute_ms, det ? "deterministic" : "native (MPI_Iallreduce)", repeats);
            for (int m = 0; m < N_MODES; m++) {
                if (best[m] >= 1e30)
                    continue;
                printf("  %-48s %7.2f | %7.2f ms", names[m], best[m] * 1e3, med[m] * 1e3);
                if (m >= NO_PROGRESS)
                    printf("   hidden %5.2f | %5.2f   tail %6.2f | %6.2f ms", (best[SERIAL] - best[m]) / best[ALONE],
                           (med[SERIAL] - med[m]) / med[ALONE], tail[m] * 1e3, med_tail[m] * 1e3);
                printf("\n");
            }
        }
        gpuml_comm_destroy(comm);
    }
    gpuml_tensor_destroy(t);
    gpuml_ctx_destroy(ctx);
    MPI_Finalize();
    return 0;
}
