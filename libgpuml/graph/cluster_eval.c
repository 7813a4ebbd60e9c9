/* Clustering metrics on host arrays (include/gpuml/cluster.h, part 2).
 *
 * Per event the truth ids and cluster ids are compacted by sorting, the
 * shared energies S_kt accumulated over sorted (cluster, shower) pairs, and
 * the counts and response sums added to the accumulator in doubles. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "gpuml/cluster.h"

typedef struct acc_bin {
    int64_t showers, found;
    double r, r2; /* sums of the found showers' responses */
} acc_bin;

struct gpuml_cluster_eval {
    gpuml_cluster_eval_config cfg;
    int64_t events, showers, found, merged, split, clusters, fakes, noise_hits, noise_rejected;
    acc_bin all, bins[GPUML_CLUSTER_EVAL_MAX_BINS];
};

void gpuml_cluster_eval_config_init_defaults(gpuml_cluster_eval_config *cfg)
{
    if (!cfg)
        return;
    static const double edges[] = {1, 5, 10, 20, 50, 100, 250};
    memset(cfg, 0, sizeof *cfg);
    cfg->min_energy = 1.0;
    cfg->match_fraction = 0.5;
    cfg->split_fraction = 0.2;
    cfg->num_bins = 6;
    for (int i = 0; i <= 6; i++)
        cfg->bin_edges[i] = edges[i];
}

gpuml_status gpuml_cluster_eval_create(const gpuml_cluster_eval_config *cfg, gpuml_cluster_eval **out)
{
    static const char fn[] = "gpuml_cluster_eval_create";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    gpuml_cluster_eval_config c;
    if (cfg)
        c = *cfg;
    else
        gpuml_cluster_eval_config_init_defaults(&c);
    if (!(c.match_fraction >= 0.5 && c.match_fraction < 1.0))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->match_fraction = %g must be in [0.5, 1)",
                          c.match_fraction);
    if (!(c.split_fraction > 0.0 && c.split_fraction <= 0.5))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->split_fraction = %g must be in (0, 0.5]",
                          c.split_fraction);
    if (isnan(c.min_energy))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->min_energy is NaN");
    if (c.num_bins < 0 || c.num_bins > GPUML_CLUSTER_EVAL_MAX_BINS)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->num_bins = %d must be in [0, %d]", c.num_bins,
                          GPUML_CLUSTER_EVAL_MAX_BINS);
    for (int i = 0; i < c.num_bins; i++)
        if (!(c.bin_edges[i] < c.bin_edges[i + 1]))
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "cfg->bin_edges must ascend: edge %d = %g, edge %d = %g", i, c.bin_edges[i], i + 1,
                              c.bin_edges[i + 1]);
    gpuml_cluster_eval *ev = calloc(1, sizeof *ev);
    if (!ev)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of host memory");
    ev->cfg = c;
    *out = ev;
    return GPUML_OK;
}

void gpuml_cluster_eval_destroy(gpuml_cluster_eval *ev) { free(ev); }

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

typedef struct kt_hit {
    int64_t kt, i; /* k * (showers) + t, hit */
} kt_hit;

static int cmp_kt(const void *a, const void *b)
{
    const kt_hit *x = a, *y = b;
    if (x->kt != y->kt)
        return (x->kt > y->kt) - (x->kt < y->kt);
    return (x->i > y->i) - (x->i < y->i);
}

/* Sorted distinct non-negative values of v [n] into u; returns their count. */
static int64_t uniques(const int32_t *v, int64_t n, int32_t *u)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] >= 0)
            u[m++] = v[i];
    qsort(u, (size_t)m, sizeof *u, cmp_i32);
    int64_t k = 0;
    for (int64_t i = 0; i < m; i++)
        if (k == 0 || u[i] != u[k - 1])
            u[k++] = u[i];
    return k;
}

static int64_t index_of(const int32_t *u, int64_t m, int32_t v)
{
    int32_t *p = bsearch(&v, u, (size_t)m, sizeof *u, cmp_i32);
    return p ? p - u : -1;
}

static void add_response(acc_bin *b, double r)
{
    b->found++;
    b->r += r;
    b->r2 += r * r;
}

gpuml_status gpuml_cluster_eval_add(gpuml_cluster_eval *ev, int64_t n, const int32_t *truth_id, const float *energy,
                                    const int32_t *cluster_id)
{
    static const char fn[] = "gpuml_cluster_eval_add";
    if (!ev)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ev' is NULL");
    if (n < 0 || (n > 0 && (!truth_id || !energy || !cluster_id)))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "n = %lld needs truth_id, energy and cluster_id",
                          (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (truth_id[i] < -1 || cluster_id[i] < -1)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "hit %lld: truth_id %d / cluster_id %d below -1",
                              (long long)i, truth_id[i], cluster_id[i]);
        if (!(energy[i] >= 0.0f) || !isfinite(energy[i]))
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "hit %lld: energy %g is not finite and >= 0",
                              (long long)i, (double)energy[i]);
    }
    size_t un = (size_t)(n > 0 ? n : 1);
    int32_t *tu = malloc(un * sizeof *tu), *ku = malloc(un * sizeof *ku);
    kt_hit *pairs = malloc(un * sizeof *pairs);
    if (!tu || !ku || !pairs) {
        free(tu), free(ku), free(pairs);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of host memory for %lld hits", (long long)n);
    }
    int64_t nt = uniques(truth_id, n, tu), nk = uniques(cluster_id, n, ku);
    /* dense arrays: E_t, E_k, truth energy per cluster, best shower per
     * cluster and clusters found per shower */
    size_t sz = (size_t)(nt + nk + 1);
    double *Et = calloc(sz, sizeof(double)), *Ek = calloc(sz, sizeof(double)), *Ekt = calloc(sz, sizeof(double));
    int64_t *finder = malloc(sz * sizeof(int64_t)), *nfound = calloc(sz, sizeof(int64_t)),
            *npieces = calloc(sz, sizeof(int64_t));
    bool *mutual = calloc(sz, sizeof(bool));
    if (!Et || !Ek || !Ekt || !finder || !nfound || !npieces || !mutual) {
        free(tu), free(ku), free(pairs), free(Et), free(Ek), free(Ekt), free(finder), free(nfound), free(npieces);
        free(mutual);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of host memory for %lld hits", (long long)n);
    }
    int64_t np = 0, noise = 0, noise_rej = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t t = truth_id[i] >= 0 ? index_of(tu, nt, truth_id[i]) : -1;
        int64_t k = cluster_id[i] >= 0 ? index_of(ku, nk, cluster_id[i]) : -1;
        if (t >= 0)
            Et[t] += energy[i];
        else
            noise++, noise_rej += k < 0;
        if (k >= 0)
            Ek[k] += energy[i];
        if (t >= 0 && k >= 0) {
            Ekt[k] += energy[i];
            pairs[np].kt = k * nt + t, pairs[np].i = i, np++;
        }
    }
    qsort(pairs, (size_t)np, sizeof *pairs, cmp_kt); /* by (k, t), hits in order */
    double f = ev->cfg.match_fraction, fs = ev->cfg.split_fraction;
    for (int64_t t = 0; t < nt; t++)
        finder[t] = -1;
    for (int64_t a = 0; a < np;) {
        int64_t kt = pairs[a].kt, b = a;
        double s = 0;
        for (; b < np && pairs[b].kt == kt; b++)
            s += energy[pairs[b].i];
        int64_t k = kt / nt, t = kt % nt;
        if (s > f * Et[t]) {
            finder[t] = k, nfound[k]++;
            mutual[t] = s > f * Ek[k];
        }
        if (s >= fs * Et[t] && Et[t] > 0)
            npieces[t]++;
        a = b;
    }
    const gpuml_cluster_eval_config *c = &ev->cfg;
    for (int64_t t = 0; t < nt; t++) {
        double e = Et[t], r = mutual[t] && e > 0 ? Ek[finder[t]] / e : 0.0;
        for (int b = 0; b < c->num_bins; b++)
            if (e >= c->bin_edges[b] && e < c->bin_edges[b + 1]) {
                ev->bins[b].showers++;
                if (mutual[t])
                    add_response(&ev->bins[b], r);
            }
        if (!(e >= c->min_energy))
            continue;
        ev->showers++;
        ev->split += npieces[t] >= 2;
        ev->merged += finder[t] >= 0 && nfound[finder[t]] >= 2;
        if (mutual[t]) {
            ev->found++;
            add_response(&ev->all, r);
        }
    }
    for (int64_t k = 0; k < nk; k++)
        ev->fakes += !(Ekt[k] > f * Ek[k]);
    ev->clusters += nk;
    ev->noise_hits += noise;
    ev->noise_rejected += noise_rej;
    ev->events++;
    free(tu), free(ku), free(pairs), free(Et), free(Ek), free(Ekt), free(finder), free(nfound), free(npieces);
    free(mutual);
    return GPUML_OK;
}

static void finish(const acc_bin *b, double *mean, double *resolution)
{
    *mean = b->found ? b->r / (double)b->found : 0.0;
    double var = b->found ? b->r2 / (double)b->found - *mean * *mean : 0.0;
    *resolution = b->found && *mean > 0 ? sqrt(var > 0 ? var : 0.0) / *mean : 0.0;
}

static double ratio(int64_t a, int64_t b) { return b > 0 ? (double)a / (double)b : 0.0; }

gpuml_status gpuml_cluster_eval_get(const gpuml_cluster_eval *ev, gpuml_cluster_eval_result *out)
{
    static const char fn[] = "gpuml_cluster_eval_get";
    if (!ev || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ev ? "out" : "ev");
    gpuml_cluster_eval_result r;
    memset(&r, 0, sizeof r);
    r.events = ev->events, r.showers = ev->showers, r.found = ev->found, r.merged = ev->merged;
    r.split = ev->split, r.clusters = ev->clusters, r.fakes = ev->fakes;
    r.noise_hits = ev->noise_hits, r.noise_rejected = ev->noise_rejected;
    r.efficiency = ratio(r.found, r.showers);
    r.merge_rate = ratio(r.merged, r.showers);
    r.split_rate = ratio(r.split, r.showers);
    r.fake_rate = ratio(r.fakes, r.clusters);
    r.noise_rejection = ratio(r.noise_rejected, r.noise_hits);
    finish(&ev->all, &r.response_mean, &r.resolution);
    r.num_bins = ev->cfg.num_bins;
    for (int b = 0; b < r.num_bins; b++) {
        gpuml_cluster_eval_bin *o = &r.bins[b];
        o->lo = ev->cfg.bin_edges[b], o->hi = ev->cfg.bin_edges[b + 1];
        o->showers = ev->bins[b].showers, o->found = ev->bins[b].found;
        o->efficiency = ratio(o->found, o->showers);
        finish(&ev->bins[b], &o->response_mean, &o->resolution);
    }
    *out = r;
    return GPUML_OK;
}
