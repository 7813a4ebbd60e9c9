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
 * negative = worse than not overlapping at all).
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

static void one(int mode, gpuml_comm *comm, gpuml_ctx *ctx, gpuml_tensor *t, long units)
{
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
        gpuml_comm_wait(r, -1);
        break;
    case HOOKS:
        gpuml_comm_allreduce_start(comm, ctx, GPUML_COMM_SUM, t, t, &r);
        for (long done = 0; done < units; done += per_ms) {
            compute_units(per_ms < units - done ? per_ms : units - done);
            gpuml_comm_progress(comm);
        }
        gpuml_comm_wait(r, -1);
        break;
    default: { /* raw MPI: gpuml has no progress thread to compare with */
        g_nap_us = mode == THREAD_NAP ? 50 : 0;
        MPI_Iallreduce(MPI_IN_PLACE, gpuml_tensor_data(t), (int)gpuml_tensor_numel(t), MPI_FLOAT, MPI_SUM,
                       MPI_COMM_WORLD, &g_req);
        atomic_store(&g_run, 1);
        pthread_t th;
        pthread_create(&th, NULL, progress_thread, NULL);
        compute_units(units);
        pthread_join(th, NULL);
        break;
    }
    }
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    size_t bytes = argc > 1 ? (size_t)strtoull(argv[1], NULL, 0) : (size_t)16 << 20;
    double compute_ms = argc > 2 ? atof(argv[2]) : 30.0;
    int repeats = argc > 3 ? atoi(argv[3]) : 7;
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
        double best[N_MODES];
        for (int m = 0; m < N_MODES; m++) {
            best[m] = 1e30;
            if (det && m >= THREAD_SPIN)
                continue; /* raw MPI rows: once */
            for (int r = 0; r < repeats; r++) {
                MPI_Barrier(MPI_COMM_WORLD);
                double t0 = now();
                one(m, comm, ctx, t, units);
                double dt = now() - t0;
                MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                best[m] = dt < best[m] ? dt : best[m];
            }
        }
        if (rank == 0) {
            printf("# %zu bytes f32, compute %.0f ms, gpuml %s; best of %d (slowest rank)\n", bytes, compute_ms,
                   det ? "deterministic" : "native (MPI_Iallreduce)", repeats);
            for (int m = 0; m < N_MODES; m++) {
                if (best[m] >= 1e30)
                    continue;
                printf("  %-50s %8.2f ms", names[m], best[m] * 1e3);
                if (m >= NO_PROGRESS)
                    printf("   hidden %5.2f", (best[SERIAL] - best[m]) / best[ALONE]);
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
