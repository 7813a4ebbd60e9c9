/* bench/probe_mpi_faults.c - what Open MPI and mpirun do when a rank fails
 * (raw MPI, no gpuml: the findings behind gpuml's fault handling). The last
 * rank misbehaves after three all-reduces; the others start a fourth,
 * MPI_Iallreduce polled for 3 s, report, optionally call MPI_Finalize, and
 * exit with code 1.
 *
 *   mpirun --oversubscribe [flags] -np 3 build/bench/probe_mpi_faults MODE FINALIZE
 *     MODE: kill (SIGKILL), exit (_exit(3)), stall (sleeps 15 s, then
 *           finalises), finalize (finalises and exits 0)
 *     FINALIZE: 1 = the survivors call MPI_Finalize after the failure
 *   flags to compare: none, --enable-recovery, --mca orte_abort_on_non_zero_status 0
 *
 * Watch: does mpirun kill the survivors, does it return (or hang), its exit
 * status, and how long MPI_Finalize takes. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "../examples/common/cli.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *mode = "kill";
    int finalize = 0;
    cli_opt table[] = {
        {.name = "MODE", .type = CLI_T_CHOICE, .dst = &mode, .choices = "kill|exit|stall|finalize", .positional = 1,
         .help = "how the last rank fails"},
        CLI_POS_NUM(CLI_T_INT, "FINALIZE", &finalize, 0, 1, "1: the survivors call MPI_Finalize"), CLI_END};
    cli_parse(argc, argv, "what Open MPI and mpirun do when a rank fails (raw MPI; run under mpirun)", table);
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm c;
    MPI_Comm_dup(MPI_COMM_WORLD, &c);
    MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
    int r, n;
    MPI_Comm_rank(c, &r);
    MPI_Comm_size(c, &n);
    static float buf[1 << 20];
    for (int i = 0; i < 3; i++)
        MPI_Allreduce(MPI_IN_PLACE, buf, 1 << 20, MPI_FLOAT, MPI_SUM, c);
    if (r == n - 1) {
        if (!strcmp(mode, "kill"))
            raise(SIGKILL);
        if (!strcmp(mode, "exit"))
            _exit(3);
        if (!strcmp(mode, "stall")) {
            struct timespec ts = {15, 0};
            nanosleep(&ts, NULL);
            fprintf(stderr, "rank %d: woke up, finalising\n", r);
        }
        MPI_Finalize();
        return 0;
    }
    MPI_Request q;
    int e = MPI_Iallreduce(MPI_IN_PLACE, buf, 1 << 20, MPI_FLOAT, MPI_SUM, c, &q);
    double t0 = now();
    int done = 0;
    while (e == MPI_SUCCESS && !done && now() - t0 < 3.0) {
        e = MPI_Test(&q, &done, MPI_STATUS_IGNORE);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    char s[MPI_MAX_ERROR_STRING] = "none";
    int len;
    if (e != MPI_SUCCESS)
        MPI_Error_string(e, s, &len);
    fprintf(stderr, "rank %d: all-reduce %s after %.2f s (MPI error: %s)\n", r, done ? "completed" : "incomplete",
            now() - t0, s);
    if (finalize) {
        t0 = now();
        MPI_Finalize();
        fprintf(stderr, "rank %d: MPI_Finalize returned after %.2f s\n", r, now() - t0);
    }
    return 1;
}
