/* tests/test_driver_fields.c - the training drivers' check of the
 * "event/n_showers" count field (examples/common/driver.h): only one
 * integer per event (i32, i64, u8), read in its own dtype, each value a
 * count in range; anything else is a clear error, never a read past the
 * data or an absurd allocation. */
#include "../examples/common/driver.h"

#include <setjmp.h>
#include <stddef.h>

#include <cmocka.h>

static char g_dir[256];

/* A dataset of 3 events (1 row each) whose "event/n_showers" has dtype dt
 * and per-event shape (ndim, shape), filled from values (one entry per
 * event element). */
static const char *write_counts(const char *name, gpuml_dtype dt, int ndim, const int64_t *shape, const void *values)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.h5", g_dir, name);
    gpuml_dataset_writer *w;
    assert_int_equal(gpuml_dataset_writer_create(path, &w), GPUML_OK);
    assert_int_equal(gpuml_dataset_writer_add_field(w, "features", GPUML_F32, 1, (int64_t[]){2}, NULL, 0), GPUML_OK);
    assert_int_equal(gpuml_dataset_writer_add_field(w, "event/n_showers", dt, ndim, shape, NULL, 0), GPUML_OK);
    size_t per = gpuml_dtype_size(dt) * (size_t)(ndim ? shape[0] : 1);
    for (int e = 0; e < 3; e++) {
        float x[2] = {(float)e, 1.0f};
        const void *data[2] = {x, (const char *)values + (size_t)e * per};
        assert_int_equal(gpuml_dataset_writer_append(w, 1, data), GPUML_OK);
    }
    assert_int_equal(gpuml_dataset_writer_commit(w), GPUML_OK);
    return path;
}

static void expect_max(const char *path, int64_t limit, int64_t want)
{
    char err[1024] = "";
    int64_t got = -1;
    if (field_max_count_checked(path, "event/n_showers", limit, &got, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(got, want);
}

static void expect_error(const char *path, int64_t limit, const char *must)
{
    char err[1024] = "";
    int64_t got = -1;
    assert_int_equal(field_max_count_checked(path, "event/n_showers", limit, &got, err, sizeof err), -1);
    assert_int_equal(got, -1); /* untouched */
    if (!strstr(err, must) || !strstr(err, path))
        fail_msg("message '%s' lacks '%s' or the file name", err, must);
}

static void test_counts_read_in_their_dtype(void **state)
{
    (void)state;
    int32_t i32[3] = {3, 7, 0};
    int64_t i64[3] = {4, 1, 9};
    uint8_t u8[3] = {5, 250, 1};
    expect_max(write_counts("i32", GPUML_I32, 0, NULL, i32), 1 << 16, 7);
    expect_max(write_counts("i64", GPUML_I64, 0, NULL, i64), 1 << 16, 9);
    expect_max(write_counts("u8", GPUML_U8, 0, NULL, u8), 1 << 16, 250); /* was read as i32, past the data */
    expect_error(write_counts("u8", GPUML_U8, 0, NULL, u8), 100, "not a count in [0, 100]");
}

static void test_bad_count_fields_are_errors(void **state)
{
    (void)state;
    float f32[3] = {1.0f, 2.0f, 3.0f}; /* was read as i32: 1065353216 showers, 85 GB */
    expect_error(write_counts("f32", GPUML_F32, 0, NULL, f32), 1 << 16, "one integer (i32, i64 or u8) per event");
    int32_t two[6] = {1, 2, 3, 4, 5, 6};
    expect_error(write_counts("vec", GPUML_I32, 1, (int64_t[]){2}, two), 1 << 16, "1-d");
    int32_t neg[3] = {1, -4, 2};
    expect_error(write_counts("neg", GPUML_I32, 0, NULL, neg), 1 << 16, "-4, not a count");
    int64_t huge[3] = {1, (int64_t)1 << 40, 2};
    expect_error(write_counts("huge", GPUML_I64, 0, NULL, huge), 1 << 16, "not a count");
    char err[1024];
    int64_t got = -1;
    const char *p = write_counts("i32b", GPUML_I32, 0, NULL, (int32_t[]){1, 2, 3});
    assert_int_equal(field_max_count_checked(p, "event/n_tracks", 10, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "has no field 'event/n_tracks'"));
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.h5", g_dir);
    assert_int_equal(field_max_count_checked(missing, "event/n_showers", 10, &got, err, sizeof err), -1);
    assert_non_null(strstr(err, "none.h5"));
}

int main(void)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/gpuml_fields_XXXXXX", tmp);
    if (!mkdtemp(g_dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_read_in_their_dtype),
        cmocka_unit_test(test_bad_count_fields_are_errors),
    };
    int rc = cmocka_run_group_tests_name("driver_fields", tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return rc;
}
