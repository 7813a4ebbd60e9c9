/* tests/harness.c - see harness.h. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define GUARD 16
static const uint8_t SENTINEL_BYTE = 0xA7; /* guard pattern */

uint64_t h_rand_u64(uint64_t *s)
{
    /* splitmix64: independent of gpuml's Philox. */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double h_rand_uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(h_rand_u64(s) >> 11) * 0x1.0p-53);
}

double h_rand_normal(uint64_t *s)
{
    double u1 = h_rand_uniform(s, 1e-300, 1.0), u2 = h_rand_uniform(s, 0.0, 1.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t h_numel(int nd, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    return n;
}

/* GPUML_TEST_FILTER=pattern runs only the matching tests of a program
 * (cmocka's filter; tools/emu_mutations.sh runs single tests this way). */
__attribute__((constructor)) static void h_test_filter(void)
{
    const char *f = getenv("GPUML_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
}

int h_num_backends(void) { return gpuml_cuda_device_count() > 0 ? 2 : 1; }
gpuml_device_type h_backend(int i) { return i == 0 ? GPUML_DEVICE_CPU : GPUML_DEVICE_CUDA; }

gpuml_ctx *h_ctx(gpuml_device_type type, int nthreads)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.device.type = type;
    cfg.num_threads = nthreads;
    gpuml_ctx *ctx = NULL;
    if (gpuml_ctx_create(&cfg, &ctx) != GPUML_OK) {
        fprintf(stderr, "h_ctx: %s\n", gpuml_last_error());
        return NULL;
    }
    return ctx;
}

gpuml_ctx *h_ctx_on(const gpuml_executor *ex)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.executor = ex;
    gpuml_ctx *ctx = NULL;
    if (gpuml_ctx_create(&cfg, &ctx) != GPUML_OK) {
        fprintf(stderr, "h_ctx_on: %s\n", gpuml_last_error());
        return NULL;
    }
    return ctx;
}

/* The executors every op table runs on (created once, kept for the
 * process): serial, OpenMP and gpuml's pool with three workers (more than
 * the default two, so pieces land on workers in other orders), and the TBB
 * adapter of examples/cmssw where the build has TBB (harness_tbb.cc). */
enum { H_NEXEC_BUILTIN = 3 };
int h_num_executors(void) { return H_NEXEC_BUILTIN + (h_tbb_executor() != NULL); }

const gpuml_executor *h_executor(int i, const char **name)
{
    static gpuml_executor *omp3, *pool3;
    static const char *const names[] = {"serial", "openmp x3", "pool x3", "tbb arena x3"};
    *name = names[i < 4 ? i : 3];
    switch (i) {
    case 0: return gpuml_executor_serial();
    case 1:
        if (!omp3 && gpuml_executor_create(GPUML_EXECUTOR_OPENMP, 3, &omp3) != GPUML_OK)
            return NULL;
        return omp3;
    case 2:
        if (!pool3 && gpuml_executor_create(GPUML_EXECUTOR_POOL, 3, &pool3) != GPUML_OK)
            return NULL;
        return pool3;
    default: return h_tbb_executor();
    }
}

#ifndef H_HAVE_TBB
const gpuml_executor *h_tbb_executor(void) { return NULL; }
#endif

gpuml_tensor *h_tensor(gpuml_ctx *ctx, gpuml_dtype dt, int nd, const int64_t *shape, const void *host)
{
    gpuml_tensor *t = NULL;
    if (gpuml_tensor_create(ctx, dt, nd, shape, &t) != GPUML_OK) {
        fprintf(stderr, "h_tensor: %s\n", gpuml_last_error());
        return NULL;
    }
    if (host && gpuml_tensor_copy_from_host(ctx, t, host, gpuml_tensor_nbytes(t)) != GPUML_OK) {
        fprintf(stderr, "h_tensor: %s\n", gpuml_last_error());
        gpuml_tensor_destroy(t);
        return NULL;
    }
    return t;
}

gpuml_tensor *h_tensor_f32(gpuml_ctx *ctx, int nd, const int64_t *shape, const float *host)
{
    return h_tensor(ctx, GPUML_F32, nd, shape, host);
}

void *h_read(gpuml_ctx *ctx, const gpuml_tensor *t)
{
    size_t n = gpuml_tensor_nbytes(t);
    void *p = malloc(n ? n : 1);
    if (gpuml_tensor_copy_to_host(ctx, t, p, n) != GPUML_OK) {
        fprintf(stderr, "h_read: %s\n", gpuml_last_error());
        free(p);
        return NULL;
    }
    return p;
}

static void h_free_data(void *data, void *user)
{
    (void)user;
    free(data);
}

gpuml_tensor *h_host_copy(gpuml_ctx *ctx, const gpuml_tensor *t)
{
    void *p = h_read(ctx, t);
    gpuml_tensor *out = NULL;
    if (p && gpuml_tensor_wrap(p, (gpuml_device){GPUML_DEVICE_CPU, 0}, gpuml_tensor_dtype(t), gpuml_tensor_ndim(t),
                               gpuml_tensor_shape(t), h_free_data, NULL, &out) != GPUML_OK) {
        free(p);
        return NULL;
    }
    return out;
}

/* ---- value conversion (test-side, independent of kernels/cast.h) ------- */
static double to_f16_ref(double v) { return (double)(_Float16)v; }

static double to_bf16_ref(double v)
{
    float f = (float)v;
    if (isnan(f) || isinf(f) || f == 0.0f)
        return f;
    /* Neighbours by truncation of the low 16 bits and one step up. */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    float flo, fhi;
    memcpy(&flo, &lo, 4);
    memcpy(&fhi, &hi, 4);
    double dlo = fabs((double)f - flo), dhi = fabs((double)fhi - f);
    if (dlo < dhi)
        return flo;
    if (dhi < dlo)
        return fhi;
    return ((lo >> 16) & 1u) ? fhi : flo;
}

/* Round a double to what a dtype can hold, the way gpuml is specified to
 * (used by cast's reference and to build typed host inputs). */
double h_round_to(gpuml_dtype dt, double v);
double h_round_to(gpuml_dtype dt, double v)
{
    switch (dt) {
    case GPUML_F32: return (double)(float)v;
    case GPUML_F16: return to_f16_ref((double)(float)v);
    case GPUML_BF16: return to_bf16_ref(v);
    case GPUML_F64: return v;
    case GPUML_I32: return isnan(v) ? 0 : v <= -2147483648.0 ? -2147483648.0 : v >= 2147483647.0 ? 2147483647.0 : trunc(v);
    case GPUML_I64: return isnan(v) ? 0 : v >= 0x1p63 ? 0x1p63 : v <= -0x1p63 ? -0x1p63 : trunc(v);
    case GPUML_U8: return isnan(v) ? 0 : v <= 0 ? 0 : v >= 255 ? 255 : trunc(v);
    case GPUML_BOOL: return v != 0.0 ? 1 : 0;
    default: return NAN;
    }
}

static void store_typed(gpuml_dtype dt, void *buf, int64_t i, double v)
{
    switch (dt) {
    case GPUML_F32: ((float *)buf)[i] = (float)v; break;
    case GPUML_F16: {
        _Float16 h = (_Float16)(float)v;
        memcpy((char *)buf + 2 * i, &h, 2);
        break;
    }
    case GPUML_BF16: {
        float f = (float)to_bf16_ref(v);
        uint32_t u;
        memcpy(&u, &f, 4);
        uint16_t h = (uint16_t)(u >> 16);
        memcpy((char *)buf + 2 * i, &h, 2);
        break;
    }
    case GPUML_F64: ((double *)buf)[i] = v; break;
    case GPUML_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case GPUML_I64: ((int64_t *)buf)[i] = (int64_t)v; break;
    case GPUML_U8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    case GPUML_BOOL: ((uint8_t *)buf)[i] = v != 0; break;
    default: break;
    }
}

static double load_typed(gpuml_dtype dt, const void *buf, int64_t i)
{
    switch (dt) {
    case GPUML_F32: return ((const float *)buf)[i];
    case GPUML_F16: {
        _Float16 h;
        memcpy(&h, (const char *)buf + 2 * i, 2);
        return (double)h;
    }
    case GPUML_BF16: {
        uint16_t h;
        memcpy(&h, (const char *)buf + 2 * i, 2);
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case GPUML_F64: return ((const double *)buf)[i];
    case GPUML_I32: return ((const int32_t *)buf)[i];
    case GPUML_I64: return (double)((const int64_t *)buf)[i];
    case GPUML_U8: return ((const uint8_t *)buf)[i];
    case GPUML_BOOL: return ((const uint8_t *)buf)[i];
    default: return NAN;
    }
}

/* ---- inputs ------------------------------------------------------------ */
typedef struct {
    double *d[H_MAXT];  /* values as doubles (already representable in dtype) */
    void *host[H_MAXT]; /* typed host buffers */
} inputs;

static void make_inputs(const h_case_io *io, uint64_t seed, inputs *in)
{
    uint64_t s = seed;
    for (int i = 0; i < io->n_in; i++) {
        int64_t n = h_numel(io->in_nd[i], io->in_shape[i]);
        in->d[i] = calloc((size_t)(n ? n : 1), sizeof(double));
        in->host[i] = calloc((size_t)(n ? n : 1), gpuml_dtype_size(io->in_dt[i]));
        if (io->in_kind[i] == V_CUSTOM) {
            io->gen(io, i, in->d, &s);
            for (int64_t e = 0; e < n; e++)
                in->d[i][e] = h_round_to(io->in_dt[i], in->d[i][e]);
        } else if (io->in_kind[i] == V_SPLITS) {
            /* index_lo events over index_hi rows, some of them empty. */
            int64_t b = n - 1, rows = io->index_hi[i];
            double *v = in->d[i];
            v[0] = 0;
            for (int64_t e = 1; e < b; e++) {
                int64_t r = (int64_t)h_rand_uniform(&s, 0, (double)rows + 0.999);
                v[e] = (double)(r > rows ? rows : r);
            }
            if (b > 0)
                v[b] = (double)rows;
            /* sort the interior cut points */
            for (int64_t a = 1; a < b; a++)
                for (int64_t c = a; c > 1 && v[c] < v[c - 1]; c--) {
                    double t = v[c];
                    v[c] = v[c - 1];
                    v[c - 1] = t;
                }
        } else {
            for (int64_t e = 0; e < n; e++) {
                double v;
                switch (io->in_kind[i]) {
                case V_POS: v = h_rand_uniform(&s, 0.2, 3.0); break;
                case V_WIDE: v = h_rand_uniform(&s, -6.0, 6.0); break;
                case V_INDEX:
                    v = floor(h_rand_uniform(&s, (double)io->index_lo[i], (double)io->index_hi[i] + 1.0));
                    if (v > (double)io->index_hi[i])
                        v = (double)io->index_hi[i];
                    break;
                case V_TIES: v = floor(h_rand_uniform(&s, -2.0, 3.0)); break;
                case V_HUGE: v = h_rand_uniform(&s, -40.0, 40.0); break;
                case V_UNIT: v = h_rand_uniform(&s, 0.05, 0.95); break;
                case V_CAST: {
                    static const double specials[] = {0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 255.0, 255.5, 256.0, -1.0,
                                                      65504.0, 65520.0, 1e10, -1e10, 2147483647.0, -2147483648.0,
                                                      3.0e-5, 6.0e-8, 1e-40};
                    int pick = (int)(h_rand_u64(&s) % 40);
                    v = pick < 19 ? specials[pick] : h_rand_normal(&s) * pow(10.0, h_rand_uniform(&s, -3, 6));
                    break;
                }
                default: v = h_rand_normal(&s); break;
                }
                in->d[i][e] = h_round_to(io->in_dt[i], v);
            }
        }
        for (int64_t e = 0; e < n; e++)
            store_typed(io->in_dt[i], in->host[i], e, in->d[i][e]);
    }
}

static void free_inputs(const h_case_io *io, inputs *in)
{
    for (int i = 0; i < io->n_in; i++) {
        free(in->d[i]);
        free(in->host[i]);
    }
}

/* ---- guarded outputs --------------------------------------------------- */
typedef struct {
    gpuml_tensor *buf;  /* [numel + GUARD] 1-D */
    gpuml_tensor *view; /* the output shape over its head */
    int64_t numel;
    size_t es;
} guarded;

static int guarded_make(gpuml_ctx *ctx, gpuml_dtype dt, int nd, const int64_t *shape, const void *init, guarded *g)
{
    memset(g, 0, sizeof *g);
    g->numel = h_numel(nd, shape);
    g->es = gpuml_dtype_size(dt);
    int64_t total = g->numel + GUARD;
    size_t bytes = (size_t)total * g->es;
    uint8_t *host = malloc(bytes);
    memset(host, SENTINEL_BYTE, bytes);
    if (dt == GPUML_F32) { /* a quiet NaN in every output slot */
        uint32_t nanbits = 0x7FC0DEADu;
        for (int64_t e = 0; e < g->numel; e++)
            memcpy(host + 4 * e, &nanbits, 4);
    }
    if (init)
        memcpy(host, init, (size_t)g->numel * g->es);
    g->buf = h_tensor(ctx, dt, 1, &total, host);
    free(host);
    gpuml_tensor *head = NULL;
    if (!g->buf || gpuml_tensor_slice_rows(g->buf, 0, g->numel, &head) != GPUML_OK)
        return -1;
    gpuml_status st = gpuml_tensor_reshape(head, nd, shape, &g->view);
    gpuml_tensor_destroy(head);
    return st == GPUML_OK ? 0 : -1;
}

/* Reads the output; returns the number of damaged guard bytes. */
static int guarded_read(gpuml_ctx *ctx, guarded *g, void **out)
{
    uint8_t *all = h_read(ctx, g->buf);
    int bad = 0;
    for (size_t b = (size_t)g->numel * g->es; b < (size_t)(g->numel + GUARD) * g->es; b++)
        bad += all[b] != SENTINEL_BYTE;
    *out = all;
    return bad;
}

static void guarded_free(guarded *g)
{
    gpuml_tensor_destroy(g->view);
    gpuml_tensor_destroy(g->buf);
}

/* ---- one forward (+ optional backward) run on one context -------------- */
typedef struct {
    void *out[H_MAXT];  /* typed host copies of outputs */
    void *gin[H_MAXT];  /* f32 host copies of input gradients */
    int failed;
} run_result;

static void free_result(run_result *r)
{
    for (int i = 0; i < H_MAXT; i++) {
        free(r->out[i]);
        free(r->gin[i]);
    }
}

static int run_once(const h_case *c, const h_case_io *io, gpuml_ctx *ctx, const inputs *in, const float *const *gout_host,
                    run_result *r, const char *label)
{
    memset(r, 0, sizeof *r);
    gpuml_tensor *tin[H_MAXT] = {0};
    guarded gout_[H_MAXT], gg[H_MAXT];
    gpuml_tensor *tout[H_MAXT] = {0}, *tgout[H_MAXT] = {0}, *tgin[H_MAXT] = {0};
    memset(gout_, 0, sizeof gout_);
    memset(gg, 0, sizeof gg);
    int fails = 0;
    for (int i = 0; i < io->n_in; i++) {
        tin[i] = h_tensor(ctx, io->in_dt[i], io->in_nd[i], io->in_shape[i], in->host[i]);
        if (!tin[i]) {
            fails++;
            goto done;
        }
    }
    for (int o = 0; o < io->n_out; o++) {
        const void *init = io->inout[o] >= 0 ? in->host[io->inout[o]] : NULL;
        if (guarded_make(ctx, io->out_dt[o], io->out_nd[o], io->out_shape[o], init, &gout_[o]) != 0) {
            fails++;
            goto done;
        }
        tout[o] = gout_[o].view;
    }
    gpuml_status st = c->run(ctx, io, tin, tout);
    if (st != GPUML_OK) {
        printf("FAIL %s [%s]: forward returned %s: %s\n", c->name, label, gpuml_status_string(st), gpuml_last_error());
        fails++;
        goto done;
    }
    for (int o = 0; o < io->n_out; o++) {
        int bad = guarded_read(ctx, &gout_[o], &r->out[o]);
        if (bad) {
            printf("FAIL %s [%s]: output %d: %d guard bytes overwritten\n", c->name, label, o, bad);
            fails++;
        }
    }
    if (gout_host && c->run_bwd) {
        for (int o = 0; o < io->n_out; o++)
            if (io->diff_out[o])
                tgout[o] = h_tensor_f32(ctx, io->out_nd[o], io->out_shape[o], gout_host[o]);
        for (int i = 0; i < io->n_in; i++)
            if (io->diff_in[i]) {
                if (guarded_make(ctx, GPUML_F32, io->in_nd[i], io->in_shape[i], NULL, &gg[i]) != 0) {
                    fails++;
                    goto done;
                }
                tgin[i] = gg[i].view;
            }
        st = c->run_bwd(ctx, io, tin, tout, tgout, tgin);
        if (st != GPUML_OK) {
            printf("FAIL %s [%s]: backward returned %s: %s\n", c->name, label, gpuml_status_string(st),
                   gpuml_last_error());
            fails++;
            goto done;
        }
        for (int i = 0; i < io->n_in; i++)
            if (tgin[i]) {
                int bad = guarded_read(ctx, &gg[i], &r->gin[i]);
                if (bad) {
                    printf("FAIL %s [%s]: gradient %d: %d guard bytes overwritten\n", c->name, label, i, bad);
                    fails++;
                }
            }
    }
done:
    for (int i = 0; i < H_MAXT; i++) {
        gpuml_tensor_destroy(tin[i]);
        gpuml_tensor_destroy(tgout[i]);
        if (gout_[i].buf)
            guarded_free(&gout_[i]);
        if (gg[i].buf)
            guarded_free(&gg[i]);
    }
    r->failed = fails;
    return fails;
}

static int compare_outputs(const h_case *c, const h_case_io *io, double *const *ref, const run_result *r,
                           const char *label)
{
    int fails = 0;
    for (int o = 0; o < io->n_out; o++) {
        int64_t n = h_numel(io->out_nd[o], io->out_shape[o]);
        int64_t shown = 0, bad = 0;
        gpuml_dtype dt = io->out_dt[o];
        bool exact = dt != GPUML_F32;
        for (int64_t e = 0; e < n; e++) {
            double got = load_typed(dt, r->out[o], e), want = ref[o][e];
            bool ok;
            if (isnan(want))
                ok = isnan(got);
            else if (isinf(want))
                ok = got == want;
            else if (exact)
                ok = got == want;
            else
                ok = isfinite(got) && fabs(got - want) <= c->atol + c->rtol * fabs(want);
            if (!ok) {
                bad++;
                if (shown++ < 5)
                    printf("FAIL %s [%s]: out%d[%lld] = %.9g, reference %.9g\n", c->name, label, o, (long long)e, got,
                           want);
            }
        }
        if (bad) {
            printf("FAIL %s [%s]: out%d: %lld of %lld elements wrong\n", c->name, label, o, (long long)bad,
                   (long long)n);
            fails++;
        }
    }
    return fails;
}

static double loss_of(const h_case *c, const h_case_io *io, double *const *in, double **outs,
                      const float *const *gout)
{
    c->ref(io, in, outs);
    double l = 0;
    for (int o = 0; o < io->n_out; o++) {
        if (!io->diff_out[o])
            continue;
        int64_t n = h_numel(io->out_nd[o], io->out_shape[o]);
        for (int64_t e = 0; e < n; e++)
            l += (double)gout[o][e] * outs[o][e];
    }
    return l;
}

static int check_gradients(const h_case *c, const h_case_io *io, inputs *in, const float *const *gout,
                           const run_result *r, const char *label, uint64_t seed)
{
    int fails = 0;
    double *outs[H_MAXT];
    for (int o = 0; o < io->n_out; o++) {
        int64_t n = h_numel(io->out_nd[o], io->out_shape[o]);
        outs[o] = calloc((size_t)(n ? n : 1), sizeof(double));
    }
    double tol = c->grad_tol > 0 ? c->grad_tol : 2e-3;
    uint64_t s = seed ^ 0xABCDEFull;
    for (int i = 0; i < io->n_in; i++) {
        if (!io->diff_in[i])
            continue;
        int64_t n = h_numel(io->in_nd[i], io->in_shape[i]);
        const float *g = r->gin[i];
        /* FD on up to 48 elements (all of a small input). */
        int64_t count = n < 48 ? n : 48;
        double *fd = calloc((size_t)(count ? count : 1), sizeof(double));
        int64_t *which = calloc((size_t)(count ? count : 1), sizeof(int64_t));
        double scale = 1e-30;
        for (int64_t q = 0; q < count; q++) {
            int64_t e = n <= 48 ? q : (int64_t)(h_rand_u64(&s) % (uint64_t)n);
            which[q] = e;
            double x0 = in->d[i][e];
            double h = 1e-5 * (fabs(x0) > 1 ? fabs(x0) : 1);
            in->d[i][e] = x0 + h;
            double lp = loss_of(c, io, in->d, outs, gout);
            in->d[i][e] = x0 - h;
            double lm = loss_of(c, io, in->d, outs, gout);
            in->d[i][e] = x0;
            fd[q] = (lp - lm) / (2 * h);
            scale = fmax(scale, fabs(fd[q]));
        }
        scale = fmax(scale, 1e-3);
        int64_t bad = 0;
        for (int64_t q = 0; q < count; q++) {
            double got = g[which[q]];
            if (!(fabs(got - fd[q]) <= tol * scale)) {
                if (bad++ < 5)
                    printf("FAIL %s [%s]: d/d in%d[%lld] = %.7g, finite difference %.7g\n", c->name, label, i,
                           (long long)which[q], got, fd[q]);
            }
        }
        /* Elements not sampled must still be finite (no sentinel left). */
        for (int64_t e = 0; e < n; e++)
            if (!isfinite(g[e])) {
                if (bad++ < 5)
                    printf("FAIL %s [%s]: d/d in%d[%lld] = %g is not finite\n", c->name, label, i, (long long)e, g[e]);
            }
        if (bad)
            fails++;
        free(fd);
        free(which);
    }
    for (int o = 0; o < io->n_out; o++)
        free(outs[o]);
    return fails;
}

static int same_bytes(const h_case_io *io, const run_result *a, const run_result *b, bool grads)
{
    for (int o = 0; o < io->n_out; o++) {
        size_t n = (size_t)h_numel(io->out_nd[o], io->out_shape[o]) * gpuml_dtype_size(io->out_dt[o]);
        if (memcmp(a->out[o], b->out[o], n) != 0)
            return 0;
    }
    if (grads)
        for (int i = 0; i < io->n_in; i++)
            if (a->gin[i] && memcmp(a->gin[i], b->gin[i], (size_t)h_numel(io->in_nd[i], io->in_shape[i]) * 4) != 0)
                return 0;
    return 1;
}

int harness_run_case(const h_case *c)
{
    int fails = 0;
    for (int v = 0; v < c->nvariants; v++) {
        h_case_io io;
        memset(&io, 0, sizeof io);
        for (int i = 0; i < H_MAXT; i++)
            io.inout[i] = -1;
        io.op = c->op;
        c->setup(v, &io);
        uint64_t seed = 0x5EED0000ull + (uint64_t)v * 7919u;
        inputs in;
        make_inputs(&io, seed, &in);

        double *ref[H_MAXT];
        for (int o = 0; o < io.n_out; o++) {
            int64_t n = h_numel(io.out_nd[o], io.out_shape[o]);
            ref[o] = calloc((size_t)(n ? n : 1), sizeof(double));
            if (io.inout[o] >= 0)
                memcpy(ref[o], in.d[io.inout[o]], (size_t)n * sizeof(double));
        }
        c->ref(&io, in.d, ref);

        float *gout[H_MAXT] = {0};
        uint64_t gs = seed ^ 0x77ull;
        for (int o = 0; o < io.n_out; o++)
            if (io.diff_out[o]) {
                int64_t n = h_numel(io.out_nd[o], io.out_shape[o]);
                gout[o] = malloc((size_t)(n ? n : 1) * sizeof(float));
                for (int64_t e = 0; e < n; e++)
                    gout[o][e] = (float)h_rand_normal(&gs);
            }
        bool has_grad = false;
        for (int i = 0; i < io.n_in; i++)
            has_grad = has_grad || (c->run_bwd && io.diff_in[i]);

        for (int bi = 0; bi < h_num_backends(); bi++) {
            gpuml_device_type dt = h_backend(bi);
            char label[96];
            snprintf(label, sizeof label, "variant %d, %s", v, dt == GPUML_DEVICE_CPU ? "cpu" : "cuda");
            gpuml_ctx *ctx = h_ctx(dt, dt == GPUML_DEVICE_CPU ? 2 : 0);
            if (!ctx) {
                fails++;
                continue;
            }
            run_result r;
            int f = run_once(c, &io, ctx, &in, has_grad ? (const float *const *)gout : NULL, &r, label);
            fails += f;
            if (!f) {
                fails += compare_outputs(c, &io, ref, &r, label);
                if (has_grad)
                    fails += check_gradients(c, &io, &in, (const float *const *)gout, &r, label, seed);
            }
            if (!f && dt == GPUML_DEVICE_CPU) {
                /* Same bits with one thread. */
                gpuml_ctx *one = h_ctx(GPUML_DEVICE_CPU, 1);
                run_result r1;
                if (!run_once(c, &io, one, &in, has_grad ? (const float *const *)gout : NULL, &r1, label) &&
                    !same_bytes(&io, &r, &r1, has_grad)) {
                    printf("FAIL %s [%s]: results differ between 1 and 2 threads\n", c->name, label);
                    fails++;
                }
                free_result(&r1);
                gpuml_ctx_destroy(one);
                /* Same bits on every executor, with every loop of two or
                 * more iterations cut into pieces (gpuml/executor.h). */
                for (int ei = 0; ei < h_num_executors(); ei++) {
                    const char *ename;
                    const gpuml_executor *ex = h_executor(ei, &ename);
                    gpuml_ctx *ec = ex ? h_ctx_on(ex) : NULL;
                    if (!ec) {
                        printf("FAIL %s [%s]: no context on the %s executor\n", c->name, label, ename);
                        fails++;
                        continue;
                    }
                    gpuml_ctx_set_parallel_threshold(ec, 1);
                    run_result re;
                    if (!run_once(c, &io, ec, &in, has_grad ? (const float *const *)gout : NULL, &re, label) &&
                        !same_bytes(&io, &r, &re, has_grad)) {
                        printf("FAIL %s [%s]: results on the %s executor differ from the default's\n", c->name,
                               label, ename);
                        fails++;
                    }
                    free_result(&re);
                    gpuml_ctx_destroy(ec);
                }
            }
            free_result(&r);
            gpuml_ctx_destroy(ctx);
        }
        for (int o = 0; o < io.n_out; o++) {
            free(ref[o]);
            free(gout[o]);
        }
        free_inputs(&io, &in);
    }
    return fails;
}

void h_set_in(h_case_io *io, int i, gpuml_dtype dt, h_kind k, int nd, const int64_t *shape)
{
    io->in_dt[i] = dt;
    io->in_kind[i] = k;
    io->in_nd[i] = nd;
    for (int d = 0; d < nd; d++)
        io->in_shape[i][d] = shape[d];
    if (io->n_in < i + 1)
        io->n_in = i + 1;
    io->diff_in[i] = dt == GPUML_F32 && k != V_INDEX && k != V_SPLITS;
}

void h_set_out(h_case_io *io, int o, gpuml_dtype dt, int nd, const int64_t *shape)
{
    io->out_dt[o] = dt;
    io->out_nd[o] = nd;
    for (int d = 0; d < nd; d++)
        io->out_shape[o][d] = shape[d];
    if (io->n_out < o + 1)
        io->n_out = o + 1;
    io->diff_out[o] = dt == GPUML_F32;
}

int h_every_allocation_fails(gpuml_ctx *ctx, h_op_fn op, void *user, gpuml_tensor *out, const char *name)
{
    size_t nbytes = gpuml_tensor_nbytes(out);
    void *before = h_read(ctx, out); /* through the context: out may be device memory */
    gpuml_alloc_stats base;
    gpuml_ctx_alloc_stats(ctx, 0, &base);
    int n, bad = 0;
    for (n = 1; n < 100; n++) {
        gpuml_ctx_fail_allocation_after(ctx, n);
        gpuml_status st = op(ctx, user);
        gpuml_ctx_fail_allocation_after(ctx, 0);
        if (st == GPUML_OK)
            break;
        if (st != GPUML_ERR_OUT_OF_MEMORY && bad++ < 5)
            printf("FAIL %s: allocation %d failed with %s\n", name, n, gpuml_status_string(st));
        void *after = h_read(ctx, out);
        if ((!after || memcmp(before, after, nbytes) != 0) && bad++ < 5)
            printf("FAIL %s: output changed although allocation %d failed\n", name, n);
        free(after);
        gpuml_alloc_stats now;
        gpuml_ctx_alloc_stats(ctx, 0, &now);
        if (now.bytes_in_use != base.bytes_in_use && bad++ < 5)
            printf("FAIL %s: %zu bytes leaked after allocation %d failed\n", name,
                   now.bytes_in_use - base.bytes_in_use, n);
    }
    if (n == 1 || n == 100) {
        printf("FAIL %s: %s\n", name, n == 1 ? "the op allocated nothing" : "still failing after 99 allocations");
        bad++;
    }
    free(before);
    return bad;
}

int h_compare_scaled(const char *what, const gpuml_tensor *got, const gpuml_tensor *want, double tol,
                     const char *peer)
{
    int64_t n = gpuml_tensor_numel(want);
    if (gpuml_tensor_numel(got) != n) {
        printf("%s: %lld elements, %s has %lld\n", what, (long long)gpuml_tensor_numel(got), peer, (long long)n);
        return 1;
    }
    const float *a = gpuml_tensor_data(got), *b = gpuml_tensor_data(want);
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(b[i]));
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(a[i] - b[i]) <= tol * (scale + fabs(b[i])) + 1e-6) && bad++ < 4)
            printf("%s[%lld]: gpuml %.8g, %s %.8g\n", what, (long long)i, a[i], peer, b[i]);
    return bad ? 1 : 0;
}

/* ---- op tables --------------------------------------------------------- */
#define H_MAX_ROWS 256
static const h_case *g_table;
static bool g_row_ran[H_MAX_ROWS];

static bool name_matches(const char *name, const char *pat)
{
    size_t k = strlen(pat);
    return !strncmp(name, pat, k) && (name[k] == 0 || name[k] == '.');
}

int h_run_cases(const h_case *cases, int n, ...)
{
    int fails = 0;
    if (n > H_MAX_ROWS || (g_table && g_table != cases)) {
        printf("FAIL h_run_cases: one table of at most %d rows per test program\n", H_MAX_ROWS);
        return 1;
    }
    g_table = cases;
    va_list ap;
    va_start(ap, n);
    for (const char *pat = va_arg(ap, const char *); pat; pat = va_arg(ap, const char *)) {
        int matched = 0;
        for (int i = 0; i < n; i++)
            if (name_matches(cases[i].name, pat)) {
                matched++;
                g_row_ran[i] = true;
                fails += harness_run_case(&cases[i]);
            }
        if (!matched) {
            printf("FAIL h_run_cases: no row of the table is named '%s'\n", pat);
            fails++;
        }
    }
    va_end(ap);
    return fails;
}

int h_list_cases(int argc, char **argv, const h_case *cases, int n)
{
    if (argc < 2 || strcmp(argv[1], "--list-cases"))
        return 0;
    int cuda = h_num_backends() > 1;
    for (int i = 0; i < n; i++)
        printf("case %s %d %d %d\n", cases[i].name, cases[i].nvariants, cases[i].run_bwd != NULL, cuda);
    return 1;
}

int h_table_done(int rc, const h_case *cases, int n)
{
    if (rc)
        return rc;
    const char *filter = getenv("GPUML_TEST_FILTER");
    if (filter && *filter)
        return 0; /* a filtered run (tools/emu_mutations.sh) runs some rows on purpose */
    int missed = 0;
    for (int i = 0; i < n && i < H_MAX_ROWS; i++)
        if (!g_row_ran[i]) {
            printf("FAIL: table row '%s' is not run by any test (add its name to an h_run_cases call)\n",
                   cases[i].name);
            missed++;
        }
    return missed ? 1 : 0;
}
