/* Per-step arena: bump allocation over chunks of context memory, O(1) reset.
 *
 * Two bump regions: device memory (from the context allocator) for tensor
 * data, and host memory for the tensor descriptors themselves, so that a
 * warm arena performs no system allocation at all. When a step outgrows the
 * chunks, new ones are added; the next reset merges them into one chunk of
 * the combined size, so the following steps use a single chunk again. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/arena.h"
#include "core/runtime.h"

#define META_ALIGN 16

typedef struct chunk {
    void *ptr;
    size_t size;
    struct chunk *next;
} chunk;

typedef struct region {
    chunk *head, *cur;
    size_t offset;   /* in cur */
    size_t used;     /* bytes handed out since reset (with padding) */
    size_t capacity; /* sum of chunk sizes */
    int nchunks;
} region;

struct gpuml_arena {
    gpuml_ctx *ctx;
    gpuml_allocator *alloc; /* device chunks (retained) */
    region dev;
    region meta;            /* host chunks from malloc */
};

static gpuml_status chunk_new(gpuml_arena *a, bool device, size_t size, chunk **out, const char *fn)
{
    chunk *c = malloc(sizeof *c);
    if (!c)
        return gpuml_fail(a->ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate arena bookkeeping");
    c->next = NULL;
    if (device) {
        c->size = size;
        gpuml_status st = gpuml_allocator_alloc(a->alloc, &c->size, &c->ptr, fn);
        if (st != GPUML_OK) {
            free(c);
            gpuml_ctx_adopt_error(a->ctx);
            return st;
        }
    } else {
        c->size = size;
        c->ptr = malloc(size);
        if (!c->ptr) {
            free(c);
            return gpuml_fail(a->ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate %zu bytes of arena metadata", size);
        }
    }
    *out = c;
    return GPUML_OK;
}

static void chunk_free(gpuml_arena *a, bool device, chunk *c)
{
    if (device)
        gpuml_allocator_free(a->alloc, c->ptr, c->size);
    else
        free(c->ptr);
    free(c);
}

static void region_free_all(gpuml_arena *a, bool device, region *r)
{
    chunk *c = r->head;
    while (c) {
        chunk *next = c->next;
        chunk_free(a, device, c);
        c = next;
    }
    memset(r, 0, sizeof *r);
}

static gpuml_status region_alloc(gpuml_arena *a, bool device, region *r, size_t nbytes, size_t align,
                                 void **out, const char *fn)
{
    if (nbytes > SIZE_MAX / 2)
        return gpuml_fail(a->ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "arena request of %zu bytes is too large", nbytes);
    for (;;) {
        if (r->cur) {
            size_t start = (r->offset + align - 1) / align * align;
            if (start + nbytes <= r->cur->size) {
                *out = (char *)r->cur->ptr + start;
                r->used += start + nbytes - r->offset;
                r->offset = start + nbytes;
                return GPUML_OK;
            }
            if (r->cur->next) { /* a chunk kept from an earlier step */
                r->used += r->cur->size - r->offset;
                r->cur = r->cur->next;
                r->offset = 0;
                continue;
            }
        }
        if (gpuml_ctx_alloc_should_fail(a->ctx, fn))
            return GPUML_ERR_OUT_OF_MEMORY;
        size_t want = r->capacity > nbytes + align ? r->capacity : nbytes + align;
        if (want < 64 * 1024)
            want = 64 * 1024;
        chunk *c;
        GPUML_TRY(chunk_new(a, device, want, &c, fn));
        if (r->cur) {
            r->used += r->cur->size - r->offset;
            /* Insert after cur; later chunks (if any) stay reachable. */
            c->next = r->cur->next;
            r->cur->next = c;
        } else {
            c->next = r->head;
            r->head = c;
        }
        r->cur = c;
        r->offset = 0;
        r->capacity += c->size;
        r->nchunks++;
    }
}

static void region_reset(gpuml_arena *a, bool device, region *r)
{
    if (r->nchunks > 1) {
        /* Merge into one chunk as big as the whole of the last step used.
         * The old chunks go back to the system first (their odd sizes would
         * only sit in the cache, resident, beside the new chunk); if the new
         * allocation fails the region starts empty and grows again. */
        size_t total = r->used > 0 ? r->used : r->capacity; /* used counts the tails skipped: enough */
        chunk *c = r->head;
        while (c) {
            chunk *next = c->next;
            if (device)
                gpuml_allocator_free_to_system(a->alloc, c->ptr, c->size);
            else
                free(c->ptr);
            free(c);
            c = next;
        }
        memset(r, 0, sizeof *r);
        if (chunk_new(a, device, total, &c, "gpuml_arena_reset") == GPUML_OK) {
            r->head = c;
            r->capacity = c->size;
            r->nchunks = 1;
        } else {
            gpuml_clear_error();
        }
    }
    r->cur = r->head;
    r->offset = 0;
    r->used = 0;
}

gpuml_status gpuml_arena_create(gpuml_ctx *ctx, size_t initial_bytes, gpuml_arena **out)
{
    static const char fn[] = "gpuml_arena_create";
    if (!ctx || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ctx ? "out" : "ctx");
    *out = NULL;
    if (gpuml_ctx_alloc_should_fail(ctx, fn))
        return GPUML_ERR_OUT_OF_MEMORY;
    gpuml_arena *a = calloc(1, sizeof *a);
    if (!a)
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the arena");
    a->ctx = ctx;
    a->alloc = ctx->alloc;
    gpuml_allocator_retain(a->alloc);
    if (initial_bytes > 0) {
        void *p;
        gpuml_status st = region_alloc(a, true, &a->dev, initial_bytes, GPUML_ALIGN, &p, fn);
        if (st != GPUML_OK) {
            gpuml_arena_destroy(a);
            return st;
        }
        a->dev.offset = 0;
        a->dev.used = 0;
    }
    *out = a;
    return GPUML_OK;
}

void gpuml_arena_destroy(gpuml_arena *a)
{
    if (!a)
        return;
    region_free_all(a, true, &a->dev);
    region_free_all(a, false, &a->meta);
    gpuml_allocator_release(a->alloc);
    free(a);
}

void gpuml_arena_reset(gpuml_arena *a)
{
    if (!a)
        return;
    region_reset(a, true, &a->dev);
    region_reset(a, false, &a->meta);
}

size_t gpuml_arena_used(const gpuml_arena *a) { return a ? a->dev.used : 0; }
size_t gpuml_arena_capacity(const gpuml_arena *a) { return a ? a->dev.capacity : 0; }

gpuml_ctx *gpuml_arena_ctx(const gpuml_arena *a) { return a->ctx; }

gpuml_status gpuml_arena_alloc(gpuml_arena *a, size_t nbytes, void **out, const char *fn)
{
    return region_alloc(a, true, &a->dev, nbytes ? nbytes : 1, GPUML_ALIGN, out, fn);
}

gpuml_status gpuml_arena_alloc_meta(gpuml_arena *a, size_t nbytes, void **out, const char *fn)
{
    return region_alloc(a, false, &a->meta, nbytes ? nbytes : 1, META_ALIGN, out, fn);
}
