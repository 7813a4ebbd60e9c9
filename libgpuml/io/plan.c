/* Epoch plans: seeded shuffle, row-balanced sharding, batching under the
 * row and event limits, and equal batch counts across ranks. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "io/plan.h"

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* splitmix64: small, and its whole stream is fixed by the 64-bit state. */
static uint64_t next_u64(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    return mix64(*s);
}

/* Uniform in [0, n) without modulo bias (rejection of the short tail). */
static uint64_t uniform_below(uint64_t *s, uint64_t n)
{
    uint64_t threshold = (0 - n) % n;
    uint64_t r;
    do
        r = next_u64(s);
    while (r < threshold);
    return r % n;
}

uint64_t io_plan_fingerprint(const int64_t *rs, int64_t nevents, const io_plan_cfg *cfg)
{
    uint64_t h = mix64(0x6770756D6C2D6C64ull ^ (uint64_t)nevents);
    for (int64_t i = 0; i <= nevents; i++)
        h = mix64(h ^ (uint64_t)rs[i]);
    const uint64_t parts[] = {cfg->seed, cfg->shuffle, (uint64_t)cfg->max_rows, (uint64_t)cfg->max_events,
                              (uint64_t)cfg->rank, (uint64_t)cfg->world};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        h = mix64(h ^ parts[i]);
    return h ? h : 1;
}

void io_plan_free(io_plan *p)
{
    free(p->offsets);
    free(p->events);
    p->offsets = p->events = NULL;
    p->nbatches = 0;
    p->epoch = -1;
}

/* Min-heap of ranks by (rows, events, rank): the next event goes to the top. */
typedef struct {
    int64_t rows, events;
    int rank;
} load;

static bool less(const load *a, const load *b)
{
    if (a->rows != b->rows)
        return a->rows < b->rows;
    if (a->events != b->events)
        return a->events < b->events;
    return a->rank < b->rank;
}

static void sift_down(load *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && less(&h[l], &h[m]))
            m = l;
        if (r < n && less(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        load t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

gpuml_status io_plan_build(const int64_t *rs, int64_t nevents, const io_plan_cfg *cfg, int64_t epoch, io_plan *out,
                           const char *fn)
{
    int w = cfg->world;
    int64_t *perm = malloc((size_t)(nevents ? nevents : 1) * sizeof *perm);
    int *owner = malloc((size_t)(nevents ? nevents : 1) * sizeof *owner);
    load *heap = malloc((size_t)w * sizeof *heap);
    int64_t *count = calloc((size_t)w, sizeof *count), *cur_rows = calloc((size_t)w, sizeof *cur_rows),
            *cur_ev = calloc((size_t)w, sizeof *cur_ev);
    io_plan p = {epoch, 0, NULL, NULL};
    gpuml_status st = GPUML_OK;
    if (!perm || !owner || !heap || !count || !cur_rows || !cur_ev) {
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory planning epoch %lld", (long long)epoch);
        goto out;
    }

    for (int64_t i = 0; i < nevents; i++)
        perm[i] = i;
    if (cfg->shuffle) {
        uint64_t s = mix64(cfg->seed ^ 0x5EED5EED5EED5EEDull) ^ mix64((uint64_t)epoch + 0x0E90C4ull);
        for (int64_t i = nevents - 1; i > 0; i--) {
            int64_t j = (int64_t)uniform_below(&s, (uint64_t)i + 1);
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }

    /* Shards: each event to the least-loaded rank. */
    for (int r = 0; r < w; r++)
        heap[r] = (load){0, 0, r};
    for (int64_t i = 0; i < nevents; i++) {
        owner[i] = heap[0].rank;
        heap[0].rows += rs[perm[i] + 1] - rs[perm[i]];
        heap[0].events++;
        sift_down(heap, w, 0);
    }

    /* Batches of every rank (counts), and of ours (contents). */
    int64_t mine = 0;
    for (int64_t i = 0; i < nevents; i++)
        mine += owner[i] == cfg->rank;
    int64_t maxb = mine + 1;
    int64_t *bounds = malloc((size_t)(maxb + 1) * sizeof *bounds); /* batch starts in `ours`, then the end */
    int64_t *ours = malloc((size_t)(mine ? mine : 1) * sizeof *ours);
    if (!bounds || !ours) {
        free(bounds);
        free(ours);
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory planning epoch %lld", (long long)epoch);
        goto out;
    }
    int64_t nb = 0, k = 0;
    for (int64_t i = 0; i < nevents; i++) {
        int r = owner[i];
        int64_t n = rs[perm[i] + 1] - rs[perm[i]];
        if (cur_ev[r] > 0 && (cur_rows[r] + n > cfg->max_rows || cur_ev[r] == cfg->max_events)) {
            count[r]++;
            cur_rows[r] = cur_ev[r] = 0;
        }
        if (r == cfg->rank) {
            if (cur_ev[r] == 0)
                bounds[nb++] = k;
            ours[k++] = perm[i];
        }
        cur_rows[r] += n;
        cur_ev[r]++;
    }
    int64_t target = 0;
    for (int r = 0; r < w; r++) {
        count[r] += cur_ev[r] > 0;
        if (count[r] > target)
            target = count[r];
    }

    /* Equalise: split our batches with the most events, then pad. */
    int64_t extra = target - nb;
    p.offsets = malloc((size_t)(target + 1) * sizeof *p.offsets);
    p.events = malloc((size_t)(mine + extra + 1) * sizeof *p.events);
    if (!p.offsets || !p.events) {
        free(bounds);
        free(ours);
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory planning epoch %lld", (long long)epoch);
        goto out;
    }
    memcpy(p.offsets, bounds, (size_t)nb * sizeof *bounds);
    free(bounds);
    p.offsets[nb] = mine;
    memcpy(p.events, ours, (size_t)mine * sizeof *ours);
    free(ours);
    while (nb < target) {
        int64_t best = -1, best_n = 1;
        for (int64_t b = 0; b < nb; b++)
            if (p.offsets[b + 1] - p.offsets[b] > best_n)
                best = b, best_n = p.offsets[b + 1] - p.offsets[b];
        if (best < 0)
            break;
        memmove(&p.offsets[best + 2], &p.offsets[best + 1], (size_t)(nb - best) * sizeof *p.offsets);
        p.offsets[best + 1] = p.offsets[best] + best_n / 2;
        nb++;
    }
    for (int64_t j = 0; nb < target && mine > 0; j++) {
        /* Only when our shard has fewer events than the others have
         * batches: repeat our events, one per batch. mine >= 1 because
         * nevents >= world and the first `world` events go to distinct
         * ranks. */
        p.events[mine + j] = p.events[j % mine];
        p.offsets[++nb] = mine + j + 1;
    }
    for (int64_t b = 0; b < nb; b++)
        qsort(p.events + p.offsets[b], (size_t)(p.offsets[b + 1] - p.offsets[b]), sizeof(int64_t), cmp_i64);
    p.nbatches = nb;
out:
    free(perm);
    free(owner);
    free(heap);
    free(count);
    free(cur_rows);
    free(cur_ev);
    if (st != GPUML_OK) {
        io_plan_free(&p);
        return st;
    }
    *out = p;
    return GPUML_OK;
}
