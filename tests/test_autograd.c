/* tests/test_autograd.c - the tape: gradients of composite graphs against
 * finite differences, reuse of a var, accumulation into parameters, hooks,
 * no-grad mode, steady-state allocation, error paths. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define CHECK(x) assert_int_equal((x), GPUML_OK)

typedef struct {
    gpuml_tensor *value, *grad;
    gpuml_var *var;
} param;

static param make_param(gpuml_ctx *ctx, int nd, const int64_t *shape, uint64_t *seed, double scale)
{
    param p;
    int64_t n = h_numel(nd, shape);
    float *h = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)(scale * h_rand_normal(seed));
    p.value = h_tensor_f32(ctx, nd, shape, h);
    p.grad = h_tensor_f32(ctx, nd, shape, NULL);
    gpuml_fill(ctx, p.grad, 0.0);
    CHECK(gpuml_param_create(p.value, p.grad, &p.var));
    free(h);
    return p;
}

static void free_param(param *p)
{
    gpuml_param_destroy(p->var);
    gpuml_tensor_destroy(p->value);
    gpuml_tensor_destroy(p->grad);
}

/* The backend under test: main runs every test on each backend present. */
static gpuml_device_type g_dev = GPUML_DEVICE_CPU;

static float read1(gpuml_ctx *ctx, gpuml_tensor *t)
{
    float v;
    gpuml_tensor_copy_to_host(ctx, t, &v, sizeof v);
    return v;
}

static void test_reuse_of_a_var(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(g_dev, 2);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    float xv[4] = {1, -2, 0.5f, 3};
    gpuml_tensor *x = h_tensor_f32(ctx, 1, (int64_t[]){4}, xv);
    gpuml_var *vx, *sq, *y, *loss;
    CHECK(gpuml_var_input(t, x, 1, &vx));
    CHECK(gpuml_ad_binary(t, GPUML_BINARY_MUL, vx, vx, &sq)); /* x*x: both operands are x */
    CHECK(gpuml_ad_binary(t, GPUML_BINARY_ADD, sq, vx, &y));  /* + x: x used a third time */
    CHECK(gpuml_ad_sum_all(t, y, &loss));
    CHECK(gpuml_backward(t, loss, NULL));
    float g[4];
    gpuml_tensor_copy_to_host(ctx, gpuml_var_grad(vx), g, sizeof g);
    for (int i = 0; i < 4; i++)
        assert_float_equal(g[i], 2 * xv[i] + 1, 1e-6);
    assert_float_equal(read1(ctx, gpuml_var_value(loss)), 1 + 4 + 0.25f + 9 + 2.5f, 1e-5);

    /* a second backward on the same tape recomputes (does not add to) var grads */
    CHECK(gpuml_backward(t, loss, NULL));
    gpuml_tensor_copy_to_host(ctx, gpuml_var_grad(vx), g, sizeof g);
    assert_float_equal(g[0], 3.0f, 1e-6);
    gpuml_tensor_destroy(x);
    gpuml_tape_destroy(t);
    gpuml_ctx_destroy(ctx);
}

/* A small model touching most differentiable ops. */
typedef struct {
    gpuml_ctx *ctx;
    param w1, b1, w2, b2, gamma, beta, wseg;
    gpuml_tensor *x, *rs, *idx, *labels, *target, *cw;
} model;

static void model_init(model *m)
{
    uint64_t s = 12345;
    m->ctx = h_ctx(g_dev, 2);
    gpuml_ctx *ctx = m->ctx;
    m->w1 = make_param(ctx, 2, (int64_t[]){6, 4}, &s, 0.5);
    m->b1 = make_param(ctx, 1, (int64_t[]){6}, &s, 0.1);
    m->w2 = make_param(ctx, 2, (int64_t[]){3, 8}, &s, 0.4);
    m->b2 = make_param(ctx, 1, (int64_t[]){3}, &s, 0.1);
    m->gamma = make_param(ctx, 1, (int64_t[]){6}, &s, 1.0);
    m->beta = make_param(ctx, 1, (int64_t[]){6}, &s, 0.2);
    m->wseg = make_param(ctx, 2, (int64_t[]){2, 4}, &s, 0.5);
    float xh[7 * 4];
    for (int i = 0; i < 28; i++)
        xh[i] = (float)h_rand_normal(&s);
    m->x = h_tensor_f32(ctx, 2, (int64_t[]){7, 4}, xh);
    int64_t rs[3] = {0, 3, 7};
    m->rs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){3}, rs);
    int32_t idx[7] = {6, 0, 2, 2, -1, 5, 1};
    m->idx = h_tensor(ctx, GPUML_I32, 1, (int64_t[]){7}, idx);
    int64_t lab[7] = {0, 2, 1, 1, -1, 0, 2};
    m->labels = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){7}, lab);
    float tg[2 * 2] = {0, 1, 1, 0};
    m->target = h_tensor_f32(ctx, 2, (int64_t[]){2, 2}, tg);
    float cw[3] = {1.0f, 2.0f, 0.5f};
    m->cw = h_tensor_f32(ctx, 1, (int64_t[]){3}, cw);
}

static void model_free(model *m)
{
    param *ps[] = {&m->w1, &m->b1, &m->w2, &m->b2, &m->gamma, &m->beta, &m->wseg};
    for (unsigned i = 0; i < 7; i++)
        free_param(ps[i]);
    gpuml_tensor *ts[] = {m->x, m->rs, m->idx, m->labels, m->target, m->cw};
    for (unsigned i = 0; i < 6; i++)
        gpuml_tensor_destroy(ts[i]);
    gpuml_ctx_destroy(m->ctx);
}

static gpuml_var *model_loss(model *m, gpuml_tape *t)
{
    gpuml_ctx_set_rng_state(m->ctx, 77, 0); /* the same dropout mask every forward */
    gpuml_var *x, *h, *h2, *hg, *cat, *logits, *ce, *pooled, *seg, *bce, *mx, *sm, *split[2], *r, *loss, *l1, *l2;
    CHECK(gpuml_var_input(t, m->x, 1, &x));
    CHECK(gpuml_ad_linear(t, x, m->w1.var, m->b1.var, &h));              /* [7, 6] */
    CHECK(gpuml_ad_layernorm(t, h, m->gamma.var, m->beta.var, 1e-5f, &h));
    CHECK(gpuml_ad_unary(t, GPUML_UNARY_GELU, 0, h, &h));
    CHECK(gpuml_ad_dropout(t, h, 0.25f, &h));
    CHECK(gpuml_ad_gather_rows(t, h, m->idx, &hg));                      /* neighbours */
    CHECK(gpuml_ad_split(t, hg, 2, (int64_t[]){2, 4}, split));
    CHECK(gpuml_ad_unary(t, GPUML_UNARY_TANH, 0, split[0], &h2));
    gpuml_var *parts[2] = {h, h2};
    CHECK(gpuml_ad_concat(t, 2, parts, &cat));                           /* [7, 8] */
    CHECK(gpuml_ad_linear(t, cat, m->w2.var, m->b2.var, &logits));       /* [7, 3] */
    CHECK(gpuml_ad_cross_entropy(t, logits, m->labels, m->cw, &ce));
    CHECK(gpuml_ad_matmul(t, x, 0, m->wseg.var, 1, &pooled));            /* [7, 2] */
    CHECK(gpuml_ad_segment_reduce(t, GPUML_REDUCE_MAX, pooled, m->rs, &seg));
    gpuml_var *tgt;
    CHECK(gpuml_var_input(t, m->target, 0, &tgt));
    CHECK(gpuml_ad_bce_logits(t, seg, tgt, NULL, &bce));
    CHECK(gpuml_ad_reduce(t, GPUML_REDUCE_MAX, logits, 1, 1, &mx));      /* [7, 1] */
    CHECK(gpuml_ad_softmax(t, logits, 1, &sm));
    CHECK(gpuml_ad_binary(t, GPUML_BINARY_SUB, sm, mx, &sm));            /* broadcast */
    CHECK(gpuml_ad_reshape(t, sm, 1, (int64_t[]){-1}, &r));
    CHECK(gpuml_ad_mean_all(t, r, &l1));
    CHECK(gpuml_ad_scale(t, 0.1f, l1, &l1));
    CHECK(gpuml_ad_binary(t, GPUML_BINARY_ADD, ce, bce, &l2));
    CHECK(gpuml_ad_binary(t, GPUML_BINARY_ADD, l2, l1, &loss));
    gpuml_var *g2, *l3; /* the last consumer of logits: its backward runs first */
    CHECK(gpuml_ad_gather_rows(t, logits, m->idx, &g2));
    CHECK(gpuml_ad_mean_all(t, g2, &l3));
    CHECK(gpuml_ad_binary(t, GPUML_BINARY_ADD, loss, l3, &loss));
    CHECK(gpuml_ad_add_scalar(t, loss, 3.0f, &loss));
    return loss;
}

static void test_model_gradients_vs_fd(void **state)
{
    (void)state;
    model m;
    model_init(&m);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(m.ctx, &t));
    param *ps[] = {&m.w1, &m.b1, &m.w2, &m.b2, &m.gamma, &m.beta, &m.wseg};
    /* one warm-up step leaves the arena full of stale values, so a backward
     * that forgets to initialise a buffer shows up below */
    CHECK(gpuml_backward(t, model_loss(&m, t), NULL));
    gpuml_tape_reset(t);
    for (unsigned p = 0; p < 7; p++)
        gpuml_fill(m.ctx, ps[p]->grad, 0.0);
    gpuml_var *loss = model_loss(&m, t);
    CHECK(gpuml_backward(t, loss, NULL));
    int bad = 0;
    for (unsigned p = 0; p < 7; p++) {
        /* host copies; the parameter is written back through the context */
        float *val = h_read(m.ctx, ps[p]->value), *grad = h_read(m.ctx, ps[p]->grad);
        int64_t n = gpuml_tensor_numel(ps[p]->value);
        size_t nb = gpuml_tensor_nbytes(ps[p]->value);
        for (int64_t i = 0; i < n; i++) {
            float x0 = val[i], h = 1e-2f;
            gpuml_tape_reset(t);
            val[i] = x0 + h;
            CHECK(gpuml_tensor_copy_from_host(m.ctx, ps[p]->value, val, nb));
            float lp = read1(m.ctx, gpuml_var_value(model_loss(&m, t)));
            gpuml_tape_reset(t);
            val[i] = x0 - h;
            CHECK(gpuml_tensor_copy_from_host(m.ctx, ps[p]->value, val, nb));
            float lm = read1(m.ctx, gpuml_var_value(model_loss(&m, t)));
            val[i] = x0;
            CHECK(gpuml_tensor_copy_from_host(m.ctx, ps[p]->value, val, nb));
            double fd = ((double)lp - lm) / (2.0 * h);
            if (fabs(fd - grad[i]) > 3e-3 + 2e-2 * fabs(fd)) {
                printf("param %u [%lld]: backward %.6g, finite difference %.6g\n", p, (long long)i, grad[i], fd);
                bad++;
            }
        }
        free(val);
        free(grad);
    }
    assert_int_equal(bad, 0);
    gpuml_tape_destroy(t);
    model_free(&m);
}

typedef struct {
    int *order, *count;
} hook_record;

static void hook(void *user, gpuml_var *p, int group)
{
    (void)p;
    hook_record *rec = user;
    rec->order[(*rec->count)++] = group;
}

static void test_param_accumulation_and_hooks(void **state)
{
    (void)state;
    model m;
    model_init(&m);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(m.ctx, &t));
    param *ps[] = {&m.w1, &m.b1, &m.w2, &m.b2, &m.gamma, &m.beta, &m.wseg};
    for (int i = 0; i < 7; i++)
        gpuml_param_set_group(ps[i]->var, i);
    CHECK(gpuml_backward(t, model_loss(&m, t), NULL));
    float once[6 * 4], twice[6 * 4];
    CHECK(gpuml_tensor_copy_to_host(m.ctx, m.w1.grad, once, sizeof once));
    gpuml_tape_reset(t);
    CHECK(gpuml_backward(t, model_loss(&m, t), NULL));
    CHECK(gpuml_tensor_copy_to_host(m.ctx, m.w1.grad, twice, sizeof twice));
    for (int i = 0; i < 24; i++)
        assert_float_equal(twice[i], 2 * once[i], 1e-5 * (1 + fabs(once[i])));

    /* hooks: every parameter exactly once, in reverse order of first use;
     * an unused tracked parameter is reported at the end */
    int order[16], count = 0;
    hook_record rec = {order, &count};
    gpuml_tape_set_grad_hook(t, hook, &rec);
    uint64_t s = 9;
    param unused = make_param(m.ctx, 1, (int64_t[]){3}, &s, 1.0);
    gpuml_param_set_group(unused.var, 99);
    gpuml_var *all[8] = {m.w1.var, m.b1.var, m.w2.var, m.b2.var, m.gamma.var, m.beta.var, m.wseg.var, unused.var};
    gpuml_tape_reset(t);
    gpuml_var *loss = model_loss(&m, t);
    gpuml_tape_track_params(t, all, 8);
    CHECK(gpuml_backward(t, loss, NULL));
    assert_int_equal(count, 8);
    int seen[100] = {0};
    for (int i = 0; i < count; i++)
        seen[order[i]]++;
    for (int g = 0; g < 7; g++)
        assert_int_equal(seen[g], 1);
    assert_int_equal(order[7], 99);
    /* wseg is used last in forward (after w2): it is final first */
    int pos_wseg = -1, pos_w1 = -1;
    for (int i = 0; i < count; i++) {
        if (order[i] == 6)
            pos_wseg = i;
        if (order[i] == 0)
            pos_w1 = i;
    }
    assert_true(pos_wseg < pos_w1);
    free_param(&unused);
    gpuml_tape_destroy(t);
    model_free(&m);
}

static void test_no_grad_and_errors(void **state)
{
    (void)state;
    model m;
    model_init(&m);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(m.ctx, &t));
    gpuml_tape_set_grad_enabled(t, 0);
    gpuml_var *loss = model_loss(&m, t);
    assert_int_equal(gpuml_tape_num_nodes(t), 0);
    assert_int_equal(gpuml_backward(t, loss, NULL), GPUML_ERR_STATE);
    gpuml_tape_set_grad_enabled(t, 1);
    gpuml_tape_reset(t);
    gpuml_var *x, *y;
    CHECK(gpuml_var_input(t, m.x, 1, &x));
    CHECK(gpuml_ad_unary(t, GPUML_UNARY_RELU, 0, x, &y));
    assert_int_equal(gpuml_backward(t, y, NULL), GPUML_ERR_SHAPE); /* 28 elements, no seed */
    CHECK(gpuml_backward(t, y, m.x));                                /* seed = x */
    assert_int_equal(gpuml_ad_linear(t, x, m.w2.var, NULL, &y), GPUML_ERR_SHAPE);
    assert_int_equal(gpuml_ad_unary(NULL, GPUML_UNARY_RELU, 0, x, &y), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_ad_unary(t, GPUML_UNARY_RELU, 0, NULL, &y), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "'x' is NULL"));
    /* inference mode: dropout is the identity */
    gpuml_tape_set_training(t, 0);
    CHECK(gpuml_ad_dropout(t, x, 0.5f, &y));
    assert_ptr_equal(x, y);
    gpuml_tape_destroy(t);
    model_free(&m);
}

/* relu(batch_norm) fused: the same values, running statistics and
 * gradients (x, gamma, beta) as batch_norm followed by relu, bit for bit,
 * in training and inference, with padding rows masked out and a NaN. */
static void bn_relu_run(gpuml_ctx *ctx, int fused, int training, const float *xv, float *y, float *gx, float *gg,
                        float *gb, float *rmv)
{
    enum { R = 37, C = 5 };
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_tape_set_training(t, training);
    uint64_t s = 99;
    param gamma = make_param(ctx, 1, (int64_t[]){C}, &s, 1.0), beta = make_param(ctx, 1, (int64_t[]){C}, &s, 0.5);
    gpuml_tensor *x = h_tensor_f32(ctx, 2, (int64_t[]){R, C}, xv);
    float rm0[C] = {0.1f, -0.2f, 0.3f, 0, 1}, rv0[C] = {1, 2, 0.5f, 1, 3};
    gpuml_tensor *rm = h_tensor_f32(ctx, 1, (int64_t[]){C}, rm0), *rv = h_tensor_f32(ctx, 1, (int64_t[]){C}, rv0);
    uint8_t mk[R];
    for (int r = 0; r < R; r++)
        mk[r] = r % 7 != 3;
    gpuml_tensor *mask = h_tensor(ctx, GPUML_U8, 1, (int64_t[]){R}, mk);
    float sd[R * C];
    for (int i = 0; i < R * C; i++)
        sd[i] = (float)h_rand_normal(&s);
    gpuml_tensor *seed = h_tensor_f32(ctx, 2, (int64_t[]){R, C}, sd);
    gpuml_var *vx, *o;
    CHECK(gpuml_var_input(t, x, 1, &vx));
    if (fused) {
        CHECK(gpuml_ad_batch_norm_relu(t, vx, mask, gamma.var, beta.var, rm, rv, 0.1f, 1e-5f, &o));
    } else {
        CHECK(gpuml_ad_batch_norm(t, vx, mask, gamma.var, beta.var, rm, rv, 0.1f, 1e-5f, &o));
        CHECK(gpuml_ad_unary(t, GPUML_UNARY_RELU, 0.0f, o, &o));
    }
    CHECK(gpuml_backward(t, o, seed));
    gpuml_tensor_copy_to_host(ctx, gpuml_var_value(o), y, R * C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, gpuml_var_grad(vx), gx, R * C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, gamma.grad, gg, C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, beta.grad, gb, C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, rm, rmv, C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, rv, rmv + C, C * sizeof(float));
    free_param(&gamma);
    free_param(&beta);
    gpuml_tensor *ts[] = {x, rm, rv, mask, seed};
    for (int i = 0; i < 5; i++)
        gpuml_tensor_destroy(ts[i]);
    gpuml_tape_destroy(t);
}

static void test_batch_norm_relu_fused(void **state)
{
    (void)state;
    enum { R = 37, C = 5, N = R * C };
    gpuml_ctx *ctx = h_ctx(g_dev, 2);
    float xv[N];
    uint64_t s = 7;
    for (int i = 0; i < N; i++)
        xv[i] = (float)(2.0 * h_rand_normal(&s) + 0.3);
    for (int nan = 0; nan < 2; nan++) {
        if (nan)
            xv[2 * C + 1] = NAN; /* row 2 is valid: channel 1 turns NaN in both */
        for (int training = 0; training < 2; training++) {
            float y[2][N], gx[2][N], gg[2][C], gb[2][C], rs[2][2 * C];
            for (int f = 0; f < 2; f++)
                bn_relu_run(ctx, f, training, xv, y[f], gx[f], gg[f], gb[f], rs[f]);
            assert_memory_equal(y[0], y[1], sizeof y[0]);
            assert_memory_equal(gx[0], gx[1], sizeof gx[0]);
            assert_memory_equal(gg[0], gg[1], sizeof gg[0]);
            assert_memory_equal(gb[0], gb[1], sizeof gb[0]);
            assert_memory_equal(rs[0], rs[1], sizeof rs[0]);
            int zeros = 0;
            for (int i = 0; i < N; i++)
                zeros += y[1][i] == 0.0f;
            assert_true(zeros > N / 5 && zeros < N); /* the gate is exercised */
            if (nan)
                assert_true(isnan(y[1][2 * C + 1]));
        }
    }
    gpuml_ctx_destroy(ctx);
}

/* relu(batch_norm) and the neighbour mean fused: the same values, running
 * statistics and gradients as the three ops composed, bit for bit, on a
 * graph with padding slots (an event smaller than k, an empty event). */
static void bn_agg_run(gpuml_ctx *ctx, int fused, int training, float *out, float *gx, float *gg, float *gb,
                       float *rs)
{
    enum { N = 33, K = 6, KE = 5, C = 5 };
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_tape_set_training(t, training);
    uint64_t s = 4242;
    param gamma = make_param(ctx, 1, (int64_t[]){C}, &s, 1.0), beta = make_param(ctx, 1, (int64_t[]){C}, &s, 0.5);
    float cv[N * 2], ev[N * KE * C], sd[N * C];
    for (int i = 0; i < N * 2; i++)
        cv[i] = (float)h_rand_normal(&s);
    for (int i = 0; i < N * KE * C; i++)
        ev[i] = (float)(1.5 * h_rand_normal(&s) + 0.2);
    for (int i = 0; i < N * C; i++)
        sd[i] = (float)h_rand_normal(&s);
    int64_t rsv[5] = {0, 3, 20, 20, N};
    gpuml_tensor *coords = h_tensor_f32(ctx, 2, (int64_t[]){N, 2}, cv);
    gpuml_tensor *edges = h_tensor_f32(ctx, 3, (int64_t[]){N, KE, C}, ev);
    gpuml_tensor *seed = h_tensor_f32(ctx, 2, (int64_t[]){N, C}, sd);
    gpuml_tensor *splits = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){5}, rsv);
    float rm0[C] = {0.1f, -0.2f, 0.3f, 0, 1}, rv0[C] = {1, 2, 0.5f, 1, 3};
    gpuml_tensor *rm = h_tensor_f32(ctx, 1, (int64_t[]){C}, rm0), *rv = h_tensor_f32(ctx, 1, (int64_t[]){C}, rv0);
    gpuml_var *vc, *ve, *d2, *o;
    gpuml_ad_graph *g;
    CHECK(gpuml_var_input(t, coords, 0, &vc));
    CHECK(gpuml_var_input(t, edges, 1, &ve));
    CHECK(gpuml_ad_knn(t, vc, splits, K, 0.0f, &g, &d2));
    gpuml_tensor *mask;
    CHECK(gpuml_tape_tensor(t, GPUML_U8, 2, (int64_t[]){N, KE}, &mask));
    CHECK(gpuml_edge_mask(ctx, g->idx, 1, mask));
    if (fused) {
        CHECK(gpuml_ad_batch_norm_relu_aggregate(t, GPUML_REDUCE_MEAN, ve, mask, gamma.var, beta.var, rm, rv, 0.1f,
                                                 1e-5f, &o));
    } else {
        CHECK(gpuml_ad_batch_norm_relu(t, ve, mask, gamma.var, beta.var, rm, rv, 0.1f, 1e-5f, &o));
        CHECK(gpuml_ad_neighbour_aggregate(t, GPUML_REDUCE_MEAN, o, g, 1, &o));
    }
    CHECK(gpuml_backward(t, o, seed));
    gpuml_tensor_copy_to_host(ctx, gpuml_var_value(o), out, N * C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, gpuml_var_grad(ve), gx, N * KE * C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, gamma.grad, gg, C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, beta.grad, gb, C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, rm, rs, C * sizeof(float));
    gpuml_tensor_copy_to_host(ctx, rv, rs + C, C * sizeof(float));
    free_param(&gamma);
    free_param(&beta);
    gpuml_tensor *ts[] = {coords, edges, seed, splits, rm, rv};
    for (int i = 0; i < 6; i++)
        gpuml_tensor_destroy(ts[i]);
    gpuml_tape_destroy(t);
}

static void test_batch_norm_relu_aggregate_fused(void **state)
{
    (void)state;
    enum { N = 33, KE = 5, C = 5 };
    gpuml_ctx *ctx = h_ctx(g_dev, 2);
    for (int training = 0; training < 2; training++) {
        float out[2][N * C], gx[2][N * KE * C], gg[2][C], gb[2][C], rs[2][2 * C];
        for (int f = 0; f < 2; f++)
            bn_agg_run(ctx, f, training, out[f], gx[f], gg[f], gb[f], rs[f]);
        assert_memory_equal(out[0], out[1], sizeof out[0]);
        assert_memory_equal(gx[0], gx[1], sizeof gx[0]);
        assert_memory_equal(gg[0], gg[1], sizeof gg[0]);
        assert_memory_equal(gb[0], gb[1], sizeof gb[0]);
        assert_memory_equal(rs[0], rs[1], sizeof rs[0]);
        int zero_rows = 0, nonzero = 0;
        for (int i = 0; i < N * KE; i++) {
            int z = 1;
            for (int c = 0; c < C; c++)
                z &= gx[1][i * C + c] == 0.0f;
            zero_rows += z;
        }
        for (int i = 0; i < N * C; i++)
            nonzero += out[1][i] != 0.0f;
        assert_true(zero_rows >= 3 * 3 && nonzero > N * C / 2); /* padding slots of the 3-point event, no gradient */
    }
    gpuml_ctx_destroy(ctx);
}

static void test_steady_state_allocates_nothing(void **state)
{
    (void)state;
    model m;
    model_init(&m);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(m.ctx, &t));
    gpuml_alloc_stats warm = {0}, now;
    for (int step = 0; step < 6; step++) {
        gpuml_tape_reset(t);
        CHECK(gpuml_backward(t, model_loss(&m, t), NULL));
        if (step == 2)
            gpuml_ctx_alloc_stats(m.ctx, 0, &warm);
    }
    gpuml_ctx_alloc_stats(m.ctx, 0, &now);
    assert_int_equal(now.num_system_allocs, warm.num_system_allocs);
    assert_true(gpuml_tape_arena_capacity(t) > 0);
    gpuml_tape_destroy(t);
    model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_of_a_var),
        cmocka_unit_test(test_model_gradients_vs_fd),
        cmocka_unit_test(test_param_accumulation_and_hooks),
        cmocka_unit_test(test_no_grad_and_errors),
        cmocka_unit_test(test_steady_state_allocates_nothing),
        cmocka_unit_test(test_batch_norm_relu_fused),
        cmocka_unit_test(test_batch_norm_relu_aggregate_fused),
    };
    int failed = 0;
    for (int b = 0; b < h_num_backends(); b++) { /* CPU, then CUDA where present */
        g_dev = h_backend(b);
        failed += cmocka_run_group_tests_name(b == 0 ? "autograd (cpu)" : "autograd (cuda)", tests, NULL, NULL);
    }
    return failed;
}
