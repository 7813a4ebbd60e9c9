/*
 * gen_dataset - synthetic particle-physics datasets in gpuml's HDF5 layout.
 *
 *   gen_dataset hgcal --events 2000 --seed 1 --out hgcal.h5 [--min-hits 200]
 *               [--max-hits 2000] [--min-showers 1] [--max-showers 6] [--noise 0.1]
 *   gen_dataset jets --events 10000 --seed 1 --out jets.h5 [--min-particles 20]
 *               [--max-particles 80] [--signal 0.5]
 *
 * hgcal: a toy high-granularity endcap calorimeter (|x|, |y| < 150 cm, 50
 * layers 1 cm apart from z = 320 cm, each ~0.5 X0). Each event holds a few
 * electromagnetic showers coming from the origin: depth drawn from the
 * longitudinal Gamma profile (tmax = ln(E/Ec) + 0.5), transverse gaussian
 * spread with a log-normal width growing with depth, hit energies following
 * the transverse profile, total smeared by 20%/sqrt(E); plus uniform noise.
 *   features [N, 5] f32 (x, y, z [cm], energy [GeV], layer)
 *   truth_id [N] i32 (shower index, -1 noise), truth_energy [N] f32 (the
 *   shower's energy, 0 noise), truth_pos [N, 3] f32 (its impact point on the
 *   front face); event/n_showers [B] i32.
 *
 * jets: boosted jets (pt 500-1000 GeV, R = 0.8) of two classes. Label 0:
 * QCD-like, one prong, with a soft-ish gluon splitting in a third of them.
 * Label 1: W-like (two prongs) or top-like (three prongs), the prongs'
 * opening angles set by the mass (80 / 173 GeV). Particles within a prong
 * share its momentum Dirichlet-fashion, harder ones closer to its axis;
 * some soft wide-angle radiation everywhere.
 *   points [N, 2] f32 (delta-eta, delta-phi to the jet axis)
 *   features [N, 7] f32 (log pt, log E, log pt/pt_jet, log E/E_jet, delta-R,
 *   delta-eta, delta-phi); event/label [B] i32, event/jet_pt [B] f32.
 * Separable, not trivially (20000 jets, seed 3, 30% held out): a cut on
 * the jet mass gets 72%, logistic regression on mass, N-subjettiness
 * ratios, multiplicity and pt dispersion 86% (examples/inspect_dataset.py
 * --baseline), gradient-boosted trees on those observables 92%; a point-
 * cloud network should reach 90-93%.
 *
 * Deterministic for a given seed (up to the platform's libm).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpuml/gpuml.h>

#include "common/cli.h"

/* A failure removes the half-written file (the writer's temporary name):
 * a failed run leaves nothing behind. */
static gpuml_dataset_writer *writer_;

#define CHECK(call)                                                                          \
    do {                                                                                     \
        gpuml_status s_ = (call);                                                            \
        if (s_ != GPUML_OK) {                                                                \
            fprintf(stderr, "gen_dataset: %s: %s\n", gpuml_status_string(s_), gpuml_last_error()); \
            gpuml_dataset_writer_abort(writer_);                                             \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* ---- random numbers: xoshiro256** seeded through splitmix64 ----------- */
typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed += 0x9E3779B97F4A7C15ull;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        r->s[i] = z ^ (z >> 31);
    }
}

static uint64_t rng_u64(rng_t *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return out;
}

static double uni(rng_t *r) { return ((double)(rng_u64(r) >> 11) + 0.5) * 0x1.0p-53; } /* (0, 1) */
static double uni_range(rng_t *r, double lo, double hi) { return lo + (hi - lo) * uni(r); }
static int uni_int(rng_t *r, int lo, int hi) { return lo + (int)(rng_u64(r) % (uint64_t)(hi - lo + 1)); }
static double gauss(rng_t *r) { return sqrt(-2.0 * log(uni(r))) * cos(6.283185307179586 * uni(r)); }

/* Marsaglia-Tsang; shape a > 0. */
static double gamma_rand(rng_t *r, double a)
{
    if (a < 1.0)
        return gamma_rand(r, a + 1.0) * pow(uni(r), 1.0 / a);
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = gauss(r), v = 1.0 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = uni(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

/* ---- options ---------------------------------------------------------- */
typedef struct {
    const char *kind, *out;
    long events;
    uint64_t seed;
    int min_hits, max_hits, min_showers, max_showers;
    double noise;
    int min_particles, max_particles;
    double signal;
} options;

static void bad(const char *what)
{
    fprintf(stderr, "gen_dataset: %s\n(gen_dataset --help lists the options)\n", what);
    exit(2);
}

static options parse(int argc, char **argv)
{
    options o = {NULL, NULL, 1000, 1, 200, 2000, 1, 6, 0.1, 20, 80, 0.5};
    int64_t events = o.events;
    cli_opt table[] = {
        CLI_POS_CHOICE("KIND", &o.kind, "hgcal|jets", "what to generate"),
        CLI_STR_REQ("out", &o.out, "FILE", "the dataset file (written atomically)"),
        CLI_I64("events", &events, 0, INT32_MAX, "events"),
        CLI_U64("seed", &o.seed, "random seed"),
        CLI_INT("min-hits", &o.min_hits, 1, 10000000, "hgcal: hits per event, at least"),
        CLI_INT("max-hits", &o.max_hits, 1, 10000000, "hgcal: hits per event, at most"),
        CLI_INT("min-showers", &o.min_showers, 0, 1000, "hgcal: showers per event, at least"),
        CLI_INT("max-showers", &o.max_showers, 0, 1000, "hgcal: showers per event, at most"),
        CLI_F64("noise", &o.noise, 0, 0.999, "hgcal: fraction of noise hits"),
        CLI_INT("min-particles", &o.min_particles, 4, 100000, "jets: particles per jet, at least"),
        CLI_INT("max-particles", &o.max_particles, 4, 100000, "jets: particles per jet, at most"),
        CLI_F64("signal", &o.signal, 0, 1, "jets: fraction of label-1 (W/top-like) jets"),
        CLI_END};
    cli_parse(argc, argv, "synthetic particle-physics datasets in gpuml's HDF5 layout", table);
    o.events = (long)events;
    if (o.max_hits < o.min_hits)
        bad("--max-hits is less than --min-hits");
    if (o.max_showers < o.min_showers)
        bad("--max-showers is less than --min-showers");
    if (o.max_particles < o.min_particles)
        bad("--max-particles is less than --min-particles");
    return o;
}

/* ---- hgcal ------------------------------------------------------------ */
#define NLAYERS 50
#define Z0 320.0
#define HALF 150.0

typedef struct {
    float *feat, *tE, *tpos;
    int32_t *tid;
    int cap;
} hits;

static void hits_reserve(hits *h, int n)
{
    if (n <= h->cap)
        return;
    h->cap = n;
    h->feat = realloc(h->feat, (size_t)n * 5 * sizeof(float));
    h->tE = realloc(h->tE, (size_t)n * sizeof(float));
    h->tpos = realloc(h->tpos, (size_t)n * 3 * sizeof(float));
    h->tid = realloc(h->tid, (size_t)n * sizeof(int32_t));
    if (!h->feat || !h->tE || !h->tpos || !h->tid) {
        fprintf(stderr, "gen_dataset: out of memory\n");
        gpuml_dataset_writer_abort(writer_);
        exit(1);
    }
}

static void set_hit(hits *h, int i, double x, double y, int layer, double e, int id, double te, double px, double py)
{
    float *f = h->feat + 5 * i;
    f[0] = (float)x, f[1] = (float)y, f[2] = (float)(Z0 + 0.5 + layer), f[3] = (float)e, f[4] = (float)layer;
    h->tid[i] = id;
    h->tE[i] = (float)te;
    h->tpos[3 * i] = (float)px, h->tpos[3 * i + 1] = (float)py, h->tpos[3 * i + 2] = (float)(id >= 0 ? Z0 : 0);
}

/* n hits of one shower of energy E hitting the front face at (x0, y0). */
static void shower(rng_t *r, hits *h, int first, int n, int id, double E, double x0, double y0)
{
    const double b = 0.5, tmax = log(E / 0.01) + 0.5, a = 1.0 + b * tmax;
    const double sigma0 = 1.0 * exp(0.25 * gauss(r)); /* cm, log-normal */
    double wsum = 0;
    for (int k = 0; k < n; k++) {
        int layer;
        do /* leakage beyond the last layer is dropped and redrawn */
            layer = (int)(gamma_rand(r, a) / b / 0.5);
        while (layer >= NLAYERS);
        double z = Z0 + 0.5 + layer, depth = layer * 0.5;
        double sigma = sigma0 * (1.0 + 0.15 * depth);
        double dx, dy, x, y;
        do {
            dx = sigma * gauss(r), dy = sigma * gauss(r);
            x = x0 * z / Z0 + dx, y = y0 * z / Z0 + dy; /* axis points back to the origin */
        } while (fabs(x) >= HALF || fabs(y) >= HALF);
        double w = exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)) * gamma_rand(r, 2.0);
        set_hit(h, first + k, x, y, layer, w, id, E, x0, y0);
        wsum += w;
    }
    double visible = E * (1.0 + 0.2 / sqrt(E) * gauss(r));
    if (visible < 0.05 * E)
        visible = 0.05 * E;
    for (int k = 0; k < n; k++)
        h->feat[5 * (first + k) + 3] = (float)(h->feat[5 * (first + k) + 3] / wsum * visible);
}

static void gen_hgcal(const options *o, gpuml_dataset_writer *w)
{
    static const char *cols[] = {"x", "y", "z", "energy", "layer"};
    static const char *pos_cols[] = {"x", "y", "z"};
    CHECK(gpuml_dataset_writer_add_field(w, "features", GPUML_F32, 1, (int64_t[]){5}, cols, 5));
    CHECK(gpuml_dataset_writer_add_field(w, "truth_id", GPUML_I32, 0, NULL, NULL, 0));
    CHECK(gpuml_dataset_writer_add_field(w, "truth_energy", GPUML_F32, 0, NULL, NULL, 0));
    CHECK(gpuml_dataset_writer_add_field(w, "truth_pos", GPUML_F32, 1, (int64_t[]){3}, pos_cols, 3));
    CHECK(gpuml_dataset_writer_add_field(w, "event/n_showers", GPUML_I32, 0, NULL, NULL, 0));
    rng_t r;
    rng_seed(&r, o->seed);
    hits h = {0};
    double E[64], X[64], Y[64], wgt[64];
    for (long ev = 0; ev < o->events; ev++) {
        int ns = uni_int(&r, o->min_showers, o->max_showers);
        if (ns > 64)
            ns = 64;
        int total = uni_int(&r, o->min_hits, o->max_hits);
        int noise = ns ? (int)lround(o->noise * total) : total;
        int budget = total - noise;
        if (budget < ns)
            budget = ns, total = noise + ns;
        double wsum = 0;
        for (int s = 0; s < ns; s++) {
            E[s] = exp(uni_range(&r, log(2.0), log(200.0)));
            X[s] = uni_range(&r, -120, 120), Y[s] = uni_range(&r, -120, 120);
            wsum += wgt[s] = pow(E[s], 0.8); /* more energy, more hits */
        }
        hits_reserve(&h, total);
        int at = 0;
        for (int s = 0; s < ns; s++) {
            int n = s == ns - 1 ? budget - at : (int)lround(budget * wgt[s] / wsum);
            if (n < 1)
                n = 1;
            if (at + n > budget - (ns - 1 - s))
                n = budget - (ns - 1 - s) - at;
            shower(&r, &h, at, n, s, E[s], X[s], Y[s]);
            at += n;
        }
        for (; at < total; at++)
            set_hit(&h, at, uni_range(&r, -HALF, HALF), uni_range(&r, -HALF, HALF), uni_int(&r, 0, NLAYERS - 1),
                    -0.02 * log(uni(&r)), -1, 0, 0, 0);
        /* Shuffle the hits: truth must not be readable from the order. */
        for (int i = total - 1; i > 0; i--) {
            int j = (int)(rng_u64(&r) % (uint64_t)(i + 1));
            float f5[5], f3[3];
            memcpy(f5, h.feat + 5 * i, sizeof f5);
            memcpy(h.feat + 5 * i, h.feat + 5 * j, sizeof f5);
            memcpy(h.feat + 5 * j, f5, sizeof f5);
            memcpy(f3, h.tpos + 3 * i, sizeof f3);
            memcpy(h.tpos + 3 * i, h.tpos + 3 * j, sizeof f3);
            memcpy(h.tpos + 3 * j, f3, sizeof f3);
            int32_t ti = h.tid[i];
            h.tid[i] = h.tid[j], h.tid[j] = ti;
            float te = h.tE[i];
            h.tE[i] = h.tE[j], h.tE[j] = te;
        }
        int32_t n_showers = ns;
        const void *data[5] = {h.feat, h.tid, h.tE, h.tpos, &n_showers};
        CHECK(gpuml_dataset_writer_append(w, total, data));
    }
    free(h.feat), free(h.tE), free(h.tpos), free(h.tid);
}

/* ---- jets ------------------------------------------------------------- */
#define MAXP 512
#define NF 7

typedef struct {
    double z, eta, phi; /* momentum fraction, axis */
} prong;

/* Prongs of one jet; returns their number. */
static int make_prongs(rng_t *r, int label, double pt, prong *p)
{
    p[0] = (prong){1, 0, 0};
    if (label == 0) {
        if (uni(r) > 0.5)
            return 1;
        /* Gluon emission: soft-leaning momentum fraction, log-uniform angle. */
        double z = 0.05 * pow(0.5 / 0.05, uni(r)), dr = exp(uni_range(r, log(0.08), log(0.7)));
        double a = uni_range(r, 0, 6.283185307);
        p[0] = (prong){1 - z, -z * dr * cos(a), -z * dr * sin(a)};
        p[1] = (prong){z, (1 - z) * dr * cos(a), (1 - z) * dr * sin(a)};
        return 2;
    }
    if (uni(r) < 0.5) { /* W -> qq: dR = m / (pt sqrt(z (1 - z))) */
        double m = 80.4 + 2.0 * gauss(r), z = uni_range(r, 0.05, 0.95);
        double dr = m / (pt * sqrt(z * (1 - z))), a = uni_range(r, 0, 6.283185307);
        p[0] = (prong){1 - z, -z * dr * cos(a), -z * dr * sin(a)};
        p[1] = (prong){z, (1 - z) * dr * cos(a), (1 - z) * dr * sin(a)};
        return 2;
    }
    /* top -> bqq: Dirichlet fractions, random triangle scaled to the mass
     * (m^2 ~ pt^2 sum_{i<j} z_i z_j dR_ij^2 for small angles). */
    double g[3], gs = 0, m = 173.0 + 5.0 * gauss(r);
    for (int i = 0; i < 3; i++)
        gs += g[i] = gamma_rand(r, 2.0);
    double cx = 0, cy = 0, pts[3][2];
    for (int i = 0; i < 3; i++) {
        p[i].z = g[i] / gs;
        pts[i][0] = gauss(r), pts[i][1] = gauss(r);
        cx += p[i].z * pts[i][0], cy += p[i].z * pts[i][1];
    }
    double m2 = 0;
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++) {
            double de = pts[i][0] - pts[j][0], dp = pts[i][1] - pts[j][1];
            m2 += p[i].z * p[j].z * (de * de + dp * dp);
        }
    double scale = m / (pt * sqrt(m2));
    for (int i = 0; i < 3; i++)
        p[i].eta = (pts[i][0] - cx) * scale, p[i].phi = (pts[i][1] - cy) * scale;
    return 3;
}

static void gen_jets(const options *o, gpuml_dataset_writer *w)
{
    static const char *pcols[] = {"deta", "dphi"};
    static const char *fcols[] = {"log_pt", "log_e", "log_pt_rel", "log_e_rel", "delta_r", "deta", "dphi"};
    CHECK(gpuml_dataset_writer_add_field(w, "points", GPUML_F32, 1, (int64_t[]){2}, pcols, 2));
    CHECK(gpuml_dataset_writer_add_field(w, "features", GPUML_F32, 1, (int64_t[]){NF}, fcols, NF));
    CHECK(gpuml_dataset_writer_add_field(w, "event/label", GPUML_I32, 0, NULL, NULL, 0));
    CHECK(gpuml_dataset_writer_add_field(w, "event/jet_pt", GPUML_F32, 0, NULL, NULL, 0));
    rng_t r;
    rng_seed(&r, o->seed);
    static float pts[MAXP * 2], feat[MAXP * NF];
    static double z[MAXP], eta[MAXP], phi[MAXP];
    for (long ev = 0; ev < o->events; ev++) {
        int32_t label = uni(&r) < o->signal;
        double ptj = uni_range(&r, 500, 1000), etaj = uni_range(&r, -2, 2);
        prong p[3];
        int np = make_prongs(&r, label, ptj, p);
        int n = uni_int(&r, o->min_particles, o->max_particles);
        if (n > MAXP)
            n = MAXP;
        int nsoft = (int)lround(0.15 * n), at = 0;
        double soft_frac = 0.05;
        for (int k = 0; k < np; k++) {
            /* Particles per prong ~ sqrt of its energy share, at least 2. */
            double share = 0;
            for (int j = 0; j < np; j++)
                share += sqrt(p[j].z);
            int m = k == np - 1 ? n - nsoft - at : (int)lround((n - nsoft) * sqrt(p[k].z) / share);
            if (m < 2)
                m = 2;
            if (at + m > n - nsoft - 2 * (np - 1 - k))
                m = n - nsoft - 2 * (np - 1 - k) - at;
            double g[MAXP], gs = 0;
            for (int i = 0; i < m; i++)
                gs += g[i] = gamma_rand(&r, 0.7);
            for (int i = 0; i < m; i++) {
                double zi = g[i] / gs; /* fraction within the prong */
                double sigma = fmin(0.2, 0.012 / sqrt(fmax(zi * m, 1e-3)));
                z[at + i] = (1 - soft_frac) * p[k].z * zi;
                eta[at + i] = p[k].eta + sigma * gauss(&r);
                phi[at + i] = p[k].phi + sigma * gauss(&r);
            }
            at += m;
        }
        double gs = 0, g[MAXP];
        for (int i = 0; i < nsoft; i++)
            gs += g[i] = gamma_rand(&r, 1.0);
        for (int i = 0; i < nsoft; i++) {
            double rr = 0.8 * sqrt(uni(&r)), a = uni_range(&r, 0, 6.283185307);
            z[at + i] = soft_frac * g[i] / gs;
            eta[at + i] = rr * cos(a), phi[at + i] = rr * sin(a);
        }
        /* Recentre on the pt-weighted axis, then the per-particle features. */
        double ce = 0, cp = 0, ptsum = 0, esum = 0;
        for (int i = 0; i < n; i++)
            ce += z[i] * eta[i], cp += z[i] * phi[i];
        for (int i = 0; i < n; i++) {
            eta[i] -= ce, phi[i] -= cp;
            ptsum += z[i] * ptj;
            esum += z[i] * ptj * cosh(etaj + eta[i]);
        }
        for (int i = 0; i < n; i++) {
            double pt = z[i] * ptj, e = pt * cosh(etaj + eta[i]);
            float *f = feat + NF * i;
            f[0] = (float)log(pt), f[1] = (float)log(e), f[2] = (float)log(pt / ptsum), f[3] = (float)log(e / esum);
            f[4] = (float)sqrt(eta[i] * eta[i] + phi[i] * phi[i]), f[5] = (float)eta[i], f[6] = (float)phi[i];
            pts[2 * i] = (float)eta[i], pts[2 * i + 1] = (float)phi[i];
        }
        float jet_pt = (float)ptsum;
        const void *data[4] = {pts, feat, &label, &jet_pt};
        CHECK(gpuml_dataset_writer_append(w, n, data));
    }
}

int main(int argc, char **argv)
{
    options o = parse(argc, argv);
    int hgcal = !strcmp(o.kind, "hgcal");
    gpuml_dataset_writer *w;
    CHECK(gpuml_dataset_writer_create(o.out, &w));
    writer_ = w;
    gpuml_h5_writer *f = gpuml_dataset_writer_file(w);
    char desc[256];
    snprintf(desc, sizeof desc, "gpuml gen_dataset %s, seed %llu", o.kind, (unsigned long long)o.seed);
    CHECK(gpuml_h5_writer_set_attr_string(f, "/", "generator", desc));
    CHECK(gpuml_h5_writer_set_attr_i64(f, "/", "seed", (int64_t)o.seed));
    if (hgcal)
        gen_hgcal(&o, w);
    else
        gen_jets(&o, w);
    writer_ = NULL; /* commit frees the writer, also when it fails */
    CHECK(gpuml_dataset_writer_commit(w));
    return 0;
}
