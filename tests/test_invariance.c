/* Batch invariance: a row's (or an event's) result must not depend on the
 * rows and events batched with it, bitwise. The inference engine relies on
 * it to return exactly what running each event alone returns; an optimised
 * sgemm breaks it unless every call has the same row count (see
 * GPUML_GEMM_ROW_BLOCK in kernels/matmul.h). */
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

static void test_linear_rows_are_batch_invariant(void **state)
{
    (void)state;
    static const int64_t ks[] = {3, 16, 64, 100, 513}, ns[] = {1, 5, 64, 100, 600};
    static const int64_t ms[] = {1, 2, 7, 63, 64, 65, 130, 1000};
    uint64_t rng = 7;
    for (int b = 0; b < h_num_backends(); b++) {
        gpuml_ctx *ctx = h_ctx(h_backend(b), 2);
        for (int ki = 0; ki < 5; ki++)
            for (int ni = 0; ni < 5; ni++) {
                int64_t k = ks[ki], n = ns[ni], ws[2] = {n, k};
                float *wh = rand_floats(&rng, n * k), *bh = rand_floats(&rng, n), *x = rand_floats(&rng, 1000 * k);
                gpuml_tensor *w = h_tensor_f32(ctx, 2, ws, wh), *bias = h_tensor_f32(ctx, 1, &n, bh);
                /* reference: rows 0 and 5 alone */
                float *r0 = linear_rows(ctx, x, 0, 1, k, w, bias, n);
                float *r5 = linear_rows(ctx, x, 5, 1, k, w, bias, n);
                for (int mi = 0; mi < 8; mi++) {
                    int64_t m = ms[mi];
                    float *y = linear_rows(ctx, x, 0, m, k, w, bias, n);
                    if (memcmp(y, r0, (size_t)n * sizeof *y))
                        fail_msg("backend %d, k %lld, n %lld: row 0 of a %lld-row batch differs from row 0 alone", b,
                                 (long long)k, (long long)n, (long long)m);
                    if (m > 5 && memcmp(y + 5 * n, r5, (size_t)n * sizeof *y))
                        fail_msg("backend %d, k %lld, n %lld: row 5 of a %lld-row batch differs from row 5 alone", b,
                                 (long long)k, (long long)n, (long long)m);
                    free(y);
                }
                free(r0);
                free(r5);
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
