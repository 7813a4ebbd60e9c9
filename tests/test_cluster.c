/* tests/test_cluster.c - include/gpuml/cluster.h:
 *   - gpuml_oc_cluster against a plain double-precision reference in the op
 *     table (every backend, guard elements, 1 vs 2 threads bitwise) on
 *     random and detector-like data, equal betas, NaN, empty events, all
 *     noise, every hit above threshold, D above the binned three;
 *   - a hand-made event whose clusters are known, and bad input;
 *   - the clustering metrics on hand-made events with known answers;
 *   - the CLUE baseline on hand-made events;
 *   - the CUDA launcher's schedule (one sort of the whole batch by (event,
 *     set, cell) key, Jacobi rounds of gpuml_k_occ_decide on the previous
 *     round's states, numbering and fixed-point sums) run on the CPU with
 *     the kernel body, against the library;
 *   - the engine's cluster post-processing against forward + oc_cluster. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "oc_cluster.h" /* the kernel body, for the CUDA schedule below */

/* older cmocka has no assert_double_equal */
#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

/* ---- the op against the reference ------------------------------------------
 * ip: 0 D, 1 variant kind; fp: 0 t_beta, 1 t_d.
 * Inputs: beta [N], coords [N, D], row_splits [B+1], energy [N].
 * Outputs: cluster_id [N], cluster_cp [N], cluster_energy [N], count [B]. */
enum { K_RANDOM, K_TIES, K_DETECTOR, K_NAN };

/* Detector-like: showers as tight gaussian blobs of high beta around a
 * centre, noise uniform with low beta; NaN variant sprinkles NaN. */
static void gen_custom(const h_case_io *io, int i, double *const *vals, uint64_t *rng)
{
    int64_t n = io->in_shape[0][0], d = io->ip[0];
    if (i == 0) { /* beta: 80% shower hits (high), 20% noise (low) */
        for (int64_t r = 0; r < n; r++) {
            vals[0][r] = h_rand_u64(rng) % 5 ? h_rand_uniform(rng, 0.3, 1.0) : h_rand_uniform(rng, 0.0, 0.15);
            if (io->ip[1] == K_NAN && h_rand_u64(rng) % 17 == 0)
                vals[0][r] = NAN;
        }
        return;
    }
    if (i == 1) { /* coords: shower hits in one of 8 tight blobs, noise uniform */
        double centre[8][8];
        for (int s = 0; s < 8; s++)
            for (int c = 0; c < 8; c++)
                centre[s][c] = h_rand_uniform(rng, -6, 6);
        for (int64_t r = 0; r < n; r++) {
            int s = (int)(h_rand_u64(rng) % 8);
            bool shower = !(vals[0][r] < 0.3);
            for (int64_t c = 0; c < d; c++)
                vals[1][r * d + c] = shower && c < 8 ? centre[s][c] + 0.15 * h_rand_normal(rng)
                                                     : h_rand_uniform(rng, -8, 8);
            if (io->ip[1] == K_NAN && h_rand_u64(rng) % 13 == 0)
                vals[1][r * d + (int64_t)(h_rand_u64(rng) % (uint64_t)d)] = NAN;
        }
        return;
    }
    for (int64_t r = 0; r < n; r++) /* energy */
        vals[3][r] = h_rand_uniform(rng, 0.0, 2.0);
}

static void setup_occ(int v, h_case_io *io)
{
    /* v: 0 random D=2; 1 equal betas D=3; 2 detector-like, large (parallel
     * events); 3 NaN; 4 all noise; 5 every hit above threshold, D=1;
     * 6 no rows; 7 D=5; 8 one event */
    static const int64_t ns[] = {300, 400, 6000, 2000, 200, 250, 0, 500, 700};
    static const int64_t bs[] = {5, 6, 9, 4, 3, 4, 3, 3, 1};
    static const int ds[] = {2, 3, 3, 2, 2, 1, 2, 5, 4};
    int64_t n = ns[v], b = bs[v];
    int d = ds[v];
    io->ip[0] = d;
    io->ip[1] = v == 1 ? K_TIES : v == 2 || v == 7 || v == 8 ? K_DETECTOR : v == 3 ? K_NAN : K_RANDOM;
    io->fp[0] = v == 4 ? 2.0 : v == 5 ? -10.0 : v == 1 ? 0.5 : 0.2;
    io->fp[1] = v == 1 ? 0.6 : v == 5 ? 0.05 : v == 0 || v == 4 ? 0.25 : 0.5;
    bool custom = io->ip[1] == K_DETECTOR || io->ip[1] == K_NAN;
    io->n_in = 4;
    io->in_dt[0] = GPUML_F32, io->in_nd[0] = 1, io->in_shape[0][0] = n;
    io->in_kind[0] = custom ? V_CUSTOM : v == 1 ? V_TIES : V_UNIT;
    io->in_dt[1] = GPUML_F32, io->in_nd[1] = 2, io->in_shape[1][0] = n, io->in_shape[1][1] = d;
    io->in_kind[1] = custom ? V_CUSTOM : v == 1 ? V_TIES : V_NORMAL;
    io->in_dt[2] = GPUML_I64, io->in_kind[2] = V_SPLITS, io->in_nd[2] = 1, io->in_shape[2][0] = b + 1;
    io->index_lo[2] = b, io->index_hi[2] = n;
    io->in_dt[3] = GPUML_F32, io->in_kind[3] = V_CUSTOM, io->in_nd[3] = 1, io->in_shape[3][0] = n;
    io->gen = gen_custom;
    io->n_out = 4;
    for (int o = 0; o < 3; o++)
        io->out_dt[o] = o == 2 ? GPUML_F32 : GPUML_I32, io->out_nd[o] = 1, io->out_shape[o][0] = n;
    io->out_dt[3] = GPUML_I32, io->out_nd[3] = 1, io->out_shape[3][0] = b;
    for (int i = 0; i < H_MAXT; i++)
        io->inout[i] = -1;
}

static bool ref_finite(const double *x, int d, int64_t i)
{
    for (int c = 0; c < d; c++)
        if (!isfinite(x[i * d + c]))
            return false;
    return true;
}

/* The contract's "within t_d": float32 dist2 in dimension order. */
static bool ref_within(const double *x, int d, int64_t a, int64_t b, float td)
{
    float s = 0.0f;
    for (int c = 0; c < d; c++) {
        float t = (float)x[a * d + c] - (float)x[b * d + c];
        s += t * t;
    }
    return s <= td * td;
}

static bool ref_before(const double *beta, int64_t a, int64_t b)
{
    return beta[a] > beta[b] || (beta[a] == beta[b] && a < b);
}

/* The sequential algorithm: candidates in priority order, each a CP unless
 * a CP lies within t_d; then every hit to its first CP within t_d. */
static void ref_occ(const h_case_io *io, double *const *in, double *const *out)
{
    int d = io->ip[0];
    int64_t nb = io->in_shape[2][0] - 1, n = io->in_shape[0][0];
    float tb = (float)io->fp[0], td = (float)io->fp[1];
    const double *beta = in[0], *x = in[1], *rs = in[2], *en = in[3];
    int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    bool *is_cp = calloc((size_t)(n ? n : 1), sizeof *is_cp);
    for (int64_t e = 0; e < nb; e++) {
        int64_t s = (int64_t)rs[e], t = (int64_t)rs[e + 1], m = 0;
        for (int64_t i = s; i < t; i++)
            if ((float)beta[i] > tb && ref_finite(x, d, i))
                order[m++] = i;
        for (int64_t a = 0; a < m; a++) /* selection sort by priority */
            for (int64_t c = a + 1; c < m; c++)
                if (ref_before(beta, order[c], order[a])) {
                    int64_t tmp = order[a];
                    order[a] = order[c], order[c] = tmp;
                }
        for (int64_t a = 0; a < m; a++) {
            bool free_ = true;
            for (int64_t c = 0; c < a && free_; c++)
                if (is_cp[order[c]] && ref_within(x, d, order[a], order[c], td))
                    free_ = false;
            is_cp[order[a]] = free_;
        }
        int64_t cnt = 0;
        for (int64_t i = s; i < t; i++)
            if (is_cp[i])
                out[1][s + cnt] = (double)(i - s), out[2][s + cnt] = 0, cnt++;
        for (int64_t p = s + cnt; p < t; p++)
            out[1][p] = -1, out[2][p] = 0;
        out[3][e] = (double)cnt;
        for (int64_t i = s; i < t; i++) {
            int64_t best = -1;
            for (int64_t j = s; j < t; j++)
                if (is_cp[j] && ref_finite(x, d, i) && ref_within(x, d, i, j, td) &&
                    (best < 0 || ref_before(beta, j, best)))
                    best = j;
            int64_t id = -1;
            for (int64_t c = 0; c < cnt && best >= 0; c++)
                if ((int64_t)out[1][s + c] + s == best)
                    id = c;
            out[0][i] = (double)id;
            if (id >= 0)
                out[2][s + id] += en[i];
        }
    }
    free(order);
    free(is_cp);
}

static gpuml_status run_occ(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out)
{
    gpuml_oc_cluster_params p;
    gpuml_oc_cluster_params_init_defaults(&p);
    p.t_beta = (float)io->fp[0];
    p.t_d = (float)io->fp[1];
    return gpuml_oc_cluster(ctx, in[0], in[1], in[2], in[3], &p, out[0], out[1], out[2], out[3]);
}

/* The op table: one row per registry op (kernels/ops.def) this file checks;
 * tests/test_registry.c fails when a registry op has no row in any table. */
const h_case h_cases[] = {
    {"oc_cluster", 9, setup_occ, ref_occ, run_occ, NULL, 1e-5, 1e-6, 0, 0},
};
const int h_ncases = H_N(h_cases);

static void test_oc_cluster_table(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("oc_cluster"), 0);
}

/* ---- a hand-made event --------------------------------------------------- */
static void test_oc_cluster_known(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    /* event 0 (1-D): CP at 0.0 (beta .9) takes 0.3 and 0.45; 0.6 (beta .8)
     * is within 0.5 of 0.45? no: |0.6 - 0.0| > 0.5, so 0.6 is a second CP
     * and takes 0.9; 0.3 (beta .85) is within 0.5 of the first CP, so not a
     * CP; 5.0 (beta .05) is noise. event 1 empty. event 2: equal betas, the
     * lower row wins. */
    float beta[] = {0.05f, 0.9f, 0.85f, 0.3f, 0.8f, 0.2f, /* event 2: */ 0.7f, 0.7f};
    float x[] = {5.0f, 0.0f, 0.3f, 0.45f, 0.6f, 0.9f, 1.0f, 1.2f};
    float en[] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t rs[] = {0, 6, 6, 8};
    gpuml_tensor *tb = h_tensor_f32(ctx, 1, SHAPE(8), beta), *tx = h_tensor_f32(ctx, 2, SHAPE(8, 1), x);
    gpuml_tensor *te = h_tensor_f32(ctx, 1, SHAPE(8), en), *tr = h_tensor(ctx, GPUML_I64, 1, SHAPE(4), rs);
    gpuml_tensor *id, *cp, *ce, *cnt;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(8), &id), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(8), &cp), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, SHAPE(8), &ce), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(3), &cnt), GPUML_OK);
    gpuml_oc_cluster_params p;
    gpuml_oc_cluster_params_init_defaults(&p);
    p.t_beta = 0.1f, p.t_d = 0.5f;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, id, cp, ce, cnt), GPUML_OK);
    int32_t *gid = h_read(ctx, id), *gcp = h_read(ctx, cp), *gcnt = h_read(ctx, cnt);
    float *gce = h_read(ctx, ce);
    int32_t want_id[] = {-1, 0, 0, 0, 1, 1, 0, 0}, want_cp[] = {1, 4, -1, -1, -1, -1, 0, -1}, want_cnt[] = {2, 0, 1};
    float want_ce[] = {9, 11, 0, 0, 0, 0, 15, 0};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(gid[i], want_id[i]);
        assert_int_equal(gcp[i], want_cp[i]);
        assert_true(gce[i] == want_ce[i]);
    }
    for (int e = 0; e < 3; e++)
        assert_int_equal(gcnt[e], want_cnt[e]);
    /* energy as a column of [N, F] features gives the same sums */
    float en2[16];
    for (int i = 0; i < 8; i++)
        en2[2 * i] = 100.0f, en2[2 * i + 1] = en[i];
    gpuml_tensor *te2 = h_tensor_f32(ctx, 2, SHAPE(8, 2), en2);
    p.energy_column = 1;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te2, &p, id, cp, ce, cnt), GPUML_OK);
    float *gce2 = h_read(ctx, ce);
    assert_memory_equal(gce2, want_ce, sizeof want_ce);
    free(gce2);
    p.energy_column = 2;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te2, &p, id, cp, ce, cnt), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "energy_column"));
    p.energy_column = 0;
    gpuml_tensor_destroy(te2);
    /* no energy: cluster energies 0; cluster_energy may be NULL */
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, NULL, &p, id, cp, NULL, cnt), GPUML_OK);
    free(gid), free(gcp), free(gcnt), free(gce);

    /* bad input: nothing written, a message naming the argument */
    p.t_d = 0.0f;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, id, cp, ce, cnt), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "t_d"));
    p.t_d = NAN;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, id, cp, ce, cnt), GPUML_ERR_INVALID_ARGUMENT);
    p.t_d = 0.5f, p.t_beta = NAN;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, id, cp, ce, cnt), GPUML_ERR_INVALID_ARGUMENT);
    p.t_beta = 0.1f;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, NULL, id, cp, ce, cnt), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, cnt, cp, ce, cnt), GPUML_ERR_SHAPE);
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, id, ce, ce, cnt), GPUML_ERR_DTYPE);
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, id, id, ce, cnt), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "overlap"));
    int64_t bad_rs[] = {0, 7, 6, 8};
    gpuml_tensor *tbad = h_tensor(ctx, GPUML_I64, 1, SHAPE(4), bad_rs);
    int32_t *before = h_read(ctx, id);
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tbad, te, &p, id, cp, ce, cnt), GPUML_ERR_INVALID_ARGUMENT);
    int32_t *after = h_read(ctx, id);
    assert_memory_equal(before, after, 8 * sizeof(int32_t));
    free(before), free(after);
    gpuml_tensor *objs[] = {tb, tx, te, tr, id, cp, ce, cnt, tbad};
    for (int i = 0; i < 9; i++)
        gpuml_tensor_destroy(objs[i]);
    gpuml_ctx_destroy(ctx);
}

/* ---- metrics on hand-made events ----------------------------------------- */
static void test_metrics_known(void **state)
{
    (void)state;
    gpuml_cluster_eval_config cfg;
    gpuml_cluster_eval_config_init_defaults(&cfg);
    cfg.min_energy = 1.0, cfg.num_bins = 2, cfg.bin_edges[0] = 0, cfg.bin_edges[1] = 5, cfg.bin_edges[2] = 100;
    gpuml_cluster_eval *ev;
    assert_int_equal(gpuml_cluster_eval_create(&cfg, &ev), GPUML_OK);
    /* Event A: shower 0 (E 10) matched by cluster 3 (response 1); shower 1
     * (E 4) matched by cluster 5, which also holds 1 of noise (response
     * 5/4); shower 2 (E 0.5, below min_energy) unclustered; noise: 3 hits,
     * 2 clustered, 1 rejected; cluster 7 is pure noise: a fake. */
    int32_t ta[] = {0, 0, 1, 1, 2, -1, -1, -1};
    float ea[] = {6, 4, 3, 1, 0.5f, 1, 1, 1};
    int32_t ka[] = {3, 3, 5, 5, -1, 5, 7, -1};
    assert_int_equal(gpuml_cluster_eval_add(ev, 8, ta, ea, ka), GPUML_OK);
    /* Event B: showers 0 (E 8) and 1 (E 8) merged 50/50 into cluster 0:
     * neither is more than half of it, so neither is matched, both merged;
     * shower 2 (E 10) split 5/5 over clusters 1, 2: not matched (no cluster
     * holds more than half of it), split. */
    int32_t tb[] = {0, 1, 2, 2};
    float eb[] = {8, 8, 5, 5};
    int32_t kb[] = {0, 0, 1, 2};
    assert_int_equal(gpuml_cluster_eval_add(ev, 4, tb, eb, kb), GPUML_OK);
    /* Event C: shower 0 (E 9) with 3 of shower 1 (E 3) in cluster 0:
     * shower 0 matched (response 12/9), shower 1 merged and not matched. */
    int32_t tc[] = {0, 1};
    float ec[] = {9, 3};
    int32_t kc[] = {0, 0};
    assert_int_equal(gpuml_cluster_eval_add(ev, 2, tc, ec, kc), GPUML_OK);
    gpuml_cluster_eval_result r;
    assert_int_equal(gpuml_cluster_eval_get(ev, &r), GPUML_OK);
    assert_int_equal(r.events, 3);
    assert_int_equal(r.showers, 7); /* E >= 1: A0, A1, B0, B1, B2, C0, C1 */
    assert_int_equal(r.found, 3);   /* A0, A1, C0 */
    assert_near(r.efficiency, 3.0 / 7, 1e-12);
    assert_int_equal(r.merged, 4);  /* B0, B1, C0, C1 */
    assert_near(r.merge_rate, 4.0 / 7, 1e-12);
    assert_int_equal(r.split, 1);
    assert_near(r.split_rate, 1.0 / 7, 1e-12);
    assert_int_equal(r.clusters, 7);
    assert_int_equal(r.fakes, 1);
    assert_near(r.fake_rate, 1.0 / 7, 1e-12);
    assert_int_equal(r.noise_hits, 3);
    assert_int_equal(r.noise_rejected, 1);
    double resp[] = {1.0, 1.25, 12.0 / 9}, m = 0, v = 0;
    for (int i = 0; i < 3; i++)
        m += resp[i] / 3;
    for (int i = 0; i < 3; i++)
        v += (resp[i] - m) * (resp[i] - m) / 3;
    assert_near(r.response_mean, m, 1e-12);
    assert_near(r.resolution, sqrt(v) / m, 1e-12);
    /* bins: [0, 5): A1 (4), A2 (0.5), C1 (3); [5, 100): A0, B0, B1, B2, C0 */
    assert_int_equal(r.bins[0].showers, 3);
    assert_int_equal(r.bins[0].found, 1);
    assert_near(r.bins[0].response_mean, 1.25, 1e-12);
    assert_near(r.bins[0].resolution, 0.0, 1e-12);
    assert_int_equal(r.bins[1].showers, 5);
    assert_int_equal(r.bins[1].found, 2);
    assert_near(r.bins[1].efficiency, 0.4, 1e-12);
    assert_near(r.bins[1].response_mean, (1.0 + 12.0 / 9) / 2, 1e-12);
    /* bad input adds nothing */
    float neg[] = {-1};
    int32_t z[] = {0};
    assert_int_equal(gpuml_cluster_eval_add(ev, 1, z, neg, z), GPUML_ERR_INVALID_ARGUMENT);
    int32_t low[] = {-2};
    assert_int_equal(gpuml_cluster_eval_add(ev, 1, low, ea, z), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_cluster_eval_add(ev, 0, NULL, NULL, NULL), GPUML_OK); /* empty event */
    gpuml_cluster_eval_result r2;
    assert_int_equal(gpuml_cluster_eval_get(ev, &r2), GPUML_OK);
    assert_int_equal(r2.showers, 7);
    assert_int_equal(r2.events, 4);
    gpuml_cluster_eval_destroy(ev);
    cfg.match_fraction = 0.4;
    assert_int_equal(gpuml_cluster_eval_create(&cfg, &ev), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_cluster_eval_config_init_defaults(&cfg);
    cfg.bin_edges[2] = cfg.bin_edges[1];
    assert_int_equal(gpuml_cluster_eval_create(&cfg, &ev), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_cluster_eval_destroy(NULL);
}

/* ---- CLUE on hand-made events ---------------------------------------------- */
static void test_clue_known(void **state)
{
    (void)state;
    /* Two dense blobs 20 apart in 2-D and one isolated low-weight point: two
     * seeds (the densest point of each blob), every blob point follows, the
     * isolated point is an outlier. */
    float x[] = {0, 0, 0.5f, 0, 0, 0.5f, -0.5f, 0, /* blob A: centre densest */
                 20, 0, 20.5f, 0, 20, 0.5f, 19.5f, 0, /* blob B */
                 50, 50};
    float w[] = {2, 1, 1, 1, 2, 1, 1, 1, 0.1f};
    int32_t id[9], cnt = -1;
    gpuml_clue_params p;
    gpuml_clue_params_init_defaults(&p);
    p.dc = 1.0f, p.rho_c = 1.0f, p.seed_delta = 3.0f, p.outlier_delta = 6.0f;
    assert_int_equal(gpuml_clue_cluster(9, 2, x, w, &p, id, &cnt), GPUML_OK);
    assert_int_equal(cnt, 2);
    int32_t want[] = {0, 0, 0, 0, 1, 1, 1, 1, -1};
    for (int i = 0; i < 9; i++)
        assert_int_equal(id[i], want[i]);
    /* everything below rho_c: all outliers, no clusters */
    p.rho_c = 100.0f;
    assert_int_equal(gpuml_clue_cluster(9, 2, x, w, &p, id, &cnt), GPUML_OK);
    assert_int_equal(cnt, 0);
    for (int i = 0; i < 9; i++)
        assert_int_equal(id[i], -1);
    assert_int_equal(gpuml_clue_cluster(0, 2, NULL, NULL, &p, NULL, &cnt), GPUML_OK);
    assert_int_equal(cnt, 0);
    p.outlier_delta = 1.0f; /* below seed_delta */
    assert_int_equal(gpuml_clue_cluster(9, 2, x, w, &p, id, &cnt), GPUML_ERR_INVALID_ARGUMENT);
}

/* ---- the CUDA launcher's schedule on the CPU ------------------------------------ */
typedef struct key_row {
    uint64_t key;
    int32_t row;
} key_row;

static int key_row_cmp(const void *a, const void *b)
{
    const key_row *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* keys/rows of the whole batch sorted by (key, row): what the stable radix
 * sort of rows in order gives. in_set: state == IN (cp) or != NONE. */
static void batch_sort(const gpuml_k_occ *P, const int32_t *state, bool cp, uint64_t *keys, int32_t *rows)
{
    key_row *kr = malloc((size_t)(P->n ? P->n : 1) * sizeof *kr);
    for (int64_t i = 0; i < P->n; i++) {
        int64_t e = 0;
        while (P->rs[e + 1] <= i)
            e++;
        bool in = cp ? state[i] == GPUML_OCC_IN : state[i] != GPUML_OCC_NONE;
        kr[i].key = gpuml_k_occ_row_key(P, e, i, in), kr[i].row = (int32_t)i;
    }
    qsort(kr, (size_t)P->n, sizeof *kr, key_row_cmp);
    for (int64_t p = 0; p < P->n; p++)
        keys[p] = kr[p].key, rows[p] = kr[p].row;
    free(kr);
}

static void test_cuda_schedule_on_cpu(void **state_)
{
    (void)state_;
    enum { N = 3000, D = 3, B = 6 };
    uint64_t rng = 5;
    float *beta = malloc(N * sizeof(float)), *x = malloc(N * D * sizeof(float)), *en = malloc(N * sizeof(float));
    double centre[12][D];
    for (int s = 0; s < 12; s++)
        for (int c = 0; c < D; c++)
            centre[s][c] = h_rand_uniform(&rng, -4, 4);
    for (int i = 0; i < N; i++) {
        bool shower = h_rand_u64(&rng) % 5 != 0;
        int s = (int)(h_rand_u64(&rng) % 12);
        for (int c = 0; c < D; c++)
            x[i * D + c] = (float)(shower ? centre[s][c] + 0.3 * h_rand_normal(&rng) : h_rand_uniform(&rng, -6, 6));
        beta[i] = (float)(shower ? h_rand_uniform(&rng, 0.2, 1.0) : h_rand_uniform(&rng, 0.0, 0.2));
        if (i % 7 == 0)
            beta[i] = 0.5f; /* ties */
        en[i] = (float)h_rand_uniform(&rng, 0, 3);
    }
    int64_t rs[B + 1] = {0, 400, 400, 1500, 1510, 2600, N};
    float t_beta = 0.1f, t_d = 0.7f;
    gpuml_k_occ P;
    P.beta = beta, P.x = x, P.rs = rs, P.n = N, P.nev = B, P.d = D, P.db = D < 3 ? D : 3;
    P.t_beta = t_beta, P.td2 = t_d * t_d, P.inv_cell = 1.0 / ((double)t_d * (1.0 + 1e-4));
    int32_t *st = malloc(N * sizeof(int32_t)), *next = malloc(N * sizeof(int32_t)), *rows = malloc(N * sizeof(int32_t));
    uint64_t *keys = malloc(N * sizeof(uint64_t));
    for (int i = 0; i < N; i++)
        st[i] = gpuml_k_occ_candidate(&P, i) ? GPUML_OCC_OPEN : GPUML_OCC_NONE;
    batch_sort(&P, st, false, keys, rows);
    int rounds = 0;
    for (bool open = true; open; rounds++) { /* every event's block in lockstep: the most rounds of any */
        open = false;
        for (int64_t e = 0; e < B; e++)
            for (int64_t p = rs[e]; p < rs[e + 1]; p++) {
                int64_t i = rows[p];
                if (st[i] == GPUML_OCC_OPEN) {
                    next[i] = gpuml_k_occ_decide(&P, keys, rows, st, e, i);
                    open = open || next[i] == GPUML_OCC_OPEN;
                }
            }
        for (int i = 0; i < N; i++)
            if (st[i] == GPUML_OCC_OPEN)
                st[i] = next[i];
    }
    batch_sort(&P, st, true, keys, rows);
    int32_t *cpof = malloc(N * sizeof(int32_t)), *slot = malloc(N * sizeof(int32_t)), want_cnt[B];
    int32_t *want_id = malloc(N * sizeof(int32_t)), *want_cp = malloc(N * sizeof(int32_t));
    uint64_t *acc = calloc(N, sizeof(uint64_t));
    for (int64_t e = 0; e < B; e++) {
        int32_t s = 0;
        for (int64_t i = rs[e]; i < rs[e + 1]; i++) {
            cpof[i] = gpuml_k_occ_assign(&P, keys, rows, e, i);
            if (st[i] == GPUML_OCC_IN)
                slot[i] = s, want_cp[rs[e] + s] = (int32_t)(i - rs[e]), s++;
        }
        want_cnt[e] = s;
        for (int64_t p = rs[e] + s; p < rs[e + 1]; p++)
            want_cp[p] = -1;
    }
    for (int64_t e = 0; e < B; e++)
        for (int64_t i = rs[e]; i < rs[e + 1]; i++) {
            want_id[i] = cpof[i] >= 0 ? slot[cpof[i]] : -1;
            if (want_id[i] >= 0)
                acc[rs[e] + want_id[i]] += gpuml_k_occ_fixed(en[i]);
        }
    /* the library (CPU driver: one pass in priority order, per-event sorts) */
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_tensor *tb = h_tensor_f32(ctx, 1, SHAPE(N), beta), *tx = h_tensor_f32(ctx, 2, SHAPE(N, D), x);
    gpuml_tensor *te = h_tensor_f32(ctx, 1, SHAPE(N), en), *tr = h_tensor(ctx, GPUML_I64, 1, SHAPE(B + 1), rs);
    gpuml_tensor *id, *cp, *ce, *cnt;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(N), &id), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(N), &cp), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, SHAPE(N), &ce), GPUML_OK);
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(B), &cnt), GPUML_OK);
    gpuml_oc_cluster_params p;
    gpuml_oc_cluster_params_init_defaults(&p);
    p.t_beta = t_beta, p.t_d = t_d;
    assert_int_equal(gpuml_oc_cluster(ctx, tb, tx, tr, te, &p, id, cp, ce, cnt), GPUML_OK);
    const int32_t *gid = gpuml_tensor_data(id), *gcp = gpuml_tensor_data(cp), *gcnt = gpuml_tensor_data(cnt);
    const float *gce = gpuml_tensor_data(ce);
    int total = 0;
    for (int e = 0; e < B; e++) {
        assert_int_equal(gcnt[e], want_cnt[e]);
        total += gcnt[e];
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(gid[i], want_id[i]);
        assert_int_equal(gcp[i], want_cp[i]);
        assert_true(gce[i] == gpuml_k_occ_unfixed(acc[i]));
    }
    assert_true(total > 12 && rounds > 1); /* non-trivial: several clusters, more than one round */
    printf("CUDA schedule on the CPU: %d clusters, %d Jacobi rounds\n", total, rounds);
    gpuml_tensor *objs[] = {tb, tx, te, tr, id, cp, ce, cnt};
    for (int k = 0; k < 8; k++)
        gpuml_tensor_destroy(objs[k]);
    gpuml_ctx_destroy(ctx);
    free(beta), free(x), free(en), free(st), free(next), free(rows), free(keys), free(cpof), free(slot);
    free(want_id), free(want_cp), free(acc);
}

/* ---- the engine's cluster post-processing ------------------------------------ */
static const char *occ_model_json =
    "{\"name\": \"oc-tiny\", \"inputs\": [{\"name\": \"hits\", \"features\": 4}],"
    " \"nodes\": [{\"name\": \"bl\", \"op\": \"linear\", \"inputs\": [\"hits\"], \"out\": 1},"
    "  {\"name\": \"beta\", \"op\": \"sigmoid\", \"inputs\": [\"bl\"]},"
    "  {\"name\": \"coords\", \"op\": \"linear\", \"inputs\": [\"hits\"], \"out\": 2}],"
    " \"outputs\": [\"beta\", \"coords\"]}";

static void test_engine_clusters(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 1);
    gpuml_model *m;
    assert_int_equal(gpuml_model_create(ctx, occ_model_json, &m), GPUML_OK);
    assert_int_equal(gpuml_model_init_params(m, 3), GPUML_OK);
    gpuml_engine_config cfg;
    gpuml_engine_config_init_defaults(&cfg);
    cfg.max_batch_rows = 4096, cfg.max_batch_events = 8, cfg.max_queue_delay_us = 2000;
    cfg.clusters.enabled = 1, cfg.clusters.energy_input = 0, cfg.clusters.energy_column = 3;
    cfg.clusters.t_beta = 0.3f, cfg.clusters.t_d = 0.8f;
    gpuml_engine *eng;
    assert_int_equal(gpuml_engine_create_from_model(m, &cfg, &eng), GPUML_OK);
    enum { NEV = 5 };
    int64_t rows[NEV] = {40, 0, 17, 120, 3};
    uint64_t rng = 11;
    for (int ev = 0; ev < NEV; ev++) {
        int64_t r = rows[ev];
        float *x = malloc((size_t)(r ? r : 1) * 4 * sizeof(float));
        for (int64_t i = 0; i < r * 4; i++)
            x[i] = (float)h_rand_uniform(&rng, -2, 2) + (i % 4 == 3 ? 2.5f : 0.0f);
        float *o[6];
        for (int k = 0; k < 6; k++)
            o[k] = calloc((size_t)(r ? r : 1) * 2, sizeof(float));
        const float *in[1] = {x};
        gpuml_engine_request req;
        gpuml_engine_request_init(&req);
        req.rows = r, req.inputs = in;
        float *outs[6] = {NULL, NULL, o[2], o[3], o[4], o[5]}; /* raw beta / coords not wanted */
        req.outputs = outs;
        assert_int_equal(gpuml_engine_run(eng, &req), GPUML_OK);
        /* the same event by hand: forward, gpuml_oc_cluster */
        gpuml_tape *tape;
        assert_int_equal(gpuml_tape_create(ctx, &tape), GPUML_OK);
        gpuml_tape_set_grad_enabled(tape, 0);
        gpuml_tape_set_training(tape, 0);
        int64_t rs[2] = {0, r};
        gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(r, 4), x), *trs = h_tensor(ctx, GPUML_I64, 1, SHAPE(2), rs);
        gpuml_var *mo[2];
        const gpuml_tensor *ins[1] = {tx};
        assert_int_equal(gpuml_model_forward(m, tape, ins, trs, mo), GPUML_OK);
        gpuml_tensor *id, *cp, *ce, *cnt;
        assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(r), &id), GPUML_OK);
        assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(r), &cp), GPUML_OK);
        assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 1, SHAPE(r), &ce), GPUML_OK);
        assert_int_equal(gpuml_tensor_create(ctx, GPUML_I32, 1, SHAPE(1), &cnt), GPUML_OK);
        gpuml_oc_cluster_params p;
        gpuml_oc_cluster_params_init_defaults(&p);
        p.t_beta = 0.3f, p.t_d = 0.8f, p.energy_column = 3;
        assert_int_equal(gpuml_oc_cluster(ctx, gpuml_var_value(mo[0]), gpuml_var_value(mo[1]), trs, tx, &p, id, cp,
                                          ce, cnt),
                         GPUML_OK);
        const int32_t *gid = gpuml_tensor_data(id), *gcp = gpuml_tensor_data(cp), *gcnt = gpuml_tensor_data(cnt);
        const float *gce = gpuml_tensor_data(ce);
        for (int64_t i = 0; i < r; i++) {
            assert_true(o[2][i] == (float)gid[i]);
            assert_true(o[3][i] == (float)gcp[i]);
            assert_true(o[4][i] == gce[i]);
        }
        assert_true(o[5][0] == (float)gcnt[0]);
        if (r == 120)
            assert_true(gcnt[0] > 1); /* a test that clusters something */
        /* direct mode gives the same */
        float *d[6];
        for (int k = 0; k < 6; k++)
            d[k] = calloc((size_t)(r ? r : 1) * 2, sizeof(float));
        float *douts[6] = {d[0], d[1], d[2], d[3], d[4], d[5]};
        req.outputs = douts;
        assert_int_equal(gpuml_engine_run_direct(eng, &req, NULL), GPUML_OK);
        for (int k = 2; k < 6; k++)
            assert_memory_equal(d[k], o[k], (size_t)(k == 5 ? 1 : r) * sizeof(float));
        for (int k = 0; k < 6; k++)
            free(o[k]), free(d[k]);
        gpuml_tensor *objs[] = {tx, trs, id, cp, ce, cnt};
        for (int k = 0; k < 6; k++)
            gpuml_tensor_destroy(objs[k]);
        gpuml_tape_destroy(tape);
        free(x);
    }
    /* cluster outputs themselves may not be NULL */
    float one[4] = {0, 0, 0, 3}, b1[1], *outs_bad[6] = {NULL, NULL, b1, b1, NULL, b1};
    const float *in1[1] = {one};
    gpuml_engine_request req;
    gpuml_engine_request_init(&req);
    req.rows = 1, req.inputs = in1, req.outputs = outs_bad;
    assert_int_equal(gpuml_engine_run(eng, &req), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_engine_destroy(eng);
    /* bad post-processing configs fail at creation */
    gpuml_engine_config bad = cfg;
    bad.clusters.beta_output = 1, bad.clusters.coords_output = 0; /* coords has 2 features */
    assert_int_equal(gpuml_engine_create_from_model(m, &bad, &eng), GPUML_ERR_INVALID_ARGUMENT);
    bad = cfg, bad.clusters.energy_column = 4;
    assert_int_equal(gpuml_engine_create_from_model(m, &bad, &eng), GPUML_ERR_INVALID_ARGUMENT);
    bad = cfg, bad.clusters.t_d = -1.0f;
    assert_int_equal(gpuml_engine_create_from_model(m, &bad, &eng), GPUML_ERR_INVALID_ARGUMENT);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
    if (H_LIST_CASES(argc, argv))
        return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oc_cluster_table),
        cmocka_unit_test(test_oc_cluster_known),
        cmocka_unit_test(test_metrics_known),
        cmocka_unit_test(test_clue_known),
        cmocka_unit_test(test_engine_clusters),
        cmocka_unit_test(test_cuda_schedule_on_cpu),
    };
    return H_TABLE_DONE(cmocka_run_group_tests(tests, NULL, NULL));
}
