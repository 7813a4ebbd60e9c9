/* tests/test_io.c - the HDF5 tensor/attribute layer: round trips of every
 * dtype and shape, attributes, atomic commit, validation errors, checksum
 * failures, and HDF5 bookkeeping (no identifiers left open, HDF5's error
 * printing silenced during gpuml calls and restored after). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"
#include "io_util.h"
#include "io/blake2b.h"

static gpuml_ctx *ctx;

static void check_h5_clean(void)
{
    assert_int_equal(io_h5_open_ids(), 0);
    assert_true(io_h5_autoprint_intact());
}

/* ---- round trips ------------------------------------------------------ */

typedef struct {
    int nd;
    int64_t shape[GPUML_MAX_DIMS];
} shape_case;

static const shape_case shapes[] = {
    {0, {0}},                        /* scalar                      */
    {1, {0}},                        /* empty                       */
    {3, {3, 0, 2}},                  /* empty inner axis            */
    {1, {1}},
    {1, {7}},
    {2, {4, 3}},
    {3, {2, 3, 5}},
    {8, {2, 1, 2, 1, 2, 1, 2, 3}},   /* rank 8                      */
    {2, {70000, 3}},                 /* several chunks (>1 MiB f32+) */
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static void fill_random(gpuml_dtype dt, void *p, size_t nbytes, uint64_t *rng)
{
    unsigned char *b = p;
    for (size_t i = 0; i < nbytes; i++)
        b[i] = (unsigned char)h_rand_u64(rng);
    if (dt == GPUML_BOOL)
        for (size_t i = 0; i < nbytes; i++)
            b[i] &= 1;
}

static void test_roundtrip_all_dtypes(void **state)
{
    (void)state;
    const char *path = io_path("rt.h5");
    uint64_t rng = 42;
    gpuml_tensor *src[GPUML_DTYPE_COUNT_][NSHAPES];
    gpuml_h5_writer *w;
    OK(gpuml_h5_writer_open(path, &w));
    for (int dt = 0; dt < GPUML_DTYPE_COUNT_; dt++) {
        for (int s = 0; s < NSHAPES; s++) {
            OK(gpuml_tensor_create(ctx, (gpuml_dtype)dt, shapes[s].nd, shapes[s].shape, &src[dt][s]));
            /* Random bytes: NaN payloads and denormals must survive too. */
            fill_random((gpuml_dtype)dt, gpuml_tensor_data(src[dt][s]), gpuml_tensor_nbytes(src[dt][s]), &rng);
            char name[64];
            snprintf(name, sizeof name, "/%s/s%d", gpuml_dtype_name((gpuml_dtype)dt), s);
            OK(gpuml_h5_writer_write(w, dt % 2 ? ctx : NULL, name, src[dt][s]));
        }
    }
    assert_false(io_exists(path));
    OK(gpuml_h5_writer_commit(w));
    assert_true(io_exists(path));
    assert_int_equal(io_count_files(".tmp."), 0);

    gpuml_h5_reader *r;
    OK(gpuml_h5_reader_open(path, &r));
    for (int dt = 0; dt < GPUML_DTYPE_COUNT_; dt++) {
        for (int s = 0; s < NSHAPES; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s/s%d", gpuml_dtype_name((gpuml_dtype)dt), s);
            gpuml_dtype got_dt;
            int got_nd;
            int64_t got_shape[GPUML_MAX_DIMS];
            OK(gpuml_h5_reader_info(r, name, &got_dt, &got_nd, got_shape));
            assert_int_equal(got_dt, dt);
            assert_int_equal(got_nd, shapes[s].nd);
            for (int i = 0; i < got_nd; i++)
                assert_int_equal(got_shape[i], shapes[s].shape[i]);

            gpuml_tensor *a = NULL, *b = NULL;
            OK(gpuml_tensor_create(ctx, (gpuml_dtype)dt, shapes[s].nd, shapes[s].shape, &a));
            OK(gpuml_h5_reader_read(r, ctx, name, a));
            OK(gpuml_h5_reader_read_new(r, ctx, name, (gpuml_dtype)dt, shapes[s].nd, NULL, &b));
            size_t nb = gpuml_tensor_nbytes(src[dt][s]);
            assert_int_equal(gpuml_tensor_nbytes(b), nb);
            assert_memory_equal(gpuml_tensor_data(a), gpuml_tensor_data(src[dt][s]), nb);
            assert_memory_equal(gpuml_tensor_data(b), gpuml_tensor_data(src[dt][s]), nb);
            gpuml_tensor_destroy(a);
            gpuml_tensor_destroy(b);
            gpuml_tensor_destroy(src[dt][s]);
        }
    }
    gpuml_strings m;
    OK(gpuml_h5_reader_list(r, "/", &m));
    assert_int_equal(m.count, GPUML_DTYPE_COUNT_);
    assert_string_equal(m.items[0], "bf16"); /* sorted by name */
    gpuml_strings_free(&m);
    assert_null(m.items);
    gpuml_h5_reader_close(r);
    check_h5_clean();
}

/* ---- attributes ------------------------------------------------------- */

static void test_attributes(void **state)
{
    (void)state;
    const char *path = io_path("attr.h5");
    gpuml_h5_writer *w;
    OK(gpuml_h5_writer_open(path, &w));
    float v[3] = {1, 2, 3};
    gpuml_tensor *t = h_tensor_f32(ctx, 1, (int64_t[]){3}, v);
    OK(gpuml_h5_writer_write(w, ctx, "weights/conv1/weight", t));
    gpuml_tensor_destroy(t);

    size_t big_n = 200000;
    char *big = malloc(big_n + 1);
    for (size_t i = 0; i < big_n; i++)
        big[i] = (char)('a' + i % 26);
    big[big_n] = '\0';
    const char *cols[] = {"x", "y", "énergie", ""};
    int64_t arr[1000];
    for (int i = 0; i < 1000; i++)
        arr[i] = (int64_t)i * 1000000007LL - 5;

    OK(gpuml_h5_writer_set_attr_string(w, "/", "format", "to be replaced"));
    OK(gpuml_h5_writer_set_attr_string(w, NULL, "format", "gpuml-model"));
    OK(gpuml_h5_writer_set_attr_string(w, "/", "empty", ""));
    OK(gpuml_h5_writer_set_attr_string(w, "/", "config", big));
    OK(gpuml_h5_writer_set_attr_strings(w, "/weights/conv1/weight", "columns", cols, 4));
    OK(gpuml_h5_writer_set_attr_strings(w, "/weights", "none", NULL, 0));
    OK(gpuml_h5_writer_set_attr_i64(w, "/state", "min", INT64_MIN)); /* creates /state */
    OK(gpuml_h5_writer_set_attr_i64(w, "/state", "max", INT64_MAX));
    OK(gpuml_h5_writer_set_attr_f64(w, "/state", "lr", 3e-4));
    OK(gpuml_h5_writer_set_attr_f64(w, "/state", "inf", -INFINITY));
    OK(gpuml_h5_writer_set_attr_i64_array(w, "/state", "arr", arr, 1000));
    OK(gpuml_h5_writer_set_attr_i64_array(w, "/state", "arr0", NULL, 0));
    expect_st(gpuml_h5_writer_set_attr_i64(w, "/weights/conv1/weight/x", "a", 1), GPUML_ERR_INVALID_ARGUMENT,
              "not a group", NULL);
    expect_st(gpuml_h5_writer_set_attr_i64(w, "/", "a/b", 1), GPUML_ERR_INVALID_ARGUMENT, "attribute name", NULL);
    OK(gpuml_h5_writer_commit(w));

    gpuml_h5_reader *r;
    OK(gpuml_h5_reader_open(path, &r));
    char buf[64];
    size_t len = 0;
    OK(gpuml_h5_reader_attr_string(r, "/", "format", buf, sizeof buf, &len));
    assert_string_equal(buf, "gpuml-model");
    assert_int_equal(len, 11);
    OK(gpuml_h5_reader_attr_string(r, NULL, "empty", buf, sizeof buf, &len));
    assert_string_equal(buf, "");
    expect_st(gpuml_h5_reader_attr_string(r, "/", "config", NULL, 0, &len), GPUML_ERR_INVALID_ARGUMENT,
              "needs a buffer", NULL);
    assert_int_equal(len, big_n);
    char *got = malloc(len + 1);
    OK(gpuml_h5_reader_attr_string(r, "/", "config", got, len + 1, NULL));
    assert_string_equal(got, big);
    free(got);
    free(big);

    gpuml_strings s;
    OK(gpuml_h5_reader_attr_strings(r, "weights/conv1/weight", "columns", &s));
    assert_int_equal(s.count, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(s.items[i], cols[i]);
    gpuml_strings_free(&s);
    OK(gpuml_h5_reader_attr_strings(r, "/weights", "none", &s));
    assert_int_equal(s.count, 0);
    gpuml_strings_free(&s);
    OK(gpuml_h5_reader_attr_strings(r, "/", "format", &s)); /* a scalar is a list of one */
    assert_int_equal(s.count, 1);
    gpuml_strings_free(&s);

    int64_t i64;
    double f64;
    OK(gpuml_h5_reader_attr_i64(r, "/state", "min", &i64));
    assert_true(i64 == INT64_MIN);
    OK(gpuml_h5_reader_attr_i64(r, "/state", "max", &i64));
    assert_true(i64 == INT64_MAX);
    OK(gpuml_h5_reader_attr_f64(r, "/state", "lr", &f64));
    assert_true(f64 == 3e-4);
    OK(gpuml_h5_reader_attr_f64(r, "/state", "inf", &f64));
    assert_true(isinf(f64) && f64 < 0);
    int64_t back[1000];
    size_t count = 0;
    OK(gpuml_h5_reader_attr_i64_array(r, "/state", "arr", back, 1000, &count));
    assert_int_equal(count, 1000);
    assert_memory_equal(back, arr, sizeof arr);
    expect_st(gpuml_h5_reader_attr_i64_array(r, "/state", "arr", back, 999, &count), GPUML_ERR_INVALID_ARGUMENT,
              "cap", NULL);
    OK(gpuml_h5_reader_attr_i64_array(r, "/state", "arr0", NULL, 0, &count));
    assert_int_equal(count, 0);

    /* Type checks and absent things. */
    expect_st(gpuml_h5_reader_attr_i64(r, "/", "format", &i64), GPUML_ERR_FORMAT, "is a string", "expected an integer");
    expect_st(gpuml_h5_reader_attr_f64(r, "/state", "min", &f64), GPUML_ERR_FORMAT, "is an integer", NULL);
    expect_st(gpuml_h5_reader_attr_string(r, "/state", "lr", buf, sizeof buf, NULL), GPUML_ERR_FORMAT, "is a float",
              NULL);
    expect_st(gpuml_h5_reader_attr_i64(r, "/state", "arr", &i64), GPUML_ERR_FORMAT, "holds 1000 values", NULL);
    expect_st(gpuml_h5_reader_attr_string(r, "/", "columns", buf, sizeof buf, NULL), GPUML_ERR_NOT_FOUND,
              "no attribute 'columns'", "attr.h5");
    expect_st(gpuml_h5_reader_attr_i64(r, "/nowhere", "x", &i64), GPUML_ERR_NOT_FOUND, "no object '/nowhere'", NULL);

    gpuml_h5_kind k;
    OK(gpuml_h5_reader_kind(r, "/weights", &k));
    assert_int_equal(k, GPUML_H5_GROUP);
    OK(gpuml_h5_reader_kind(r, "/weights/conv1/weight", &k));
    assert_int_equal(k, GPUML_H5_DATASET);
    OK(gpuml_h5_reader_kind(r, "/weights/conv1/weight/below", &k));
    assert_int_equal(k, GPUML_H5_NONE);
    OK(gpuml_h5_reader_kind(r, "/missing/deeper", &k));
    assert_int_equal(k, GPUML_H5_NONE);
    gpuml_strings m;
    OK(gpuml_h5_reader_list(r, "weights/conv1", &m));
    assert_int_equal(m.count, 1);
    assert_string_equal(m.items[0], "weight");
    gpuml_strings_free(&m);
    expect_st(gpuml_h5_reader_list(r, "weights/conv1/weight", &m), GPUML_ERR_FORMAT, "is a dataset",
              "expected a group");
    gpuml_h5_reader_close(r);
    check_h5_clean();
}

/* ---- atomic commit ---------------------------------------------------- */

static void write_one(const char *path, float value, int commit)
{
    gpuml_h5_writer *w;
    OK(gpuml_h5_writer_open(path, &w));
    gpuml_tensor *t = h_tensor_f32(ctx, 1, (int64_t[]){1}, &value);
    OK(gpuml_h5_writer_write(w, ctx, "v", t));
    gpuml_tensor_destroy(t);
    if (commit)
        OK(gpuml_h5_writer_commit(w));
    else
        gpuml_h5_writer_abort(w);
}

static float read_one(const char *path)
{
    gpuml_h5_reader *r;
    OK(gpuml_h5_reader_open(path, &r));
    float v = NAN;
    gpuml_tensor *t = NULL;
    OK(gpuml_h5_reader_read_new(r, ctx, "v", GPUML_F32, 1, (int64_t[]){1}, &t));
    memcpy(&v, gpuml_tensor_data(t), sizeof v);
    gpuml_tensor_destroy(t);
    gpuml_h5_reader_close(r);
    return v;
}

static void test_atomic_commit(void **state)
{
    (void)state;
    const char *path = io_path("atomic.h5");
    write_one(path, 1.0f, 0); /* aborted: nothing appears */
    assert_false(io_exists(path));
    assert_int_equal(io_count_files("atomic.h5"), 0);
    write_one(path, 1.0f, 1);
    assert_true(read_one(path) == 1.0f);
    write_one(path, 2.0f, 0); /* aborted over an existing file: intact */
    assert_true(read_one(path) == 1.0f);

    /* A writer whose process dies before commit: the real name keeps the
     * old contents (the stale temporary is all that is left behind). */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        gpuml_h5_writer *w;
        if (gpuml_h5_writer_open(path, &w) != GPUML_OK)
            _exit(1);
        float v = 3.0f;
        gpuml_tensor *t = NULL;
        gpuml_tensor_wrap(&v, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 1, (int64_t[]){1}, NULL, NULL, &t);
        gpuml_h5_writer_write(w, NULL, "v", t);
        _exit(0); /* no commit, no abort, no atexit handlers */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(read_one(path) == 1.0f);
    assert_int_equal(io_count_files("atomic.h5.tmp."), 1);

    write_one(path, 4.0f, 1);
    assert_true(read_one(path) == 4.0f);

    /* Two writers of one target at once get separate temporaries. */
    gpuml_h5_writer *a, *b;
    OK(gpuml_h5_writer_open(path, &a));
    OK(gpuml_h5_writer_open(path, &b));
    assert_int_equal(io_count_files("atomic.h5.tmp."), 3);
    gpuml_h5_writer_abort(a);
    OK(gpuml_h5_writer_commit(b)); /* an empty file is a valid file */
    gpuml_h5_reader *r;
    OK(gpuml_h5_reader_open(path, &r));
    gpuml_strings m;
    OK(gpuml_h5_reader_list(r, "/", &m));
    assert_int_equal(m.count, 0);
    gpuml_strings_free(&m);
    gpuml_h5_reader_close(r);

    /* A missing directory fails at open, with the OS's reason. */
    gpuml_h5_writer *w = (gpuml_h5_writer *)1;
    expect_st(gpuml_h5_writer_open(io_path("no/such/dir.h5"), &w), GPUML_ERR_IO, "cannot create", NULL);
    assert_null(w);
    check_h5_clean();
}

/* ---- validation errors ------------------------------------------------ */

static void test_read_errors(void **state)
{
    (void)state;
    const char *path = io_path("err.h5");
    gpuml_h5_writer *w;
    OK(gpuml_h5_writer_open(path, &w));
    float v[6] = {1, 2, 3, 4, 5, 6};
    gpuml_tensor *t = h_tensor_f32(ctx, 2, (int64_t[]){2, 3}, v);
    OK(gpuml_h5_writer_write(w, ctx, "/weights/a", t));
    expect_st(gpuml_h5_writer_write(w, ctx, "/weights/a", t), GPUML_ERR_INVALID_ARGUMENT, "already exists", NULL);
    expect_st(gpuml_h5_writer_write(w, ctx, "/weights/a/b", t), GPUML_ERR_INVALID_ARGUMENT, "not a group", NULL);
    expect_st(gpuml_h5_writer_write(w, ctx, "/weights//b", t), GPUML_ERR_INVALID_ARGUMENT, "empty", NULL);
    expect_st(gpuml_h5_writer_write(w, ctx, "/weights/../b", t), GPUML_ERR_INVALID_ARGUMENT, "'..'", NULL);
    expect_st(gpuml_h5_writer_write(w, ctx, "", t), GPUML_ERR_INVALID_ARGUMENT, "empty", NULL);
    expect_st(gpuml_h5_writer_write(w, ctx, "/", t), GPUML_ERR_INVALID_ARGUMENT, "root", NULL);
    expect_st(gpuml_h5_writer_write(w, ctx, "x", NULL), GPUML_ERR_INVALID_ARGUMENT, "'t' is NULL", NULL);
    gpuml_tensor *fake = NULL;
    OK(gpuml_tensor_wrap(v, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 1, (int64_t[]){2}, NULL, NULL, &fake));
    expect_st(gpuml_h5_writer_write(w, ctx, "x", fake), GPUML_ERR_DEVICE_MISMATCH, "cuda:0", NULL);
    gpuml_tensor_destroy(fake);
    /* Argument errors leave the writer usable. */
    OK(gpuml_h5_writer_commit(w));

    gpuml_h5_reader *r;
    OK(gpuml_h5_reader_open(path, &r));
    gpuml_tensor *wrong = NULL, *out = (gpuml_tensor *)1;
    OK(gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){3, 2}, &wrong));
    expect_st(gpuml_h5_reader_read(r, ctx, "/weights/a", wrong), GPUML_ERR_FORMAT, "err.h5",
              "'/weights/a' is [2, 3] f32, expected [3, 2] f32");
    gpuml_tensor_destroy(wrong);
    OK(gpuml_tensor_create(ctx, GPUML_F64, 2, (int64_t[]){2, 3}, &wrong));
    expect_st(gpuml_h5_reader_read(r, NULL, "/weights/a", wrong), GPUML_ERR_FORMAT, "f32, expected [2, 3] f64", NULL);
    gpuml_tensor_destroy(wrong);
    expect_st(gpuml_h5_reader_read_new(r, ctx, "/weights/a", GPUML_F32, 2, (int64_t[]){-1, 4}, &out), GPUML_ERR_FORMAT,
              "expected [-1, 4] f32", NULL);
    assert_null(out);
    OK(gpuml_h5_reader_read_new(r, ctx, "/weights/a", GPUML_F32, 2, (int64_t[]){-1, 3}, &out));
    gpuml_tensor_destroy(out);
    expect_st(gpuml_h5_reader_read_new(r, ctx, "/weights/b", GPUML_F32, 2, NULL, &out), GPUML_ERR_NOT_FOUND,
              "no dataset '/weights/b'", "err.h5");
    expect_st(gpuml_h5_reader_read_new(r, ctx, "/weights", GPUML_F32, 2, NULL, &out), GPUML_ERR_FORMAT,
              "is a group, expected a dataset", NULL);
    expect_st(gpuml_h5_reader_read_new(r, ctx, "/weights/a/x", GPUML_F32, 2, NULL, &out), GPUML_ERR_NOT_FOUND, NULL,
              NULL);
    expect_st(gpuml_h5_reader_read_new(r, ctx, "/weights/a", GPUML_F32, 2, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT,
              NULL, NULL);
    /* dst on a device the context cannot reach. */
    OK(gpuml_tensor_wrap(v, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 2, (int64_t[]){2, 3}, NULL, NULL, &fake));
    expect_st(gpuml_h5_reader_read(r, ctx, "/weights/a", fake), GPUML_ERR_DEVICE_MISMATCH, NULL, NULL);
    gpuml_tensor_destroy(fake);
    gpuml_h5_reader_close(r);
    gpuml_tensor_destroy(t);

    /* Files that are not (valid) HDF5. Nothing may reach stderr. */
    io_stderr_begin();
    gpuml_status st_missing = gpuml_h5_reader_open(io_path("missing.h5"), &r);
    char msg_missing[1024];
    snprintf(msg_missing, sizeof msg_missing, "%s", gpuml_last_error());
    io_write_file(io_path("garbage.h5"), "this is not an HDF5 file at all, just text...", 46);
    gpuml_status st_garbage = gpuml_h5_reader_open(io_path("garbage.h5"), &r);
    long n = io_file_size(path);
    long size;
    void *bytes = io_read_file(path, &size);
    io_write_file(io_path("trunc.h5"), bytes, n / 2);
    free(bytes);
    /* gpuml's own file: its checksum block records the size */
    gpuml_status st_cut = gpuml_h5_reader_open(io_path("trunc.h5"), &r);
    char msg_cut[1024];
    snprintf(msg_cut, sizeof msg_cut, "%s", gpuml_last_error());
    /* without the checksum, HDF5 itself finds the damage */
    io_strip_checksum(io_path("trunc.h5"));
    gpuml_status st_trunc = gpuml_h5_reader_open(io_path("trunc.h5"), &r);
    char msg_trunc[1024];
    snprintf(msg_trunc, sizeof msg_trunc, "%s", gpuml_last_error());
    gpuml_status st_dir = gpuml_h5_reader_open(io_tmpdir, &r);
    long printed = io_stderr_end();
    assert_int_equal(st_missing, GPUML_ERR_IO);
    assert_non_null(strstr(msg_missing, "No such file"));
    assert_int_equal(st_garbage, GPUML_ERR_FORMAT);
    assert_int_equal(st_cut, GPUML_ERR_FORMAT);
    assert_non_null(strstr(msg_cut, "truncated"));
    assert_non_null(strstr(msg_cut, "trunc.h5"));
    assert_int_equal(st_trunc, GPUML_ERR_FORMAT);
    assert_non_null(strstr(msg_trunc, "HDF5:")); /* HDF5's own reason is in the message */
    assert_non_null(strstr(msg_trunc, "trunc.h5"));
    assert_int_equal(st_dir, GPUML_ERR_IO);
    assert_int_equal(printed, 0);
    check_h5_clean();
}

/* A flipped byte in a dataset's data is caught by the whole-file checksum
 * at open, and in a file without one by the dataset's Fletcher32. */
static void test_checksum(void **state)
{
    (void)state;
    const char *path = io_path("sum.h5");
    int32_t v[64];
    for (int i = 0; i < 64; i++)
        v[i] = 0x5A5A0000 + i;
    gpuml_h5_writer *w;
    OK(gpuml_h5_writer_open(path, &w));
    gpuml_tensor *t = h_tensor(ctx, GPUML_I32, 1, (int64_t[]){64}, v);
    OK(gpuml_h5_writer_write(w, ctx, "data", t));
    OK(gpuml_h5_writer_commit(w));
    long at = io_find_bytes(path, &v[10], sizeof v[10]);
    assert_true(at > 0);
    unsigned char x = 0x77;
    io_poke(path, at, &x, 1);
    gpuml_h5_reader *r = (gpuml_h5_reader *)1;
    expect_st(gpuml_h5_reader_open(path, &r), GPUML_ERR_FORMAT, "sum.h5", "checksum");
    assert_null(r);
    int verified = 1;
    expect_st(gpuml_file_verify(path, &verified), GPUML_ERR_FORMAT, "sum.h5", "corrupted");
    assert_int_equal(verified, 0);
    io_strip_checksum(path);
    OK(gpuml_file_verify(path, &verified));
    assert_int_equal(verified, 0);
    OK(gpuml_h5_reader_open(path, &r));
    int32_t before[64];
    memcpy(before, gpuml_tensor_data(t), sizeof before);
    io_stderr_begin();
    gpuml_status st = gpuml_h5_reader_read(r, ctx, "data", t);
    long printed = io_stderr_end();
    expect_st(st, GPUML_ERR_FORMAT, "sum.h5", "Fletcher32");
    assert_int_equal(printed, 0);
    assert_memory_equal(gpuml_tensor_data(t), before, sizeof before); /* dst untouched */
    gpuml_tensor_destroy(t);
    gpuml_h5_reader_close(r);

    /* Cut short after open: HDF5 would read zeros that pass the checksum. */
    int32_t big[100000];
    for (int i = 0; i < 100000; i++)
        big[i] = i + 1;
    OK(gpuml_h5_writer_open(path, &w));
    t = h_tensor(ctx, GPUML_I32, 1, (int64_t[]){100000}, big);
    OK(gpuml_h5_writer_write(w, ctx, "data", t));
    OK(gpuml_h5_writer_commit(w));
    OK(gpuml_h5_reader_open(path, &r));
    assert_int_equal(truncate(path, io_file_size(path) / 2), 0);
    expect_st(gpuml_h5_reader_read(r, ctx, "data", t), GPUML_ERR_IO, "cut short", "sum.h5");
    gpuml_tensor_destroy(t);
    gpuml_h5_reader_close(r);
    check_h5_clean();
}

/* BLAKE2b against Python's hashlib.blake2b (digest_size 32, and 64 for the
 * RFC 7693 appendix A value). */
static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_blake2b_vectors(void **state)
{
    (void)state;
    unsigned char big[1280], d[64];
    char h[129];
    for (int i = 0; i < 1280; i++)
        big[i] = (unsigned char)(i % 256);
    struct {
        const void *msg;
        size_t n, outlen;
        const char *want;
    } cases[] = {
        {"", 0, 32, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"},
        {"abc", 3, 32, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"},
        {big, 1280, 32, "82628cbfc9689e234b0923a531f4578fe2e7138a03e2f81ed6cde97517336650"},
        {"abc", 3, 64,
         "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab9"
         "2386edd4009923"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* whole, and fed in uneven pieces across block boundaries */
        for (size_t piece = 0; piece < 3; piece++) {
            io_blake2b s;
            io_blake2b_init(&s, cases[c].outlen);
            size_t step = piece == 0 ? cases[c].n + 1 : piece == 1 ? 1 : 127;
            for (size_t at = 0; at < cases[c].n; at += step)
                io_blake2b_update(&s, (const char *)cases[c].msg + at, at + step < cases[c].n ? step : cases[c].n - at);
            io_blake2b_final(&s, d);
            hex(d, cases[c].outlen, h);
            assert_string_equal(h, cases[c].want);
        }
    }
}

/* The checksum block: present and verified on every file the writer makes;
 * any change to the file (header fields, digest, HDF5 part, size) is
 * FORMAT; a file without one is readable and reported unverified. */
static void test_file_checksum(void **state)
{
    (void)state;
    const char *path = io_path("blk.h5"), *copy = io_path("blk2.h5");
    float v[32];
    for (int i = 0; i < 32; i++)
        v[i] = (float)i;
    gpuml_h5_writer *w;
    OK(gpuml_h5_writer_open(path, &w));
    gpuml_tensor *t = h_tensor(ctx, GPUML_F32, 1, (int64_t[]){32}, v);
    OK(gpuml_h5_writer_write(w, ctx, "x", t));
    OK(gpuml_h5_writer_commit(w));
    int verified = 0;
    OK(gpuml_file_verify(path, &verified));
    assert_int_equal(verified, 1);
    long size = 0;
    unsigned char *orig = io_read_file(path, &size);
    assert_memory_equal(orig, "GPUMLSUM", 8);
    /* one byte changed in each part: version, algorithm, length, digest,
     * reserved, the HDF5 superblock, the last byte */
    long spots[] = {8, 12, 16, 23, 24, 55, 56, 511, 512, 520, size - 1};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        io_write_file(copy, orig, size);
        unsigned char b = orig[spots[i]] ^ 0x01;
        io_poke(copy, spots[i], &b, 1);
        verified = 1;
        gpuml_status st = gpuml_file_verify(copy, &verified);
        if (st != GPUML_ERR_FORMAT)
            fail_msg("byte %ld flipped: %s", spots[i], gpuml_status_string(st));
        assert_int_equal(verified, 0);
        gpuml_h5_reader *r = (gpuml_h5_reader *)1;
        expect_st(gpuml_h5_reader_open(copy, &r), GPUML_ERR_FORMAT, "blk2.h5", NULL);
        assert_null(r);
    }
    /* a byte appended, a byte cut off */
    io_write_file(copy, orig, size);
    FILE *f = fopen(copy, "ab");
    fputc(0, f);
    fclose(f);
    expect_st(gpuml_file_verify(copy, &verified), GPUML_ERR_FORMAT, "extended", NULL);
    io_write_file(copy, orig, size - 1);
    expect_st(gpuml_file_verify(copy, &verified), GPUML_ERR_FORMAT, "truncated", NULL);
    /* the magic gone: an unverified file, still readable */
    io_write_file(copy, orig, size);
    io_strip_checksum(copy);
    OK(gpuml_file_verify(copy, &verified));
    assert_int_equal(verified, 0);
    gpuml_h5_reader *r;
    OK(gpuml_h5_reader_open(copy, &r));
    OK(gpuml_h5_reader_read(r, ctx, "x", t));
    gpuml_h5_reader_close(r);
    /* a file HDF5 wrote without a user block; a file too small for one */
    hid_t hf = H5Fcreate(copy, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(hf);
    OK(gpuml_file_verify(copy, &verified));
    assert_int_equal(verified, 0);
    OK(gpuml_h5_reader_open(copy, &r));
    gpuml_h5_reader_close(r);
    io_write_file(copy, "GPUMLSUM", 8);
    OK(gpuml_file_verify(copy, &verified));
    assert_int_equal(verified, 0);
    expect_st(gpuml_file_verify(io_path("none.h5"), &verified), GPUML_ERR_IO, "none.h5", NULL);
    expect_st(gpuml_file_verify(NULL, &verified), GPUML_ERR_INVALID_ARGUMENT, "path", NULL);
    expect_st(gpuml_file_verify(path, NULL), GPUML_ERR_INVALID_ARGUMENT, "verified", NULL);
    free(orig);
    gpuml_tensor_destroy(t);
    check_h5_clean();
}

/* HDF5 files written by others: big-endian data, no checksums, h5py's bool
 * and float16, fixed-length strings; and things gpuml refuses. Written
 * here with the HDF5 C API directly. */
static void test_foreign_files(void **state)
{
    (void)state;
    const char *path = io_path("foreign.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d3 = 3;
    hid_t s3 = H5Screate_simple(1, &d3, NULL);
    double dv[3] = {1.5, -2.25, 1e300};
    hid_t ds = H5Dcreate2(f, "be", H5T_IEEE_F64BE, s3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, dv);
    H5Dclose(ds);
    int16_t sv[3] = {1, 2, 3};
    ds = H5Dcreate2(f, "i16", H5T_STD_I16LE, s3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, sv);
    H5Dclose(ds);
    ds = H5Dcreate2(f, "unwritten", H5T_NATIVE_FLOAT, s3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds);
    hid_t st16 = H5Tcopy(H5T_C_S1);
    H5Tset_size(st16, 16);
    H5Tset_strpad(st16, H5T_STR_SPACEPAD);
    hid_t sc = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "fixed", st16, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st16, "padded          ");
    H5Aclose(a);
    uint64_t huge = UINT64_MAX;
    a = H5Acreate2(f, "u64", H5T_STD_U64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT64, &huge);
    H5Aclose(a);
    uint32_t small = 7;
    a = H5Acreate2(f, "u32", H5T_STD_U32BE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT32, &small);
    H5Aclose(a);
    H5Lcreate_soft("/be", f, "soft", H5P_DEFAULT, H5P_DEFAULT);
    H5Lcreate_external("/etc/passwd", "/x", f, "ext", H5P_DEFAULT, H5P_DEFAULT);
    H5Tclose(st16);
    H5Sclose(sc);
    H5Sclose(s3);
    H5Fclose(f);

    gpuml_h5_reader *r;
    OK(gpuml_h5_reader_open(path, &r));
    gpuml_tensor *t = NULL;
    OK(gpuml_h5_reader_read_new(r, ctx, "be", GPUML_F64, 1, NULL, &t));
    assert_memory_equal(gpuml_tensor_data(t), dv, sizeof dv);
    gpuml_tensor_destroy(t);
    expect_st(gpuml_h5_reader_read_new(r, ctx, "i16", GPUML_I32, 1, NULL, &t), GPUML_ERR_FORMAT, "16-bit integer",
              "'/i16'");
    expect_st(gpuml_h5_reader_read_new(r, ctx, "unwritten", GPUML_F32, 1, NULL, &t), GPUML_ERR_FORMAT,
              "never written", NULL);
    expect_st(gpuml_h5_reader_read_new(r, ctx, "soft", GPUML_F64, 1, NULL, &t), GPUML_ERR_FORMAT, "link", NULL);
    expect_st(gpuml_h5_reader_read_new(r, ctx, "ext", GPUML_F64, 1, NULL, &t), GPUML_ERR_FORMAT, "link", NULL);
    gpuml_h5_kind k;
    OK(gpuml_h5_reader_kind(r, "ext", &k));
    assert_int_equal(k, GPUML_H5_OTHER);
    char buf[32];
    OK(gpuml_h5_reader_attr_string(r, "/", "fixed", buf, sizeof buf, NULL));
    assert_string_equal(buf, "padded");
    int64_t i64;
    expect_st(gpuml_h5_reader_attr_i64(r, "/", "u64", &i64), GPUML_ERR_FORMAT, "does not fit int64", NULL);
    OK(gpuml_h5_reader_attr_i64(r, "/", "u32", &i64));
    assert_int_equal(i64, 7);
    gpuml_h5_reader_close(r);
    check_h5_clean();
}

/* The lock is recursive and HDF5 state is restored even when a caller
 * changed the error handler itself. */
static herr_t my_handler(hid_t stack, void *data)
{
    (void)stack;
    ++*(int *)data;
    return 0;
}

static void test_error_handler_restored(void **state)
{
    (void)state;
    int calls = 0;
    H5E_auto2_t old_fn;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, my_handler, &calls);
    gpuml_h5_reader *r = NULL;
    expect_st(gpuml_h5_reader_open(io_path("garbage2.h5"), &r), GPUML_ERR_IO, NULL, NULL);
    io_write_file(io_path("garbage2.h5"), "garbage", 7);
    expect_st(gpuml_h5_reader_open(io_path("garbage2.h5"), &r), GPUML_ERR_FORMAT, "not an HDF5 file", NULL);
    assert_int_equal(calls, 0); /* gpuml's failures did not reach the handler */
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    assert_true(fn == my_handler && data == &calls);
    H5Fopen(io_path("garbage2.h5"), H5F_ACC_RDONLY, H5P_DEFAULT); /* the caller's own failure: reported */
    assert_int_equal(calls, 1);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    check_h5_clean();
}

int main(void)
{
    io_tmpdir_create();
    io_h5_autoprint_record();
    io_h5_ids_baseline();
    ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_dtypes),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_atomic_commit),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_checksum),
        cmocka_unit_test(test_blake2b_vectors),
        cmocka_unit_test(test_file_checksum),
        cmocka_unit_test(test_foreign_files),
        cmocka_unit_test(test_error_handler_restored),
    };
    int fails = cmocka_run_group_tests(tests, NULL, NULL);
    gpuml_ctx_destroy(ctx);
    io_tmpdir_remove();
    return fails;
}
