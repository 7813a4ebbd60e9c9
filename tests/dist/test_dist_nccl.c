/* tests/dist/test_dist_nccl.c - the NCCL backend on one GPU, one rank
 * (NCCL refuses two ranks on one device): creation through the environment
 * bootstrap, every collective on CUDA tensors against the input, the
 * non-blocking form, ordering after work on the caller's stream, and abort.
 * Skipped (exit 77) without NCCL or without a GPU, i.e. on CI machines; it
 * is for machines that have one. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gpuml/gpuml.h>

static gpuml_comm *g_comm;
static gpuml_ctx *g_ctx;

static gpuml_tensor *upload(const float *v, int64_t n)
{
    gpuml_tensor *t = NULL;
    assert_int_equal(gpuml_tensor_create(g_ctx, GPUML_F32, 1, &n, &t), GPUML_OK);
    if (n)
        assert_int_equal(gpuml_tensor_copy_from_host(g_ctx, t, v, (size_t)n * sizeof(float)), GPUML_OK);
    return t;
}

static void download(const gpuml_tensor *t, float *v)
{
    assert_int_equal(gpuml_tensor_copy_to_host(g_ctx, t, v, gpuml_tensor_nbytes(t)), GPUML_OK);
}

static void test_collectives(void **state)
{
    (void)state;
    enum { N = 100000 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = 0.5f * (float)i - 7.0f;
    gpuml_tensor *a = upload(x, N), *b = upload(x, N);
    gpuml_comm_op ops[] = {GPUML_COMM_SUM, GPUML_COMM_AVG, GPUML_COMM_MAX, GPUML_COMM_MIN};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(gpuml_comm_allreduce(g_comm, g_ctx, ops[k], a, b), GPUML_OK);
        download(b, y);
        assert_memory_equal(x, y, sizeof x);
    }
    assert_int_equal(gpuml_comm_allreduce(g_comm, g_ctx, GPUML_COMM_SUM, a, a), GPUML_OK);
    assert_int_equal(gpuml_comm_broadcast(g_comm, g_ctx, a, 0), GPUML_OK);
    assert_int_equal(gpuml_comm_allgather(g_comm, g_ctx, a, b), GPUML_OK);
    assert_int_equal(gpuml_comm_reduce_scatter(g_comm, g_ctx, GPUML_COMM_SUM, a, b), GPUML_OK);
    download(b, y);
    assert_memory_equal(x, y, sizeof x);
    assert_int_equal(gpuml_comm_barrier(g_comm), GPUML_OK);

    /* Non-blocking, ordered after a kernel on the caller's stream. */
    gpuml_comm_request *r = NULL;
    assert_int_equal(gpuml_scale(g_ctx, 2.0f, a, a), GPUML_OK);
    assert_int_equal(gpuml_comm_allreduce_start(g_comm, g_ctx, GPUML_COMM_SUM, a, b, &r), GPUML_OK);
    assert_int_equal(gpuml_comm_progress(g_comm), GPUML_OK);
    assert_int_equal(gpuml_comm_wait(r, 30), GPUML_OK);
    download(b, y);
    for (int i = 0; i < N; i++)
        assert_float_equal(y[i], 2.0f * x[i], 0);
    gpuml_tensor_destroy(a);
    gpuml_tensor_destroy(b);
}

static void test_errors(void **state)
{
    (void)state;
    int64_t n = 4;
    gpuml_ctx_config c;
    gpuml_ctx_config_init_defaults(&c);
    gpuml_ctx *cpu = NULL;
    assert_int_equal(gpuml_ctx_create(&c, &cpu), GPUML_OK);
    gpuml_tensor *h = NULL;
    assert_int_equal(gpuml_tensor_zeros(cpu, GPUML_F32, 1, &n, &h), GPUML_OK);
    /* CPU tensors need MPI, which this communicator does not have. */
    assert_int_equal(gpuml_comm_allreduce(g_comm, cpu, GPUML_COMM_SUM, h, h), GPUML_ERR_UNSUPPORTED);
    gpuml_tensor_destroy(h);
    gpuml_ctx_destroy(cpu);
}

static void test_abort(void **state)
{
    (void)state;
    gpuml_comm_abort(g_comm);
    assert_int_equal(gpuml_comm_status(g_comm), GPUML_ERR_CANCELLED);
    assert_int_equal(gpuml_comm_barrier(g_comm), GPUML_ERR_STATE);
}

int main(void)
{
    if (!gpuml_has_feature("nccl") || gpuml_cuda_device_count() == 0) {
        printf("test_dist_nccl: skipped (no NCCL or no GPU)\n");
        return 77;
    }
    char hex[257];
    if (gpuml_comm_nccl_unique_id(hex) != GPUML_OK)
        return 1;
    setenv("GPUML_TEST_NCCL_ID", hex, 1);
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = GPUML_COMM_NCCL;
    cc.bootstrap = GPUML_BOOTSTRAP_ENV;
    cc.bootstrap_env = "GPUML_TEST_NCCL_ID";
    cc.rank = 0;
    cc.size = 1;
    cc.local_rank = 0;
    cc.timeout_s = 60;
    if (gpuml_comm_create(&cc, &g_comm) != GPUML_OK) {
        fprintf(stderr, "gpuml_comm_create: %s\n", gpuml_last_error());
        return 1;
    }
    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.device = gpuml_comm_device(g_comm);
    if (gpuml_ctx_create(&xc, &g_ctx) != GPUML_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collectives),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_abort),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gpuml_comm_destroy(g_comm);
    gpuml_ctx_destroy(g_ctx);
    return rc;
}
