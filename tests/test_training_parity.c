/* tests/test_training_parity.c - one training step of a small GravNet model
 * (object condensation) and of ParticleNet-Lite (cross-entropy) equals
 * PyTorch + PyTorch Geometric on the same weights and batch: the loss,
 * every parameter gradient, the batch-norm statistics and the parameters
 * after one AdamW step, within relative 1e-4. The reference numbers come
 * from tests/make_training_fixture.py (tests/data/training_step.h5). Runs
 * on every backend present (CUDA: a GPU, or the emulated CUDA build). */
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

static gpuml_tensor *read_any(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *path)
{
    gpuml_dtype dt;
    int nd;
    int64_t shape[GPUML_MAX_DIMS];
    CHECK(gpuml_h5_reader_info(r, path, &dt, &nd, shape));
    gpuml_tensor *t = NULL;
    CHECK(gpuml_h5_reader_read_new(r, ctx, path, dt, nd, shape, &t));
    return t;
}

/* The context of the backend under test: checks read its tensors through
 * host copies. */
static gpuml_ctx *g_ctx;

static gpuml_tensor *host(const gpuml_tensor *t)
{
    gpuml_tensor *h = h_host_copy(g_ctx, t);
    if (!h)
        fail_msg("copying a result to the host: %s", gpuml_last_error());
    return h;
}

static double max_abs(const gpuml_tensor *dev_t)
{
    gpuml_tensor *t = host(dev_t);
    const float *a = gpuml_tensor_data(t);
    double m = 0;
    for (int64_t i = 0; i < gpuml_tensor_numel(t); i++)
        m = fmax(m, fabs(a[i]));
    gpuml_tensor_destroy(t);
    return m;
}

/* Parameters whose gradient vanishes in exact arithmetic (a bias followed by
 * a batch norm, the bias of the cluster coordinates of the object
 * condensation loss, which sees only distances) have float32 noise for a
 * gradient, and Adam's first step scales any gradient to about lr: their
 * new values may differ by up to 2 lr. */
static int compare_tol(const char *what, const gpuml_tensor *dev_got, const gpuml_tensor *dev_want, double abs_tol)
{
    gpuml_tensor *got = host(dev_got), *want = host(dev_want);
    const float *a = gpuml_tensor_data(got), *b = gpuml_tensor_data(want);
    int bad = 0;
    for (int64_t i = 0; i < gpuml_tensor_numel(want); i++)
        if (!(fabs(a[i] - b[i]) <= abs_tol))
            if (bad++ < 4)
                printf("%s[%lld]: gpuml %.8g, PyTorch %.8g (noise-gradient parameter)\n", what, (long long)i, a[i],
                       b[i]);
    gpuml_tensor_destroy(got);
    gpuml_tensor_destroy(want);
    return bad ? 1 : 0;
}

static int compare(const char *what, const gpuml_tensor *dev_got, const gpuml_tensor *dev_want)
{
    gpuml_tensor *got = host(dev_got), *want = host(dev_want);
    int r = h_compare_scaled(what, got, want, 1e-4, "PyTorch");
    gpuml_tensor_destroy(got);
    gpuml_tensor_destroy(want);
    return r;
}

static int run_group(gpuml_h5_reader *r, gpuml_ctx *ctx, const char *group, gpuml_loss_kind loss)
{
    char path[256], *cfg = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "/%s", group);
    gpuml_h5_reader_attr_string(r, path, "config", NULL, 0, &len);
    cfg = malloc(len + 1);
    CHECK(gpuml_h5_reader_attr_string(r, path, "config", cfg, len + 1, NULL));
    double lr, wd;
    CHECK(gpuml_h5_reader_attr_f64(r, path, "lr", &lr));
    CHECK(gpuml_h5_reader_attr_f64(r, path, "weight_decay", &wd));
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    free(cfg);
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *v;
        gpuml_model_param(m, i, &name, &v, NULL, NULL);
        snprintf(path, sizeof path, "/%s/init/%s", group, name);
        CHECK(gpuml_h5_reader_read(r, ctx, path, v));
    }
    for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
        const char *name;
        gpuml_tensor *v;
        gpuml_model_buffer(m, i, &name, &v);
        snprintf(path, sizeof path, "/%s/init/%s", group, name);
        CHECK(gpuml_h5_reader_read(r, ctx, path, v));
    }
    int nin = gpuml_model_num_inputs(m);
    const gpuml_tensor *ins[4];
    gpuml_tensor *owned[4];
    for (int i = 0; i < nin; i++) {
        const char *name;
        gpuml_model_input_info(m, i, &name, NULL);
        snprintf(path, sizeof path, "/%s/inputs/%s", group, name);
        ins[i] = owned[i] = read_any(r, ctx, path);
    }
    snprintf(path, sizeof path, "/%s/row_splits", group);
    gpuml_tensor *rs = read_any(r, ctx, path);
    snprintf(path, sizeof path, "/%s/target", group);
    gpuml_tensor *target = read_any(r, ctx, path);

    gpuml_trainer_config tc;
    gpuml_trainer_config_init_defaults(&tc);
    tc.loss = loss;
    tc.num_inputs = nin;
    tc.optim.lr = (float)lr;
    tc.optim.weight_decay = (float)wd;
    if (loss == GPUML_LOSS_OBJECT_CONDENSATION) {
        int32_t mx = 0;
        gpuml_tensor *ht = host(target);
        const int32_t *t = gpuml_tensor_data(ht);
        for (int64_t i = 0; i < gpuml_tensor_numel(ht); i++)
            mx = t[i] > mx ? t[i] : mx;
        gpuml_tensor_destroy(ht);
        tc.oc.max_objects = mx + 1;
    }
    gpuml_trainer *tr;
    CHECK(gpuml_trainer_create(m, &tc, &tr));
    gpuml_step_stats st;
    CHECK(gpuml_trainer_step(tr, ins, rs, target, &st));

    int fails = 0;
    snprintf(path, sizeof path, "/%s/loss", group);
    gpuml_tensor *want_loss = read_any(r, ctx, path), *got_loss;
    int64_t one = 1;
    CHECK(gpuml_tensor_wrap(&st.loss, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 1, &one, NULL, NULL, &got_loss));
    char what[128];
    snprintf(what, sizeof what, "%s loss", group);
    fails += compare(what, got_loss, want_loss);
    gpuml_tensor_destroy(want_loss);
    gpuml_tensor_destroy(got_loss);
    if (loss == GPUML_LOSS_OBJECT_CONDENSATION) {
        snprintf(path, sizeof path, "/%s/components", group);
        gpuml_tensor *want = read_any(r, ctx, path), *got;
        int64_t three = 3;
        CHECK(gpuml_tensor_wrap(st.components, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 1, &three, NULL, NULL,
                                &got));
        snprintf(what, sizeof what, "%s loss components", group);
        fails += compare(what, got, want);
        gpuml_tensor_destroy(want);
        gpuml_tensor_destroy(got);
    }
    double grad_scale = max_abs(gpuml_model_grad_slab(m));
    int noise_params = 0;
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *v, *g;
        gpuml_model_param(m, i, &name, &v, &g, NULL);
        snprintf(path, sizeof path, "/%s/grad/%s", group, name);
        gpuml_tensor *want = read_any(r, ctx, path);
        snprintf(what, sizeof what, "%s d loss / d %s", group, name);
        fails += compare(what, g, want);
        bool noise = max_abs(want) < 1e-5 * grad_scale && max_abs(g) < 1e-5 * grad_scale;
        noise_params += noise;
        gpuml_tensor_destroy(want);
        snprintf(path, sizeof path, "/%s/after/%s", group, name);
        want = read_any(r, ctx, path);
        snprintf(what, sizeof what, "%s %s after AdamW", group, name);
        fails += noise ? compare_tol(what, v, want, 2.0 * lr + 1e-6) : compare(what, v, want);
        gpuml_tensor_destroy(want);
    }
    printf("%s: %d parameters, %d with a vanishing gradient\n", group, gpuml_model_num_params(m), noise_params);
    for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
        const char *name;
        gpuml_tensor *v;
        gpuml_model_buffer(m, i, &name, &v);
        snprintf(path, sizeof path, "/%s/after/%s", group, name);
        gpuml_tensor *want = read_any(r, ctx, path);
        snprintf(what, sizeof what, "%s %s", group, name);
        fails += compare(what, v, want);
        gpuml_tensor_destroy(want);
    }
    gpuml_trainer_destroy(tr);
    for (int i = 0; i < nin; i++)
        gpuml_tensor_destroy(owned[i]);
    gpuml_tensor_destroy(rs);
    gpuml_tensor_destroy(target);
    gpuml_model_destroy(m);
    return fails;
}

static void test_one_step_matches_pytorch(void **state)
{
    (void)state;
    int fails = 0;
    for (int b = 0; b < h_num_backends(); b++) {
        gpuml_ctx *ctx = g_ctx = h_ctx(h_backend(b), 2);
        printf("backend %s\n", b == 0 ? "cpu" : "cuda");
        gpuml_h5_reader *r;
        CHECK(gpuml_h5_reader_open(GPUML_TEST_DATA "/training_step.h5", &r));
        fails += run_group(r, ctx, "gravnet", GPUML_LOSS_OBJECT_CONDENSATION);
        fails += run_group(r, ctx, "particlenet", GPUML_LOSS_CROSS_ENTROPY);
        gpuml_h5_reader_close(r);
        gpuml_ctx_destroy(ctx);
    }
    assert_int_equal(fails, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_one_step_matches_pytorch)};
    return cmocka_run_group_tests_name("training_parity", tests, NULL, NULL);
}
