/* tests/test_loader.c - the data loader: every event exactly once per
 * epoch, deterministic shuffles, batch limits, shards, save/restore,
 * read errors surfacing from the prefetch thread, destroy at any point.
 * Each behaviour is checked with the prefetch thread and without, reading
 * from the file and from memory. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "io_util.h"

static gpuml_ctx *ctx;
static const char *ds_path;
static int64_t NEV;
static int64_t *RS;

#define MAX_ROWS 200
#define MAX_EVENTS 16

/* Events of 0..60 rows, a few of 300 (more than MAX_ROWS). Row r of event
 * e holds x = (e, r); event/id = e. */
static void write_dataset(const char *path, int64_t nev, uint64_t seed, int big_every)
{
    gpuml_dataset_writer *w;
    OK(gpuml_dataset_writer_create(path, &w));
    OK(gpuml_dataset_writer_add_field(w, "x", GPUML_F32, 1, (int64_t[]){2}, (const char *[]){"event", "row"}, 2));
    OK(gpuml_dataset_writer_add_field(w, "event/id", GPUML_I64, 0, NULL, NULL, 0));
    uint64_t rng = seed;
    float buf[2 * 400];
    for (int64_t e = 0; e < nev; e++) {
        int64_t n = (big_every && e % big_every == big_every - 1) ? 300 : (int64_t)(h_rand_u64(&rng) % 61);
        for (int64_t r = 0; r < n; r++) {
            buf[2 * r] = (float)e;
            buf[2 * r + 1] = (float)r;
        }
        OK(gpuml_dataset_writer_append(w, n, (const void *[]){buf, &e}));
    }
    OK(gpuml_dataset_writer_commit(w));
}

static gpuml_loader *make_loader(const char *path, uint64_t seed, int rank, int world, int prefetch, int in_memory)
{
    gpuml_loader_config c;
    gpuml_loader_config_init_defaults(&c);
    const char *fields[] = {"x", "event/id"};
    c.path = path;
    c.fields = fields;
    c.num_fields = 2;
    c.max_rows = MAX_ROWS;
    c.max_events = MAX_EVENTS;
    c.seed = seed;
    c.rank = rank;
    c.world_size = world;
    c.prefetch = prefetch;
    c.in_memory = in_memory;
    gpuml_loader *l = NULL;
    OK(gpuml_loader_create(ctx, &c, &l));
    return l;
}

/* Check one batch against the file's layout; returns its event count and
 * appends its ids to ids[*n]. */
static void check_batch(const gpuml_batch *b, const int64_t *rs, int64_t *ids, int64_t *n)
{
    int64_t k = gpuml_batch_num_events(b), rows = gpuml_batch_num_rows(b);
    const int64_t *ev = gpuml_batch_event_ids(b);
    assert_true(k >= 1 && k <= MAX_EVENTS);
    assert_true(rows <= MAX_ROWS || k == 1); /* only a lone event may exceed the limit */
    const gpuml_tensor *t_rs = gpuml_batch_row_splits(b), *x = gpuml_batch_field(b, 0), *id = gpuml_batch_field(b, 1);
    assert_null(gpuml_batch_field(b, 2));
    assert_int_equal(gpuml_tensor_dim(t_rs, 0), k + 1);
    assert_int_equal(gpuml_tensor_dim(x, 0), rows);
    assert_int_equal(gpuml_tensor_dim(x, 1), 2);
    assert_int_equal(gpuml_tensor_dim(id, 0), k);
    const int64_t *brs = gpuml_tensor_data(t_rs), *bid = gpuml_tensor_data(id);
    const float *bx = gpuml_tensor_data(x);
    assert_int_equal(brs[0], 0);
    for (int64_t i = 0; i < k; i++) {
        if (i > 0)
            assert_true(ev[i] > ev[i - 1]); /* file order within a batch */
        assert_int_equal(bid[i], ev[i]);
        int64_t n_e = rs[ev[i] + 1] - rs[ev[i]];
        assert_int_equal(brs[i + 1] - brs[i], n_e);
        for (int64_t r = 0; r < n_e; r++) {
            assert_true(bx[2 * (brs[i] + r)] == (float)ev[i]);
            assert_true(bx[2 * (brs[i] + r) + 1] == (float)r);
        }
        ids[(*n)++] = ev[i];
    }
    assert_int_equal(brs[k], rows);
}

/* The loader on a CUDA context (a GPU, or the emulated CUDA build): batches
 * land on the device, copied by the loader's thread and ordered with CUDA
 * events (io/devsync.c); read back through the context, each must hold
 * what the CPU loader's batch of the same seed holds. */
static void test_cuda_batches(void **state)
{
    (void)state;
    if (gpuml_cuda_device_count() == 0)
        skip();
    gpuml_ctx *cctx = h_ctx(GPUML_DEVICE_CUDA, 2);
    for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
        gpuml_loader *lc = make_loader(ds_path, 21, 0, 1, prefetch, 0);
        gpuml_ctx *saved = ctx;
        ctx = cctx;
        gpuml_loader *lg = make_loader(ds_path, 21, 0, 1, prefetch, 0);
        ctx = saved;
        int64_t batches = 0;
        for (;;) {
            gpuml_batch *bc, *bg;
            OK(gpuml_loader_next(lc, &bc));
            OK(gpuml_loader_next(lg, &bg));
            assert_true((bc == NULL) == (bg == NULL));
            if (!bc)
                break;
            assert_int_equal(gpuml_batch_num_events(bg), gpuml_batch_num_events(bc));
            assert_memory_equal(gpuml_batch_event_ids(bg), gpuml_batch_event_ids(bc),
                                (size_t)gpuml_batch_num_events(bc) * sizeof(int64_t));
            const gpuml_tensor *tc[3] = {gpuml_batch_row_splits(bc), gpuml_batch_field(bc, 0), gpuml_batch_field(bc, 1)};
            const gpuml_tensor *tg[3] = {gpuml_batch_row_splits(bg), gpuml_batch_field(bg, 0), gpuml_batch_field(bg, 1)};
            for (int i = 0; i < 3; i++) {
                assert_int_equal(gpuml_tensor_device(tg[i]).type, GPUML_DEVICE_CUDA);
                assert_int_equal(gpuml_tensor_nbytes(tg[i]), gpuml_tensor_nbytes(tc[i]));
                void *h = h_read(cctx, tg[i]);
                assert_non_null(h);
                assert_memory_equal(h, gpuml_tensor_data(tc[i]), gpuml_tensor_nbytes(tc[i]));
                free(h);
            }
            gpuml_batch_destroy(bc);
            gpuml_batch_destroy(bg);
            batches++;
        }
        assert_true(batches > 1);
        gpuml_loader_destroy(lc);
        gpuml_loader_destroy(lg);
    }
    gpuml_ctx_destroy(cctx);
}

/* Run one whole epoch: returns the ids in delivery order (caller frees),
 * *nb the number of batches. */
static int64_t *run_epoch(gpuml_loader *l, int64_t expect_epoch, int64_t *count, int64_t *nb, int64_t *rows_total)
{
    int64_t *ids = malloc((size_t)(4 * NEV + 16) * sizeof *ids), n = 0, batches = 0, rows = 0;
    gpuml_batch *b;
    int64_t want_nb;
    OK(gpuml_loader_num_batches(l, expect_epoch, &want_nb));
    while (1) {
        OK(gpuml_loader_next(l, &b));
        if (!b)
            break;
        assert_int_equal(gpuml_batch_epoch(b), expect_epoch);
        assert_int_equal(gpuml_batch_index(b), batches);
        check_batch(b, RS, ids, &n);
        rows += gpuml_batch_num_rows(b);
        batches++;
        gpuml_batch_destroy(b);
    }
    assert_int_equal(batches, want_nb);
    gpuml_loader_position pos;
    OK(gpuml_loader_get_position(l, &pos));
    assert_int_equal(pos.epoch, expect_epoch + 1);
    assert_int_equal(pos.batch, 0);
    *count = n;
    if (nb)
        *nb = batches;
    if (rows_total)
        *rows_total = rows;
    return ids;
}

static void assert_permutation(const int64_t *ids, int64_t n)
{
    assert_int_equal(n, NEV);
    char *seen = calloc((size_t)NEV, 1);
    for (int64_t i = 0; i < n; i++) {
        assert_true(ids[i] >= 0 && ids[i] < NEV);
        assert_false(seen[ids[i]]);
        seen[ids[i]] = 1;
    }
    free(seen);
}

static void test_epochs(void **state)
{
    (void)state;
    int64_t *ref0 = NULL, *ref1 = NULL, n;
    const int modes[][2] = {{0, 0}, {0, 1}, {2, 0}, {2, 1}, {7, 0}};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        gpuml_loader *l = make_loader(ds_path, 11, 0, 1, modes[m][0], modes[m][1]);
        int64_t *e0 = run_epoch(l, 0, &n, NULL, NULL);
        assert_permutation(e0, n);
        int64_t *e1 = run_epoch(l, 1, &n, NULL, NULL);
        assert_permutation(e1, n);
        assert_true(memcmp(e0, e1, (size_t)NEV * sizeof *e0) != 0); /* another epoch, another order */
        if (!ref0) {
            ref0 = e0, ref1 = e1;
        } else {
            /* Same (seed, epoch): the same order, whatever the mode. */
            assert_memory_equal(e0, ref0, (size_t)NEV * sizeof *e0);
            assert_memory_equal(e1, ref1, (size_t)NEV * sizeof *e1);
            free(e0);
            free(e1);
        }
        gpuml_loader_destroy(l);
    }
    /* Another seed: another order; no shuffle: file order. */
    gpuml_loader *l = make_loader(ds_path, 12, 0, 1, 2, -1);
    int64_t *o = run_epoch(l, 0, &n, NULL, NULL);
    assert_true(memcmp(o, ref0, (size_t)NEV * sizeof *o) != 0);
    free(o);
    gpuml_loader_destroy(l);

    gpuml_loader_config c;
    gpuml_loader_config_init_defaults(&c);
    c.path = ds_path;
    c.shuffle = 0;
    c.max_rows = MAX_ROWS;
    c.max_events = MAX_EVENTS;
    OK(gpuml_loader_create(ctx, &c, &l));
    gpuml_batch *b;
    int64_t next = 0, nb = 0;
    while (gpuml_loader_next(l, &b) == GPUML_OK && b) {
        const int64_t *ev = gpuml_batch_event_ids(b);
        for (int64_t i = 0; i < gpuml_batch_num_events(b); i++)
            assert_int_equal(ev[i], next++);
        assert_null(gpuml_batch_field(b, 0)); /* no fields asked for: row_splits only */
        nb++;
        gpuml_batch_destroy(b);
    }
    assert_int_equal(next, NEV);
    /* Sequential greedy packing is what a no-shuffle single rank gets. */
    int64_t want = 0, rows = 0, evs = 0;
    for (int64_t e = 0; e < NEV; e++) {
        int64_t ne = RS[e + 1] - RS[e];
        if (evs > 0 && (rows + ne > MAX_ROWS || evs == MAX_EVENTS))
            want++, rows = evs = 0;
        rows += ne, evs++;
    }
    assert_int_equal(nb, want + 1);
    gpuml_loader_destroy(l);
    free(ref0);
    free(ref1);
}

static void test_shards(void **state)
{
    (void)state;
    enum { W = 3 };
    int64_t biggest = 0;
    for (int64_t e = 0; e < NEV; e++)
        if (RS[e + 1] - RS[e] > biggest)
            biggest = RS[e + 1] - RS[e];
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        char *owner = calloc((size_t)NEV, 1);
        int64_t nb[W], rows[W];
        for (int r = 0; r < W; r++) {
            gpuml_loader *l = make_loader(ds_path, 5, r, W, r == 1 ? 0 : 3, r == 2);
            gpuml_loader_position pos = {epoch, 0, 0};
            OK(gpuml_loader_set_position(l, &pos));
            int64_t n;
            int64_t *ids = run_epoch(l, epoch, &n, &nb[r], &rows[r]);
            for (int64_t i = 0; i < n; i++) {
                /* Disjoint, and no repeats: with events to spare, ranks
                 * equalise batch counts by splitting batches. */
                assert_true(owner[ids[i]] == 0);
                owner[ids[i]] = (char)(r + 1);
            }
            free(ids);
            gpuml_loader_destroy(l);
        }
        for (int64_t e = 0; e < NEV; e++)
            assert_true(owner[e] != 0); /* covering */
        for (int r = 1; r < W; r++) {
            assert_int_equal(nb[r], nb[0]); /* same number of batches everywhere */
            int64_t d = rows[r] > rows[0] ? rows[r] - rows[0] : rows[0] - rows[r];
            assert_true(d <= biggest); /* balanced by rows */
        }
        free(owner);
    }
}

/* One huge event and a few tiny ones: the rank holding the huge one has a
 * single batch and no event to split off, so it repeats its event. */
static void test_shard_padding(void **state)
{
    (void)state;
    const char *path = io_path("pad.h5");
    gpuml_dataset_writer *w;
    OK(gpuml_dataset_writer_create(path, &w));
    OK(gpuml_dataset_writer_add_field(w, "event/id", GPUML_I64, 0, NULL, NULL, 0));
    const int64_t sizes[5] = {100, 1, 1, 1, 1};
    for (int64_t e = 0; e < 5; e++)
        OK(gpuml_dataset_writer_append(w, sizes[e], (const void *[]){&e}));
    OK(gpuml_dataset_writer_commit(w));
    gpuml_loader_config c;
    gpuml_loader_config_init_defaults(&c);
    c.path = path;
    c.shuffle = 0;
    c.max_rows = 10;
    c.max_events = 1;
    c.world_size = 2;
    int64_t seen[2][8], nseen[2] = {0, 0};
    for (int r = 0; r < 2; r++) {
        c.rank = r;
        gpuml_loader *l;
        OK(gpuml_loader_create(ctx, &c, &l));
        int64_t nb;
        OK(gpuml_loader_num_batches(l, 0, &nb));
        assert_int_equal(nb, 4);
        gpuml_batch *b;
        while (gpuml_loader_next(l, &b) == GPUML_OK && b) {
            assert_int_equal(gpuml_batch_num_events(b), 1);
            seen[r][nseen[r]++] = gpuml_batch_event_ids(b)[0];
            gpuml_batch_destroy(b);
        }
        gpuml_loader_destroy(l);
    }
    assert_int_equal(nseen[0], 4);
    assert_int_equal(nseen[1], 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seen[0][i], 0);     /* the huge event, repeated */
        assert_int_equal(seen[1][i], i + 1); /* the small ones, once each */
    }
    /* More ranks than events. */
    c.world_size = 6;
    c.rank = 0;
    gpuml_loader *l = (gpuml_loader *)1;
    expect_st(gpuml_loader_create(ctx, &c, &l), GPUML_ERR_INVALID_ARGUMENT, "fewer than the 6 ranks", NULL);
    assert_null(l);
}

/* A fingerprint of everything a batch hands out. */
static uint64_t batch_hash(const gpuml_batch *b)
{
    uint64_t h = 1469598103934665603ull;
    const gpuml_tensor *ts[3] = {gpuml_batch_row_splits(b), gpuml_batch_field(b, 0), gpuml_batch_field(b, 1)};
    for (int t = 0; t < 3; t++) {
        const unsigned char *p = gpuml_tensor_data(ts[t]);
        for (size_t i = 0; i < gpuml_tensor_nbytes(ts[t]); i++)
            h = (h ^ p[i]) * 1099511628211ull;
    }
    return h ^ (uint64_t)gpuml_batch_epoch(b) * 31 ^ (uint64_t)gpuml_batch_index(b);
}

/* The next n items (0 for an end-of-epoch marker). */
static void record(gpuml_loader *l, uint64_t *out, int n)
{
    for (int i = 0; i < n; i++) {
        gpuml_batch *b;
        OK(gpuml_loader_next(l, &b));
        out[i] = b ? batch_hash(b) : 0;
        gpuml_batch_destroy(b);
    }
}

static void test_save_restore(void **state)
{
    (void)state;
    int64_t nb0;
    gpuml_loader *a = make_loader(ds_path, 3, 1, 2, 2, 0);
    OK(gpuml_loader_num_batches(a, 0, &nb0));
    enum { N = 40 };
    uint64_t first[N], again[N], other[N];
    /* Save in the middle of epoch 0; the recording crosses into epoch 1. */
    int skip = (int)nb0 - 5;
    uint64_t *tmp = malloc((size_t)nb0 * sizeof *tmp);
    record(a, tmp, skip);
    free(tmp);
    gpuml_loader_position pos;
    OK(gpuml_loader_get_position(a, &pos));
    assert_int_equal(pos.epoch, 0);
    assert_int_equal(pos.batch, skip);
    record(a, first, N);
    int markers = 0;
    for (int i = 0; i < N; i++)
        markers += first[i] == 0;
    assert_int_equal(markers, 1);

    /* A fresh loader (other prefetch mode and storage) restored there. */
    gpuml_loader *b = make_loader(ds_path, 3, 1, 2, 0, 1);
    OK(gpuml_loader_set_position(b, &pos));
    record(b, again, N);
    assert_memory_equal(first, again, sizeof first);
    /* The first loader rewound. */
    OK(gpuml_loader_set_position(a, &pos));
    record(a, other, N);
    assert_memory_equal(first, other, sizeof first);

    /* At the end-of-epoch marker. */
    gpuml_loader_position end = {0, nb0, pos.fingerprint};
    OK(gpuml_loader_set_position(b, &end));
    gpuml_batch *bt = (gpuml_batch *)1;
    OK(gpuml_loader_next(b, &bt));
    assert_null(bt);

    /* Refused: another plan, a batch past the end, a negative epoch. */
    gpuml_loader *c = make_loader(ds_path, 4, 1, 2, 2, 0);
    expect_st(gpuml_loader_set_position(c, &pos), GPUML_ERR_STATE, "another plan", NULL);
    gpuml_loader_position bad = {0, nb0 + 1, 0};
    expect_st(gpuml_loader_set_position(a, &bad), GPUML_ERR_INVALID_ARGUMENT, "is not in", NULL);
    bad = (gpuml_loader_position){-1, 0, 0};
    expect_st(gpuml_loader_set_position(a, &bad), GPUML_ERR_INVALID_ARGUMENT, "negative", NULL);
    /* ... and the refusals left the loader where it was. */
    gpuml_loader_position now;
    OK(gpuml_loader_get_position(a, &now));
    assert_int_equal(now.epoch, 1);
    gpuml_loader_destroy(a);
    gpuml_loader_destroy(b);
    gpuml_loader_destroy(c);
}

static void test_injected_error(void **state)
{
    (void)state;
    for (int prefetch = 0; prefetch <= 3; prefetch += 3) {
        gpuml_loader *l = make_loader(ds_path, 9, 0, 1, prefetch, 0);
        uint64_t good[4];
        record(l, good, 4);
        gpuml_loader_position pos = {0, 0, 0};
        OK(gpuml_loader_set_position(l, &pos));
        gpuml_loader_fail_read_after(l, 3);
        uint64_t h[2];
        record(l, h, 2);
        assert_memory_equal(h, good, sizeof h);
        gpuml_batch *b = (gpuml_batch *)1;
        expect_st(gpuml_loader_next(l, &b), GPUML_ERR_IO, "injected", NULL);
        assert_null(b);
        assert_non_null(strstr(gpuml_last_error(), "batch 2 of epoch 0"));
        expect_st(gpuml_loader_next(l, &b), GPUML_ERR_IO, "injected", NULL); /* sticky */
        assert_non_null(strstr(gpuml_ctx_last_error(ctx), "injected"));
        gpuml_loader_position now;
        OK(gpuml_loader_get_position(l, &now));
        assert_int_equal(now.batch, 2);
        OK(gpuml_loader_set_position(l, &now)); /* clears it */
        record(l, h, 2);
        assert_memory_equal(h, good + 2, sizeof h);
        gpuml_loader_destroy(l);
    }
}

/* Data damaged after the loader opened the file: the checksum catches it
 * when the batch is read. */
static void test_damaged_after_open(void **state)
{
    (void)state;
    const char *path = io_path("damaged.h5");
    write_dataset(path, 300, 77, 0);
    gpuml_loader *l = make_loader(path, 1, 0, 1, 0, 0);
    /* Row 1 of the first event with two rows is (e, 1): find its bytes. */
    gpuml_dataset *ds;
    OK(gpuml_dataset_open(path, &ds));
    const int64_t *rs = gpuml_dataset_row_splits(ds);
    int64_t e = 0;
    while (rs[e + 1] - rs[e] < 2)
        e++;
    gpuml_dataset_close(ds);
    float needle[2] = {(float)e, 1.0f};
    long at = io_find_bytes(path, needle, sizeof needle);
    assert_true(at > 0);
    unsigned char junk[8] = {0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef};
    io_poke(path, at, junk, sizeof junk);
    gpuml_batch *b = NULL;
    gpuml_status st = GPUML_OK;
    io_stderr_begin();
    for (int i = 0; i < 1000 && st == GPUML_OK; i++) { /* the first read of that chunk fails */
        st = gpuml_loader_next(l, &b);
        gpuml_batch_destroy(b);
    }
    long printed = io_stderr_end();
    expect_st(st, GPUML_ERR_FORMAT, "Fletcher32", NULL);
    assert_non_null(strstr(gpuml_last_error(), "damaged.h5"));
    assert_int_equal(printed, 0);
    gpuml_loader_destroy(l);

    /* The same through the prefetch thread, from a fresh copy each time. */
    write_dataset(path, 300, 77, 0);
    l = make_loader(path, 1, 0, 1, 4, 0);
    io_poke(path, at, junk, sizeof junk); /* may be read before or after: both are fine */
    for (int i = 0; i < 100; i++) {
        st = gpuml_loader_next(l, &b);
        gpuml_batch_destroy(b);
        if (st != GPUML_OK)
            break;
    }
    gpuml_loader_destroy(l);
    assert_int_equal(io_h5_open_ids(), 0);
}

/* A file cut short while the loader streams from it: HDF5 would read the
 * missing part as zeros (which pass Fletcher32), so gpuml checks the size. */
static void test_truncated_after_open(void **state)
{
    (void)state;
    const char *path = io_path("cut.h5");
    int64_t ids[MAX_EVENTS * 8];
    for (int prefetch = 0; prefetch <= 3; prefetch += 3) {
        write_dataset(path, 300, 5, 0);
        gpuml_dataset *ds;
        OK(gpuml_dataset_open(path, &ds));
        gpuml_loader *l = make_loader(path, 1, 0, 1, prefetch, 0);
        assert_int_equal(truncate(path, io_file_size(path) / 2), 0);
        gpuml_batch *b = NULL;
        gpuml_status st = GPUML_OK;
        int n = 0;
        for (; n < 1000 && st == GPUML_OK; n++) {
            st = gpuml_loader_next(l, &b);
            int64_t k = 0;
            if (b) /* read before the cut: intact, not zeros */
                check_batch(b, gpuml_dataset_row_splits(ds), ids, &k);
            gpuml_batch_destroy(b);
        }
        expect_st(st, GPUML_ERR_IO, "cut short", NULL);
        assert_true(n <= prefetch + 2);
        gpuml_loader_destroy(l);
        gpuml_tensor *t = NULL;
        /* The dataset reader opened before the cut notices too. */
        expect_st(gpuml_dataset_read(ds, ctx, 0, 300, 1, (const char *[]){"x"}, &t, (gpuml_tensor *[1]){0}),
                  GPUML_ERR_IO, "cut short", NULL);
        gpuml_dataset_close(ds);
    }
}

static void test_destroy_anytime(void **state)
{
    (void)state;
    uint64_t rng = 5;
    for (int i = 0; i < 40; i++) {
        gpuml_loader *l = make_loader(ds_path, (uint64_t)i, 0, 1, 1 + i % 8, i % 3 == 0);
        int steps = (int)(h_rand_u64(&rng) % 6);
        gpuml_batch *held = NULL;
        for (int s = 0; s < steps; s++) {
            gpuml_batch *b;
            OK(gpuml_loader_next(l, &b));
            gpuml_batch_destroy(held);
            held = b;
        }
        if (i % 2) {
            struct timespec ts = {0, (long)(h_rand_u64(&rng) % 2000000)};
            nanosleep(&ts, NULL);
        }
        gpuml_loader_destroy(l);  /* thread mid-read, queue full, or idle */
        gpuml_batch_destroy(held); /* a batch may outlive its loader */
    }
    gpuml_loader_destroy(NULL);
    gpuml_batch_destroy(NULL);
    assert_int_equal(io_h5_open_ids(), 0);
}

static void test_config_errors(void **state)
{
    (void)state;
    gpuml_loader_config c;
    gpuml_loader_config_init_defaults(&c);
    gpuml_loader *l = NULL;
    expect_st(gpuml_loader_create(ctx, &c, &l), GPUML_ERR_INVALID_ARGUMENT, "cfg->path", NULL);
    c.path = ds_path;
    c.max_rows = 0;
    expect_st(gpuml_loader_create(ctx, &c, &l), GPUML_ERR_INVALID_ARGUMENT, "max_rows", NULL);
    c.max_rows = 10;
    c.rank = 2;
    c.world_size = 2;
    expect_st(gpuml_loader_create(ctx, &c, &l), GPUML_ERR_INVALID_ARGUMENT, "rank", NULL);
    c.rank = 0;
    c.prefetch = 65;
    expect_st(gpuml_loader_create(ctx, &c, &l), GPUML_ERR_INVALID_ARGUMENT, "prefetch", NULL);
    c.prefetch = 2;
    const char *bad[] = {"x", "y"};
    c.fields = bad;
    c.num_fields = 2;
    expect_st(gpuml_loader_create(ctx, &c, &l), GPUML_ERR_NOT_FOUND, "no field 'y'", NULL);
    c.num_fields = 1;
    c.path = io_path("nope.h5");
    expect_st(gpuml_loader_create(ctx, &c, &l), GPUML_ERR_IO, "nope.h5", NULL);
    assert_non_null(strstr(gpuml_ctx_last_error(ctx), "nope.h5"));
    assert_null(l);
    expect_st(gpuml_loader_create(NULL, &c, &l), GPUML_ERR_INVALID_ARGUMENT, "'ctx'", NULL);
    expect_st(gpuml_loader_next(NULL, NULL), GPUML_ERR_INVALID_ARGUMENT, NULL, NULL);
    assert_int_equal(io_h5_open_ids(), 0);
}

int main(void)
{
    io_tmpdir_create();
    io_h5_autoprint_record();
    io_h5_ids_baseline();
    ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    ds_path = io_path("loader.h5");
    NEV = 500;
    write_dataset(ds_path, NEV, 1234, 97);
    gpuml_dataset *ds;
    OK(gpuml_dataset_open(ds_path, &ds));
    RS = malloc((size_t)(NEV + 1) * sizeof *RS);
    memcpy(RS, gpuml_dataset_row_splits(ds), (size_t)(NEV + 1) * sizeof *RS);
    gpuml_dataset_close(ds);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epochs),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_shard_padding),
        cmocka_unit_test(test_save_restore),
        cmocka_unit_test(test_injected_error),
        cmocka_unit_test(test_damaged_after_open),
        cmocka_unit_test(test_truncated_after_open),
        cmocka_unit_test(test_destroy_anytime),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_cuda_batches),
    };
    int fails = cmocka_run_group_tests(tests, NULL, NULL);
    free(RS);
    gpuml_ctx_destroy(ctx);
    io_tmpdir_remove();
    return fails;
}
