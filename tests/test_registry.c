/*
 * tests/test_registry.c - every op of the registry (kernels/ops.def) is
 * tested. Runs each op-table test program given on the command line with
 * --list-cases (tests/harness.h) and fails when, for an op of GPUML_OPS:
 *   - no table has a row of its name (no forward case against a reference);
 *   - it is differentiable and its row checks no backward (no finite-
 *     difference case);
 *   - the build has CUDA and the op names no CUDA launcher, or CUDA devices
 *     are present (a GPU, or the emulated platform) and its row does not
 *     run on them;
 * and when a table row names no registry op, or two rows share a name.
 *
 *     test_registry [--drop NAME] [--drop-backward NAME] [--drop-cuda NAME] TEST_PROGRAM...
 *
 * The --drop options pretend that the row NAME is missing, checks no
 * backward, or does not run on CUDA: the should_fail tests in
 * tests/meson.build run them, so that a check that cannot fail is caught.
 * Entry points are checked at compile time: each named CPU driver and CUDA
 * launcher must be declared (kernels/kernels.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpuml/gpuml.h>

#include "kernels.h"
#include "registry.h"

typedef struct reg_op {
    const char *name, *cpu, *cuda;
    int kind, diff;
} reg_op;

/* The registry, with each entry point's address taken in an unevaluated
 * sizeof: an undeclared driver or launcher stops the compilation here. */
#define ROW(name, kind, cpu, cuda, diff)                                                          \
    {name, #cpu, #cuda, (int)GPUML_OPK_##kind + 0 * (int)sizeof(&cpu) + 0 * (int)sizeof(&cuda), diff},
static const reg_op ops[] = {GPUML_OPS(ROW)};
#undef ROW
enum { NOPS = sizeof ops / sizeof ops[0] };

#define MAX_ROWS 512
typedef struct row {
    char name[96], prog[256];
    int variants, bwd, cuda, used;
} row;
static row rows[MAX_ROWS];
static int nrows;

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Appends the rows `prog --list-cases` prints; 0 or 1 on failure. */
static int read_table(const char *prog)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' --list-cases", prog);
    FILE *f = popen(cmd, "r");
    if (!f) {
        printf("FAIL: cannot run %s\n", prog);
        return 1;
    }
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, f)) {
        row r = {0};
        if (sscanf(line, "case %95s %d %d %d", r.name, &r.variants, &r.bwd, &r.cuda) != 4)
            continue; /* other output of the program */
        if (nrows == MAX_ROWS) {
            printf("FAIL: more than %d table rows\n", MAX_ROWS);
            pclose(f);
            return 1;
        }
        snprintf(r.prog, sizeof r.prog, "%s", basename_of(prog));
        rows[nrows++] = r;
        got++;
    }
    int rc = pclose(f);
    if (rc != 0 || got == 0) {
        printf("FAIL: %s --list-cases exited with %d after %d rows (is its main calling H_LIST_CASES?)\n", prog, rc,
               got);
        return 1;
    }
    return 0;
}

static row *find_row(const char *name)
{
    for (int i = 0; i < nrows; i++)
        if (!strcmp(rows[i].name, name))
            return &rows[i];
    return NULL;
}

int main(int argc, char **argv)
{
    const char *drop = NULL, *drop_bwd = NULL, *drop_cuda = NULL;
    int fails = 0, nprogs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--drop") && i + 1 < argc)
            drop = argv[++i];
        else if (!strcmp(argv[i], "--drop-backward") && i + 1 < argc)
            drop_bwd = argv[++i];
        else if (!strcmp(argv[i], "--drop-cuda") && i + 1 < argc)
            drop_cuda = argv[++i];
        else {
            fails += read_table(argv[i]);
            nprogs++;
        }
    }
    if (!nprogs) {
        printf("usage: %s [--drop NAME] [--drop-backward NAME] [--drop-cuda NAME] TEST_PROGRAM...\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < nrows; i++) {
        if (drop && !strcmp(rows[i].name, drop))
            rows[i].name[0] = 0; /* an empty name matches no op */
        if (drop_bwd && !strcmp(rows[i].name, drop_bwd))
            rows[i].bwd = 0;
        if (drop_cuda && !strcmp(rows[i].name, drop_cuda))
            rows[i].cuda = 0;
    }

    int has_cuda = gpuml_has_feature("cuda"), cuda_devices = gpuml_cuda_device_count() > 0;
    int nbwd = 0;
    for (int i = 0; i < NOPS; i++) {
        const reg_op *op = &ops[i];
        for (int j = 0; j < i; j++)
            if (!strcmp(ops[j].name, op->name)) {
                printf("FAIL registry: '%s' is listed twice in kernels/ops.def\n", op->name);
                fails++;
            }
        row *r = find_row(op->name);
        if (!r || r->variants < 1) {
            printf("FAIL %s: no forward test case (add a row named \"%s\" to an op table in tests/, see "
                   "CONTRIBUTING.md)\n",
                   op->name, op->name);
            fails++;
            continue;
        }
        r->used++;
        if (op->diff && !r->bwd) {
            printf("FAIL %s: differentiable in kernels/ops.def, but its row in %s checks no backward (run_bwd "
                   "NULL)\n",
                   op->name, r->prog);
            fails++;
        }
        nbwd += op->diff && r->bwd;
        if (has_cuda && !strcmp(op->cuda, "GPUML_NO_CUDA")) {
            printf("FAIL %s: this build has CUDA, and the op has no CUDA launcher in kernels/ops.def\n", op->name);
            fails++;
        }
        if (cuda_devices && !r->cuda) {
            printf("FAIL %s: CUDA devices are present, and its row in %s does not run on them\n", op->name, r->prog);
            fails++;
        }
    }
    for (int i = 0; i < nrows; i++) {
        if (!rows[i].name[0])
            continue;
        if (find_row(rows[i].name) != &rows[i]) {
            printf("FAIL %s: two table rows have this name (one in %s)\n", rows[i].name, rows[i].prog);
            fails++;
        } else if (!rows[i].used) {
            printf("FAIL %s: the row in %s names no op of kernels/ops.def (add the op there, or fix the name)\n",
                   rows[i].name, rows[i].prog);
            fails++;
        }
    }
    printf("%d registry ops, %d table rows from %d programs: %d ops with a backward checked; CUDA %s\n", (int)NOPS,
           nrows, nprogs, nbwd,
           cuda_devices ? "rows checked (devices present)" : has_cuda ? "launchers checked (no device)" : "not built");
    printf("%s\n", fails ? "FAILED" : "OK");
    return fails ? 1 : 0;
}
