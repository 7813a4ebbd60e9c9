/* bench/bench_io.c - throughput of the io part on this machine.
 *   bench_io [--step-ms T] DATASET.h5 FIELD...   loader epochs in each mode;
 *                     T: a simulated training step (sleep) per batch, which
 *                     the prefetch thread can overlap with reading
 *   bench_io --tensor MB DIR          write + read one f32 tensor
 * Best of 3 repeats each; CPU context (a CUDA context adds only the
 * host-to-device copies, overlapped by the prefetch thread). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gpuml/gpuml.h>

#include "../examples/common/cli.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        gpuml_status s_ = (call);                                                        \
        if (s_ != GPUML_OK) {                                                            \
            fprintf(stderr, "%s: %s\n", gpuml_status_string(s_), gpuml_last_error());    \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench_loader(gpuml_ctx *ctx, const char *path, int nfields, const char **fields, double step_ms)
{
    gpuml_dataset *ds;
    CHECK(gpuml_dataset_open(path, &ds));
    double bytes = 8.0 * (double)(gpuml_dataset_num_events(ds) + 1);
    for (int i = 0; i < nfields; i++) {
        int idx;
        gpuml_field_info fi;
        CHECK(gpuml_dataset_find(ds, fields[i], &idx));
        CHECK(gpuml_dataset_field(ds, idx, &fi));
        double unit = (double)gpuml_dtype_size(fi.dtype);
        for (int d = 0; d < fi.ndim; d++)
            unit *= (double)fi.shape[d];
        bytes += unit * (double)(fi.per_event ? gpuml_dataset_num_events(ds) : gpuml_dataset_num_rows(ds));
    }
    printf("%s: %lld events, %lld rows, %.1f MB in the requested fields\n", path,
           (long long)gpuml_dataset_num_events(ds), (long long)gpuml_dataset_num_rows(ds), bytes / 1e6);
    gpuml_dataset_close(ds);
    const int modes[][2] = {{1, 0}, {1, 2}, {0, 0}, {0, 2}};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        gpuml_loader_config c;
        gpuml_loader_config_init_defaults(&c);
        c.path = path;
        c.fields = fields;
        c.num_fields = nfields;
        c.in_memory = modes[m][0];
        c.prefetch = modes[m][1];
        c.max_rows = 100000;
        c.max_events = 64;
        double t0 = now();
        gpuml_loader *l;
        CHECK(gpuml_loader_create(ctx, &c, &l));
        double t_create = now() - t0, best = 1e30;
        int64_t nb = 0;
        for (int rep = 0; rep < 3; rep++) {
            t0 = now();
            gpuml_batch *b;
            nb = 0;
            while (1) {
                CHECK(gpuml_loader_next(l, &b));
                if (!b)
                    break;
                nb++;
                gpuml_batch_destroy(b);
                if (step_ms > 0) {
                    struct timespec ts = {(time_t)(step_ms / 1e3), (long)(1e6 * step_ms) % 1000000000L};
                    nanosleep(&ts, NULL);
                }
            }
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        gpuml_loader_destroy(l);
        printf("  %-9s prefetch %d: create %.3f s, epoch %.3f s (%lld batches, %.0f MB/s, %.2f ms/batch)\n",
               modes[m][0] ? "in-memory" : "stream", modes[m][1], t_create, best, (long long)nb, bytes / 1e6 / best,
               1e3 * best / (double)nb);
    }
}

static void bench_tensor(gpuml_ctx *ctx, double mb, const char *dir)
{
    int64_t n = (int64_t)(mb * 1e6 / 4);
    gpuml_tensor *t;
    CHECK(gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){n / 1024, 1024}, &t));
    float *p = gpuml_tensor_data(t);
    for (int64_t i = 0; i < gpuml_tensor_numel(t); i++)
        p[i] = (float)i;
    char path[1024];
    snprintf(path, sizeof path, "%s/bench_tensor.h5", dir);
    double bw = 1e30, br = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        gpuml_h5_writer *w;
        CHECK(gpuml_h5_writer_open(path, &w));
        CHECK(gpuml_h5_writer_write(w, ctx, "/weights/big", t));
        CHECK(gpuml_h5_writer_commit(w)); /* includes fsync */
        double t1 = now();
        gpuml_h5_reader *r;
        CHECK(gpuml_h5_reader_open(path, &r));
        CHECK(gpuml_h5_reader_read(r, ctx, "/weights/big", t));
        gpuml_h5_reader_close(r);
        double t2 = now();
        if (t1 - t0 < bw)
            bw = t1 - t0;
        if (t2 - t1 < br)
            br = t2 - t1;
    }
    double bytes = (double)gpuml_tensor_nbytes(t);
    printf("tensor %.0f MB f32, Fletcher32: write+fsync+rename %.3f s (%.0f MB/s), read %.3f s (%.0f MB/s)\n",
           bytes / 1e6, bw, bytes / 1e6 / bw, br, bytes / 1e6 / br);
    gpuml_tensor_destroy(t);
    remove(path);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    double step_ms = 0, tensor_mb = 0;
    cli_rest fields = {0, NULL};
    cli_opt table[] = {
        CLI_F64("step-ms", &step_ms, 0, 1e6, "loader: simulated training step per batch (sleep)"),
        {.name = "tensor", .type = CLI_T_F64, .dst = &tensor_mb, .lo = 0, .hi = 1e6, .metavar = "MB", .help = "write + read one f32 tensor of this size in PATH (a directory)"},
        CLI_POS_STR("PATH", &path, 1, "the dataset (loader), or a directory (--tensor)"),
        CLI_POS_REST("FIELD", &fields, 0, "loader: the fields to read"), CLI_END};
    cli_parse(argc, argv, "throughput of the io part: loader epochs, or one tensor written and read", table);
    if (tensor_mb <= 0 && fields.n == 0) {
        fprintf(stderr, "bench_io: name at least one FIELD to read (or --tensor MB)\n");
        return 2;
    }
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    gpuml_ctx *ctx;
    CHECK(gpuml_ctx_create(&cfg, &ctx));
    if (tensor_mb > 0) {
        bench_tensor(ctx, tensor_mb, path);
    } else {
        if (step_ms > 0)
            printf("simulated step: %g ms per batch\n", step_ms);
        bench_loader(ctx, path, fields.n, (const char **)fields.v, step_ms);
    }
    gpuml_ctx_destroy(ctx);
    return 0;
}
