/*
 * tests/byteflip_check.c - the child half of tests/byteflip_sweep.py.
 *
 *   byteflip_check write DIR
 *       write DIR/model.h5 (gpuml_model_save) and DIR/ckpt.h5
 *       (gpuml_checkpoint_save with AdamW state and a training state) of a
 *       small model with parameters and batch-norm buffers.
 *   byteflip_check sweep FILE WORKDIR FIRST LAST STRIDE MASKS [--strip]
 *       for every offset FIRST, FIRST+STRIDE, ... < LAST and every xor mask
 *       in MASKS (comma-separated, e.g. "0x01,0x80,0xff"): write FILE with
 *       that byte changed to WORKDIR/variant.h5 and open it through every
 *       reader of gpuml files - gpuml_model_load, gpuml_model_load_weights,
 *       gpuml_checkpoint_load, gpuml_engine_create, gpuml_h5_reader_open
 *       (+ listing the root), gpuml_file_verify. --strip first removes the
 *       file's checksum (zeroes its magic), to see what HDF5 alone does.
 *       Prints one line per variant, flushed before the next starts:
 *           <offset> <mask> <status of each reader> <changed>
 *       (statuses as numbers; changed = 1 when a failed load modified the
 *       model or optimizer it was given). A crash therefore shows as a line
 *       missing: the parent restarts after it.
 */
#define _POSIX_C_SOURCE 200809L
#include <gpuml/gpuml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_cfg =
    "{\"inputs\": [{\"name\": \"x\", \"features\": 4}],"
    " \"nodes\": [{\"name\": \"l1\", \"op\": \"linear\", \"inputs\": [\"x\"], \"out\": 8},"
    "  {\"name\": \"bn\", \"op\": \"batchnorm\", \"inputs\": [\"l1\"]},"
    "  {\"name\": \"n1\", \"op\": \"layernorm\", \"inputs\": [\"bn\"]},"
    "  {\"name\": \"a1\", \"op\": \"relu\", \"inputs\": [\"n1\"]},"
    "  {\"name\": \"p\", \"op\": \"global_pool\", \"inputs\": [\"a1\"], \"reduce\": \"max\"},"
    "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"p\"], \"out\": 3}],"
    " \"outputs\": [\"cls\"]}";

#define TRY(x)                                                                                   \
    do {                                                                                         \
        gpuml_status s_ = (x);                                                                   \
        if (s_ != GPUML_OK) {                                                                    \
            fprintf(stderr, "byteflip_check: %s: %s\n", #x, gpuml_last_error());                 \
            return 2;                                                                            \
        }                                                                                        \
    } while (0)

static void quiet(void *user, gpuml_log_level level, const char *msg)
{
    (void)user, (void)level, (void)msg; /* the WARN for unverified files is expected here */
}

static gpuml_ctx *make_ctx(void)
{
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.num_threads = 1;
    cc.log_fn = quiet;
    gpuml_ctx *ctx = NULL;
    gpuml_ctx_create(&cc, &ctx);
    return ctx;
}

static gpuml_optim *make_optim(gpuml_ctx *ctx, gpuml_model *m)
{
    gpuml_optim_config oc;
    gpuml_optim_config_init_defaults(&oc);
    oc.kind = GPUML_OPTIM_ADAMW;
    gpuml_optim *opt = NULL;
    gpuml_optim_create(ctx, &oc, gpuml_model_param_slab(m), gpuml_model_grad_slab(m), &opt);
    return opt;
}

static int write_files(const char *dir)
{
    gpuml_ctx *ctx = make_ctx();
    gpuml_model *m;
    TRY(gpuml_model_create(ctx, k_cfg, &m));
    TRY(gpuml_model_init_params(m, 7));
    gpuml_tensor *bs = gpuml_model_buffer_slab(m);
    for (int64_t i = 0; i < gpuml_tensor_numel(bs); i++)
        ((float *)gpuml_tensor_data(bs))[i] = 0.25f * (float)i;
    gpuml_optim *opt = make_optim(ctx, m);
    TRY(gpuml_optim_set_num_steps(opt, 12));
    for (int i = 0; i < gpuml_optim_num_states(opt); i++) {
        gpuml_tensor *t;
        gpuml_optim_state(opt, i, NULL, &t);
        for (int64_t j = 0; j < gpuml_tensor_numel(t); j++)
            ((float *)gpuml_tensor_data(t))[j] = 1e-3f * (float)(j + i);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/model.h5", dir);
    TRY(gpuml_model_save(m, path));
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    gpuml_train_state ts = {12, 1, 99, 40, {1, 3, 0x1234}};
    TRY(gpuml_checkpoint_save(path, m, opt, &ts));
    gpuml_optim_destroy(opt);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
    return 0;
}

static unsigned char *read_all(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)*size + 1);
    if (b && fread(b, 1, (size_t)*size, f) != (size_t)*size) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* Snapshot of everything a failed load must leave alone. */
typedef struct {
    size_t pbytes, bbytes, obytes[2];
    unsigned char *p, *b, *o[2];
    int64_t steps;
} snapshot;

static void snap_take(snapshot *s, gpuml_model *m, gpuml_optim *opt)
{
    gpuml_tensor *ps = gpuml_model_param_slab(m), *bs = gpuml_model_buffer_slab(m);
    s->pbytes = gpuml_tensor_nbytes(ps);
    s->bbytes = gpuml_tensor_nbytes(bs);
    s->p = malloc(s->pbytes);
    s->b = malloc(s->bbytes);
    memcpy(s->p, gpuml_tensor_data(ps), s->pbytes);
    memcpy(s->b, gpuml_tensor_data(bs), s->bbytes);
    for (int i = 0; i < 2; i++) {
        gpuml_tensor *t = NULL;
        s->obytes[i] = 0;
        s->o[i] = NULL;
        if (i < gpuml_optim_num_states(opt) && gpuml_optim_state(opt, i, NULL, &t) == GPUML_OK) {
            s->obytes[i] = gpuml_tensor_nbytes(t);
            s->o[i] = malloc(s->obytes[i]);
            memcpy(s->o[i], gpuml_tensor_data(t), s->obytes[i]);
        }
    }
    s->steps = gpuml_optim_num_steps(opt);
}

static int snap_differs(const snapshot *s, gpuml_model *m, gpuml_optim *opt)
{
    int d = memcmp(s->p, gpuml_tensor_data(gpuml_model_param_slab(m)), s->pbytes) != 0 ||
            memcmp(s->b, gpuml_tensor_data(gpuml_model_buffer_slab(m)), s->bbytes) != 0 ||
            s->steps != gpuml_optim_num_steps(opt);
    for (int i = 0; i < 2 && !d; i++) {
        gpuml_tensor *t;
        if (s->o[i] && gpuml_optim_state(opt, i, NULL, &t) == GPUML_OK)
            d = memcmp(s->o[i], gpuml_tensor_data(t), s->obytes[i]) != 0;
    }
    return d;
}

static int sweep(int argc, char **argv)
{
    const char *file = argv[2], *work = argv[3];
    long first = atol(argv[4]), last = atol(argv[5]), stride = atol(argv[6]);
    int strip = argc > 8 && !strcmp(argv[8], "--strip");
    unsigned masks[16];
    int nmasks = 0;
    for (char *save = NULL, *tok = strtok_r(argv[7], ",", &save); tok && nmasks < 16;
         tok = strtok_r(NULL, ",", &save))
        masks[nmasks++] = (unsigned)strtoul(tok, NULL, 0) & 0xff;
    long size;
    unsigned char *orig = read_all(file, &size);
    if (!orig || stride < 1 || nmasks == 0) {
        fprintf(stderr, "byteflip_check: cannot read '%s' or bad arguments\n", file);
        return 2;
    }
    if (strip && size >= 8)
        memset(orig, 0, 8);
    if (last > size)
        last = size;
    char vpath[1024];
    snprintf(vpath, sizeof vpath, "%s/variant.h5", work);
    gpuml_ctx *ctx = make_ctx();
    gpuml_model *ref;
    TRY(gpuml_model_create(ctx, k_cfg, &ref));
    gpuml_optim *opt = make_optim(ctx, ref);
    gpuml_engine_config ec;
    gpuml_engine_config_init_defaults(&ec);
    ec.warmup = 0;
    ec.max_batch_rows = 256;
    ec.log_fn = quiet;
    for (long off = first; off < last; off += stride) {
        for (int k = 0; k < nmasks; k++) {
            FILE *f = fopen(vpath, "wb");
            unsigned char keep = orig[off];
            orig[off] ^= (unsigned char)masks[k];
            size_t put = f ? fwrite(orig, 1, (size_t)size, f) : 0;
            orig[off] = keep;
            if (!f || put != (size_t)size || fclose(f) != 0) {
                fprintf(stderr, "byteflip_check: cannot write '%s'\n", vpath);
                return 2;
            }
            int changed = 0;
            gpuml_status st[6];
            gpuml_model *m = NULL;
            st[0] = gpuml_model_load(ctx, vpath, &m);
            gpuml_model_destroy(m);
            gpuml_train_state ts = {0};
            for (int j = 1; j <= 2; j++) {
                /* a fresh state before each load that writes into one, so
                 * that a change is pinned on the load that made it */
                TRY(gpuml_model_init_params(ref, 3));
                TRY(gpuml_optim_set_num_steps(opt, 5));
                snapshot s;
                snap_take(&s, ref, opt);
                st[j] = j == 1 ? gpuml_model_load_weights(ref, vpath) : gpuml_checkpoint_load(vpath, ref, opt, &ts);
                changed |= st[j] != GPUML_OK && snap_differs(&s, ref, opt);
                for (int i = 0; i < 2; i++)
                    free(s.o[i]);
                free(s.p);
                free(s.b);
            }
            gpuml_engine *e = NULL;
            st[3] = gpuml_engine_create(vpath, &ec, &e);
            gpuml_engine_destroy(e);
            gpuml_h5_reader *r = NULL;
            st[4] = gpuml_h5_reader_open(vpath, &r);
            if (st[4] == GPUML_OK) {
                gpuml_strings ls = {0};
                st[4] = gpuml_h5_reader_list(r, "/", &ls);
                gpuml_strings_free(&ls);
                gpuml_h5_reader_close(r);
            }
            int verified = 0;
            st[5] = gpuml_file_verify(vpath, &verified);
            printf("%ld 0x%02x %d %d %d %d %d %d %d\n", off, masks[k], st[0], st[1], st[2], st[3], st[4], st[5],
                   changed);
            fflush(stdout);
        }
    }
    gpuml_optim_destroy(opt);
    gpuml_model_destroy(ref);
    gpuml_ctx_destroy(ctx);
    free(orig);
    remove(vpath);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "write"))
        return write_files(argv[2]);
    if ((argc == 8 || argc == 9) && !strcmp(argv[1], "sweep"))
        return sweep(argc, argv);
    fprintf(stderr, "usage: byteflip_check write DIR\n"
                    "       byteflip_check sweep FILE WORKDIR FIRST LAST STRIDE MASKS [--strip]\n");
    return 2;
}
