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
#include "../kernels/gravnet.h"
#include "../kernels/graph_common.h"


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
        {3001, 2, 3, 2, 40, 0, 1}, /* bias gradient over 24 chunks of nodes: two levels of partials */
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
    io->ip[1] = io->op;
    io->ip[IP_MAXEV] = (int)V[v].maxev;
    io->fp[FP_STEP] = 0.1;
    io->gen = gen_graph;
    IN(io, 0, GPUML_F32, V[v].kind, n, k - V[v].excl, c);
    IN(io, 1, GPUML_I32, V_CUSTOM, n, k);
    IN(io, 2, GPUML_F32, V_CUSTOM, n, k);
    io->diff_in[1] = io->diff_in[2] = 0;
    OUT(io, 0, GPUML_F32, n, c);
    if (io->op == GPUML_REDUCE_MAX) {
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
        {33000, 2, 0, 1, 1, 1, 0},/* > 128 chunks of 256 rows: two levels   */
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
/* One row per registry op (kernels/ops.def) this file checks, by its name;
 * h_case.op is the gpuml_reduce_op of a neighbour_aggregate row. */
const h_case h_cases[] = {
    {"gravnet_aggregate", 9, setup_gravnet, ref_gravnet, run_gravnet, bwd_gravnet, 1e-5, 1e-5, 2e-3, 0},
    {"edge_first_linear", 8, setup_edge_linear, ref_edge_linear, run_edge_linear, bwd_edge_linear, 2e-5, 2e-5, 2e-3, 0},
    {"neighbour_aggregate.sum", 7, setup_neighbour, ref_neighbour, run_neighbour, bwd_neighbour, 1e-5, 1e-5, 2e-3,
     GPUML_REDUCE_SUM},
    {"neighbour_aggregate.mean", 7, setup_neighbour, ref_neighbour, run_neighbour, bwd_neighbour, 1e-5, 1e-5, 2e-3,
     GPUML_REDUCE_MEAN},
    {"neighbour_aggregate.max", 7, setup_neighbour, ref_neighbour, run_neighbour, bwd_neighbour, 1e-5, 1e-5, 2e-3,
     GPUML_REDUCE_MAX},
    {"edge_mask", 3, setup_mask, ref_mask, run_mask, NULL, 0, 0, 0, 0},
    {"batch_norm", 10, setup_bn, ref_bn, run_bn, bwd_bn, 2e-5, 2e-5, 2e-3, 0},
};
const int h_ncases = H_N(h_cases);

static void test_table(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("gravnet_aggregate", "edge_first_linear", "neighbour_aggregate", "edge_mask", "batch_norm"),
                     0);
}

/* ======================= edge cases ===================================== */
static float *read_f32(gpuml_ctx *ctx, const gpuml_tensor *t) { return h_read(ctx, t); }

/* A 4-node graph by hand: rows 0..2 one event (k = 3), row 3 alone. */
static const int32_t IDX4[12] = {0, 1, 2, 1, 0, 2, 2, 1, 0, 3, -1, -1};

/* Equal messages: the max goes to the lowest valid slot, and so does its
 * gradient; the mean's gradient is shared equally. */
static void test_gravnet_ties(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    float h[4] = {2, 2, 2, 5}, d2[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, INFINITY, INFINITY};
    gpuml_tensor *th = h_tensor_f32(ctx, 2, SHAPE(4, 1), h), *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 3), IDX4);
    gpuml_tensor *td = h_tensor_f32(ctx, 2, SHAPE(4, 3), d2), *to = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    gpuml_tensor *ta = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 1), NULL);
    for (int excl = 0; excl < 2; excl++) {
        assert_int_equal(gpuml_gravnet_aggregate(ctx, th, ti, td, 10.0f, excl, to, ta), GPUML_OK);
        const float *o = gpuml_tensor_data(to);
        const int32_t *a = gpuml_tensor_data(ta);
        for (int i = 0; i < 3; i++) {
            assert_true(o[2 * i] == 2.0f && o[2 * i + 1] == 2.0f);
            assert_int_equal(a[i], excl ? 1 : 0);
        }
        /* row 3: itself only, or nothing without self */
        assert_true(o[6] == (excl ? 0.0f : 5.0f) && o[7] == (excl ? 0.0f : 5.0f));
        assert_int_equal(a[3], excl ? -1 : 0);
        /* gout: mean half 0, max half 1: each row's max gradient goes to
         * the node in its arg-max slot. */
        float g[8] = {0, 1, 0, 1, 0, 1, 0, 1};
        gpuml_tensor *tg = h_tensor_f32(ctx, 2, SHAPE(4, 2), g), *tgh = h_tensor_f32(ctx, 2, SHAPE(4, 1), NULL);
        assert_int_equal(
            gpuml_gravnet_aggregate_backward(ctx, th, ti, td, 10.0f, excl, ta, tg, NULL, NULL, tgh, NULL), GPUML_OK);
        const float *gh = gpuml_tensor_data(tgh);
        if (!excl) /* every row picks itself */
            assert_true(gh[0] == 1.0f && gh[1] == 1.0f && gh[2] == 1.0f && gh[3] == 1.0f);
        else /* slot 1: rows 0, 2 pick node 1, row 1 picks node 0 */
            assert_true(gh[0] == 1.0f && gh[1] == 2.0f && gh[2] == 0.0f && gh[3] == 0.0f);
        gpuml_tensor_destroy(tg);
        gpuml_tensor_destroy(tgh);
    }
    gpuml_tensor_destroy(th);
    gpuml_tensor_destroy(ti);
    gpuml_tensor_destroy(td);
    gpuml_tensor_destroy(to);
    gpuml_tensor_destroy(ta);
    gpuml_ctx_destroy(ctx);
}

/* A caller's CSR (shared with the kNN backward) gives the same bits as the
 * one built inside; indices >= N count as padding. */
static void test_explicit_csr_and_bad_index(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    int32_t idx[12];
    memcpy(idx, IDX4, sizeof idx);
    idx[5] = 7; /* out of range: padding */
    float h[8] = {1, -2, 3, 0.5f, -1, 2, 4, 1}, d2[12] = {0, .1f, .2f, 0, .1f, .3f, 0, .2f, .4f, 0, 9, 9};
    gpuml_tensor *th = h_tensor_f32(ctx, 2, SHAPE(4, 2), h), *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 3), idx);
    gpuml_tensor *td = h_tensor_f32(ctx, 2, SHAPE(4, 3), d2), *to = h_tensor_f32(ctx, 2, SHAPE(4, 4), NULL);
    gpuml_tensor *ta = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 2), NULL);
    assert_int_equal(gpuml_gravnet_aggregate(ctx, th, ti, td, 10.0f, 0, to, ta), GPUML_OK);
    const float *o = gpuml_tensor_data(to);
    /* row 1 has neighbours 1, 0 only (slot 2 is out of range) */
    float w1 = expf(-(10.0f * 0.1f));
    assert_true(fabsf(o[4] - (3.0f + w1 * 1.0f) / 2) < 1e-6f);
    float g[16];
    for (int i = 0; i < 16; i++)
        g[i] = (float)(i % 5) - 1.5f;
    gpuml_tensor *tg = h_tensor_f32(ctx, 2, SHAPE(4, 4), g);
    gpuml_tensor *rp = h_tensor(ctx, GPUML_I64, 1, SHAPE(5), NULL), *cl = h_tensor(ctx, GPUML_I64, 1, SHAPE(12), NULL);
    assert_int_equal(gpuml_index_csr(ctx, ti, rp, cl), GPUML_OK);
    gpuml_tensor *gh[2], *gd[2];
    for (int r = 0; r < 2; r++) {
        gh[r] = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
        gd[r] = h_tensor_f32(ctx, 2, SHAPE(4, 3), NULL);
        assert_int_equal(gpuml_gravnet_aggregate_backward(ctx, th, ti, td, 10.0f, 0, ta, tg, r ? rp : NULL,
                                                          r ? cl : NULL, gh[r], gd[r]),
                         GPUML_OK);
    }
    assert_memory_equal(gpuml_tensor_data(gh[0]), gpuml_tensor_data(gh[1]), 8 * sizeof(float));
    assert_memory_equal(gpuml_tensor_data(gd[0]), gpuml_tensor_data(gd[1]), 12 * sizeof(float));
    assert_true(((float *)gpuml_tensor_data(gd[0]))[5] == 0.0f);

    /* edge_first_linear_backward: same with and without the caller's CSR */
    float x[8] = {1, 2, -1, 0.5f, 3, -2, 0, 1}, w[8] = {1, -1, 2, 0.5f, 0, 1, -1, 3};
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(4, 2), x), *tw = h_tensor_f32(ctx, 2, SHAPE(2, 4), w);
    gpuml_tensor *te = h_tensor_f32(ctx, 3, SHAPE(4, 3, 2), NULL);
    assert_int_equal(gpuml_edge_first_linear(ctx, tx, ti, 0, tw, NULL, te), GPUML_OK);
    assert_true(((float *)gpuml_tensor_data(te))[5 * 2] == 0.0f); /* edge (1, 2) is padding */
    gpuml_tensor *gx[2], *gw[2];
    float ge[24];
    for (int i = 0; i < 24; i++)
        ge[i] = (float)(i % 7) - 3;
    gpuml_tensor *tge = h_tensor_f32(ctx, 3, SHAPE(4, 3, 2), ge);
    for (int r = 0; r < 2; r++) {
        gx[r] = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
        gw[r] = h_tensor_f32(ctx, 2, SHAPE(2, 4), NULL);
        assert_int_equal(gpuml_edge_first_linear_backward(ctx, tx, ti, 0, tw, tge, r ? rp : NULL, r ? cl : NULL,
                                                          gx[r], gw[r], NULL, 0),
                         GPUML_OK);
    }
    assert_memory_equal(gpuml_tensor_data(gx[0]), gpuml_tensor_data(gx[1]), 8 * sizeof(float));
    assert_memory_equal(gpuml_tensor_data(gw[0]), gpuml_tensor_data(gw[1]), 8 * sizeof(float));
    /* accumulate adds */
    gpuml_tensor *gb = h_tensor_f32(ctx, 1, SHAPE(2), NULL);
    gpuml_fill(ctx, gb, 100.0);
    assert_int_equal(gpuml_edge_first_linear_backward(ctx, tx, ti, 0, tw, tge, NULL, NULL, NULL, gw[1], gb, 1),
                     GPUML_OK);
    float *a = read_f32(ctx, gw[0]), *b = read_f32(ctx, gw[1]), *pb = read_f32(ctx, gb);
    for (int i = 0; i < 8; i++)
        assert_true(b[i] == a[i] + a[i]);
    /* bias gradient: sum of gout over the 10 valid edges */
    double want[2] = {0, 0};
    for (int e = 0; e < 12; e++)
        if (idx[e] >= 0 && idx[e] < 4)
            want[0] += ge[e * 2], want[1] += ge[e * 2 + 1];
    assert_true(pb[0] == (float)(100 + want[0]) && pb[1] == (float)(100 + want[1]));
    free(a);
    free(b);
    free(pb);
    gpuml_tensor *all[] = {th, ti, td, to, ta, tg, rp, cl, gh[0], gh[1], gd[0], gd[1], tx, tw, te, tge,
                           gx[0], gx[1], gw[0], gw[1], gb};
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        gpuml_tensor_destroy(all[i]);
    gpuml_ctx_destroy(ctx);
}

/* Batch norm: constant channel (var 0), y in place, running stats over two
 * steps follow PyTorch's recurrence. */
static void test_batch_norm_details(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    float x[8] = {3, 1, 3, 2, 3, 3, 3, 6}; /* [4, 2]: channel 0 constant */
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(4, 2), x), *rm = h_tensor_f32(ctx, 1, SHAPE(2), NULL);
    gpuml_tensor *rv = h_tensor_f32(ctx, 1, SHAPE(2), NULL), *sm = h_tensor_f32(ctx, 1, SHAPE(2), NULL);
    gpuml_tensor *si = h_tensor_f32(ctx, 1, SHAPE(2), NULL);
    gpuml_fill(ctx, rm, 0.0);
    gpuml_fill(ctx, rv, 1.0);
    gpuml_batch_norm_params p;
    gpuml_batch_norm_params_init_defaults(&p);
    assert_true(p.momentum == 0.1f && p.eps == 1e-5f && p.training == 1 && p.use_cudnn == 0);
    for (int step = 0; step < 2; step++) {
        gpuml_tensor *y = h_tensor_f32(ctx, 2, SHAPE(4, 2), x);
        assert_int_equal(gpuml_batch_norm(ctx, &p, y, NULL, NULL, NULL, rm, rv, y, sm, si), GPUML_OK); /* in place */
        const float *o = gpuml_tensor_data(y);
        assert_true(o[0] == 0.0f && o[2] == 0.0f && o[4] == 0.0f && o[6] == 0.0f);
        gpuml_tensor_destroy(y);
    }
    const float *m = gpuml_tensor_data(rm), *v = gpuml_tensor_data(rv), *s = gpuml_tensor_data(si);
    /* channel 1: mean 3, unbiased var 14/3; two steps: 0.19 * target (+0.81 * initial) */
    assert_true(fabsf(m[0] - 0.19f * 3) < 1e-6f && fabsf(m[1] - 0.19f * 3) < 1e-6f);
    assert_true(fabsf(v[0] - 0.81f) < 1e-6f && fabsf(v[1] - (0.81f + 0.19f * 14.0f / 3)) < 1e-5f);
    assert_true(fabsf(s[0] - 1.0f / sqrtf(1e-5f)) < 1e-2f);
    /* NULL params = defaults */
    gpuml_tensor *y = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    assert_int_equal(gpuml_batch_norm(ctx, NULL, tx, NULL, NULL, NULL, NULL, NULL, y, NULL, NULL), GPUML_OK);
    /* use_cudnn on the CPU: the portable kernels, same bits */
    gpuml_tensor *y2 = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    p.use_cudnn = 1;
    assert_int_equal(gpuml_batch_norm(ctx, &p, tx, NULL, NULL, NULL, NULL, NULL, y2, NULL, NULL), GPUML_OK);
    assert_memory_equal(gpuml_tensor_data(y), gpuml_tensor_data(y2), 8 * sizeof(float));
    gpuml_tensor *all[] = {tx, rm, rv, sm, si, y, y2};
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        gpuml_tensor_destroy(all[i]);
    gpuml_ctx_destroy(ctx);
}


/* The CPU drivers run GravNet's kernels over 32-column tiles, the CUDA
 * launchers per element: both must give the same bits. */
static void test_gravnet_tile_equals_element(void **state)
{
    (void)state;
    enum { N = 60, K = 7, P = 45 };
    static int32_t idx[N * K], am_t[N * P], am_e[N * P];
    static float h[N * P], w[N * K], gout[N * 2 * P], gm[N * P], out_t[N * 2 * P], out_e[N * 2 * P];
    static float gh_t[N * P], gh_e[N * P];
    uint64_t rng = 99;
    for (int i = 0; i < N; i++)
        for (int s = 0; s < K; s++) {
            int ev = i / 10 * 10;
            idx[i * K + s] = s == 0 ? i : (s < 5 ? ev + (int)(h_rand_u64(&rng) % 10) : -1);
            w[i * K + s] = (float)h_rand_uniform(&rng, 0, 1);
        }
    for (int e = 0; e < N * P; e++) {
        h[e] = (float)h_rand_normal(&rng);
        gm[e] = (float)h_rand_normal(&rng);
    }
    for (int e = 0; e < N * 2 * P; e++)
        gout[e] = (float)h_rand_normal(&rng);
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(N, K), idx);
    gpuml_tensor *rp = h_tensor(ctx, GPUML_I64, 1, SHAPE(N + 1), NULL), *cl = h_tensor(ctx, GPUML_I64, 1, SHAPE(N * K), NULL);
    assert_int_equal(gpuml_index_csr(ctx, ti, rp, cl), GPUML_OK);
    const int64_t *rowptr = gpuml_tensor_data(rp), *col = gpuml_tensor_data(cl);
    for (int first = 0; first < 2; first++) {
        for (int i = 0; i < N; i++) {
            for (int p = 0; p < P; p++)
                gpuml_k_gravnet_fwd_elem(h, idx, w, N, K, P, first, i, p, out_e, am_e);
            for (int p0 = 0; p0 < P; p0 += GPUML_K_GN_TILE)
                gpuml_k_gravnet_fwd_tile(h, idx, w, N, K, P, first, i, p0, P - p0 < GPUML_K_GN_TILE ? P - p0 : GPUML_K_GN_TILE,
                                         out_t, am_t);
        }
        for (int j = 0; j < N; j++) {
            for (int p = 0; p < P; p++)
                gpuml_k_gravnet_grad_h(idx, w, gm, am_e, gout, rowptr, col, N, K, P, first, j, p, 1, gh_e);
        }
        for (int j = 0; j < N; j++)
            for (int p0 = 0; p0 < P; p0 += GPUML_K_GN_TILE)
                gpuml_k_gravnet_grad_h(idx, w, gm, am_e, gout, rowptr, col, N, K, P, first, j, p0,
                                       P - p0 < GPUML_K_GN_TILE ? P - p0 : GPUML_K_GN_TILE, gh_t);
        assert_memory_equal(out_t, out_e, sizeof out_t);
        assert_memory_equal(am_t, am_e, sizeof am_t);
        assert_memory_equal(gh_t, gh_e, sizeof gh_t);
    }
    gpuml_tensor_destroy(ti);
    gpuml_tensor_destroy(rp);
    gpuml_tensor_destroy(cl);
    gpuml_ctx_destroy(ctx);
}

/* ======================= error paths ==================================== */
static void expect(gpuml_status got, gpuml_status want, const char *must_contain, const char *must_contain2)
{
    if (got != want)
        fail_msg("status %s, expected %s (%s)", gpuml_status_string(got), gpuml_status_string(want), gpuml_last_error());
    if (must_contain && !strstr(gpuml_last_error(), must_contain))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), must_contain);
    if (must_contain2 && !strstr(gpuml_last_error(), must_contain2))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), must_contain2);
}

static void test_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    float d2v[12] = {0};
    gpuml_tensor *h = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL), *idx = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 3), IDX4);
    gpuml_tensor *idx64 = h_tensor(ctx, GPUML_I64, 2, SHAPE(4, 3), NULL), *d2 = h_tensor_f32(ctx, 2, SHAPE(4, 3), d2v);
    gpuml_tensor *out = h_tensor_f32(ctx, 2, SHAPE(4, 4), NULL), *am = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 2), NULL);
    gpuml_tensor *f64 = h_tensor(ctx, GPUML_F64, 2, SHAPE(4, 2), NULL), *k0 = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 0), NULL);
    gpuml_fill(ctx, h, 1.0);
    gpuml_fill(ctx, out, 7.0);
    static float fake[8];
    gpuml_tensor *fake_cuda = NULL;
    gpuml_tensor_wrap(fake, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 2, SHAPE(4, 2), NULL, NULL, &fake_cuda);

    expect(gpuml_gravnet_aggregate(NULL, h, idx, d2, 10, 0, out, am), GPUML_ERR_INVALID_ARGUMENT, "'ctx' is NULL", NULL);
    expect(gpuml_gravnet_aggregate(ctx, NULL, idx, d2, 10, 0, out, am), GPUML_ERR_INVALID_ARGUMENT,
           "gpuml_gravnet_aggregate", "'h' is NULL");
    expect(gpuml_gravnet_aggregate(ctx, f64, idx, d2, 10, 0, out, am), GPUML_ERR_DTYPE, "'h' is f64", NULL);
    expect(gpuml_gravnet_aggregate(ctx, h, idx64, d2, 10, 0, out, am), GPUML_ERR_DTYPE, "'idx' is i64", NULL);
    expect(gpuml_gravnet_aggregate(ctx, h, idx, h, 10, 0, out, am), GPUML_ERR_SHAPE, "'dist2'", NULL);
    expect(gpuml_gravnet_aggregate(ctx, h, idx, d2, 10, 0, h, am), GPUML_ERR_SHAPE, "'out'", "[4, 4]");
    expect(gpuml_gravnet_aggregate(ctx, h, idx, d2, 10, 0, out, out), GPUML_ERR_DTYPE, "'argmax'", NULL);
    expect(gpuml_gravnet_aggregate(ctx, h, idx, d2, NAN, 0, out, am), GPUML_ERR_INVALID_ARGUMENT, "'alpha'", NULL);
    expect(gpuml_gravnet_aggregate(ctx, fake_cuda, idx, d2, 10, 0, out, am), GPUML_ERR_DEVICE_MISMATCH, "'h'", NULL);
    expect(gpuml_gravnet_aggregate_backward(ctx, h, idx, d2, 10, 0, NULL, out, NULL, NULL, h, d2),
           GPUML_ERR_INVALID_ARGUMENT, "'argmax'", NULL);
    expect(gpuml_gravnet_aggregate_backward(ctx, h, idx, d2, 10, 0, am, out, idx64, NULL, h, d2),
           GPUML_ERR_INVALID_ARGUMENT, "'rowptr' and 'col'", NULL);
    expect(gpuml_gravnet_aggregate_backward(ctx, h, idx, d2, 10, 0, am, out, idx64, idx64, h, d2), GPUML_ERR_SHAPE,
           "'rowptr'", NULL);
    expect(gpuml_gravnet_aggregate_backward(ctx, h, idx, d2, 10, 0, am, h, NULL, NULL, h, d2), GPUML_ERR_SHAPE,
           "'gout'", NULL);
    float *o = gpuml_tensor_data(out);
    for (int i = 0; i < 16; i++)
        assert_true(o[i] == 7.0f); /* untouched */

    gpuml_tensor *w = h_tensor_f32(ctx, 2, SHAPE(3, 4), NULL), *w5 = h_tensor_f32(ctx, 2, SHAPE(3, 5), NULL);
    gpuml_tensor *e = h_tensor_f32(ctx, 3, SHAPE(4, 3, 3), NULL), *e2 = h_tensor_f32(ctx, 3, SHAPE(4, 2, 3), NULL);
    gpuml_tensor *b3 = h_tensor_f32(ctx, 1, SHAPE(3), NULL), *b2 = h_tensor_f32(ctx, 1, SHAPE(2), NULL);
    gpuml_fill(ctx, w, 0.5);
    expect(gpuml_edge_first_linear(ctx, h, idx, 0, w5, NULL, e), GPUML_ERR_SHAPE, "'w'", "2F");
    expect(gpuml_edge_first_linear(ctx, h, idx, 0, w, b2, e), GPUML_ERR_SHAPE, "'bias'", NULL);
    expect(gpuml_edge_first_linear(ctx, h, idx, 1, w, NULL, e), GPUML_ERR_SHAPE, "'out'", "k_e = 2");
    expect(gpuml_edge_first_linear(ctx, h, k0, 1, w, NULL, e), GPUML_ERR_SHAPE, "exclude_self", NULL);
    expect(gpuml_edge_first_linear(ctx, h, idx, 0, w, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT, "'out' is NULL", NULL);
    assert_int_equal(gpuml_edge_first_linear(ctx, h, idx, 1, w, b3, e2), GPUML_OK);
    expect(gpuml_edge_first_linear_backward(ctx, h, idx, 1, w, e, NULL, NULL, h, w, b3, 0), GPUML_ERR_SHAPE, "'gout'",
           NULL);
    expect(gpuml_edge_first_linear_backward(ctx, h, idx, 1, w, e2, NULL, NULL, f64, w, b3, 0), GPUML_ERR_DTYPE,
           "'gx'", NULL);
    expect(gpuml_edge_first_linear_backward(ctx, h, idx, 1, w, e2, NULL, NULL, h, w5, b3, 0), GPUML_ERR_SHAPE, "'gw'",
           NULL);

    gpuml_tensor *o43 = h_tensor_f32(ctx, 2, SHAPE(4, 3), NULL), *a43 = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 3), NULL);
    expect(gpuml_neighbour_aggregate(ctx, GPUML_REDUCE_MIN, e, idx, 0, o43, a43), GPUML_ERR_INVALID_ARGUMENT, "op 3",
           NULL);
    expect(gpuml_neighbour_aggregate(ctx, GPUML_REDUCE_MAX, e, idx, 1, o43, a43), GPUML_ERR_SHAPE, "'edges'", NULL);
    expect(gpuml_neighbour_aggregate(ctx, GPUML_REDUCE_MAX, h, idx, 0, o43, a43), GPUML_ERR_SHAPE, "'edges'", NULL);
    expect(gpuml_neighbour_aggregate(ctx, GPUML_REDUCE_MAX, e, idx, 0, o43, o43), GPUML_ERR_DTYPE, "'argmax'", NULL);
    assert_int_equal(gpuml_neighbour_aggregate(ctx, GPUML_REDUCE_MAX, e, idx, 0, o43, NULL), GPUML_OK);
    expect(gpuml_neighbour_aggregate_backward(ctx, GPUML_REDUCE_MAX, idx, 0, o43, NULL, e), GPUML_ERR_INVALID_ARGUMENT,
           "argmax", NULL);
    expect(gpuml_neighbour_aggregate_backward(ctx, GPUML_REDUCE_MEAN, idx, 1, o43, NULL, e), GPUML_ERR_SHAPE,
           "'gedges'", NULL);
    gpuml_tensor *m43 = h_tensor(ctx, GPUML_U8, 2, SHAPE(4, 3), NULL);
    expect(gpuml_edge_mask(ctx, idx, 0, o43), GPUML_ERR_DTYPE, "'mask'", NULL);
    expect(gpuml_edge_mask(ctx, idx, 1, m43), GPUML_ERR_SHAPE, "'mask'", NULL);
    expect(gpuml_edge_mask(ctx, d2, 0, m43), GPUML_ERR_DTYPE, "'idx' is f32", NULL);

    gpuml_batch_norm_params p;
    gpuml_batch_norm_params_init_defaults(&p);
    expect(gpuml_batch_norm(ctx, &p, h, idx, NULL, NULL, NULL, NULL, h, NULL, NULL), GPUML_ERR_DTYPE, "'mask'", NULL);
    expect(gpuml_batch_norm(ctx, &p, h, m43, NULL, NULL, NULL, NULL, h, NULL, NULL), GPUML_ERR_SHAPE, "'mask'", NULL);
    expect(gpuml_batch_norm(ctx, &p, h, NULL, b3, NULL, NULL, NULL, h, NULL, NULL), GPUML_ERR_SHAPE, "'gamma'", NULL);
    expect(gpuml_batch_norm(ctx, &p, h, NULL, NULL, NULL, b2, NULL, h, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT,
           "running_var", NULL);
    expect(gpuml_batch_norm(ctx, &p, h, NULL, NULL, NULL, NULL, NULL, out, NULL, NULL), GPUML_ERR_SHAPE, "'y'", NULL);
    p.training = 0;
    expect(gpuml_batch_norm(ctx, &p, h, NULL, NULL, NULL, NULL, NULL, h, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT,
           "inference", NULL);
    p.training = 1;
    p.eps = -1;
    expect(gpuml_batch_norm(ctx, &p, h, NULL, NULL, NULL, NULL, NULL, h, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT,
           "'eps'", NULL);
    p.eps = 1e-5f;
    expect(gpuml_batch_norm_backward(ctx, &p, h, NULL, NULL, NULL, b2, h, h, NULL, NULL, 0), GPUML_ERR_INVALID_ARGUMENT,
           "'save_mean' is NULL", NULL);
    expect(gpuml_batch_norm_backward(ctx, &p, h, NULL, NULL, b2, b2, out, h, NULL, NULL, 0), GPUML_ERR_SHAPE, "'gy'",
           NULL);
    expect(gpuml_batch_norm_backward(ctx, &p, h, NULL, NULL, b2, b2, h, h, b3, NULL, 0), GPUML_ERR_SHAPE, "'ggamma'",
           NULL);
    /* the context keeps the message too */
    assert_non_null(strstr(gpuml_ctx_last_error(ctx), "gpuml_batch_norm_backward"));

    gpuml_tensor *all[] = {h, idx, idx64, d2, out, am, f64, k0, fake_cuda, w, w5, e, e2, b3, b2, o43, a43, m43};
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        gpuml_tensor_destroy(all[i]);
    gpuml_ctx_destroy(ctx);
}

/* An allocation failing at any point of an op: OUT_OF_MEMORY, outputs
 * untouched, nothing leaked. */

/* t: h, idx, d2, argmax, gout, gh, gd2, x, w, e, gx, gw, gb */
static gpuml_status op_gn_bwd(gpuml_ctx *ctx, void *user)
{
    gpuml_tensor *const *t = user;
    return gpuml_gravnet_aggregate_backward(ctx, t[0], t[1], t[2], 10.0f, 1, t[3], t[4], NULL, NULL, t[5], t[6]);
}
static gpuml_status op_gn_fwd(gpuml_ctx *ctx, void *user)
{
    gpuml_tensor *const *t = user;
    return gpuml_gravnet_aggregate(ctx, t[0], t[1], t[2], 10.0f, 1, t[4], t[3]);
}
static gpuml_status op_el_bwd(gpuml_ctx *ctx, void *user)
{
    gpuml_tensor *const *t = user;
    return gpuml_edge_first_linear_backward(ctx, t[7], t[1], 0, t[8], t[9], NULL, NULL, t[10], t[11], t[12], 1);
}
static gpuml_status op_el_fwd(gpuml_ctx *ctx, void *user)
{
    gpuml_tensor *const *t = user;
    return gpuml_edge_first_linear(ctx, t[7], t[1], 0, t[8], t[12], t[9]);
}
static gpuml_status op_bn(gpuml_ctx *ctx, void *user)
{
    gpuml_tensor *const *t = user;
    return gpuml_batch_norm(ctx, NULL, t[9], NULL, NULL, NULL, t[12], t[13], t[14], NULL, NULL);
}
static gpuml_status op_bn_bwd(gpuml_ctx *ctx, void *user)
{
    gpuml_tensor *const *t = user;
    return gpuml_batch_norm_backward(ctx, NULL, t[9], NULL, NULL, t[12], t[13], t[9], t[14], NULL, NULL, 0);
}

static void allocation_failures_on(gpuml_device_type dev)
{
    gpuml_ctx *ctx = h_ctx(dev, 2);
    float d2[12] = {0, .1f, .2f, 0, .1f, .3f, 0, .2f, .4f, 0, INFINITY, INFINITY};
    gpuml_tensor *t[15];
    t[0] = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    t[1] = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 3), IDX4);
    t[2] = h_tensor_f32(ctx, 2, SHAPE(4, 3), d2);
    t[3] = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 2), NULL);
    t[4] = h_tensor_f32(ctx, 2, SHAPE(4, 4), NULL);
    t[5] = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    t[6] = h_tensor_f32(ctx, 2, SHAPE(4, 3), NULL);
    t[7] = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    t[8] = h_tensor_f32(ctx, 2, SHAPE(3, 4), NULL);
    t[9] = h_tensor_f32(ctx, 3, SHAPE(4, 3, 3), NULL);
    t[10] = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    t[11] = h_tensor_f32(ctx, 2, SHAPE(3, 4), NULL);
    t[12] = h_tensor_f32(ctx, 1, SHAPE(3), NULL);
    t[13] = h_tensor_f32(ctx, 1, SHAPE(3), NULL);
    t[14] = h_tensor_f32(ctx, 3, SHAPE(4, 3, 3), NULL);
    for (int i = 0; i < 15; i++)
        if (i != 1 && i != 2 && i != 3)
            gpuml_fill(ctx, t[i], 0.25 * (i + 1));
    gpuml_fill(ctx, t[13], 1.0);
    assert_int_equal(op_gn_fwd(ctx, t), GPUML_OK);
    assert_int_equal(h_every_allocation_fails(ctx, op_gn_fwd, (void *)t, t[4], "gravnet_aggregate"), 0);
    assert_int_equal(h_every_allocation_fails(ctx, op_gn_bwd, (void *)t, t[5], "gravnet_aggregate_backward"), 0);
    assert_int_equal(h_every_allocation_fails(ctx, op_el_fwd, (void *)t, t[9], "edge_first_linear"), 0);
    assert_int_equal(h_every_allocation_fails(ctx, op_el_bwd, (void *)t, t[11], "edge_first_linear_backward"), 0);
    assert_int_equal(h_every_allocation_fails(ctx, op_bn, (void *)t, t[14], "batch_norm"), 0);
    assert_int_equal(h_every_allocation_fails(ctx, op_bn_bwd, (void *)t, t[14], "batch_norm_backward"), 0);
    for (int i = 0; i < 15; i++)
        gpuml_tensor_destroy(t[i]);
    gpuml_ctx_destroy(ctx);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    for (int b = 0; b < h_num_backends(); b++)
        allocation_failures_on(h_backend(b));
}

/* kernels/graph_common.h, the helpers every graph kernel shares: which idx
 * slots are edges, and a target's clamped range of a reverse CSR. */
static void test_graph_common_helpers(void **state)
{
    (void)state;
    /* n = 3 rows, k = 3 slots: the point itself first, then neighbours
     * (-1 padding, an index past the rows, a valid row). */
    const int32_t idx[9] = {0, 1, -1, 1, 3, 2, 2, 0, 1};
    const bool want1[9] = {false, true, false, false, false, true, false, true, true};
    for (int e = 0; e < 9; e++) {
        assert_int_equal(gpuml_k_edge_valid(idx, 3, 3, 1, e), want1[e]);
        bool in = idx[e] >= 0 && idx[e] < 3; /* first = 0 keeps the point itself */
        assert_int_equal(gpuml_k_edge_valid(idx, 3, 3, 0, e), in);
    }
    /* rowptr with a negative start, a decreasing pair and an end past m = 5 */
    const int64_t rowptr[5] = {-2, 3, 1, 4, 9};
    const int64_t wb[4] = {0, 3, 1, 4}, we[4] = {3, 3, 4, 5};
    for (int t = 0; t < 4; t++) {
        int64_t b = -7, e = -7;
        gpuml_k_csr_range(rowptr, t, 5, &b, &e);
        assert_int_equal(b, wb[t]);
        assert_int_equal(e, we[t]);
        assert_true(0 <= b && b <= e && e <= 5);
    }
}

int main(int argc, char **argv)
{
    if (H_LIST_CASES(argc, argv))
        return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_common_helpers),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_gravnet_ties),
        cmocka_unit_test(test_explicit_csr_and_bad_index),
        cmocka_unit_test(test_batch_norm_details),
        cmocka_unit_test(test_gravnet_tile_equals_element),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_allocation_failures),
    };
    return H_TABLE_DONE(cmocka_run_group_tests_name("graphops", tests, NULL, NULL));
}
