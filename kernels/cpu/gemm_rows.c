/* Row-invariant CPU matrix product (see gemm_rows.h for the contract).
 *
 * Blocking: a task is MB rows x one panel of NR columns of one batch entry.
 * It packs its panel of op(B), KC rows of k at a time, into a zero-padded
 * [KC][NR] block, and runs MR-row tiles over it; the running sums live in a
 * [MB][NR] stack block between k blocks (storing a float and loading it back
 * is exact, so blocking k does not change the chain). Tail rows re-read the
 * last real row and tail columns multiply packed zeros: the same
 * instructions for every element, results of the padding discarded.
 */
#include "gemm_rows.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GEMM_ROWS_X86 1
#include <immintrin.h>
#else
#define GEMM_ROWS_X86 0
#endif

enum { MR = 6, NR = 16, KC = 256, MB = 96 };

/* bp[p][jj] = op(B)[p0 + p, j0 + jj], zero past column n. */
static void pack_panel(int tb, const float *b, int64_t n, int64_t k, int64_t j0, int64_t nn, int64_t p0, int64_t kc,
                       float *bp)
{
    if (nn < NR)
        memset(bp, 0, (size_t)(kc * NR) * sizeof *bp);
    if (tb) {
        for (int64_t jj = 0; jj < nn; jj++) {
            const float *src = b + (j0 + jj) * k + p0;
            for (int64_t p = 0; p < kc; p++)
                bp[p * NR + jj] = src[p];
        }
    } else {
        for (int64_t p = 0; p < kc; p++)
            memcpy(bp + p * NR, b + (p0 + p) * n + j0, (size_t)nn * sizeof *bp);
    }
}

/* acc[r][jj] (+)= sum_p a[r][p] bp[p][jj] for MR rows, one fmaf per step in
 * p order; rows >= `rows` repeat the last row. first: start the sums at 0. */
static void tile_portable(const float *a, int64_t lda, int rows, const float *bp, int64_t kc, float *acc, int first)
{
    for (int r = 0; r < MR; r++) {
        const float *ar = a + (r < rows ? r : rows - 1) * lda;
        float *cr = acc + r * NR;
        for (int jj = 0; jj < NR; jj++) {
            float s = first ? 0.0f : cr[jj];
            for (int64_t p = 0; p < kc; p++)
                s = fmaf(ar[p], bp[p * NR + jj], s);
            cr[jj] = s;
        }
    }
}

#if GEMM_ROWS_X86
/* The same arithmetic with AVX2 FMA: each lane of vfmadd231ps is one
 * correctly rounded fmaf, so the bits equal tile_portable's. */
/* Named accumulators, not an array: GCC keeps an array of vectors in
 * memory, a store per step. */
#define GR_ROW(r) const float *a##r = a + (r < rows ? r : rows - 1) * lda
#define GR_INIT(r)                                                                                                     \
    __m256 c##r##0 = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + r * NR),                                     \
           c##r##1 = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + r * NR + 8)
#define GR_STEP(r)                                                                                                     \
    do {                                                                                                               \
        __m256 x = _mm256_broadcast_ss(a##r + p);                                                                      \
        c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);                                                                     \
        c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);                                                                     \
    } while (0)
#define GR_STORE(r)                                                                                                    \
    do {                                                                                                               \
        _mm256_storeu_ps(acc + r * NR, c##r##0);                                                                       \
        _mm256_storeu_ps(acc + r * NR + 8, c##r##1);                                                                   \
    } while (0)

__attribute__((target("avx2,fma"))) static void tile_avx2(const float *a, int64_t lda, int rows, const float *bp,
                                                           int64_t kc, float *acc, int first)
{
    GR_ROW(0);
    GR_ROW(1);
    GR_ROW(2);
    GR_ROW(3);
    GR_ROW(4);
    GR_ROW(5);
    GR_INIT(0);
    GR_INIT(1);
    GR_INIT(2);
    GR_INIT(3);
    GR_INIT(4);
    GR_INIT(5);
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(bp + p * NR), b1 = _mm256_load_ps(bp + p * NR + 8);
        GR_STEP(0);
        GR_STEP(1);
        GR_STEP(2);
        GR_STEP(3);
        GR_STEP(4);
        GR_STEP(5);
    }
    GR_STORE(0);
    GR_STORE(1);
    GR_STORE(2);
    GR_STORE(3);
    GR_STORE(4);
    GR_STORE(5);
}

static int have_avx2_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

int64_t gpuml_cpu_gemm_rows_plan(gpuml_gemm_rows *p, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                 const float *a, int64_t stride_a, const float *b, int64_t stride_b, float beta,
                                 float *c, int64_t stride_c, int64_t batch)
{
    *p = (gpuml_gemm_rows){tb, m, n, k, stride_a, stride_b, stride_c, batch, alpha, beta, a, b, c, 0, 0, tile_portable};
    if (m == 0 || n == 0 || batch == 0)
        return 0;
#if GEMM_ROWS_X86
    if (have_avx2_fma())
        p->tile = tile_avx2;
#endif
    p->tm = (m + MB - 1) / MB, p->tn = (n + NR - 1) / NR;
    return batch * p->tm * p->tn;
}

/* Task order: panels of one row block next to each other, so the rows stay
 * in cache while the panels change. Which thread runs a task does not
 * change its arithmetic. */
void gpuml_cpu_gemm_rows_run(const gpuml_gemm_rows *p, int64_t begin, int64_t end)
{
    const int tb = p->tb;
    const int64_t m = p->m, n = p->n, k = p->k, tm = p->tm, tn = p->tn;
    const float alpha = p->alpha, beta = p->beta, *a = p->a, *b = p->b;
    float *c = p->c;
    const int64_t stride_a = p->stride_a, stride_b = p->stride_b, stride_c = p->stride_c;
    void (*tile)(const float *, int64_t, int, const float *, int64_t, float *, int) = p->tile;
    for (int64_t t = begin; t < end; t++) {
        _Alignas(32) float bp[KC * NR];
        _Alignas(32) float acc[MB * NR];
        int64_t bi = t / (tm * tn), r = t - bi * tm * tn, ti = r / tn, tj = r - ti * tn;
        int64_t i0 = ti * MB, j0 = tj * NR;
        int64_t mm = m - i0 < MB ? m - i0 : MB, nn = n - j0 < NR ? n - j0 : NR;
        const float *ab = a + bi * stride_a + i0 * k, *bb = b + bi * stride_b;
        float *cb = c + bi * stride_c + i0 * n + j0;
        int64_t p0 = 0;
        do {
            int64_t kc = k - p0 < KC ? k - p0 : KC;
            pack_panel(tb, bb, n, k, j0, nn, p0, kc, bp);
            for (int64_t i = 0; i < mm; i += MR)
                tile(ab + i * k + p0, k, mm - i < MR ? (int)(mm - i) : MR, bp, kc, acc + i * NR, p0 == 0);
            p0 += kc;
        } while (p0 < k);
        /* alpha * sum, then fmaf(beta, c, .) as gpuml_k_matmul_elem; the
         * common cases spelled out (exactly the same values) so that they
         * vectorise instead of calling fmaf per element. */
        for (int64_t i = 0; i < mm; i++) {
            const float *s = acc + i * NR;
            float *ci = cb + i * n;
            if (alpha == 1.0f && beta == 0.0f)
                memcpy(ci, s, (size_t)nn * sizeof *ci);
            else if (alpha == 1.0f && beta == 1.0f)
                for (int64_t jj = 0; jj < nn; jj++)
                    ci[jj] = ci[jj] + s[jj];
            else
                for (int64_t jj = 0; jj < nn; jj++) {
                    float v = alpha * s[jj];
                    ci[jj] = beta == 0.0f ? v : fmaf(beta, ci[jj], v);
                }
        }
    }
}
