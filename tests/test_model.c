/* tests/test_model.c - models from JSON: validation with named errors,
 * slabs and parameter access, initialisation, forward against a plain C
 * reference, and a model that learns. */
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

static const char *k_model =
    "{\"inputs\": [{\"name\": \"hits\", \"features\": 3}],"
    " \"nodes\": ["
    "  {\"name\": \"d1\", \"op\": \"linear\", \"inputs\": [\"hits\"], \"out\": 5},"
    "  {\"name\": \"a1\", \"op\": \"relu\", \"inputs\": [\"d1\"]},"
    "  {\"name\": \"pool\", \"op\": \"global_pool\", \"inputs\": [\"a1\"], \"reduce\": \"max\"},"
    "  {\"name\": \"back\", \"op\": \"broadcast\", \"inputs\": [\"pool\"]},"
    "  {\"name\": \"cat\", \"op\": \"concat\", \"inputs\": [\"a1\", \"back\"]},"
    "  {\"name\": \"norm\", \"op\": \"layernorm\", \"inputs\": [\"cat\"]},"
    "  {\"name\": \"drop\", \"op\": \"dropout\", \"inputs\": [\"norm\"], \"p\": 0.1},"
    "  {\"name\": \"out\", \"op\": \"linear\", \"inputs\": [\"drop\"], \"out\": 2, \"bias\": false},"
    "  {\"name\": \"evt\", \"op\": \"global_pool\", \"inputs\": [\"out\"]}"
    " ],"
    " \"outputs\": [\"out\", \"evt\"]}";

static void test_build_and_access(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, k_model, &m));
    assert_int_equal(gpuml_model_num_inputs(m), 1);
    assert_int_equal(gpuml_model_num_outputs(m), 2);
    /* d1.weight [5,3], d1.bias [5], norm.weight [10], norm.bias [10], out.weight [2,10] */
    assert_int_equal(gpuml_model_num_params(m), 5);
    const char *name;
    gpuml_tensor *v, *g;
    gpuml_var *var;
    CHECK(gpuml_model_param(m, 4, &name, &v, &g, &var));
    assert_string_equal(name, "out.weight");
    assert_int_equal(gpuml_tensor_dim(v, 0), 2);
    assert_int_equal(gpuml_tensor_dim(v, 1), 10);
    assert_int_equal(gpuml_model_param_layer(m, 4), 7);
    for (int i = 0; i < 5; i++)
        assert_int_equal(gpuml_model_param_offset(m, i) % 16, 0); /* 64-byte aligned */
    assert_true(gpuml_model_param_count(m) >= 15 + 5 + 10 + 10 + 20);
    CHECK(gpuml_model_find_param(m, "norm.weight", &v, &g));
    const float *nw = gpuml_tensor_data(v);
    for (int i = 0; i < 10; i++)
        assert_true(nw[i] == 1.0f);
    assert_int_equal(gpuml_model_find_param(m, "nope.weight", &v, &g), GPUML_ERR_NOT_FOUND);
    /* default init: U(-1/sqrt(in), 1/sqrt(in)) */
    CHECK(gpuml_model_find_param(m, "d1.weight", &v, &g));
    const float *w = gpuml_tensor_data(v);
    float first = w[0];
    for (int i = 0; i < 15; i++)
        assert_true(fabsf(w[i]) <= 1.0f / sqrtf(3.0f));
    CHECK(gpuml_model_init_params(m, 7));
    assert_true(w[0] != first);
    CHECK(gpuml_model_init_params(m, 0));
    assert_true(w[0] == first); /* seeded: reproducible */
    int64_t feats;
    int per_event;
    CHECK(gpuml_model_output_info(m, 1, &name, &feats, &per_event));
    assert_string_equal(name, "evt");
    assert_int_equal(feats, 2);
    assert_int_equal(per_event, 1);

    char summary[4096];
    size_t need = gpuml_model_summary(m, summary, sizeof summary);
    assert_true(need < sizeof summary);
    assert_non_null(strstr(summary, "pool"));
    assert_non_null(strstr(summary, "[B, 5]"));
    assert_non_null(strstr(summary, "[N, 10]"));
    /* the normalised config has the defaults and rebuilds the same model */
    const char *cfg = gpuml_model_config(m);
    assert_non_null(strstr(cfg, "\"eps\""));
    gpuml_model *m2;
    CHECK(gpuml_model_create(ctx, cfg, &m2));
    assert_int_equal(gpuml_model_param_count(m2), gpuml_model_param_count(m));
    assert_memory_equal(gpuml_tensor_data(gpuml_model_param_slab(m2)), gpuml_tensor_data(gpuml_model_param_slab(m)),
                        (size_t)gpuml_model_param_count(m) * 4);
    gpuml_model_destroy(m2);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

static void expect_error(gpuml_ctx *ctx, const char *json, const char *part1, const char *part2)
{
    gpuml_model *m = (gpuml_model *)1;
    gpuml_status st = gpuml_model_create(ctx, json, &m);
    if (st != GPUML_ERR_FORMAT)
        fail_msg("expected GPUML_ERR_FORMAT for %s, got %s (%s)", json, gpuml_status_string(st), gpuml_last_error());
    assert_null(m);
    if (part1 && !strstr(gpuml_last_error(), part1))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), part1);
    if (part2 && !strstr(gpuml_last_error(), part2))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), part2);
}

#define IN3 "\"inputs\": [{\"name\": \"x\", \"features\": 3}]"

static void test_config_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    expect_error(ctx, "{not json", "not valid JSON", "line 1");
    expect_error(ctx, "[]", "JSON object", NULL);
    expect_error(ctx, "{" IN3 ", \"nodes\": [], \"outputs\": [\"x\"]}", "'nodes'", NULL);
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"convolve\", \"inputs\": [\"x\"]}], "
                      "\"outputs\": [\"a\"]}",
                 "node 'a'", "unknown op 'convolve'");
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"linear\", \"inputs\": [\"x\"]}], "
                      "\"outputs\": [\"a\"]}",
                 "node 'a' (linear)", "attribute 'out' is required");
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": -3}], "
                      "\"outputs\": [\"a\"]}",
                 "attribute 'out'", "integer");
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 2, "
                      "\"biass\": true}], \"outputs\": [\"a\"]}",
                 "node 'a'", "unknown attribute 'biass'");
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"relu\", \"inputs\": [\"y\"]}], "
                      "\"outputs\": [\"a\"]}",
                 "node 'a'", "('y') is not a model input");
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"relu\", \"inputs\": [\"b\"]},"
                      "{\"name\": \"b\", \"op\": \"relu\", \"inputs\": [\"a\"]}], \"outputs\": [\"b\"]}",
                 "node 'a'", "not defined before");
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"relu\", \"inputs\": [\"x\"]},"
                      "{\"name\": \"a\", \"op\": \"relu\", \"inputs\": [\"x\"]}], \"outputs\": [\"a\"]}",
                 "'a' is used twice", NULL);
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"x\"]},"
                      "{\"name\": \"c\", \"op\": \"concat\", \"inputs\": [\"x\", \"p\"]}], \"outputs\": [\"c\"]}",
                 "node 'c' (concat)", "broadcast");
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"x\"], "
                      "\"reduce\": \"median\"}], \"outputs\": [\"p\"]}",
                 "'median' is not one of", NULL);
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"relu\", \"inputs\": [\"x\"]}], "
                      "\"outputs\": [\"zz\"]}",
                 "outputs[0] ('zz')", NULL);
    expect_error(ctx, "{\"inputs\": [{\"name\": \"x\"}], \"nodes\": [], \"outputs\": []}", "'features'", NULL);
    expect_error(ctx, "{" IN3 ", \"nodes\": [{\"name\": \"a\", \"op\": \"relu\", \"inputs\": [\"x\"]}], "
                      "\"outputs\": [\"a\"], \"extra\": 1}",
                 "unknown top-level field 'extra'", NULL);
    gpuml_model *m;
    assert_int_equal(gpuml_model_create_from_file(ctx, "/nonexistent/model.json", &m), GPUML_ERR_IO);
    gpuml_ctx_destroy(ctx);
}

/* forward of a tiny model against a plain C computation */
static void forward_matches_reference_on(gpuml_device_type dev)
{
    gpuml_ctx *ctx = h_ctx(dev, 2);
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 2}],"
                      " \"nodes\": [{\"name\": \"l\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 3},"
                      "  {\"name\": \"t\", \"op\": \"tanh\", \"inputs\": [\"l\"]},"
                      "  {\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"t\"], \"reduce\": \"sum\"}],"
                      " \"outputs\": [\"p\", \"t\"]}";
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    float x[5 * 2] = {1, 2, -1, 0.5f, 0, 0, 3, -2, 0.25f, 1};
    int64_t rs[4] = {0, 2, 2, 5}; /* the middle event is empty */
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, (int64_t[]){5, 2}, x);
    gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){4}, rs);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_var *outs[2];
    const gpuml_tensor *ins[1] = {tx};
    CHECK(gpuml_model_forward(m, t, ins, trs, outs));
    gpuml_tensor *w, *b, *g;
    CHECK(gpuml_model_find_param(m, "l.weight", &w, &g));
    CHECK(gpuml_model_find_param(m, "l.bias", &b, &g));
    float *W = h_read(ctx, w), *B = h_read(ctx, b); /* through the context: any device */
    float *P = h_read(ctx, gpuml_var_value(outs[0])), *T = h_read(ctx, gpuml_var_value(outs[1]));
    double pool[3][3] = {{0}};
    for (int r = 0; r < 5; r++)
        for (int o = 0; o < 3; o++) {
            double h = tanh(B[o] + W[o * 2] * x[r * 2] + W[o * 2 + 1] * x[r * 2 + 1]);
            assert_float_equal(T[r * 3 + o], h, 1e-6);
            pool[r < 2 ? 0 : 2][o] += h;
        }
    for (int e = 0; e < 3; e++)
        for (int o = 0; o < 3; o++)
            assert_float_equal(P[e * 3 + o], pool[e][o], 1e-5);
    free(W), free(B), free(P), free(T);
    /* wrong inputs are errors naming the input */
    gpuml_tensor *bad = h_tensor_f32(ctx, 2, (int64_t[]){5, 3}, NULL);
    const gpuml_tensor *bins[1] = {bad};
    assert_int_equal(gpuml_model_forward(m, t, bins, trs, outs), GPUML_ERR_SHAPE);
    assert_non_null(strstr(gpuml_last_error(), "inputs[0] ('x')"));
    gpuml_tensor_destroy(bad);
    gpuml_tape_destroy(t);
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(trs);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

static void test_forward_matches_reference(void **state)
{
    (void)state;
    for (int b = 0; b < h_num_backends(); b++)
        forward_matches_reference_on(h_backend(b));
}

/* A per-event classifier learns to separate events by the mean of their
 * first feature: the loss must fall to a fraction of its start. */
static void model_learns_on(gpuml_device_type dev)
{
    gpuml_ctx *ctx = h_ctx(dev, 2);
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 4}],"
                      " \"nodes\": [{\"name\": \"l1\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 16},"
                      "  {\"name\": \"a1\", \"op\": \"elu\", \"inputs\": [\"l1\"]},"
                      "  {\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"a1\"]},"
                      "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"p\"], \"out\": 2}],"
                      " \"outputs\": [\"cls\"]}";
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    CHECK(gpuml_model_init_params(m, 3));
    enum { B = 32, PER = 6, NR = B * PER };
    float x[NR * 4];
    int64_t rs[B + 1], labels[B];
    uint64_t s = 5;
    for (int e = 0; e < B; e++) {
        labels[e] = e % 2;
        rs[e] = e * PER;
        for (int r = 0; r < PER; r++)
            for (int f = 0; f < 4; f++)
                x[(e * PER + r) * 4 + f] = (float)(h_rand_normal(&s) + (f == 0 ? (labels[e] ? 1.0 : -1.0) : 0.0));
    }
    rs[B] = NR;
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, (int64_t[]){NR, 4}, x);
    gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){B + 1}, rs);
    gpuml_tensor *tl = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){B}, labels);
    gpuml_optim_config oc;
    gpuml_optim_config_init_defaults(&oc);
    oc.lr = 0.01f;
    gpuml_optim *opt;
    CHECK(gpuml_optim_create(ctx, &oc, gpuml_model_param_slab(m), gpuml_model_grad_slab(m), &opt));
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    float first = 0, last = 0;
    const gpuml_tensor *ins[1] = {tx};
    for (int step = 0; step < 150; step++) {
        gpuml_tape_reset(t);
        gpuml_var *out, *loss;
        CHECK(gpuml_model_forward(m, t, ins, trs, &out));
        CHECK(gpuml_ad_cross_entropy(t, out, tl, NULL, &loss));
        CHECK(gpuml_model_zero_grad(m));
        CHECK(gpuml_backward(t, loss, NULL));
        CHECK(gpuml_optim_step(opt));
        float l;
        CHECK(gpuml_tensor_copy_to_host(ctx, gpuml_var_value(loss), &l, sizeof l));
        if (step == 0)
            first = l;
        last = l;
    }
    assert_true(last < 0.2f * first);
    gpuml_optim_destroy(opt);
    gpuml_tape_destroy(t);
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(trs);
    gpuml_tensor_destroy(tl);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

static void test_model_learns(void **state)
{
    (void)state;
    for (int b = 0; b < h_num_backends(); b++)
        model_learns_on(h_backend(b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_access),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_model_learns),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
