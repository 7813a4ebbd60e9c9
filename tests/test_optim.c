/* tests/test_optim.c - the fused optimizer updates against a double-precision
 * transcription of PyTorch's formulas; schedules; global-norm clipping; on
 * every backend present. The op table (optim.sgd, optim.adam, grad_norm)
 * runs the updates through the harness as well (the bodies of
 * kernels/optim.h, the gradient scale included). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define N 70000 /* more than one norm block and the parallel threshold */

typedef struct {
    double p, m, v, buf;
} ref_state;

static void ref_step(const gpuml_optim_config *c, ref_state *s, double g, int64_t step, double lr)
{
    if (c->kind == GPUML_OPTIM_SGD) {
        double d = g + c->weight_decay * s->p;
        if (c->momentum != 0) {
            s->buf = step == 0 ? d : c->momentum * s->buf + (1 - c->dampening) * d;
            d = c->nesterov ? d + c->momentum * s->buf : s->buf;
        }
        s->p -= lr * d;
        return;
    }
    if (c->kind == GPUML_OPTIM_ADAMW)
        s->p *= 1 - lr * c->weight_decay;
    else
        g += c->weight_decay * s->p;
    s->m = c->beta1 * s->m + (1 - c->beta1) * g;
    s->v = c->beta2 * s->v + (1 - c->beta2) * g * g;
    double t = (double)(step + 1);
    double mh = s->m / (1 - pow(c->beta1, t)), vh = s->v / (1 - pow(c->beta2, t));
    s->p -= lr * mh / (sqrt(vh) + c->eps);
}

static double ref_lr(const gpuml_optim_config *c, int64_t step)
{
    switch (c->schedule) {
    case GPUML_SCHED_STEP: return c->lr * pow(c->gamma, (double)(step / c->step_size));
    case GPUML_SCHED_COSINE:
        if (step < c->warmup_steps)
            return c->lr * (double)(step + 1) / (double)c->warmup_steps;
        if (step >= c->total_steps)
            return c->min_lr;
        return c->min_lr + (c->lr - c->min_lr) * 0.5 *
                               (1 + cos(3.14159265358979323846 * (double)(step - c->warmup_steps) /
                                        (double)(c->total_steps - c->warmup_steps)));
    default: return c->lr;
    }
}

static void run_config_on(gpuml_device_type dev, const gpuml_optim_config *c0, int steps, double clip)
{
    gpuml_optim_config cc = *c0, *c = &cc;
    cc.clip_norm = (float)clip;
    gpuml_ctx *ctx = h_ctx(dev, 2);
    uint64_t seed = 4;
    float *p0 = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float));
    ref_state *rs = calloc(N, sizeof *rs);
    for (int i = 0; i < N; i++) {
        p0[i] = (float)h_rand_normal(&seed);
        rs[i].p = p0[i];
    }
    int64_t n = N;
    gpuml_tensor *tp = h_tensor_f32(ctx, 1, &n, p0), *tg = h_tensor_f32(ctx, 1, &n, NULL);
    gpuml_optim *opt;
    assert_int_equal(gpuml_optim_create(ctx, c, tp, tg, &opt), GPUML_OK);
    for (int s = 0; s < steps; s++) {
        double norm2 = 0;
        for (int i = 0; i < N; i++) {
            g[i] = (float)(h_rand_normal(&seed) * (s + 1));
            norm2 += (double)g[i] * g[i];
        }
        gpuml_tensor_copy_from_host(ctx, tg, g, N * sizeof(float));
        double scale = 1.0;
        if (clip > 0) {
            double coef = clip / (sqrt(norm2) + 1e-6);
            scale = coef < 1 ? coef : 1;
        }
        assert_float_equal(gpuml_optim_lr(opt), ref_lr(c, s), 1e-6 * c->lr + 1e-9);
        double lr = (double)gpuml_optim_lr(opt);
        for (int i = 0; i < N; i++)
            ref_step(c, &rs[i], g[i] * scale, s, lr);
        assert_int_equal(gpuml_optim_step(opt), GPUML_OK);
        if (clip > 0) {
            float got;
            assert_int_equal(gpuml_optim_last_grad_norm(opt, &got), GPUML_OK);
            assert_float_equal(got, sqrt(norm2), 1e-5 * sqrt(norm2));
        }
    }
    float *p = h_read(ctx, tp);
    assert_non_null(p);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (fabs(p[i] - rs[i].p) > 1e-5 + 1e-4 * fabs(rs[i].p)) {
            if (bad++ < 5)
                printf("kind %d on %s: p[%d] = %.8g, reference %.8g\n", (int)c->kind,
                       dev == GPUML_DEVICE_CPU ? "cpu" : "cuda", i, p[i], rs[i].p);
        }
    free(p);
    assert_int_equal(bad, 0);
    assert_int_equal(gpuml_optim_num_steps(opt), steps);
    gpuml_optim_destroy(opt);
    gpuml_tensor_destroy(tp);
    gpuml_tensor_destroy(tg);
    free(p0), free(g), free(rs);
    gpuml_ctx_destroy(ctx);
}

static void run_config(const gpuml_optim_config *c, int steps, double clip)
{
    for (int b = 0; b < h_num_backends(); b++)
        run_config_on(h_backend(b), c, steps, clip);
}

static void test_sgd(void **state)
{
    (void)state;
    gpuml_optim_config c;
    gpuml_optim_config_init_defaults(&c);
    c.kind = GPUML_OPTIM_SGD;
    c.lr = 0.05f;
    c.weight_decay = 0.0f;
    run_config(&c, 3, 0); /* plain */
    c.momentum = 0.9f;
    c.weight_decay = 1e-3f;
    run_config(&c, 4, 0); /* momentum + weight decay */
    c.nesterov = 1;
    c.schedule = GPUML_SCHED_STEP;
    c.step_size = 2;
    c.gamma = 0.5f;
    run_config(&c, 5, 0); /* Nesterov, step schedule */
    c.nesterov = 0;
    c.dampening = 0.3f;
    run_config(&c, 3, 50.0); /* dampening, clipping */
}

static void test_adam_adamw(void **state)
{
    (void)state;
    gpuml_optim_config c;
    gpuml_optim_config_init_defaults(&c);
    run_config(&c, 4, 0); /* AdamW defaults */
    c.kind = GPUML_OPTIM_ADAM;
    c.weight_decay = 0.05f;
    run_config(&c, 4, 0); /* Adam with L2 */
    c.kind = GPUML_OPTIM_ADAMW;
    c.schedule = GPUML_SCHED_COSINE;
    c.warmup_steps = 2;
    c.total_steps = 5;
    c.min_lr = 1e-5f;
    run_config(&c, 7, 100.0); /* warm-up, cosine, past the end; clipping */
}

/* ======================= the op table ===================================
 * One optimizer update of a slab (or a few, with the same gradient) and the
 * global norm, through the harness (guards, thread counts, executors, every
 * backend), against ref_step. in: 0 params (also output 0's initial value),
 * 1 grads. ip: 0 kind, 1 steps, 2 nesterov; fp: 0 lr, 1 weight decay,
 * 2 momentum, 3 dampening (SGD) or clip norm (Adam). */
static void optim_config_of(const h_case_io *io, gpuml_optim_config *c)
{
    gpuml_optim_config_init_defaults(c);
    c->kind = (gpuml_optim_kind)io->ip[0];
    c->lr = (float)io->fp[0];
    c->weight_decay = (float)io->fp[1];
    if (c->kind == GPUML_OPTIM_SGD) {
        c->momentum = (float)io->fp[2];
        c->dampening = (float)io->fp[3];
        c->nesterov = io->ip[2];
    } else {
        c->clip_norm = (float)io->fp[3];
    }
}

static void setup_optim(int v, h_case_io *io)
{
    static const struct {
        int64_t n;
        int sgd_steps, nesterov;
        double sgd[4]; /* lr, wd, momentum, dampening */
        int adam_kind, adam_steps;
        double adam[4]; /* lr, wd, -, clip */
    } V[] = {
        {7, 1, 0, {0.05, 0, 0, 0}, GPUML_OPTIM_ADAMW, 1, {1e-3, 0.01, 0, 0}},
        {1000, 3, 0, {0.05, 1e-3, 0.9, 0}, GPUML_OPTIM_ADAM, 3, {1e-3, 0.05, 0, 0}},
        {333, 3, 1, {0.05, 1e-3, 0.9, 0}, GPUML_OPTIM_ADAMW, 3, {1e-2, 0.01, 0, 0}},
        {70000, 3, 0, {0.05, 0, 0.9, 0.3}, GPUML_OPTIM_ADAMW, 2, {1e-3, 0.01, 0, 5.0}},
    };
    int sgd = io->op == GPUML_OPTIM_SGD;
    io->ip[0] = sgd ? GPUML_OPTIM_SGD : V[v].adam_kind;
    io->ip[1] = sgd ? V[v].sgd_steps : V[v].adam_steps;
    io->ip[2] = sgd ? V[v].nesterov : 0;
    for (int i = 0; i < 4; i++)
        io->fp[i] = sgd ? V[v].sgd[i] : V[v].adam[i];
    IN(io, 0, GPUML_F32, V_NORMAL, V[v].n);
    IN(io, 1, GPUML_F32, V_NORMAL, V[v].n);
    OUT(io, 0, GPUML_F32, V[v].n);
    io->inout[0] = 0;
    io->diff_in[0] = io->diff_in[1] = io->diff_out[0] = 0;
}

static void ref_optim(const h_case_io *io, double *const *in, double *const *out)
{
    gpuml_optim_config c;
    optim_config_of(io, &c);
    int64_t n = h_numel(io->in_nd[1], io->in_shape[1]);
    double norm2 = 0, scale = 1.0;
    for (int64_t i = 0; i < n; i++)
        norm2 += in[1][i] * in[1][i];
    if (c.clip_norm > 0) {
        double coef = c.clip_norm / (sqrt(norm2) + 1e-6);
        scale = coef < 1 ? coef : 1;
    }
    for (int64_t i = 0; i < n; i++) {
        ref_state st = {out[0][i], 0, 0, 0};
        for (int s = 0; s < io->ip[1]; s++)
            ref_step(&c, &st, in[1][i] * scale, s, (float)c.lr);
        out[0][i] = st.p;
    }
}

static gpuml_status run_optim(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    gpuml_optim_config c;
    optim_config_of(io, &c);
    gpuml_optim *opt = NULL;
    gpuml_status st = gpuml_optim_create(ctx, &c, out[0], in[1], &opt);
    for (int s = 0; st == GPUML_OK && s < io->ip[1]; s++)
        st = gpuml_optim_step(opt);
    gpuml_optim_destroy(opt);
    return st;
}

static void setup_grad_norm(int v, h_case_io *io)
{
    static const int64_t n[] = {7, 4097, 70000};
    IN(io, 0, GPUML_F32, v == 1 ? V_HUGE : V_NORMAL, n[v]);
    OUT(io, 0, GPUML_F32, 1);
    io->diff_in[0] = io->diff_out[0] = 0;
}

static void ref_grad_norm(const h_case_io *io, double *const *in, double *const *out)
{
    double s = 0;
    for (int64_t i = 0; i < h_numel(io->in_nd[0], io->in_shape[0]); i++)
        s += in[0][i] * in[0][i];
    out[0][0] = sqrt(s);
}

static gpuml_status run_grad_norm(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                  gpuml_tensor *const *out)
{
    (void)io;
    float norm = 0;
    gpuml_status st = gpuml_grad_norm(ctx, in[0], &norm);
    return st == GPUML_OK ? gpuml_fill(ctx, out[0], norm) : st;
}

/* One row per registry op (kernels/ops.def) this file checks. */
const h_case h_cases[] = {
    {"optim.sgd", 4, setup_optim, ref_optim, run_optim, NULL, 1e-6, 1e-5, 0, GPUML_OPTIM_SGD},
    {"optim.adam", 4, setup_optim, ref_optim, run_optim, NULL, 1e-6, 1e-5, 0, GPUML_OPTIM_ADAM},
    {"grad_norm", 3, setup_grad_norm, ref_grad_norm, run_grad_norm, NULL, 0, 1e-6, 0, 0},
};
const int h_ncases = H_N(h_cases);

static void test_table(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("optim", "grad_norm"), 0);
}

static void test_config_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    int64_t n = 10;
    gpuml_tensor *p = h_tensor_f32(ctx, 1, &n, NULL), *g = h_tensor_f32(ctx, 1, &n, NULL);
    int64_t n2 = 9;
    gpuml_tensor *g2 = h_tensor_f32(ctx, 1, &n2, NULL);
    gpuml_optim *o = NULL;
    gpuml_optim_config c;
    gpuml_optim_config_init_defaults(&c);
    c.lr = -1;
    assert_int_equal(gpuml_optim_create(ctx, &c, p, g, &o), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "lr"));
    gpuml_optim_config_init_defaults(&c);
    c.beta1 = 1.0f;
    assert_int_equal(gpuml_optim_create(ctx, &c, p, g, &o), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_optim_config_init_defaults(&c);
    c.schedule = GPUML_SCHED_COSINE;
    assert_int_equal(gpuml_optim_create(ctx, &c, p, g, &o), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_optim_config_init_defaults(&c);
    c.kind = GPUML_OPTIM_SGD;
    c.nesterov = 1;
    assert_int_equal(gpuml_optim_create(ctx, &c, p, g, &o), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_optim_config_init_defaults(&c);
    assert_int_equal(gpuml_optim_create(ctx, &c, p, g2, &o), GPUML_ERR_SHAPE);
    assert_null(o);
    /* state is exposed for checkpoints */
    assert_int_equal(gpuml_optim_create(ctx, &c, p, g, &o), GPUML_OK);
    assert_int_equal(gpuml_optim_num_states(o), 2);
    const char *name;
    gpuml_tensor *st;
    assert_int_equal(gpuml_optim_state(o, 1, &name, &st), GPUML_OK);
    assert_string_equal(name, "exp_avg_sq");
    assert_int_equal(gpuml_tensor_numel(st), 10);
    assert_int_equal(gpuml_optim_state(o, 2, &name, &st), GPUML_ERR_INVALID_ARGUMENT);
    float norm;
    gpuml_fill(ctx, g, 2.0);
    assert_int_equal(gpuml_grad_norm(ctx, g, &norm), GPUML_OK);
    assert_float_equal(norm, sqrt(40.0), 1e-5);
    gpuml_optim_destroy(o);
    gpuml_tensor_destroy(p);
    gpuml_tensor_destroy(g);
    gpuml_tensor_destroy(g2);
    gpuml_ctx_destroy(ctx);
}

/* The global norm over more than 128^2 elements: three levels of the
 * fixed-order reduction, against a double reference, on every backend, and
 * the same bits on every backend and thread count. */
static void test_grad_norm_long(void **state)
{
    (void)state;
    const int64_t n = 3 * 128 * 128 + 5;
    float *g = malloc((size_t)n * sizeof(float));
    uint64_t seed = 11;
    double ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        g[i] = (float)h_rand_normal(&seed);
        ref += (double)g[i] * (double)g[i];
    }
    ref = sqrt(ref);
    float first = 0.0f;
    for (int b = 0; b < h_num_backends(); b++)
        for (int nt = 1; nt <= 2; nt++) {
            gpuml_ctx *ctx = h_ctx(h_backend(b), nt);
            gpuml_tensor *t = h_tensor_f32(ctx, 1, &n, g);
            float norm = -1.0f;
            assert_int_equal(gpuml_grad_norm(ctx, t, &norm), GPUML_OK);
            assert_true(fabs((double)norm - ref) <= 1e-6 * ref);
            if (b == 0 && nt == 1)
                first = norm;
            assert_memory_equal(&norm, &first, sizeof norm);
            gpuml_tensor_destroy(t);
            gpuml_ctx_destroy(ctx);
        }
    free(g);
}

int main(int argc, char **argv)
{
    if (H_LIST_CASES(argc, argv))
        return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam_adamw),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_grad_norm_long),
    };
    return H_TABLE_DONE(cmocka_run_group_tests_name("optim", tests, NULL, NULL));
}
