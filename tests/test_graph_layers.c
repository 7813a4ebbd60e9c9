/* tests/test_graph_layers.c - the graph layers against PyTorch Geometric:
 * GravNetConv, EdgeConv and DynamicEdgeConv with the weights, inputs,
 * outputs and gradients stored by tests/make_pyg_fixture.py in
 * tests/data/pyg_layers.h5 (outputs and all gradients within relative
 * 1e-4); and finite-difference checks of the variants PyG lacks (GravNet's
 * paper variant, the ParticleNet block). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#ifndef GPUML_TEST_DATA
#define GPUML_TEST_DATA "tests/data"
#endif

#define CHECK(x)                                                                         \
    do {                                                                                 \
        gpuml_status s_ = (x);                                                           \
        if (s_ != GPUML_OK)                                                              \
            fail_msg("%s: %s: %s", #x, gpuml_status_string(s_), gpuml_last_error());    \
    } while (0)

static gpuml_tensor *read_any(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *path, gpuml_dtype dt)
{
    gpuml_dtype fdt;
    int nd;
    int64_t shape[GPUML_MAX_DIMS];
    CHECK(gpuml_h5_reader_info(r, path, &fdt, &nd, shape));
    gpuml_tensor *t = NULL;
    CHECK(gpuml_h5_reader_read_new(r, ctx, path, dt, nd, shape, &t));
    return t;
}

static gpuml_tensor *read_f(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *group, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/%s/%s", group, name);
    return read_any(r, ctx, path, GPUML_F32);
}

/* the absolute floor of h_compare_scaled is float32 noise on O(1) sums:
 * some gradients are zero in exact arithmetic (GravNet's lin_s.bias: a shift
 * of all coordinates leaves every distance unchanged) */
static int compare(const char *what, const gpuml_tensor *got, const gpuml_tensor *want, double tol)
{
    return h_compare_scaled(what, got, want, tol, "PyG");
}

typedef struct {
    const char *group;  /* in the fixture */
    const char *config; /* one-node model named "l" */
    int n_inputs;
    const char *inputs[2]; /* fixture datasets of the model inputs */
    const char *grad_input; /* the input whose gradient PyG stored */
} layer_case;

static int run_case(const layer_case *c, gpuml_h5_reader *r, gpuml_ctx *ctx)
{
    int fails = 0;
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, c->config, &m));
    /* weights by name: fixture "<group>/weights/<p>" -> model "l.<p>" */
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *v;
        CHECK(gpuml_model_param(m, i, &name, &v, NULL, NULL));
        char path[256];
        snprintf(path, sizeof path, "/%s/weights/%s", c->group, name + 2);
        CHECK(gpuml_h5_reader_read(r, ctx, path, v));
    }
    gpuml_tensor *rs = read_any(r, ctx, "/row_splits", GPUML_I64);
    gpuml_tensor *ins[2] = {NULL, NULL};
    for (int i = 0; i < c->n_inputs; i++)
        ins[i] = read_f(r, ctx, c->group, c->inputs[i]);
    gpuml_tensor *want_out = read_f(r, ctx, c->group, "out"), *seed = read_f(r, ctx, c->group, "seed");
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    /* forward with the inputs as gradient-requiring leaves: run the layer
     * directly on vars so the input gradient is available */
    gpuml_var *out;
    CHECK(gpuml_model_zero_grad(m));
    const gpuml_tensor *cins[2] = {ins[0], ins[1]};
    CHECK(gpuml_model_forward(m, t, cins, rs, &out));
    fails += compare(c->group, gpuml_var_value(out), want_out, 1e-4);
    CHECK(gpuml_backward(t, out, seed));
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *g;
        CHECK(gpuml_model_param(m, i, &name, NULL, &g, NULL));
        char what[128], ds[128];
        snprintf(ds, sizeof ds, "grad/%s", name + 2);
        snprintf(what, sizeof what, "%s d/d %s", c->group, name);
        gpuml_tensor *want = read_f(r, ctx, c->group, ds);
        fails += compare(what, g, want, 1e-4);
        gpuml_tensor_destroy(want);
    }
    /* batch-norm running statistics after one training forward */
    for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
        const char *name;
        gpuml_tensor *v;
        CHECK(gpuml_model_buffer(m, i, &name, &v));
        char what[128], ds[128];
        snprintf(ds, sizeof ds, "buffers/%s", name + 2);
        snprintf(what, sizeof what, "%s %s", c->group, name);
        gpuml_tensor *want = read_f(r, ctx, c->group, ds);
        fails += compare(what, v, want, 1e-4);
        gpuml_tensor_destroy(want);
    }
    gpuml_tape_destroy(t);
    for (int i = 0; i < c->n_inputs; i++)
        gpuml_tensor_destroy(ins[i]);
    gpuml_tensor_destroy(rs);
    gpuml_tensor_destroy(want_out);
    gpuml_tensor_destroy(seed);
    gpuml_model_destroy(m);
    return fails;
}

/* The input gradient needs the input as a var: run the layer's graph ops on
 * the tape directly with the model's parameters. Done for GravNet, whose
 * input gradient flows through the kNN distances as well. */
static int gravnet_input_grad(gpuml_h5_reader *r, gpuml_ctx *ctx)
{
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 6}], \"nodes\": [{\"name\": \"l\", \"op\": "
                      "\"gravnet\", \"inputs\": [\"x\"], \"out\": 8, \"space\": 3, \"prop\": 5, \"k\": 6}], "
                      "\"outputs\": [\"l\"]}";
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *v;
        gpuml_model_param(m, i, &name, &v, NULL, NULL);
        char path[256];
        snprintf(path, sizeof path, "/gravnet/weights/%s", name + 2);
        CHECK(gpuml_h5_reader_read(r, ctx, path, v));
    }
    gpuml_tensor *rs = read_any(r, ctx, "/row_splits", GPUML_I64), *x = read_f(r, ctx, "gravnet", "x");
    gpuml_tensor *seed = read_f(r, ctx, "gravnet", "seed"), *want = read_f(r, ctx, "gravnet", "grad/x");
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_var *vx, *s, *h, *d2, *agg, *y, *out;
    gpuml_ad_graph *g;
    gpuml_var *p[7];
    for (int i = 0; i < 7; i++)
        gpuml_model_param(m, i, NULL, NULL, NULL, &p[i]);
    CHECK(gpuml_var_input(t, x, 1, &vx));
    CHECK(gpuml_ad_linear(t, vx, p[0], p[1], &s));
    CHECK(gpuml_ad_linear(t, vx, p[2], p[3], &h));
    CHECK(gpuml_ad_knn(t, s, rs, 6, 0.0f, &g, &d2));
    CHECK(gpuml_ad_gravnet_aggregate(t, h, g, d2, 10.0f, 0, &agg));
    CHECK(gpuml_ad_linear(t, vx, p[4], NULL, &y));
    CHECK(gpuml_ad_linear(t, agg, p[5], p[6], &agg));
    CHECK(gpuml_ad_binary(t, GPUML_BINARY_ADD, y, agg, &out));
    CHECK(gpuml_backward(t, out, seed));
    int fails = compare("gravnet d/d x", gpuml_var_grad(vx), want, 1e-4);
    gpuml_tape_destroy(t);
    gpuml_tensor *ts[] = {rs, x, seed, want};
    for (int i = 0; i < 4; i++)
        gpuml_tensor_destroy(ts[i]);
    gpuml_model_destroy(m);
    return fails;
}

static void test_match_pyg(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_h5_reader *r;
    CHECK(gpuml_h5_reader_open(GPUML_TEST_DATA "/pyg_layers.h5", &r));
    layer_case cases[] = {
        {"gravnet",
         "{\"inputs\": [{\"name\": \"x\", \"features\": 6}], \"nodes\": [{\"name\": \"l\", \"op\": \"gravnet\", "
         "\"inputs\": [\"x\"], \"out\": 8, \"space\": 3, \"prop\": 5, \"k\": 6}], \"outputs\": [\"l\"]}",
         1, {"x"}, "x"},
        {"edgeconv",
         "{\"inputs\": [{\"name\": \"p\", \"features\": 2}, {\"name\": \"x\", \"features\": 6}], \"nodes\": "
         "[{\"name\": \"l\", \"op\": \"edgeconv\", \"inputs\": [\"p\", \"x\"], \"k\": 5, \"widths\": [16, 12], "
         "\"aggr\": \"max\"}], \"outputs\": [\"l\"]}",
         2, {"points", "x"}, "x"},
        {"dynamic",
         "{\"inputs\": [{\"name\": \"x\", \"features\": 6}], \"nodes\": [{\"name\": \"l\", \"op\": "
         "\"dynamic_edgeconv\", \"inputs\": [\"x\"], \"k\": 4, \"widths\": [10], \"aggr\": \"mean\"}], "
         "\"outputs\": [\"l\"]}",
         1, {"x"}, "x"},
    };
    int fails = 0;
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fails += run_case(&cases[i], r, ctx);
    fails += gravnet_input_grad(r, ctx);
    gpuml_h5_reader_close(r);
    gpuml_ctx_destroy(ctx);
    assert_int_equal(fails, 0);
}

/* ReLU kinks make large steps cross into another linear piece: keep it small. */
#define FD_H 1e-3f

/* Finite differences through a whole layer, with k >= every event so the
 * neighbour sets cannot change under the perturbation. */
static void fd_layer(const char *cfg, int n_inputs, const int64_t *feats)
{
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    CHECK(gpuml_model_init_params(m, 3));
    int64_t rs[4] = {0, 4, 5, 11}, n = 11;
    gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){4}, rs), *ins[2];
    uint64_t s = 8;
    for (int i = 0; i < n_inputs; i++) {
        float v[11 * 8];
        for (int j = 0; j < n * feats[i]; j++)
            v[j] = (float)h_rand_normal(&s);
        ins[i] = h_tensor_f32(ctx, 2, (int64_t[]){n, feats[i]}, v);
    }
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_tensor *seed = NULL;
    float loss_of_seed = 0;
    (void)loss_of_seed;
    int bad = 0, checked = 0, skipped = 0;
    /* the loss: sum of out * fixed weights */
    gpuml_var *out;
    const gpuml_tensor *cins[2] = {ins[0], n_inputs > 1 ? ins[1] : NULL};
    CHECK(gpuml_model_forward(m, t, cins, trs, &out));
    int64_t on = gpuml_tensor_numel(gpuml_var_value(out));
    float *w = malloc((size_t)on * sizeof(float));
    for (int64_t i = 0; i < on; i++)
        w[i] = (float)h_rand_normal(&s);
    seed = h_tensor_f32(ctx, gpuml_tensor_ndim(gpuml_var_value(out)), gpuml_tensor_shape(gpuml_var_value(out)), w);
    CHECK(gpuml_model_zero_grad(m));
    CHECK(gpuml_backward(t, out, seed));
    gpuml_tensor *gslab = gpuml_model_grad_slab(m), *pslab = gpuml_model_param_slab(m);
    float *g = malloc(gpuml_tensor_nbytes(gslab));
    memcpy(g, gpuml_tensor_data(gslab), gpuml_tensor_nbytes(gslab));
    float *p = gpuml_tensor_data(pslab);
    /* buffers change each training forward: evaluate the loss in training
     * mode (batch statistics) but restore them around each evaluation */
    gpuml_tensor *bslab = gpuml_model_buffer_slab(m);
    size_t bbytes = bslab ? gpuml_tensor_nbytes(bslab) : 0;
    float *bsave = bbytes ? malloc(bbytes) : NULL;
    if (bbytes)
        memcpy(bsave, gpuml_tensor_data(bslab), bbytes);
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        gpuml_tensor *v;
        const char *name;
        gpuml_model_param(m, i, &name, &v, NULL, NULL);
        int64_t off = gpuml_model_param_offset(m, i), cnt = gpuml_tensor_numel(v);
        for (int64_t e = 0; e < cnt; e += (cnt > 12 ? cnt / 12 : 1)) {
            double l[3];
            float x0 = p[off + e];
            for (int sgn = 0; sgn < 3; sgn++) {
                p[off + e] = x0 + (sgn == 0 ? FD_H : sgn == 1 ? -FD_H : 0.0f);
                if (bbytes)
                    memcpy(gpuml_tensor_data(bslab), bsave, bbytes);
                gpuml_tape_reset(t);
                CHECK(gpuml_model_forward(m, t, cins, trs, &out));
                const float *o = gpuml_tensor_data(gpuml_var_value(out));
                double acc = 0;
                for (int64_t j = 0; j < on; j++)
                    acc += (double)o[j] * w[j];
                l[sgn] = acc;
            }
            p[off + e] = x0;
            double fd = (l[0] - l[1]) / (2.0 * FD_H);
            /* A ReLU kink inside [x - h, x + h] makes the one-sided slopes
             * disagree; the central difference is meaningless there. */
            double up = (l[0] - l[2]) / FD_H, down = (l[2] - l[1]) / FD_H;
            checked++;
            if (fabs(up - down) > 2e-2 * (fabs(up) + fabs(down)) + 1e-2) {
                skipped++;
                continue;
            }
            if (fabs(fd - g[off + e]) > 5e-3 + 2e-2 * fabs(fd)) {
                if (bad++ < 6)
                    printf("%s[%lld]: backward %.6g, finite difference %.6g\n", name, (long long)e, g[off + e], fd);
            }
        }
    }
    assert_true(skipped * 5 < checked); /* kinks are rare: most elements are checked */
    assert_int_equal(bad, 0);
    free(w), free(g), free(bsave);
    gpuml_tensor_destroy(seed);
    gpuml_tape_destroy(t);
    for (int i = 0; i < n_inputs; i++)
        gpuml_tensor_destroy(ins[i]);
    gpuml_tensor_destroy(trs);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

static void test_gravnet_paper_variant_fd(void **state)
{
    (void)state;
    fd_layer("{\"inputs\": [{\"name\": \"x\", \"features\": 5}], \"nodes\": [{\"name\": \"g\", \"op\": \"gravnet\", "
             "\"inputs\": [\"x\"], \"out\": 4, \"space\": 2, \"prop\": 3, \"k\": 8, \"exclude_self\": true, "
             "\"concat_input\": true}], \"outputs\": [\"g\"]}",
             1, (int64_t[]){5});
}

static void test_particlenet_block_fd(void **state)
{
    (void)state;
    if (getenv("FD_CFG")) { /* debugging aid: FD-check any two-input layer config */
        fd_layer(getenv("FD_CFG"), 2, (int64_t[]){2, 4});
        return;
    }
    fd_layer("{\"inputs\": [{\"name\": \"p\", \"features\": 2}, {\"name\": \"x\", \"features\": 4}], \"nodes\": "
             "[{\"name\": \"b\", \"op\": \"particlenet_block\", \"inputs\": [\"p\", \"x\"], \"k\": 7, "
             "\"widths\": [6, 5, 5]}], \"outputs\": [\"b\"]}",
             2, (int64_t[]){2, 4});
}

static void test_layer_config_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_model *m;
    assert_int_equal(gpuml_model_create(ctx,
                                        "{\"inputs\": [{\"name\": \"x\", \"features\": 5}], \"nodes\": [{\"name\": "
                                        "\"g\", \"op\": \"gravnet\", \"inputs\": [\"x\"], \"out\": 4, \"space\": 2, "
                                        "\"prop\": 3}], \"outputs\": [\"g\"]}",
                                        &m),
                     GPUML_ERR_FORMAT);
    assert_non_null(strstr(gpuml_last_error(), "'k' is required"));
    assert_int_equal(gpuml_model_create(ctx,
                                        "{\"inputs\": [{\"name\": \"x\", \"features\": 5}], \"nodes\": [{\"name\": "
                                        "\"e\", \"op\": \"dynamic_edgeconv\", \"inputs\": [\"x\"], \"k\": 4, "
                                        "\"widths\": []}], \"outputs\": [\"e\"]}",
                                        &m),
                     GPUML_ERR_FORMAT);
    assert_non_null(strstr(gpuml_last_error(), "'widths'"));
    gpuml_ctx_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_pyg),
        cmocka_unit_test(test_gravnet_paper_variant_fd),
        cmocka_unit_test(test_particlenet_block_fd),
        cmocka_unit_test(test_layer_config_errors),
    };
    return cmocka_run_group_tests_name("graph_layers", tests, NULL, NULL);
}
