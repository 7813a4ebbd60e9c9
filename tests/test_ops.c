/*
 * tests/test_ops.c - the op table: every op on every backend present
 * against a double-precision naive reference, with guard bytes, NaN
 * sentinels, 1-vs-2-thread bitwise determinism and finite-difference
 * gradients (see harness.h). A new op is not done without its rows here.
 *
 * The kernel bodies these rows run, through the public ops on the CPU and
 * (emulated or real) CUDA: kernels/unary.h, binary.h (affine too),
 * cast.h (fill), reduce.h (the reduce gradient and softmax too), matmul.h,
 * rows.h, segment.h, layernorm.h, loss.h (BCE and cross-entropy elements)
 * and rng.h (rand, dropout).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

double h_round_to(gpuml_dtype dt, double v);


static int64_t numel_in(const h_case_io *io, int i) { return h_numel(io->in_nd[i], io->in_shape[i]); }
static int64_t numel_out(const h_case_io *io, int o) { return h_numel(io->out_nd[o], io->out_shape[o]); }

/* ======================= unary ========================================== */
static double ref_unary1(int op, double x, double a)
{
    switch (op) {
    case GPUML_UNARY_NEG: return -x;
    case GPUML_UNARY_ABS: return fabs(x);
    case GPUML_UNARY_EXP: return exp(x);
    case GPUML_UNARY_LOG: return log(x);
    case GPUML_UNARY_SQRT: return sqrt(x);
    case GPUML_UNARY_RSQRT: return 1 / sqrt(x);
    case GPUML_UNARY_RELU: return x > 0 ? x : 0;
    case GPUML_UNARY_LEAKY_RELU: return x > 0 ? x : a * x;
    case GPUML_UNARY_ELU: return x > 0 ? x : a * (exp(x) - 1);
    case GPUML_UNARY_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case GPUML_UNARY_TANH: return tanh(x);
    case GPUML_UNARY_SIGMOID: return 1 / (1 + exp(-x));
    case GPUML_UNARY_SOFTPLUS: return x > 20 ? x : log1p(exp(x));
    case GPUML_UNARY_NAN_TO_ZERO: return isnan(x) ? 0 : x;
    }
    return NAN;
}

static void setup_unary(int v, h_case_io *io)
{
    int op = io->op;
    bool pos = op == GPUML_UNARY_LOG || op == GPUML_UNARY_SQRT || op == GPUML_UNARY_RSQRT;
    h_kind k = pos ? V_POS : V_WIDE;
    io->ip[0] = op;
    io->fp[0] = op == GPUML_UNARY_ELU ? 1.3 : 0.1;
    switch (v) {
    case 0: IN(io, 0, GPUML_F32, k, 0); OUT(io, 0, GPUML_F32, 0); break;
    case 1: IN(io, 0, GPUML_F32, k, 1); OUT(io, 0, GPUML_F32, 1); break;
    case 2: IN(io, 0, GPUML_F32, k, 7, 13); OUT(io, 0, GPUML_F32, 7, 13); break;
    case 3: IN(io, 0, GPUML_F32, pos ? V_POS : V_HUGE, 3, 5, 17); OUT(io, 0, GPUML_F32, 3, 5, 17); break;
    default: IN(io, 0, GPUML_F32, k, 300, 131); OUT(io, 0, GPUML_F32, 300, 131); break;
    }
}
static void ref_unary(const h_case_io *io, double *const *in, double *const *out)
{
    for (int64_t e = 0; e < numel_in(io, 0); e++)
        out[0][e] = ref_unary1(io->ip[0], in[0][e], io->fp[0]);
}
static gpuml_status run_unary(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_unary(ctx, (gpuml_unary_op)io->ip[0], (float)io->fp[0], in[0], out[0]);
}
static gpuml_status bwd_unary(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                              gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out;
    return gpuml_unary_backward(ctx, (gpuml_unary_op)io->ip[0], (float)io->fp[0], in[0], gout[0], gin[0]);
}

static void test_unary(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("unary"), 0);
}

/* ======================= binary ========================================= */
static double ref_binary1(int op, double a, double b)
{
    switch (op) {
    case GPUML_BINARY_ADD: return a + b;
    case GPUML_BINARY_SUB: return a - b;
    case GPUML_BINARY_MUL: return a * b;
    case GPUML_BINARY_DIV: return a / b;
    case GPUML_BINARY_MAXIMUM: return a > b ? a : b;
    case GPUML_BINARY_MINIMUM: return a < b ? a : b;
    }
    return NAN;
}

/* Offsets by explicit broadcasting over the output index. */
static int64_t bcast_off(const h_case_io *io, int which, int o, int64_t e)
{
    int nd = io->out_nd[o], ind = io->in_nd[which];
    int64_t off = 0, stride = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int64_t idx = e % io->out_shape[o][d];
        e /= io->out_shape[o][d];
        int k = d - (nd - ind);
        if (k >= 0) {
            int64_t S = io->in_shape[which][k];
            off += (S == 1 ? 0 : idx) * stride;
            stride *= S;
        }
    }
    return off;
}

static void setup_binary(int v, h_case_io *io)
{
    int op = io->op;
    io->ip[0] = op;
    h_kind kb = op == GPUML_BINARY_DIV ? V_POS : V_NORMAL;
    switch (v) {
    case 0: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); IN(io, 1, GPUML_F32, kb, 7, 13); OUT(io, 0, GPUML_F32, 7, 13); break;
    case 1: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); IN(io, 1, GPUML_F32, kb, 13); OUT(io, 0, GPUML_F32, 7, 13); break;
    case 2: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); IN(io, 1, GPUML_F32, kb, 7, 1); OUT(io, 0, GPUML_F32, 7, 13); break;
    case 3: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); IN(io, 1, GPUML_F32, kb, 1); OUT(io, 0, GPUML_F32, 7, 13); break;
    case 4: IN(io, 0, GPUML_F32, V_NORMAL, 1, 13); IN(io, 1, GPUML_F32, kb, 7, 1); OUT(io, 0, GPUML_F32, 7, 13); break;
    case 5: IN(io, 0, GPUML_F32, V_NORMAL, 3, 1); IN(io, 1, GPUML_F32, kb, 2, 3, 4); OUT(io, 0, GPUML_F32, 2, 3, 4); break;
    case 6: IN(io, 0, GPUML_F32, V_NORMAL, 0, 5); IN(io, 1, GPUML_F32, kb, 5); OUT(io, 0, GPUML_F32, 0, 5); break;
    case 7: /* exact ties for maximum / minimum: forward only */
        IN(io, 0, GPUML_F32, V_TIES, 9, 11); IN(io, 1, GPUML_F32, op == GPUML_BINARY_DIV ? V_POS : V_TIES, 9, 11);
        OUT(io, 0, GPUML_F32, 9, 11);
        if (op == GPUML_BINARY_MAXIMUM || op == GPUML_BINARY_MINIMUM)
            io->diff_in[0] = io->diff_in[1] = 0;
        break;
    default: IN(io, 0, GPUML_F32, V_NORMAL, 257, 160); IN(io, 1, GPUML_F32, kb, 160); OUT(io, 0, GPUML_F32, 257, 160); break;
    }
}
static void ref_binary(const h_case_io *io, double *const *in, double *const *out)
{
    for (int64_t e = 0; e < numel_out(io, 0); e++)
        out[0][e] = ref_binary1(io->ip[0], in[0][bcast_off(io, 0, 0, e)], in[1][bcast_off(io, 1, 0, e)]);
}
static gpuml_status run_binary(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_binary(ctx, (gpuml_binary_op)io->ip[0], in[0], in[1], out[0]);
}
static gpuml_status bwd_binary(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                               gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out;
    return gpuml_binary_backward(ctx, (gpuml_binary_op)io->ip[0], in[0], in[1], gout[0], gin[0], gin[1]);
}

static void test_binary(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("binary"), 0);
    /* An empty out at the address of a non-empty input broadcast to it (a
     * batch of one event of 0 rows: the arena hands out one address for
     * empty blocks) writes nothing and is no aliasing error; a non-empty
     * out of another shape at an input's address still is. */
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    float buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    gpuml_device cpu = {GPUML_DEVICE_CPU, 0};
    gpuml_tensor *a, *b, *out;
    assert_int_equal(gpuml_tensor_wrap(buf, cpu, GPUML_F32, 2, (int64_t[]){0, 4}, NULL, NULL, &a), GPUML_OK);
    assert_int_equal(gpuml_tensor_wrap(buf, cpu, GPUML_F32, 2, (int64_t[]){1, 4}, NULL, NULL, &b), GPUML_OK);
    assert_int_equal(gpuml_tensor_wrap(buf, cpu, GPUML_F32, 2, (int64_t[]){0, 4}, NULL, NULL, &out), GPUML_OK);
    assert_int_equal(gpuml_binary(ctx, GPUML_BINARY_ADD, a, b, out), GPUML_OK);
    assert_true(buf[0] == 1 && buf[3] == 4);
    gpuml_tensor_destroy(out);
    assert_int_equal(gpuml_tensor_wrap(buf, cpu, GPUML_F32, 2, (int64_t[]){2, 4}, NULL, NULL, &out), GPUML_OK);
    assert_int_equal(gpuml_binary(ctx, GPUML_BINARY_ADD, b, out, out), GPUML_ERR_INVALID_ARGUMENT);
    assert_true(buf[0] == 1 && buf[3] == 4);
    gpuml_tensor_destroy(a);
    gpuml_tensor_destroy(b);
    gpuml_tensor_destroy(out);
    gpuml_ctx_destroy(ctx);
}

/* ======================= sum_to_shape, scale, axpy ====================== */
static void setup_sum_to(int v, h_case_io *io)
{
    /* input 0 is the big gradient; output is the small shape */
    switch (v) {
    case 0: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); OUT(io, 0, GPUML_F32, 13); break;
    case 1: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); OUT(io, 0, GPUML_F32, 7, 1); break;
    case 2: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); OUT(io, 0, GPUML_F32, 1); break;
    case 3: IN(io, 0, GPUML_F32, V_NORMAL, 2, 3, 4, 5); OUT(io, 0, GPUML_F32, 3, 1, 5); break;
    case 4: IN(io, 0, GPUML_F32, V_NORMAL, 2, 3, 4); OUT(io, 0, GPUML_F32, 2, 3, 4); break;
    /* more than 128^2 summed per output, over two axes: three levels of partials */
    case 6: IN(io, 0, GPUML_F32, V_NORMAL, 130, 2, 131); OUT(io, 0, GPUML_F32, 1, 2, 1); break;
    case 7: IN(io, 0, GPUML_F32, V_NORMAL, 3001, 5); OUT(io, 0, GPUML_F32, 5); break;
    default: IN(io, 0, GPUML_F32, V_NORMAL, 0, 4); OUT(io, 0, GPUML_F32, 4); break;
    }
}
static void ref_sum_to(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = numel_out(io, 0);
    for (int64_t j = 0; j < n; j++)
        out[0][j] = 0;
    /* swap roles: the input is "out-shaped"; accumulate into the small one */
    h_case_io t = *io;
    t.out_nd[0] = io->in_nd[0];
    memcpy(t.out_shape[0], io->in_shape[0], sizeof t.out_shape[0]);
    t.in_nd[0] = io->out_nd[0];
    memcpy(t.in_shape[0], io->out_shape[0], sizeof t.in_shape[0]);
    for (int64_t e = 0; e < numel_in(io, 0); e++)
        out[0][bcast_off(&t, 0, 0, e)] += in[0][e];
}
static gpuml_status run_sum_to(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)io;
    return gpuml_sum_to_shape(ctx, in[0], out[0]);
}

static void setup_scale(int v, h_case_io *io)
{
    io->fp[0] = -1.75;
    io->ip[0] = v % 2; /* 0: scale, 1: axpy */
    if (v < 2) {
        IN(io, 0, GPUML_F32, V_NORMAL, 5, 9);
        IN(io, 1, GPUML_F32, V_NORMAL, 5, 9);
        OUT(io, 0, GPUML_F32, 5, 9);
    } else {
        IN(io, 0, GPUML_F32, V_NORMAL, 40000);
        IN(io, 1, GPUML_F32, V_NORMAL, 40000);
        OUT(io, 0, GPUML_F32, 40000);
    }
    io->inout[0] = 1;
    io->diff_in[1] = 0;
}
static void ref_scale(const h_case_io *io, double *const *in, double *const *out)
{
    for (int64_t e = 0; e < numel_in(io, 0); e++)
        out[0][e] = io->fp[0] * in[0][e] + (io->ip[0] ? in[1][e] : 0.0);
}
static gpuml_status run_scale(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return io->ip[0] ? gpuml_axpy(ctx, (float)io->fp[0], in[0], out[0]) : gpuml_scale(ctx, (float)io->fp[0], in[0], out[0]);
}

static void test_sum_to_scale_axpy(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("sum_to_shape", "scale/axpy"), 0);
}

/* ======================= fill, cast ===================================== */
static void setup_fill(int v, h_case_io *io)
{
    static const double values[] = {1.5, -3.25, 300.7, 1e10, 0.0, 65519.0, -129.5, NAN};
    io->fp[0] = values[v % 8];
    gpuml_dtype dt = (gpuml_dtype)(v / 8 % GPUML_DTYPE_COUNT_);
    IN(io, 0, GPUML_F32, V_NORMAL, 1);
    OUT(io, 0, dt, 17);
    io->diff_out[0] = 0;
    io->diff_in[0] = 0;
}
static void ref_fill(const h_case_io *io, double *const *in, double *const *out)
{
    (void)in;
    for (int64_t e = 0; e < numel_out(io, 0); e++)
        out[0][e] = h_round_to(io->out_dt[0], io->fp[0]);
}
static gpuml_status run_fill(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)in;
    return gpuml_fill(ctx, out[0], io->fp[0]);
}

static void setup_cast(int v, h_case_io *io)
{
    gpuml_dtype from = (gpuml_dtype)(v / GPUML_DTYPE_COUNT_), to = (gpuml_dtype)(v % GPUML_DTYPE_COUNT_);
    IN(io, 0, from, V_CAST, 211);
    OUT(io, 0, to, 211);
    io->diff_in[0] = io->diff_out[0] = 0;
}
static void ref_cast(const h_case_io *io, double *const *in, double *const *out)
{
    for (int64_t e = 0; e < numel_in(io, 0); e++)
        out[0][e] = h_round_to(io->out_dt[0], in[0][e]);
}
static gpuml_status run_cast(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)io;
    return gpuml_cast(ctx, in[0], out[0]);
}

static void test_fill_cast(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("fill", "cast"), 0);
}

/* ======================= reductions ===================================== */
static void setup_reduce(int v, h_case_io *io)
{
    int op = io->op;
    bool arg = op == GPUML_REDUCE_MAX || op == GPUML_REDUCE_MIN;
    io->ip[0] = op;
    switch (v) {
    case 0: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); io->ip[1] = 0; OUT(io, 0, GPUML_F32, 13); break;
    case 1: IN(io, 0, GPUML_F32, V_NORMAL, 7, 13); io->ip[1] = 1; OUT(io, 0, GPUML_F32, 7); break;
    case 2: IN(io, 0, GPUML_F32, V_NORMAL, 3, 5, 4); io->ip[1] = -2; OUT(io, 0, GPUML_F32, 3, 1, 4); break;
    case 3: IN(io, 0, GPUML_F32, V_NORMAL, 0, 5); io->ip[1] = 0; OUT(io, 0, GPUML_F32, 5); break;
    case 4: IN(io, 0, GPUML_F32, V_NORMAL, 6); io->ip[1] = 0; OUT(io, 0, GPUML_F32, 0); io->out_nd[0] = 0; break;
    case 5: IN(io, 0, GPUML_F32, V_TIES, 9, 8); io->ip[1] = 0; OUT(io, 0, GPUML_F32, 8); io->diff_in[0] = 0; break;
    /* longer than GPUML_K_RCHUNK^2 (128^2): three levels of partials, contiguous and strided */
    case 7: IN(io, 0, GPUML_F32, V_NORMAL, 3, 20000); io->ip[1] = 1; OUT(io, 0, GPUML_F32, 3); break;
    case 8: /* ties across chunks: the first extreme index must win */
        IN(io, 0, GPUML_F32, V_TIES, 20000, 3); io->ip[1] = 0; OUT(io, 0, GPUML_F32, 3); io->diff_in[0] = 0; break;
    default: IN(io, 0, GPUML_F32, V_NORMAL, 300, 131); io->ip[1] = 1; OUT(io, 0, GPUML_F32, 300); break;
    }
    if (arg) {
        h_set_out(io, 1, GPUML_I64, io->out_nd[0], io->out_shape[0]);
        io->diff_out[1] = 0;
    }
    if (op == GPUML_REDUCE_MEAN && v == 3)
        io->diff_in[0] = 0;
}
static void ref_reduce(const h_case_io *io, double *const *in, double *const *out)
{
    int nd = io->in_nd[0], ax = io->ip[1] < 0 ? io->ip[1] + nd : io->ip[1];
    int64_t outer = 1, len = io->in_shape[0][ax], inner = 1;
    for (int d = 0; d < ax; d++)
        outer *= io->in_shape[0][d];
    for (int d = ax + 1; d < nd; d++)
        inner *= io->in_shape[0][d];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double acc = 0, best = io->ip[0] == GPUML_REDUCE_MAX ? -INFINITY : INFINITY;
            int64_t besti = -1;
            for (int64_t l = 0; l < len; l++) {
                double x = in[0][(o * len + l) * inner + i];
                acc += x;
                if (besti < 0 || (io->ip[0] == GPUML_REDUCE_MAX ? x > best : x < best))
                    best = x, besti = l;
            }
            int64_t j = o * inner + i;
            switch (io->ip[0]) {
            case GPUML_REDUCE_SUM: out[0][j] = acc; break;
            case GPUML_REDUCE_MEAN: out[0][j] = len ? acc / (double)len : NAN; break;
            default: out[0][j] = best; out[1][j] = (double)besti; break;
            }
        }
}
static gpuml_status run_reduce(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_reduce(ctx, (gpuml_reduce_op)io->ip[0], in[0], io->ip[1], out[0], io->n_out > 1 ? out[1] : NULL);
}
static gpuml_status bwd_reduce(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                               gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)in;
    return gpuml_reduce_backward(ctx, (gpuml_reduce_op)io->ip[0], io->ip[1], gout[0], io->n_out > 1 ? out[1] : NULL,
                                 gin[0]);
}

static void test_reduce(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("reduce"), 0);
}

/* ======================= softmax ======================================== */
static void setup_softmax(int v, h_case_io *io)
{
    io->ip[0] = io->op; /* 1: log_softmax */
    switch (v) {
    case 0: IN(io, 0, GPUML_F32, V_WIDE, 7, 13); OUT(io, 0, GPUML_F32, 7, 13); break;
    case 1: IN(io, 0, GPUML_F32, V_WIDE, 4, 1); OUT(io, 0, GPUML_F32, 4, 1); break;
    case 2: IN(io, 0, GPUML_F32, V_WIDE, 0, 3); OUT(io, 0, GPUML_F32, 0, 3); break;
    case 3: IN(io, 0, GPUML_F32, V_HUGE, 3, 2, 5); OUT(io, 0, GPUML_F32, 3, 2, 5); break;
    default: IN(io, 0, GPUML_F32, V_WIDE, 200, 200); OUT(io, 0, GPUML_F32, 200, 200); break;
    }
}
static void ref_softmax(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][io->in_nd[0] - 1], rows = n ? numel_in(io, 0) / n : 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0] + r * n;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < n; j++)
            m = fmax(m, x[j]);
        for (int64_t j = 0; j < n; j++)
            s += exp(x[j] - m);
        for (int64_t j = 0; j < n; j++)
            out[0][r * n + j] = io->ip[0] ? x[j] - m - log(s) : exp(x[j] - m) / s;
    }
}
static gpuml_status run_softmax(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return io->ip[0] ? gpuml_log_softmax(ctx, in[0], out[0]) : gpuml_softmax(ctx, in[0], out[0]);
}
static gpuml_status bwd_softmax(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                                gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)in;
    return io->ip[0] ? gpuml_log_softmax_backward(ctx, out[0], gout[0], gin[0])
                     : gpuml_softmax_backward(ctx, out[0], gout[0], gin[0]);
}

static void test_softmax(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("softmax", "log_softmax"), 0);
}

/* ======================= matmul, linear ================================= */
/* ip: 0 ta, 1 tb, 2 batched(0/1), 3 shared b, 4 M, 5 N; fp[0] K, fp[1] alpha, fp[2] beta (matmul_ex) */
static void setup_matmul(int v, h_case_io *io)
{
    int ta = v & 1, tb = (v >> 1) & 1, kind = v >> 2; /* kind 0: 2-D, 1: batched, 2: shared b, 3: K = 0, 4: accumulate */
    int64_t B = 3, M = 7, N = 9, K = kind == 3 ? 0 : 5;
    io->ip[0] = ta, io->ip[1] = tb, io->ip[2] = kind == 1 || kind == 2, io->ip[3] = kind == 2;
    io->ip[4] = (int)M, io->ip[5] = (int)N, io->fp[0] = (double)K;
    io->fp[1] = kind == 4 ? 0.5 : 1.0;
    io->fp[2] = kind == 4 ? -2.0 : 0.0;
    if (io->ip[2]) {
        IN(io, 0, GPUML_F32, V_NORMAL, B, ta ? K : M, ta ? M : K);
        if (io->ip[3])
            IN(io, 1, GPUML_F32, V_NORMAL, tb ? N : K, tb ? K : N);
        else
            IN(io, 1, GPUML_F32, V_NORMAL, B, tb ? N : K, tb ? K : N);
        OUT(io, 0, GPUML_F32, B, M, N);
    } else {
        IN(io, 0, GPUML_F32, V_NORMAL, ta ? K : M, ta ? M : K);
        IN(io, 1, GPUML_F32, V_NORMAL, tb ? N : K, tb ? K : N);
        OUT(io, 0, GPUML_F32, M, N);
        if (kind == 4) {
            IN(io, 2, GPUML_F32, V_NORMAL, M, N);
            io->inout[0] = 2;
            io->diff_in[2] = 0;
        }
    }
}
static void ref_matmul(const h_case_io *io, double *const *in, double *const *out)
{
    int ta = io->ip[0], tb = io->ip[1];
    int64_t M = io->ip[4], N = io->ip[5], K = (int64_t)io->fp[0], B = io->ip[2] ? io->in_shape[0][0] : 1;
    for (int64_t b = 0; b < B; b++) {
        const double *A = in[0] + b * M * K, *Bm = in[1] + (io->ip[3] ? 0 : b * K * N);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t p = 0; p < K; p++)
                    acc += (ta ? A[p * M + i] : A[i * K + p]) * (tb ? Bm[j * K + p] : Bm[p * N + j]);
                double *c = &out[0][b * M * N + i * N + j];
                *c = io->fp[1] * acc + (io->fp[2] != 0 ? io->fp[2] * in[2][i * N + j] : 0.0);
            }
    }
}
static gpuml_status run_matmul(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_matmul_ex(ctx, (float)io->fp[1], in[0], io->ip[0], in[1], io->ip[1], (float)io->fp[2], out[0]);
}
static gpuml_status bwd_matmul(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                               gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out;
    if (io->fp[1] != 1.0) {
        /* gradient of alpha * op(a) op(b): scale the upstream first */
        gpuml_tensor *g = NULL;
        gpuml_tensor_create(ctx, GPUML_F32, io->out_nd[0], io->out_shape[0], &g);
        gpuml_scale(ctx, (float)io->fp[1], gout[0], g);
        gpuml_status st = gpuml_matmul_backward(ctx, in[0], io->ip[0], in[1], io->ip[1], g, gin[0], gin[1], 0);
        gpuml_tensor_destroy(g);
        return st;
    }
    return gpuml_matmul_backward(ctx, in[0], io->ip[0], in[1], io->ip[1], gout[0], gin[0], gin[1], 0);
}

/* ip: 0 has bias, 1 3-D input */
static void setup_linear(int v, h_case_io *io)
{
    io->ip[0] = v != 1;
    io->ip[1] = v == 2;
    if (v == 2)
        IN(io, 0, GPUML_F32, V_NORMAL, 2, 3, 7);
    else if (v == 3)
        IN(io, 0, GPUML_F32, V_NORMAL, 0, 7);
    else if (v == 4)
        IN(io, 0, GPUML_F32, V_NORMAL, 600, 70);
    else if (v == 5) /* >= 2 GPUML_GEMM_K_CHUNK (4096) rows: the chunked weight gradient, and a remainder */
        IN(io, 0, GPUML_F32, V_NORMAL, 2 * 4096 + 808, 12);
    else if (v == 6) /* bias gradient over many chunks of rows: two levels of column-sum partials */
        IN(io, 0, GPUML_F32, V_NORMAL, 3001, 3);
    else
        IN(io, 0, GPUML_F32, V_NORMAL, 11, 7);
    int64_t in_f = v == 4 ? 70 : v == 5 ? 12 : v == 6 ? 3 : 7, out_f = v == 4 ? 60 : v == 5 ? 9 : v == 6 ? 4 : 5;
    IN(io, 1, GPUML_F32, V_NORMAL, out_f, in_f);
    IN(io, 2, GPUML_F32, V_NORMAL, out_f);
    if (v == 2)
        OUT(io, 0, GPUML_F32, 2, 3, out_f);
    else
        OUT(io, 0, GPUML_F32, io->in_shape[0][0], out_f);
    if (!io->ip[0])
        io->diff_in[2] = 0;
}
static void ref_linear(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t out_f = io->in_shape[1][0], in_f = io->in_shape[1][1], rows = numel_in(io, 0) / in_f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out_f; o++) {
            double acc = io->ip[0] ? in[2][o] : 0;
            for (int64_t i = 0; i < in_f; i++)
                acc += in[0][r * in_f + i] * in[1][o * in_f + i];
            out[0][r * out_f + o] = acc;
        }
}
static gpuml_status run_linear(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_linear(ctx, in[0], in[1], io->ip[0] ? in[2] : NULL, out[0]);
}
static gpuml_status bwd_linear(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                               gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out, (void)io;
    return gpuml_linear_backward(ctx, in[0], in[1], gout[0], gin[0], gin[1], gin[2], 0);
}

/* The weight gradient with accumulate = 1 adds to what gw holds, on the
 * chunked path (>= 2 x 4096 rows) and the plain one. */
static void test_linear_weight_grad_accumulate(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    uint64_t seed = 77;
    const int64_t in_f = 6, out_f = 5, rows_of[2] = {9000, 300};
    for (int v = 0; v < 2; v++) {
        int64_t rows = rows_of[v];
        float *xh = malloc((size_t)(rows * in_f) * sizeof(float)), *gh = malloc((size_t)(rows * out_f) * sizeof(float));
        for (int64_t i = 0; i < rows * in_f; i++)
            xh[i] = (float)h_rand_normal(&seed);
        for (int64_t i = 0; i < rows * out_f; i++)
            gh[i] = (float)h_rand_normal(&seed);
        float w0[30], plain[30], acc[30];
        for (int i = 0; i < 30; i++)
            w0[i] = (float)h_rand_normal(&seed);
        gpuml_tensor *x = h_tensor_f32(ctx, 2, (int64_t[]){rows, in_f}, xh);
        gpuml_tensor *gy = h_tensor_f32(ctx, 2, (int64_t[]){rows, out_f}, gh);
        gpuml_tensor *w = h_tensor_f32(ctx, 2, (int64_t[]){out_f, in_f}, w0);
        gpuml_tensor *gw = h_tensor_f32(ctx, 2, (int64_t[]){out_f, in_f}, w0);
        assert_int_equal(gpuml_linear_backward(ctx, x, w, gy, NULL, gw, NULL, 0), GPUML_OK);
        gpuml_tensor_copy_to_host(ctx, gw, plain, sizeof plain);
        gpuml_tensor_copy_from_host(ctx, gw, w0, sizeof w0);
        assert_int_equal(gpuml_linear_backward(ctx, x, w, gy, NULL, gw, NULL, 1), GPUML_OK);
        gpuml_tensor_copy_to_host(ctx, gw, acc, sizeof acc);
        for (int i = 0; i < 30; i++) {
            double ref = 0.0; /* double reference of x^T gy, element i */
            int64_t o = i / in_f, f = i % in_f;
            for (int64_t r = 0; r < rows; r++)
                ref += (double)gh[r * out_f + o] * (double)xh[r * in_f + f];
            assert_true(fabs(plain[i] - ref) <= 1e-5 * (fabs(ref) + sqrt((double)rows)));
            assert_true(fabs(acc[i] - (w0[i] + ref)) <= 1e-5 * (fabs(ref) + fabs(w0[i]) + sqrt((double)rows)));
        }
        gpuml_tensor *ts[] = {x, gy, w, gw};
        for (int i = 0; i < 4; i++)
            gpuml_tensor_destroy(ts[i]);
        free(xh);
        free(gh);
    }
    gpuml_ctx_destroy(ctx);
}

static void test_matmul_linear(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("matmul", "linear"), 0);
}

/* ======================= gather / scatter =============================== */
static void setup_gather(int v, h_case_io *io)
{
    gpuml_dtype idt = v == 1 ? GPUML_I64 : GPUML_I32;
    gpuml_dtype xdt = v == 2 ? GPUML_I64 : v == 3 ? GPUML_U8 : GPUML_F32;
    if (v == 4) { /* empty index */
        IN(io, 0, GPUML_F32, V_NORMAL, 10, 3);
        IN(io, 1, idt, V_INDEX, 0);
        OUT(io, 0, GPUML_F32, 0, 3);
    } else if (v == 5) {
        IN(io, 0, GPUML_F32, V_NORMAL, 5000, 16);
        IN(io, 1, idt, V_INDEX, 9000);
        OUT(io, 0, GPUML_F32, 9000, 16);
    } else {
        IN(io, 0, xdt, V_WIDE, 10, 3);
        IN(io, 1, idt, V_INDEX, 14);
        OUT(io, 0, xdt, 14, 3);
    }
    io->index_lo[1] = -1;
    io->index_hi[1] = io->in_shape[0][0]; /* -1 and N give zero rows */
}
static void ref_gather(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][0], c = io->in_shape[0][1];
    for (int64_t i = 0; i < io->in_shape[1][0]; i++) {
        int64_t j = (int64_t)in[1][i];
        for (int64_t k = 0; k < c; k++)
            out[0][i * c + k] = (j < 0 || j >= n) ? 0.0 : in[0][j * c + k];
    }
}
static gpuml_status run_gather(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)io;
    return gpuml_gather_rows(ctx, in[0], in[1], out[0]);
}
static gpuml_status bwd_gather(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                               gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out, (void)io;
    if (!gin[0])
        return GPUML_OK;
    gpuml_status st = gpuml_fill(ctx, gin[0], 0.0);
    return st ? st : gpuml_scatter_add_rows(ctx, gout[0], in[1], gin[0]);
}

static void setup_scatter(int v, h_case_io *io)
{
    gpuml_dtype idt = v == 1 ? GPUML_I64 : GPUML_I32;
    /* 4: thousands of sources per target - the ragged reduction's levels
     * (kernels/segment.h), as a per-event broadcast's gradient has */
    int64_t m = v == 2 ? 20000 : v == 3 ? 0 : v == 4 ? 9000 : 14, n = v == 2 ? 3000 : v == 4 ? 3 : 10;
    int64_t c = v == 2 ? 8 : v == 4 ? 2 : 3;
    IN(io, 0, GPUML_F32, V_NORMAL, m, c);
    IN(io, 1, idt, V_INDEX, m);
    IN(io, 2, GPUML_F32, V_NORMAL, n, c);
    io->index_lo[1] = -1;
    io->index_hi[1] = n;
    io->diff_in[2] = 0;
    OUT(io, 0, GPUML_F32, n, c);
    io->inout[0] = 2;
}
static void ref_scatter(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t m = io->in_shape[0][0], n = io->in_shape[2][0], c = io->in_shape[2][1];
    for (int64_t e = 0; e < n * c; e++)
        out[0][e] = in[2][e];
    for (int64_t i = 0; i < m; i++) {
        int64_t t = (int64_t)in[1][i];
        if (t >= 0 && t < n)
            for (int64_t k = 0; k < c; k++)
                out[0][t * c + k] += in[0][i * c + k];
    }
}
static gpuml_status run_scatter(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)io;
    return gpuml_scatter_add_rows(ctx, in[0], in[1], out[0]);
}
static gpuml_status bwd_scatter(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                                gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out, (void)io;
    return gpuml_gather_rows(ctx, gout[0], in[1], gin[0]);
}

/* index_csr: all indices valid here (skipping -1 is checked below). */
static void setup_csr(int v, h_case_io *io)
{
    /* 4: in-degree ~1700, far above a CUDA block; 5: most targets empty */
    int64_t m = v == 1 ? 50000 : v == 2 ? 0 : v == 4 ? 5000 : 37, t = v == 1 ? 4000 : v == 4 ? 3 : v == 5 ? 4000 : 9;
    if (v == 3)
        IN(io, 0, GPUML_I64, V_INDEX, 6, 5); /* a kNN-like [N, k] graph */
    else
        IN(io, 0, GPUML_I32, V_INDEX, m);
    io->index_lo[0] = 0;
    io->index_hi[0] = t - 1;
    OUT(io, 0, GPUML_I64, t + 1);
    OUT(io, 1, GPUML_I64, numel_in(io, 0));
}
static void ref_csr(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t m = numel_in(io, 0), t = io->out_shape[0][0] - 1, pos = 0;
    out[0][0] = 0;
    for (int64_t target = 0; target < t; target++) {
        for (int64_t i = 0; i < m; i++)
            if ((int64_t)in[0][i] == target)
                out[1][pos++] = (double)i;
        out[0][target + 1] = (double)pos;
    }
}
static gpuml_status run_csr(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)io;
    return gpuml_index_csr(ctx, in[0], out[0], out[1]);
}

static void test_index_csr_skips_padding(void)
{
    for (int b = 0; b < h_num_backends(); b++) {
        gpuml_ctx *ctx = h_ctx(h_backend(b), 2);
        int32_t idx[8] = {2, -1, 0, 2, 7, 2, -5, 0};
        int64_t rowptr[4], col[8], sentinel[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
        gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(2, 4), idx);
        gpuml_tensor *tr = h_tensor(ctx, GPUML_I64, 1, SHAPE(4), NULL);
        gpuml_tensor *tc = h_tensor(ctx, GPUML_I64, 1, SHAPE(8), sentinel);
        assert_int_equal(gpuml_index_csr(ctx, ti, tr, tc), GPUML_OK);
        gpuml_tensor_copy_to_host(ctx, tr, rowptr, sizeof rowptr);
        gpuml_tensor_copy_to_host(ctx, tc, col, sizeof col);
        int64_t want_ptr[4] = {0, 2, 2, 5}, want_col[5] = {2, 7, 0, 3, 5};
        assert_memory_equal(rowptr, want_ptr, sizeof want_ptr);
        assert_memory_equal(col, want_col, sizeof want_col);
        assert_memory_equal(col + 5, sentinel, 3 * sizeof(int64_t)); /* past rowptr[T]: not written */
        assert_int_equal(gpuml_index_csr(ctx, ti, tr, tr), GPUML_ERR_SHAPE);
        gpuml_tensor_destroy(ti);
        gpuml_tensor_destroy(tr);
        gpuml_tensor_destroy(tc);
        gpuml_ctx_destroy(ctx);
    }
}

static void test_gather_scatter(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("gather_rows", "scatter_add_rows", "index_csr"), 0);
    test_index_csr_skips_padding();
}

/* ======================= segment reductions ============================= */
static void setup_segment(int v, h_case_io *io)
{
    /* 4: an event of over 128 * 128 rows - three levels of chunk partials
     * (kernels/segment.h), ties across chunks for MAX; 5: events of
     * hundreds of rows, two levels. */
    int64_t n = v == 1 ? 3000 : v == 2 ? 0 : v == 4 ? 40000 : v == 5 ? 5000 : 23;
    int64_t c = v == 1 ? 16 : v == 4 ? 2 : v == 5 ? 3 : 4;
    int64_t b = v == 1 ? 50 : v == 2 ? 3 : v == 4 ? 2 : v == 5 ? 8 : 6;
    bool ties = v == 3 || (v == 4 && io->op == GPUML_REDUCE_MAX);
    io->ip[0] = io->op;
    IN(io, 0, GPUML_F32, ties ? V_TIES : V_NORMAL, n, c);
    IN(io, 1, GPUML_I64, V_SPLITS, b + 1);
    io->index_lo[1] = b;
    io->index_hi[1] = n;
    OUT(io, 0, GPUML_F32, b, c);
    if (io->op == GPUML_REDUCE_MAX) {
        OUT(io, 1, GPUML_I64, b, c);
        io->diff_out[1] = 0;
        if (ties)
            io->diff_in[0] = 0;
    }
}
static void ref_segment(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t c = io->in_shape[0][1], b = io->in_shape[1][0] - 1;
    for (int64_t e = 0; e < b; e++) {
        int64_t s = (int64_t)in[1][e], t = (int64_t)in[1][e + 1];
        for (int64_t k = 0; k < c; k++) {
            double acc = 0, best = -INFINITY;
            int64_t bi = -1;
            for (int64_t r = s; r < t; r++) {
                double x = in[0][r * c + k];
                acc += x;
                if (bi < 0 || x > best)
                    best = x, bi = r;
            }
            switch (io->ip[0]) {
            case GPUML_REDUCE_SUM: out[0][e * c + k] = acc; break;
            case GPUML_REDUCE_MEAN: out[0][e * c + k] = t > s ? acc / (double)(t - s) : 0; break;
            default:
                out[0][e * c + k] = t > s ? best : 0;
                out[1][e * c + k] = (double)bi;
                break;
            }
        }
    }
}
static gpuml_status run_segment(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_segment_reduce(ctx, (gpuml_reduce_op)io->ip[0], in[0], in[1], out[0], io->n_out > 1 ? out[1] : NULL);
}
static gpuml_status bwd_segment(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                                gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    return gpuml_segment_reduce_backward(ctx, (gpuml_reduce_op)io->ip[0], in[1], gout[0], io->n_out > 1 ? out[1] : NULL,
                                         gin[0]);
}

static void setup_segment_ids(int v, h_case_io *io)
{
    int64_t n = v == 1 ? 40000 : 23, b = v == 1 ? 300 : 6;
    IN(io, 0, GPUML_I64, V_SPLITS, b + 1);
    io->index_lo[0] = b;
    io->index_hi[0] = n;
    OUT(io, 0, GPUML_I32, n);
}
static void ref_segment_ids(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t b = io->in_shape[0][0] - 1;
    for (int64_t e = 0; e < b; e++)
        for (int64_t r = (int64_t)in[0][e]; r < (int64_t)in[0][e + 1]; r++)
            out[0][r] = (double)e;
}
static gpuml_status run_segment_ids(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                    gpuml_tensor *const *out)
{
    (void)io;
    return gpuml_segment_ids(ctx, in[0], out[0]);
}

/* The ragged fixed-order reduction (kernels/segment.h) gives the same bits
 * on CPU (folded depth first) and CUDA (levels of partials in scratch):
 * segment sum / mean / max and scatter-add, events of 1 to 30000 rows. */
static void test_segment_same_bits_on_every_backend(void **state)
{
    (void)state;
    enum { N = 40000, C = 3, B = 5, M = 9000, T = 4 };
    float *x = malloc(sizeof(float) * N * C), *base = malloc(sizeof(float) * T * C);
    int64_t rs[B + 1] = {0, 1, 129, 9000, 9000, N}, *idx = malloc(sizeof(int64_t) * M);
    uint64_t s = 7;
    for (int64_t i = 0; i < (int64_t)N * C; i++)
        x[i] = (float)h_rand_uniform(&s, -1.0, 1.0);
    for (int64_t i = 0; i < M; i++)
        idx[i] = (int64_t)(h_rand_u64(&s) % T);
    for (int64_t i = 0; i < T * C; i++)
        base[i] = (float)i;
    void *got[2][5] = {{0}};
    int have = 0;
    for (int dev = 0; dev < 2; dev++) {
        gpuml_ctx *ctx = h_ctx(dev ? GPUML_DEVICE_CUDA : GPUML_DEVICE_CPU, 2);
        if (!ctx)
            continue;
        have++;
        gpuml_tensor *tx = h_tensor_f32(ctx, 2, (int64_t[]){N, C}, x);
        gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){B + 1}, rs);
        gpuml_tensor *out = h_tensor_f32(ctx, 2, (int64_t[]){B, C}, NULL);
        gpuml_tensor *arg = h_tensor(ctx, GPUML_I64, 2, (int64_t[]){B, C}, NULL);
        gpuml_tensor *src = h_tensor_f32(ctx, 2, (int64_t[]){M, C}, x);
        gpuml_tensor *tidx = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){M}, idx);
        gpuml_tensor *sc = h_tensor_f32(ctx, 2, (int64_t[]){T, C}, base);
        static const gpuml_reduce_op ops[3] = {GPUML_REDUCE_SUM, GPUML_REDUCE_MEAN, GPUML_REDUCE_MAX};
        for (int o = 0; o < 3; o++) {
            assert_int_equal(gpuml_segment_reduce(ctx, ops[o], tx, trs, out, o == 2 ? arg : NULL), GPUML_OK);
            got[dev][o] = h_read(ctx, out);
        }
        got[dev][3] = h_read(ctx, arg);
        assert_int_equal(gpuml_scatter_add_rows(ctx, src, tidx, sc), GPUML_OK);
        got[dev][4] = h_read(ctx, sc);
        gpuml_tensor *ts[] = {tx, trs, out, arg, src, tidx, sc};
        for (unsigned i = 0; i < 7; i++)
            gpuml_tensor_destroy(ts[i]);
        gpuml_ctx_destroy(ctx);
    }
    size_t sizes[5] = {B * C * 4, B * C * 4, B * C * 4, B * C * 8, T * C * 4};
    if (have == 2)
        for (int o = 0; o < 5; o++) {
            if (memcmp(got[0][o], got[1][o], sizes[o]) != 0)
                printf("FAIL segment same bits: output %d differs between CPU and CUDA\n", o);
            assert_memory_equal(got[0][o], got[1][o], sizes[o]);
        }
    for (int d = 0; d < 2; d++)
        for (int o = 0; o < 5; o++)
            free(got[d][o]);
    free(x);
    free(base);
    free(idx);
}

static void test_segment(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("segment_reduce", "segment_ids"), 0);
}

/* ======================= concat / split ================================= */
/* ip[0]: pieces, ip[1]: split mode; widths 1 + (i % 3) */
static void setup_concat(int v, h_case_io *io)
{
    bool split = v >= 4;
    int variant = v % 4;
    int np = variant == 3 ? 5 : 3; /* harness max inputs: H_MAXT */
    gpuml_dtype dt = variant == 2 ? GPUML_I64 : GPUML_F32;
    int64_t rows = variant == 1 ? 0 : 5;
    int64_t total = 0;
    io->ip[0] = np;
    io->ip[1] = split;
    for (int i = 0; i < np; i++) {
        int64_t w = variant == 3 ? 40 + i : 1 + (i % 3);
        total += w;
        if (split)
            h_set_out(io, i, dt, 2, SHAPE(rows, w));
        else
            h_set_in(io, i, dt, V_NORMAL, 2, SHAPE(rows, w));
    }
    if (split)
        IN(io, 0, dt, V_NORMAL, rows, total);
    else
        OUT(io, 0, dt, rows, total);
}
static void ref_concat(const h_case_io *io, double *const *in, double *const *out)
{
    int np = io->ip[0];
    int64_t rows = io->ip[1] ? io->in_shape[0][0] : io->out_shape[0][0];
    int64_t total = io->ip[1] ? io->in_shape[0][1] : io->out_shape[0][1];
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        for (int p = 0; p < np; p++) {
            int64_t w = io->ip[1] ? io->out_shape[p][1] : io->in_shape[p][1];
            for (int64_t k = 0; k < w; k++) {
                if (io->ip[1])
                    out[p][r * w + k] = in[0][r * total + off + k];
                else
                    out[0][r * total + off + k] = in[p][r * w + k];
            }
            off += w;
        }
    }
}
static gpuml_status run_concat(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    if (io->ip[1])
        return gpuml_split(ctx, in[0], io->ip[0], out);
    return gpuml_concat(ctx, io->ip[0], (const gpuml_tensor *const *)in, out[0]);
}
static gpuml_status bwd_concat(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                               gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)in, (void)out;
    if (io->ip[1])
        return gpuml_concat(ctx, io->ip[0], (const gpuml_tensor *const *)gout, gin[0]);
    return gpuml_split(ctx, gout[0], io->ip[0], gin);
}

/* More pieces than one kernel pass takes (GPUML_K_MAX_PIECES = 32). */
static void test_concat_many(void)
{
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    enum { NP = 70 };
    gpuml_tensor *pieces[NP];
    float host[NP * 3 * 2];
    for (int p = 0; p < NP; p++) {
        float v[6];
        for (int k = 0; k < 6; k++)
            v[k] = (float)(p * 100 + k);
        pieces[p] = h_tensor_f32(ctx, 2, SHAPE(3, 2), v);
    }
    gpuml_tensor *wide = h_tensor_f32(ctx, 2, SHAPE(3, 2 * NP), NULL);
    assert_int_equal(gpuml_concat(ctx, NP, (const gpuml_tensor *const *)pieces, wide), GPUML_OK);
    assert_int_equal(gpuml_tensor_copy_to_host(ctx, wide, host, sizeof host), GPUML_OK);
    for (int r = 0; r < 3; r++)
        for (int p = 0; p < NP; p++)
            for (int k = 0; k < 2; k++)
                assert_true(host[r * 2 * NP + 2 * p + k] == (float)(p * 100 + r * 2 + k));
    for (int p = 0; p < NP; p++)
        gpuml_tensor_destroy(pieces[p]);
    gpuml_tensor_destroy(wide);
    gpuml_ctx_destroy(ctx);
}

static void test_concat_split(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("concat/split"), 0);
    test_concat_many();
}

/* ======================= random ========================================= */
/* An independent Philox-4x32-10 (Random123's round function). */
static void philox_ref(uint32_t ctr[4], const uint32_t key[2])
{
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0], p1 = (uint64_t)0xCD9E8D57u * ctr[2];
        uint32_t h0 = (uint32_t)(p0 >> 32), l0 = (uint32_t)p0, h1 = (uint32_t)(p1 >> 32), l1 = (uint32_t)p1;
        uint32_t n[4] = {h1 ^ ctr[1] ^ k0, l1, h0 ^ ctr[3] ^ k1, l0};
        memcpy(ctr, n, sizeof n);
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

static void setup_rand(int v, h_case_io *io)
{
    io->ip[0] = v % 2; /* normal? */
    int64_t n = v < 2 ? 1001 : 70001;
    IN(io, 0, GPUML_F32, V_NORMAL, 1);
    OUT(io, 0, GPUML_F32, n);
    io->diff_in[0] = io->diff_out[0] = 0;
    io->fp[0] = io->ip[0] ? 0.5 : -2.0;
    io->fp[1] = io->ip[0] ? 3.0 : 5.0;
}
#define RAND_SEED 0x0123456789ABCDEFull
static void ref_rand(const h_case_io *io, double *const *in, double *const *out)
{
    (void)in;
    uint32_t key[2] = {(uint32_t)RAND_SEED, (uint32_t)(RAND_SEED >> 32)};
    for (int64_t i = 0; i < numel_out(io, 0); i++) {
        uint32_t c[4] = {(uint32_t)(i / 4), 0, 0, 0};
        philox_ref(c, key);
        if (!io->ip[0]) {
            double u = (double)(c[i % 4] >> 8) / 16777216.0;
            out[0][i] = io->fp[0] + (io->fp[1] - io->fp[0]) * u;
        } else {
            int pair = (int)(i & 2);
            double u1 = ((double)(c[pair] >> 8) + 1.0) / 16777216.0, u2 = (double)(c[pair + 1] >> 8) / 16777216.0;
            double rad = sqrt(-2 * log(u1)), ang = 6.283185307179586 * u2;
            out[0][i] = io->fp[0] + io->fp[1] * ((i & 1) ? rad * sin(ang) : rad * cos(ang));
        }
    }
}
static gpuml_status run_rand(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)in;
    gpuml_ctx_set_seed(ctx, RAND_SEED);
    return io->ip[0] ? gpuml_rand_normal(ctx, out[0], (float)io->fp[0], (float)io->fp[1])
                     : gpuml_rand_uniform(ctx, out[0], (float)io->fp[0], (float)io->fp[1]);
}

static void test_rand(void **state)
{
    (void)state;
    /* Known answers from the Random123 distribution (kat_vectors). */
    uint32_t c1[4] = {0, 0, 0, 0}, k1[2] = {0, 0};
    philox_ref(c1, k1);
    assert_true(c1[0] == 0x6627e8d5u && c1[1] == 0xe169c58du && c1[2] == 0xbc57ac4cu && c1[3] == 0x9b00dbd8u);
    uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, k2[2] = {0xa4093822u, 0x299f31d0u};
    philox_ref(c2, k2);
    assert_true(c2[0] == 0xd16cfe09u && c2[1] == 0x94fdccebu && c2[2] == 0x5001e420u && c2[3] == 0x24126ea1u);
    assert_int_equal(H_RUN("rand"), 0);
}

/* ======================= affine, layernorm, dropout ===================== */
static void setup_affine(int v, h_case_io *io)
{
    io->fp[0] = -0.75;
    io->fp[1] = 2.5;
    if (v == 0)
        IN(io, 0, GPUML_F32, V_NORMAL, 7, 3);
    else
        IN(io, 0, GPUML_F32, V_NORMAL, 40001);
    h_set_out(io, 0, GPUML_F32, io->in_nd[0], io->in_shape[0]);
}
static void ref_affine(const h_case_io *io, double *const *in, double *const *out)
{
    for (int64_t e = 0; e < numel_in(io, 0); e++)
        out[0][e] = io->fp[0] * in[0][e] + io->fp[1];
}
static gpuml_status run_affine(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_affine(ctx, (float)io->fp[0], in[0], (float)io->fp[1], out[0]);
}

/* ip[0]: affine (gamma/beta present) */
static void setup_layernorm(int v, h_case_io *io)
{
    io->ip[0] = v != 1;
    io->fp[0] = 1e-5;
    int64_t c = v == 2 ? 1 : v == 4 ? 64 : 9;
    int64_t r = v == 3 ? 0 : v == 4 ? 700 : v == 5 ? 3001 : 6; /* 5: parameter gradients over 24 chunks of rows */
    if (v == 5)
        c = 3;
    IN(io, 0, GPUML_F32, V_WIDE, r, c);
    IN(io, 1, GPUML_F32, V_NORMAL, c);
    IN(io, 2, GPUML_F32, V_NORMAL, c);
    OUT(io, 0, GPUML_F32, r, c);
    OUT(io, 1, GPUML_F32, r);
    OUT(io, 2, GPUML_F32, r);
    io->diff_out[1] = io->diff_out[2] = 0;
    if (!io->ip[0])
        io->diff_in[1] = io->diff_in[2] = 0;
    if (c == 1) /* x - mean is exactly 0: the gradient w.r.t. x is 0 but FD is ill-conditioned */
        io->diff_in[0] = 0;
}
static void ref_layernorm(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t r = io->in_shape[0][0], c = io->in_shape[0][1];
    for (int64_t i = 0; i < r; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < c; j++)
            m += in[0][i * c + j];
        m /= (double)c;
        for (int64_t j = 0; j < c; j++)
            v += (in[0][i * c + j] - m) * (in[0][i * c + j] - m);
        double rs = 1 / sqrt(v / (double)c + io->fp[0]);
        for (int64_t j = 0; j < c; j++) {
            double xh = (in[0][i * c + j] - m) * rs;
            out[0][i * c + j] = io->ip[0] ? xh * in[1][j] + in[2][j] : xh;
        }
        out[1][i] = m;
        out[2][i] = rs;
    }
}
static gpuml_status run_layernorm(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                  gpuml_tensor *const *out)
{
    return gpuml_layernorm(ctx, in[0], io->ip[0] ? in[1] : NULL, io->ip[0] ? in[2] : NULL, (float)io->fp[0], out[0],
                           out[1], out[2]);
}
static gpuml_status bwd_layernorm(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                  gpuml_tensor *const *out, gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    return gpuml_layernorm_backward(ctx, in[0], io->ip[0] ? in[1] : NULL, gout[0], out[1], out[2], gin[0], gin[1],
                                    gin[2], 0);
}

/* Dropout: the reference regenerates the mask with the test's own Philox. */
static void philox_ref(uint32_t ctr[4], const uint32_t key[2]);
static void setup_dropout(int v, h_case_io *io)
{
    io->fp[0] = v == 2 ? 0.0 : 0.3;
    IN(io, 0, GPUML_F32, V_NORMAL, v == 1 ? 50001 : 37);
    h_set_out(io, 0, GPUML_F32, io->in_nd[0], io->in_shape[0]);
}
#define DROPOUT_SEED 99u
static double ref_keep(int64_t i, double p)
{
    uint32_t key[2] = {DROPOUT_SEED, 0}, c[4] = {(uint32_t)(i / 4), 0, 0, 0};
    philox_ref(c, key);
    return (float)(c[i % 4] >> 8) * 5.9604644775390625e-08f >= (float)p ? 1.0 / (1.0 - p) : 0.0;
}
static void ref_dropout(const h_case_io *io, double *const *in, double *const *out)
{
    for (int64_t e = 0; e < numel_in(io, 0); e++)
        out[0][e] = in[0][e] * (double)(float)ref_keep(e, io->fp[0]);
}
static gpuml_status run_dropout(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    gpuml_ctx_set_seed(ctx, DROPOUT_SEED);
    uint64_t counter;
    return gpuml_dropout(ctx, (float)io->fp[0], in[0], out[0], &counter);
}
static gpuml_status bwd_dropout(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                                gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)in, (void)out;
    return gpuml_dropout_backward(ctx, (float)io->fp[0], DROPOUT_SEED, 0, gout[0], gin[0]);
}

static void test_affine_layernorm_dropout(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("affine", "layernorm", "dropout"), 0);
}

/* ======================= losses ========================================= */
static void setup_bce(int v, h_case_io *io)
{
    io->ip[0] = v == 1; /* pos_weight */
    int64_t n = v == 2 ? 3000 : 11, c = v == 2 ? 15 : 3;
    IN(io, 0, GPUML_F32, v == 3 ? V_HUGE : V_WIDE, n, c);
    IN(io, 1, GPUML_F32, V_INDEX, n, c); /* targets 0/1 */
    io->index_lo[1] = 0;
    io->index_hi[1] = 1;
    io->diff_in[1] = 0;
    IN(io, 2, GPUML_F32, V_POS, c);
    io->diff_in[2] = 0;
    OUT(io, 0, GPUML_F32, n, c);
}
static void ref_bce(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t c = io->in_shape[0][1];
    for (int64_t e = 0; e < numel_in(io, 0); e++) {
        double x = in[0][e], y = in[1][e], pw = io->ip[0] ? in[2][e % c] : 1.0;
        double sp = x < 0 ? -x + log1p(exp(x)) : log1p(exp(-x)); /* softplus(-x) */
        out[0][e] = (1 - y) * x + (1 + (pw - 1) * y) * sp;
    }
}
static gpuml_status run_bce(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_bce_logits(ctx, in[0], in[1], io->ip[0] ? in[2] : NULL, out[0]);
}
static gpuml_status bwd_bce(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                            gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out;
    return gpuml_bce_logits_backward(ctx, in[0], in[1], io->ip[0] ? in[2] : NULL, gout[0], gin[0]);
}

static void setup_ce(int v, h_case_io *io)
{
    int64_t n = v == 1 ? 4000 : v == 2 ? 0 : 13, c = v == 1 ? 10 : 5;
    IN(io, 0, GPUML_F32, v == 3 ? V_HUGE : V_WIDE, n, c);
    IN(io, 1, v == 1 ? GPUML_I64 : GPUML_I32, V_INDEX, n);
    io->index_lo[1] = -1; /* -1 and C: ignored rows */
    io->index_hi[1] = c;
    OUT(io, 0, GPUML_F32, n);
    OUT(io, 1, GPUML_F32, n);
    io->diff_out[1] = 0;
}
static void ref_ce(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][0], c = io->in_shape[0][1];
    for (int64_t i = 0; i < n; i++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < c; j++)
            m = fmax(m, in[0][i * c + j]);
        for (int64_t j = 0; j < c; j++)
            s += exp(in[0][i * c + j] - m);
        int64_t y = (int64_t)in[1][i];
        out[1][i] = m + log(s);
        out[0][i] = (y >= 0 && y < c) ? out[1][i] - in[0][i * c + y] : 0.0;
    }
}
static gpuml_status run_ce(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    (void)io;
    return gpuml_cross_entropy(ctx, in[0], in[1], out[0], out[1]);
}
static gpuml_status bwd_ce(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                           gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)io;
    return gpuml_cross_entropy_backward(ctx, in[0], in[1], out[1], gout[0], gin[0]);
}

static void test_losses(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("bce_logits", "cross_entropy"), 0);
}

/* ======================= the table ====================================== */
/* One row per op of the registry (kernels/ops.def), by its name; h_case.op
 * is the enum value of a family row. tests/test_registry.c fails when a
 * registry op has no row here or in the other op tables. */
const h_case h_cases[] = {
    {"unary.neg", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_NEG},
    {"unary.abs", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_ABS},
    {"unary.exp", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_EXP},
    {"unary.log", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_LOG},
    {"unary.sqrt", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_SQRT},
    {"unary.rsqrt", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_RSQRT},
    {"unary.relu", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_RELU},
    {"unary.leaky_relu", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_LEAKY_RELU},
    {"unary.elu", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_ELU},
    {"unary.gelu", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_GELU},
    {"unary.tanh", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_TANH},
    {"unary.sigmoid", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_SIGMOID},
    {"unary.softplus", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_SOFTPLUS},
    {"unary.nan_to_zero", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_NAN_TO_ZERO},
    {"binary.add", 9, setup_binary, ref_binary, run_binary, bwd_binary, 1e-6, 1e-6, 2e-3, GPUML_BINARY_ADD},
    {"binary.sub", 9, setup_binary, ref_binary, run_binary, bwd_binary, 1e-6, 1e-6, 2e-3, GPUML_BINARY_SUB},
    {"binary.mul", 9, setup_binary, ref_binary, run_binary, bwd_binary, 1e-6, 1e-6, 2e-3, GPUML_BINARY_MUL},
    {"binary.div", 9, setup_binary, ref_binary, run_binary, bwd_binary, 1e-6, 1e-6, 2e-3, GPUML_BINARY_DIV},
    {"binary.maximum", 9, setup_binary, ref_binary, run_binary, bwd_binary, 1e-6, 1e-6, 2e-3, GPUML_BINARY_MAXIMUM},
    {"binary.minimum", 9, setup_binary, ref_binary, run_binary, bwd_binary, 1e-6, 1e-6, 2e-3, GPUML_BINARY_MINIMUM},
    {"sum_to_shape", 8, setup_sum_to, ref_sum_to, run_sum_to, NULL, 1e-6, 1e-6, 0, 0},
    {"scale/axpy", 4, setup_scale, ref_scale, run_scale, NULL, 1e-6, 1e-6, 0, 0},
    {"fill", 8 * GPUML_DTYPE_COUNT_, setup_fill, ref_fill, run_fill, NULL, 0, 0, 0, 0},
    {"cast", GPUML_DTYPE_COUNT_ * GPUML_DTYPE_COUNT_, setup_cast, ref_cast, run_cast, NULL, 0, 0, 0, 0},
    {"reduce.sum", 9, setup_reduce, ref_reduce, run_reduce, bwd_reduce, 1e-6, 1e-6, 2e-3, GPUML_REDUCE_SUM},
    {"reduce.mean", 9, setup_reduce, ref_reduce, run_reduce, bwd_reduce, 1e-6, 1e-6, 2e-3, GPUML_REDUCE_MEAN},
    {"reduce.max", 9, setup_reduce, ref_reduce, run_reduce, bwd_reduce, 1e-6, 1e-6, 2e-3, GPUML_REDUCE_MAX},
    {"reduce.min", 9, setup_reduce, ref_reduce, run_reduce, bwd_reduce, 1e-6, 1e-6, 2e-3, GPUML_REDUCE_MIN},
    {"softmax", 5, setup_softmax, ref_softmax, run_softmax, bwd_softmax, 2e-6, 2e-5, 2e-3, 0},
    {"log_softmax", 5, setup_softmax, ref_softmax, run_softmax, bwd_softmax, 2e-6, 2e-5, 2e-3, 1},
    {"matmul", 20, setup_matmul, ref_matmul, run_matmul, bwd_matmul, 1e-5, 1e-5, 2e-3, 0},
    {"linear", 7, setup_linear, ref_linear, run_linear, bwd_linear, 1e-4, 1e-5, 2e-3, 0},
    {"gather_rows", 6, setup_gather, ref_gather, run_gather, bwd_gather, 0, 0, 2e-3, 0},
    {"scatter_add_rows", 5, setup_scatter, ref_scatter, run_scatter, bwd_scatter, 1e-5, 1e-5, 2e-3, 0},
    {"index_csr", 6, setup_csr, ref_csr, run_csr, NULL, 0, 0, 0, 0},
    {"segment_reduce.sum", 6, setup_segment, ref_segment, run_segment, bwd_segment, 1e-5, 1e-5, 2e-3, GPUML_REDUCE_SUM},
    {"segment_reduce.mean", 6, setup_segment, ref_segment, run_segment, bwd_segment, 1e-5, 1e-5, 2e-3, GPUML_REDUCE_MEAN},
    {"segment_reduce.max", 6, setup_segment, ref_segment, run_segment, bwd_segment, 1e-5, 1e-5, 2e-3, GPUML_REDUCE_MAX},
    {"segment_ids", 2, setup_segment_ids, ref_segment_ids, run_segment_ids, NULL, 0, 0, 0, 0},
    {"concat/split", 8, setup_concat, ref_concat, run_concat, bwd_concat, 0, 0, 2e-3, 0},
    {"rand", 4, setup_rand, ref_rand, run_rand, NULL, 2e-5, 2e-5, 0, 0},
    {"affine", 2, setup_affine, ref_affine, run_affine, NULL, 1e-6, 1e-6, 0, 0},
    {"layernorm", 6, setup_layernorm, ref_layernorm, run_layernorm, bwd_layernorm, 1e-5, 1e-5, 2e-3, 0},
    {"dropout", 3, setup_dropout, ref_dropout, run_dropout, bwd_dropout, 1e-6, 1e-6, 2e-3, 0},
    {"bce_logits", 4, setup_bce, ref_bce, run_bce, bwd_bce, 1e-6, 2e-6, 2e-3, 0},
    {"cross_entropy", 4, setup_ce, ref_ce, run_ce, bwd_ce, 2e-6, 2e-6, 2e-3, 0},
};
const int h_ncases = H_N(h_cases);

int main(int argc, char **argv)
{
    if (H_LIST_CASES(argc, argv))
        return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_sum_to_scale_axpy),
        cmocka_unit_test(test_fill_cast),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_matmul_linear),
        cmocka_unit_test(test_linear_weight_grad_accumulate),
        cmocka_unit_test(test_gather_scatter),
        cmocka_unit_test(test_segment_same_bits_on_every_backend),
        cmocka_unit_test(test_segment),
        cmocka_unit_test(test_concat_split),
        cmocka_unit_test(test_rand),
        cmocka_unit_test(test_affine_layernorm_dropout),
        cmocka_unit_test(test_losses),
    };
    return H_TABLE_DONE(cmocka_run_group_tests_name("ops", tests, NULL, NULL));
}
