/* tests/dist/test_dist_self.c - one process, no mpirun: the self
 * communicator (every collective, blocking and not), configuration and
 * argument errors, what a build without MPI / NCCL / GPU answers, and the
 * NCCL rendezvous helpers (environment, hex ids, the id file, also across a
 * fork). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <gpuml/gpuml.h>

#include "dist/rendezvous.h"

static void expect(gpuml_status got, gpuml_status want, const char *text)
{
    if (got != want)
        fail_msg("status %s, expected %s (%s)", gpuml_status_string(got), gpuml_status_string(want),
                 gpuml_last_error());
    if (text && !strstr(gpuml_last_error(), text))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), text);
}

static gpuml_ctx *cpu_ctx(void)
{
    gpuml_ctx_config c;
    gpuml_ctx_config_init_defaults(&c);
    c.num_threads = 2;
    gpuml_ctx *ctx = NULL;
    assert_int_equal(gpuml_ctx_create(&c, &ctx), GPUML_OK);
    return ctx;
}

static gpuml_comm *self_comm(void)
{
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = GPUML_COMM_SELF;
    gpuml_comm *c = NULL;
    assert_int_equal(gpuml_comm_create(&cc, &c), GPUML_OK);
    return c;
}

static gpuml_tensor *ramp(gpuml_ctx *ctx, int nd, const int64_t *shape, float base)
{
    gpuml_tensor *t = NULL;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, nd, shape, &t), GPUML_OK);
    float *p = gpuml_tensor_data(t);
    for (int64_t i = 0; i < gpuml_tensor_numel(t); i++)
        p[i] = base + 0.25f * (float)i;
    return t;
}

static void test_defaults(void **state)
{
    (void)state;
    gpuml_comm_config cc;
    memset(&cc, 0x5a, sizeof cc);
    gpuml_comm_config_init_defaults(&cc);
    assert_int_equal(cc.backend, GPUML_COMM_MPI);
    assert_true(cc.timeout_s > 0);
    assert_int_equal(cc.deterministic, 1);
    assert_int_equal(cc.validate, 1);
    assert_int_equal(cc.rank, -1);
    assert_int_equal(cc.size, -1);
    assert_int_equal(cc.device, -1);
    assert_null(cc.mpi_comm);
    assert_null(cc.bootstrap_path);
    gpuml_comm_config_init_defaults(NULL); /* no crash */
    gpuml_comm_destroy(NULL);
}

static void test_self_collectives(void **state)
{
    (void)state;
    gpuml_ctx *ctx = cpu_ctx();
    gpuml_comm *c = self_comm();
    assert_int_equal(gpuml_comm_rank(c), 0);
    assert_int_equal(gpuml_comm_size(c), 1);
    assert_int_equal(gpuml_comm_local_rank(c), 0);
    assert_int_equal(gpuml_comm_local_size(c), 1);
    assert_int_equal(gpuml_comm_get_backend(c), GPUML_COMM_SELF);
    assert_int_equal(gpuml_comm_device(c).type, GPUML_DEVICE_CPU);
    assert_int_equal(gpuml_comm_status(c), GPUML_OK);

    int64_t s6[2] = {3, 2}, s0[1] = {0};
    gpuml_tensor *a = ramp(ctx, 2, s6, 1), *b = ramp(ctx, 2, s6, -9), *e = ramp(ctx, 1, s0, 0);
    assert_int_equal(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, a, b), GPUML_OK);
    assert_memory_equal(gpuml_tensor_data(a), gpuml_tensor_data(b), 6 * sizeof(float));
    assert_int_equal(gpuml_comm_allreduce(c, ctx, GPUML_COMM_AVG, a, a), GPUML_OK);
    assert_float_equal(((float *)gpuml_tensor_data(a))[5], 1 + 1.25f, 0);
    assert_int_equal(gpuml_comm_allreduce(c, ctx, GPUML_COMM_MAX, e, e), GPUML_OK);
    assert_int_equal(gpuml_comm_broadcast(c, ctx, a, 0), GPUML_OK);
    b = (gpuml_tensor_destroy(b), ramp(ctx, 2, s6, -9));
    assert_int_equal(gpuml_comm_allgather(c, ctx, a, b), GPUML_OK);
    assert_memory_equal(gpuml_tensor_data(a), gpuml_tensor_data(b), 6 * sizeof(float));
    b = (gpuml_tensor_destroy(b), ramp(ctx, 2, s6, -9));
    assert_int_equal(gpuml_comm_reduce_scatter(c, ctx, GPUML_COMM_SUM, a, b), GPUML_OK);
    assert_memory_equal(gpuml_tensor_data(a), gpuml_tensor_data(b), 6 * sizeof(float));
    assert_int_equal(gpuml_comm_barrier(c), GPUML_OK);

    gpuml_comm_request *r = NULL;
    assert_int_equal(gpuml_comm_allreduce_start(c, ctx, GPUML_COMM_SUM, a, b, &r), GPUML_OK);
    assert_non_null(r);
    int done = 0;
    assert_int_equal(gpuml_comm_test(r, &done), GPUML_OK);
    assert_int_equal(done, 1);
    assert_int_equal(gpuml_comm_progress(c), GPUML_OK);
    assert_int_equal(gpuml_comm_wait(r, -1), GPUML_OK);
    /* The pool reuses requests: many rounds allocate nothing new. */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(gpuml_comm_allreduce_start(c, ctx, GPUML_COMM_SUM, a, a, &r), GPUML_OK);
        assert_int_equal(gpuml_comm_wait(r, 1), GPUML_OK);
    }
    gpuml_tensor_destroy(a);
    gpuml_tensor_destroy(b);
    gpuml_tensor_destroy(e);
    gpuml_comm_destroy(c);
    gpuml_ctx_destroy(ctx);
}

static void test_self_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = cpu_ctx();
    gpuml_comm *c = self_comm();
    int64_t s6[1] = {6}, s5[1] = {5}, s32[2] = {3, 2}, s23[2] = {2, 3};
    gpuml_tensor *a = ramp(ctx, 1, s6, 0), *b = ramp(ctx, 1, s5, 0);
    gpuml_tensor *m = ramp(ctx, 2, s32, 0), *m2 = ramp(ctx, 2, s23, 0);
    gpuml_tensor *i32 = NULL, *h = NULL, *scalar = NULL;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, s6, &i32), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F16, 1, s6, &h), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 0, NULL, &scalar), GPUML_OK);
    static float fake[6];
    gpuml_tensor *cuda = NULL;
    assert_int_equal(gpuml_tensor_wrap(fake, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 1, s6, NULL, NULL, &cuda),
                     GPUML_OK);
    float before[5];
    memcpy(before, gpuml_tensor_data(b), sizeof before);

    expect(gpuml_comm_allreduce(NULL, ctx, GPUML_COMM_SUM, a, a), GPUML_ERR_INVALID_ARGUMENT, "'comm' is NULL");
    expect(gpuml_comm_allreduce(c, NULL, GPUML_COMM_SUM, a, a), GPUML_ERR_INVALID_ARGUMENT, "'ctx' is NULL");
    expect(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, NULL, a), GPUML_ERR_INVALID_ARGUMENT, "'in' is NULL");
    expect(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, a, NULL), GPUML_ERR_INVALID_ARGUMENT, "'out' is NULL");
    expect(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, a, b), GPUML_ERR_SHAPE, "gpuml_comm_allreduce");
    assert_memory_equal(gpuml_tensor_data(b), before, sizeof before);
    expect(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, a, i32), GPUML_ERR_DTYPE, NULL);
    expect(gpuml_comm_allreduce(c, ctx, GPUML_COMM_AVG, i32, i32), GPUML_ERR_DTYPE, "AVG");
    expect(gpuml_comm_allreduce(c, ctx, (gpuml_comm_op)-1, a, a), GPUML_ERR_INVALID_ARGUMENT, "op -1");
    expect(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, cuda, cuda), GPUML_ERR_DEVICE_MISMATCH, "cuda:0");
    expect(gpuml_comm_allreduce_start(c, ctx, GPUML_COMM_SUM, a, a, NULL), GPUML_ERR_INVALID_ARGUMENT, "'req'");
    expect(gpuml_comm_broadcast(c, ctx, a, 1), GPUML_ERR_INVALID_ARGUMENT, "root 1");
    expect(gpuml_comm_broadcast(c, ctx, NULL, 0), GPUML_ERR_INVALID_ARGUMENT, "'t' is NULL");
    expect(gpuml_comm_allgather(c, ctx, scalar, scalar), GPUML_ERR_SHAPE, "at least one dimension");
    expect(gpuml_comm_allgather(c, ctx, m, m2), GPUML_ERR_SHAPE, "trailing shape");
    expect(gpuml_comm_allgather(c, ctx, a, b), GPUML_ERR_SHAPE, "'out' has 5 rows");
    expect(gpuml_comm_allgather(c, ctx, a, a), GPUML_ERR_INVALID_ARGUMENT, "overlap");
    expect(gpuml_comm_reduce_scatter(c, ctx, GPUML_COMM_SUM, a, b), GPUML_ERR_SHAPE, "owns 6");
    expect(gpuml_comm_reduce_scatter(c, ctx, GPUML_COMM_SUM, h, h), GPUML_ERR_INVALID_ARGUMENT, "overlap");
    expect(gpuml_comm_barrier(NULL), GPUML_ERR_INVALID_ARGUMENT, "'comm'");
    expect(gpuml_comm_test(NULL, NULL), GPUML_ERR_INVALID_ARGUMENT, NULL);
    expect(gpuml_comm_wait(NULL, 0), GPUML_ERR_INVALID_ARGUMENT, NULL);
    expect(gpuml_comm_progress(NULL), GPUML_ERR_INVALID_ARGUMENT, NULL);
    expect(gpuml_comm_set_timeout(c, 0), GPUML_ERR_INVALID_ARGUMENT, "timeout");
    expect(gpuml_comm_set_timeout(c, NAN), GPUML_ERR_INVALID_ARGUMENT, "timeout");
    assert_int_equal(gpuml_comm_set_timeout(c, 5), GPUML_OK);

    /* A deliberate abort breaks the communicator for good. */
    gpuml_comm_abort(c);
    assert_int_equal(gpuml_comm_status(c), GPUML_ERR_CANCELLED);
    expect(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, a, a), GPUML_ERR_STATE, "broken");
    expect(gpuml_comm_barrier(c), GPUML_ERR_STATE, "broken");
    expect(gpuml_comm_progress(c), GPUML_ERR_CANCELLED, "aborted");
    gpuml_comm_abort(NULL);

    gpuml_tensor *all[] = {a, b, m, m2, i32, h, scalar, cuda};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        gpuml_tensor_destroy(all[i]);
    gpuml_comm_destroy(c);
    gpuml_ctx_destroy(ctx);
}

static void test_create_errors(void **state)
{
    (void)state;
    gpuml_comm_config cc;
    gpuml_comm *c = (gpuml_comm *)&cc;
    gpuml_comm_config_init_defaults(&cc);
    expect(gpuml_comm_create(&cc, NULL), GPUML_ERR_INVALID_ARGUMENT, "'out'");
    expect(gpuml_comm_create(NULL, &c), GPUML_ERR_INVALID_ARGUMENT, "'cfg'");
    assert_null(c);
    cc.timeout_s = 0;
    expect(gpuml_comm_create(&cc, &c), GPUML_ERR_INVALID_ARGUMENT, "timeout_s");
    cc.timeout_s = INFINITY;
    expect(gpuml_comm_create(&cc, &c), GPUML_ERR_INVALID_ARGUMENT, "timeout_s");
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = (gpuml_comm_backend)7;
    expect(gpuml_comm_create(&cc, &c), GPUML_ERR_INVALID_ARGUMENT, "backend 7");
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = GPUML_COMM_SELF;
    cc.size = 2;
    cc.rank = 0;
    expect(gpuml_comm_create(&cc, &c), GPUML_ERR_INVALID_ARGUMENT, "one rank");
    cc.size = 0;
    expect(gpuml_comm_create(&cc, &c), GPUML_ERR_INVALID_ARGUMENT, "size 0");
    cc.size = 2;
    cc.rank = 2;
    expect(gpuml_comm_create(&cc, &c), GPUML_ERR_INVALID_ARGUMENT, "rank 2");
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = GPUML_COMM_NCCL;
    cc.bootstrap = GPUML_BOOTSTRAP_FILE;
    expect(gpuml_comm_create(&cc, &c), GPUML_ERR_INVALID_ARGUMENT, "bootstrap_path");
    assert_null(c);
}

/* What this build and machine answer for the library backends. */
static void test_backend_availability(void **state)
{
    (void)state;
    gpuml_comm_config cc;
    gpuml_comm *c = NULL;
    if (!gpuml_has_feature("mpi")) {
        gpuml_comm_config_init_defaults(&cc);
        expect(gpuml_comm_create(&cc, &c), GPUML_ERR_UNSUPPORTED, "without MPI");
        assert_null(c);
    }
    /* NCCL: file bootstrap, so that no MPI is started here. */
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = GPUML_COMM_NCCL;
    cc.bootstrap = GPUML_BOOTSTRAP_FILE;
    cc.bootstrap_path = "/nonexistent/gpuml-id";
    cc.rank = 0;
    cc.size = 1;
    cc.timeout_s = 0.5;
    gpuml_status st = gpuml_comm_create(&cc, &c);
    char hex[257];
    if (!gpuml_has_feature("nccl")) {
        expect(st, GPUML_ERR_UNSUPPORTED, "without NCCL");
        expect(gpuml_comm_nccl_unique_id(hex), GPUML_ERR_UNSUPPORTED, "without NCCL");
    } else if (gpuml_cuda_device_count() == 0) {
        expect(st, GPUML_ERR_NO_DEVICE, "CUDA device");
    } else if (st == GPUML_OK) {
        gpuml_comm_destroy(c);
    }
    if (gpuml_has_feature("nccl") && gpuml_cuda_device_count() == 0)
        assert_null(c);
    if (gpuml_has_feature("nccl")) { /* needs no GPU: a launcher may call it anywhere */
        char hex2[257];
        unsigned char id[128];
        assert_int_equal(gpuml_comm_nccl_unique_id(hex), GPUML_OK);
        assert_int_equal(gpuml_comm_nccl_unique_id(hex2), GPUML_OK);
        assert_int_equal(strlen(hex), 256);
        assert_int_equal(gpuml_rdv_hex_decode(hex, id, sizeof id), 0);
        assert_string_not_equal(hex, hex2);
    }
    expect(gpuml_comm_nccl_unique_id(NULL), GPUML_ERR_INVALID_ARGUMENT, "'hex'");
}

static void test_shard_rows(void **state)
{
    (void)state;
    int64_t s, n;
    const int64_t want[4][2] = {{0, 3}, {3, 3}, {6, 2}, {8, 2}}; /* 10 rows over 4 ranks */
    for (int r = 0; r < 4; r++) {
        gpuml_comm_shard_rows(10, 4, r, &s, &n);
        assert_int_equal(s, want[r][0]);
        assert_int_equal(n, want[r][1]);
    }
    gpuml_comm_shard_rows(2, 4, 3, &s, &n);
    assert_int_equal(s, 2);
    assert_int_equal(n, 0);
    gpuml_comm_shard_rows(5, 0, 0, &s, &n); /* nonsense in, nothing out */
    assert_int_equal(n, 0);
    for (int size = 1; size <= 7; size++) { /* shards tile the rows */
        int64_t next = 0;
        for (int r = 0; r < size; r++) {
            gpuml_comm_shard_rows(23, size, r, &s, &n);
            assert_int_equal(s, next);
            next += n;
        }
        assert_int_equal(next, 23);
    }
}

/* ---- rendezvous ----------------------------------------------------------- */

static void test_hex(void **state)
{
    (void)state;
    unsigned char id[128], back[128];
    for (int i = 0; i < 128; i++)
        id[i] = (unsigned char)(i * 37 + 11);
    char hex[257];
    gpuml_rdv_hex_encode(id, 128, hex);
    assert_int_equal(strlen(hex), 256);
    assert_int_equal(gpuml_rdv_hex_decode(hex, back, 128), 0);
    assert_memory_equal(id, back, 128);
    char padded[300];
    snprintf(padded, sizeof padded, "  %s\n", hex);
    assert_int_equal(gpuml_rdv_hex_decode(padded, back, 128), 0);
    hex[17] = 'g';
    assert_int_equal(gpuml_rdv_hex_decode(hex, back, 128), GPUML_RDV_ERROR);
    assert_int_equal(gpuml_rdv_hex_decode("abcd", back, 128), GPUML_RDV_ERROR); /* too short */
    assert_int_equal(gpuml_rdv_hex_decode("0a0b0c", back, 2), GPUML_RDV_ERROR); /* too long */
    assert_int_equal(gpuml_rdv_hex_decode(NULL, back, 2), GPUML_RDV_ERROR);
}

static void clear_rank_env(void)
{
    const char *vars[] = {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_LOCALID", "OMPI_COMM_WORLD_RANK",
                          "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMI_SIZE",
                          "MPI_LOCALRANKID", "SLURM_JOB_ID", "SLURM_STEP_ID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

static void test_env_ranks(void **state)
{
    (void)state;
    char err[256];
    clear_rank_env();
    int r = -1, n = -1, l = -1;
    assert_int_equal(gpuml_rdv_env_ranks(&r, &n, &l, err, sizeof err), GPUML_RDV_ERROR);
    assert_non_null(strstr(err, "SLURM_PROCID"));
    setenv("SLURM_PROCID", "3", 1);
    setenv("SLURM_NTASKS", "8", 1);
    setenv("SLURM_LOCALID", "1", 1);
    setenv("OMPI_COMM_WORLD_RANK", "5", 1); /* SLURM comes first */
    r = n = l = -1;
    assert_int_equal(gpuml_rdv_env_ranks(&r, &n, &l, err, sizeof err), 0);
    assert_int_equal(r, 3);
    assert_int_equal(n, 8);
    assert_int_equal(l, 1);
    r = 7; /* configured values win */
    n = l = -1;
    assert_int_equal(gpuml_rdv_env_ranks(&r, &n, &l, err, sizeof err), 0);
    assert_int_equal(r, 7);
    setenv("SLURM_NTASKS", "x8", 1);
    r = n = l = -1;
    assert_int_equal(gpuml_rdv_env_ranks(&r, &n, &l, err, sizeof err), GPUML_RDV_ERROR);
    assert_non_null(strstr(err, "SLURM_NTASKS = 'x8'"));
    setenv("SLURM_NTASKS", "2", 1);
    r = n = l = -1;
    assert_int_equal(gpuml_rdv_env_ranks(&r, &n, &l, err, sizeof err), GPUML_RDV_ERROR); /* rank 3 of 2 */
    assert_non_null(strstr(err, "rank 3"));
    clear_rank_env();
    setenv("OMPI_COMM_WORLD_RANK", "0", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1); /* one rank: local rank 0 implied */
    r = n = l = -1;
    assert_int_equal(gpuml_rdv_env_ranks(&r, &n, &l, err, sizeof err), 0);
    assert_int_equal(l, 0);
    clear_rank_env();

    char tag[64];
    gpuml_rdv_default_tag(tag, sizeof tag);
    assert_string_equal(tag, "");
    setenv("SLURM_JOB_ID", "4242", 1);
    setenv("SLURM_STEP_ID", "3", 1);
    gpuml_rdv_default_tag(tag, sizeof tag);
    assert_string_equal(tag, "4242.3");
    clear_rank_env();
}

static void temp_path(char *buf, size_t n, const char *what)
{
    snprintf(buf, n, "%s/gpuml-rdv-%ld-%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid(), what);
    unlink(buf);
}

static void test_id_file(void **state)
{
    (void)state;
    char path[512], err[512];
    temp_path(path, sizeof path, "a");
    unsigned char id[128], got[128];
    for (int i = 0; i < 128; i++)
        id[i] = (unsigned char)(255 - i);
    /* Absent: times out after the given time, not later. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(gpuml_rdv_file_wait(path, "job1", got, 128, 0.2, err, sizeof err), GPUML_RDV_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    assert_true(dt >= 0.2 && dt < 1.5);
    assert_non_null(strstr(err, "did not publish"));
    /* Published: read back, same bytes. */
    assert_int_equal(gpuml_rdv_file_publish(path, "job1", id, 128, err, sizeof err), 0);
    assert_int_equal(gpuml_rdv_file_wait(path, "job1", got, 128, 1, err, sizeof err), 0);
    assert_memory_equal(id, got, 128);
    /* Another job's file is not taken. */
    assert_int_equal(gpuml_rdv_file_wait(path, "job2", got, 128, 0.1, err, sizeof err), GPUML_RDV_TIMEOUT);
    assert_non_null(strstr(err, "another job"));
    /* A file that is not ours. */
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    assert_int_equal(gpuml_rdv_file_wait(path, "job1", got, 128, 0.1, err, sizeof err), GPUML_RDV_TIMEOUT);
    assert_non_null(strstr(err, "not a gpuml id file"));
    unlink(path);
    /* Unwritable place, bad tag. */
    assert_int_equal(gpuml_rdv_file_publish("/nonexistent/dir/id", "t", id, 128, err, sizeof err), GPUML_RDV_ERROR);
    assert_non_null(strstr(err, "/nonexistent/dir/id"));
    assert_int_equal(gpuml_rdv_file_publish(path, "a\nb", id, 128, err, sizeof err), GPUML_RDV_ERROR);
}

/* The real use: another process publishes while this one waits. */
static void test_id_file_across_processes(void **state)
{
    (void)state;
    char path[512], err[512];
    temp_path(path, sizeof path, "b");
    unsigned char id[128], got[128];
    for (int i = 0; i < 128; i++)
        id[i] = (unsigned char)(i ^ 0x5a);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct timespec ts = {0, 150000000L};
        nanosleep(&ts, NULL);
        _exit(gpuml_rdv_file_publish(path, "job9", id, 128, err, sizeof err) == 0 ? 0 : 1);
    }
    int rc = gpuml_rdv_file_wait(path, "job9", got, 128, 10, err, sizeof err);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_int_equal(rc, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_memory_equal(id, got, 128);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_self_collectives),
        cmocka_unit_test(test_self_errors),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_backend_availability),
        cmocka_unit_test(test_shard_rows),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_env_ranks),
        cmocka_unit_test(test_id_file),
        cmocka_unit_test(test_id_file_across_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
