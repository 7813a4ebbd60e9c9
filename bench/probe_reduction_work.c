/*
 * bench/probe_reduction_work.c - does any thread's work grow with the rows?
 *
 *   probe_reduction_work [--device cpu|cuda] [--rows R] [--reps N]
 *
 * Runs the ops whose kernels sum over all rows - reduce along the rows,
 * the linear layer's bias gradient (column sum), layer norm's parameter
 * gradients, sum_to_shape, the gradient norm, batch norm (chunk partials),
 * the CSR build behind scatter_add_rows - on [R, 16] inputs, and prints the
 * best time of each. Not a test and not a speed benchmark: it is the probe
 * behind the emulated build's launch log. Run it in build-emu at two row
 * counts with GPUML_EMU_LAUNCH_LOG=DIR (one directory per run) and compare
 * the largest per-thread time of each kernel (column 6 of DIR/launches.*.tsv):
 * a kernel whose per-thread work grows with R shows it there.
 *
 *   for r in 16384 131072; do mkdir -p /tmp/ll$r; GPUML_EMU_LAUNCH_LOG=/tmp/ll$r \
 *     build-emu/bench/probe_reduction_work --device cuda --rows $r; done
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gpuml/gpuml.h>

#define C 16

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static gpuml_tensor *make(gpuml_ctx *ctx, gpuml_dtype dt, int nd, const int64_t *shape, double value)
{
    gpuml_tensor *t = NULL;
    if (gpuml_tensor_create(ctx, dt, nd, shape, &t) != GPUML_OK || gpuml_fill(ctx, t, value) != GPUML_OK) {
        fprintf(stderr, "probe: %s\n", gpuml_last_error());
        exit(1);
    }
    return t;
}

#define RUN(name, call)                                                                \
    do {                                                                               \
        double best = 1e30;                                                            \
        for (int rep = 0; rep < reps; rep++) {                                         \
            double t0 = now_s();                                                       \
            gpuml_status st_ = (call);                                                 \
            if (st_ == GPUML_OK)                                                       \
                st_ = gpuml_ctx_synchronize(ctx);                                      \
            if (st_ != GPUML_OK) {                                                     \
                fprintf(stderr, "probe: %s failed: %s\n", name, gpuml_last_error());   \
                return 1;                                                              \
            }                                                                          \
            double dt = now_s() - t0;                                                  \
            best = dt < best ? dt : best;                                              \
        }                                                                              \
        printf("%-22s rows %8lld  best %9.3f ms\n", name, (long long)rows, 1e3 * best); \
    } while (0)

int main(int argc, char **argv)
{
    int64_t rows = 16384;
    int reps = 3, cuda = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rows"))
            rows = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device"))
            cuda = !strcmp(argv[i + 1], "cuda");
    }
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.device.type = cuda ? GPUML_DEVICE_CUDA : GPUML_DEVICE_CPU;
    gpuml_ctx *ctx = NULL;
    if (gpuml_ctx_create(&cfg, &ctx) != GPUML_OK) {
        fprintf(stderr, "probe: %s\n", gpuml_last_error());
        return 1;
    }
    int64_t rc[2] = {rows, C}, c1[1] = {C}, r1[1] = {rows}, all[1] = {rows * C}, c2[2] = {C, C};
    gpuml_tensor *x = make(ctx, GPUML_F32, 2, rc, 0.5), *gy = make(ctx, GPUML_F32, 2, rc, 0.25);
    gpuml_tensor *w = make(ctx, GPUML_F32, 2, c2, 0.1), *vec = make(ctx, GPUML_F32, 1, c1, 0.0);
    gpuml_tensor *vec2 = make(ctx, GPUML_F32, 1, c1, 0.0), *gamma = make(ctx, GPUML_F32, 1, c1, 1.0);
    gpuml_tensor *mean = make(ctx, GPUML_F32, 1, r1, 0.5), *rstd = make(ctx, GPUML_F32, 1, r1, 2.0);
    gpuml_tensor *flat = make(ctx, GPUML_F32, 1, all, 0.5), *idx = make(ctx, GPUML_I32, 1, r1, 3.0);
    int64_t tshape[2] = {64, C};
    gpuml_tensor *targets = make(ctx, GPUML_F32, 2, tshape, 0.0), *y = make(ctx, GPUML_F32, 2, rc, 0.0);
    gpuml_tensor *rm = make(ctx, GPUML_F32, 1, c1, 0.0), *rv = make(ctx, GPUML_F32, 1, c1, 1.0);
    gpuml_batch_norm_params bn;
    gpuml_batch_norm_params_init_defaults(&bn);
    bn.training = 1;
    float norm = 0.0f;

    RUN("reduce_sum_rows", gpuml_reduce(ctx, GPUML_REDUCE_SUM, x, 0, vec, NULL));
    RUN("linear_bias_grad", gpuml_linear_backward(ctx, x, w, gy, NULL, NULL, vec, 0));
    RUN("layernorm_param_grad", gpuml_layernorm_backward(ctx, x, gamma, gy, mean, rstd, NULL, vec, vec2, 0));
    RUN("sum_to_shape", gpuml_sum_to_shape(ctx, gy, vec));
    RUN("grad_norm", gpuml_grad_norm(ctx, flat, &norm));
    RUN("batch_norm_train", gpuml_batch_norm(ctx, &bn, x, NULL, gamma, vec2, rm, rv, y, NULL, NULL));
    RUN("scatter_add_one_target", gpuml_scatter_add_rows(ctx, x, idx, targets));

    gpuml_tensor *ts[] = {x, gy, w, vec, vec2, gamma, mean, rstd, flat, idx, targets, y, rm, rv};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        gpuml_tensor_destroy(ts[i]);
    gpuml_ctx_destroy(ctx);
    return 0;
}
