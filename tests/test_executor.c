/* tests/test_executor.c - the built-in executors (gpuml/executor.h) and
 * how contexts choose theirs: every iteration exactly once, worker indices
 * in range and never shared by two pieces at once, concurrent and nested
 * callers of one pool, argument errors, the context rule (gpuml/context.h,
 * Threads) and the pool's threads coming and going. Also run under TSan
 * (tools/test.sh --tsan). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gpuml/gpuml.h>

static int count_threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

enum { MAXN = 20000, MAXW = 16 };

typedef struct cover {
    _Atomic int hits[MAXN];
    _Atomic int busy[MAXW]; /* pieces running per worker index */
    _Atomic int bad;        /* out-of-range worker, or two pieces on one index */
    _Atomic int pieces;
    int max_workers;
    const gpuml_executor *nested; /* when set, each piece runs a small loop on it */
} cover;

static void sub_range(void *p, int64_t b, int64_t e, int w)
{
    (void)w;
    _Atomic int *c = p;
    atomic_fetch_add(c, (int)(e - b));
}

static void cover_range(void *p, int64_t b, int64_t e, int w)
{
    cover *c = p;
    if (w < 0 || w >= c->max_workers || w >= MAXW) {
        atomic_fetch_add(&c->bad, 1);
        return;
    }
    if (atomic_fetch_add(&c->busy[w], 1) != 0)
        atomic_fetch_add(&c->bad, 1);
    atomic_fetch_add(&c->pieces, 1);
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add(&c->hits[i], 1);
    if (c->nested) {
        _Atomic int sum = 0;
        c->nested->parallel_for(c->nested->self, 100, 7, sub_range, (void *)&sum);
        if (atomic_load(&sum) != 100)
            atomic_fetch_add(&c->bad, 1);
    }
    atomic_fetch_sub(&c->busy[w], 1);
}

static void check_cover(const gpuml_executor *ex, int64_t n, int64_t grain, const gpuml_executor *nested)
{
    static cover c;
    memset(&c, 0, sizeof c);
    c.max_workers = ex->max_workers(ex->self);
    c.nested = nested;
    ex->parallel_for(ex->self, n, grain, cover_range, &c);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&c.hits[i]), 1);
    assert_int_equal(atomic_load(&c.bad), 0);
}

static void test_every_iteration_once(void **state)
{
    (void)state;
    gpuml_executor *pool = NULL, *omp = NULL, *ser = NULL;
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 4, &pool), GPUML_OK);
    assert_int_equal(pool->max_workers(pool->self), 4);
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_SERIAL, 8, &ser), GPUML_OK);
    assert_int_equal(ser->max_workers(ser->self), 1);
    const gpuml_executor *list[4] = {gpuml_executor_serial(), pool, ser, NULL};
    /* Not under TSan: libgomp is not instrumented, and its barriers look
     * like races to it (tests/meson.build). */
    bool tsan = false;
#if defined(__SANITIZE_THREAD__)
    tsan = true;
#endif
    if (gpuml_has_feature("openmp") && !tsan) {
        assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_OPENMP, 3, &omp), GPUML_OK);
        list[3] = omp;
    }
    const int64_t sizes[][2] = {{1, 1}, {2, 1}, {7, 3}, {1000, 1}, {1000, 999}, {MAXN, 17}, {MAXN, 5000}};
    for (int e = 0; e < 4; e++)
        if (list[e])
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (int rep = 0; rep < 5; rep++)
                    check_cover(list[e], sizes[s][0], sizes[s][1], NULL);
    /* A loop started from inside a piece (here: on the same pool) runs on
     * the calling thread instead of waiting for itself. */
    check_cover(pool, 5000, 10, pool);
    if (omp)
        check_cover(omp, 5000, 10, pool);
    gpuml_executor_destroy(omp);
    gpuml_executor_destroy(ser);
    gpuml_executor_destroy(pool);
}

typedef struct caller_arg {
    const gpuml_executor *ex;
    int64_t n;
    _Atomic int *hits;
    int ok;
} caller_arg;

static void count_range(void *p, int64_t b, int64_t e, int w)
{
    (void)w;
    _Atomic int *h = p;
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add(&h[i], 1);
}

static void *caller(void *v)
{
    caller_arg *a = v;
    for (int rep = 0; rep < 50; rep++) {
        for (int64_t i = 0; i < a->n; i++)
            atomic_store(&a->hits[i], 0);
        a->ex->parallel_for(a->ex->self, a->n, 13, count_range, (void *)a->hits);
        for (int64_t i = 0; i < a->n; i++)
            if (atomic_load(&a->hits[i]) != 1)
                return NULL;
    }
    a->ok = 1;
    return NULL;
}

static void test_concurrent_callers_share_a_pool(void **state)
{
    (void)state;
    gpuml_executor *pool = NULL;
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 3, &pool), GPUML_OK);
    enum { T = 4, N = 3000 };
    static _Atomic int hits[T][N];
    pthread_t th[T];
    caller_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (caller_arg){pool, N, hits[t], 0};
        assert_int_equal(pthread_create(&th[t], NULL, caller, &args[t]), 0);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].ok, 1);
    }
    gpuml_executor_destroy(pool);
}

static void test_pool_threads_start_late_and_end(void **state)
{
    (void)state;
    int t0 = count_threads();
    gpuml_executor *pool = NULL;
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 3, &pool), GPUML_OK);
    assert_int_equal(count_threads(), t0); /* nothing until the first loop */
    check_cover(pool, 1000, 10, NULL);
    assert_int_equal(count_threads(), t0 + 2);
    gpuml_executor_destroy(pool);
    assert_int_equal(count_threads(), t0);
}

static void test_create_errors(void **state)
{
    (void)state;
    gpuml_executor *ex = (gpuml_executor *)0x1;
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 2, NULL), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 5000, &ex), GPUML_ERR_INVALID_ARGUMENT);
    assert_null(ex);
    assert_int_equal(gpuml_executor_create((gpuml_executor_kind)9, 2, &ex), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "gpuml_executor_create"));
    gpuml_executor_destroy(NULL);
    gpuml_executor_destroy((gpuml_executor *)gpuml_executor_serial()); /* a constant: ignored */
    assert_true(gpuml_default_num_threads() >= 1);
}

static void bad_for(void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg)
{
    (void)self, (void)n, (void)grain, (void)fn, (void)arg;
}
static int zero_workers(void *self)
{
    (void)self;
    return 0;
}

static void test_context_rule(void **state)
{
    (void)state;
    gpuml_ctx_config cfg;
    gpuml_ctx *ctx = NULL;
    /* Default: the pool on gpuml_default_num_threads() workers (the test
     * environment sets OMP_NUM_THREADS=2). */
    gpuml_ctx_config_init_defaults(&cfg);
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_OK);
    assert_int_equal(gpuml_ctx_num_threads(ctx), gpuml_default_num_threads());
    const gpuml_executor *own = gpuml_ctx_executor(ctx);
    assert_non_null(own);
    assert_int_equal(own->max_workers(own->self), gpuml_default_num_threads());
    assert_int_equal(gpuml_ctx_set_num_threads(ctx, 1), GPUML_OK);
    assert_ptr_equal(gpuml_ctx_executor(ctx), gpuml_executor_serial());
    assert_int_equal(gpuml_ctx_set_num_threads(ctx, 3), GPUML_OK);
    assert_int_equal(gpuml_ctx_num_threads(ctx), 3);
    assert_int_equal(gpuml_ctx_set_num_threads(ctx, 0), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_ctx_destroy(ctx);
    /* One thread: serial. */
    cfg.num_threads = 1;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_OK);
    assert_ptr_equal(gpuml_ctx_executor(ctx), gpuml_executor_serial());
    gpuml_ctx_destroy(ctx);
    /* The host's: borrowed, and the host decides the threads. */
    gpuml_executor *pool = NULL;
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 3, &pool), GPUML_OK);
    cfg.num_threads = 7;
    cfg.executor = pool;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_OK);
    assert_ptr_equal(gpuml_ctx_executor(ctx), pool);
    assert_int_equal(gpuml_ctx_num_threads(ctx), 3);
    assert_int_equal(gpuml_ctx_set_num_threads(ctx, 2), GPUML_ERR_STATE);
    assert_ptr_equal(gpuml_ctx_executor(ctx), pool);
    gpuml_ctx_destroy(ctx);
    gpuml_executor_destroy(pool);
    /* A host executor must be complete. */
    gpuml_executor broken = {bad_for, NULL, NULL};
    cfg.executor = &broken;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
    broken.max_workers = zero_workers;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "max_workers"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_iteration_once),
        cmocka_unit_test(test_concurrent_callers_share_a_pool),
        cmocka_unit_test(test_pool_threads_start_late_and_end),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_context_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
