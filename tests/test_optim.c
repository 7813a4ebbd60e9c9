/* tests/test_optim.c - the fused optimizer updates against a double-precision
 * transcription of PyTorch's formulas; schedules; global-norm clipping; on
 * every backend present. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam_adamw),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_grad_norm_long),
    };
    return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
