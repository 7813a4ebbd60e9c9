/*
 * gpuml/cluster.h - from object condensation outputs to showers, and how
 * good the showers are.
 *
 *  1. gpuml_oc_cluster: object condensation inference (HGCalML's
 *     BuildCondensates) on a ragged batch, on the context's device.
 *  2. gpuml_cluster_eval_*: clustering metrics a calorimeter physicist reads
 *     (efficiency, fake, merge and split rates, energy response and
 *     resolution in bins of true energy, noise rejection), on host arrays.
 *  3. gpuml_clue_cluster: a classical baseline on host arrays, CLUE (the CMS
 *     HGCAL density clustering: local density, distance to the nearest
 *     higher density, seeds, followers, outliers), to tell whether a network
 *     adds anything.
 *
 *     // beta [N] f32, coords [N, D] f32, row_splits [B+1] i64, energy [N]
 *     gpuml_oc_cluster_params p;
 *     gpuml_oc_cluster_params_init_defaults(&p);   // t_beta 0.1, t_d 0.5
 *     gpuml_tensor *id, *cp, *ce, *cnt;             // [N] i32, [N] i32, [N] f32, [B] i32
 *     gpuml_oc_cluster(ctx, beta, coords, row_splits, energy, &p, id, cp, ce, cnt);
 *     // hit i of event e is in cluster id[i] of e (-1: noise); cluster c of
 *     // event e has condensation point row_splits[e] + cp[row_splits[e] + c], energy
 *     // ce[row_splits[e] + c], for c < cnt[e].
 *
 *     gpuml_cluster_eval *ev;
 *     gpuml_cluster_eval_create(NULL, &ev);         // defaults
 *     for each event: gpuml_cluster_eval_add(ev, n, truth_id, hit_energy, id);
 *     gpuml_cluster_eval_result r;
 *     gpuml_cluster_eval_get(ev, &r);               // r.efficiency, r.resolution, r.bins[...]
 *     gpuml_cluster_eval_destroy(ev);
 *
 * Threading: gpuml_oc_cluster as every op (one thread per context at a
 * time); an eval object by one thread at a time; gpuml_clue_cluster is
 * reentrant.
 */
#ifndef GPUML_CLUSTER_H
#define GPUML_CLUSTER_H

#include "gpuml/context.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- 1. object condensation inference --------------------------------------
 * Per event, with hits ordered by priority (higher beta first; equal betas:
 * lower row first):
 *   - candidates are the hits with beta > t_beta and finite coordinates;
 *   - a candidate becomes a condensation point (CP) unless a CP before it in
 *     priority lies within t_d (so CPs are pairwise farther than t_d apart);
 *   - every hit joins the first CP in priority order within t_d (a CP joins
 *     itself); hits with none, and hits with a non-finite coordinate, are
 *     noise (-1).
 * "Within t_d": dist2 = sum_d (x_a,d - x_b,d)^2 in float32, summed in
 * dimension order, <= t_d * t_d (as gpuml_knn's max_radius). NaN beta is
 * never above threshold. The result is exact and identical on every backend
 * and thread count; clusters of an event are numbered 0 .. count-1 in the
 * row order of their CPs. Cluster energies are exact sums in 2^-24 fixed
 * point, so they are bitwise the same everywhere too (a hit's energy is
 * clamped to +-2^31; NaN counts 0).
 *
 * Cost: a grid of cells of side t_d on the first min(D, 3) coordinates,
 * sorted per event; every candidate and every hit tests the points of the
 * 3^min(D,3) cells around it. CPUs take events in parallel, one thread each;
 * on CUDA a fixed number of launches per batch, no host synchronisation, a
 * block per event for the CP decision (rounds bounded by the longest chain of
 * candidates each within t_d of the next) and the numbering. O(n log n +
 * n * cell occupancy) per event: sub-quadratic unless all of an event's
 * candidates sit within a few t_d of each other. */
typedef struct gpuml_oc_cluster_params {
    float t_beta; /* candidates: beta > t_beta; default 0.1 */
    float t_d;    /* radius in clustering space, > 0, finite; default 0.5 */
    int energy_column; /* column of an [N, F] energy tensor; default 0 */
} gpuml_oc_cluster_params;

GPUML_API void gpuml_oc_cluster_params_init_defaults(gpuml_oc_cluster_params *p);

/* beta [N] or [N, 1] f32; coords [N, D] f32 (1 <= D <= 1024); row_splits
 * [B+1] i64 (as gpuml_knn: on CUDA bad values are clamped and reported by
 * gpuml_ctx_synchronize); energy [N] f32, or [N, F] f32 read at column
 * p->energy_column (the hits' features as they are), or NULL (cluster
 * energies then 0). Outputs, caller-allocated on the context's device:
 * cluster_id [N] i32; cluster_cp [N] i32 (slot row_splits[e] + c: row of the
 * CP of cluster c of event e counted from the event's first row, -1 past the
 * event's count); cluster_energy [N]
 * f32 or NULL (same slots, 0 past the count); cluster_count [B] i32.
 * Enqueued on the context's stream; N < 2^31. Errors: INVALID_ARGUMENT
 * (NULL, t_beta NaN, t_d not finite or <= 0, outputs overlapping inputs or
 * each other, bad row_splits on the CPU), DTYPE, SHAPE, DEVICE_MISMATCH,
 * OUT_OF_MEMORY. On error nothing is written. */
GPUML_API gpuml_status gpuml_oc_cluster(gpuml_ctx *ctx, const gpuml_tensor *beta, const gpuml_tensor *coords,
                                        const gpuml_tensor *row_splits, const gpuml_tensor *energy,
                                        const gpuml_oc_cluster_params *p, gpuml_tensor *cluster_id,
                                        gpuml_tensor *cluster_cp, gpuml_tensor *cluster_energy,
                                        gpuml_tensor *cluster_count);

/* ---- 2. clustering metrics --------------------------------------------------
 * Per event, from per-hit truth ids (>= 0: shower, -1: noise), hit energies
 * and cluster ids (>= 0: cluster, -1: unclustered). With E_t the energy of
 * shower t (sum of its hits: the deposited energy), E_k that of cluster k,
 * S_kt the energy of the hits of t in k, f = match_fraction (default 0.5:
 * "more than half"):
 *   - shower t and cluster k match if S_kt > f * E_t and S_kt > f * E_k
 *     (each is mostly the other; unique both ways); the shower's response
 *     is E_k / E_t;
 *   - efficiency: matched / showers, over showers with E_t >= min_energy;
 *   - merge rate: of those showers, the fraction whose majority cluster
 *     (S_kt > f * E_t) is also the majority cluster of another shower (of
 *     any energy);
 *   - split rate: of those showers, the fraction with two or more clusters
 *     each holding S_kt >= split_fraction * E_t;
 *   - fake rate: fraction of all clusters whose energy is at most f from
 *     showers (sum_t S_kt <= f * E_k: mostly noise);
 *   - response mean and resolution (standard deviation / mean) over the
 *     matched showers with E_t >= min_energy, and per bin of E_t (every
 *     shower in the bin's range, with its efficiency);
 *   - noise rejection: fraction of noise hits left unclustered.
 * Energies must be finite and >= 0. */
#define GPUML_CLUSTER_EVAL_MAX_BINS 16

typedef struct gpuml_cluster_eval_config {
    double min_energy;     /* default 1.0 (units of the energies)           */
    double match_fraction; /* in [0.5, 1); default 0.5                     */
    double split_fraction; /* in (0, 0.5]; default 0.2                     */
    int num_bins;          /* 0 .. GPUML_CLUSTER_EVAL_MAX_BINS; default 6  */
    double bin_edges[GPUML_CLUSTER_EVAL_MAX_BINS + 1]; /* ascending; default
                              1, 5, 10, 20, 50, 100, 250                    */
} gpuml_cluster_eval_config;

typedef struct gpuml_cluster_eval_bin {
    double lo, hi;              /* E_t range [lo, hi)                        */
    int64_t showers, found;
    double efficiency;          /* found / showers (0 if none)               */
    double response_mean, resolution; /* of the found ones (0 if none)      */
} gpuml_cluster_eval_bin;

typedef struct gpuml_cluster_eval_result {
    int64_t events, showers, found, merged, split; /* showers: E_t >= min;
                                                      found: matched      */
    int64_t clusters, fakes, noise_hits, noise_rejected;
    double efficiency, merge_rate, split_rate, fake_rate, noise_rejection;
    double response_mean, resolution;
    int num_bins;
    gpuml_cluster_eval_bin bins[GPUML_CLUSTER_EVAL_MAX_BINS];
} gpuml_cluster_eval_result;

typedef struct gpuml_cluster_eval gpuml_cluster_eval;

GPUML_API void gpuml_cluster_eval_config_init_defaults(gpuml_cluster_eval_config *cfg);

/* cfg NULL: defaults. *out receives a new accumulator (free with _destroy).
 * Errors: INVALID_ARGUMENT (bad fractions, bins not ascending),
 * OUT_OF_MEMORY. */
GPUML_API gpuml_status gpuml_cluster_eval_create(const gpuml_cluster_eval_config *cfg, gpuml_cluster_eval **out);
GPUML_API void gpuml_cluster_eval_destroy(gpuml_cluster_eval *ev);

/* Add one event of n hits: truth_id [n] i32, energy [n] f32, cluster_id [n]
 * i32 (host memory, read during the call only). Errors: INVALID_ARGUMENT
 * (NULL with n > 0, ids < -1, energy negative or not finite); nothing is
 * added then. */
GPUML_API gpuml_status gpuml_cluster_eval_add(gpuml_cluster_eval *ev, int64_t n, const int32_t *truth_id,
                                              const float *energy, const int32_t *cluster_id);

/* The metrics over the events added so far. */
GPUML_API gpuml_status gpuml_cluster_eval_get(const gpuml_cluster_eval *ev, gpuml_cluster_eval_result *out);

/* ---- 3. the CLUE baseline -----------------------------------------------------
 * CLUE (Rovere et al., Front. Big Data 3 (2020) 591315) on points x [n, D]
 * (host, f32, D >= 1: e.g. x, y, z of the hits) with weights w [n] (energy):
 *   rho_i   = sum of w_j over points within dc of i (i included), with
 *             weight 1 for j == i and 0.5 otherwise (CLUE's kernel);
 *   delta_i = distance to the nearest point with higher density (ties: the
 *             lower index is higher), within outlier_delta; none: infinite;
 *   seeds:  rho_i >= rho_c and delta_i > seed_delta; outliers: rho_i < rho_c
 *           and delta_i > outlier_delta; every other point follows its
 *           nearest higher neighbour and takes its seed's cluster.
 * Clusters are numbered 0 .. count-1 in seed row order; outliers and
 * followers of outliers are -1. Distances on all D coordinates (scale them
 * beforehand if the detector is anisotropic). The defaults are tuned for
 * examples/gen_dataset hgcal events in cm and GeV (best shower efficiency
 * on training events over a grid of dc, rho_c, seed_delta with
 * outlier_delta = 2 seed_delta). Quadratic in n: a baseline for
 * evaluation, not a production path. cluster_id [n] i32 is written, *count
 * (may be NULL) receives the number of clusters. */
typedef struct gpuml_clue_params {
    float dc;            /* density radius; default 5.0           */
    float rho_c;         /* seed density threshold; default 0.2   */
    float seed_delta;    /* default 10.0 (> dc)                   */
    float outlier_delta; /* default 20.0 (>= seed_delta)          */
} gpuml_clue_params;

GPUML_API void gpuml_clue_params_init_defaults(gpuml_clue_params *p);
GPUML_API gpuml_status gpuml_clue_cluster(int64_t n, int d, const float *x, const float *w, const gpuml_clue_params *p,
                                          int32_t *cluster_id, int32_t *count);

#ifdef __cplusplus
}
#endif
#endif
