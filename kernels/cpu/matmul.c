/* CPU driver for matrix products. A non-transposed A (every forward product
 * and input gradient) goes through the row-invariant kernel of gemm_rows.c
 * (batch invariance: no BLAS promises that a row's bits do not depend on
 * the rows around it); a transposed A (weight gradients) through CBLAS
 * (OpenBLAS, OpenMP build) when gpuml is built with it, else the portable
 * body of kernels/matmul.h. Each BLAS tile is one call on one thread
 * (gpuml_kblas_enter), whichever executor runs the tiles.
 */
#include "../kernels.h"
#include "../matmul.h"
#include "gpuml_config.h"

#if GPUML_HAVE_BLAS
#include <cblas.h>
#endif
#include "gemm_rows.h"
#include "parallel.h"

/* Tiles of C for a transposed A (weight gradients), chosen from the shapes
 * alone: halve the larger side until there are enough tiles to share out,
 * but keep tiles >= 32 wide so BLAS stays efficient. Each tile is one
 * single-threaded BLAS call, so every element of C is computed the same way
 * whatever the thread count (OpenBLAS's own threading is not bitwise stable
 * across thread counts). */
static void choose_tiles(int64_t m, int64_t n, int64_t batch, int64_t *bm, int64_t *bn)
{
    *bm = m < 256 ? m : 256;
    *bn = n < 512 ? n : 512;
    for (;;) {
        int64_t tiles = batch * ((m + *bm - 1) / *bm) * ((n + *bn - 1) / *bn);
        if (tiles >= 16)
            break;
        if (*bn >= *bm && *bn > 32)
            *bn = (*bn + 1) / 2;
        else if (*bm > 32)
            *bm = (*bm + 1) / 2;
        else
            break;
    }
}

typedef struct gemm_args {
    int ta, tb;
    int64_t m, n, kk, bm, bn, tm, tn, stride_a, stride_b, stride_c;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_args;

#if GPUML_HAVE_BLAS
/* Tiles [begin, end) of C, each one single-threaded CBLAS call. */
GPUML_KRANGE(gemm_tiles, gemm_args)
{
    int64_t m = a->m, n = a->n, kk = a->kk, tm = a->tm, tn = a->tn, bm = a->bm, bn = a->bn;
    int saved = gpuml_kblas_enter();
    for (int64_t t = begin; t < end; t++) {
        int64_t bi = t / (tm * tn), r = t - bi * tm * tn, ti = r / tn, tj = r - ti * tn;
        int64_t i0 = ti * bm, j0 = tj * bn;
        int64_t mm = m - i0 < bm ? m - i0 : bm, nn = n - j0 < bn ? n - j0 : bn;
        const float *ap = a->a + bi * a->stride_a + (a->ta ? i0 : i0 * kk);
        const float *bp = a->b + bi * a->stride_b + (a->tb ? j0 * kk : j0);
        float *cp = a->c + bi * a->stride_c + i0 * n + j0;
        if (kk == 0) {
            /* BLAS would scale by beta; keep the beta == 0 contract. */
            for (int64_t i = 0; i < mm; i++)
                for (int64_t j = 0; j < nn; j++)
                    cp[i * n + j] = a->beta == 0.0f ? 0.0f : a->beta * cp[i * n + j];
            continue;
        }
        cblas_sgemm(CblasRowMajor, a->ta ? CblasTrans : CblasNoTrans, a->tb ? CblasTrans : CblasNoTrans, (int)mm,
                    (int)nn, (int)kk, a->alpha, ap, a->ta ? (int)m : (int)kk, bp, a->tb ? (int)kk : (int)n, a->beta, cp,
                    (int)n);
    }
    gpuml_kblas_leave(saved);
}
#else
/* Elements [begin, end) of the batch of C's, by the portable body. */
GPUML_KRANGE(gemm_elems, gemm_args)
{
    int64_t m = a->m, n = a->n;
    for (int64_t e = begin; e < end; e++) {
        int64_t bi = e / (m * n), r = e - bi * m * n, i = r / n, j = r - i * n;
        float *cp = a->c + bi * a->stride_c;
        cp[i * n + j] = gpuml_k_matmul_elem(a->a + bi * a->stride_a, a->ta, a->b + bi * a->stride_b, a->tb, m, n, a->kk,
                                            i, j, a->alpha, a->beta, cp[i * n + j]);
    }
}
#endif

/* Tasks [begin, end) of a row-invariant product (gemm_rows.h). */
GPUML_KRANGE(gemm_rows_tasks, gpuml_gemm_rows)
{
    gpuml_cpu_gemm_rows_run(a, begin, end);
}

gpuml_status gpuml_cpu_gemm(const gpuml_kctx *k, int ta, int tb, int64_t m, int64_t n, int64_t kk, float alpha,
                            const float *a, int64_t stride_a, const float *b, int64_t stride_b, float beta, float *c,
                            int64_t stride_c, int64_t batch)
{
    if (m == 0 || n == 0 || batch == 0)
        return GPUML_OK;
    /* Products below 2e5 flops stay on the calling thread at the default
     * threshold: the work handed to gpuml_kfor is scaled accordingly. */
    double flops = 2.0 * (double)batch * (double)m * (double)n * (double)(kk ? kk : 1);
    double work = flops * (double)GPUML_PAR_GRAIN / 2e5;
    int64_t work_i = (int64_t)(work < 9e18 ? work : 9e18);
    if (!ta) {
        gpuml_gemm_rows p;
        int64_t ntasks =
            gpuml_cpu_gemm_rows_plan(&p, tb, m, n, kk, alpha, a, stride_a, b, stride_b, beta, c, stride_c, batch);
        gpuml_kfor(k, ntasks, work_i, 1, gemm_rows_tasks, &p);
        return GPUML_OK;
    }
    gemm_args g = {0};
    g.ta = ta, g.tb = tb, g.m = m, g.n = n, g.kk = kk, g.alpha = alpha, g.beta = beta, g.a = a, g.b = b, g.c = c;
    g.stride_a = stride_a, g.stride_b = stride_b, g.stride_c = stride_c;
#if GPUML_HAVE_BLAS
    if (m > INT32_MAX || n > INT32_MAX || kk > INT32_MAX)
        return gpuml_k_fail(k, GPUML_ERR_UNSUPPORTED, "gemm", "a matrix dimension (m, n or k) above 2^31-1 for CBLAS",
                            NULL, NULL, 0, 0, 0);
    choose_tiles(m, n, batch, &g.bm, &g.bn);
    g.tm = (m + g.bm - 1) / g.bm, g.tn = (n + g.bn - 1) / g.bn;
    int64_t ntiles = batch * g.tm * g.tn;
    gpuml_kfor(k, ntiles, work_i, 1, gemm_tiles, &g); /* one tile per piece */
#else
    int64_t total = batch * m * n;
    gpuml_kfor(k, total, total * kk, 0, gemm_elems, &g);
#endif
    return GPUML_OK;
}

typedef struct bias_args {
    int64_t rows, cols;
    const float *bias;
    float *out;
} bias_args;

GPUML_KRANGE(bias_range, bias_args)
{
    for (int64_t r = begin; r < end; r++)
        for (int64_t j = 0; j < a->cols; j++)
            a->out[r * a->cols + j] = gpuml_k_bias_at(a->bias, j);
}

gpuml_status gpuml_cpu_bias_rows(const gpuml_kctx *k, int64_t rows, int64_t cols, const float *bias, float *y)
{
    bias_args a = {rows, cols, bias, y};
    gpuml_kfor(k, rows, rows * cols, 0, bias_range, &a);
    return GPUML_OK;
}
