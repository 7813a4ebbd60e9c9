/* tests/test_core.c - status, context, tensors, views, copies, caching
 * allocator, arena, pinned memory, RNG state, logging. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static void test_status_strings(void **state)
{
    (void)state;
    assert_string_equal(gpuml_status_string(GPUML_OK), "GPUML_OK");
    assert_string_equal(gpuml_status_string(GPUML_ERR_SHAPE), "GPUML_ERR_SHAPE");
    assert_string_equal(gpuml_status_string(GPUML_ERR_NO_DEVICE), "GPUML_ERR_NO_DEVICE");
    assert_string_equal(gpuml_status_string((gpuml_status)999), "GPUML_ERR_UNKNOWN");
    for (int i = 0; i < GPUML_STATUS_COUNT_; i++)
        for (int j = i + 1; j < GPUML_STATUS_COUNT_; j++)
            assert_string_not_equal(gpuml_status_string((gpuml_status)i), gpuml_status_string((gpuml_status)j));
    assert_string_equal(gpuml_version(), GPUML_VERSION_STRING);
    assert_true(gpuml_has_feature("openmp") == 0 || gpuml_has_feature("openmp") == 1);
    assert_int_equal(gpuml_has_feature("no-such-feature"), 0);
    assert_int_equal(gpuml_has_feature(NULL), 0);
}

static void test_ctx_cpu(void **state)
{
    (void)state;
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.num_threads = 3;
    cfg.seed = 42;
    gpuml_ctx *ctx = NULL;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_OK);
    assert_int_equal(gpuml_ctx_device(ctx).type, GPUML_DEVICE_CPU);
    assert_int_equal(gpuml_ctx_num_threads(ctx), 3);
    assert_null(gpuml_ctx_stream(ctx));
    assert_int_equal(gpuml_ctx_set_num_threads(ctx, 0), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_ctx_last_error(ctx), "gpuml_ctx_set_num_threads"));
    assert_int_equal(gpuml_ctx_num_threads(ctx), 3);
    assert_int_equal(gpuml_ctx_set_num_threads(ctx, 1), GPUML_OK);
    assert_int_equal(gpuml_ctx_synchronize(ctx), GPUML_OK);
    gpuml_ctx_destroy(ctx);
    gpuml_ctx_destroy(NULL);
    /* accessors and setters on NULL: harmless defaults, no crash */
    assert_int_equal(gpuml_ctx_device(NULL).type, GPUML_DEVICE_CPU);
    assert_null(gpuml_ctx_stream(NULL));
    assert_int_equal(gpuml_ctx_num_threads(NULL), 0);
    gpuml_ctx_set_seed(NULL, 1);
    gpuml_ctx_set_rng_state(NULL, 1, 2);
    uint64_t sd = 7, cn = 9;
    gpuml_ctx_get_rng_state(NULL, &sd, &cn);
    assert_true(sd == 7 && cn == 9);
    gpuml_ctx_reset_peak(NULL);
    gpuml_ctx_fail_allocation_after(NULL, 3);
    gpuml_ctx_release_cached(NULL);

    assert_int_equal(gpuml_ctx_create(NULL, &ctx), GPUML_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_int_equal(gpuml_ctx_create(&cfg, NULL), GPUML_ERR_INVALID_ARGUMENT);
    cfg.device.type = (gpuml_device_type)7;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "device.type"));
}

static void test_ctx_cuda_absent_or_present(void **state)
{
    (void)state;
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.device.type = GPUML_DEVICE_CUDA;
    gpuml_ctx *ctx = NULL;
    gpuml_status st = gpuml_ctx_create(&cfg, &ctx);
    if (gpuml_cuda_device_count() == 0) {
        /* The no-GPU path: a clear error, and the CPU keeps working. */
        assert_int_equal(st, GPUML_ERR_NO_DEVICE);
        assert_null(ctx);
        assert_non_null(strstr(gpuml_last_error(), "gpuml_ctx_create"));
        assert_true(strstr(gpuml_last_error(), "no usable GPU") || strstr(gpuml_last_error(), "without CUDA"));
        gpuml_ctx *cpu = h_ctx(GPUML_DEVICE_CPU, 1);
        assert_non_null(cpu);
        gpuml_ctx_destroy(cpu);
    } else {
        assert_int_equal(st, GPUML_OK);
        assert_non_null(gpuml_ctx_stream(ctx));
        assert_int_equal(gpuml_ctx_synchronize(ctx), GPUML_OK);
        gpuml_ctx_destroy(ctx);
        cfg.device.index = gpuml_cuda_device_count();
        assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_ERR_NO_DEVICE);
    }
}

static void *thread_error(void *arg)
{
    (void)arg;
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.log_level = (gpuml_log_level)99;
    gpuml_ctx *ctx;
    gpuml_ctx_create(&cfg, &ctx);
    return strstr(gpuml_last_error(), "log_level") ? (void *)1 : NULL;
}

static void test_last_error_per_thread(void **state)
{
    (void)state;
    gpuml_clear_error();
    assert_string_equal(gpuml_last_error(), "");
    gpuml_tensor *t;
    assert_int_equal(gpuml_tensor_wrap(NULL, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 1, (int64_t[]){3}, NULL,
                                       NULL, &t),
                     GPUML_ERR_INVALID_ARGUMENT);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", gpuml_last_error());
    assert_non_null(strstr(mine, "gpuml_tensor_wrap"));
    pthread_t th;
    void *ok = NULL;
    pthread_create(&th, NULL, thread_error, NULL);
    pthread_join(th, &ok);
    assert_non_null(ok);                           /* the other thread saw its own error */
    assert_string_equal(gpuml_last_error(), mine); /* ours is unchanged */
}

typedef struct {
    int calls;
    char last[512];
    gpuml_log_level level;
} log_capture;

static void capture_log(void *user, gpuml_log_level level, const char *msg)
{
    log_capture *c = user;
    c->calls++;
    c->level = level;
    snprintf(c->last, sizeof c->last, "%s", msg);
}

static void test_logging(void **state)
{
    (void)state;
    log_capture cap = {0};
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.log_fn = capture_log;
    cfg.log_user = &cap;
    cfg.log_level = GPUML_LOG_DEBUG;
    gpuml_ctx *ctx;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_OK);
    gpuml_ctx_log(ctx, GPUML_LOG_INFO, "hello %d", 7);
    assert_int_equal(cap.calls, 1);
    assert_string_equal(cap.last, "hello 7");
    /* errors are logged at DEBUG through the same sink */
    assert_int_equal(gpuml_relu(ctx, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(cap.calls, 2);
    assert_int_equal(cap.level, GPUML_LOG_DEBUG);
    assert_non_null(strstr(cap.last, "'x' is NULL"));
    gpuml_ctx_destroy(ctx);

    cap.calls = 0;
    cfg.log_level = GPUML_LOG_WARN;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_OK);
    gpuml_ctx_log(ctx, GPUML_LOG_INFO, "filtered");
    assert_int_equal(cap.calls, 0);
    gpuml_ctx_log(ctx, GPUML_LOG_ERROR, "kept");
    assert_int_equal(cap.calls, 1);
    gpuml_ctx_destroy(ctx);
}

static int deleter_calls;
static void count_deleter(void *data, void *user)
{
    (void)data;
    deleter_calls += *(int *)user;
}

static void test_tensor_basics(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_tensor *t = NULL;
    assert_int_equal(gpuml_tensor_zeros(ctx, GPUML_F32, 2, (int64_t[]){4, 6}, &t), GPUML_OK);
    assert_int_equal(gpuml_tensor_ndim(t), 2);
    assert_int_equal(gpuml_tensor_dim(t, -1), 6);
    assert_int_equal(gpuml_tensor_dim(t, 5), -1);
    assert_int_equal(gpuml_tensor_numel(t), 24);
    assert_int_equal(gpuml_tensor_nbytes(t), 96);
    assert_int_equal(gpuml_tensor_dtype(t), GPUML_F32);
    const float *p = gpuml_tensor_data(t);
    for (int i = 0; i < 24; i++)
        assert_true(p[i] == 0.0f);
    char buf[64];
    assert_string_equal(gpuml_tensor_describe(t, buf, sizeof buf), "[4, 6] f32 cpu");

    /* reshape with inference; view shares memory and outlives the parent */
    gpuml_tensor *v = NULL;
    assert_int_equal(gpuml_tensor_reshape(t, 3, (int64_t[]){2, -1, 3}, &v), GPUML_OK);
    assert_int_equal(gpuml_tensor_dim(v, 1), 4);
    assert_ptr_equal(gpuml_tensor_data(v), gpuml_tensor_data(t));
    assert_int_equal(gpuml_tensor_reshape(t, 2, (int64_t[]){5, 5}, &v), GPUML_ERR_SHAPE);
    assert_int_equal(gpuml_tensor_reshape(t, 2, (int64_t[]){-1, -1}, &v), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_tensor *rows = NULL;
    assert_int_equal(gpuml_tensor_slice_rows(t, 1, 2, &rows), GPUML_OK);
    assert_ptr_equal(gpuml_tensor_data(rows), (const float *)gpuml_tensor_data(t) + 6);
    assert_int_equal(gpuml_tensor_slice_rows(t, 3, 2, &rows), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_tensor_destroy(t);
    float *vr = gpuml_tensor_data(rows); /* still valid: the view keeps the storage */
    vr[0] = 5.0f;
    gpuml_tensor_destroy(rows);
    gpuml_tensor_destroy(v);

    /* scalar and empty tensors */
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F64, 0, NULL, &t), GPUML_OK);
    assert_int_equal(gpuml_tensor_numel(t), 1);
    gpuml_tensor_destroy(t);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I64, 2, (int64_t[]){0, 9}, &t), GPUML_OK);
    assert_int_equal(gpuml_tensor_numel(t), 0);
    gpuml_tensor_destroy(t);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, &t),
                     GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, (int64_t[]){-1}, &t), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_tensor_create(ctx, (gpuml_dtype)42, 1, (int64_t[]){1}, &t), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){INT64_MAX / 2, 4}, &t),
                     GPUML_ERR_INVALID_ARGUMENT);
    for (int d = 0; d < GPUML_DTYPE_COUNT_; d++)
        assert_true(gpuml_dtype_size((gpuml_dtype)d) > 0);
    assert_int_equal(gpuml_dtype_size((gpuml_dtype)-1), 0);
    assert_string_equal(gpuml_dtype_name(GPUML_BF16), "bf16");

    /* wrap: zero copy, deleter once after the last view */
    float host[6] = {1, 2, 3, 4, 5, 6};
    int one = 1;
    deleter_calls = 0;
    assert_int_equal(gpuml_tensor_wrap(host, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 2, (int64_t[]){3, 2},
                                       count_deleter, &one, &t),
                     GPUML_OK);
    assert_ptr_equal(gpuml_tensor_data(t), host);
    assert_int_equal(gpuml_tensor_slice_rows(t, 2, 1, &rows), GPUML_OK);
    gpuml_tensor_destroy(t);
    assert_int_equal(deleter_calls, 0);
    gpuml_tensor_destroy(rows);
    assert_int_equal(deleter_calls, 1);
    /* misaligned wrap is refused and the deleter is not called */
    assert_int_equal(gpuml_tensor_wrap((char *)host + 1, (gpuml_device){GPUML_DEVICE_CPU, 0}, GPUML_F32, 1,
                                       (int64_t[]){2}, count_deleter, &one, &t),
                     GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(deleter_calls, 1);
    gpuml_ctx_destroy(ctx);
}

static void test_copies(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    float src[5] = {1, 2, 3, 4, 5}, dst[5] = {0};
    gpuml_tensor *a = h_tensor_f32(ctx, 1, (int64_t[]){5}, src), *b = NULL;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){1, 5}, &b), GPUML_OK);
    assert_int_equal(gpuml_tensor_copy(ctx, b, a), GPUML_OK);
    assert_int_equal(gpuml_tensor_copy_to_host(ctx, b, dst, sizeof dst), GPUML_OK);
    assert_memory_equal(src, dst, sizeof src);
    assert_int_equal(gpuml_tensor_copy_to_host(ctx, b, dst, 4), GPUML_ERR_SHAPE);
    assert_int_equal(gpuml_tensor_copy_from_host(ctx, b, src, 24), GPUML_ERR_SHAPE);
    gpuml_tensor *c = NULL;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F64, 1, (int64_t[]){5}, &c), GPUML_OK);
    assert_int_equal(gpuml_tensor_copy(ctx, c, a), GPUML_ERR_DTYPE);
    /* a "CUDA" tensor cannot go through a CPU context */
    gpuml_tensor *fake = NULL;
    assert_int_equal(gpuml_tensor_wrap(dst, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 1, (int64_t[]){5}, NULL,
                                       NULL, &fake),
                     GPUML_OK);
    assert_int_equal(gpuml_tensor_copy(ctx, fake, a), GPUML_ERR_DEVICE_MISMATCH);
    gpuml_tensor_destroy(fake);
    gpuml_tensor_destroy(a);
    gpuml_tensor_destroy(b);
    gpuml_tensor_destroy(c);
    gpuml_ctx_destroy(ctx);
}

static void test_allocator(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_alloc_stats s0, s1, s2;
    gpuml_ctx_alloc_stats(ctx, 0, &s0);
    assert_int_equal(s0.bytes_in_use, 0);
    gpuml_tensor *t = NULL;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, (int64_t[]){1000}, &t), GPUML_OK);
    gpuml_ctx_alloc_stats(ctx, 0, &s1);
    assert_true(s1.bytes_in_use >= 4000);
    assert_int_equal(s1.num_system_allocs, 1);
    gpuml_tensor_destroy(t);
    gpuml_ctx_alloc_stats(ctx, 0, &s2);
    assert_int_equal(s2.bytes_in_use, 0);
    assert_int_equal(s2.bytes_cached, s1.bytes_in_use);
    assert_int_equal(s2.bytes_peak, s1.bytes_in_use);
    /* same bucket: served from the cache */
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, (int64_t[]){990}, &t), GPUML_OK);
    gpuml_ctx_alloc_stats(ctx, 0, &s2);
    assert_int_equal(s2.num_system_allocs, 1);
    assert_int_equal(s2.num_cache_hits, 1);
    gpuml_tensor_destroy(t);
    gpuml_ctx_release_cached(ctx);
    gpuml_ctx_alloc_stats(ctx, 0, &s2);
    assert_int_equal(s2.bytes_cached, 0);
    assert_int_equal(s2.bytes_reserved, 0);
    gpuml_ctx_reset_peak(ctx);
    gpuml_ctx_alloc_stats(ctx, 0, &s2);
    assert_int_equal(s2.bytes_peak, 0);

    /* tensors may outlive their context */
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, (int64_t[]){10}, &t), GPUML_OK);
    gpuml_ctx_destroy(ctx);
    ((float *)gpuml_tensor_data(t))[9] = 1.0f;
    gpuml_tensor_destroy(t);
}

static void test_pinned(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    void *p = NULL;
    assert_int_equal(gpuml_pinned_alloc(ctx, 12345, &p), GPUML_OK);
    memset(p, 1, 12345);
    gpuml_alloc_stats s;
    gpuml_ctx_alloc_stats(ctx, 1, &s);
    assert_true(s.bytes_in_use >= 12345);
    gpuml_pinned_free(ctx, p);
    gpuml_ctx_alloc_stats(ctx, 1, &s);
    assert_int_equal(s.bytes_in_use, 0);
    gpuml_pinned_free(ctx, NULL);
    gpuml_ctx_destroy(ctx);
}

static void test_arena(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_arena *arena = NULL;
    assert_int_equal(gpuml_arena_create(ctx, 1024, &arena), GPUML_OK);
    gpuml_alloc_stats warm;
    size_t cap_after_merge = 0;
    for (int step = 0; step < 6; step++) {
        /* a "training step" needing ~1.2 MB in 40 tensors */
        for (int i = 0; i < 40; i++) {
            gpuml_tensor *t = NULL;
            assert_int_equal(gpuml_tensor_create_in_arena(arena, GPUML_F32, 2, (int64_t[]){75, 100 + i}, &t), GPUML_OK);
            float *d = gpuml_tensor_data(t);
            d[0] = 1.0f;
            d[75 * (100 + i) - 1] = 2.0f;
            gpuml_tensor_destroy(t); /* no-op for arena tensors */
        }
        assert_true(gpuml_arena_used(arena) >= 40 * 75 * 100 * 4);
        gpuml_arena_reset(arena);
        assert_int_equal(gpuml_arena_used(arena), 0);
        if (step == 1) {
            gpuml_ctx_alloc_stats(ctx, 0, &warm);
            cap_after_merge = gpuml_arena_capacity(arena);
        }
        if (step > 1) {
            gpuml_alloc_stats now;
            gpuml_ctx_alloc_stats(ctx, 0, &now);
            assert_int_equal(now.num_allocs, warm.num_allocs); /* steady state: nothing allocated */
            assert_int_equal(gpuml_arena_capacity(arena), cap_after_merge);
        }
    }
    gpuml_arena_destroy(arena);
    gpuml_arena_destroy(NULL);
    gpuml_alloc_stats end;
    gpuml_ctx_alloc_stats(ctx, 0, &end);
    assert_int_equal(end.bytes_in_use, 0);
    gpuml_ctx_destroy(ctx);
}

static void test_rng_state(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_tensor *a = h_tensor_f32(ctx, 1, (int64_t[]){1000}, NULL), *b = h_tensor_f32(ctx, 1, (int64_t[]){1000}, NULL);
    gpuml_ctx_set_seed(ctx, 7);
    gpuml_rand_uniform(ctx, a, 0, 1);
    uint64_t seed, counter;
    gpuml_ctx_get_rng_state(ctx, &seed, &counter);
    assert_int_equal(seed, 7);
    assert_int_equal(counter, 250);
    gpuml_rand_uniform(ctx, b, 0, 1);
    float *fa = h_read(ctx, a), *fb = h_read(ctx, b);
    assert_memory_not_equal(fa, fb, 4000); /* the counter advanced */
    gpuml_ctx_set_rng_state(ctx, 7, 250);
    gpuml_rand_uniform(ctx, a, 0, 1);
    float *fa2 = h_read(ctx, a);
    assert_memory_equal(fa2, fb, 4000); /* resumed exactly */
    double mean = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(fa[i] >= 0.0f && fa[i] < 1.0f);
        mean += fa[i];
    }
    assert_true(fabs(mean / 1000 - 0.5) < 0.05);
    free(fa), free(fb), free(fa2);
    gpuml_tensor_destroy(a);
    gpuml_tensor_destroy(b);
    gpuml_ctx_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_ctx_cpu),
        cmocka_unit_test(test_ctx_cuda_absent_or_present),
        cmocka_unit_test(test_last_error_per_thread),
        cmocka_unit_test(test_logging),
        cmocka_unit_test(test_tensor_basics),
        cmocka_unit_test(test_copies),
        cmocka_unit_test(test_allocator),
        cmocka_unit_test(test_pinned),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_rng_state),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
