/* readme_train: the README's "Training from C" as a complete program: the
 * GravNet model of examples/configs/gravnet_oc.json trained with object
 * condensation on a gen_dataset hgcal file, then saved.
 *
 *   readme_train --data train.h5 [--config FILE] [--out model.h5] [--max-steps N]
 *
 * The README shows the lines from gpuml_model_create_from_file to
 * gpuml_model_save verbatim (tests/test_readme.py checks that they stay
 * so, and runs this program). examples/train_gravnet.c is the full driver. */
#include <gpuml/gpuml.h>
#include <stdio.h>

#include "common/cli.h"

#define CHECK(call) do { gpuml_status s_ = (call); if (s_ != GPUML_OK) { \
    fprintf(stderr, "%s: %s\n", gpuml_status_string(s_), gpuml_last_error()); return 1; } } while (0)

int main(int argc, char **argv)
{
    const char *data = NULL, *config = cli_data_path("configs/gravnet_oc.json"), *out = "model.h5";
    int64_t max_steps = 0;
    cli_opt opts[] = {
        CLI_STR_REQ("data", &data, "FILE", "training events (gen_dataset hgcal)"),
        CLI_STR("config", &config, "FILE", "model config (JSON)"),
        CLI_STR("out", &out, "FILE", "the trained model"),
        CLI_I64("max-steps", &max_steps, 0, INT64_MAX, "stop after N steps (0: one epoch)"), CLI_END};
    cli_parse(argc, argv, "the README's training loop: GravNet + object condensation, one epoch", opts);

    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    gpuml_ctx *ctx;
    CHECK(gpuml_ctx_create(&cfg, &ctx));
    const char *fields[] = {"features", "truth_id"}; /* the model input, the loss target */
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = data, lc.fields = fields, lc.num_fields = 2, lc.max_events = 16;
    gpuml_loader *loader;
    CHECK(gpuml_loader_create(ctx, &lc, &loader));

    gpuml_model *m;
    CHECK(gpuml_model_create_from_file(ctx, config, &m));  /* examples/configs/gravnet_oc.json */
    CHECK(gpuml_model_init_params(m, /*seed*/ 1));
    gpuml_trainer_config tc;
    gpuml_trainer_config_init_defaults(&tc);         /* object condensation, AdamW */
    tc.oc.max_objects = 8;                           /* truth ids < 8 (gen_dataset: at most 6 showers) */
    gpuml_trainer *tr;
    CHECK(gpuml_trainer_create(m, &tc, &tr));
    gpuml_batch *batch;
    int64_t step = 0;
    while (gpuml_loader_next(loader, &batch) == GPUML_OK && batch) {
        gpuml_step_stats st;
        CHECK(gpuml_trainer_step_batch(tr, batch, &st));  /* st.loss, st.events */
        gpuml_batch_destroy(batch);
        printf("step %lld: loss %.4f over %lld events\n", (long long)++step, st.loss, (long long)st.events);
        if (step == max_steps)
            break;
    }
    CHECK(gpuml_model_save(m, out));                 /* weights + config, one HDF5 file */
    printf("saved %s\n", out);

    gpuml_trainer_destroy(tr);
    gpuml_model_destroy(m);
    gpuml_loader_destroy(loader);
    gpuml_ctx_destroy(ctx);
    return 0;
}
