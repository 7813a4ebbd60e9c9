/* The CLUE baseline on host arrays (include/gpuml/cluster.h, part 3): a
 * plain O(n^2) transcription of the algorithm for evaluation, in doubles. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "gpuml/cluster.h"

void gpuml_clue_params_init_defaults(gpuml_clue_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    /* tuned on examples/gen_dataset hgcal events (cm, GeV): the best shower
     * efficiency of a grid over dc 2-5, rho_c 0.05-1, seed_delta 5-40 */
    p->dc = 5.0f;
    p->rho_c = 0.2f;
    p->seed_delta = 10.0f;
    p->outlier_delta = 20.0f;
}

static double dist2(const float *x, int d, int64_t a, int64_t b)
{
    double s = 0;
    for (int c = 0; c < d; c++) {
        double t = (double)x[a * d + c] - (double)x[b * d + c];
        s += t * t;
    }
    return s;
}

gpuml_status gpuml_clue_cluster(int64_t n, int d, const float *x, const float *w, const gpuml_clue_params *p,
                                int32_t *cluster_id, int32_t *count)
{
    static const char fn[] = "gpuml_clue_cluster";
    if (!p || n < 0 || d < 1 || (n > 0 && (!x || !w || !cluster_id)))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "need p, n >= 0, d >= 1 and x, w, cluster_id for n > 0 (n = %lld, d = %d)", (long long)n, d);
    if (!(p->dc > 0) || !(p->rho_c >= 0) || !(p->seed_delta > 0) || !(p->outlier_delta >= p->seed_delta))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "params need dc > 0, rho_c >= 0, seed_delta > 0, outlier_delta >= seed_delta");
    if (n >= INT32_MAX)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "n = %lld too large", (long long)n);
    size_t un = (size_t)(n > 0 ? n : 1);
    double *rho = calloc(un, sizeof *rho);
    int64_t *nh = malloc(un * sizeof *nh), *order = malloc(un * sizeof *order);
    if (!rho || !nh || !order) {
        free(rho), free(nh), free(order);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of host memory for %lld points", (long long)n);
    }
    double dc2 = (double)p->dc * p->dc, od2 = (double)p->outlier_delta * p->outlier_delta;
    double sd2 = (double)p->seed_delta * p->seed_delta;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            if (dist2(x, d, i, j) <= dc2)
                rho[i] += (i == j ? 1.0 : 0.5) * (double)w[j];
    /* nearest higher: j with (rho_j, -j) > (rho_i, -i), nearest (ties: lower j) */
    for (int64_t i = 0; i < n; i++) {
        int64_t best = -1;
        double bd = INFINITY;
        for (int64_t j = 0; j < n; j++) {
            bool higher = rho[j] > rho[i] || (rho[j] == rho[i] && j < i);
            double dd = higher ? dist2(x, d, i, j) : INFINITY;
            if (dd <= od2 && dd < bd)
                bd = dd, best = j;
        }
        double delta2 = best >= 0 ? bd : INFINITY;
        bool seed = rho[i] >= p->rho_c && delta2 > sd2, outlier = rho[i] < p->rho_c && delta2 > od2;
        nh[i] = seed ? -2 : outlier ? -1 : best; /* -2 seed, -1 outlier */
        if (!seed && !outlier && best < 0)
            nh[i] = -1; /* no higher neighbour within outlier_delta: outlier */
    }
    /* seeds numbered in row order; followers resolved in decreasing density
     * (their nearest higher comes first) */
    int32_t k = 0;
    for (int64_t i = 0; i < n; i++)
        cluster_id[i] = nh[i] == -2 ? k++ : -1;
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    /* insertion by (rho desc, index asc) through a simple merge-free sort */
    for (int64_t a = 1; a < n; a++) {
        int64_t v = order[a], b = a;
        while (b > 0 && (rho[order[b - 1]] < rho[v] || (rho[order[b - 1]] == rho[v] && order[b - 1] > v))) {
            order[b] = order[b - 1];
            b--;
        }
        order[b] = v;
    }
    for (int64_t q = 0; q < n; q++) {
        int64_t i = order[q];
        if (nh[i] >= 0)
            cluster_id[i] = cluster_id[nh[i]];
    }
    if (count)
        *count = k;
    free(rho), free(nh), free(order);
    return GPUML_OK;
}
