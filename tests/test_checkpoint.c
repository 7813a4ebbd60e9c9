/* tests/test_checkpoint.c - model files (round trip, validation of bad
 * files) and checkpoints: 20 steps straight equal 10 steps, a checkpoint,
 * and 10 more steps in a NEW PROCESS (this binary re-executed), bitwise -
 * parameters and losses - with dropout, shuffled loader and AdamW. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CHECK(x)                                                                         \
    do {                                                                                 \
        gpuml_status s_ = (x);                                                           \
        if (s_ != GPUML_OK)                                                              \
            fail_msg("%s: %s: %s", #x, gpuml_status_string(s_), gpuml_last_error());    \
    } while (0)

static const char *k_cfg =
    "{\"inputs\": [{\"name\": \"x\", \"features\": 4}],"
    " \"nodes\": [{\"name\": \"l1\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 16},"
    "  {\"name\": \"n1\", \"op\": \"layernorm\", \"inputs\": [\"l1\"]},"
    "  {\"name\": \"a1\", \"op\": \"gelu\", \"inputs\": [\"n1\"]},"
    "  {\"name\": \"d1\", \"op\": \"dropout\", \"inputs\": [\"a1\"], \"p\": 0.2},"
    "  {\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"d1\"], \"reduce\": \"max\"},"
    "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"p\"], \"out\": 3}],"
    " \"outputs\": [\"cls\"]}";

static char g_dir[256];
static char g_self[512];

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", g_dir, name); }

static void make_dataset(const char *path)
{
    gpuml_dataset_writer *w;
    CHECK(gpuml_dataset_writer_create(path, &w));
    uint64_t s = 11;
    for (int e = 0; e < 60; e++) {
        int rows = 3 + (int)(h_rand_u64(&s) % 9);
        float x[16 * 4];
        int64_t label = e % 3;
        for (int i = 0; i < rows * 4; i++)
            x[i] = (float)(h_rand_normal(&s) + (i % 4 == 0 ? (double)label : 0.0));
        if (e == 0) {
            CHECK(gpuml_dataset_writer_add_field(w, "x", GPUML_F32, 1, (int64_t[]){4}, NULL, 0));
            CHECK(gpuml_dataset_writer_add_field(w, "event/label", GPUML_I64, 0, NULL, NULL, 0));
        }
        const void *fields[2] = {x, &label};
        CHECK(gpuml_dataset_writer_append(w, rows, fields));
    }
    CHECK(gpuml_dataset_writer_commit(w));
}

typedef struct {
    gpuml_ctx *ctx;
    gpuml_model *m;
    gpuml_optim *opt;
    gpuml_loader *ld;
    gpuml_tape *tape;
    int64_t epoch;
} trainer;

static void trainer_init(trainer *t)
{
    t->ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    CHECK(gpuml_model_create(t->ctx, k_cfg, &t->m));
    CHECK(gpuml_model_init_params(t->m, 42));
    gpuml_optim_config oc;
    gpuml_optim_config_init_defaults(&oc);
    oc.lr = 0.01f;
    oc.clip_norm = 5.0f;
    oc.schedule = GPUML_SCHED_COSINE;
    oc.warmup_steps = 3;
    oc.total_steps = 20;
    CHECK(gpuml_optim_create(t->ctx, &oc, gpuml_model_param_slab(t->m), gpuml_model_grad_slab(t->m), &t->opt));
    char ds[512];
    path_in(ds, sizeof ds, "data.h5");
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    const char *fields[] = {"x", "event/label"};
    lc.path = ds;
    lc.fields = fields;
    lc.num_fields = 2;
    lc.max_events = 8;
    lc.seed = 5;
    CHECK(gpuml_loader_create(t->ctx, &lc, &t->ld));
    CHECK(gpuml_tape_create(t->ctx, &t->tape));
    gpuml_ctx_set_seed(t->ctx, 1234); /* dropout */
    t->epoch = 0;
}

static void trainer_free(trainer *t)
{
    gpuml_tape_destroy(t->tape);
    gpuml_loader_destroy(t->ld);
    gpuml_optim_destroy(t->opt);
    gpuml_model_destroy(t->m);
    gpuml_ctx_destroy(t->ctx);
}

static float train_step(trainer *t)
{
    gpuml_batch *b = NULL;
    CHECK(gpuml_loader_next(t->ld, &b));
    if (!b) { /* end of epoch */
        t->epoch++;
        CHECK(gpuml_loader_next(t->ld, &b));
    }
    gpuml_tape_reset(t->tape);
    gpuml_var *out, *loss;
    const gpuml_tensor *ins[1] = {gpuml_batch_field(b, 0)};
    CHECK(gpuml_model_forward(t->m, t->tape, ins, gpuml_batch_row_splits(b), &out));
    CHECK(gpuml_ad_cross_entropy(t->tape, out, gpuml_batch_field(b, 1), NULL, &loss));
    CHECK(gpuml_model_zero_grad(t->m));
    CHECK(gpuml_backward(t->tape, loss, NULL));
    CHECK(gpuml_optim_step(t->opt));
    float l = *(float *)gpuml_tensor_data(gpuml_var_value(loss));
    gpuml_tape_reset(t->tape);
    gpuml_batch_destroy(b);
    return l;
}

static void save_ckpt(trainer *t, const char *path)
{
    gpuml_train_state ts;
    ts.step = gpuml_optim_num_steps(t->opt);
    ts.epoch = t->epoch;
    gpuml_ctx_get_rng_state(t->ctx, &ts.rng_seed, &ts.rng_counter);
    CHECK(gpuml_loader_get_position(t->ld, &ts.loader));
    CHECK(gpuml_checkpoint_save(path, t->m, t->opt, &ts));
}

static void load_ckpt(trainer *t, const char *path)
{
    gpuml_train_state ts;
    CHECK(gpuml_checkpoint_load(path, t->m, t->opt, &ts));
    gpuml_ctx_set_rng_state(t->ctx, ts.rng_seed, ts.rng_counter);
    CHECK(gpuml_loader_set_position(t->ld, &ts.loader));
    t->epoch = ts.epoch;
    assert_int_equal(ts.step, 10);
}

/* Child mode: resume from a checkpoint, run 10 steps, write losses and
 * parameters to a raw file. */
static int resume_child(const char *ckpt, const char *out)
{
    snprintf(g_dir, sizeof g_dir, "%s", ckpt); /* the data sits next to the checkpoint */
    char *slash = strrchr(g_dir, '/');
    if (slash)
        *slash = '\0';
    trainer t;
    trainer_init(&t);
    load_ckpt(&t, ckpt);
    float losses[10];
    for (int i = 0; i < 10; i++)
        losses[i] = train_step(&t);
    FILE *f = fopen(out, "wb");
    fwrite(losses, sizeof losses, 1, f);
    fwrite(gpuml_tensor_data(gpuml_model_param_slab(t.m)), gpuml_tensor_nbytes(gpuml_model_param_slab(t.m)), 1, f);
    fclose(f);
    trainer_free(&t);
    return 0;
}

static void test_resume_is_bit_exact(void **state)
{
    (void)state;
    char ds[512], ckpt[512], out[512];
    path_in(ds, sizeof ds, "data.h5");
    path_in(ckpt, sizeof ckpt, "ckpt.h5");
    path_in(out, sizeof out, "child.bin");
    make_dataset(ds);
    trainer t;
    trainer_init(&t);
    float straight[20];
    for (int i = 0; i < 20; i++)
        straight[i] = train_step(&t);
    size_t pbytes = gpuml_tensor_nbytes(gpuml_model_param_slab(t.m));
    float *final = malloc(pbytes);
    memcpy(final, gpuml_tensor_data(gpuml_model_param_slab(t.m)), pbytes);
    trainer_free(&t);

    trainer_init(&t);
    for (int i = 0; i < 10; i++)
        assert_true(train_step(&t) == straight[i]);
    save_ckpt(&t, ckpt);
    trainer_free(&t);

    pid_t pid = fork();
    if (pid == 0) {
        execl(g_self, g_self, "--resume-child", ckpt, out, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    FILE *f = fopen(out, "rb");
    assert_non_null(f);
    float resumed[10];
    float *params = malloc(pbytes);
    assert_int_equal(fread(resumed, sizeof resumed, 1, f), 1);
    assert_int_equal(fread(params, pbytes, 1, f), 1);
    fclose(f);
    for (int i = 0; i < 10; i++)
        if (resumed[i] != straight[10 + i])
            fail_msg("step %d: resumed loss %.9g != straight %.9g", 10 + i, resumed[i], straight[10 + i]);
    assert_memory_equal(params, final, pbytes);
    free(params);
    free(final);
}

static void test_model_file_round_trip_and_bad_files(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_model *m, *m2, *m3;
    CHECK(gpuml_model_create(ctx, k_cfg, &m));
    CHECK(gpuml_model_init_params(m, 9));
    char path[512], bad[512];
    path_in(path, sizeof path, "model.h5");
    CHECK(gpuml_model_save(m, path));
    CHECK(gpuml_model_load(ctx, path, &m2));
    size_t nb = gpuml_tensor_nbytes(gpuml_model_param_slab(m));
    assert_memory_equal(gpuml_tensor_data(gpuml_model_param_slab(m)), gpuml_tensor_data(gpuml_model_param_slab(m2)), nb);
    assert_string_equal(gpuml_model_config(m), gpuml_model_config(m2));
    /* load_weights into a fresh model of the same config */
    CHECK(gpuml_model_create(ctx, k_cfg, &m3));
    CHECK(gpuml_model_load_weights(m3, path));
    assert_memory_equal(gpuml_tensor_data(gpuml_model_param_slab(m)), gpuml_tensor_data(gpuml_model_param_slab(m3)), nb);
    gpuml_model_destroy(m3);
    /* another config is refused and the model is unchanged */
    const char *other = "{\"inputs\": [{\"name\": \"x\", \"features\": 4}], \"nodes\": [{\"name\": \"l1\", "
                        "\"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 2}], \"outputs\": [\"l1\"]}";
    CHECK(gpuml_model_create(ctx, other, &m3));
    float before = *(float *)gpuml_tensor_data(gpuml_model_param_slab(m3));
    assert_int_equal(gpuml_model_load_weights(m3, path), GPUML_ERR_FORMAT);
    assert_non_null(strstr(gpuml_last_error(), "another model"));
    assert_true(*(float *)gpuml_tensor_data(gpuml_model_param_slab(m3)) == before);
    gpuml_model_destroy(m3);

    /* a model file is not a checkpoint */
    assert_int_equal(gpuml_checkpoint_load(path, m2, NULL, NULL), GPUML_ERR_FORMAT);
    /* a dataset is not a model */
    path_in(bad, sizeof bad, "data.h5");
    make_dataset(bad);
    assert_int_equal(gpuml_model_load(ctx, bad, &m3), GPUML_ERR_FORMAT);
    assert_non_null(strstr(gpuml_last_error(), "not a gpuml model file"));
    /* broken variants written with the HDF5 layer directly */
    for (int variant = 0; variant < 5; variant++) {
        path_in(bad, sizeof bad, "bad.h5");
        gpuml_h5_writer *w;
        CHECK(gpuml_h5_writer_open(bad, &w));
        gpuml_h5_writer_set_attr_string(w, "/", "format", "gpuml-model");
        gpuml_h5_writer_set_attr_i64(w, "/", "format_version", variant == 0 ? 99 : 1);
        gpuml_h5_writer_set_attr_string(w, "/", "config", variant == 1 ? "{\"broken\": " : k_cfg);
        for (int i = 0; i < gpuml_model_num_params(m); i++) {
            const char *name;
            gpuml_tensor *v;
            gpuml_model_param(m, i, &name, &v, NULL, NULL);
            char p[256];
            snprintf(p, sizeof p, "/weights/%s", name);
            *strchr(p + 9, '.') = '/';
            if (variant == 2 && i == 0)
                continue; /* missing */
            if (variant == 3 && i == 0) {
                gpuml_tensor *wrong;
                gpuml_tensor_zeros(ctx, GPUML_F32, 1, (int64_t[]){7}, &wrong);
                gpuml_h5_writer_write(w, ctx, p, wrong); /* wrong shape */
                gpuml_tensor_destroy(wrong);
                continue;
            }
            gpuml_h5_writer_write(w, ctx, p, v);
        }
        if (variant == 4)
            gpuml_h5_writer_write(w, ctx, "/weights/extra/thing", gpuml_model_param_slab(m)); /* extra */
        CHECK(gpuml_h5_writer_commit(w));
        gpuml_model *mb = (gpuml_model *)1;
        gpuml_status st = gpuml_model_load(ctx, bad, &mb);
        if (st != GPUML_ERR_FORMAT)
            fail_msg("variant %d: %s (%s)", variant, gpuml_status_string(st), gpuml_last_error());
        assert_null(mb);
    }
    /* truncated file */
    path_in(bad, sizeof bad, "trunc.h5");
    FILE *src = fopen(path, "rb"), *dst = fopen(bad, "wb");
    char buf[1024];
    size_t got = fread(buf, 1, sizeof buf, src);
    fwrite(buf, 1, got / 2, dst);
    fclose(src);
    fclose(dst);
    gpuml_status st = gpuml_model_load(ctx, bad, &m3);
    assert_true(st == GPUML_ERR_FORMAT || st == GPUML_ERR_IO);
    gpuml_model_destroy(m);
    gpuml_model_destroy(m2);
    gpuml_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (argc == 4 && !strcmp(argv[1], "--resume-child"))
        return resume_child(argv[2], argv[3]);
    snprintf(g_dir, sizeof g_dir, "%s/gpuml_ckpt_XXXXXX", tmp);
    if (!mkdtemp(g_dir))
        return 1;
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    g_self[n > 0 ? n : 0] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_file_round_trip_and_bad_files),
        cmocka_unit_test(test_resume_is_bit_exact),
    };
    int rc = cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return rc;
}
