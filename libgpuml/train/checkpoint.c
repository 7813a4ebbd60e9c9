/* Checkpoints (gpuml/checkpoint.h): a model file plus /optimizer and
 * /state. Every value read is validated (ranges, names, sizes) and staged
 * before anything is changed, so a bad or hostile checkpoint is a FORMAT
 * error that leaves the model, the optimizer and the caller's state as they
 * were. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuml/checkpoint.h"
#include "io/h5.h"
#include "nn/model_io.h"

#define CKPT_FORMAT_VERSION 1
/* Steps, epochs and batch positions beyond 2^53 cannot come from a real run;
 * the bound keeps every later "+ 1" far from overflow. */
#define CKPT_MAX_COUNT ((int64_t)1 << 53)
#define STATE_MAX_ENTRIES 64

enum { ST_STEP, ST_EPOCH, ST_RNG_SEED, ST_RNG_COUNTER, ST_LOADER_EPOCH, ST_LOADER_BATCH, ST_LOADER_FP, ST_COUNT };
static const char *const state_names[ST_COUNT] = {"step",         "epoch",        "rng_seed",          "rng_counter",
                                                  "loader_epoch", "loader_batch", "loader_fingerprint"};
/* Counters must lie in [0, CKPT_MAX_COUNT]; the others are any 64-bit
 * pattern (seeds, counters and fingerprints are stored as int64). */
static const bool state_is_count[ST_COUNT] = {true, true, false, false, true, true, false};

gpuml_status gpuml_checkpoint_save(const char *path, const gpuml_model *m, const gpuml_optim *opt,
                                   const gpuml_train_state *state)
{
    static const char fn[] = "gpuml_checkpoint_save";
    if (!path || !m)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", path ? "m" : "path");
    gpuml_h5_writer *w;
    GPUML_TRY(gpuml_h5_writer_open(path, &w));
    gpuml_status st = model_io_write(w, m);
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
            st = gpuml_h5_writer_write(w, gpuml_model_ctx(m), p, t);
        }
    }
    if (st == GPUML_OK && state) {
        int64_t v[ST_COUNT] = {state->step,         state->epoch,        (int64_t)state->rng_seed,
                               (int64_t)state->rng_counter, state->loader.epoch, state->loader.batch,
                               (int64_t)state->loader.fingerprint};
        st = gpuml_h5_writer_set_attr_i64_array(w, "/state", "values", v, ST_COUNT);
        if (st == GPUML_OK)
            st = gpuml_h5_writer_set_attr_strings(w, "/state", "names", state_names, ST_COUNT);
    }
    if (st != GPUML_OK) {
        gpuml_h5_writer_abort(w);
        return st;
    }
    return gpuml_h5_writer_commit(w);
}

/* /state: names and values of equal length, each known name exactly once,
 * counters in range. sv receives the values in state_names order. */
static gpuml_status read_state(gpuml_h5_reader *r, const char *path, const char *fn, int64_t sv[ST_COUNT])
{
    gpuml_strings names = {0};
    gpuml_status st = gpuml_h5_reader_attr_strings(r, "/state", "names", &names);
    if (st == GPUML_ERR_NOT_FOUND)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds no training state (/state names)", path);
    GPUML_TRY(st);
    int64_t vals[STATE_MAX_ENTRIES];
    size_t count = 0;
    if (names.count > STATE_MAX_ENTRIES)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state has %zu names (at most %d)", path, names.count,
                        STATE_MAX_ENTRIES);
    if (st == GPUML_OK) {
        st = gpuml_h5_reader_attr_i64_array(r, "/state", "values", vals, STATE_MAX_ENTRIES, &count);
        if (st == GPUML_ERR_INVALID_ARGUMENT) /* more values than any checkpoint holds */
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state has %zu values (at most %d)", path, count,
                            STATE_MAX_ENTRIES);
        else if (st == GPUML_ERR_NOT_FOUND)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds no training state (/state values)", path);
    }
    if (st == GPUML_OK && count != names.count)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state has %zu values for %zu names", path, count,
                        names.count);
    bool seen[ST_COUNT] = {false};
    for (size_t i = 0; i < names.count && st == GPUML_OK; i++) {
        int k = 0;
        while (k < ST_COUNT && strcmp(names.items[i], state_names[k]) != 0)
            k++;
        if (k == ST_COUNT)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state entry '%.64s' is unknown", path, names.items[i]);
        else if (seen[k])
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state entry '%s' appears twice", path, state_names[k]);
        else if (state_is_count[k] && (vals[i] < 0 || vals[i] > CKPT_MAX_COUNT))
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state %s = %" PRId64 " is not in [0, 2^53]", path,
                            state_names[k], vals[i]);
        else {
            seen[k] = true;
            sv[k] = vals[i];
        }
    }
    for (int k = 0; k < ST_COUNT && st == GPUML_OK; k++)
        if (!seen[k])
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /state has no entry '%s'", path, state_names[k]);
    gpuml_strings_free(&names);
    return st;
}

/* /optimizer: the same kind, a step count in range, every state tensor
 * with the optimizer's shape (staged into os on the host). */
static gpuml_status read_optimizer(gpuml_h5_reader *r, gpuml_optim *opt, gpuml_ctx *host_ctx, const char *path,
                                   const char *fn, int64_t *steps, gpuml_tensor *os[2])
{
    gpuml_optim_config oc;
    gpuml_optim_get_config(opt, &oc);
    int64_t kind;
    gpuml_status st = gpuml_h5_reader_attr_i64(r, "/optimizer", "kind", &kind);
    if (st == GPUML_ERR_NOT_FOUND)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds no optimizer state", path);
    GPUML_TRY(st);
    if (kind != oc.kind)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' holds state of optimizer kind %" PRId64 ", not %d", path,
                          kind, (int)oc.kind);
    st = gpuml_h5_reader_attr_i64(r, "/optimizer", "num_steps", steps);
    if (st == GPUML_ERR_NOT_FOUND)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': /optimizer has no num_steps", path);
    GPUML_TRY(st);
    if (*steps < 0 || *steps > GPUML_OPTIM_MAX_STEPS)
        return gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s': optimizer num_steps = %" PRId64 " is not in [0, 2^53]",
                          path, *steps);
    if (gpuml_optim_num_states(opt) > 2)
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, fn, "an optimizer with %d state tensors",
                          gpuml_optim_num_states(opt));
    for (int i = 0; i < gpuml_optim_num_states(opt); i++) {
        const char *name;
        gpuml_tensor *t;
        char p[128];
        gpuml_optim_state(opt, i, &name, &t);
        snprintf(p, sizeof p, "/optimizer/%s", name);
        st = gpuml_h5_reader_read_new(r, host_ctx, p, GPUML_F32, 1, gpuml_tensor_shape(t), &os[i]);
        if (st == GPUML_ERR_NOT_FOUND)
            st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' has no optimizer state '%s'", path, name);
        GPUML_TRY(st);
    }
    return GPUML_OK;
}

gpuml_status gpuml_checkpoint_load(const char *path, gpuml_model *m, gpuml_optim *opt, gpuml_train_state *state)
{
    static const char fn[] = "gpuml_checkpoint_load";
    if (!path || !m)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", path ? "m" : "path");
    gpuml_ctx *ctx = gpuml_model_ctx(m);
    gpuml_h5_reader *r;
    GPUML_TRY(io_reader_open_verified(ctx, ctx->require_checksum, path, &r, fn));
    char *config = NULL;
    gpuml_tensor *ps = NULL, *bs = NULL, *os[2] = {NULL, NULL};
    int64_t steps = 0, sv[ST_COUNT] = {0}, version = 0;
    gpuml_ctx *host_ctx = NULL; /* optimizer state is staged on the host */
    gpuml_ctx_config hc;
    gpuml_ctx_config_init_defaults(&hc);
    hc.num_threads = 1;
    gpuml_status st = gpuml_ctx_create(&hc, &host_ctx);
    if (st == GPUML_OK)
        st = model_io_read_header(r, path, fn, &config, &version);
    if (st == GPUML_OK && !model_io_same_config(config, gpuml_model_config(m)))
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' was written for another model (configs differ)", path);
    free(config);
    int64_t cv;
    if (st == GPUML_OK && gpuml_h5_reader_attr_i64(r, "/", "checkpoint_version", &cv) != GPUML_OK)
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' is a model file, not a checkpoint", path);
    if (st == GPUML_OK && (cv < 1 || cv > CKPT_FORMAT_VERSION))
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn, "'%s' has checkpoint_version %" PRId64, path, cv);
    if (st == GPUML_OK)
        st = model_io_stage(r, version, m, path, fn, &ps, &bs);
    if (st == GPUML_OK && opt)
        st = read_optimizer(r, opt, host_ctx, path, fn, &steps, os);
    if (st == GPUML_OK && state)
        st = read_state(r, path, fn, sv);
    gpuml_h5_reader_close(r);
    if (st == GPUML_OK) /* all validated: now change things */
        st = model_io_apply(m, ps, bs);
    if (st == GPUML_OK) {
        if (opt) {
            for (int i = 0; i < gpuml_optim_num_states(opt) && st == GPUML_OK; i++) {
                gpuml_tensor *t;
                gpuml_optim_state(opt, i, NULL, &t);
                st = gpuml_tensor_copy(ctx, t, os[i]);
            }
            if (st == GPUML_OK)
                st = gpuml_ctx_synchronize(ctx);
            if (st == GPUML_OK)
                st = gpuml_optim_set_num_steps(opt, steps);
        }
        if (state && st == GPUML_OK) {
            state->step = sv[ST_STEP];
            state->epoch = sv[ST_EPOCH];
            state->rng_seed = (uint64_t)sv[ST_RNG_SEED];
            state->rng_counter = (uint64_t)sv[ST_RNG_COUNTER];
            state->loader.epoch = sv[ST_LOADER_EPOCH];
            state->loader.batch = sv[ST_LOADER_BATCH];
            state->loader.fingerprint = (uint64_t)sv[ST_LOADER_FP];
        }
    }
    model_io_free_staged(ps);
    model_io_free_staged(bs);
    gpuml_tensor_destroy(os[0]);
    gpuml_tensor_destroy(os[1]);
    gpuml_ctx_destroy(host_ctx);
    return st;
}
