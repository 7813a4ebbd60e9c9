/* tests/dist/test_dist_mpi.c - the MPI backend under mpirun -np N: every
 * collective against a reference computed locally (each rank can compute
 * every rank's inputs), empty and uneven sizes, messages of several MB,
 * non-blocking start/progress/test/wait, the deterministic mode (bitwise
 * equal to the rank-order sum, independent of bucketing), and bad
 * arguments, which must fail on every rank and leave the communicator
 * usable.
 *
 *   mpirun -np 3 test_dist_mpi            the host initialises MPI
 *   mpirun -np 2 test_dist_mpi gpuml-init gpuml initialises (and finalises) it
 *
 * Prints "DETHASH <hex>" (rank 0) so that a driver can compare two runs.
 * Not cmocka: a failed check must not stop one rank while the others wait
 * in a collective, so checks count failures and the ranks sum them at the
 * end. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include <gpuml/gpuml.h>

static int g_rank = -1, g_fail, g_checks;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        g_checks++;                                                                          \
        if (!(cond)) {                                                                       \
            g_fail++;                                                                        \
            fprintf(stderr, "rank %d: %s:%d: CHECK(%s) failed: ", g_rank, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

#define OK(expr)                                                                                             \
    do {                                                                                                     \
        gpuml_status ok_st_ = (expr);                                                                        \
        CHECK(ok_st_ == GPUML_OK, "%s -> %s: %s", #expr, gpuml_status_string(ok_st_), gpuml_last_error()); \
    } while (0)

#define EXPECT(expr, want, text)                                                                                 \
    do {                                                                                                         \
        gpuml_status ex_st_ = (expr);                                                                            \
        CHECK(ex_st_ == (want), "%s -> %s, expected %s: %s", #expr, gpuml_status_string(ex_st_),                  \
              gpuml_status_string(want), gpuml_last_error());                                                    \
        CHECK(!(text) || strstr(gpuml_last_error(), (text) ? (text) : ""), "message '%s' lacks '%s'",            \
              gpuml_last_error(), (text) ? (text) : "");                                                         \
    } while (0)

typedef struct {
    gpuml_comm *comm;
    gpuml_ctx *ctx;
    int rank, n;
    bool det;
    const char *name;
} env;

/* ---- inputs and references ------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Rank q's element i: magnitudes differ by 1e6 between odd and even ranks,
 * so the summation order shows in the low bits. */
static double val(int q, int64_t i, int seed)
{
    uint64_t h = mix((uint64_t)seed * 1000003u + (uint64_t)q * 7919u + (uint64_t)i * 104729u + 1u);
    double u = (double)(h >> 11) / 9007199254740992.0 - 0.5;
    return u * ((q % 2) ? 1e4 : 1e-2);
}

static int64_t ival(int q, int64_t i, int seed)
{
    return (int64_t)(mix((uint64_t)seed * 31u + (uint64_t)q * 977u + (uint64_t)i) % 2001u) - 1000;
}

static double elem(gpuml_dtype dt, int q, int64_t i, int seed)
{
    switch (dt) {
    case GPUML_F32: return (double)(float)val(q, i, seed);
    case GPUML_F64: return val(q, i, seed);
    default: return (double)ival(q, i, seed);
    }
}

static void store(gpuml_dtype dt, void *p, int64_t i, double v)
{
    switch (dt) {
    case GPUML_F32: ((float *)p)[i] = (float)v; break;
    case GPUML_F64: ((double *)p)[i] = v; break;
    case GPUML_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case GPUML_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case GPUML_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    default: break;
    }
}

static double load(gpuml_dtype dt, const void *p, int64_t i)
{
    switch (dt) {
    case GPUML_F32: return ((const float *)p)[i];
    case GPUML_F64: return ((const double *)p)[i];
    case GPUML_I32: return ((const int32_t *)p)[i];
    case GPUML_I64: return (double)((const int64_t *)p)[i];
    case GPUML_U8: return ((const uint8_t *)p)[i];
    default: return NAN;
    }
}

static gpuml_tensor *make(env *e, gpuml_dtype dt, int nd, const int64_t *shape)
{
    gpuml_tensor *t = NULL;
    gpuml_status st = gpuml_tensor_create(e->ctx, dt, nd, shape, &t);
    CHECK(st == GPUML_OK, "tensor_create: %s", gpuml_last_error());
    return t;
}

/* Rank q's data, flat element offset `base` (so row slices match). */
static void fill(gpuml_tensor *t, int q, int seed, int64_t base)
{
    gpuml_dtype dt = gpuml_tensor_dtype(t);
    for (int64_t i = 0; i < gpuml_tensor_numel(t); i++)
        store(dt, gpuml_tensor_data(t), i, elem(dt, q, base + i, seed));
}

static void sentinel(gpuml_tensor *t)
{
    if (gpuml_tensor_nbytes(t))
        memset(gpuml_tensor_data(t), 0x7f, gpuml_tensor_nbytes(t));
}

/* Reference of element i of the reduction over ranks. det: rank order, in
 * double for f32, as documented. */
static double reference(const env *e, gpuml_dtype dt, gpuml_comm_op op, int64_t i, int seed, double *mag)
{
    double acc = elem(dt, 0, i, seed);
    *mag = fabs(acc);
    for (int q = 1; q < e->n; q++) {
        double v = elem(dt, q, i, seed);
        *mag += fabs(v);
        if (op == GPUML_COMM_MAX)
            acc = v > acc ? v : acc;
        else if (op == GPUML_COMM_MIN)
            acc = v < acc ? v : acc;
        else if (dt == GPUML_I32)
            acc = (double)(int32_t)((uint32_t)(int32_t)acc + (uint32_t)(int32_t)v);
        else
            acc += v;
    }
    if (op == GPUML_COMM_AVG)
        acc /= e->n;
    if (dt == GPUML_F32)
        acc = (double)(float)acc;
    return acc;
}

/* Compare out (flat offset base of the full result) with the reference:
 * bitwise where the result is exact (integers, MAX/MIN, deterministic
 * floats), else within a bound relative to sum |x|. */
static int64_t compare(const env *e, const gpuml_tensor *out, gpuml_comm_op op, int seed, int64_t base,
                       const char *what)
{
    gpuml_dtype dt = gpuml_tensor_dtype(out);
    bool exact = e->det || op == GPUML_COMM_MAX || op == GPUML_COMM_MIN || (dt != GPUML_F32 && dt != GPUML_F64);
    double eps = dt == GPUML_F32 ? 2e-7 * e->n : 4e-16 * e->n;
    int64_t bad = 0, first = -1;
    double got_first = 0, want_first = 0;
    for (int64_t i = 0; i < gpuml_tensor_numel(out); i++) {
        double mag, want = reference(e, dt, op, base + i, seed, &mag);
        double got = load(dt, gpuml_tensor_data(out), i);
        bool ok = exact ? got == want : fabs(got - want) <= eps * mag + 1e-30;
        if (!ok && bad++ == 0) {
            first = i;
            got_first = got;
            want_first = want;
        }
    }
    CHECK(bad == 0,
          "[%s] %s %s %s: %" PRId64 " of %" PRId64 " elements wrong, first at %" PRId64 ": got %.17g want %.17g",
          e->name, what, gpuml_dtype_name(dt), exact ? "(bitwise)" : "(tolerance)", bad, gpuml_tensor_numel(out), first,
          got_first, want_first);
    return bad;
}

/* ---- collectives ------------------------------------------------------------ */

static void t_allreduce(env *e, gpuml_dtype dt, gpuml_comm_op op, int64_t count, bool in_place, int seed)
{
    gpuml_tensor *in = make(e, dt, 1, &count), *out = in_place ? in : make(e, dt, 1, &count);
    fill(in, e->rank, seed, 0);
    if (!in_place)
        sentinel(out);
    char what[96];
    snprintf(what, sizeof what, "allreduce %s n=%lld%s", op == GPUML_COMM_SUM ? "SUM" : op == GPUML_COMM_AVG ? "AVG"
             : op == GPUML_COMM_MAX ? "MAX" : "MIN", (long long)count, in_place ? " in place" : "");
    gpuml_status st = gpuml_comm_allreduce(e->comm, e->ctx, op, in, out);
    CHECK(st == GPUML_OK, "[%s] %s: %s", e->name, what, gpuml_last_error());
    if (st == GPUML_OK)
        compare(e, out, op, seed, 0, what);
    if (!in_place) { /* in must be untouched */
        int64_t changed = 0;
        for (int64_t i = 0; i < count; i++)
            changed += load(dt, gpuml_tensor_data(in), i) != elem(dt, e->rank, i, seed);
        CHECK(changed == 0, "[%s] %s changed its input", e->name, what);
        gpuml_tensor_destroy(out);
    }
    gpuml_tensor_destroy(in);
}

static void t_broadcast(env *e, gpuml_dtype dt, int64_t count, int root)
{
    gpuml_tensor *t = make(e, dt, 1, &count);
    if (e->rank == root)
        fill(t, root, 5, 0);
    else
        sentinel(t);
    OK(gpuml_comm_broadcast(e->comm, e->ctx, t, root));
    int64_t bad = 0;
    for (int64_t i = 0; i < count; i++) {
        double want = dt == GPUML_U8 ? (double)(uint8_t)elem(dt, root, i, 5) : elem(dt, root, i, 5);
        bad += load(dt, gpuml_tensor_data(t), i) != want;
    }
    CHECK(bad == 0, "[%s] broadcast %s n=%lld root %d: %lld wrong", e->name, gpuml_dtype_name(dt), (long long)count,
          root, (long long)bad);
    gpuml_tensor_destroy(t);
}

/* Rank q brings rows(q) rows of [.., 3]; out holds them all in rank order. */
static void t_allgather(env *e, gpuml_dtype dt, int64_t (*rows)(int q))
{
    int64_t total = 0, before = 0;
    for (int q = 0; q < e->n; q++) {
        if (q < e->rank)
            before += rows(q);
        total += rows(q);
    }
    int64_t is[2] = {rows(e->rank), 3}, os[2] = {total, 3};
    gpuml_tensor *in = make(e, dt, 2, is), *out = make(e, dt, 2, os);
    fill(in, e->rank, 9, 0);
    sentinel(out);
    OK(gpuml_comm_allgather(e->comm, e->ctx, in, out));
    int64_t bad = 0, row = 0;
    for (int q = 0; q < e->n; q++)
        for (int64_t r = 0; r < rows(q); r++, row++)
            for (int c = 0; c < 3; c++)
                bad += load(dt, gpuml_tensor_data(out), row * 3 + c) != elem(dt, q, r * 3 + c, 9);
    CHECK(bad == 0, "[%s] allgather %s of %lld rows: %lld wrong", e->name, gpuml_dtype_name(dt), (long long)total,
          (long long)bad);
    (void)before;
    gpuml_tensor_destroy(in);
    gpuml_tensor_destroy(out);
}

static int64_t rows_rank_plus_one(int q) { return q + 1; }
static int64_t rows_first_empty(int q) { return q == 0 ? 0 : 2 * q; }
static int64_t rows_none(int q) { (void)q; return 0; }
static int64_t rows_big(int q) { return 40000 + q; } /* ~0.5 MB f32 each */

static void t_reduce_scatter(env *e, gpuml_dtype dt, gpuml_comm_op op, int64_t rows, int seed)
{
    int64_t start, count;
    gpuml_comm_shard_rows(rows, e->n, e->rank, &start, &count);
    int64_t is[2] = {rows, 2}, os[2] = {count, 2};
    gpuml_tensor *in = make(e, dt, 2, is), *out = make(e, dt, 2, os);
    fill(in, e->rank, seed, 0);
    sentinel(out);
    char what[64];
    snprintf(what, sizeof what, "reduce_scatter %s R=%lld", op == GPUML_COMM_AVG ? "AVG" : "SUM", (long long)rows);
    gpuml_status st = gpuml_comm_reduce_scatter(e->comm, e->ctx, op, in, out);
    CHECK(st == GPUML_OK, "[%s] %s: %s", e->name, what, gpuml_last_error());
    if (st == GPUML_OK)
        compare(e, out, op, seed, start * 2, what);
    gpuml_tensor_destroy(in);
    gpuml_tensor_destroy(out);
}

static void t_collectives(env *e)
{
    static const gpuml_dtype rdt[] = {GPUML_F32, GPUML_F64, GPUML_I32, GPUML_I64};
    static const int64_t sizes[] = {0, 1, 7, 1000, 786432 /* 3 MB of f32 */};
    for (size_t d = 0; d < 4; d++)
        for (size_t s = 0; s < 5; s++) {
            if (rdt[d] != GPUML_F32 && sizes[s] > 100000)
                continue;
            t_allreduce(e, rdt[d], GPUML_COMM_SUM, sizes[s], s % 2 == 0, 10 + (int)s);
        }
    t_allreduce(e, GPUML_F32, GPUML_COMM_SUM, 1000, false, 3);
    t_allreduce(e, GPUML_F32, GPUML_COMM_AVG, 1001, true, 4);
    t_allreduce(e, GPUML_F64, GPUML_COMM_AVG, 999, false, 5);
    t_allreduce(e, GPUML_F32, GPUML_COMM_MAX, 500, true, 6);
    t_allreduce(e, GPUML_I32, GPUML_COMM_MIN, 500, false, 7);
    t_allreduce(e, GPUML_I64, GPUML_COMM_MAX, 3, true, 8);
    t_allreduce(e, GPUML_F64, GPUML_COMM_SUM, 262144, false, 12); /* 2 MB */

    for (int root = 0; root < e->n; root++)
        t_broadcast(e, GPUML_F32, 1000, root);
    t_broadcast(e, GPUML_U8, 3 << 20, e->n - 1); /* 3 MB */
    t_broadcast(e, GPUML_I64, 5, 0);
    t_broadcast(e, GPUML_F64, 0, 0);

    t_allgather(e, GPUML_F32, rows_rank_plus_one);
    t_allgather(e, GPUML_I64, rows_first_empty);
    t_allgather(e, GPUML_F32, rows_none);
    t_allgather(e, GPUML_F32, rows_big);

    int64_t rs_rows[] = {0, 1, 2 * e->n + 1, 4 * e->n, 100003};
    for (size_t i = 0; i < 5; i++) {
        t_reduce_scatter(e, GPUML_F32, GPUML_COMM_SUM, rs_rows[i], 20 + (int)i);
        t_reduce_scatter(e, GPUML_F64, GPUML_COMM_AVG, rs_rows[i], 30 + (int)i);
    }
    t_reduce_scatter(e, GPUML_I32, GPUML_COMM_SUM, 2 * e->n + 1, 40);
    OK(gpuml_comm_barrier(e->comm));
}

/* ---- non-blocking ------------------------------------------------------------ */

static volatile double g_sink;

static void t_nonblocking(env *e)
{
    enum { K = 6 };
    static const int64_t sizes[K] = {1, 1000, 250000, 7, 0, 65536};
    gpuml_tensor *b[K];
    gpuml_comm_request *req[K];
    for (int k = 0; k < K; k++) {
        b[k] = make(e, GPUML_F32, 1, &sizes[k]);
        fill(b[k], e->rank, 50 + k, 0);
    }
    /* Buckets start as they become ready, with compute in between. */
    for (int k = 0; k < K; k++) {
        OK(gpuml_comm_allreduce_start(e->comm, e->ctx, k % 2 ? GPUML_COMM_AVG : GPUML_COMM_SUM, b[k], b[k], &req[k]));
        double acc = 0;
        for (int j = 0; j < 20000; j++)
            acc += sqrt((double)j);
        g_sink = acc;
        OK(gpuml_comm_progress(e->comm));
    }
    int done = 0;
    for (long spins = 0; !done && spins < 100000000L; spins++)
        OK(gpuml_comm_test(req[2], &done));
    CHECK(done, "[%s] gpuml_comm_test never reported the request done", e->name);
    for (int k = K - 1; k >= 0; k--) { /* waited in another order than started */
        OK(gpuml_comm_wait(req[k], -1));
        char what[48];
        snprintf(what, sizeof what, "non-blocking bucket %d", k);
        compare(e, b[k], k % 2 ? GPUML_COMM_AVG : GPUML_COMM_SUM, 50 + k, 0, what);
        gpuml_tensor_destroy(b[k]);
    }
    /* Destroying the handle before the wait is safe: gpuml keeps the memory. */
    int64_t n = 4096;
    gpuml_tensor *t = make(e, GPUML_F32, 1, &n), *v = NULL;
    fill(t, e->rank, 60, 0);
    OK(gpuml_tensor_reshape(t, 1, &n, &v));
    gpuml_comm_request *r = NULL;
    OK(gpuml_comm_allreduce_start(e->comm, e->ctx, GPUML_COMM_SUM, v, v, &r));
    gpuml_tensor_destroy(v);
    OK(gpuml_comm_wait(r, 30));
    compare(e, t, GPUML_COMM_SUM, 60, 0, "allreduce on a destroyed view");
    gpuml_tensor_destroy(t);
}

/* ---- determinism ------------------------------------------------------------- */

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void t_determinism(env *e, uint64_t *hash)
{
    /* Bucketing does not change the bits: one all-reduce of 1000 elements
     * equals all-reduces of its rows 0..399 and 400..999. */
    int64_t n = 1000, a = 400, b = 600;
    gpuml_tensor *whole = make(e, GPUML_F32, 1, &n), *p1 = make(e, GPUML_F32, 1, &a), *p2 = make(e, GPUML_F32, 1, &b);
    fill(whole, e->rank, 77, 0);
    fill(p1, e->rank, 77, 0);
    fill(p2, e->rank, 77, 400);
    OK(gpuml_comm_allreduce(e->comm, e->ctx, GPUML_COMM_SUM, whole, whole));
    OK(gpuml_comm_allreduce(e->comm, e->ctx, GPUML_COMM_SUM, p1, p1));
    OK(gpuml_comm_allreduce(e->comm, e->ctx, GPUML_COMM_SUM, p2, p2));
    CHECK(!memcmp(gpuml_tensor_data(whole), gpuml_tensor_data(p1), 400 * 4) &&
              !memcmp((float *)gpuml_tensor_data(whole) + 400, gpuml_tensor_data(p2), 600 * 4),
          "[%s] the deterministic all-reduce depends on the bucketing", e->name);
    /* A fingerprint of a large reduction for run-to-run comparison, and the
     * same bits on every rank (checked with MAX == MIN over ranks). */
    int64_t big = 1 << 20;
    gpuml_tensor *t = make(e, GPUML_F32, 1, &big);
    fill(t, e->rank, 78, 0);
    OK(gpuml_comm_allreduce(e->comm, e->ctx, GPUML_COMM_AVG, t, t));
    uint64_t h = fnv(gpuml_tensor_data(t), gpuml_tensor_nbytes(t), 1469598103934665603ULL);
    h = fnv(gpuml_tensor_data(whole), gpuml_tensor_nbytes(whole), h);
    int64_t one = 2;
    gpuml_tensor *hmax = make(e, GPUML_I64, 1, &one), *hmin = make(e, GPUML_I64, 1, &one);
    int64_t hv[2] = {(int64_t)(h >> 32), (int64_t)(h & 0xffffffffu)};
    memcpy(gpuml_tensor_data(hmax), hv, sizeof hv);
    memcpy(gpuml_tensor_data(hmin), hv, sizeof hv);
    OK(gpuml_comm_allreduce(e->comm, e->ctx, GPUML_COMM_MAX, hmax, hmax));
    OK(gpuml_comm_allreduce(e->comm, e->ctx, GPUML_COMM_MIN, hmin, hmin));
    CHECK(!memcmp(gpuml_tensor_data(hmax), gpuml_tensor_data(hmin), sizeof hv),
          "[%s] the ranks got different bits", e->name);
    *hash = h;
    gpuml_tensor_destroy(whole);
    gpuml_tensor_destroy(p1);
    gpuml_tensor_destroy(p2);
    gpuml_tensor_destroy(t);
    gpuml_tensor_destroy(hmax);
    gpuml_tensor_destroy(hmin);
}

/* ---- bad arguments ----------------------------------------------------------- */

static void t_bad_arguments(env *e)
{
    gpuml_comm *c = e->comm;
    gpuml_ctx *ctx = e->ctx;
    int r = e->rank, n = e->n;
    int64_t s8 = 8, s10 = 10, s12 = 12;
    gpuml_tensor *x = make(e, GPUML_F32, 1, &s8), *y = make(e, GPUML_F32, 1, &s10), *z = make(e, GPUML_F32, 1, &s12);
    gpuml_tensor *d = make(e, GPUML_F64, 1, &s8), *h = make(e, GPUML_F16, 1, &s8), *i32 = make(e, GPUML_I32, 1, &s8);
    static float fake[8];
    gpuml_tensor *cuda = NULL;
    OK(gpuml_tensor_wrap(fake, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 1, &s8, NULL, NULL, &cuda));
    fill(x, r, 1, 0);

    EXPECT(gpuml_comm_allreduce(NULL, ctx, GPUML_COMM_SUM, x, x), GPUML_ERR_INVALID_ARGUMENT, "'comm' is NULL");
    EXPECT(gpuml_comm_allreduce(c, NULL, GPUML_COMM_SUM, x, x), GPUML_ERR_INVALID_ARGUMENT, "'ctx' is NULL");
    EXPECT(gpuml_comm_allreduce_start(c, ctx, GPUML_COMM_SUM, x, x, NULL), GPUML_ERR_INVALID_ARGUMENT, "'req'");
    EXPECT(gpuml_comm_wait(NULL, 1), GPUML_ERR_INVALID_ARGUMENT, NULL);

    /* One rank passes NULL: it fails with its own message, the others learn
     * of it from the header exchange instead of waiting for it. */
    gpuml_status st = gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, r == 0 ? NULL : x, x);
    CHECK(st == GPUML_ERR_INVALID_ARGUMENT, "NULL on rank 0: got %s (%s)", gpuml_status_string(st), gpuml_last_error());
    if (n > 1)
        CHECK(strstr(gpuml_last_error(), r == 0 ? "'in' is NULL" : "rank 0 rejected its arguments"), "message: %s",
              gpuml_last_error());
    /* Mismatched shapes across ranks. */
    if (n > 1) {
        EXPECT(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, r == 0 ? y : z, r == 0 ? y : z), GPUML_ERR_SHAPE,
               "rank 0 passed 10 rows");
        EXPECT(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, r == n - 1 ? d : x, r == n - 1 ? d : x), GPUML_ERR_DTYPE,
               "f64");
        EXPECT(gpuml_comm_broadcast(c, ctx, x, r == 0 ? 0 : 1), GPUML_ERR_INVALID_ARGUMENT, "root");
        EXPECT(gpuml_comm_allreduce(c, ctx, r == 1 ? GPUML_COMM_MAX : GPUML_COMM_SUM, x, x),
               GPUML_ERR_INVALID_ARGUMENT, "op");
        /* Different collectives at the same point: an error, not a hang. */
        st = r == 0 ? gpuml_comm_broadcast(c, ctx, x, 0) : gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, x, x);
        CHECK(st == GPUML_ERR_STATE && strstr(gpuml_last_error(), "rank 0 called broadcast"), "kind mismatch: %s %s",
              gpuml_status_string(st), gpuml_last_error());
        /* One rank's all-gather output has the wrong row count. */
        int64_t is[2] = {2, 3}, os[2] = {2 * n + (r == n - 1), 3};
        gpuml_tensor *gi = make(e, GPUML_F32, 2, is), *go = make(e, GPUML_F32, 2, os);
        EXPECT(gpuml_comm_allgather(c, ctx, gi, go), GPUML_ERR_SHAPE, "'out' has");
        gpuml_tensor_destroy(gi);
        gpuml_tensor_destroy(go);
    }
    /* Local errors on every rank. */
    EXPECT(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, x, y), GPUML_ERR_SHAPE, NULL);
    EXPECT(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, cuda, cuda), GPUML_ERR_DEVICE_MISMATCH, "cuda");
    EXPECT(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, h, h), GPUML_ERR_DTYPE, "f16");
    EXPECT(gpuml_comm_allreduce(c, ctx, GPUML_COMM_AVG, i32, i32), GPUML_ERR_DTYPE, "AVG");
    EXPECT(gpuml_comm_allreduce(c, ctx, (gpuml_comm_op)9, x, x), GPUML_ERR_INVALID_ARGUMENT, "op 9");
    EXPECT(gpuml_comm_broadcast(c, ctx, x, n), GPUML_ERR_INVALID_ARGUMENT, "root");
    EXPECT(gpuml_comm_broadcast(c, ctx, x, -1), GPUML_ERR_INVALID_ARGUMENT, "root");
    int64_t rs_in[2] = {2 * n + 1, 2}, rs_out[2] = {5, 2};
    gpuml_tensor *ri = make(e, GPUML_F32, 2, rs_in), *ro = make(e, GPUML_F32, 2, rs_out);
    EXPECT(gpuml_comm_reduce_scatter(c, ctx, GPUML_COMM_SUM, ri, ro), GPUML_ERR_SHAPE, NULL);
    EXPECT(gpuml_comm_allgather(c, ctx, ri, ri), GPUML_ERR_INVALID_ARGUMENT, "overlap");
    gpuml_tensor_destroy(ri);
    gpuml_tensor_destroy(ro);

    /* None of that broke the communicator. */
    CHECK(gpuml_comm_status(c) == GPUML_OK, "[%s] the communicator broke: %s", e->name,
          gpuml_status_string(gpuml_comm_status(c)));
    fill(x, r, 2, 0);
    OK(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, x, x));
    compare(e, x, GPUML_COMM_SUM, 2, 0, "allreduce after the errors");
    gpuml_tensor_destroy(x);
    gpuml_tensor_destroy(y);
    gpuml_tensor_destroy(z);
    gpuml_tensor_destroy(d);
    gpuml_tensor_destroy(h);
    gpuml_tensor_destroy(i32);
    gpuml_tensor_destroy(cuda);
}

/* ---- a caller's communicator ------------------------------------------------- */

static void t_sub_communicator(gpuml_ctx *ctx)
{
    int wr, wn;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    MPI_Comm_size(MPI_COMM_WORLD, &wn);
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, wr % 2, wr, &half);
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.mpi_comm = &half;
    cc.timeout_s = 30;
    gpuml_comm *c = NULL;
    OK(gpuml_comm_create(&cc, &c));
    if (c) {
        int expect_n = (wn - wr % 2 + 1) / 2;
        CHECK(gpuml_comm_size(c) == expect_n && gpuml_comm_rank(c) == wr / 2, "sub-communicator rank %d size %d",
              gpuml_comm_rank(c), gpuml_comm_size(c));
        int64_t one = 1;
        gpuml_tensor *t = NULL;
        OK(gpuml_tensor_create(ctx, GPUML_I64, 1, &one, &t));
        *(int64_t *)gpuml_tensor_data(t) = wr;
        OK(gpuml_comm_allreduce(c, ctx, GPUML_COMM_SUM, t, t));
        int64_t want = 0;
        for (int q = wr % 2; q < wn; q += 2)
            want += q;
        CHECK(*(int64_t *)gpuml_tensor_data(t) == want, "sub-communicator sum %lld, want %lld",
              (long long)*(int64_t *)gpuml_tensor_data(t), (long long)want);
        gpuml_tensor_destroy(t);
        gpuml_comm_destroy(c);
    }
    /* gpuml's error handler is on its own duplicate, not on the caller's. */
    MPI_Errhandler eh;
    MPI_Comm_get_errhandler(half, &eh);
    CHECK(eh == MPI_ERRORS_ARE_FATAL, "gpuml changed the error handler of the caller's communicator");
    MPI_Errhandler_free(&eh);
    MPI_Comm_free(&half);
}

/* ---- main --------------------------------------------------------------------- */

static gpuml_comm *make_comm(bool det, bool validate)
{
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.deterministic = det;
    cc.validate = validate;
    cc.timeout_s = 60;
    gpuml_comm *c = NULL;
    gpuml_status st = gpuml_comm_create(&cc, &c);
    if (st != GPUML_OK) {
        fprintf(stderr, "gpuml_comm_create: %s: %s\n", gpuml_status_string(st), gpuml_last_error());
        exit(1);
    }
    return c;
}

int main(int argc, char **argv)
{
    bool gpuml_init = argc > 1 && !strcmp(argv[1], "gpuml-init");
    if (!gpuml_init) {
        int provided;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    }
    gpuml_comm *det = make_comm(true, true), *native = make_comm(false, true), *noval = make_comm(true, false);
    g_rank = gpuml_comm_rank(det);
    int n = gpuml_comm_size(det);
    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.num_threads = 1;
    gpuml_ctx *ctx = NULL;
    if (gpuml_ctx_create(&xc, &ctx) != GPUML_OK)
        return 1;
    CHECK(gpuml_comm_get_backend(det) == GPUML_COMM_MPI && gpuml_comm_device(det).type == GPUML_DEVICE_CPU,
          "backend / device");
    CHECK(gpuml_comm_local_size(det) == n && gpuml_comm_local_rank(det) == g_rank,
          "one node: local rank %d of %d", gpuml_comm_local_rank(det), gpuml_comm_local_size(det));

    env envs[3] = {{det, ctx, g_rank, n, true, "deterministic"},
                   {native, ctx, g_rank, n, false, "native"},
                   {noval, ctx, g_rank, n, true, "deterministic, no validation"}};
    for (int i = 0; i < 3; i++) {
        t_collectives(&envs[i]);
        t_nonblocking(&envs[i]);
    }
    uint64_t hash = 0;
    t_determinism(&envs[0], &hash);
    t_bad_arguments(&envs[0]);
    t_bad_arguments(&envs[1]);
    gpuml_comm_destroy(noval);
    gpuml_comm_destroy(native);
    if (!gpuml_init)
        t_sub_communicator(ctx);

    /* Sum the failures over the ranks. */
    int64_t one = 1;
    gpuml_tensor *f = NULL;
    gpuml_tensor_create(ctx, GPUML_I64, 1, &one, &f);
    *(int64_t *)gpuml_tensor_data(f) = g_fail;
    gpuml_status st = gpuml_comm_allreduce(det, ctx, GPUML_COMM_SUM, f, f);
    int64_t total = st == GPUML_OK ? *(int64_t *)gpuml_tensor_data(f) : -1;
    gpuml_tensor_destroy(f);
    gpuml_comm_destroy(det);
    if (gpuml_init) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) {
            fprintf(stderr, "rank %d: gpuml initialised MPI but did not finalise it\n", g_rank);
            total = total < 0 ? total : total + 1;
        }
    } else {
        int fin = 1;
        MPI_Finalized(&fin);
        if (fin || MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) {
            fprintf(stderr, "rank %d: gpuml finalised the host's MPI\n", g_rank);
            total = total < 0 ? total : total + 1;
        }
        MPI_Finalize();
    }
    if (g_rank == 0) {
        printf("DETHASH %016" PRIx64 "\n", hash);
        printf("test_dist_mpi: %d ranks, %d checks per rank, %lld failures%s\n", n, g_checks, (long long)total,
               gpuml_init ? " (gpuml initialised MPI)" : "");
    }
    gpuml_ctx_destroy(ctx);
    return total == 0 ? 0 : 1;
}
