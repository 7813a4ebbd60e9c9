/* Size-bucketed caching allocator (see internal.h). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
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

struct gpuml_allocator {
    atomic_int refcount;
    gpuml_mem_kind kind;
    int device;
    pthread_mutex_t lock;
    free_node *buckets[NUM_BUCKETS];
    free_node *spare_nodes; /* recycled list nodes */
    node_slab *slabs;
    gpuml_alloc_stats stats;
};

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
    a->stats.bytes_cached = 0;
}

void gpuml_allocator_release(gpuml_allocator *a)
{
    if (!a || atomic_fetch_sub(&a->refcount, 1) != 1)
        return;
    release_cached_locked(a);
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
    void *p = NULL;
    gpuml_status st = system_alloc(a, rounded, &p, fn);
    if (st == GPUML_ERR_OUT_OF_MEMORY && a->stats.bytes_cached > 0) {
        /* Cached blocks of other sizes may be what stands in the way. */
        release_cached_locked(a);
        st = system_alloc(a, rounded, &p, fn);
    }
    if (st != GPUML_OK) {
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
