/* tests/h5py_check.c - gpuml's side of the h5py interoperability test
 * (driven by tests/test_h5py.py).
 *   h5py_check read FILE    read a dataset written by h5py, check values
 *   h5py_check write DIR    write DIR/c_dataset.h5 and DIR/c_model.h5 for
 *                           h5py to check
 *   h5py_check validate FILE  open any dataset with gpuml and run one loader
 *                           epoch over all its fields
 * Values follow from indices: features[r, c] = 3r + c, flag[r] = r % 2,
 * half[r] has the bits r % 0x7C00 (finite float16), event/label[e] = 10e. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpuml/gpuml.h>

#define CHECK(call)                                                                                   \
    do {                                                                                              \
        gpuml_status s_ = (call);                                                                     \
        if (s_ != GPUML_OK) {                                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, gpuml_status_string(s_), gpuml_last_error()); \
            exit(1);                                                                                  \
        }                                                                                             \
    } while (0)
#define EXPECT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static void check_rows(const float *x, const uint8_t *flag, const uint16_t *half, int64_t first_row, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t r = first_row + i;
        for (int c = 0; c < 3; c++)
            EXPECT(x[3 * i + c] == (float)(3 * r + c));
        EXPECT(flag[i] == r % 2);
        EXPECT(half[i] == r % 0x7C00);
    }
}

static int read_file(const char *path)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    gpuml_ctx *ctx;
    CHECK(gpuml_ctx_create(&cfg, &ctx));
    gpuml_dataset *ds;
    CHECK(gpuml_dataset_open(path, &ds));
    int64_t nev = gpuml_dataset_num_events(ds);
    const int64_t *rs = gpuml_dataset_row_splits(ds);
    gpuml_strings cols;
    CHECK(gpuml_dataset_columns(ds, "features", &cols));
    EXPECT(cols.count == 3 && !strcmp(cols.items[0], "x") && !strcmp(cols.items[2], "énergie"));
    gpuml_strings_free(&cols);
    const char *names[] = {"features", "flag", "half", "event/label"};
    gpuml_tensor *trs, *out[4];
    CHECK(gpuml_dataset_read(ds, ctx, 0, nev, 4, names, &trs, out));
    EXPECT(gpuml_tensor_dtype(out[1]) == GPUML_BOOL && gpuml_tensor_dtype(out[2]) == GPUML_F16);
    check_rows(gpuml_tensor_data(out[0]), gpuml_tensor_data(out[1]), gpuml_tensor_data(out[2]), 0, rs[nev]);
    const int64_t *label = gpuml_tensor_data(out[3]);
    for (int64_t e = 0; e < nev; e++)
        EXPECT(label[e] == 10 * e);
    gpuml_tensor_destroy(trs);
    for (int i = 0; i < 4; i++)
        gpuml_tensor_destroy(out[i]);

    /* The loader, streaming from the h5py file (rs stays valid: ds open). */
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = path;
    lc.fields = names;
    lc.num_fields = 4;
    lc.max_rows = 50;
    lc.max_events = 4;
    lc.in_memory = 0;
    gpuml_loader *l;
    CHECK(gpuml_loader_create(ctx, &lc, &l));
    gpuml_batch *b;
    int64_t seen = 0;
    while (1) {
        CHECK(gpuml_loader_next(l, &b));
        if (!b)
            break;
        const int64_t *ids = gpuml_batch_event_ids(b), *brs = gpuml_tensor_data(gpuml_batch_row_splits(b));
        const float *x = gpuml_tensor_data(gpuml_batch_field(b, 0));
        const uint8_t *fl = gpuml_tensor_data(gpuml_batch_field(b, 1));
        const uint16_t *h = gpuml_tensor_data(gpuml_batch_field(b, 2));
        const int64_t *lab = gpuml_tensor_data(gpuml_batch_field(b, 3));
        for (int64_t i = 0; i < gpuml_batch_num_events(b); i++) {
            int64_t e = ids[i], o = brs[i];
            check_rows(x + 3 * o, fl + o, h + o, rs[e], rs[e + 1] - rs[e]);
            EXPECT(lab[i] == 10 * e);
            seen++;
        }
        gpuml_batch_destroy(b);
    }
    EXPECT(seen == nev);
    gpuml_loader_destroy(l);
    gpuml_dataset_close(ds);
    gpuml_ctx_destroy(ctx);
    printf("h5py_check: read %s: %lld events OK\n", path, (long long)nev);
    return 0;
}

static int write_files(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/c_dataset.h5", dir);
    gpuml_dataset_writer *w;
    CHECK(gpuml_dataset_writer_create(path, &w));
    const char *cols[] = {"x", "y", "énergie"};
    CHECK(gpuml_dataset_writer_add_field(w, "features", GPUML_F32, 1, (int64_t[]){3}, cols, 3));
    CHECK(gpuml_dataset_writer_add_field(w, "flag", GPUML_BOOL, 0, NULL, NULL, 0));
    CHECK(gpuml_dataset_writer_add_field(w, "half", GPUML_F16, 0, NULL, NULL, 0));
    CHECK(gpuml_dataset_writer_add_field(w, "event/label", GPUML_I64, 0, NULL, NULL, 0));
    int64_t row = 0;
    for (int64_t e = 0; e < 37; e++) {
        int64_t n = (e * 7) % 11;
        float x[3 * 16];
        uint8_t fl[16];
        uint16_t h[16];
        for (int64_t i = 0; i < n; i++, row++) {
            for (int c = 0; c < 3; c++)
                x[3 * i + c] = (float)(3 * row + c);
            fl[i] = (uint8_t)(row % 2);
            h[i] = (uint16_t)(row % 0x7C00);
        }
        int64_t label = 10 * e;
        CHECK(gpuml_dataset_writer_append(w, n, (const void *[]){x, fl, h, &label}));
    }
    CHECK(gpuml_dataset_writer_commit(w));

    snprintf(path, sizeof path, "%s/c_model.h5", dir);
    gpuml_h5_writer *m;
    CHECK(gpuml_h5_writer_open(path, &m));
    float wv[6] = {1, 2, 3, 4, 5, 6};
    gpuml_tensor *t;
    CHECK(gpuml_tensor_wrap(wv, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 2, (int64_t[]){2, 3}, NULL, NULL, &t));
    CHECK(gpuml_h5_writer_write(m, NULL, "/weights/conv1/weight", t));
    gpuml_tensor_destroy(t);
    CHECK(gpuml_h5_writer_set_attr_string(m, "/", "format", "gpuml-model"));
    CHECK(gpuml_h5_writer_set_attr_i64(m, "/", "format_version", 1));
    CHECK(gpuml_h5_writer_set_attr_f64(m, "/weights", "lr", 0.125));
    CHECK(gpuml_h5_writer_set_attr_i64_array(m, "/weights/conv1/weight", "shape", (int64_t[]){2, 3}, 2));
    CHECK(gpuml_h5_writer_set_attr_strings(m, "/", "layers", (const char *[]){"conv1", "head"}, 2));
    CHECK(gpuml_h5_writer_commit(m));
    printf("h5py_check: wrote %s/c_dataset.h5 and c_model.h5\n", dir);
    return 0;
}

static int validate(const char *path)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    gpuml_ctx *ctx;
    CHECK(gpuml_ctx_create(&cfg, &ctx));
    gpuml_dataset *ds;
    CHECK(gpuml_dataset_open(path, &ds));
    int nf = gpuml_dataset_num_fields(ds);
    const char *names[64];
    EXPECT(nf <= 64);
    for (int i = 0; i < nf; i++) {
        gpuml_field_info fi;
        CHECK(gpuml_dataset_field(ds, i, &fi));
        names[i] = fi.name;
    }
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = path;
    lc.fields = names;
    lc.num_fields = nf;
    lc.max_rows = 5000;
    gpuml_loader *l;
    CHECK(gpuml_loader_create(ctx, &lc, &l));
    gpuml_batch *b;
    int64_t events = 0, rows = 0;
    while (1) {
        CHECK(gpuml_loader_next(l, &b));
        if (!b)
            break;
        events += gpuml_batch_num_events(b);
        rows += gpuml_batch_num_rows(b);
        gpuml_batch_destroy(b);
    }
    EXPECT(events == gpuml_dataset_num_events(ds) && rows == gpuml_dataset_num_rows(ds));
    printf("h5py_check: %s: %d fields, %lld events, %lld rows OK\n", path, nf, (long long)events, (long long)rows);
    gpuml_loader_destroy(l);
    gpuml_dataset_close(ds);
    gpuml_ctx_destroy(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "validate"))
        return validate(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "read"))
        return read_file(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "write"))
        return write_files(argv[2]);
    fprintf(stderr, "usage: h5py_check read FILE | write DIR | validate FILE\n");
    return 2;
}
