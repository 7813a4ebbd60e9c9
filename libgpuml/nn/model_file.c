/* Model files and checkpoints (DESIGN.md section 7) on the HDF5 layer of
 * gpuml/io.h. Everything read is staged in temporaries and validated before
 * the model or optimizer is touched, so a bad file changes nothing. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "gpuml/checkpoint.h"

#define MODEL_FORMAT "gpuml-model"
#define MODEL_FORMAT_VERSION 1
#define CKPT_FORMAT_VERSION 1

/* "layer.param" -> "/<root>/layer/param" */
static void param_path(char *buf, size_t size, const char *root, const char *name)
{
    snprintf(buf, size, "/%s/%s", root, name);
    char *dot = strchr(buf + strlen(root) + 2, '.');
    if (dot)
        *dot = '/';
}

static gpuml_status write_model(gpuml_h5_writer *w, const gpuml_model *m)
{
    GPUML_TRY(gpuml_h5_writer_set_attr_string(w, "/", "format", MODEL_FORMAT));
    GPUML_TRY(gpuml_h5_writer_set_attr_i64(w, "/", "format_version", MODEL_FORMAT_VERSION));
    GPUML_TRY(gpuml_h5_writer_set_attr_string(w, "/", "gpuml_version", gpuml_version()));
    GPUML_TRY(gpuml_h5_writer_set_attr_string(w, "/", "config", gpuml_model_config(m)));
    gpuml_ctx *ctx = gpuml_model_ctx(m); /* copies CUDA tensors to the host */
    char path[256];
    for (int i = 0; i < gpuml_model_num_params(m); i++) {
        const char *name;
        gpuml_tensor *v;
        GPUML_TRY(gpuml_model_param(m, i, &name, &v, NULL, NULL));
        param_path(path, sizeof path, "weights", name);
        GPUML_TRY(gpuml_h5_writer_write(w, ctx, path, v));
    }
    for (int i = 0; i < gpuml_model_num_buffers(m); i++) {
        const char *name;
        gpuml_tensor *v;
        GPUML_TRY(gpuml_model_buffer(m, i, &name, &v));
        param_path(path, sizeof path, "buffers", name);
        GPUML_TRY(gpuml_h5_writer_write(w, ctx, path, v));
    }
    return GPUML_OK;
}


gpuml_status gpuml_model_save(const gpuml_model *m, const char *path)
{
    static const char fn[] = "gpuml_model_save";
    if (!m || !path)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", m ? "path" : "m");
    gpuml_h5_writer *w;
    GPUML_TRY(gpuml_h5_writer_open(path, &w));
    gpuml_status st = write_model(w, m);
    if (st != GPUML_OK) {
        gpuml_h5_writer_abort(w);
        return st;
    }
    return gpuml_h5_writer_commit(w);
}

/* Reads the root attributes and returns the stored config (caller frees). */
static gpuml_status read_header(gpuml_h5_reader *r, const char *path, const char *fn, char **config)
{
    char fmt[64];
    gpuml_status st = gpuml_h5_reader_attr_string(r, "/", "format", fmt, sizeof fmt, NULL);
    if (st != GPUML_OK || strcmp(fmt, MODEL_FORMAT) != 0)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' is not a gpuml model file (root attribute format != '%s')",
                          path, MODEL_FORMAT);
    int64_t version;
    GPUML_TRY(gpuml_h5_reader_attr_i64(r, "/", "format_version", &version));
    if (version < 1 || version > MODEL_FORMAT_VERSION)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                          "'%s' has format_version %" PRId64 "; this gpuml reads versions 1 to %d", path, version,
                          MODEL_FORMAT_VERSION);
    size_t len = 0;
    st = gpuml_h5_reader_attr_string(r, "/", "config", NULL, 0, &len);
    if (st != GPUML_OK && st != GPUML_ERR_INVALID_ARGUMENT)
        return st;
    if (len == 0 || len > ((size_t)64 << 20))
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': the config attribute is empty or absurdly long", path);
    *config = malloc(len + 1);
    if (!*config)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    st = gpuml_h5_reader_attr_string(r, "/", "config", *config, len + 1, NULL);
    if (st != GPUML_OK) {
        free(*config);
        *config = NULL;
    }
    return st;
}

/* Counts the datasets under /<root>/<layer>/<name>; any other structure is
 * an error. */
static gpuml_status count_entries(gpuml_h5_reader *r, const char *root, const char *path, const char *fn,
                                  int64_t *count)
{
    *count = 0;
    gpuml_h5_kind kind;
    char g[256];
    snprintf(g, sizeof g, "/%s", root);
    GPUML_TRY(gpuml_h5_reader_kind(r, g, &kind));
    if (kind == GPUML_H5_NONE)
        return GPUML_OK;
    gpuml_strings layers = {0};
    GPUML_TRY(gpuml_h5_reader_list(r, g, &layers));
    gpuml_status st = GPUML_OK;
    for (size_t i = 0; i < layers.count && st == GPUML_OK; i++) {
        gpuml_strings members = {0};
        char lg[256];
        snprintf(lg, sizeof lg, "/%s/%s", root, layers.items[i]);
        st = gpuml_h5_reader_list(r, lg, &members);
        if (st != GPUML_OK) {
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': %s is not a group of tensors", path, lg);
            break;
        }
        *count += (int64_t)members.count;
        gpuml_strings_free(&members);
    }
    gpuml_strings_free(&layers);
    return st;
}

/* Stage m's weights and buffers from r into fresh slabs (validated). */
static gpuml_status stage_model(gpuml_h5_reader *r, const gpuml_model *m, const char *path, const char *fn,
                                gpuml_tensor **pslab, gpuml_tensor **bslab)
{
    gpuml_ctx *ctx = NULL;
    *pslab = *bslab = NULL;
    int64_t count;
    GPUML_TRY(count_entries(r, "weights", path, fn, &count));
    if (count != gpuml_model_num_params(m))
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds %" PRId64 " weight tensors, the model has %d", path,
                          count, gpuml_model_num_params(m));
    GPUML_TRY(count_entries(r, "buffers", path, fn, &count));
    if (count != gpuml_model_num_buffers(m))
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds %" PRId64 " buffers, the model has %d", path, count,
                          gpuml_model_num_buffers(m));
    gpuml_tensor *ps = gpuml_model_param_slab(m), *bs = gpuml_model_buffer_slab(m);
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    gpuml_status st = GPUML_OK;
    size_t pbytes = gpuml_tensor_nbytes(ps);
    void *pdata = calloc(1, pbytes ? pbytes : 1), *bdata = NULL;
    size_t bbytes = bs ? gpuml_tensor_nbytes(bs) : 0;
    if (bs)
        bdata = calloc(1, bbytes);
    if (!pdata || (bs && !bdata))
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    char dpath[256];
    for (int i = 0; i < gpuml_model_num_params(m) && st == GPUML_OK; i++) {
        const char *name;
        gpuml_tensor *v, view;
        gpuml_model_param(m, i, &name, &v, NULL, NULL);
        gpuml_tensor_init_view(&view, (float *)pdata + gpuml_model_param_offset(m, i), host, GPUML_F32,
                               gpuml_tensor_ndim(v), gpuml_tensor_shape(v));
        param_path(dpath, sizeof dpath, "weights", name);
        st = gpuml_h5_reader_read(r, ctx, dpath, &view);
    }
    for (int i = 0; i < gpuml_model_num_buffers(m) && st == GPUML_OK; i++) {
        const char *name;
        gpuml_tensor *v, view;
        gpuml_model_buffer(m, i, &name, &v);
        gpuml_tensor_init_view(&view, (char *)bdata + ((char *)gpuml_tensor_data(v) - (char *)gpuml_tensor_data(bs)),
                               host, GPUML_F32, gpuml_tensor_ndim(v), gpuml_tensor_shape(v));
        param_path(dpath, sizeof dpath, "buffers", name);
        st = gpuml_h5_reader_read(r, ctx, dpath, &view);
    }
    if (st == GPUML_OK)
        st = gpuml_tensor_wrap(pdata, host, GPUML_F32, 1, gpuml_tensor_shape(ps), NULL, NULL, pslab);
    if (st == GPUML_OK && bs)
        st = gpuml_tensor_wrap(bdata, host, GPUML_F32, 1, gpuml_tensor_shape(bs), NULL, NULL, bslab);
    if (st != GPUML_OK) {
        gpuml_tensor_destroy(*pslab);
        gpuml_tensor_destroy(*bslab);
        *pslab = *bslab = NULL;
        free(pdata);
        free(bdata);
    }
    return st;
}

static void free_staged(gpuml_tensor *t)
{
    if (!t)
        return;
    void *d = gpuml_tensor_data(t);
    gpuml_tensor_destroy(t);
    free(d);
}

/* Configs are compared as JSON values, not strings. */
static bool same_config(const char *a, const char *b)
{
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    bool same = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

/* Host staging -> the model's slabs (on its device, through its context). */
static gpuml_status apply_staged(gpuml_model *m, gpuml_tensor *pslab, gpuml_tensor *bslab)
{
    gpuml_ctx *ctx = gpuml_model_ctx(m);
    gpuml_tensor *bs = gpuml_model_buffer_slab(m);
    GPUML_TRY(gpuml_tensor_copy(ctx, gpuml_model_param_slab(m), pslab));
    if (bs && bslab)
        GPUML_TRY(gpuml_tensor_copy(ctx, bs, bslab));
    return gpuml_ctx_synchronize(ctx); /* the staging memory is freed next */
}

static gpuml_status load_weights_from(gpuml_h5_reader *r, gpuml_model *m, const char *path, const char *fn,
                                      bool check_config)
{
    char *config = NULL;
    GPUML_TRY(read_header(r, path, fn, &config));
    if (check_config && !same_config(config, gpuml_model_config(m))) {
        free(config);
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' was written for another model (configs differ)", path);
    }
    free(config);
    gpuml_tensor *ps, *bs;
    GPUML_TRY(stage_model(r, m, path, fn, &ps, &bs));
    gpuml_status st = apply_staged(m, ps, bs);
    free_staged(ps);
    free_staged(bs);
    return st;
}

gpuml_status gpuml_model_load_weights(gpuml_model *m, const char *path)
{
    static const char fn[] = "gpuml_model_load_weights";
    if (!m || !path)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", m ? "path" : "m");
    gpuml_h5_reader *r;
    GPUML_TRY(gpuml_h5_reader_open(path, &r));
    gpuml_status st = load_weights_from(r, m, path, fn, true);
    gpuml_h5_reader_close(r);
    return st;
}

gpuml_status gpuml_model_load(gpuml_ctx *ctx, const char *path, gpuml_model **out)
{
    static const char fn[] = "gpuml_model_load";
    if (!ctx || !path || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !ctx ? "ctx" : !path ? "path" : "out");
    *out = NULL;
    gpuml_h5_reader *r;
    GPUML_TRY(gpuml_h5_reader_open(path, &r));
    char *config = NULL;
    gpuml_status st = read_header(r, path, fn, &config);
    gpuml_model *m = NULL;
    if (st == GPUML_OK) {
        st = gpuml_model_create(ctx, config, &m);
        if (st != GPUML_OK)
            st = gpuml_fail(ctx, st, fn, "'%s': the stored config does not build: %s", path, gpuml_last_error());
    }
    free(config);
    if (st == GPUML_OK)
        st = load_weights_from(r, m, path, fn, false);
    gpuml_h5_reader_close(r);
    if (st != GPUML_OK) {
        gpuml_model_destroy(m);
        return st;
    }
    *out = m;
    return GPUML_OK;
}

/* ---- checkpoints ------------------------------------------------------------- */
gpuml_status gpuml_checkpoint_save(const char *path, const gpuml_model *m, const gpuml_optim *opt,
                                   const gpuml_train_state *state)
{
    static const char fn[] = "gpuml_checkpoint_save";
    if (!path || !m)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", path ? "m" : "path");
    gpuml_h5_writer *w;
    GPUML_TRY(gpuml_h5_writer_open(path, &w));
    gpuml_status st = write_model(w, m);
    if (st == GPUML_OK)
        st = gpuml_h5_writer_set_attr_i64(w, "/", "checkpoint_version", CKPT_FORMAT_VERSION);
    if (st == GPUML_OK && opt) {
        gpuml_optim_config oc;
        gpuml_optim_get_config(opt, &oc);
        st = gpuml_h5_writer_set_attr_i64(w, "/optimizer", "kind", oc.kind);
        if (st == GPUML_OK)
            st = gpuml_h5_writer_set_attr_i64(w, "/optimizer", "num_steps", gpuml_optim_num_steps(opt));
        for (int i = 0; i < gpuml_optim_num_states(opt) && st == GPUML_OK; i++) {
            const char *name;
            gpuml_tensor *t;
            char p[128];
            gpuml_optim_state(opt, i, &name, &t);
            snprintf(p, sizeof p, "/optimizer/%s", name);
            /* the state lives on the model's device: its context copies it out */
            st = gpuml_h5_writer_write(w, gpuml_model_ctx(m), p, t);
        }
    }
    if (st == GPUML_OK && state) {
        int64_t v[7] = {state->step, state->epoch, (int64_t)state->rng_seed, (int64_t)state->rng_counter,
                        state->loader.epoch, state->loader.batch, (int64_t)state->loader.fingerprint};
        st = gpuml_h5_writer_set_attr_i64_array(w, "/state", "values", v, 7);
        static const char *const names[7] = {"step", "epoch", "rng_seed", "rng_counter", "loader_epoch",
                                             "loader_batch", "loader_fingerprint"};
        if (st == GPUML_OK)
            st = gpuml_h5_writer_set_attr_strings(w, "/state", "names", names, 7);
    }
    if (st != GPUML_OK) {
        gpuml_h5_writer_abort(w);
        return st;
    }
    return gpuml_h5_writer_commit(w);
}

gpuml_status gpuml_checkpoint_load(const char *path, gpuml_model *m, gpuml_optim *opt, gpuml_train_state *state)
{
    static const char fn[] = "gpuml_checkpoint_load";
    if (!path || !m)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", path ? "m" : "path");
    gpuml_h5_reader *r;
    GPUML_TRY(gpuml_h5_reader_open(path, &r));
    char *config = NULL;
    gpuml_tensor *ps = NULL, *bs = NULL, *os[2] = {NULL, NULL};
    int64_t steps = 0, sv[7] = {0};
    gpuml_ctx *host_ctx = NULL; /* optimizer state is staged on the host */
    gpuml_ctx_config hc;
    gpuml_ctx_config_init_defaults(&hc);
    hc.num_threads = 1;
    gpuml_status st = gpuml_ctx_create(&hc, &host_ctx);
    if (st == GPUML_OK)
        st = read_header(r, path, fn, &config);
    if (st == GPUML_OK && !same_config(config, gpuml_model_config(m)))
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' was written for another model (configs differ)", path);
    free(config);
    int64_t cv;
    if (st == GPUML_OK && gpuml_h5_reader_attr_i64(r, "/", "checkpoint_version", &cv) != GPUML_OK)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' is a model file, not a checkpoint", path);
    if (st == GPUML_OK && (cv < 1 || cv > CKPT_FORMAT_VERSION))
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' has checkpoint_version %" PRId64, path, cv);
    if (st == GPUML_OK)
        st = stage_model(r, m, path, fn, &ps, &bs);
    if (st == GPUML_OK && opt) {
        gpuml_optim_config oc;
        gpuml_optim_get_config(opt, &oc);
        int64_t kind;
        st = gpuml_h5_reader_attr_i64(r, "/optimizer", "kind", &kind);
        if (st == GPUML_OK && kind != oc.kind)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds state of optimizer kind %" PRId64 ", not %d", path,
                            kind, (int)oc.kind);
        if (st == GPUML_OK)
            st = gpuml_h5_reader_attr_i64(r, "/optimizer", "num_steps", &steps);
        if (st == GPUML_OK && steps < 0)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': negative optimizer step count", path);
        for (int i = 0; i < gpuml_optim_num_states(opt) && st == GPUML_OK; i++) {
            const char *name;
            gpuml_tensor *t;
            char p[128];
            gpuml_optim_state(opt, i, &name, &t);
            snprintf(p, sizeof p, "/optimizer/%s", name);
            st = gpuml_h5_reader_read_new(r, host_ctx, p, GPUML_F32, 1, gpuml_tensor_shape(t), &os[i]);
        }
    }
    if (st == GPUML_OK && state) {
        size_t count = 0;
        st = gpuml_h5_reader_attr_i64_array(r, "/state", "values", sv, 7, &count);
        if (st == GPUML_OK && count != 7)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state has %zu values, expected 7", path, count);
    }
    gpuml_h5_reader_close(r);
    if (st == GPUML_OK) /* all validated: now change things */
        st = apply_staged(m, ps, bs);
    if (st == GPUML_OK) {
        if (opt) {
            for (int i = 0; i < gpuml_optim_num_states(opt) && st == GPUML_OK; i++) {
                gpuml_tensor *t;
                gpuml_optim_state(opt, i, NULL, &t);
                st = gpuml_tensor_copy(gpuml_model_ctx(m), t, os[i]);
            }
            if (st == GPUML_OK)
                st = gpuml_ctx_synchronize(gpuml_model_ctx(m));
            gpuml_optim_set_num_steps(opt, steps);
        }
        if (state) {
            state->step = sv[0];
            state->epoch = sv[1];
            state->rng_seed = (uint64_t)sv[2];
            state->rng_counter = (uint64_t)sv[3];
            state->loader.epoch = sv[4];
            state->loader.batch = sv[5];
            state->loader.fingerprint = (uint64_t)sv[6];
        }
    }
    free_staged(ps);
    free_staged(bs);
    gpuml_tensor_destroy(os[0]);
    gpuml_tensor_destroy(os[1]);
    gpuml_ctx_destroy(host_ctx);
    return st;
}
