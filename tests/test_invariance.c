/* Batch invariance: a row's (or an event's) result must not depend on the
 * rows and events batched with it, bitwise. The inference engine relies on
 * it to return exactly what running each event alone returns; an optimised
 * sgemm breaks it (a row's bits depend on its place in the sgemm's blocking),
 * hence the CPU's own row kernel (kernels/cpu/gemm_rows.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static float *rand_floats(uint64_t *rng, int64_t n)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)h_rand_normal(rng);
    return p;
}

/* y = x W^T + b for the rows [r0, r0 + m) of x alone. */
static float *linear_rows(gpuml_ctx *ctx, const float *x, int64_t r0, int64_t m, int64_t k, gpuml_tensor *w,
                          gpuml_tensor *b, int64_t n)
{
    int64_t xs[2] = {m, k}, ys[2] = {m, n};
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, xs, x + r0 * k), *ty = NULL;
    assert_int_equal(gpuml_tensor_create(ctx, GPUML_F32, 2, ys, &ty), GPUML_OK);
    assert_int_equal(gpuml_linear(ctx, tx, w, b, ty), GPUML_OK);
    float *y = h_read(ctx, ty);
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(ty);
    return y;
}

/* Every row of a 1000-row batch against the same rows run in slices that
 * start at other places (offsets off every register block: an optimised
 * sgemm computes rows 6-11 of each 12 differently from rows 0-5), for
 * shapes of the model below (k 192 -> n 3, k 10 -> n 96) and around the
 * CPU kernel's 16-column panels and 256-deep k blocks. On the CPU the rows
 * must also equal the documented arithmetic: bias + the k-ordered fmaf chain. */
static void test_linear_rows_are_batch_invariant(void **state)
{
    (void)state;
    static const int64_t ks[] = {1, 3, 10, 16, 64, 100, 192, 257, 513};
    static const int64_t ns[] = {1, 3, 4, 5, 15, 16, 17, 64, 96, 100, 600};
    static const int64_t starts[] = {0, 1, 5, 6, 7, 11, 12, 13, 60, 95, 96, 97, 500};
    static const int64_t lens[] = {1, 2, 7, 12, 63, 64, 65, 130, 200};
    enum { NK = sizeof ks / sizeof ks[0], NN = sizeof ns / sizeof ns[0], NS = sizeof starts / sizeof starts[0],
           NL = sizeof lens / sizeof lens[0], ROWS = 1000 };
    uint64_t rng = 7;
    for (int b = 0; b < h_num_backends(); b++) {
        gpuml_ctx *ctx = h_ctx(h_backend(b), 2);
        for (int ki = 0; ki < NK; ki++)
            for (int ni = 0; ni < NN; ni++) {
                int64_t k = ks[ki], n = ns[ni], ws[2] = {n, k};
                float *wh = rand_floats(&rng, n * k), *bh = rand_floats(&rng, n), *x = rand_floats(&rng, ROWS * k);
                gpuml_tensor *w = h_tensor_f32(ctx, 2, ws, wh), *bias = h_tensor_f32(ctx, 1, &n, bh);
                float *all = linear_rows(ctx, x, 0, ROWS, k, w, bias, n);
                if (h_backend(b) == GPUML_DEVICE_CPU) /* every row of a block of 12, then a sample */
                    for (int64_t i = 0; i < ROWS; i += i < 12 ? 1 : 37)
                        for (int64_t j = 0; j < n; j++) {
                            float acc = 0.0f;
                            for (int64_t p = 0; p < k; p++)
                                acc = fmaf(x[i * k + p], wh[j * k + p], acc);
                            float want = bh[j] + acc;
                            if (memcmp(&want, &all[i * n + j], sizeof want))
                                fail_msg("k %lld, n %lld: y[%lld, %lld] = %.9g, not the fmaf chain's %.9g",
                                         (long long)k, (long long)n, (long long)i, (long long)j, all[i * n + j], want);
                        }
                for (int si = 0; si < NS; si++)
                    for (int li = (si * 5 + ki + ni) % 3; li < NL; li += 3) {
                        int64_t r0 = starts[si], m = lens[li];
                        float *y = linear_rows(ctx, x, r0, m, k, w, bias, n);
                        for (int64_t i = 0; i < m; i++)
                            if (memcmp(y + i * n, all + (r0 + i) * n, (size_t)n * sizeof *y))
                                fail_msg("backend %d, k %lld, n %lld: row %lld of a %lld-row slice at row %lld "
                                         "differs from the same row in the full batch",
                                         b, (long long)k, (long long)n, (long long)i, (long long)m, (long long)r0);
                        free(y);
                    }
                free(all);
                free(wh);
                free(bh);
                free(x);
                gpuml_tensor_destroy(w);
                gpuml_tensor_destroy(bias);
            }
        gpuml_ctx_destroy(ctx);
    }
}

static const char model_json[] =
    "{\"inputs\": [{\"name\": \"hits\", \"features\": 7}, {\"name\": \"aux\", \"features\": 3}],"
    " \"nodes\": ["
    "  {\"name\": \"cat\", \"op\": \"concat\", \"inputs\": [\"hits\", \"aux\"]},"
    "  {\"name\": \"norm\", \"op\": \"layernorm\", \"inputs\": [\"cat\"]},"
    "  {\"name\": \"d1\", \"op\": \"linear\", \"inputs\": [\"norm\"], \"out\": 96},"
    "  {\"name\": \"a1\", \"op\": \"gelu\", \"inputs\": [\"d1\"]},"
    "  {\"name\": \"pool\", \"op\": \"global_pool\", \"inputs\": [\"a1\"], \"reduce\": \"max\"},"
    "  {\"name\": \"mean\", \"op\": \"global_pool\", \"inputs\": [\"a1\"], \"reduce\": \"mean\"},"
    "  {\"name\": \"ctx\", \"op\": \"concat\", \"inputs\": [\"pool\", \"mean\"]},"
    "  {\"name\": \"bc\", \"op\": \"broadcast\", \"inputs\": [\"ctx\"]},"
    "  {\"name\": \"cat2\", \"op\": \"concat\", \"inputs\": [\"a1\", \"bc\"]},"
    "  {\"name\": \"d2\", \"op\": \"linear\", \"inputs\": [\"cat2\"], \"out\": 4},"
    "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"ctx\"], \"out\": 3}"
    " ], \"outputs\": [\"d2\", \"cls\"]}";

/* Forward of the events [e0, e1) of a ragged batch; returns the two
 * outputs read back to the host. */
static void forward_events(gpuml_ctx *ctx, gpuml_model *m, gpuml_tape *tape, const float *hits, const float *aux,
                           const int64_t *splits, int e0, int e1, float **d2, float **cls)
{
    int64_t r0 = splits[e0], n = splits[e1] - r0, nb = e1 - e0;
    int64_t hs[2] = {n, 7}, as[2] = {n, 3}, ns = nb + 1;
    int64_t *sp = malloc((size_t)ns * sizeof *sp);
    for (int64_t i = 0; i <= nb; i++)
        sp[i] = splits[e0 + i] - r0;
    gpuml_tensor *in[2] = {h_tensor_f32(ctx, 2, hs, hits + r0 * 7), h_tensor_f32(ctx, 2, as, aux + r0 * 3)};
    gpuml_tensor *rs = h_tensor(ctx, GPUML_I64, 1, &ns, sp);
    gpuml_var *out[2];
    assert_int_equal(gpuml_model_forward(m, tape, (const gpuml_tensor *const *)in, rs, out), GPUML_OK);
    *d2 = h_read(ctx, gpuml_var_value(out[0]));
    *cls = h_read(ctx, gpuml_var_value(out[1]));
    gpuml_tape_reset(tape);
    gpuml_tensor_destroy(in[0]);
    gpuml_tensor_destroy(in[1]);
    gpuml_tensor_destroy(rs);
    free(sp);
}

static void test_model_events_are_batch_invariant(void **state)
{
    (void)state;
    uint64_t rng = 11;
    enum { NE = 24 };
    int64_t splits[NE + 1] = {0};
    for (int e = 0; e < NE; e++) /* sizes around the 64-row blocks, and empty events */
        splits[e + 1] = splits[e] + (e % 7 == 3 ? 0 : (int64_t)(h_rand_u64(&rng) % 150) + (e % 5 == 0 ? 1 : 0));
    int64_t n = splits[NE];
    float *hits = rand_floats(&rng, n * 7), *aux = rand_floats(&rng, n * 3);
    for (int b = 0; b < h_num_backends(); b++) {
        gpuml_ctx *ctx = h_ctx(h_backend(b), 2);
        gpuml_model *m;
        gpuml_tape *tape;
        assert_int_equal(gpuml_model_create(ctx, model_json, &m), GPUML_OK);
        assert_int_equal(gpuml_model_init_params(m, 3), GPUML_OK);
        assert_int_equal(gpuml_tape_create(ctx, &tape), GPUML_OK);
        gpuml_tape_set_grad_enabled(tape, 0);
        gpuml_tape_set_training(tape, 0);
        float *bd2, *bcls;
        forward_events(ctx, m, tape, hits, aux, splits, 0, NE, &bd2, &bcls);
        {
            /* one thread: the same bits as two (same seed, same parameters) */
            gpuml_ctx *ctx1 = h_ctx(h_backend(b), 1);
            gpuml_model *m1;
            gpuml_tape *tape1;
            assert_int_equal(gpuml_model_create(ctx1, model_json, &m1), GPUML_OK);
            assert_int_equal(gpuml_model_init_params(m1, 3), GPUML_OK);
            assert_int_equal(gpuml_tape_create(ctx1, &tape1), GPUML_OK);
            gpuml_tape_set_grad_enabled(tape1, 0);
            gpuml_tape_set_training(tape1, 0);
            float *d2_1, *cls_1;
            forward_events(ctx1, m1, tape1, hits, aux, splits, 0, NE, &d2_1, &cls_1);
            assert_memory_equal(d2_1, bd2, (size_t)(n * 4) * sizeof(float));
            assert_memory_equal(cls_1, bcls, (size_t)(NE * 3) * sizeof(float));
            free(d2_1);
            free(cls_1);
            gpuml_tape_destroy(tape1);
            gpuml_model_destroy(m1);
            gpuml_ctx_destroy(ctx1);
        }
        for (int e = 0; e < NE; e++) {
            float *d2, *cls;
            forward_events(ctx, m, tape, hits, aux, splits, e, e + 1, &d2, &cls);
            int64_t rows = splits[e + 1] - splits[e];
            assert_memory_equal(d2, bd2 + splits[e] * 4, (size_t)(rows * 4) * sizeof(float));
            assert_memory_equal(cls, bcls + e * 3, 3 * sizeof(float));
            free(d2);
            free(cls);
        }
        free(bd2);
        free(bcls);
        gpuml_tape_destroy(tape);
        gpuml_model_destroy(m);
        gpuml_ctx_destroy(ctx);
    }
    free(hits);
    free(aux);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_rows_are_batch_invariant),
        cmocka_unit_test(test_model_events_are_batch_invariant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
