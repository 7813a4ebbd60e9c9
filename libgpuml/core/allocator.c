/* Size-bucketed caching allocator (see internal.h), with the memory caps
 * of gpuml/context.h ("memory caps"): its own cap (the context's) and an
 * optional budget shared with other allocators (an engine's contexts).
 *
 * Lock order: a budget's lock is taken before an allocator's lock, never
 * while one is held; an allocator charges its budget with an atomic
 * compare-and-swap under its own lock, which takes no lock. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

#define SMALL_GRANULE 512u
#define SMALL_LIMIT 4096u
#define NUM_BUCKETS (8 + 4 * 52)
#define NODE_SLAB 64

typedef struct free_node {
    void *ptr;
    struct free_node *next;
} free_node;

typedef struct node_slab {
    struct node_slab *next;
    free_node nodes[NODE_SLAB];
} node_slab;

struct gpuml_mem_budget {
    atomic_int refcount;
    size_t cap;
    atomic_size_t reserved;   /* bytes the members hold from the system     */
    pthread_mutex_t lock;     /* guards the member list                     */
    gpuml_allocator **members;
    int n_members, max_members;
};

struct gpuml_allocator {
    atomic_int refcount;
    gpuml_mem_kind kind;
    int device;
    pthread_mutex_t lock;
    free_node *buckets[NUM_BUCKETS];
    free_node *spare_nodes; /* recycled list nodes */
    node_slab *slabs;
    gpuml_alloc_stats stats; /* stats.bytes_cap: the allocator's own cap (0: none) */
    gpuml_mem_budget *budget; /* shared cap, or NULL; set before first use */
};

/* ---- shared budgets ------------------------------------------------------ */
gpuml_status gpuml_mem_budget_create(size_t cap, gpuml_mem_budget **out)
{
    gpuml_mem_budget *b = calloc(1, sizeof *b);
    if (!b)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, "gpuml_mem_budget_create", "cannot allocate the budget");
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, "gpuml_mem_budget_create", "pthread_mutex_init failed");
    }
    atomic_init(&b->refcount, 1);
    atomic_init(&b->reserved, 0);
    b->cap = cap;
    *out = b;
    return GPUML_OK;
}

void gpuml_mem_budget_release(gpuml_mem_budget *b)
{
    if (!b || atomic_fetch_sub(&b->refcount, 1) != 1)
        return;
    pthread_mutex_destroy(&b->lock);
    free(b->members);
    free(b);
}

size_t gpuml_mem_budget_cap(const gpuml_mem_budget *b) { return b ? b->cap : 0; }
size_t gpuml_mem_budget_reserved(gpuml_mem_budget *b) { return b ? atomic_load(&b->reserved) : 0; }

/* Take n bytes of the budget if they fit under its cap. */
static bool budget_charge(gpuml_mem_budget *b, size_t n)
{
    size_t cur = atomic_load(&b->reserved);
    do {
        if (n > b->cap || cur > b->cap - n)
            return false;
    } while (!atomic_compare_exchange_weak(&b->reserved, &cur, cur + n));
    return true;
}

static void budget_uncharge(gpuml_mem_budget *b, size_t n)
{
    if (b)
        atomic_fetch_sub(&b->reserved, n);
}

static void release_cached_locked(gpuml_allocator *a);

/* Empty the caches of the budget's other members, one at a time (their
 * locks are taken under the budget's lock only; the caller holds none). */
static void budget_release_others(gpuml_mem_budget *b, gpuml_allocator *self)
{
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < b->n_members; i++) {
        gpuml_allocator *m = b->members[i];
        if (m == self)
            continue;
        pthread_mutex_lock(&m->lock);
        release_cached_locked(m);
        pthread_mutex_unlock(&m->lock);
    }
    pthread_mutex_unlock(&b->lock);
}

gpuml_status gpuml_allocator_join_budget(gpuml_allocator *a, gpuml_mem_budget *b)
{
    pthread_mutex_lock(&b->lock);
    if (b->n_members == b->max_members) {
        int n = b->max_members ? 2 * b->max_members : 8;
        gpuml_allocator **m = realloc(b->members, (size_t)n * sizeof *m);
        if (!m) {
            pthread_mutex_unlock(&b->lock);
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, "gpuml_allocator_join_budget",
                              "cannot grow the budget's member list");
        }
        b->members = m;
        b->max_members = n;
    }
    b->members[b->n_members++] = a;
    pthread_mutex_unlock(&b->lock);
    atomic_fetch_add(&b->refcount, 1);
    /* Blocks obtained before joining (none in gpuml's own use) count too;
     * they may exceed the cap: later allocations then fail until they go. */
    pthread_mutex_lock(&a->lock);
    a->budget = b;
    atomic_fetch_add(&b->reserved, a->stats.bytes_reserved);
    pthread_mutex_unlock(&a->lock);
    return GPUML_OK;
}

static void budget_leave(gpuml_allocator *a)
{
    gpuml_mem_budget *b = a->budget;
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < b->n_members; i++) {
        if (b->members[i] == a) {
            b->members[i] = b->members[--b->n_members];
            break;
        }
    }
    pthread_mutex_unlock(&b->lock);
}

size_t gpuml_allocator_round(size_t size)
{
    if (size <= SMALL_LIMIT)
        return (size + SMALL_GRANULE - 1) / SMALL_GRANULE * SMALL_GRANULE;
    /* size in (2^p, 2^(p+1)]: round up to a quarter of 2^p. */
    int p = 63 - __builtin_clzll((unsigned long long)(size - 1));
    size_t step = (size_t)1 << (p - 2);
    return (size + step - 1) / step * step;
}

static int bucket_index(size_t rounded)
{
    if (rounded <= SMALL_LIMIT)
        return (int)(rounded / SMALL_GRANULE) - 1;
    int p = 63 - __builtin_clzll((unsigned long long)(rounded - 1));
    size_t base = (size_t)1 << p;
    size_t step = base >> 2;
    int k = (int)((rounded - base) / step); /* 1..4 */
    int idx = 8 + (p - 12) * 4 + (k - 1);
    return idx < NUM_BUCKETS ? idx : -1;
}

static gpuml_status system_alloc(gpuml_allocator *a, size_t size, void **out, const char *fn)
{
    switch (a->kind) {
    case GPUML_MEM_HOST: {
        void *p = aligned_alloc(64, size);
        if (!p)
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn,
                              "cannot allocate %zu bytes of host memory", size);
        *out = p;
        return GPUML_OK;
    }
    case GPUML_MEM_CUDA:
        return gpuml_cuda_rt_malloc(a->device, size, out, fn);
    case GPUML_MEM_PINNED:
        return gpuml_cuda_rt_host_alloc(size, out, fn);
    }
    return gpuml_fail(NULL, GPUML_ERR_INTERNAL, fn, "unknown memory kind %d", (int)a->kind);
}

static void system_free(gpuml_allocator *a, void *p)
{
    switch (a->kind) {
    case GPUML_MEM_HOST: free(p); break;
    case GPUML_MEM_CUDA: gpuml_cuda_rt_free(a->device, p); break;
    case GPUML_MEM_PINNED: gpuml_cuda_rt_host_free(p); break;
    }
}

gpuml_status gpuml_allocator_create(gpuml_mem_kind kind, int device, gpuml_allocator **out)
{
    gpuml_allocator *a = calloc(1, sizeof *a);
    if (!a)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, "gpuml_allocator_create",
                          "cannot allocate the allocator");
    atomic_init(&a->refcount, 1);
    a->kind = kind;
    a->device = device;
    if (pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a);
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, "gpuml_allocator_create",
                          "pthread_mutex_init failed");
    }
    *out = a;
    return GPUML_OK;
}

void gpuml_allocator_retain(gpuml_allocator *a) { atomic_fetch_add(&a->refcount, 1); }

static void release_cached_locked(gpuml_allocator *a)
{
    for (int b = 0; b < NUM_BUCKETS; b++) {
        free_node *n = a->buckets[b];
        while (n) {
            free_node *next = n->next;
            system_free(a, n->ptr);
            n->next = a->spare_nodes;
            a->spare_nodes = n;
            n = next;
        }
        a->buckets[b] = NULL;
    }
    a->stats.bytes_reserved -= a->stats.bytes_cached;
    budget_uncharge(a->budget, a->stats.bytes_cached);
    a->stats.bytes_cached = 0;
}

void gpuml_allocator_release(gpuml_allocator *a)
{
    if (!a || atomic_fetch_sub(&a->refcount, 1) != 1)
        return;
    /* Out of the member list first: a member's cache may be emptied by
     * another member (budget_release_others) until it is gone from it. */
    budget_leave(a);
    release_cached_locked(a);
    budget_uncharge(a->budget, a->stats.bytes_reserved); /* 0 unless blocks leaked */
    gpuml_mem_budget_release(a->budget);
    node_slab *s = a->slabs;
    while (s) {
        node_slab *next = s->next;
        free(s);
        s = next;
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static free_node *take_node_locked(gpuml_allocator *a)
{
    if (!a->spare_nodes) {
        node_slab *s = malloc(sizeof *s);
        if (!s)
            return NULL;
        s->next = a->slabs;
        a->slabs = s;
        for (int i = 0; i < NODE_SLAB; i++) {
            s->nodes[i].next = a->spare_nodes;
            a->spare_nodes = &s->nodes[i];
        }
    }
    free_node *n = a->spare_nodes;
    a->spare_nodes = n->next;
    return n;
}

/* Whether `rounded` more bytes fit under the allocator's own cap and its
 * budget's; charges the budget when they do. *which names the cap that
 * refused ("context" or "engine"). */
static bool caps_admit_locked(gpuml_allocator *a, size_t rounded, const char **which)
{
    size_t cap = a->stats.bytes_cap;
    if (cap && (rounded > cap || a->stats.bytes_reserved > cap - rounded)) {
        *which = "context";
        return false;
    }
    if (a->budget && !budget_charge(a->budget, rounded)) {
        *which = "engine";
        return false;
    }
    return true;
}

static const char *kind_name(gpuml_mem_kind kind)
{
    return kind == GPUML_MEM_CUDA ? "device" : kind == GPUML_MEM_PINNED ? "pinned host" : "host";
}

gpuml_status gpuml_allocator_alloc(gpuml_allocator *a, size_t *size, void **out, const char *fn)
{
    size_t rounded = gpuml_allocator_round(*size ? *size : 1);
    int b = bucket_index(rounded);
    pthread_mutex_lock(&a->lock);
    a->stats.num_allocs++;
    if (b >= 0 && a->buckets[b]) {
        free_node *n = a->buckets[b];
        a->buckets[b] = n->next;
        void *p = n->ptr;
        n->next = a->spare_nodes;
        a->spare_nodes = n;
        a->stats.num_cache_hits++;
        a->stats.bytes_cached -= rounded;
        a->stats.bytes_in_use += rounded;
        if (a->stats.bytes_in_use > a->stats.bytes_peak)
            a->stats.bytes_peak = a->stats.bytes_in_use;
        pthread_mutex_unlock(&a->lock);
        *size = rounded;
        *out = p;
        return GPUML_OK;
    }
    /* A new block must fit under the caps with what is cached: the cache
     * is given back before the request is refused, first our own, then
     * (a shared budget) the other members'. */
    const char *which = NULL;
    bool admitted = caps_admit_locked(a, rounded, &which);
    if (!admitted && a->stats.bytes_cached > 0) {
        release_cached_locked(a);
        admitted = caps_admit_locked(a, rounded, &which);
    }
    if (!admitted && a->budget && which[0] == 'e') {
        pthread_mutex_unlock(&a->lock);
        budget_release_others(a->budget, a);
        pthread_mutex_lock(&a->lock);
        admitted = caps_admit_locked(a, rounded, &which);
    }
    if (!admitted) {
        size_t cap = which[0] == 'c' ? a->stats.bytes_cap : a->budget->cap;
        size_t held = which[0] == 'c' ? a->stats.bytes_reserved : gpuml_mem_budget_reserved(a->budget);
        gpuml_status st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn,
                                     "%s memory cap of %zu bytes (%s cap) reached: a request of %zu bytes "
                                     "(block of %zu) does not fit beside the %zu bytes held (this context: "
                                     "%zu in use, %zu cached, after releasing the cache)",
                                     kind_name(a->kind), cap, which, *size, rounded, held,
                                     a->stats.bytes_in_use, a->stats.bytes_cached);
        pthread_mutex_unlock(&a->lock);
        return st;
    }
    void *p = NULL;
    gpuml_status st = system_alloc(a, rounded, &p, fn);
    if (st == GPUML_ERR_OUT_OF_MEMORY && a->stats.bytes_cached > 0) {
        /* Cached blocks of other sizes may be what stands in the way. */
        release_cached_locked(a);
        st = system_alloc(a, rounded, &p, fn);
    }
    if (st == GPUML_ERR_OUT_OF_MEMORY && a->budget) {
        /* So may the caches of the contexts sharing our budget (an
         * engine's instances, all on one device). */
        pthread_mutex_unlock(&a->lock);
        budget_release_others(a->budget, a);
        pthread_mutex_lock(&a->lock);
        st = system_alloc(a, rounded, &p, fn);
    }
    if (st != GPUML_OK) {
        budget_uncharge(a->budget, rounded);
        if (st == GPUML_ERR_OUT_OF_MEMORY) {
            /* Restate the system's message with our side of it. */
            char sys[GPUML_MSG_MAX];
            snprintf(sys, sizeof sys, "%s", gpuml_last_error());
            const char *colon = strstr(sys, ": ");
            st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn,
                            "%s (request of %zu bytes, block of %zu; after releasing the cache this "
                            "context holds %zu bytes in use, %zu cached; cap %zu bytes, 0: none)",
                            colon ? colon + 2 : sys, *size, rounded, a->stats.bytes_in_use,
                            a->stats.bytes_cached, a->budget ? a->budget->cap : a->stats.bytes_cap);
        }
        pthread_mutex_unlock(&a->lock);
        return st;
    }
    a->stats.num_system_allocs++;
    a->stats.bytes_reserved += rounded;
    a->stats.bytes_in_use += rounded;
    if (a->stats.bytes_in_use > a->stats.bytes_peak)
        a->stats.bytes_peak = a->stats.bytes_in_use;
    pthread_mutex_unlock(&a->lock);
    *size = rounded;
    *out = p;
    return GPUML_OK;
}

void gpuml_allocator_free(gpuml_allocator *a, void *p, size_t size)
{
    if (!p)
        return;
    int b = bucket_index(size);
    pthread_mutex_lock(&a->lock);
    a->stats.bytes_in_use -= size;
    free_node *n = b >= 0 ? take_node_locked(a) : NULL;
    if (!n) {
        /* No bookkeeping node (or an absurd size): give the block back. */
        system_free(a, p);
        a->stats.bytes_reserved -= size;
        budget_uncharge(a->budget, size);
    } else {
        n->ptr = p;
        n->next = a->buckets[b];
        a->buckets[b] = n;
        a->stats.bytes_cached += size;
    }
    pthread_mutex_unlock(&a->lock);
}

void gpuml_allocator_free_to_system(gpuml_allocator *a, void *p, size_t size)
{
    if (!p)
        return;
    pthread_mutex_lock(&a->lock);
    a->stats.bytes_in_use -= size;
    system_free(a, p);
    a->stats.bytes_reserved -= size;
    budget_uncharge(a->budget, size);
    pthread_mutex_unlock(&a->lock);
}

void gpuml_allocator_stats(gpuml_allocator *a, gpuml_alloc_stats *out)
{
    pthread_mutex_lock(&a->lock);
    *out = a->stats;
    pthread_mutex_unlock(&a->lock);
}

void gpuml_allocator_reset_peak(gpuml_allocator *a)
{
    pthread_mutex_lock(&a->lock);
    a->stats.bytes_peak = a->stats.bytes_in_use;
    pthread_mutex_unlock(&a->lock);
}

void gpuml_allocator_release_cached(gpuml_allocator *a)
{
    pthread_mutex_lock(&a->lock);
    release_cached_locked(a);
    pthread_mutex_unlock(&a->lock);
}

size_t gpuml_allocator_cap(gpuml_allocator *a)
{
    pthread_mutex_lock(&a->lock);
    size_t cap = a->stats.bytes_cap;
    pthread_mutex_unlock(&a->lock);
    return cap;
}

gpuml_status gpuml_allocator_set_cap(gpuml_allocator *a, size_t cap, const char *fn)
{
    pthread_mutex_lock(&a->lock);
    if (cap && a->stats.bytes_in_use > cap) {
        size_t in_use = a->stats.bytes_in_use;
        pthread_mutex_unlock(&a->lock);
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn,
                          "cap %zu bytes is below the %zu bytes in use now; free tensors first", cap, in_use);
    }
    a->stats.bytes_cap = cap;
    if (cap && a->stats.bytes_reserved > cap)
        release_cached_locked(a);
    pthread_mutex_unlock(&a->lock);
    return GPUML_OK;
}
