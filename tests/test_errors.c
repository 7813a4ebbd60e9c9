/* tests/test_errors.c - error paths: bad arguments get the right status and
 * a message naming function and argument, outputs stay untouched, and an
 * allocation failure at any point of an op leaks nothing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "../kernels/kernels.h"

typedef struct {
    gpuml_ctx *ctx;
    gpuml_tensor *x23, *y23, *x3, *f64_23, *i32_4, *fake_cuda23;
    float y_before[6];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    float v[6] = {1, -2, 3, -4, 5, -6};
    f->x23 = h_tensor_f32(f->ctx, 2, (int64_t[]){2, 3}, v);
    f->y23 = h_tensor_f32(f->ctx, 2, (int64_t[]){2, 3}, v);
    memcpy(f->y_before, v, sizeof v);
    f->x3 = h_tensor_f32(f->ctx, 1, (int64_t[]){3}, v);
    double d[6] = {0};
    f->f64_23 = h_tensor(f->ctx, GPUML_F64, 2, (int64_t[]){2, 3}, d);
    int32_t idx[4] = {0, 1, 1, 0};
    f->i32_4 = h_tensor(f->ctx, GPUML_I32, 1, (int64_t[]){4}, idx);
    static float fake[6];
    gpuml_tensor_wrap(fake, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 2, (int64_t[]){2, 3}, NULL, NULL,
                      &f->fake_cuda23);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gpuml_tensor_destroy(f->x23);
    gpuml_tensor_destroy(f->y23);
    gpuml_tensor_destroy(f->x3);
    gpuml_tensor_destroy(f->f64_23);
    gpuml_tensor_destroy(f->i32_4);
    gpuml_tensor_destroy(f->fake_cuda23);
    gpuml_ctx_destroy(f->ctx);
    free(f);
    return 0;
}

static void expect(gpuml_status got, gpuml_status want, const char *must_contain, const char *must_contain2)
{
    if (got != want)
        fail_msg("status %s, expected %s (%s)", gpuml_status_string(got), gpuml_status_string(want), gpuml_last_error());
    if (must_contain && !strstr(gpuml_last_error(), must_contain))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), must_contain);
    if (must_contain2 && !strstr(gpuml_last_error(), must_contain2))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), must_contain2);
}

static void y_untouched(fixture *f)
{
    assert_memory_equal(gpuml_tensor_data(f->y23), f->y_before, sizeof f->y_before);
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    gpuml_ctx *ctx = f->ctx;
    expect(gpuml_relu(NULL, f->x23, f->y23), GPUML_ERR_INVALID_ARGUMENT, "'ctx' is NULL", NULL);
    expect(gpuml_relu(ctx, NULL, f->y23), GPUML_ERR_INVALID_ARGUMENT, "gpuml_unary", "'x' is NULL");
    expect(gpuml_relu(ctx, f->x23, NULL), GPUML_ERR_INVALID_ARGUMENT, "'y' is NULL", NULL);
    expect(gpuml_unary(ctx, (gpuml_unary_op)99, 0, f->x23, f->y23), GPUML_ERR_INVALID_ARGUMENT, "op 99", NULL);
    expect(gpuml_relu(ctx, f->f64_23, f->y23), GPUML_ERR_DTYPE, "'x' is f64", NULL);
    expect(gpuml_relu(ctx, f->x3, f->y23), GPUML_ERR_SHAPE, "'y' [2, 3]", "'x' [3]");
    expect(gpuml_relu(ctx, f->fake_cuda23, f->y23), GPUML_ERR_DEVICE_MISMATCH, "'x' is on cuda:0", "cpu");
    expect(gpuml_unary_backward(ctx, GPUML_UNARY_TANH, 0, f->x23, f->x3, f->y23), GPUML_ERR_SHAPE, "gy", NULL);
    y_untouched(f);

    gpuml_tensor *big = h_tensor_f32(ctx, 2, (int64_t[]){4, 3}, NULL);
    expect(gpuml_add(ctx, f->x23, big, f->y23), GPUML_ERR_SHAPE, "do not broadcast", NULL);
    expect(gpuml_add(ctx, f->x23, f->x3, big), GPUML_ERR_SHAPE, "out [4, 3]", NULL);
    expect(gpuml_binary(ctx, (gpuml_binary_op)-1, f->x23, f->x23, f->y23), GPUML_ERR_INVALID_ARGUMENT, NULL, NULL);
    expect(gpuml_add(ctx, f->x23, f->x3, f->x3), GPUML_ERR_SHAPE, NULL, NULL);
    expect(gpuml_binary_backward(ctx, GPUML_BINARY_MUL, f->x23, f->x3, f->y23, f->x3, NULL), GPUML_ERR_SHAPE, "ga",
           NULL);
    expect(gpuml_sum_to_shape(ctx, f->x3, f->y23), GPUML_ERR_SHAPE, "does not broadcast", NULL);
    expect(gpuml_cast(ctx, f->x23, f->x3), GPUML_ERR_SHAPE, "element count", NULL);
    expect(gpuml_scale(ctx, 2.0f, f->x23, f->f64_23), GPUML_ERR_DTYPE, "'y' is f64", NULL);
    y_untouched(f);

    gpuml_tensor *o2 = h_tensor_f32(ctx, 1, (int64_t[]){2}, NULL);
    expect(gpuml_sum(ctx, f->x23, 2, o2), GPUML_ERR_INVALID_ARGUMENT, "axis 2", NULL);
    expect(gpuml_sum(ctx, f->x23, 0, o2), GPUML_ERR_SHAPE, "reduced over axis 0", NULL);
    expect(gpuml_reduce(ctx, GPUML_REDUCE_MAX, f->x23, 1, o2, f->x3), GPUML_ERR_DTYPE, "argidx", NULL);
    expect(gpuml_reduce_backward(ctx, GPUML_REDUCE_MAX, 1, o2, NULL, f->y23), GPUML_ERR_INVALID_ARGUMENT, "argidx",
           NULL);
    expect(gpuml_softmax(ctx, f->x23, f->x3), GPUML_ERR_SHAPE, NULL, NULL);

    expect(gpuml_matmul(ctx, f->x23, 0, f->x23, 0, f->y23), GPUML_ERR_SHAPE, "do not multiply", NULL);
    expect(gpuml_linear(ctx, f->x23, big, NULL, f->y23), GPUML_ERR_SHAPE, "w [4, 3]", NULL);
    expect(gpuml_linear(ctx, f->x23, f->x23, f->x23, f->y23), GPUML_ERR_SHAPE, NULL, NULL);
    expect(gpuml_matmul(ctx, f->x23, 1, f->x23, 0, f->x23), GPUML_ERR_SHAPE, NULL, NULL);
    y_untouched(f);

    expect(gpuml_gather_rows(ctx, f->x23, f->x3, f->y23), GPUML_ERR_DTYPE, "'idx' is f32", NULL);
    expect(gpuml_gather_rows(ctx, f->x23, f->i32_4, f->y23), GPUML_ERR_SHAPE, NULL, NULL);
    expect(gpuml_scatter_add_rows(ctx, f->x23, f->i32_4, f->y23), GPUML_ERR_SHAPE, NULL, NULL);
    const gpuml_tensor *pieces[2] = {f->x23, f->x3};
    gpuml_tensor *wide = h_tensor_f32(ctx, 2, (int64_t[]){2, 6}, NULL);
    expect(gpuml_concat(ctx, 2, pieces, wide), GPUML_ERR_SHAPE, "xs[1]", NULL);
    expect(gpuml_concat(ctx, 2, pieces, big), GPUML_ERR_SHAPE, "xs[0]", NULL);
    gpuml_tensor_destroy(wide);
    expect(gpuml_concat(ctx, 0, pieces, big), GPUML_ERR_INVALID_ARGUMENT, NULL, NULL);
    expect(gpuml_rand_uniform(ctx, f->f64_23, 0, 1), GPUML_ERR_DTYPE, NULL, NULL);
    y_untouched(f);

    /* the context carries the message too */
    assert_non_null(strstr(gpuml_ctx_last_error(ctx), "gpuml_rand_uniform"));
    gpuml_tensor_destroy(big);
    gpuml_tensor_destroy(o2);
}

static void test_row_splits_errors(void **state)
{
    fixture *f = *state;
    gpuml_ctx *ctx = f->ctx;
    gpuml_tensor *x = h_tensor_f32(ctx, 2, (int64_t[]){5, 2}, NULL);
    gpuml_fill(ctx, x, 1.0);
    gpuml_tensor *out = h_tensor_f32(ctx, 2, (int64_t[]){2, 2}, NULL);
    gpuml_fill(ctx, out, 7.0);
    struct {
        int64_t rs[3];
        const char *msg;
    } bad[] = {
        {{1, 2, 5}, "expected 0"},
        {{0, 3, 2}, "decreases"},
        {{0, 2, 4}, "ends at 4"},
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gpuml_tensor *rs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){3}, bad[i].rs);
        expect(gpuml_segment_reduce(ctx, GPUML_REDUCE_SUM, x, rs, out, NULL), GPUML_ERR_INVALID_ARGUMENT,
               "row_splits", bad[i].msg);
        gpuml_tensor_destroy(rs);
    }
    int32_t rs32[3] = {0, 2, 5};
    gpuml_tensor *rs = h_tensor(ctx, GPUML_I32, 1, (int64_t[]){3}, rs32);
    expect(gpuml_segment_reduce(ctx, GPUML_REDUCE_SUM, x, rs, out, NULL), GPUML_ERR_DTYPE, "row_splits", NULL);
    gpuml_tensor_destroy(rs);
    int64_t good[3] = {0, 2, 5};
    rs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){3}, good);
    expect(gpuml_segment_reduce(ctx, GPUML_REDUCE_MIN, x, rs, out, NULL), GPUML_ERR_INVALID_ARGUMENT, NULL, NULL);
    expect(gpuml_segment_reduce(ctx, GPUML_REDUCE_MAX, x, rs, out, NULL), GPUML_ERR_INVALID_ARGUMENT, "argidx", NULL);
    float *o = gpuml_tensor_data(out);
    for (int i = 0; i < 4; i++)
        assert_true(o[i] == 7.0f); /* untouched after every failure */
    gpuml_tensor_destroy(rs);
    gpuml_tensor_destroy(x);
    gpuml_tensor_destroy(out);
}


typedef struct {
    gpuml_tensor *a, *b, *g, *ga, *gb, *idx, *src, *out;
} op_args;

static gpuml_status op_binary_bwd(gpuml_ctx *ctx, void *u)
{
    op_args *a = u;
    return gpuml_binary_backward(ctx, GPUML_BINARY_MUL, a->a, a->b, a->g, a->ga, a->gb);
}

static gpuml_status op_scatter(gpuml_ctx *ctx, void *u)
{
    op_args *a = u;
    return gpuml_scatter_add_rows(ctx, a->src, a->idx, a->out);
}

static gpuml_status op_create_zeros(gpuml_ctx *ctx, void *u)
{
    (void)u;
    gpuml_tensor *t = NULL;
    gpuml_status st = gpuml_tensor_zeros(ctx, GPUML_F32, 1, (int64_t[]){100}, &t);
    gpuml_tensor_destroy(t);
    return st;
}

static gpuml_status op_arena(gpuml_ctx *ctx, void *u)
{
    (void)u;
    gpuml_arena *ar = NULL;
    gpuml_status st = gpuml_arena_create(ctx, 0, &ar);
    for (int i = 0; st == GPUML_OK && i < 3; i++) {
        gpuml_tensor *t;
        st = gpuml_tensor_create_in_arena(ar, GPUML_F32, 1, (int64_t[]){100000}, &t);
    }
    gpuml_arena_destroy(ar);
    return st;
}

static void test_allocation_failures(void **state)
{
    fixture *f = *state;
    gpuml_ctx *ctx = f->ctx;
    op_args a = {0};
    a.a = f->x23;
    a.b = f->x3;
    a.g = f->x23;
    a.ga = h_tensor_f32(ctx, 2, (int64_t[]){2, 3}, NULL);
    a.gb = h_tensor_f32(ctx, 1, (int64_t[]){3}, NULL);
    gpuml_fill(ctx, a.gb, 3.0);
    assert_int_equal(h_every_allocation_fails(ctx, op_binary_bwd, &a, a.gb, "binary_backward"), 0);

    a.src = h_tensor_f32(ctx, 2, (int64_t[]){4, 3}, NULL);
    gpuml_fill(ctx, a.src, 1.0);
    a.idx = f->i32_4;
    a.out = h_tensor_f32(ctx, 2, (int64_t[]){2, 3}, NULL);
    gpuml_fill(ctx, a.out, 0.5);
    assert_int_equal(h_every_allocation_fails(ctx, op_scatter, &a, a.out, "scatter_add_rows"), 0);
    float *o = gpuml_tensor_data(a.out);
    assert_true(o[0] == 2.5f && o[5] == 2.5f); /* finally computed once */

    assert_int_equal(h_every_allocation_fails(ctx, op_create_zeros, NULL, a.out, "tensor_zeros"), 0);
    assert_int_equal(h_every_allocation_fails(ctx, op_arena, NULL, a.out, "arena"), 0);

    void *p = (void *)1;
    gpuml_ctx_fail_allocation_after(ctx, 1);
    assert_int_equal(gpuml_pinned_alloc(ctx, 10, &p), GPUML_ERR_OUT_OF_MEMORY);
    gpuml_ctx_fail_allocation_after(ctx, 0);
    gpuml_tensor_destroy(a.ga);
    gpuml_tensor_destroy(a.gb);
    gpuml_tensor_destroy(a.src);
    gpuml_tensor_destroy(a.out);
}

/* NaN and Inf flow through as IEEE says; no op traps or crashes. */
static void test_nan_inf_inputs(void **state)
{
    fixture *f = *state;
    gpuml_ctx *ctx = f->ctx;
    float v[4] = {NAN, INFINITY, -INFINITY, 1.0f};
    gpuml_tensor *x = h_tensor_f32(ctx, 2, (int64_t[]){1, 4}, v), *y = h_tensor_f32(ctx, 2, (int64_t[]){1, 4}, NULL);
    assert_int_equal(gpuml_relu(ctx, x, y), GPUML_OK);
    float *o = gpuml_tensor_data(y);
    assert_true(isnan(o[0]) && isinf(o[1]) && o[2] == 0.0f && o[3] == 1.0f);
    assert_int_equal(gpuml_sigmoid(ctx, x, y), GPUML_OK);
    assert_true(isnan(o[0]) && o[1] == 1.0f && o[2] == 0.0f);
    assert_int_equal(gpuml_maximum(ctx, x, x, y), GPUML_OK);
    assert_true(isnan(o[0]));
    gpuml_tensor *m = h_tensor_f32(ctx, 1, (int64_t[]){1}, NULL), *am = NULL;
    gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){1}, &am);
    assert_int_equal(gpuml_max(ctx, x, 1, m, am), GPUML_OK);
    assert_true(isnan(((float *)gpuml_tensor_data(m))[0]));
    assert_int_equal(((int64_t *)gpuml_tensor_data(am))[0], 0);
    assert_int_equal(gpuml_softmax(ctx, x, y), GPUML_OK);
    assert_true(isnan(o[0]));
    int32_t iy[4];
    gpuml_tensor *yi = h_tensor(ctx, GPUML_I32, 1, (int64_t[]){4}, NULL);
    assert_int_equal(gpuml_cast(ctx, x, yi), GPUML_OK);
    memcpy(iy, gpuml_tensor_data(yi), sizeof iy);
    assert_int_equal(iy[0], 0);
    assert_int_equal(iy[1], INT32_MAX);
    assert_int_equal(iy[2], INT32_MIN);
    assert_int_equal(iy[3], 1);
    gpuml_tensor_destroy(x);
    gpuml_tensor_destroy(y);
    gpuml_tensor_destroy(m);
    gpuml_tensor_destroy(am);
    gpuml_tensor_destroy(yi);
}

/* Backward functions with accumulate add into the gradient buffers. */
static void test_accumulate(void **state)
{
    fixture *f = *state;
    gpuml_ctx *ctx = f->ctx;
    float xv[6] = {1, 2, 3, 4, 5, 6}, wv[6] = {1, 0, -1, 2, 1, 0}, gv[4] = {1, 2, 3, 4};
    gpuml_tensor *x = h_tensor_f32(ctx, 2, (int64_t[]){2, 3}, xv), *w = h_tensor_f32(ctx, 2, (int64_t[]){2, 3}, wv);
    gpuml_tensor *gy = h_tensor_f32(ctx, 2, (int64_t[]){2, 2}, gv);
    gpuml_tensor *gw = h_tensor_f32(ctx, 2, (int64_t[]){2, 3}, NULL), *gb = h_tensor_f32(ctx, 1, (int64_t[]){2}, NULL);
    gpuml_fill(ctx, gw, 10.0);
    gpuml_fill(ctx, gb, -1.0);
    assert_int_equal(gpuml_linear_backward(ctx, x, w, gy, NULL, gw, gb, 1), GPUML_OK);
    const float *pw = gpuml_tensor_data(gw), *pb = gpuml_tensor_data(gb);
    /* gw = gy^T x + 10: row 0 = 1*[1,2,3] + 3*[4,5,6] = [13,17,21] */
    assert_true(pw[0] == 23.0f && pw[1] == 27.0f && pw[2] == 31.0f);
    assert_true(pb[0] == 3.0f && pb[1] == 5.0f);
    assert_int_equal(gpuml_linear_backward(ctx, x, w, gy, NULL, gw, gb, 0), GPUML_OK);
    assert_true(pw[0] == 13.0f && pb[0] == 4.0f);
    gpuml_tensor_destroy(x);
    gpuml_tensor_destroy(w);
    gpuml_tensor_destroy(gy);
    gpuml_tensor_destroy(gw);
    gpuml_tensor_destroy(gb);
}

/* A kernel says why it failed in the record its context hands down
 * (kernels/common.h, gpuml_kfail): static text and values, no call into
 * the library. Without a record it still returns the status. */
static void test_kernel_failure_record(void **state)
{
    (void)state;
    gpuml_kfail rec;
    memset(&rec, 0, sizeof rec);
    gpuml_kctx k;
    memset(&k, 0, sizeof k);
    k.exec = gpuml_executor_serial();
    k.nthreads = 1;
    k.fail = &rec;
    float x[4] = {1, 2, 3, 4}, y[4] = {0};
    gpuml_clear_error();
    assert_int_equal(gpuml_cpu_unary(&k, 9999, 0.0f, 4, x, y), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(rec.what);
    assert_non_null(strstr(rec.what, "unknown unary op"));
    assert_non_null(rec.op);
    assert_int_equal(rec.nv, 1);
    assert_int_equal(rec.v[0], 9999);
    assert_string_equal(gpuml_last_error(), ""); /* the kernel wrote no message itself */
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == 0.0f); /* and changed nothing */
    k.fail = NULL;
    assert_int_equal(gpuml_cpu_unary(&k, 9999, 0.0f, 4, x, y), GPUML_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_splits_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_inf_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accumulate, setup, teardown),
        cmocka_unit_test(test_kernel_failure_record),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
