/* Per-event features of a ragged batch: y = relu(x W^T + b), then the mean
 * of y over each event's rows. Build: cc ex.c $(pkg-config --cflags --libs gpuml) */
#include <gpuml/gpuml.h>
#include <stdio.h>

#include "common/cli.h"                            /* --help, strict options */

#define CHECK(call) do { gpuml_status s_ = (call); if (s_ != GPUML_OK) { \
    fprintf(stderr, "%s: %s\n", gpuml_status_string(s_), gpuml_last_error()); return 1; } } while (0)

int main(int argc, char **argv)
{
    cli_opt no_options[] = {CLI_END};
    cli_parse(argc, argv, "the README example: y = relu(x W^T + b), mean per event", no_options);
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);          /* CPU; set cfg.device for a GPU */
    gpuml_ctx *ctx;
    CHECK(gpuml_ctx_create(&cfg, &ctx));
    float x[5 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 0, 1, 0, 1, 0};   /* 5 hits, 3 features */
    float w[2 * 3] = {0.5f, -1, 0.25f, 1, 1, 1}, b[2] = {0.1f, -2};
    int64_t splits[3] = {0, 2, 5};                  /* event 0: rows 0-1, event 1: rows 2-4 */
    gpuml_tensor *tx, *tw, *tb, *trs, *ty, *tm;
    CHECK(gpuml_tensor_wrap(x, cfg.device, GPUML_F32, 2, (int64_t[]){5, 3}, NULL, NULL, &tx));
    CHECK(gpuml_tensor_wrap(w, cfg.device, GPUML_F32, 2, (int64_t[]){2, 3}, NULL, NULL, &tw));
    CHECK(gpuml_tensor_wrap(b, cfg.device, GPUML_F32, 1, (int64_t[]){2}, NULL, NULL, &tb));
    CHECK(gpuml_tensor_wrap(splits, cfg.device, GPUML_I64, 1, (int64_t[]){3}, NULL, NULL, &trs));
    CHECK(gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){5, 2}, &ty));
    CHECK(gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){2, 2}, &tm));
    CHECK(gpuml_linear(ctx, tx, tw, tb, ty));
    CHECK(gpuml_relu(ctx, ty, ty));
    CHECK(gpuml_segment_reduce(ctx, GPUML_REDUCE_MEAN, ty, trs, tm, NULL));
    float m[4];
    CHECK(gpuml_tensor_copy_to_host(ctx, tm, m, sizeof m));
    for (int e = 0; e < 2; e++)
        printf("event %d: per-event mean [%.3f, %.3f]\n", e, m[2 * e], m[2 * e + 1]);
    gpuml_tensor *all[] = {tx, tw, tb, trs, ty, tm};
    for (int i = 0; i < 6; i++)
        gpuml_tensor_destroy(all[i]);
    gpuml_ctx_destroy(ctx);
    return 0;
}
