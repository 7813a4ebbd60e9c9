/* tests/dist/test_dist_fault.c - faults must become errors on every
 * surviving rank, within the timeout, never a hang. The last rank
 * misbehaves (MODE):
 *   timeout  stops calling after two all-reduces (sleeps past the timeout),
 *            then calls a barrier: the others get GPUML_ERR_TIMEOUT after
 *            the timeout, the sleeper gets it at once on its next call (the
 *            others told it)
 *   kill     is killed (SIGKILL) before an all-reduce
 *   exit     exits (_exit) before an all-reduce
 *   abort    calls gpuml_comm_abort: the others get GPUML_ERR_CANCELLED long
 *            before their timeout
 * Every survivor then checks that later calls fail at once with
 * GPUML_ERR_STATE, destroys the communicator (which must not hang: gpuml
 * does not MPI_Finalize after a fault), prints "FAULT-OK rank=R ..." and
 * exits with code 3. With a second argument "nccl" the communicator is the
 * NCCL backend (bootstrapped over MPI) on CUDA tensors, device local rank %
 * devices: a dead, exiting or aborting peer then surfaces through
 * ncclCommGetAsyncError as GPUML_ERR_NCCL (naming the rank), or as the
 * timeout if that comes first; a stalled one as GPUML_ERR_TIMEOUT.
 * Run by mpirun_test.sh fault, under
 * `mpirun --enable-recovery` (see include/gpuml/dist.h). gpuml initialises
 * MPI here, as a training driver would let it. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gpuml/gpuml.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int verdict(int rank, int ok, const char *what, gpuml_status st, double elapsed, const char *msg)
{
    printf("%s rank=%d %s status=%s elapsed=%.2f s: %s\n", ok ? "FAULT-OK" : "FAULT-BAD", rank, what,
           gpuml_status_string(st), elapsed, msg ? msg : gpuml_last_error());
    fflush(stdout);
    return ok ? 3 : 4;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "timeout";
    bool nccl = argc > 2 && !strcmp(argv[2], "nccl");
    bool fast = !strcmp(mode, "abort");
    double timeout = fast ? 30.0 : 2.0;
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.timeout_s = timeout;
    cc.log_level = GPUML_LOG_OFF; /* the test prints its own verdict */
    if (nccl)
        cc.backend = GPUML_COMM_NCCL;
    gpuml_comm *comm = NULL;
    if (gpuml_comm_create(&cc, &comm) != GPUML_OK) {
        printf("FAULT-BAD rank=? create: %s\n", gpuml_last_error());
        return 4;
    }
    int rank = gpuml_comm_rank(comm), n = gpuml_comm_size(comm);
    bool victim = rank == n - 1;
    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.num_threads = 1;
    if (nccl)
        xc.device = gpuml_comm_device(comm);
    gpuml_ctx *ctx = NULL;
    gpuml_ctx_create(&xc, &ctx);
    int64_t count = 100000;
    gpuml_tensor *t = NULL;
    gpuml_tensor_zeros(ctx, GPUML_F32, 1, &count, &t);

    /* A healthy start for the misbehaving rank; the others go on calling
     * until a call fails (which one depends on timing: a peer that dies
     * right after a collective may leave the others' copy of it unfinished). */
    if (victim)
        for (int i = 0; i < 2; i++)
            if (gpuml_comm_allreduce(comm, ctx, GPUML_COMM_SUM, t, t) != GPUML_OK)
                return verdict(rank, 0, "warm-up all-reduce", gpuml_comm_status(comm), 0, NULL);

    if (victim) {
        if (!strcmp(mode, "kill"))
            raise(SIGKILL);
        if (!strcmp(mode, "exit"))
            _exit(5);
    }
    double t0 = now();
    gpuml_status st;
    gpuml_status want;
    double limit;
    if (victim && !strcmp(mode, "abort")) {
        /* Let the others finish the warm-up and block in the next call. */
        struct timespec ts = {0, 300000000L};
        nanosleep(&ts, NULL);
        t0 = now();
        gpuml_comm_abort(comm);
        st = gpuml_comm_status(comm);
        want = GPUML_ERR_CANCELLED;
        limit = 0.5;
    } else if (victim && !strcmp(mode, "timeout")) {
        /* Skip the all-reduce; come back when the others have given up. */
        struct timespec ts = {(time_t)timeout + 3, 0}; /* margin for a loaded machine */
        nanosleep(&ts, NULL);
        t0 = now();
        st = gpuml_comm_barrier(comm);
        want = GPUML_ERR_TIMEOUT;
        limit = 1.0;
    } else {
        int calls = 0;
        do {
            t0 = now();
            st = gpuml_comm_allreduce(comm, ctx, GPUML_COMM_SUM, t, t);
        } while (st == GPUML_OK && ++calls < 1000);
        want = !strcmp(mode, "abort") ? GPUML_ERR_CANCELLED : GPUML_ERR_TIMEOUT;
        limit = fast ? 5.0 : timeout + 3.0;
    }
    double elapsed = now() - t0;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", gpuml_last_error());
    /* A dead peer on a TCP link may also surface as an MPI error. */
    int ok = (st == want || (st == GPUML_ERR_MPI && want == GPUML_ERR_TIMEOUT && strcmp(mode, "timeout")) ||
              (nccl && st == GPUML_ERR_NCCL && !victim)) &&
             elapsed <= limit;
    char what[64];
    snprintf(what, sizeof what, "mode %s%s", mode, victim ? " (the misbehaving rank)" : "");
    if (!ok)
        return verdict(rank, 0, what, st, elapsed, msg);

    /* Broken for good: every later call fails at once. */
    double t1 = now();
    gpuml_status again = gpuml_comm_allreduce(comm, ctx, GPUML_COMM_SUM, t, t);
    gpuml_status bar = gpuml_comm_barrier(comm);
    if (again != GPUML_ERR_STATE || bar != GPUML_ERR_STATE || now() - t1 > 0.1 || gpuml_comm_status(comm) == GPUML_OK)
        return verdict(rank, 0, "call after the fault", again, now() - t1, NULL);
    gpuml_tensor_destroy(t);
    gpuml_comm_destroy(comm);
    gpuml_ctx_destroy(ctx);
    return verdict(rank, 1, what, st, elapsed, msg);
}
