/* The loop helper of the CPU drivers (kernels/cpu/parallel.h). */
#include "parallel.h"
#include "gpuml_config.h"

#if GPUML_HAVE_OPENMP
#include <omp.h>
#endif

void gpuml_kfor(const gpuml_kctx *k, int64_t n, int64_t work, int64_t grain, gpuml_range_fn fn, void *arg)
{
    if (n <= 0)
        return;
    const gpuml_executor *ex = k->exec;
    int64_t threshold = k->par_work > 0 ? k->par_work : GPUML_PAR_GRAIN;
    if (!ex || k->nthreads <= 1 || n == 1 || work <= threshold) {
        fn(arg, 0, n, 0);
        return;
    }
    if (grain <= 0) {
        /* Pieces of about a quarter of the threshold (GPUML_PAR_PIECE). */
        double g = (double)n * (double)(threshold / 4 > 0 ? threshold / 4 : 1) / (double)work;
        grain = g < 1.0 ? 1 : g >= (double)n ? n : (int64_t)g;
    }
    if (grain >= n) {
        fn(arg, 0, n, 0);
        return;
    }
    ex->parallel_for(ex->self, n, grain, fn, arg);
}

int gpuml_kblas_enter(void)
{
#if GPUML_HAVE_OPENMP
    /* omp_set_num_threads changes the calling thread's own setting only
     * (its data environment); it is put back by gpuml_kblas_leave. */
    int saved = omp_get_max_threads();
    if (saved != 1)
        omp_set_num_threads(1);
    return saved;
#else
    return 1;
#endif
}

void gpuml_kblas_leave(int saved)
{
#if GPUML_HAVE_OPENMP
    if (saved != 1)
        omp_set_num_threads(saved);
#else
    (void)saved;
#endif
}
