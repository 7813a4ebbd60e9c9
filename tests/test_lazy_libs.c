/* tests/test_lazy_libs.c - optional GPU libraries are loaded lazily
 * (libgpuml/core/dynlib.h): making contexts and running ops maps no
 * libnccl; a library that cannot be opened is a clear UNSUPPORTED status
 * naming the variable that overrides it; and, where libnccl is installed,
 * the first use loads it. (tests/check_needed.sh checks the other half:
 * libgpuml.so has no DT_NEEDED entry for it.) cuDNN, whose function table is
 * core/cudnn_api.h, follows the same rule: ordinary use maps no
 * libcudnn either. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gpuml/gpuml.h>

#ifndef GPUML_NCCL_FILE
#define GPUML_NCCL_FILE "libnccl"
#endif

/* True when a file whose name contains `lib` is mapped into this process. */
static bool mapped(const char *lib)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, lib) != NULL;
    fclose(f);
    return found;
}

static void test_nothing_loaded_by_ordinary_use(void **state)
{
    (void)state;
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    gpuml_ctx *ctx = NULL;
    assert_int_equal(gpuml_ctx_create(&cfg, &ctx), GPUML_OK);
    float x[4] = {1, -2, 3, -4};
    gpuml_tensor *t = NULL;
    assert_int_equal(gpuml_tensor_wrap(x, cfg.device, GPUML_F32, 1, (int64_t[]){4}, NULL, NULL, &t), GPUML_OK);
    assert_int_equal(gpuml_relu(ctx, t, t), GPUML_OK);
    assert_true(x[1] == 0.0f && x[2] == 3.0f);
    gpuml_tensor_destroy(t);
    gpuml_ctx_destroy(ctx);
    assert_false(mapped("libnccl"));
    assert_false(mapped("libcudnn"));
}

static void test_missing_library_is_unsupported(void **state)
{
    (void)state;
    if (!gpuml_has_feature("nccl"))
        skip();
    setenv("GPUML_NCCL_LIBRARY", "/nonexistent/libnccl-for-gpuml-test.so", 1);
    char hex[257];
    memset(hex, 'x', sizeof hex);
    gpuml_status st = gpuml_comm_nccl_unique_id(hex);
    unsetenv("GPUML_NCCL_LIBRARY");
    assert_int_equal(st, GPUML_ERR_UNSUPPORTED);
    const char *msg = gpuml_last_error();
    assert_non_null(strstr(msg, "gpuml_comm_nccl_unique_id"));
    assert_non_null(strstr(msg, "libnccl-for-gpuml-test.so"));
    assert_non_null(strstr(msg, "GPUML_NCCL_LIBRARY"));
    assert_int_equal(hex[0], 'x'); /* output untouched */
    assert_false(mapped("libnccl"));
}

static void test_first_use_loads_nccl(void **state)
{
    (void)state;
    if (!gpuml_has_feature("nccl"))
        skip();
    char hex[257];
    gpuml_status st = gpuml_comm_nccl_unique_id(hex);
    if (st == GPUML_ERR_UNSUPPORTED) /* built with nccl.h, but no libnccl on this machine */
        skip();
    /* Without a GPU NCCL may still refuse to make an id; either way it was
     * opened. */
    assert_true(st == GPUML_OK || st == GPUML_ERR_NCCL);
    /* the file the build opens: libnccl, or the emulator's shim library */
    assert_true(mapped(GPUML_NCCL_FILE));
    if (st == GPUML_OK)
        assert_int_equal(strlen(hex), 256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_loaded_by_ordinary_use),
        cmocka_unit_test(test_missing_library_is_unsupported),
        cmocka_unit_test(test_first_use_loads_nccl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
