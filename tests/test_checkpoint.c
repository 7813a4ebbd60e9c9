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
#include "io_util.h"

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


/* ---- file layouts, checksums and hostile checkpoints -------------------------- */

/* A model with parameters and batch-norm buffers. */
static const char *k_bn_cfg =
    "{\"inputs\": [{\"name\": \"x\", \"features\": 4}],"
    " \"nodes\": [{\"name\": \"l1\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 6},"
    "  {\"name\": \"bn\", \"op\": \"batchnorm\", \"inputs\": [\"l1\"]},"
    "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"bn\"], \"out\": 3}],"
    " \"outputs\": [\"cls\"]}";

typedef struct {
    int warns;
    char last[1024];
} log_sink;

static void sink_log(void *user, gpuml_log_level level, const char *msg)
{
    log_sink *s = user;
    if (level == GPUML_LOG_WARN) {
        s->warns++;
        snprintf(s->last, sizeof s->last, "%s", msg);
    }
}

static gpuml_ctx *ctx_with(log_sink *sink, int require)
{
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.num_threads = 1;
    cc.log_fn = sink_log;
    cc.log_user = sink;
    cc.require_checksum = require;
    gpuml_ctx *ctx;
    CHECK(gpuml_ctx_create(&cc, &ctx));
    return ctx;
}

/* Layout 1 (one dataset per tensor), as gpuml wrote model files before. */
static void write_v1(const char *path, const gpuml_model *m)
{
    gpuml_h5_writer *w;
    CHECK(gpuml_h5_writer_open(path, &w));
    CHECK(gpuml_h5_writer_set_attr_string(w, "/", "format", "gpuml-model"));
    CHECK(gpuml_h5_writer_set_attr_i64(w, "/", "format_version", 1));
    CHECK(gpuml_h5_writer_set_attr_string(w, "/", "config", gpuml_model_config(m)));
    char p[256];
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *v;
        gpuml_model_param(m, i, &name, &v, NULL, NULL);
        snprintf(p, sizeof p, "/weights/%s", name);
        *strchr(p + 9, '.') = '/';
        CHECK(gpuml_h5_writer_write(w, NULL, p, v));
    }
    for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
        const char *name;
        gpuml_tensor *v;
        gpuml_model_buffer(m, i, &name, &v);
        snprintf(p, sizeof p, "/buffers/%s", name);
        *strchr(p + 9, '.') = '/';
        CHECK(gpuml_h5_writer_write(w, NULL, p, v));
    }
    CHECK(gpuml_h5_writer_commit(w));
}

/* Each buffer entry (not the slab's alignment padding) set to base + i. */
static void fill_buffers(gpuml_model *m, float base)
{
    for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
        gpuml_tensor *v;
        gpuml_model_buffer(m, i, NULL, &v);
        float *b = gpuml_tensor_data(v);
        for (int64_t j = 0; j < gpuml_tensor_numel(v); j++)
            b[j] = base + (float)(i * 100 + j);
    }
}

static void expect_same_model(const gpuml_model *a, const gpuml_model *b)
{
    assert_memory_equal(gpuml_tensor_data(gpuml_model_param_slab(a)), gpuml_tensor_data(gpuml_model_param_slab(b)),
                        gpuml_tensor_nbytes(gpuml_model_param_slab(a)));
    assert_int_equal(gpuml_model_buffer_slab(a) != NULL, gpuml_model_buffer_slab(b) != NULL);
    if (gpuml_model_buffer_slab(a))
        assert_memory_equal(gpuml_tensor_data(gpuml_model_buffer_slab(a)),
                            gpuml_tensor_data(gpuml_model_buffer_slab(b)), gpuml_tensor_nbytes(gpuml_model_buffer_slab(a)));
}

/* Files of the old layout still load; files without a checksum load with a
 * WARN, or are refused when the context requires one. */
static void test_old_layout_and_unverified_files(void **state)
{
    (void)state;
    log_sink sink = {0}, strict_sink = {0};
    gpuml_ctx *ctx = ctx_with(&sink, 0), *strict = ctx_with(&strict_sink, 1);
    gpuml_model *m, *m2;
    CHECK(gpuml_model_create(ctx, k_bn_cfg, &m));
    CHECK(gpuml_model_init_params(m, 3));
    fill_buffers(m, 0.5f);
    char v1[512], v2[512];
    path_in(v1, sizeof v1, "v1.h5");
    path_in(v2, sizeof v2, "v2.h5");
    write_v1(v1, m);
    CHECK(gpuml_model_load(ctx, v1, &m2));
    expect_same_model(m, m2);
    gpuml_model_destroy(m2);
    assert_int_equal(sink.warns, 0); /* written (and checksummed) by gpuml */
    /* the current layout: a handful of objects, names matched by name */
    CHECK(gpuml_model_save(m, v2));
    gpuml_h5_reader *r;
    CHECK(gpuml_h5_reader_open(v2, &r));
    gpuml_strings ls = {0};
    CHECK(gpuml_h5_reader_list(r, "/weights", &ls));
    assert_int_equal(ls.count, 3);
    assert_string_equal(ls.items[0], "index");
    assert_string_equal(ls.items[1], "names");
    assert_string_equal(ls.items[2], "values");
    gpuml_strings_free(&ls);
    CHECK(gpuml_h5_reader_list(r, "/", &ls));
    assert_int_equal(ls.count, 2); /* buffers, weights */
    gpuml_strings_free(&ls);
    gpuml_h5_reader_close(r);
    /* old files carry no checksum: read with a WARN naming the file */
    io_strip_checksum(v1);
    CHECK(gpuml_model_load(ctx, v1, &m2));
    expect_same_model(m, m2);
    assert_int_equal(sink.warns, 1);
    assert_non_null(strstr(sink.last, "v1.h5"));
    assert_non_null(strstr(sink.last, "no gpuml checksum"));
    CHECK(gpuml_model_load_weights(m2, v1));
    assert_int_equal(sink.warns, 2);
    /* ... and refused when verification is required */
    gpuml_model *ms = (gpuml_model *)1;
    expect_st(gpuml_model_load(strict, v1, &ms), GPUML_ERR_FORMAT, "require_checksum", "v1.h5");
    assert_null(ms);
    CHECK(gpuml_model_load(strict, v2, &ms)); /* a verified file is fine */
    fill_buffers(ms, 9.0f);
    expect_st(gpuml_model_load_weights(ms, v1), GPUML_ERR_FORMAT, "require_checksum", NULL);
    assert_true(*(float *)gpuml_tensor_data(gpuml_model_buffer_slab(ms)) == 9.0f); /* unchanged */
    char ck[512];
    path_in(ck, sizeof ck, "plain_ckpt.h5");
    CHECK(gpuml_checkpoint_save(ck, m, NULL, NULL));
    CHECK(gpuml_checkpoint_load(ck, ms, NULL, NULL));
    io_strip_checksum(ck);
    expect_st(gpuml_checkpoint_load(ck, ms, NULL, NULL), GPUML_ERR_FORMAT, "require_checksum", "plain_ckpt.h5");
    assert_int_equal(strict_sink.warns, 0);
    /* the engine: require_checksum in its config */
    gpuml_engine_config ec;
    gpuml_engine_config_init_defaults(&ec);
    ec.warmup = 0;
    ec.log_fn = sink_log;
    ec.log_user = &sink;
    gpuml_engine *e = NULL;
    CHECK(gpuml_engine_create(v2, &ec, &e)); /* checksummed: starts with the block, still sniffed as HDF5 */
    gpuml_engine_destroy(e);
    int before = sink.warns;
    CHECK(gpuml_engine_create(v1, &ec, &e));
    gpuml_engine_destroy(e);
    assert_int_equal(sink.warns, before + 1);
    ec.require_checksum = 1;
    expect_st(gpuml_engine_create(v1, &ec, &e), GPUML_ERR_FORMAT, "require_checksum", NULL);
    assert_null(e);
    gpuml_model_destroy(ms);
    gpuml_model_destroy(m2);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(strict);
    gpuml_ctx_destroy(ctx);
}

/* One byte changed anywhere in a model file or a checkpoint: every reader
 * says FORMAT, names the file and changes nothing. */
static void test_corrupted_files_are_format_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_model *m, *m2;
    CHECK(gpuml_model_create(ctx, k_bn_cfg, &m));
    CHECK(gpuml_model_init_params(m, 3));
    CHECK(gpuml_model_create(ctx, k_bn_cfg, &m2));
    CHECK(gpuml_model_init_params(m2, 4));
    char mp[512], cp[512];
    path_in(mp, sizeof mp, "flip_model.h5");
    path_in(cp, sizeof cp, "flip_ckpt.h5");
    CHECK(gpuml_model_save(m, mp));
    CHECK(gpuml_checkpoint_save(cp, m, NULL, NULL));
    size_t nb = gpuml_tensor_nbytes(gpuml_model_param_slab(m2));
    float *before = malloc(nb);
    memcpy(before, gpuml_tensor_data(gpuml_model_param_slab(m2)), nb);
    const char *files[2] = {mp, cp};
    for (int fi = 0; fi < 2; fi++) {
        FILE *f = fopen(files[fi], "r+b");
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        long at = size - 700; /* in HDF5's metadata near the end */
        fseek(f, at, SEEK_SET);
        int c = fgetc(f);
        fseek(f, at, SEEK_SET);
        fputc(c ^ 0x40, f);
        fclose(f);
        gpuml_model *out = (gpuml_model *)1;
        const char *base = strrchr(files[fi], '/') + 1;
        expect_st(gpuml_model_load(ctx, files[fi], &out), GPUML_ERR_FORMAT, base, "checksum");
        assert_null(out);
        expect_st(gpuml_model_load_weights(m2, files[fi]), GPUML_ERR_FORMAT, base, "checksum");
        expect_st(gpuml_checkpoint_load(files[fi], m2, NULL, NULL), GPUML_ERR_FORMAT, base, "checksum");
        gpuml_engine_config ec;
        gpuml_engine_config_init_defaults(&ec);
        gpuml_engine *e = (gpuml_engine *)1;
        expect_st(gpuml_engine_create(files[fi], &ec, &e), GPUML_ERR_FORMAT, base, "checksum");
        assert_null(e);
        assert_memory_equal(gpuml_tensor_data(gpuml_model_param_slab(m2)), before, nb);
    }
    free(before);
    gpuml_model_destroy(m);
    gpuml_model_destroy(m2);
    gpuml_ctx_destroy(ctx);
}

/* Hand-made layout-2 weights of m (written by the test with the HDF5
 * layer, so the file's checksum is valid): names and index rows as given. */
static void write_v2(const char *path, gpuml_model *m, const char *names, const int64_t *index, int n)
{
    gpuml_ctx *ctx = gpuml_model_ctx(m);
    gpuml_h5_writer *w;
    CHECK(gpuml_h5_writer_open(path, &w));
    CHECK(gpuml_h5_writer_set_attr_string(w, "/", "format", "gpuml-model"));
    CHECK(gpuml_h5_writer_set_attr_i64(w, "/", "format_version", 2));
    CHECK(gpuml_h5_writer_set_attr_string(w, "/", "config", gpuml_model_config(m)));
    gpuml_tensor *t;
    t = h_tensor(ctx, GPUML_F32, 1, (int64_t[]){gpuml_model_param_count(m)}, gpuml_tensor_data(gpuml_model_param_slab(m)));
    CHECK(gpuml_h5_writer_write(w, NULL, "/weights/values", t));
    gpuml_tensor_destroy(t);
    t = h_tensor(ctx, GPUML_I64, 2, (int64_t[]){n, 10}, index);
    CHECK(gpuml_h5_writer_write(w, NULL, "/weights/index", t));
    gpuml_tensor_destroy(t);
    t = h_tensor(ctx, GPUML_U8, 1, (int64_t[]){(int64_t)strlen(names)}, names);
    CHECK(gpuml_h5_writer_write(w, NULL, "/weights/names", t));
    gpuml_tensor_destroy(t);
    CHECK(gpuml_h5_writer_commit(w));
}

/* Layout 2 is matched by name; every bad index is FORMAT. */
static void test_slab_index_validated(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    /* two linears: l1.weight [5,4], l1.bias [5], l2.weight [5,5], l2.bias [5];
     * the slab is aligned to 16 floats: offsets 0, 32, 48, 80 */
    const char *cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 4}], \"nodes\": ["
                      "{\"name\": \"l1\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 5},"
                      "{\"name\": \"l2\", \"op\": \"linear\", \"inputs\": [\"l1\"], \"out\": 5}], \"outputs\": [\"l2\"]}";
    gpuml_model *m, *m2;
    CHECK(gpuml_model_create(ctx, cfg, &m));
    CHECK(gpuml_model_init_params(m, 1));
    CHECK(gpuml_model_create(ctx, cfg, &m2));
    assert_int_equal(gpuml_model_param_count(m), 96);
    char p[512];
    path_in(p, sizeof p, "idx.h5");
    /* rows point into the aligned slab written as it is (values [96]):
     * that is the model's own value count, so the reader accepts it only
     * when the packed total matches - it does not (20+5+25+5 = 55) */
    int64_t idx[4][10] = {{0, 2, 5, 4}, {32, 1, 5}, {48, 2, 5, 5}, {80, 1, 5}};
    write_v2(p, m, "l1.weight\nl1.bias\nl2.weight\nl2.bias", &idx[0][0], 4);
    expect_st(gpuml_model_load_weights(m2, p), GPUML_ERR_FORMAT, "values", "shape");
    gpuml_model_destroy(m);
    gpuml_model_destroy(m2);

    /* a model whose slab has no padding (every tensor a multiple of 16) */
    cfg = "{\"inputs\": [{\"name\": \"x\", \"features\": 16}], \"nodes\": ["
          "{\"name\": \"a\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 16},"
          "{\"name\": \"b\", \"op\": \"linear\", \"inputs\": [\"a\"], \"out\": 16}], \"outputs\": [\"b\"]}";
    CHECK(gpuml_model_create(ctx, cfg, &m));
    CHECK(gpuml_model_init_params(m, 1));
    CHECK(gpuml_model_create(ctx, cfg, &m2));
    assert_int_equal(gpuml_model_param_count(m), 2 * (256 + 16));
    int64_t good[4][10] = {{0, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}};
    write_v2(p, m, "a.weight\na.bias\nb.weight\nb.bias", &good[0][0], 4);
    CHECK(gpuml_model_load_weights(m2, p));
    expect_same_model(m, m2);
    /* the same entries in another order, names and rows together: same result */
    int64_t perm[4][10] = {{528, 1, 16}, {272, 2, 16, 16}, {0, 2, 16, 16}, {256, 1, 16}};
    CHECK(gpuml_model_init_params(m2, 7));
    write_v2(p, m, "b.bias\nb.weight\na.weight\na.bias", &perm[0][0], 4);
    CHECK(gpuml_model_load_weights(m2, p));
    expect_same_model(m, m2);
    /* bad variants: each FORMAT, m2 unchanged */
    struct {
        const char *names, *why;
        int64_t rows[4][10];
    } bad[] = {
        {"a.bias\na.weight\nb.weight\nb.bias", "does not fit", {{0, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\nb.weight", "names", {{0, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\nb.weight\nb.bias\nc.x", "names", {{0, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\na.bias\nb.bias", "twice", {{0, 2, 16, 16}, {256, 1, 16}, {256, 1, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\nb.weight\nb.nope", "does not have", {{0, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\nb.weight\nb.bias", "does not fit", {{0, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {529, 1, 16}}},
        {"a.weight\na.bias\nb.weight\nb.bias", "does not fit", {{-1, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\nb.weight\nb.bias", "does not fit", {{INT64_MAX, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\nb.weight\nb.bias", "does not fit", {{0, 9, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\na.bias\nb.weight\nb.bias", "does not fit", {{0, 2, 16, 16, 1}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
        {"a.weight\n\nb.weight\nb.bias", "names", {{0, 2, 16, 16}, {256, 1, 16}, {272, 2, 16, 16}, {528, 1, 16}}},
    };
    CHECK(gpuml_model_init_params(m2, 7));
    size_t nb = gpuml_tensor_nbytes(gpuml_model_param_slab(m2));
    float *keep = malloc(nb);
    memcpy(keep, gpuml_tensor_data(gpuml_model_param_slab(m2)), nb);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_v2(p, m, bad[i].names, &bad[i].rows[0][0], 4);
        gpuml_status st = gpuml_model_load_weights(m2, p);
        if (st != GPUML_ERR_FORMAT || !strstr(gpuml_last_error(), bad[i].why))
            fail_msg("variant %zu: %s (%s)", i, gpuml_status_string(st), gpuml_last_error());
        assert_memory_equal(gpuml_tensor_data(gpuml_model_param_slab(m2)), keep, nb);
    }
    free(keep);
    gpuml_model_destroy(m);
    gpuml_model_destroy(m2);
    gpuml_ctx_destroy(ctx);
}

/* A checkpoint written by the test through the HDF5 layer (valid
 * checksum): the model in layout 1, the optimizer's state, and /state with
 * the given names and values. */
static void write_ckpt(const char *path, const gpuml_model *m, const gpuml_optim *opt, int64_t num_steps,
                       const char *const *names, size_t nnames, const int64_t *values, size_t nvalues)
{
    gpuml_h5_writer *w;
    CHECK(gpuml_h5_writer_open(path, &w));
    CHECK(gpuml_h5_writer_set_attr_string(w, "/", "format", "gpuml-model"));
    CHECK(gpuml_h5_writer_set_attr_i64(w, "/", "format_version", 1));
    CHECK(gpuml_h5_writer_set_attr_string(w, "/", "config", gpuml_model_config(m)));
    CHECK(gpuml_h5_writer_set_attr_i64(w, "/", "checkpoint_version", 1));
    char p[256];
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *v;
        gpuml_model_param(m, i, &name, &v, NULL, NULL);
        snprintf(p, sizeof p, "/weights/%s", name);
        *strchr(p + 9, '.') = '/';
        CHECK(gpuml_h5_writer_write(w, NULL, p, v));
    }
    gpuml_optim_config oc;
    gpuml_optim_get_config(opt, &oc);
    CHECK(gpuml_h5_writer_set_attr_i64(w, "/optimizer", "kind", oc.kind));
    CHECK(gpuml_h5_writer_set_attr_i64(w, "/optimizer", "num_steps", num_steps));
    for (int i = 0; i < gpuml_optim_num_states(opt); i++) {
        const char *name;
        gpuml_tensor *t;
        gpuml_optim_state(opt, i, &name, &t);
        snprintf(p, sizeof p, "/optimizer/%s", name);
        CHECK(gpuml_h5_writer_write(w, NULL, p, t));
    }
    CHECK(gpuml_h5_writer_set_attr_i64_array(w, "/state", "values", values, nvalues));
    CHECK(gpuml_h5_writer_set_attr_strings(w, "/state", "names", names, nnames));
    CHECK(gpuml_h5_writer_commit(w));
}

/* Every value read from a checkpoint is range-checked, /state is matched by
 * name, and a bad value is FORMAT that changes nothing. */
static void test_checkpoint_values_validated(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_model *m;
    CHECK(gpuml_model_create(ctx, k_cfg, &m));
    CHECK(gpuml_model_init_params(m, 5));
    gpuml_optim_config oc;
    gpuml_optim_config_init_defaults(&oc);
    oc.kind = GPUML_OPTIM_ADAMW;
    gpuml_optim *opt;
    CHECK(gpuml_optim_create(ctx, &oc, gpuml_model_param_slab(m), gpuml_model_grad_slab(m), &opt));
    CHECK(gpuml_optim_set_num_steps(opt, 4));
    /* the public setters refuse what the checkpoint reader refuses */
    assert_int_equal(gpuml_optim_set_num_steps(opt, INT64_MAX), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_optim_num_steps(opt), 4);
    char p[512];
    path_in(p, sizeof p, "vals.h5");
    const char *names[7] = {"step", "epoch", "rng_seed", "rng_counter", "loader_epoch", "loader_batch",
                            "loader_fingerprint"};
    const int64_t good[7] = {10, 2, -3 /* any 64-bit seed */, 77, 2, 5, -99};
    write_ckpt(p, m, opt, 10, names, 7, good, 7);
    gpuml_train_state ts;
    CHECK(gpuml_checkpoint_load(p, m, opt, &ts));
    assert_int_equal(ts.step, 10);
    assert_int_equal(ts.epoch, 2);
    assert_true(ts.rng_seed == (uint64_t)-3 && ts.rng_counter == 77);
    assert_int_equal(ts.loader.epoch, 2);
    assert_int_equal(ts.loader.batch, 5);
    assert_true(ts.loader.fingerprint == (uint64_t)-99);
    assert_int_equal(gpuml_optim_num_steps(opt), 10);
    /* the same entries in another order load by name */
    const char *shuffled[7] = {"loader_fingerprint", "loader_batch", "epoch", "step", "rng_counter", "rng_seed",
                               "loader_epoch"};
    const int64_t shuffled_v[7] = {-99, 5, 2, 10, 77, -3, 2};
    memset(&ts, 0, sizeof ts);
    write_ckpt(p, m, opt, 10, shuffled, 7, shuffled_v, 7);
    CHECK(gpuml_checkpoint_load(p, m, opt, &ts));
    assert_true(ts.step == 10 && ts.epoch == 2 && ts.rng_seed == (uint64_t)-3 && ts.rng_counter == 77 &&
                ts.loader.epoch == 2 && ts.loader.batch == 5 && ts.loader.fingerprint == (uint64_t)-99);

    CHECK(gpuml_model_init_params(m, 6)); /* differs from the file's weights */
    size_t nb = gpuml_tensor_nbytes(gpuml_model_param_slab(m));
    float *keep = malloc(nb);
    memcpy(keep, gpuml_tensor_data(gpuml_model_param_slab(m)), nb);
    const char *six[6] = {"step", "epoch", "rng_seed", "rng_counter", "loader_epoch", "loader_fingerprint"};
    const char *dup[7] = {"step", "epoch", "rng_seed", "rng_counter", "loader_epoch", "loader_epoch",
                          "loader_fingerprint"};
    const char *unknown[7] = {"step", "epoch", "rng_seed", "rng_counter", "loader_epoch", "loader_batch", "colour"};
    const char *many_names[100];
    int64_t many_values[100] = {0};
    for (int i = 0; i < 100; i++)
        many_names[i] = i < 7 ? names[i] : "step";
    struct {
        const char *const *names;
        size_t nn;
        int64_t v[7];
        size_t nv;
        int64_t num_steps;
        const char *why;
    } bad[] = {
        {names, 7, {10, 2, 0, 0, 2, 5, 0}, 7, INT64_MAX, "num_steps"},
        {names, 7, {10, 2, 0, 0, 2, 5, 0}, 7, -1, "num_steps"},
        {names, 7, {10, 2, 0, 0, INT64_MAX, 5, 0}, 7, 10, "loader_epoch"},
        {names, 7, {10, 2, 0, 0, -1, 5, 0}, 7, 10, "loader_epoch"},
        {names, 7, {-5, 2, 0, 0, 2, 5, 0}, 7, 10, "step"},
        {names, 7, {INT64_MAX, 2, 0, 0, 2, 5, 0}, 7, 10, "step"},
        {names, 7, {10, ((int64_t)1 << 53) + 1, 0, 0, 2, 5, 0}, 7, 10, "epoch"},
        {names, 7, {10, 2, 0, 0, 2, INT64_MAX, 0}, 7, 10, "loader_batch"},
        {six, 6, {10, 2, 0, 0, 2, 0}, 6, 10, "no entry 'loader_batch'"},
        {dup, 7, {10, 2, 0, 0, 2, 2, 0}, 7, 10, "twice"},
        {unknown, 7, {10, 2, 0, 0, 2, 5, 0}, 7, 10, "unknown"},
        {names, 7, {10, 2, 0, 0, 2, 5, 0}, 6, 10, "6 values for 7 names"},
        {many_names, 100, {0}, 100, 10, "100"}, /* oversized: FORMAT, not INVALID_ARGUMENT */
        {names, 7, {0}, 0, 10, "0 values"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_ckpt(p, m, opt, bad[i].num_steps, bad[i].names, bad[i].nn, bad[i].nn == 100 ? many_values : bad[i].v,
                   bad[i].nv);
        gpuml_train_state sentinel = {-7, -7, 7, 7, {-7, -7, 7}}, got = sentinel;
        CHECK(gpuml_optim_set_num_steps(opt, 3));
        gpuml_status st = gpuml_checkpoint_load(p, m, opt, &got);
        if (st != GPUML_ERR_FORMAT || !strstr(gpuml_last_error(), bad[i].why) || !strstr(gpuml_last_error(), "vals.h5"))
            fail_msg("variant %zu: %s (%s), expected FORMAT mentioning '%s'", i, gpuml_status_string(st),
                     gpuml_last_error(), bad[i].why);
        assert_memory_equal(&got, &sentinel, sizeof got);
        assert_int_equal(gpuml_optim_num_steps(opt), 3);
        assert_memory_equal(gpuml_tensor_data(gpuml_model_param_slab(m)), keep, nb);
    }
    /* the same checks hold for a file without a checksum (read unverified) */
    write_ckpt(p, m, opt, INT64_MAX, names, 7, good, 7);
    io_strip_checksum(p);
    expect_st(gpuml_checkpoint_load(p, m, opt, &ts), GPUML_ERR_FORMAT, "num_steps", NULL);
    assert_int_equal(gpuml_optim_num_steps(opt), 3);
    free(keep);
    gpuml_optim_destroy(opt);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

/* The loader refuses an epoch whose successor would overflow. */
static void test_loader_epoch_bound(void **state)
{
    (void)state;
    char ds[512];
    path_in(ds, sizeof ds, "data.h5");
    make_dataset(ds);
    trainer t;
    trainer_init(&t);
    gpuml_loader_position pos = {INT64_MAX, 0, 0};
    expect_st(gpuml_loader_set_position(t.ld, &pos), GPUML_ERR_INVALID_ARGUMENT, "2^53", NULL);
    pos.epoch = GPUML_LOADER_MAX_EPOCH;
    CHECK(gpuml_loader_set_position(t.ld, &pos));
    train_step(&t); /* the prefetch thread runs at the largest epoch */
    trainer_free(&t);
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
        cmocka_unit_test(test_old_layout_and_unverified_files),
        cmocka_unit_test(test_corrupted_files_are_format_errors),
        cmocka_unit_test(test_slab_index_validated),
        cmocka_unit_test(test_checkpoint_values_validated),
        cmocka_unit_test(test_loader_epoch_bound),
    };
    int rc = cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return rc;
}
