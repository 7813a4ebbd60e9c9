/* tests/dist/test_dist_nccl.c - the NCCL backend on CUDA tensors, 1 to N
 * ranks (one process and one device per rank; in the emulated build every
 * device is emulated, so it runs on any machine):
 *   - every collective against a reference computed here from every rank's
 *     inputs: all-reduce (sum/avg/max/min; f32, f64, i32, i64; empty, odd
 *     and multi-MB sizes; in place or not), broadcast from every root,
 *     all-gather (uneven rows when MPI bootstraps: gpuml agrees counts over
 *     it), reduce-scatter (uneven rows), barrier;
 *   - the deterministic f32 sum bitwise equal to (float) of the rank-order
 *     double sum, every rank holding the same bits, and a hash of it
 *     printed ("DETHASH", compared across runs by mpirun_test.sh twice);
 *   - non-blocking starts ordered after a kernel on the caller's stream,
 *     waited in another order; abort; a CPU tensor without MPI.
 *
 *   test_dist_nccl [env|mpi|file PATH]   the bootstrap (default env: one
 *     rank makes its own id; under mpirun the launcher exports
 *     GPUML_TEST_NCCL_ID and GPUML_TEST_NCCL_ID1, see nccl_env_run.sh)
 *   test_dist_nccl print-id              prints a fresh id (hex)
 * Skipped (77) without NCCL or a CUDA device. Failures are counted, not
 * fatal (a rank must not leave the others waiting), and summed over ranks. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpuml/gpuml.h>

static int g_rank, g_n, g_fail, g_checks;
static gpuml_ctx *g_ctx;

#define CHECK(cond, ...)                                                                                    \
    do {                                                                                                    \
        g_checks++;                                                                                         \
        if (!(cond)) {                                                                                      \
            g_fail++;                                                                                       \
            fprintf(stderr, "rank %d: %s:%d: CHECK(%s) failed: ", g_rank, __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                                   \
            fputc('\n', stderr);                                                                            \
        }                                                                                                   \
    } while (0)
#define OK(expr)                                                                                            \
    do {                                                                                                    \
        gpuml_status ok_st_ = (expr);                                                                       \
        CHECK(ok_st_ == GPUML_OK, "%s -> %s: %s", #expr, gpuml_status_string(ok_st_), gpuml_last_error()); \
    } while (0)

/* Rank q's element i (seeded), exact in every dtype used. */
static double elem(gpuml_dtype dt, int q, int64_t i, int seed)
{
    uint64_t x = (uint64_t)(i * 2654435761u) ^ ((uint64_t)q << 40) ^ ((uint64_t)seed << 52);
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    if (dt == GPUML_I32 || dt == GPUML_I64)
        return (double)((int64_t)(x % 2001) - 1000);
    if (dt == GPUML_U8)
        return (double)(x & 255);
    return (double)(float)((double)(x >> 11) / 9007199254740992.0 * 20.0 - 10.0);
}

static size_t esz(gpuml_dtype dt) { return dt == GPUML_F64 || dt == GPUML_I64 ? 8 : dt == GPUML_U8 ? 1 : 4; }

static void store(gpuml_dtype dt, void *p, int64_t i, double v)
{
    switch (dt) {
    case GPUML_F32: ((float *)p)[i] = (float)v; break;
    case GPUML_F64: ((double *)p)[i] = v; break;
    case GPUML_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case GPUML_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    default: ((uint8_t *)p)[i] = (uint8_t)v; break;
    }
}

static double load(gpuml_dtype dt, const void *p, int64_t i)
{
    switch (dt) {
    case GPUML_F32: return ((const float *)p)[i];
    case GPUML_F64: return ((const double *)p)[i];
    case GPUML_I32: return ((const int32_t *)p)[i];
    case GPUML_I64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i];
    }
}

/* A device tensor holding rank q's data (flat offset base), or sentinels. */
static gpuml_tensor *dev(gpuml_dtype dt, int nd, const int64_t *shape, int q, int seed, int64_t base)
{
    gpuml_tensor *t = NULL;
    OK(gpuml_tensor_create(g_ctx, dt, nd, shape, &t));
    if (!t)
        return NULL;
    int64_t n = gpuml_tensor_numel(t);
    void *h = malloc((size_t)n * esz(dt) + 1);
    if (q < 0)
        memset(h, 0x7f, (size_t)n * esz(dt));
    for (int64_t i = 0; q >= 0 && i < n; i++)
        store(dt, h, i, elem(dt, q, base + i, seed));
    if (n)
        OK(gpuml_tensor_copy_from_host(g_ctx, t, h, (size_t)n * esz(dt)));
    free(h);
    return t;
}

static void *host(const gpuml_tensor *t)
{
    size_t b = gpuml_tensor_nbytes(t);
    void *h = malloc(b + 1);
    if (b)
        OK(gpuml_tensor_copy_to_host(g_ctx, t, h, b));
    return h;
}

/* Element i of the reduction over ranks; det f32 sum/avg: (float) of the
 * rank-order double sum (bitwise), else within a relative 1e-6. */
static bool matches(gpuml_dtype dt, gpuml_comm_op op, bool det, double got, int64_t i, int seed)
{
    double acc = elem(dt, 0, i, seed);
    for (int q = 1; q < g_n; q++) {
        double v = elem(dt, q, i, seed);
        acc = op == GPUML_COMM_MAX ? fmax(acc, v) : op == GPUML_COMM_MIN ? fmin(acc, v) : acc + v;
    }
    if (op == GPUML_COMM_AVG)
        acc /= g_n;
    if (dt == GPUML_F32 && det)
        return (float)got == (float)acc;
    if (dt == GPUML_I32 || dt == GPUML_I64 || op == GPUML_COMM_MAX || op == GPUML_COMM_MIN)
        return got == (dt == GPUML_F32 ? (double)(float)acc : acc);
    return fabs(got - acc) <= 1e-6 * (1.0 + fabs(acc)) * g_n;
}

static void t_allreduce(gpuml_comm *c, bool det, gpuml_dtype dt, gpuml_comm_op op, int64_t n, bool in_place, int seed)
{
    gpuml_tensor *in = dev(dt, 1, &n, g_rank, seed, 0), *out = in_place ? in : dev(dt, 1, &n, -1, 0, 0);
    gpuml_status st = gpuml_comm_allreduce(c, g_ctx, op, in, out);
    CHECK(st == GPUML_OK, "allreduce %s op %d n=%lld: %s", gpuml_dtype_name(dt), (int)op, (long long)n,
          gpuml_last_error());
    void *h = host(out);
    int64_t bad = 0;
    for (int64_t i = 0; i < n && st == GPUML_OK; i++)
        bad += !matches(dt, op, det, load(dt, h, i), i, seed);
    CHECK(bad == 0, "%s allreduce %s op %d n=%lld%s: %lld wrong", det ? "det" : "native", gpuml_dtype_name(dt),
          (int)op, (long long)n, in_place ? " in place" : "", (long long)bad);
    free(h);
    if (!in_place)
        gpuml_tensor_destroy(out);
    gpuml_tensor_destroy(in);
}

static void t_broadcast(gpuml_comm *c, gpuml_dtype dt, int64_t n, int root)
{
    gpuml_tensor *t = dev(dt, 1, &n, g_rank == root ? root : -1, 5, 0);
    OK(gpuml_comm_broadcast(c, g_ctx, t, root));
    void *h = host(t);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += load(dt, h, i) != elem(dt, root, i, 5);
    CHECK(bad == 0, "broadcast %s n=%lld root %d: %lld wrong", gpuml_dtype_name(dt), (long long)n, root,
          (long long)bad);
    free(h);
    gpuml_tensor_destroy(t);
}

static int64_t rows_of(int q, bool uneven) { return uneven ? 2 * q + (q % 2) : 3; }

static void t_allgather(gpuml_comm *c, bool uneven)
{
    int64_t total = 0;
    for (int q = 0; q < g_n; q++)
        total += rows_of(q, uneven);
    int64_t is[2] = {rows_of(g_rank, uneven), 3}, os[2] = {total, 3};
    gpuml_tensor *in = dev(GPUML_F32, 2, is, g_rank, 9, 0), *out = dev(GPUML_F32, 2, os, -1, 0, 0);
    OK(gpuml_comm_allgather(c, g_ctx, in, out));
    float *h = host(out);
    int64_t bad = 0, row = 0;
    for (int q = 0; q < g_n; q++)
        for (int64_t r = 0; r < rows_of(q, uneven); r++, row++)
            for (int k = 0; k < 3; k++)
                bad += h[row * 3 + k] != (float)elem(GPUML_F32, q, r * 3 + k, 9);
    CHECK(bad == 0, "allgather of %lld rows%s: %lld wrong", (long long)total, uneven ? " (uneven)" : "",
          (long long)bad);
    free(h);
    gpuml_tensor_destroy(in);
    gpuml_tensor_destroy(out);
}

static void t_reduce_scatter(gpuml_comm *c, bool det, gpuml_dtype dt, gpuml_comm_op op, int64_t rows, int seed)
{
    int64_t start, count;
    gpuml_comm_shard_rows(rows, g_n, g_rank, &start, &count);
    int64_t is[2] = {rows, 2}, os[2] = {count, 2};
    gpuml_tensor *in = dev(dt, 2, is, g_rank, seed, 0), *out = dev(dt, 2, os, -1, 0, 0);
    OK(gpuml_comm_reduce_scatter(c, g_ctx, op, in, out));
    void *h = host(out);
    int64_t bad = 0;
    for (int64_t i = 0; i < count * 2; i++)
        bad += !matches(dt, op, det, load(dt, h, i), start * 2 + i, seed);
    CHECK(bad == 0, "%s reduce_scatter %s R=%lld: %lld wrong", det ? "det" : "native", gpuml_dtype_name(dt),
          (long long)rows, (long long)bad);
    free(h);
    gpuml_tensor_destroy(in);
    gpuml_tensor_destroy(out);
}

static void t_collectives(gpuml_comm *c, bool det, bool have_mpi)
{
    static const int64_t sizes[] = {0, 1, 7, 1000, 200000 /* 800 KB of f32: many channel rounds */};
    static const gpuml_comm_op ops[] = {GPUML_COMM_SUM, GPUML_COMM_AVG, GPUML_COMM_MAX, GPUML_COMM_MIN};
    for (int s = 0; s < 5; s++)
        t_allreduce(c, det, GPUML_F32, ops[s % 4], sizes[s], s % 2 == 0, 10 + s);
    t_allreduce(c, det, GPUML_F32, GPUML_COMM_SUM, 30011, false, 3);
    t_allreduce(c, det, GPUML_F32, GPUML_COMM_AVG, 1001, true, 4);
    if (!det) { /* the deterministic NCCL sum takes f32 only */
        t_allreduce(c, det, GPUML_F64, GPUML_COMM_SUM, 65536, false, 12);
        t_allreduce(c, det, GPUML_F64, GPUML_COMM_AVG, 999, true, 5);
        t_allreduce(c, det, GPUML_I32, GPUML_COMM_SUM, 500, false, 7);
        t_allreduce(c, det, GPUML_I32, GPUML_COMM_MAX, 500, false, 8);
        t_allreduce(c, det, GPUML_I64, GPUML_COMM_MIN, 3, true, 9);
    }
    for (int root = 0; root < g_n; root++)
        t_broadcast(c, GPUML_F32, 1000, root);
    t_broadcast(c, GPUML_U8, 1 << 20, g_n - 1);
    t_broadcast(c, GPUML_I64, 5, 0);
    t_allgather(c, false);
    if (have_mpi)
        t_allgather(c, true);
    int64_t rs_rows[] = {1, 2 * g_n + 1, 4 * g_n, 30011};
    for (int i = 0; i < 4; i++)
        t_reduce_scatter(c, det, GPUML_F32, GPUML_COMM_SUM, rs_rows[i], 20 + i);
    if (!det)
        t_reduce_scatter(c, det, GPUML_F64, GPUML_COMM_AVG, 2 * g_n + 1, 30);
    OK(gpuml_comm_barrier(c));
}

/* Buckets started behind a kernel on the caller's stream, waited in
 * reverse order. */
static void t_nonblocking(gpuml_comm *c, bool det)
{
    enum { K = 5 };
    static const int64_t sizes[K] = {1, 1000, 70000, 7, 16384};
    gpuml_tensor *b[K];
    gpuml_comm_request *req[K];
    for (int k = 0; k < K; k++) {
        b[k] = dev(GPUML_F32, 1, &sizes[k], g_rank, 50 + k, 0);
        OK(gpuml_scale(g_ctx, 2.0f, b[k], b[k])); /* queued: the collective must see its result */
        OK(gpuml_comm_allreduce_start(c, g_ctx, GPUML_COMM_SUM, b[k], b[k], &req[k]));
        OK(gpuml_comm_progress(c));
    }
    for (int k = K - 1; k >= 0; k--) {
        OK(gpuml_comm_wait(req[k], 60));
        float *h = host(b[k]);
        int64_t bad = 0;
        for (int64_t i = 0; i < sizes[k]; i++) {
            double acc = 0;
            for (int q = 0; q < g_n; q++)
                acc += 2.0 * (double)(float)elem(GPUML_F32, q, i, 50 + k);
            bad += det ? h[i] != (float)acc : fabs(h[i] - acc) > 1e-6 * (1 + fabs(acc)) * g_n;
        }
        CHECK(bad == 0, "non-blocking bucket %d: %lld wrong", k, (long long)bad);
        free(h);
        gpuml_tensor_destroy(b[k]);
    }
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Hash of a large deterministic sum; the same bits on every rank. */
static uint64_t t_determinism(gpuml_comm *det, gpuml_comm *native)
{
    int64_t big = 1 << 17;
    gpuml_tensor *t = dev(GPUML_F32, 1, &big, g_rank, 78, 0);
    OK(gpuml_comm_allreduce(det, g_ctx, GPUML_COMM_SUM, t, t));
    void *h = host(t);
    uint64_t hash = fnv(h, (size_t)big * 4, 1469598103934665603ULL);
    free(h);
    int64_t two = 2;
    int64_t hv[2] = {(int64_t)(hash >> 32), (int64_t)(hash & 0xffffffffu)}, mx[2], mn[2];
    gpuml_tensor *a = dev(GPUML_I64, 1, &two, -1, 0, 0), *b = dev(GPUML_I64, 1, &two, -1, 0, 0);
    OK(gpuml_tensor_copy_from_host(g_ctx, a, hv, sizeof hv));
    OK(gpuml_tensor_copy_from_host(g_ctx, b, hv, sizeof hv));
    OK(gpuml_comm_allreduce(native, g_ctx, GPUML_COMM_MAX, a, a));
    OK(gpuml_comm_allreduce(native, g_ctx, GPUML_COMM_MIN, b, b));
    OK(gpuml_tensor_copy_to_host(g_ctx, a, mx, sizeof mx));
    OK(gpuml_tensor_copy_to_host(g_ctx, b, mn, sizeof mn));
    CHECK(!memcmp(mx, mn, sizeof mx), "the ranks got different bits");
    gpuml_tensor_destroy(a);
    gpuml_tensor_destroy(b);
    gpuml_tensor_destroy(t);
    return hash;
}

static gpuml_comm *make(const char *boot, const char *path, bool det, int tag)
{
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = GPUML_COMM_NCCL;
    cc.deterministic = det;
    cc.timeout_s = 60;
    char p[512], tg[64];
    if (!strcmp(boot, "mpi")) {
        cc.bootstrap = GPUML_BOOTSTRAP_MPI;
    } else if (!strcmp(boot, "file")) {
        cc.bootstrap = GPUML_BOOTSTRAP_FILE;
        snprintf(p, sizeof p, "%s.%d", path, tag); /* one file per communicator */
        snprintf(tg, sizeof tg, "test-dist-nccl-%d", tag);
        cc.bootstrap_path = p;
        cc.bootstrap_tag = tg;
    } else {
        cc.bootstrap = GPUML_BOOTSTRAP_ENV;
        cc.bootstrap_env = tag == 0 ? "GPUML_TEST_NCCL_ID" : tag == 1 ? "GPUML_TEST_NCCL_ID1" : "GPUML_TEST_NCCL_ID2";
        if (!getenv("OMPI_COMM_WORLD_SIZE")) { /* alone: make the id here */
            char hex[257];
            if (gpuml_comm_nccl_unique_id(hex) != GPUML_OK)
                return NULL;
            setenv(cc.bootstrap_env, hex, 1);
            cc.rank = 0;
            cc.size = 1;
            cc.local_rank = 0;
        }
    }
    gpuml_comm *c = NULL;
    if (gpuml_comm_create(&cc, &c) != GPUML_OK)
        fprintf(stderr, "gpuml_comm_create (%s bootstrap): %s\n", boot, gpuml_last_error());
    return c;
}

int main(int argc, char **argv)
{
    if (!gpuml_has_feature("nccl") || gpuml_cuda_device_count() == 0) {
        printf("test_dist_nccl: skipped (no NCCL or no GPU)\n");
        return 77;
    }
    if (argc > 1 && !strcmp(argv[1], "print-id")) { /* for a launcher: an id to export */
        char hex[257];
        if (gpuml_comm_nccl_unique_id(hex) != GPUML_OK)
            return 1;
        printf("%s\n", hex);
        return 0;
    }
    const char *boot = argc > 1 ? argv[1] : "env", *path = argc > 2 ? argv[2] : "/tmp/gpuml-nccl-id";
    gpuml_comm *det = make(boot, path, true, 0), *native = det ? make(boot, path, false, 1) : NULL;
    if (!det || !native)
        return 1;
    g_rank = gpuml_comm_rank(det);
    g_n = gpuml_comm_size(det);
    gpuml_device d = gpuml_comm_device(det);
    CHECK(gpuml_comm_get_backend(det) == GPUML_COMM_NCCL && d.type == GPUML_DEVICE_CUDA, "backend / device");
    int ndev = gpuml_cuda_device_count(), local = gpuml_comm_local_rank(det);
    CHECK(d.index == local % ndev, "rank %d (local %d) on device %d of %d", g_rank, local, d.index, ndev);
    gpuml_ctx_config xc;
    gpuml_ctx_config_init_defaults(&xc);
    xc.device = d;
    if (gpuml_ctx_create(&xc, &g_ctx) != GPUML_OK)
        return 1;
    bool have_mpi = !strcmp(boot, "mpi");
    t_collectives(det, true, have_mpi);
    t_collectives(native, false, have_mpi);
    t_nonblocking(det, true);
    t_nonblocking(native, false);
    uint64_t hash = t_determinism(det, native);

    if (!have_mpi) { /* CPU tensors need MPI, which this communicator does not have */
        gpuml_ctx_config c;
        gpuml_ctx_config_init_defaults(&c);
        gpuml_ctx *cpu = NULL;
        int64_t four = 4;
        gpuml_tensor *h = NULL;
        OK(gpuml_ctx_create(&c, &cpu));
        OK(gpuml_tensor_zeros(cpu, GPUML_F32, 1, &four, &h));
        gpuml_status st = gpuml_comm_allreduce(det, cpu, GPUML_COMM_SUM, h, h);
        CHECK(st == GPUML_ERR_UNSUPPORTED, "CPU tensor: %s", gpuml_status_string(st));
        gpuml_tensor_destroy(h);
        gpuml_ctx_destroy(cpu);
    }

    /* Sum the failures over the ranks (i64 on the native communicator). */
    int64_t one = 1, total = -1;
    gpuml_tensor *f = dev(GPUML_I64, 1, &one, -1, 0, 0);
    int64_t mine = g_fail;
    gpuml_tensor_copy_from_host(g_ctx, f, &mine, sizeof mine);
    if (gpuml_comm_allreduce(native, g_ctx, GPUML_COMM_SUM, f, f) == GPUML_OK)
        gpuml_tensor_copy_to_host(g_ctx, f, &total, sizeof total);
    gpuml_tensor_destroy(f);

    /* Abort (not under MPI: gpuml would then rightly refuse to finalise
     * MPI, and the fault tests cover it): the communicator is broken for
     * good, at once. The barrier first: every rank is done with the sum. */
    if (gpuml_comm_barrier(det) != GPUML_OK)
        total = total < 0 ? total : total + 1;
    if (!have_mpi)
        gpuml_comm_abort(native);
    if (!have_mpi && (gpuml_comm_status(native) != GPUML_ERR_CANCELLED || gpuml_comm_barrier(native) != GPUML_ERR_STATE)) {
        fprintf(stderr, "rank %d: abort did not cancel the communicator\n", g_rank);
        total = total < 0 ? total : total + 1;
    }
    gpuml_comm_destroy(native);
    gpuml_comm_destroy(det);
    gpuml_ctx_destroy(g_ctx);
    if (g_rank == 0) {
        printf("DETHASH %016" PRIx64 "\n", hash);
        printf("test_dist_nccl (%s bootstrap): %d ranks, %d checks per rank, %lld failures\n", boot, g_n, g_checks,
               (long long)total);
    }
    return total == 0 ? 0 : 1;
}
