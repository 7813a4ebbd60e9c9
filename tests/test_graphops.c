/*
 * tests/test_graphops.c - the graph ops (gpuml/graph.h) in the op table
 * (double reference, guard bytes, NaN sentinels, 1-vs-2-thread bits,
 * finite-difference gradients; see harness.h), their edge cases, and their
 * error paths.
 *
 * Graphs are kNN-like: rows are grouped in events of random size, slot 0 is
 * the row itself, the next slots are distinct rows of the same event in
 * random order, and -1 pads the tail when the event has fewer than k rows.
 * dist2 is 0 at slot 0, ascending along the valid slots, +inf on padding.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* ---- setup helpers (as in test_ops.c) --------------------------------- */
static void set_in(h_case_io *io, int i, gpuml_dtype dt, h_kind k, int nd, const int64_t *shape)
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

static void set_out(h_case_io *io, int o, gpuml_dtype dt, int nd, const int64_t *shape)
{
    io->out_dt[o] = dt;
    io->out_nd[o] = nd;
    for (int d = 0; d < nd; d++)
        io->out_shape[o][d] = shape[d];
    if (io->n_out < o + 1)
        io->n_out = o + 1;
    io->diff_out[o] = dt == GPUML_F32;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define IN(io, i, dt, k, ...) set_in(io, i, dt, k, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))
#define OUT(io, o, dt, ...) set_out(io, o, dt, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

/* ---- kNN-like graphs -------------------------------------------------- *
 * io->ip[4]: largest event size (0: one event of all rows); io->fp[3]: the
 * mean step between consecutive dist2 values (0: all dist2 = 0). */
#define IP_MAXEV 4
#define FP_STEP 3

static void gen_graph(const h_case_io *io, int i, double *const *vals, uint64_t *rng)
{
    double *v = vals[i];
    if (io->in_dt[i] == GPUML_I32) { /* idx [N, k] */
        int64_t n = io->in_shape[i][0], k = io->in_shape[i][1];
        int64_t maxev = io->ip[IP_MAXEV] > 0 ? io->ip[IP_MAXEV] : (n > 0 ? n : 1);
        int64_t *cand = malloc((size_t)maxev * sizeof *cand);
        for (int64_t start = 0; start < n;) {
            int64_t sz = 1 + (int64_t)(h_rand_u64(rng) % (uint64_t)maxev);
            if (sz > n - start)
                sz = n - start;
            for (int64_t r = start; r < start + sz; r++) {
                int64_t nc = 0;
                for (int64_t q = start; q < start + sz; q++)
                    if (q != r)
                        cand[nc++] = q;
                for (int64_t s = 0; s < k; s++) {
                    double val = -1;
                    if (s == 0) {
                        val = (double)r;
                    } else if (s - 1 < nc) { /* partial Fisher-Yates */
                        int64_t pick = s - 1 + (int64_t)(h_rand_u64(rng) % (uint64_t)(nc - (s - 1)));
                        int64_t t = cand[s - 1];
                        cand[s - 1] = cand[pick];
                        cand[pick] = t;
                        val = (double)cand[s - 1];
                    }
                    v[r * k + s] = val;
                }
            }
            start += sz;
        }
        free(cand);
    } else { /* dist2 [N, k], after idx (input i - 1) */
        const double *idx = vals[i - 1];
        int64_t n = io->in_shape[i][0], k = io->in_shape[i][1];
        for (int64_t r = 0; r < n; r++) {
            double d = 0;
            for (int64_t s = 0; s < k; s++) {
                if (idx[r * k + s] < 0) {
                    v[r * k + s] = INFINITY;
                    continue;
                }
                if (s > 0)
                    d += h_rand_uniform(rng, 0.0, 2.0 * io->fp[FP_STEP]);
                v[r * k + s] = (double)(float)d;
            }
        }
    }
}

static int edge_ok(const double *idx, int64_t n, int64_t k, int first, int64_t i, int64_t s)
{
    double j = idx[i * k + s];
    return s >= first && j >= 0 && j < (double)n;
}

/* ======================= gravnet_aggregate ============================== *
 * in: 0 h [N, P], 1 idx [N, k], 2 dist2 [N, k]; out: 0 [N, 2P], 1 argmax.
 * ip[0] exclude_self, fp[0] alpha. */
static void setup_gravnet(int v, h_case_io *io)
{
    static const struct {
        int64_t n, p, k, maxev;
        int excl;
        double alpha, step;
        h_kind hk;
    } V[] = {
        {12, 3, 4, 0, 0, 10.0, 0.1, V_NORMAL},   /* basic                                  */
        {12, 3, 4, 0, 1, 10.0, 0.1, V_NORMAL},   /* exclude_self                           */
        {15, 2, 6, 4, 0, 10.0, 0.1, V_NORMAL},   /* events smaller than k: -1 padding      */
        {16, 3, 5, 3, 1, 10.0, 0.1, V_NORMAL},   /* padding + exclude_self (lone rows)     */
        {10, 4, 5, 0, 0, 10.0, 0.0, V_TIES},     /* all weights 1, small integers: ties    */
        {12, 3, 4, 0, 0, 1000.0, 0.3, V_NORMAL}, /* large alpha: weights underflow to 0    */
        {0, 3, 4, 0, 0, 10.0, 0.1, V_NORMAL},    /* empty                                  */
        {5, 2, 1, 0, 1, 10.0, 0.1, V_NORMAL},    /* k = 1 without self: no neighbour       */
        {2000, 20, 12, 300, 0, 10.0, 0.05, V_NORMAL}, /* > 32768 elements: threads split   */
    };
    int64_t n = V[v].n, p = V[v].p, k = V[v].k;
    io->ip[0] = V[v].excl;
    io->fp[0] = V[v].alpha;
    io->ip[IP_MAXEV] = (int)V[v].maxev;
    io->fp[FP_STEP] = V[v].step;
    io->gen = gen_graph;
    IN(io, 0, GPUML_F32, V[v].hk, n, p);
    IN(io, 1, GPUML_I32, V_CUSTOM, n, k);
    IN(io, 2, GPUML_F32, V_CUSTOM, n, k);
    io->diff_in[1] = 0;
    OUT(io, 0, GPUML_F32, n, 2 * p);
    OUT(io, 1, GPUML_I32, n, p);
    if (V[v].hk == V_TIES) /* ties: the max is not differentiable there */
        io->diff_in[0] = io->diff_in[2] = 0;
}
static void ref_gravnet(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][0], P = io->in_shape[0][1], k = io->in_shape[1][1];
    int first = io->ip[0];
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < P; p++) {
            double sum = 0, best = 0, best_f = 0;
            int64_t bs = -1, cnt = 0;
            for (int64_t s = 0; s < k; s++) {
                if (!edge_ok(in[1], n, k, first, i, s))
                    continue;
                int64_t j = (int64_t)in[1][i * k + s];
                double w = exp(-io->fp[0] * in[2][i * k + s]), m = w * in[0][j * P + p];
                /* The arg-max is decided on the f32 messages: weights that
                 * underflow to 0 tie there. */
                double m_f = (double)((float)w * (float)in[0][j * P + p]);
                sum += m;
                cnt++;
                if (bs < 0 || m_f > best_f)
                    best = m, best_f = m_f, bs = s;
            }
            out[0][i * 2 * P + p] = cnt ? sum / (double)cnt : 0;
            out[0][i * 2 * P + P + p] = cnt ? best : 0;
            out[1][i * P + p] = (double)bs;
        }
}
static gpuml_status run_gravnet(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_gravnet_aggregate(ctx, in[0], in[1], in[2], (float)io->fp[0], io->ip[0], out[0], out[1]);
}
static gpuml_status bwd_gravnet(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                                gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    return gpuml_gravnet_aggregate_backward(ctx, in[0], in[1], in[2], (float)io->fp[0], io->ip[0], out[1], gout[0],
                                            NULL, NULL, gin[0], gin[2]);
}

/* ======================= edge_first_linear ============================== *
 * in: 0 x [N, F], 1 idx [N, k], 2 dist2 (unused, keeps gen_graph's pair),
 * 3 w [C, 2F], 4 bias [C]; out: [N, k - excl, C]. ip[0] exclude_self,
 * ip[1] with bias. */
static void setup_edge_linear(int v, h_case_io *io)
{
    static const struct {
        int64_t n, f, c, k, maxev;
        int excl, bias;
    } V[] = {
        {10, 3, 4, 4, 0, 0, 1}, {10, 3, 4, 4, 0, 1, 1}, {13, 2, 3, 5, 3, 0, 0}, {13, 2, 3, 5, 3, 1, 1},
        {0, 3, 4, 4, 0, 0, 1},  {6, 2, 3, 1, 0, 1, 1},  {1200, 8, 8, 6, 40, 1, 1},
    };
    int64_t n = V[v].n, f = V[v].f, c = V[v].c, k = V[v].k;
    io->ip[0] = V[v].excl;
    io->ip[1] = V[v].bias;
    io->ip[IP_MAXEV] = (int)V[v].maxev;
    io->fp[FP_STEP] = 0.1;
    io->gen = gen_graph;
    IN(io, 0, GPUML_F32, V_NORMAL, n, f);
    IN(io, 1, GPUML_I32, V_CUSTOM, n, k);
    IN(io, 2, GPUML_F32, V_CUSTOM, n, k);
    IN(io, 3, GPUML_F32, V_NORMAL, c, 2 * f);
    IN(io, 4, GPUML_F32, V_NORMAL, c);
    io->diff_in[1] = io->diff_in[2] = 0;
    io->diff_in[4] = V[v].bias;
    OUT(io, 0, GPUML_F32, n, k - V[v].excl, c);
}
static void ref_edge_linear(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][0], F = io->in_shape[0][1], k = io->in_shape[1][1], C = io->in_shape[3][0];
    int first = io->ip[0];
    int64_t ke = k - first;
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < ke; t++)
            for (int64_t c = 0; c < C; c++) {
                double acc = 0;
                if (edge_ok(in[1], n, k, first, i, t + first)) {
                    int64_t j = (int64_t)in[1][i * k + t + first];
                    const double *w = in[3] + c * 2 * F;
                    for (int64_t f = 0; f < F; f++)
                        acc += w[f] * in[0][i * F + f] + w[F + f] * (in[0][j * F + f] - in[0][i * F + f]);
                    if (io->ip[1])
                        acc += in[4][c];
                }
                out[0][(i * ke + t) * C + c] = acc;
            }
}
static gpuml_status run_edge_linear(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                    gpuml_tensor *const *out)
{
    return gpuml_edge_first_linear(ctx, in[0], in[1], io->ip[0], in[3], io->ip[1] ? in[4] : NULL, out[0]);
}
static gpuml_status bwd_edge_linear(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                    gpuml_tensor *const *out, gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    (void)out;
    return gpuml_edge_first_linear_backward(ctx, in[0], in[1], io->ip[0], in[3], gout[0], NULL, NULL, gin[0], gin[3],
                                            gin[4], 0);
}

/* ======================= neighbour_aggregate ============================ *
 * in: 0 edges [N, ke, C], 1 idx, 2 dist2 (unused); out: 0 [N, C], 1 argmax
 * (MAX). ip[0] exclude_self, ip[1] op. */
static int g_nb_op;
static void setup_neighbour(int v, h_case_io *io)
{
    static const struct {
        int64_t n, c, k, maxev;
        int excl;
        h_kind kind;
    } V[] = {
        {9, 3, 4, 0, 0, V_NORMAL}, {9, 3, 4, 0, 1, V_NORMAL},   {14, 2, 5, 3, 0, V_NORMAL},
        {14, 2, 5, 3, 1, V_NORMAL}, {10, 4, 5, 0, 0, V_TIES},   {0, 3, 4, 0, 0, V_NORMAL},
        {3000, 16, 8, 100, 1, V_NORMAL},
    };
    int64_t n = V[v].n, c = V[v].c, k = V[v].k;
    io->ip[0] = V[v].excl;
    io->ip[1] = g_nb_op;
    io->ip[IP_MAXEV] = (int)V[v].maxev;
    io->fp[FP_STEP] = 0.1;
    io->gen = gen_graph;
    IN(io, 0, GPUML_F32, V[v].kind, n, k - V[v].excl, c);
    IN(io, 1, GPUML_I32, V_CUSTOM, n, k);
    IN(io, 2, GPUML_F32, V_CUSTOM, n, k);
    io->diff_in[1] = io->diff_in[2] = 0;
    OUT(io, 0, GPUML_F32, n, c);
    if (g_nb_op == GPUML_REDUCE_MAX) {
        OUT(io, 1, GPUML_I32, n, c);
        if (V[v].kind == V_TIES)
            io->diff_in[0] = 0;
    }
}
static void ref_neighbour(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][0], ke = io->in_shape[0][1], C = io->in_shape[0][2], k = io->in_shape[1][1];
    int first = io->ip[0];
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < C; c++) {
            double sum = 0, best = 0;
            int64_t bt = -1, cnt = 0;
            for (int64_t t = 0; t < ke; t++) {
                if (!edge_ok(in[1], n, k, first, i, t + first))
                    continue;
                double x = in[0][(i * ke + t) * C + c];
                sum += x;
                cnt++;
                if (bt < 0 || x > best)
                    best = x, bt = t;
            }
            double r = io->ip[1] == GPUML_REDUCE_MAX ? best : io->ip[1] == GPUML_REDUCE_MEAN ? (cnt ? sum / cnt : 0) : sum;
            out[0][i * C + c] = r;
            if (io->ip[1] == GPUML_REDUCE_MAX)
                out[1][i * C + c] = (double)bt;
        }
}
static gpuml_status run_neighbour(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                  gpuml_tensor *const *out)
{
    return gpuml_neighbour_aggregate(ctx, (gpuml_reduce_op)io->ip[1], in[0], in[1], io->ip[0], out[0],
                                     io->n_out > 1 ? out[1] : NULL);
}
static gpuml_status bwd_neighbour(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                  gpuml_tensor *const *out, gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    return gpuml_neighbour_aggregate_backward(ctx, (gpuml_reduce_op)io->ip[1], in[1], io->ip[0], gout[0],
                                              io->n_out > 1 ? out[1] : NULL, gin[0]);
}

/* ======================= edge_mask ====================================== */
static void setup_mask(int v, h_case_io *io)
{
    int64_t n = v == 2 ? 0 : 14, k = 5;
    io->ip[0] = v == 1;
    io->ip[IP_MAXEV] = 3;
    io->fp[FP_STEP] = 0.1;
    io->gen = gen_graph;
    IN(io, 0, GPUML_I32, V_CUSTOM, n, k);
    io->diff_in[0] = 0;
    OUT(io, 0, v == 1 ? GPUML_BOOL : GPUML_U8, n, k - io->ip[0]);
}
static void ref_mask(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][0], k = io->in_shape[0][1], ke = k - io->ip[0];
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < ke; t++)
            out[0][i * ke + t] = edge_ok(in[0], n, k, io->ip[0], i, t + io->ip[0]);
}
static gpuml_status run_mask(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    return gpuml_edge_mask(ctx, in[0], io->ip[0], out[0]);
}

/* ======================= batch_norm ===================================== *
 * in: 0 x [R, C] (or [N, ke, C]), 1 mask [R] u8, 2 gamma, 3 beta, 4 running
 * mean, 5 running var; out: 0 y, 1 save_mean, 2 save_invstd, 3 running mean,
 * 4 running var (updated in place from inputs 4, 5). ip[0] training, ip[1]
 * mask, ip[2] affine; fp[0] momentum, fp[1] eps. */
static void setup_bn(int v, h_case_io *io)
{
    static const struct {
        int64_t r, c, n3;
        int training, mask, affine, mask_all_zero;
    } V[] = {
        {50, 5, 0, 1, 0, 1, 0},   /* training                               */
        {50, 5, 0, 1, 1, 1, 0},   /* training, padding rows                 */
        {40, 3, 0, 0, 0, 1, 0},   /* inference                              */
        {1, 4, 0, 1, 0, 0, 0},    /* one row: running stats unchanged       */
        {60, 4, 20, 1, 1, 1, 0},  /* edges [20, 3, 4] with a mask           */
        {10000, 8, 0, 1, 1, 1, 0},/* > 32768 elements                       */
        {0, 3, 0, 1, 0, 1, 0},    /* empty                                  */
        {30, 3, 0, 0, 1, 1, 0},   /* inference with padding rows            */
        {6, 3, 0, 1, 1, 1, 1},    /* every row padding                      */
    };
    int64_t r = V[v].r, c = V[v].c;
    io->ip[0] = V[v].training;
    io->ip[1] = V[v].mask;
    io->ip[2] = V[v].affine;
    io->fp[0] = 0.1;
    io->fp[1] = 1e-5;
    if (V[v].n3) {
        IN(io, 0, GPUML_F32, V_NORMAL, V[v].n3, r / V[v].n3, c);
        OUT(io, 0, GPUML_F32, V[v].n3, r / V[v].n3, c);
    } else {
        IN(io, 0, GPUML_F32, V_NORMAL, r, c);
        OUT(io, 0, GPUML_F32, r, c);
    }
    IN(io, 1, GPUML_U8, V_INDEX, r);
    io->index_lo[1] = 0;
    io->index_hi[1] = V[v].mask_all_zero ? 0 : 1;
    IN(io, 2, GPUML_F32, V_POS, c);
    IN(io, 3, GPUML_F32, V_NORMAL, c);
    IN(io, 4, GPUML_F32, V_NORMAL, c);
    IN(io, 5, GPUML_F32, V_POS, c);
    io->diff_in[2] = io->diff_in[3] = V[v].affine;
    io->diff_in[4] = io->diff_in[5] = 0;
    OUT(io, 1, GPUML_F32, c);
    OUT(io, 2, GPUML_F32, c);
    OUT(io, 3, GPUML_F32, c);
    OUT(io, 4, GPUML_F32, c);
    io->diff_out[1] = io->diff_out[2] = io->diff_out[3] = io->diff_out[4] = 0;
    io->inout[3] = 4;
    io->inout[4] = 5;
}
static void ref_bn(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t C = io->in_shape[2][0], R = C ? h_numel(io->in_nd[0], io->in_shape[0]) / C : 0;
    double m = io->fp[0], eps = io->fp[1];
    for (int64_t c = 0; c < C; c++) {
        double mean, invstd, n = 0, s = 0, sq = 0;
        for (int64_t r = 0; r < R; r++)
            if (!io->ip[1] || in[1][r] != 0)
                n += 1, s += in[0][r * C + c];
        double bm = n > 0 ? s / n : 0;
        for (int64_t r = 0; r < R; r++)
            if (!io->ip[1] || in[1][r] != 0)
                sq += (in[0][r * C + c] - bm) * (in[0][r * C + c] - bm);
        double var = n > 0 ? sq / n : 0;
        out[3][c] = in[4][c];
        out[4][c] = in[5][c];
        if (io->ip[0]) {
            mean = bm;
            invstd = 1 / sqrt(var + eps);
            if (n >= 2) {
                out[3][c] = (1 - m) * in[4][c] + m * bm;
                out[4][c] = (1 - m) * in[5][c] + m * var * n / (n - 1);
            }
        } else {
            mean = in[4][c];
            invstd = 1 / sqrt(in[5][c] + eps);
        }
        out[1][c] = mean;
        out[2][c] = invstd;
        for (int64_t r = 0; r < R; r++) {
            double y = (in[0][r * C + c] - mean) * invstd;
            if (io->ip[2])
                y = y * in[2][c] + in[3][c];
            out[0][r * C + c] = (!io->ip[1] || in[1][r] != 0) ? y : 0;
        }
    }
}
static void bn_params(const h_case_io *io, gpuml_batch_norm_params *p)
{
    gpuml_batch_norm_params_init_defaults(p);
    p->training = io->ip[0];
    p->momentum = (float)io->fp[0];
    p->eps = (float)io->fp[1];
}
static gpuml_status run_bn(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    gpuml_batch_norm_params p;
    bn_params(io, &p);
    return gpuml_batch_norm(ctx, &p, in[0], io->ip[1] ? in[1] : NULL, io->ip[2] ? in[2] : NULL,
                            io->ip[2] ? in[3] : NULL, out[3], out[4], out[0], out[1], out[2]);
}
static gpuml_status bwd_bn(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out,
                           gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    gpuml_batch_norm_params p;
    bn_params(io, &p);
    return gpuml_batch_norm_backward(ctx, &p, in[0], io->ip[1] ? in[1] : NULL, io->ip[2] ? in[2] : NULL, out[1],
                                     out[2], gout[0], gin[0], gin[2], gin[3], 0);
}

/* ======================= the table ====================================== */
static void test_table(void **state)
{
    (void)state;
    int fails = 0;
    h_case gn = {"gravnet_aggregate", 9, setup_gravnet, ref_gravnet, run_gravnet, bwd_gravnet, 1e-5, 1e-5, 2e-3};
    fails += harness_run_case(&gn);
    h_case el = {"edge_first_linear", 7, setup_edge_linear, ref_edge_linear, run_edge_linear, bwd_edge_linear,
                 2e-5, 2e-5, 2e-3};
    fails += harness_run_case(&el);
    static const int ops[] = {GPUML_REDUCE_SUM, GPUML_REDUCE_MEAN, GPUML_REDUCE_MAX};
    static const char *names[] = {"neighbour_aggregate.sum", "neighbour_aggregate.mean", "neighbour_aggregate.max"};
    for (int i = 0; i < 3; i++) {
        g_nb_op = ops[i];
        h_case nb = {names[i], 7, setup_neighbour, ref_neighbour, run_neighbour, bwd_neighbour, 1e-5, 1e-5, 2e-3};
        fails += harness_run_case(&nb);
    }
    h_case mk = {"edge_mask", 3, setup_mask, ref_mask, run_mask, NULL, 0, 0, 0};
    fails += harness_run_case(&mk);
    h_case bn = {"batch_norm", 9, setup_bn, ref_bn, run_bn, bwd_bn, 2e-5, 2e-5, 2e-3};
    fails += harness_run_case(&bn);
    assert_int_equal(fails, 0);
}

/* @@EXTRA@@ */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests_name("graphops", tests, NULL, NULL);
}
