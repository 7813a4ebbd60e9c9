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
#include <time.h>

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

static float *buffer_data(gpuml_model *m, const char *want)
{
    for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
        const char *name;
        gpuml_tensor *v;
        CHECK(gpuml_model_buffer(m, i, &name, &v));
        if (!strcmp(name, want))
            return gpuml_tensor_data(v);
    }
    fail_msg("no buffer %s", want);
    return NULL;
}

/* standardize (weaver's preprocess.json) then softmax, against double. */
static void test_standardize_softmax(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 3}],"
                      " \"nodes\": [{\"name\": \"s\", \"op\": \"standardize\", \"inputs\": [\"x\"]},"
                      "  {\"name\": \"p\", \"op\": \"softmax\", \"inputs\": [\"s\"]}],"
                      " \"outputs\": [\"s\", \"p\"]}";
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    float *c = buffer_data(m, "s.center"), *sc = buffer_data(m, "s.scale"), *lo = buffer_data(m, "s.lower"),
          *hi = buffer_data(m, "s.upper");
    for (int j = 0; j < 3; j++) /* a fresh layer is the identity */
        assert_true(c[j] == 0.0f && sc[j] == 1.0f && isinf(lo[j]) && lo[j] < 0 && isinf(hi[j]) && hi[j] > 0);
    const float C[3] = {0.5f, -1.25f, 3.0f}, S[3] = {2.0f, 0.1f, 1.5f}, L[3] = {-1.0f, -INFINITY, -2.0f},
                H[3] = {1.0f, 0.3f, INFINITY};
    memcpy(c, C, sizeof C);
    memcpy(sc, S, sizeof S);
    memcpy(lo, L, sizeof L);
    memcpy(hi, H, sizeof H);
    float x[4 * 3] = {0.1f, 2.0f, 5.0f, -3.0f, -1.25f, -1e30f, 0.75f, 1e30f, 3.0f, -INFINITY, 0.0f, 4.0f};
    int64_t rs[3] = {0, 1, 4};
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, (int64_t[]){4, 3}, x);
    gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){3}, rs);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_tape_set_training(t, 0);
    gpuml_var *outs[2];
    const gpuml_tensor *ins[1] = {tx};
    CHECK(gpuml_model_forward(m, t, ins, trs, outs));
    const float *Y = gpuml_tensor_data(gpuml_var_value(outs[0])), *P = gpuml_tensor_data(gpuml_var_value(outs[1]));
    for (int r = 0; r < 4; r++) {
        double y[3], mx = -INFINITY, z = 0;
        for (int j = 0; j < 3; j++) {
            float v = (x[r * 3 + j] - C[j]) * S[j]; /* float32, in weaver's order */
            y[j] = fmin(fmax(v, L[j]), H[j]);
            assert_true(Y[r * 3 + j] == (float)y[j]);
            mx = fmax(mx, y[j]);
        }
        for (int j = 0; j < 3; j++)
            z += exp(y[j] - mx);
        for (int j = 0; j < 3; j++)
            assert_float_equal(P[r * 3 + j], exp(y[j] - mx) / z, 1e-6);
    }
    /* the buffers travel with the model file */
    const char *path = "test_model_standardize.h5";
    CHECK(gpuml_model_save(m, path));
    gpuml_model *m2;
    CHECK(gpuml_model_load(ctx, path, &m2));
    float *lo2 = buffer_data(m2, "s.lower");
    assert_true(lo2[0] == -1.0f && isinf(lo2[1]) && lo2[1] < 0);
    remove(path);
    gpuml_model_destroy(m2);
    gpuml_tape_destroy(t);
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(trs);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A chain of n relu nodes (n0 <- x, n1 <- n0, ...) and its output. */
static char *chain_config(int n)
{
    size_t cap = (size_t)n * 64 + 256, k = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    k += (size_t)snprintf(s + k, cap - k, "{\"inputs\": [{\"name\": \"x\", \"features\": 2}], \"nodes\": [");
    for (int i = 0; i < n; i++) {
        char in[16];
        snprintf(in, sizeof in, i ? "n%d" : "x", i - 1);
        k += (size_t)snprintf(s + k, cap - k, "%s{\"name\": \"n%d\", \"op\": \"relu\", \"inputs\": [\"%s\"]}",
                              i ? ", " : "", i, in);
    }
    snprintf(s + k, cap - k, "], \"outputs\": [\"n%d\"]}", n - 1);
    return s;
}

/* Building a model is linear in its node count: a 40k-node chain builds in
 * 0.5 s on the 2-core dev machine (21 s while name lookups scanned every
 * earlier node, 4x the time of 20k nodes). It fails when 40k nodes take
 * over 5 s AND over 8x the time of 10k nodes (linear: ~4x; quadratic:
 * ~16x), so a loaded machine or a sanitizer build (4 s under ASan with
 * the machine at load 25) does not fail it, and quadratic lookups do; over
 * 60 s fails regardless. Also checks that the chain is wired as a chain. */
static void test_build_is_linear_in_nodes(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    char *small = chain_config(10000);
    double t0 = seconds();
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, small, &m));
    double t10 = seconds() - t0;
    gpuml_model_destroy(m);
    free(small);
    const int n = 40000;
    char *cfg = chain_config(n);
    t0 = seconds();
    gpuml_status st = gpuml_model_create(ctx, cfg, &m);
    double dt = seconds() - t0;
    if (st != GPUML_OK)
        fail_msg("%s", gpuml_last_error());
    printf("model of 10000 nodes built in %.3f s, of %d nodes in %.3f s (ratio %.1f)\n", t10, n, dt, dt / t10);
    if ((dt > 5.0 && dt > 8.0 * t10) || dt > 60.0)
        fail_msg("building %d nodes took %.1f s, %.1fx the time of 10000: quadratic again?", n, dt, dt / t10);
    assert_int_equal(gpuml_model_num_outputs(m), 1);
    /* forward through the whole chain: relu^n(x) = relu(x) */
    float xv[4] = {-1.0f, 2.0f, 3.0f, -4.0f};
    gpuml_tensor *x = h_tensor_f32(ctx, 2, (int64_t[]){2, 2}, xv);
    gpuml_tensor *rs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){2}, (int64_t[]){0, 2});
    gpuml_var *out;
    const gpuml_tensor *ins[1] = {x};
    gpuml_tape *tape;
    CHECK(gpuml_tape_create(ctx, &tape));
    t0 = seconds();
    st = gpuml_model_forward(m, tape, ins, rs, &out);
    if (st != GPUML_OK)
        fail_msg("%s", gpuml_last_error());
    printf("forward through %d nodes in %.3f s\n", n, seconds() - t0);
    const float *o = gpuml_tensor_data(gpuml_var_value(out));
    assert_true(o[0] == 0.0f && o[1] == 2.0f && o[2] == 3.0f && o[3] == 0.0f);
    gpuml_tape_destroy(tape);
    gpuml_tensor_destroy(x);
    gpuml_tensor_destroy(rs);
    /* a duplicate name deep in the chain is still found */
    char *dup = strstr(cfg, "\"name\": \"n39998\"");
    assert_non_null(dup);
    memcpy(dup, "\"name\": \"n00007\"", 16); /* not "n7": no clash, but n39998 is gone */
    gpuml_model *m2;
    assert_int_equal(gpuml_model_create(ctx, cfg, &m2), GPUML_ERR_FORMAT); /* n39999 now has an unknown input */
    assert_non_null(strstr(gpuml_last_error(), "n39998"));
    memcpy(dup, "\"name\": \"n7\"    ", 16); /* "n7" again: used twice */
    assert_int_equal(gpuml_model_create(ctx, cfg, &m2), GPUML_ERR_FORMAT);
    assert_non_null(strstr(gpuml_last_error(), "'n7' is used twice"));
    free(cfg);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

/* particlenet_block with pad_neighbours against a double reference of
 * weaver's padded layout: events of 1 and 3 particles (k = 3: every point
 * has missing neighbour slots, which count as zero-feature points in the
 * mean over k) and of 6. */
static void test_particlenet_pad_neighbours(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    const char *cfg = "{\"inputs\": [{\"name\": \"pts\", \"features\": 2}, {\"name\": \"x\", \"features\": 2}],"
                      " \"nodes\": [{\"name\": \"pn\", \"op\": \"particlenet_block\", \"inputs\": [\"pts\", \"x\"],"
                      "   \"k\": 3, \"widths\": [4], \"pad_neighbours\": true}],"
                      " \"outputs\": [\"pn\"]}";
    enum { N = 10, F = 2, C = 4, K = 3 };
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    CHECK(gpuml_model_init_params(m, 5));
    float *rm = buffer_data(m, "pn.bn0.running_mean"), *rv = buffer_data(m, "pn.bn0.running_var");
    float *srm = buffer_data(m, "pn.sc_bn.running_mean"), *srv = buffer_data(m, "pn.sc_bn.running_var");
    for (int j = 0; j < C; j++) {
        rm[j] = 0.1f * (float)j - 0.2f;
        rv[j] = 0.5f + 0.3f * (float)j;
        srm[j] = -0.1f * (float)j;
        srv[j] = 1.5f - 0.2f * (float)j;
    }
    gpuml_tensor *v, *g;
    const float *W, *G, *B, *SW, *SG, *SB;
    CHECK(gpuml_model_find_param(m, "pn.mlp0.weight", &v, &g));
    W = gpuml_tensor_data(v);
    CHECK(gpuml_model_find_param(m, "pn.bn0.weight", &v, &g));
    ((float *)gpuml_tensor_data(v))[1] = 1.7f;
    G = gpuml_tensor_data(v);
    CHECK(gpuml_model_find_param(m, "pn.bn0.bias", &v, &g));
    ((float *)gpuml_tensor_data(v))[2] = 0.3f;
    B = gpuml_tensor_data(v);
    CHECK(gpuml_model_find_param(m, "pn.sc.weight", &v, &g));
    SW = gpuml_tensor_data(v);
    CHECK(gpuml_model_find_param(m, "pn.sc_bn.weight", &v, &g));
    SG = gpuml_tensor_data(v);
    CHECK(gpuml_model_find_param(m, "pn.sc_bn.bias", &v, &g));
    SB = gpuml_tensor_data(v);
    float pts[N * F], x[N * F];
    for (int i = 0; i < N * F; i++) {
        pts[i] = (float)((i * 37) % 17) * 0.13f - 1.0f + 0.001f * (float)i;
        x[i] = (float)((i * 11) % 7) * 0.4f - 1.2f;
    }
    int64_t rs[4] = {0, 1, 4, 10};
    gpuml_tensor *tp = h_tensor_f32(ctx, 2, (int64_t[]){N, F}, pts), *tx = h_tensor_f32(ctx, 2, (int64_t[]){N, F}, x);
    gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){4}, rs);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_tape_set_training(t, 0);
    gpuml_var *out;
    const gpuml_tensor *ins[2] = {tp, tx};
    CHECK(gpuml_model_forward(m, t, ins, trs, &out));
    const float *Y = gpuml_tensor_data(gpuml_var_value(out));
    for (int e = 0; e < 3; e++)
        for (int i = (int)rs[e]; i < rs[e + 1]; i++) {
            /* the K nearest others of the event, then zero-feature padding */
            int nb[K], nn = 0, used[N] = {0};
            for (int s = 0; s < K; s++) {
                int best = -1;
                double bd = INFINITY;
                for (int j = (int)rs[e]; j < rs[e + 1]; j++) {
                    double d = pow(pts[i * F] - pts[j * F], 2) + pow(pts[i * F + 1] - pts[j * F + 1], 2);
                    if (j != i && !used[j] && d < bd)
                        bd = d, best = j;
                }
                if (best >= 0)
                    used[best] = 1, nb[nn++] = best;
            }
            for (int c = 0; c < C; c++) {
                double sum = 0;
                for (int s = 0; s < K; s++) {
                    double a = 0;
                    for (int f = 0; f < F; f++) {
                        double xj = s < nn ? x[nb[s] * F + f] : 0.0;
                        a += W[c * 2 * F + f] * x[i * F + f] + W[c * 2 * F + F + f] * (xj - x[i * F + f]);
                    }
                    a = (a - rm[c]) / sqrt(rv[c] + 1e-5) * G[c] + B[c];
                    sum += a > 0 ? a : 0;
                }
                double sc = 0;
                for (int f = 0; f < F; f++)
                    sc += SW[c * F + f] * x[i * F + f];
                sc = (sc - srm[c]) / sqrt(srv[c] + 1e-5) * SG[c] + SB[c];
                double y = sc + sum / K;
                assert_float_equal(Y[i * C + c], y > 0 ? y : 0, 1e-5);
            }
        }
    /* a training tape is refused: the padded layout's statistics are not reproduced */
    gpuml_tape_reset(t);
    gpuml_tape_set_training(t, 1);
    assert_int_equal(gpuml_model_forward(m, t, ins, trs, &out), GPUML_ERR_UNSUPPORTED);
    assert_non_null(strstr(gpuml_last_error(), "pad_neighbours"));
    gpuml_tape_destroy(t);
    gpuml_tensor_destroy(tp);
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(trs);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

/* mul: [N, C] * [N, 1] scales rows (weaver's masks); other widths are refused. */
static void test_mul_layer(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 3}, {\"name\": \"m\", \"features\": 1}],"
                      " \"nodes\": [{\"name\": \"y\", \"op\": \"mul\", \"inputs\": [\"x\", \"m\"]}],"
                      " \"outputs\": [\"y\"]}";
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    float x[2 * 3] = {1, -2, 3, 4, 5, -6}, mk[2] = {0.0f, 2.0f};
    int64_t rs[2] = {0, 2};
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, (int64_t[]){2, 3}, x), *tm = h_tensor_f32(ctx, 2, (int64_t[]){2, 1}, mk);
    gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){2}, rs);
    gpuml_tape *t;
    CHECK(gpuml_tape_create(ctx, &t));
    gpuml_var *out;
    const gpuml_tensor *ins[2] = {tx, tm};
    CHECK(gpuml_model_forward(m, t, ins, trs, &out));
    const float *Y = gpuml_tensor_data(gpuml_var_value(out));
    for (int i = 0; i < 6; i++)
        assert_true(Y[i] == x[i] * mk[i / 3]);
    gpuml_tape_destroy(t);
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(tm);
    gpuml_tensor_destroy(trs);
    gpuml_model_destroy(m);
    expect_error(ctx,
                 "{\"inputs\": [{\"name\": \"x\", \"features\": 3}, {\"name\": \"m\", \"features\": 2}],"
                 " \"nodes\": [{\"name\": \"y\", \"op\": \"mul\", \"inputs\": [\"x\", \"m\"]}], \"outputs\": [\"y\"]}",
                 "node 'y'", "with 3 features or 1");
    gpuml_ctx_destroy(ctx);
}

/* truncate (weaver's var_length): events keep their first L rows; nodes
 * after it pool over the kept rows (the row_splits switch per node), on
 * every backend, against a double reference. Also the build errors. */
static void test_truncate_layer(void **state)
{
    (void)state;
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 2}],"
                      " \"nodes\": [{\"name\": \"all\", \"op\": \"global_pool\", \"inputs\": [\"x\"], \"reduce\": \"sum\"},"
                      "  {\"name\": \"t\", \"op\": \"truncate\", \"inputs\": [\"x\"], \"length\": 3},"
                      "  {\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"t\"], \"reduce\": \"sum\"},"
                      "  {\"name\": \"mx\", \"op\": \"global_pool\", \"inputs\": [\"t\"], \"reduce\": \"max\"},"
                      "  {\"name\": \"b\", \"op\": \"broadcast\", \"inputs\": [\"mx\"]},"
                      "  {\"name\": \"c\", \"op\": \"concat\", \"inputs\": [\"t\", \"b\"]},"
                      "  {\"name\": \"q\", \"op\": \"global_pool\", \"inputs\": [\"c\"], \"reduce\": \"mean\"},"
                      "  {\"name\": \"all2\", \"op\": \"global_pool\", \"inputs\": [\"x\"], \"reduce\": \"mean\"}],"
                      " \"outputs\": [\"all\", \"p\", \"q\", \"all2\"]}";
    enum { B = 6, L = 3 };
    const int64_t sizes[B] = {0, 1, 3, 5, 2, 7};
    int64_t rs[B + 1] = {0};
    for (int e = 0; e < B; e++)
        rs[e + 1] = rs[e] + sizes[e];
    int64_t n = rs[B];
    float x[18 * 2];
    uint64_t seed = 5;
    for (int64_t i = 0; i < n * 2; i++)
        x[i] = (float)h_rand_uniform(&seed, -2, 2);
    for (int bk = 0; bk < h_num_backends(); bk++) {
        gpuml_ctx *ctx = h_ctx(h_backend(bk), 2);
        gpuml_model *m;
        CHECK(gpuml_model_create(ctx, cfg, &m));
        gpuml_tensor *tx = h_tensor_f32(ctx, 2, (int64_t[]){n, 2}, x);
        gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){B + 1}, rs);
        gpuml_tape *t;
        CHECK(gpuml_tape_create(ctx, &t));
        gpuml_var *outs[4];
        const gpuml_tensor *ins[1] = {tx};
        CHECK(gpuml_model_forward(m, t, ins, trs, outs));
        float *all = h_read(ctx, gpuml_var_value(outs[0])), *p = h_read(ctx, gpuml_var_value(outs[1]));
        float *q = h_read(ctx, gpuml_var_value(outs[2])), *all2 = h_read(ctx, gpuml_var_value(outs[3]));
        for (int e = 0; e < B; e++) {
            int64_t kept = sizes[e] < L ? sizes[e] : L;
            for (int c = 0; c < 2; c++) {
                double sa = 0, sp = 0, mx = -INFINITY;
                for (int64_t r = rs[e]; r < rs[e + 1]; r++) {
                    sa += x[r * 2 + c];
                    if (r - rs[e] < L)
                        sp += x[r * 2 + c], mx = fmax(mx, x[r * 2 + c]);
                }
                assert_float_equal(all[e * 2 + c], sa, 1e-5);
                assert_float_equal(all2[e * 2 + c], sizes[e] ? sa / (double)sizes[e] : 0.0, 1e-5);
                assert_float_equal(p[e * 2 + c], sp, 1e-5);
                assert_float_equal(q[e * 4 + c], kept ? sp / (double)kept : 0.0, 1e-5);
                assert_float_equal(q[e * 4 + 2 + c], kept ? mx : 0.0, 1e-5);
            }
        }
        free(all), free(p), free(q), free(all2);
        gpuml_tape_destroy(t);
        gpuml_tensor_destroy(tx);
        gpuml_tensor_destroy(trs);
        gpuml_model_destroy(m);
        gpuml_ctx_destroy(ctx);
    }
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
#define TRUNC_CFG(nodes, outs) \
    "{\"inputs\": [{\"name\": \"x\", \"features\": 2}], \"nodes\": [" nodes "], \"outputs\": [" outs "]}"
    expect_error(ctx,
                 TRUNC_CFG("{\"name\": \"t\", \"op\": \"truncate\", \"inputs\": [\"x\"], \"length\": 3},"
                           "{\"name\": \"c\", \"op\": \"concat\", \"inputs\": [\"t\", \"x\"]},"
                           "{\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"c\"]}",
                           "\"p\""),
                 "node 'c'", "mix rows before and after a truncate");
    expect_error(ctx,
                 TRUNC_CFG("{\"name\": \"t\", \"op\": \"truncate\", \"inputs\": [\"x\"], \"length\": 3},"
                           "{\"name\": \"u\", \"op\": \"truncate\", \"inputs\": [\"x\"], \"length\": 4},"
                           "{\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"u\"]}",
                           "\"p\""),
                 "node 'u'", "differs from an earlier truncate");
    expect_error(ctx, TRUNC_CFG("{\"name\": \"t\", \"op\": \"truncate\", \"inputs\": [\"x\"], \"length\": 3}", "\"t\""),
                 "outputs[0]", "per row after a truncate");
    expect_error(ctx, TRUNC_CFG("{\"name\": \"t\", \"op\": \"truncate\", \"inputs\": [\"x\"]}", "\"t\""), "node 't'",
                 "length");
#undef TRUNC_CFG
    gpuml_ctx_destroy(ctx);
}

/* standardize's nan_to_zero: NaN after the clipping becomes 0 (weaver);
 * +-inf are clipped to the bounds first; without it NaN stays NaN. On
 * every backend. */
static void test_standardize_nan_to_zero(void **state)
{
    (void)state;
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 2}],"
                      " \"nodes\": [{\"name\": \"s\", \"op\": \"standardize\", \"inputs\": [\"x\"], \"nan_to_zero\": true},"
                      "  {\"name\": \"r\", \"op\": \"standardize\", \"inputs\": [\"x\"]}],"
                      " \"outputs\": [\"s\", \"r\"]}";
    float x[4 * 2] = {NAN, 1.0f, INFINITY, -INFINITY, 0.5f, NAN, -3.0f, 2.0f};
    int64_t rs[3] = {0, 1, 4};
    for (int bk = 0; bk < h_num_backends(); bk++) {
        gpuml_ctx *ctx = h_ctx(h_backend(bk), 2);
        gpuml_model *m;
        CHECK(gpuml_model_create(ctx, cfg, &m));
        const float C[2] = {0.25f, -1.0f}, S[2] = {2.0f, 0.5f}, LO[2] = {-5.0f, -1.0f}, HI[2] = {5.0f, 1.0f};
        for (int layer = 0; layer < 2; layer++) {
            const char *pre = layer ? "r." : "s.";
            const char *names[4] = {"center", "scale", "lower", "upper"};
            const float *vals[4] = {C, S, LO, HI};
            for (int k = 0; k < 4; k++) {
                char nm[32];
                snprintf(nm, sizeof nm, "%s%s", pre, names[k]);
                for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
                    const char *bn;
                    gpuml_tensor *bv;
                    CHECK(gpuml_model_buffer(m, i, &bn, &bv));
                    if (!strcmp(bn, nm))
                        CHECK(gpuml_tensor_copy_from_host(ctx, bv, vals[k], sizeof C));
                }
            }
        }
        gpuml_tensor *tx = h_tensor_f32(ctx, 2, (int64_t[]){4, 2}, x);
        gpuml_tensor *trs = h_tensor(ctx, GPUML_I64, 1, (int64_t[]){3}, rs);
        gpuml_tape *t;
        CHECK(gpuml_tape_create(ctx, &t));
        gpuml_tape_set_training(t, 0);
        gpuml_var *outs[2];
        const gpuml_tensor *ins[1] = {tx};
        CHECK(gpuml_model_forward(m, t, ins, trs, outs));
        float *Y = h_read(ctx, gpuml_var_value(outs[0])), *R = h_read(ctx, gpuml_var_value(outs[1]));
        for (int i = 0; i < 8; i++) {
            int c = i % 2;
            float v = (x[i] - C[c]) * S[c];
            double want = isnan(v) ? NAN : fmin(fmax(v, LO[c]), HI[c]);
            assert_true(isnan(x[i]) ? Y[i] == 0.0f && isnan(R[i]) : Y[i] == (float)want && R[i] == (float)want);
        }
        free(Y), free(R);
        gpuml_tape_destroy(t);
        gpuml_tensor_destroy(tx);
        gpuml_tensor_destroy(trs);
        gpuml_model_destroy(m);
        gpuml_ctx_destroy(ctx);
    }
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
        cmocka_unit_test(test_standardize_softmax),
        cmocka_unit_test(test_particlenet_pad_neighbours),
        cmocka_unit_test(test_mul_layer),
        cmocka_unit_test(test_truncate_layer),
        cmocka_unit_test(test_standardize_nan_to_zero),
        cmocka_unit_test(test_model_learns),
        cmocka_unit_test(test_build_is_linear_in_nodes),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
