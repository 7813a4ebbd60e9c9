/* tests/test_cuda_faults.c - error paths of the CUDA half that only the
 * emulated CUDA build can provoke on demand (tests/cudaemu hooks): device
 * allocations failing one at a time under an op, device memory running
 * out, a kernel fault that leaves a sticky error, and invalid row_splits
 * seen by the kernels on the device. Each returns the right status, leaves
 * the host alive, and the library usable again where CUDA allows it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cudaemu.h"
#include "harness.h"

static gpuml_ctx *cuda_ctx_st(gpuml_status *st)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.device.type = GPUML_DEVICE_CUDA;
    gpuml_ctx *ctx = NULL;
    *st = gpuml_ctx_create(&cfg, &ctx);
    return *st == GPUML_OK ? ctx : NULL;
}

static gpuml_ctx *cuda_ctx(void)
{
    gpuml_status st;
    return cuda_ctx_st(&st);
}

/* One kNN on a fresh context, every step checked: the n-th cudaMalloc of
 * the process failing anywhere (context, tensors, workspace) must surface
 * as OUT_OF_MEMORY from the call that allocated. */
static gpuml_status knn_run(void)
{
    gpuml_status cst;
    gpuml_ctx *ctx = cuda_ctx_st(&cst);
    if (!ctx)
        return cst;
    enum { N = 300 };
    static float x[N * 3];
    for (int i = 0; i < N * 3; i++)
        x[i] = (float)((i * 37) % 101) / 10.0f;
    int64_t splits[3] = {0, 120, N}, xs[2] = {N, 3}, ns = 3, ks[2] = {N, 8};
    gpuml_tensor *tx = NULL, *rs = NULL, *ti = NULL, *td = NULL;
    gpuml_status st = gpuml_tensor_create(ctx, GPUML_F32, 2, xs, &tx);
    if (st == GPUML_OK)
        st = gpuml_tensor_copy_from_host(ctx, tx, x, sizeof x);
    if (st == GPUML_OK)
        st = gpuml_tensor_create(ctx, GPUML_I64, 1, &ns, &rs);
    if (st == GPUML_OK)
        st = gpuml_tensor_copy_from_host(ctx, rs, splits, sizeof splits);
    if (st == GPUML_OK)
        st = gpuml_tensor_create(ctx, GPUML_I32, 2, ks, &ti);
    if (st == GPUML_OK)
        st = gpuml_tensor_create(ctx, GPUML_F32, 2, ks, &td);
    if (st == GPUML_OK)
        st = gpuml_knn(ctx, tx, rs, 8, 0, ti, td);
    if (st == GPUML_OK)
        st = gpuml_ctx_synchronize(ctx);
    gpuml_tensor_destroy(tx), gpuml_tensor_destroy(rs), gpuml_tensor_destroy(ti), gpuml_tensor_destroy(td);
    gpuml_ctx_destroy(ctx);
    return st;
}

static void test_each_device_allocation_fails(void **state)
{
    (void)state;
    int n;
    for (n = 1; n < 200; n++) {
        gpuml_emu_fail_malloc_after(n);
        gpuml_status st = knn_run();
        gpuml_emu_fail_malloc_after(0);
        if (st == GPUML_OK)
            break;
        if (st != GPUML_ERR_OUT_OF_MEMORY)
            fail_msg("cudaMalloc %d failing gave %s: %s", n, gpuml_status_string(st), gpuml_last_error());
    }
    printf("kNN on a fresh CUDA context: %d device allocations, each failure OUT_OF_MEMORY\n", n - 1);
    assert_true(n > 1 && n < 200);
    assert_int_equal(gpuml_emu_bytes_in_use(0), 0); /* nothing leaked on the device */
}

static void test_device_memory_runs_out(void **state)
{
    (void)state;
    gpuml_ctx *ctx = cuda_ctx();
    assert_non_null(ctx);
    int64_t huge = (int64_t)1 << 40; /* 4 TiB of f32: more than any emulated device has */
    gpuml_tensor *t = NULL;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, &huge, &t), GPUML_ERR_OUT_OF_MEMORY);
    assert_null(t);
    int64_t n = 10;
    t = h_tensor_f32(ctx, 1, &n, NULL); /* and the context still works */
    assert_non_null(t);
    assert_int_equal(gpuml_ctx_synchronize(ctx), GPUML_OK);
    gpuml_tensor_destroy(t);
    gpuml_ctx_destroy(ctx);
}

static void test_kernel_fault_is_sticky(void **state)
{
    (void)state;
    gpuml_ctx *ctx = cuda_ctx();
    assert_non_null(ctx);
    int64_t n = 1000;
    gpuml_tensor *x = h_tensor_f32(ctx, 1, &n, NULL), *y = h_tensor_f32(ctx, 1, &n, NULL);
    assert_int_equal(gpuml_fill(ctx, x, -1.0), GPUML_OK);
    assert_int_equal(gpuml_ctx_synchronize(ctx), GPUML_OK);
    gpuml_emu_fault_launch_after(1);
    gpuml_status st = gpuml_relu(ctx, x, y); /* asynchronous: the fault shows at the next sync */
    assert_true(st == GPUML_OK || st == GPUML_ERR_CUDA);
    st = gpuml_ctx_synchronize(ctx);
    assert_int_equal(st, GPUML_ERR_CUDA);
    assert_non_null(strstr(gpuml_last_error(), "illegal memory access"));
    /* sticky: later work on the device fails too, the host is fine. The
     * launch itself sees the error (cudaGetLastError returns a sticky one),
     * and the kernel's own words - op, what failed, CUDA's text and name -
     * reach the caller through the op layer (kernels call no library). */
    gpuml_clear_error();
    st = gpuml_relu(ctx, x, y);
    assert_int_equal(st, GPUML_ERR_CUDA);
    assert_non_null(strstr(gpuml_last_error(), "kernel launch failed"));
    assert_non_null(strstr(gpuml_last_error(), "unary"));
    assert_non_null(strstr(gpuml_last_error(), "cudaErrorIllegalAddress"));
    assert_non_null(strstr(gpuml_ctx_last_error(ctx), "kernel launch failed"));
    gpuml_emu_clear_sticky(0); /* a real process would have to restart */
    assert_int_equal(gpuml_relu(ctx, x, y), GPUML_OK);
    assert_int_equal(gpuml_ctx_synchronize(ctx), GPUML_OK);
    gpuml_tensor_destroy(x);
    gpuml_tensor_destroy(y);
    gpuml_ctx_destroy(ctx);
}

/* row_splits stay on the device: the kernels see bad values, flag the
 * context's device error word, and the next synchronisation reports it. */
static void test_invalid_row_splits_on_device(void **state)
{
    (void)state;
    gpuml_ctx *ctx = cuda_ctx();
    assert_non_null(ctx);
    int64_t xs[2] = {10, 3}, three = 3, os[2] = {2, 3}, ks[2] = {10, 4};
    int64_t bad[3][3] = {{0, 7, 4}, {1, 5, 10}, {0, 5, 12}}; /* decreasing, not from 0, past the rows */
    gpuml_tensor *x = h_tensor_f32(ctx, 2, xs, NULL), *out = h_tensor_f32(ctx, 2, os, NULL);
    gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, ks, NULL), *td = h_tensor_f32(ctx, 2, ks, NULL);
    assert_int_equal(gpuml_fill(ctx, x, 0.5), GPUML_OK);
    for (int i = 0; i < 3; i++) {
        gpuml_tensor *rs = h_tensor(ctx, GPUML_I64, 1, &three, bad[i]);
        gpuml_status st = gpuml_segment_reduce(ctx, GPUML_REDUCE_SUM, x, rs, out, NULL);
        if (st == GPUML_OK)
            st = gpuml_ctx_synchronize(ctx);
        assert_int_equal(st, GPUML_ERR_INVALID_ARGUMENT);
        st = gpuml_knn(ctx, x, rs, 4, 0, ti, td);
        if (st == GPUML_OK)
            st = gpuml_ctx_synchronize(ctx);
        assert_int_equal(st, GPUML_ERR_INVALID_ARGUMENT);
        assert_int_equal(gpuml_ctx_synchronize(ctx), GPUML_OK); /* reported once, then cleared */
        gpuml_tensor_destroy(rs);
    }
    gpuml_tensor_destroy(x), gpuml_tensor_destroy(out), gpuml_tensor_destroy(ti), gpuml_tensor_destroy(td);
    gpuml_ctx_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_device_allocation_fails),
        cmocka_unit_test(test_device_memory_runs_out),
        cmocka_unit_test(test_invalid_row_splits_on_device),
        cmocka_unit_test(test_kernel_fault_is_sticky),
    };
    return cmocka_run_group_tests_name("cuda_faults", tests, NULL, NULL);
}
