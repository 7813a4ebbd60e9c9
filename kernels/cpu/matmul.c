/* CPU driver for matrix products: CBLAS (OpenBLAS, OpenMP build) when gpuml
 * is built with it, else the portable body of kernels/matmul.h.
 */
#include "../kernels.h"
#include "../matmul.h"
#include "gpuml_config.h"

#if GPUML_HAVE_BLAS
#include <cblas.h>
#endif
#if GPUML_HAVE_OPENMP
#include <omp.h>
#endif

/* Tiles of C, chosen from the shapes alone: halve the larger side until
 * there are enough tiles to share out, but keep tiles >= 32 wide so BLAS
 * stays efficient. Each tile is one single-threaded BLAS call, so every
 * element of C is computed the same way whatever the thread count
 * (OpenBLAS's own threading is not bitwise stable across thread counts).
 * With a non-transposed A the row blocks have a fixed height, for batch
 * invariance. */
static void choose_tiles(int ta, int64_t m, int64_t n, int64_t batch, int64_t *bm, int64_t *bn)
{
    if (!ta) {
        /* Row blocks of a fixed height, column tiles from n alone: where a
         * row lands in a batch does not change how it is computed (see
         * GPUML_GEMM_ROW_BLOCK in matmul.h). */
        *bm = GPUML_GEMM_ROW_BLOCK;
        *bn = n < 512 ? n : 512;
        return;
    }
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

gpuml_status gpuml_cpu_gemm(const gpuml_kctx *k, int ta, int tb, int64_t m, int64_t n, int64_t kk, float alpha,
                            const float *a, int64_t stride_a, const float *b, int64_t stride_b, float beta, float *c,
                            int64_t stride_c, int64_t batch)
{
    if (m == 0 || n == 0 || batch == 0)
        return GPUML_OK;
#if GPUML_HAVE_BLAS
    if (m > INT32_MAX || n > INT32_MAX || kk > INT32_MAX)
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, "gemm", "matrix dimension above 2^31-1 for CBLAS");
    int64_t bm, bn;
    choose_tiles(ta, m, n, batch, &bm, &bn);
    int64_t tm = (m + bm - 1) / bm, tn = (n + bn - 1) / bn, ntiles = batch * tm * tn;
    int nt = k->nthreads;
    double flops = 2.0 * (double)batch * (double)m * (double)n * (double)(kk ? kk : 1);
    if (flops < 2e5)
        nt = 1;
    if (nt > ntiles)
        nt = (int)ntiles;
#pragma omp parallel num_threads(nt)
    {
#if GPUML_HAVE_OPENMP
        /* Per-task setting, gone when the region ends: keeps OpenBLAS from
         * spawning its own threads inside ours. */
        omp_set_num_threads(1);
#endif
#pragma omp for schedule(static)
        for (int64_t t = 0; t < ntiles; t++) {
            int64_t bi = t / (tm * tn), r = t - bi * tm * tn, ti = r / tn, tj = r - ti * tn;
            int64_t i0 = ti * bm, j0 = tj * bn;
            int64_t mm = m - i0 < bm ? m - i0 : bm, nn = n - j0 < bn ? n - j0 : bn;
            const float *ap = a + bi * stride_a + (ta ? i0 : i0 * kk);
            const float *bp = b + bi * stride_b + (tb ? j0 * kk : j0);
            float *cp = c + bi * stride_c + i0 * n + j0;
            if (kk == 0) {
                /* BLAS would scale by beta; keep the beta == 0 contract. */
                for (int64_t i = 0; i < mm; i++)
                    for (int64_t j = 0; j < nn; j++)
                        cp[i * n + j] = beta == 0.0f ? 0.0f : beta * cp[i * n + j];
                continue;
            }
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)mm,
                        (int)nn, (int)kk, alpha, ap, ta ? (int)m : (int)kk, bp, tb ? (int)kk : (int)n, beta, cp,
                        (int)n);
        }
    }
#else
    int nt = k->nthreads;
    int64_t total = batch * m * n;
#pragma omp parallel for num_threads(nt) schedule(static) if (total * kk > GPUML_PAR_GRAIN)
    for (int64_t e = 0; e < total; e++) {
        int64_t bi = e / (m * n), r = e - bi * m * n, i = r / n, j = r - i * n;
        float *cp = c + bi * stride_c;
        cp[i * n + j] = gpuml_k_matmul_elem(a + bi * stride_a, ta, b + bi * stride_b, tb, m, n, kk, i, j, alpha, beta,
                                            cp[i * n + j]);
    }
#endif
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bias_rows(const gpuml_kctx *k, int64_t rows, int64_t cols, const float *bias, float *y)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * cols > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            y[r * cols + j] = gpuml_k_bias_at(bias, j);
    return GPUML_OK;
}
