/* tests/test_condensation.c - the object condensation loss against a
 * double-precision reference (op table: forward, finite-difference
 * backward, 1-vs-2 threads), the tape op, and bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* ip: 0 max_objects, 1 D; fp: 0 q_min, 1 s_b */
static void setup_oc(int v, h_case_io *io)
{
    /* 4: more events than one chunk of the loss total (GPUML_K_RCHUNK = 128) */
    int64_t n = v == 2 ? 3000 : v == 3 ? 0 : v == 4 ? 2000 : 40, b = v == 2 ? 12 : v == 4 ? 300 : 4,
            k = v == 2 ? 6 : 3, d = v == 1 ? 4 : 2;
    io->ip[0] = (int)k;
    io->ip[1] = (int)d;
    io->fp[0] = v == 1 ? 0.5 : 0.1;
    io->fp[1] = v == 1 ? 0.3 : 1.0;
    int64_t shape1[1] = {n}, shape2[2] = {n, d}, shape_rs[1] = {b + 1};
    io->n_in = 4;
    io->in_dt[0] = GPUML_F32, io->in_kind[0] = V_UNIT, io->in_nd[0] = 1, io->in_shape[0][0] = shape1[0];
    io->in_dt[1] = GPUML_F32, io->in_kind[1] = V_NORMAL, io->in_nd[1] = 2;
    io->in_shape[1][0] = shape2[0], io->in_shape[1][1] = shape2[1];
    io->in_dt[2] = GPUML_I32, io->in_kind[2] = V_INDEX, io->in_nd[2] = 1, io->in_shape[2][0] = n;
    io->index_lo[2] = -1, io->index_hi[2] = k - 1;
    io->in_dt[3] = GPUML_I64, io->in_kind[3] = V_SPLITS, io->in_nd[3] = 1, io->in_shape[3][0] = shape_rs[0];
    io->index_lo[3] = b, io->index_hi[3] = n;
    io->diff_in[0] = io->diff_in[1] = 1;
    io->n_out = 4;
    io->out_dt[0] = GPUML_F32, io->out_nd[0] = 1, io->out_shape[0][0] = 1, io->diff_out[0] = 1;
    io->out_dt[1] = GPUML_F32, io->out_nd[1] = 1, io->out_shape[1][0] = 3;
    io->out_dt[2] = GPUML_I64, io->out_nd[2] = 2, io->out_shape[2][0] = b, io->out_shape[2][1] = k;
    io->out_dt[3] = GPUML_F32, io->out_nd[3] = 2, io->out_shape[3][0] = b, io->out_shape[3][1] = 6;
}

static double ref_q(double beta, double q_min)
{
    double a = atanh(beta / 1.002);
    return a * a + q_min;
}

static void ref_oc(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t k = io->ip[0], d = io->ip[1], b = io->in_shape[3][0] - 1;
    const double *beta = in[0], *x = in[1], *truth = in[2], *rs = in[3];
    double sums[3] = {0, 0, 0};
    int64_t nonempty = 0;
    for (int64_t e = 0; e < b; e++) {
        int64_t s = (int64_t)rs[e], t = (int64_t)rs[e + 1];
        int64_t alpha[64];
        for (int64_t o = 0; o < k; o++) {
            alpha[o] = -1;
            for (int64_t i = s; i < t; i++)
                if ((int64_t)truth[i] == o && (alpha[o] < 0 || beta[i] > beta[alpha[o]]))
                    alpha[o] = i;
            out[2][e * k + o] = (double)alpha[o];
        }
        double lv = 0, lb = 0, ln = 0;
        int64_t kk = 0, nb = 0;
        for (int64_t i = s; i < t; i++) {
            double v = 0;
            for (int64_t o = 0; o < k; o++) {
                if (alpha[o] < 0)
                    continue;
                double d2 = 0;
                for (int64_t c = 0; c < d; c++)
                    d2 += (x[i * d + c] - x[alpha[o] * d + c]) * (x[i * d + c] - x[alpha[o] * d + c]);
                double qa = ref_q(beta[alpha[o]], io->fp[0]);
                v += (int64_t)truth[i] == o ? qa * d2 : qa * fmax(0, 1 - sqrt(d2));
            }
            lv += ref_q(beta[i], io->fp[0]) * v;
            if (truth[i] < 0)
                ln += beta[i], nb++;
        }
        for (int64_t o = 0; o < k; o++)
            if (alpha[o] >= 0)
                lb += 1 - beta[alpha[o]], kk++;
        double *st = out[3] + e * 6;
        st[0] = (double)(t - s), st[1] = (double)kk, st[2] = (double)nb;
        st[3] = t > s ? lv / (double)(t - s) : 0;
        st[4] = kk ? lb / (double)kk : 0;
        st[5] = nb ? io->fp[1] * ln / (double)nb : 0;
        if (t > s) {
            nonempty++;
            sums[0] += st[3], sums[1] += st[4], sums[2] += st[5];
        }
    }
    double inv = nonempty ? 1.0 / (double)nonempty : 0;
    out[0][0] = (sums[0] + sums[1] + sums[2]) * inv;
    for (int c = 0; c < 3; c++)
        out[1][c] = sums[c] * inv;
}

static gpuml_oc_params params_of(const h_case_io *io)
{
    gpuml_oc_params p;
    gpuml_oc_params_init_defaults(&p);
    p.max_objects = io->ip[0];
    p.q_min = (float)io->fp[0];
    p.s_b = (float)io->fp[1];
    return p;
}

static gpuml_status run_oc(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    gpuml_oc_params p = params_of(io);
    return gpuml_object_condensation(ctx, in[0], in[1], in[2], in[3], &p, out[0], out[1], out[2], out[3]);
}

static gpuml_status bwd_oc(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                           gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    gpuml_oc_params p = params_of(io);
    return gpuml_object_condensation_backward(ctx, in[0], in[1], in[2], in[3], &p, out[2], out[3], gout[0], gin[0],
                                              gin[1]);
}

/* The op table: one row per registry op (kernels/ops.def) this file checks;
 * tests/test_registry.c fails when a registry op has no row in any table. */
const h_case h_cases[] = {
    {"object_condensation", 5, setup_oc, ref_oc, run_oc, bwd_oc, 2e-5, 2e-5, 2e-3, 0},
};
const int h_ncases = H_N(h_cases);

static void test_oc_table(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("object_condensation"), 0);
}

static void test_oc_on_tape_and_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    float beta[6] = {0.9f, 0.2f, 0.5f, 0.7f, 0.1f, 0.3f}, x[12] = {0, 0, 0.1f, 0, 2, 2, 2.1f, 2, 5, 5, 0.5f, 0.4f};
    int32_t truth[6] = {0, 0, 1, 1, -1, 0};
    int64_t rs[2] = {0, 6};
    gpuml_tensor *tb = h_tensor_f32(ctx, 2, (int64_t[]){6, 1}, beta), *tx = h_tensor_f32(ctx, 2, (int64_t[]){6, 2}, x);
    gpuml_tensor *tt = h_tensor(ctx, GPUML_I32, 1, (int64_t[]){6}, truth);
    gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){2}, rs);
    gpuml_tensor *comp = h_tensor_f32(ctx, 1, (int64_t[]){3}, NULL);
    gpuml_oc_params p;
    gpuml_oc_params_init_defaults(&p);
    p.max_objects = 2;
    gpuml_tape *t;
    assert_int_equal(gpuml_tape_create(ctx, &t), GPUML_OK);
    gpuml_var *vb, *vx, *loss;
    assert_int_equal(gpuml_var_input(t, tb, 1, &vb), GPUML_OK);
    assert_int_equal(gpuml_var_input(t, tx, 1, &vx), GPUML_OK);
    assert_int_equal(gpuml_ad_object_condensation(t, vb, vx, tt, trs, &p, &loss, comp), GPUML_OK);
    assert_int_equal(gpuml_backward(t, loss, NULL), GPUML_OK);
    const float *c = gpuml_tensor_data(comp), *gbeta = gpuml_tensor_data(gpuml_var_grad(vb));
    /* L_beta: objects 0 and 1 condense at rows 0 (0.9) and 3 (0.7) */
    assert_float_equal(c[1], ((1 - 0.9) + (1 - 0.7)) / 2, 1e-6);
    assert_float_equal(c[2], 0.1, 1e-6); /* the one noise hit's beta */
    assert_float_equal(*(float *)gpuml_tensor_data(gpuml_var_value(loss)), c[0] + c[1] + c[2], 1e-6);
    assert_true(gbeta[4] > 0.0f); /* raising noise beta raises the loss */
    /* bad input */
    p.max_objects = 1; /* truth id 1 is out of range */
    gpuml_tensor *alpha = h_tensor(ctx, GPUML_I64, 2, (int64_t[]){1, 1}, NULL);
    gpuml_tensor *st = h_tensor_f32(ctx, 2, (int64_t[]){1, 6}, NULL), *l = h_tensor_f32(ctx, 1, (int64_t[]){1}, NULL);
    assert_int_equal(gpuml_object_condensation(ctx, tb, tx, tt, trs, &p, l, NULL, alpha, st),
                     GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "truth[2] = 1"));
    p.max_objects = 0;
    assert_int_equal(gpuml_object_condensation(ctx, tb, tx, tt, trs, &p, l, NULL, alpha, st),
                     GPUML_ERR_INVALID_ARGUMENT);
    beta[0] = 1.5f;
    gpuml_tensor_copy_from_host(ctx, tb, beta, sizeof beta);
    p.max_objects = 2;
    gpuml_tensor *alpha2 = h_tensor(ctx, GPUML_I64, 2, (int64_t[]){1, 2}, NULL);
    assert_int_equal(gpuml_object_condensation(ctx, tb, tx, tt, trs, &p, l, NULL, alpha2, st),
                     GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "beta[0]"));
    gpuml_tensor *ts[] = {tb, tx, tt, trs, comp, alpha, st, l, alpha2};
    for (unsigned i = 0; i < 9; i++)
        gpuml_tensor_destroy(ts[i]);
    gpuml_tape_destroy(t);
    gpuml_ctx_destroy(ctx);
}

/* Condensation points with equal betas: the first member row wins on
 * every backend (CUDA finds them by an atomic max over packed keys,
 * kernels/condensation.h), with -0 and +0 equal, across events of more
 * than one chunk of rows. */
static void test_oc_alpha_ties(void **state)
{
    (void)state;
    enum { N = 700, D = 2, K = 3 };
    static float beta[N], x[N * D];
    static int32_t truth[N];
    int64_t rs[3] = {0, 300, N};
    for (int i = 0; i < N; i++) {
        beta[i] = (float)((i * 7) % 5) * 0.2f; /* 0, 0.2 .. 0.8: many ties */
        truth[i] = i % 4 == 3 ? -1 : (i / 2) % K;
        x[i * D] = (float)(i % 11) * 0.1f, x[i * D + 1] = (float)(i % 13) * 0.1f;
    }
    beta[1] = -0.0f; /* object 0 of event 0: -0 before +0 */
    for (int dev = 0; dev < 2; dev++) {
        gpuml_device_type type = dev ? GPUML_DEVICE_CUDA : GPUML_DEVICE_CPU;
        gpuml_ctx *ctx = h_ctx(type, 2);
        if (!ctx)
            continue; /* no CUDA in this build or machine */
        gpuml_tensor *tb = h_tensor_f32(ctx, 1, (int64_t[]){N}, beta), *tx = h_tensor_f32(ctx, 2, (int64_t[]){N, D}, x);
        gpuml_tensor *tt = h_tensor(ctx, GPUML_I32, 1, (int64_t[]){N}, truth);
        gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){3}, rs);
        gpuml_tensor *alpha = h_tensor(ctx, GPUML_I64, 2, (int64_t[]){2, K}, NULL);
        gpuml_tensor *st = h_tensor_f32(ctx, 2, (int64_t[]){2, 6}, NULL), *l = h_tensor_f32(ctx, 1, (int64_t[]){1}, NULL);
        gpuml_oc_params p;
        gpuml_oc_params_init_defaults(&p);
        p.max_objects = K;
        assert_int_equal(gpuml_object_condensation(ctx, tb, tx, tt, trs, &p, l, NULL, alpha, st), GPUML_OK);
        int64_t *got = h_read(ctx, alpha);
        for (int e = 0; e < 2; e++)
            for (int k = 0; k < K; k++) {
                int64_t want = -1;
                for (int64_t i = rs[e]; i < rs[e + 1]; i++)
                    if (truth[i] == k && (want < 0 || beta[i] > beta[want]))
                        want = i;
                if (got[e * K + k] != want)
                    printf("FAIL alpha ties [%s]: event %d object %d: row %lld, want %lld\n", dev ? "cuda" : "cpu", e,
                           k, (long long)got[e * K + k], (long long)want);
                assert_int_equal(got[e * K + k], want);
            }
        free(got);
        gpuml_tensor *ts[] = {tb, tx, tt, trs, alpha, st, l};
        for (unsigned i = 0; i < 7; i++)
            gpuml_tensor_destroy(ts[i]);
        gpuml_ctx_destroy(ctx);
    }
}

int main(int argc, char **argv)
{
    if (H_LIST_CASES(argc, argv))
        return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oc_table),
        cmocka_unit_test(test_oc_on_tape_and_errors),
        cmocka_unit_test(test_oc_alpha_ties),
    };
    return H_TABLE_DONE(cmocka_run_group_tests_name("condensation", tests, NULL, NULL));
}
