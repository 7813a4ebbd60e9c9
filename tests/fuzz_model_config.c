/* tests/fuzz_model_config.c - libFuzzer target for the model config parser:
 * any byte string given to gpuml_model_create must give GPUML_OK or a clean
 * error (no crash, no leak, no sanitizer report), and a config that builds
 * must rebuild from its own normalised form.
 *
 *   tools/fuzz.sh [seconds]     (builds with clang + ASan + libFuzzer) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gpuml/gpuml.h>

static gpuml_ctx *g_ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ctx) {
        gpuml_ctx_config cfg;
        gpuml_ctx_config_init_defaults(&cfg);
        cfg.num_threads = 1;
        cfg.log_level = GPUML_LOG_OFF;
        if (gpuml_ctx_create(&cfg, &g_ctx) != GPUML_OK)
            return 0;
    }
    char *json = malloc(size + 1);
    if (!json)
        return 0;
    memcpy(json, data, size);
    json[size] = '\0';
    gpuml_model *m = NULL;
    gpuml_status st = gpuml_model_create(g_ctx, json, &m);
    if (st == GPUML_OK) {
        char summary[4096];
        gpuml_model_summary(m, summary, sizeof summary);
        gpuml_model *m2 = NULL;
        if (gpuml_model_create(g_ctx, gpuml_model_config(m), &m2) != GPUML_OK)
            abort(); /* a normalised config must build: a bug worth a crash report (test code) */
        if (gpuml_model_param_count(m2) != gpuml_model_param_count(m))
            abort();
        gpuml_model_destroy(m2);
    } else if (m != NULL || gpuml_last_error()[0] == '\0') {
        abort(); /* a failure must leave no model and leave a message */
    }
    gpuml_model_destroy(m);
    free(json);
    return 0;
}
