/* bench_gemm_rows: the row-invariant CPU product (kernels/cpu/gemm_rows.c)
 * against OpenBLAS's cblas_sgemm on the same shapes, one thread each, C = A
 * op(B) + C (the linear layer's form: bias in C). Time: best of 5 of the
 * calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), both measured in the
 * same loop, so a loaded machine shifts both alike.
 *   bench_gemm_rows            (set OPENBLAS_CORETYPE to pick BLAS kernels) */
#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#include "gemm_rows.h"

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        /* No options: the shapes are fixed so that runs compare. */
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "%sUsage: bench_gemm_rows\n  Times the row-invariant CPU product (kernels/cpu/gemm_rows.c) against "
                "OpenBLAS on fixed layer shapes, one thread; takes no options.\n",
                help ? "" : "bench_gemm_rows: takes no options\n");
        return help ? 0 : 2;
    }
    openblas_set_num_threads(1);
    /* rows, k, n, tb: ParticleNet edge MLP, GravNet, the invariance test's model, a wide layer */
    static const int shapes[][4] = {{102400, 128, 64, 1}, {102400, 64, 64, 1}, {102400, 64, 64, 0}, {20000, 64, 64, 1},
                                    {20000, 132, 64, 1},  {20000, 64, 4, 1},   {5000, 10, 96, 1},   {5000, 192, 4, 1},
                                    {5000, 192, 3, 1},    {4096, 513, 600, 1}, {4096, 600, 513, 0}};
    printf("%8s %5s %5s %3s %12s %12s %7s\n", "rows", "k", "n", "tb", "openblas ms", "rows ms", "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2], tb = shapes[s][3];
        float *a = malloc(sizeof(float) * (size_t)m * (size_t)k), *b = malloc(sizeof(float) * (size_t)n * (size_t)k);
        float *c = calloc((size_t)m * (size_t)n, sizeof(float));
        if (!a || !b || !c) {
            fprintf(stderr, "bench_gemm_rows: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < (size_t)m * (size_t)k; i++)
            a[i] = (float)(i % 17) * 0.1f;
        for (size_t i = 0; i < (size_t)n * (size_t)k; i++)
            b[i] = (float)(i % 13) * 0.1f;
        double best_blas = 1e30, best_rows = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = cpu_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, k, b,
                        tb ? k : n, 1.0f, c, n);
            double t1 = cpu_now();
            gpuml_gemm_rows p;
            int64_t ntasks = gpuml_cpu_gemm_rows_plan(&p, tb, m, n, k, 1.0f, a, 0, b, 0, 1.0f, c, 0, 1);
            gpuml_cpu_gemm_rows_run(&p, 0, ntasks);
            double t2 = cpu_now();
            best_blas = t1 - t0 < best_blas ? t1 - t0 : best_blas;
            best_rows = t2 - t1 < best_rows ? t2 - t1 : best_rows;
        }
        printf("%8d %5d %5d %3d %12.3f %12.3f %7.2f\n", m, k, n, tb, best_blas * 1e3, best_rows * 1e3,
               best_rows / best_blas);
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
