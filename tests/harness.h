/*
 * tests/harness.h - shared test helpers and the op-table machinery.
 *
 * An op case describes inputs and outputs (dtype, shape, how values are
 * drawn), a double-precision reference, and how to run the op (and its
 * backward) through gpuml. harness_run_case() then, on every backend
 * present:
 *   - runs the op with outputs surrounded by guard elements and pre-filled
 *     with a NaN sentinel (an element the op forgets to write shows up);
 *   - compares every output with the reference within the case's bound,
 *     requiring NaN/Inf exactly where the reference has them;
 *   - runs it again with 1 and 2 CPU threads and on every executor
 *     (serial, OpenMP, gpuml's pool, TBB where built) with every loop cut
 *     into pieces, and requires bitwise equality;
 *   - checks the backward against central finite differences of the
 *     double reference of loss = sum(gout * out).
 */
#ifndef GPUML_TESTS_HARNESS_H
#define GPUML_TESTS_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include <gpuml/gpuml.h>
#include <gpuml/testing.h> /* fault injection, loop cutting: tests only */

#define H_MAXT 6

typedef enum {
    V_NORMAL = 0, /* N(0, 1)                                      */
    V_POS,        /* uniform [0.2, 3]                             */
    V_WIDE,       /* uniform [-6, 6]                              */
    V_INDEX,      /* integers in [lo, hi] (index_lo/hi)           */
    V_SPLITS,     /* row_splits over index_hi rows, index_lo events */
    V_TIES,       /* small integers: many exact ties              */
    V_HUGE,       /* uniform [-40, 40]                            */
    V_UNIT,       /* uniform [0.05, 0.95]                         */
    V_CAST,       /* mix of magnitudes up to 1e10, both signs, and integers near type limits */
    V_CUSTOM,     /* io->gen fills the values (inputs before it are already drawn) */
} h_kind;

struct h_case_io;
/* Custom input generator: write numel(in i) values into vals[i]; vals[0..i-1]
 * hold the inputs drawn before it; rng is the case's generator state. */
typedef void (*h_gen_fn)(const struct h_case_io *io, int i, double *const *vals, uint64_t *rng);

typedef struct h_case_io {
    int n_in, n_out;
    gpuml_dtype in_dt[H_MAXT], out_dt[H_MAXT];
    int in_nd[H_MAXT], out_nd[H_MAXT];
    int64_t in_shape[H_MAXT][GPUML_MAX_DIMS], out_shape[H_MAXT][GPUML_MAX_DIMS];
    h_kind in_kind[H_MAXT];
    int64_t index_lo[H_MAXT], index_hi[H_MAXT];
    int diff_in[H_MAXT];   /* gradient checked for this input            */
    int diff_out[H_MAXT];  /* this output carries a gradient             */
    int inout[H_MAXT];     /* output initialised from this input (or -1) */
    int ip[6];             /* op parameters                              */
    double fp[4];
    h_gen_fn gen;          /* for V_CUSTOM inputs                        */
    int op;                /* the case's h_case.op, set before setup     */
} h_case_io;

typedef struct h_case {
    const char *name;
    int nvariants;
    /* Fill io for variant v (shapes, kinds, parameters). */
    void (*setup)(int v, h_case_io *io);
    /* Reference: in[i] holds numel(in i) doubles, out[o] to be written. */
    void (*ref)(const h_case_io *io, double *const *in, double *const *out);
    gpuml_status (*run)(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in, gpuml_tensor *const *out);
    /* NULL when not differentiable. gin[i] is NULL for non-diff inputs. */
    gpuml_status (*run_bwd)(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                            gpuml_tensor *const *out, gpuml_tensor *const *gout, gpuml_tensor *const *gin);
    double atol, rtol;       /* forward bound: |got-ref| <= atol + rtol*|ref| */
    double grad_tol;         /* backward: relative to max |fd| (default 2e-3) */
    int op;                  /* copied to io->op: the enum value of a family row */
} h_case;

/* ---- general helpers -------------------------------------------------- */
uint64_t h_rand_u64(uint64_t *state);
double h_rand_uniform(uint64_t *state, double lo, double hi);
double h_rand_normal(uint64_t *state);

/* A CPU context on the given executor (NULL on failure, message printed). */
gpuml_ctx *h_ctx_on(const gpuml_executor *ex);
/* The executors op tables are checked on: i in [0, h_num_executors()). */
int h_num_executors(void);
const gpuml_executor *h_executor(int i, const char **name);
/* The TBB adapter (examples/cmssw/gpuml_tbb_executor.h) on an arena of 3,
 * or NULL in a build without TBB (tests/harness_tbb.cc). */
const gpuml_executor *h_tbb_executor(void);
gpuml_ctx *h_ctx(gpuml_device_type type, int nthreads);
/* Tensor on ctx's device filled from host data (nbytes must match). */
gpuml_tensor *h_tensor(gpuml_ctx *ctx, gpuml_dtype dt, int nd, const int64_t *shape, const void *host);
gpuml_tensor *h_tensor_f32(gpuml_ctx *ctx, int nd, const int64_t *shape, const float *host);
/* Read a tensor back into malloc'd host memory (caller frees). */
void *h_read(gpuml_ctx *ctx, const gpuml_tensor *t);
/* A CPU tensor holding a copy of t (any device; synchronises ctx's stream),
 * so that host-side checks can read it. Caller destroys; NULL on error. */
gpuml_tensor *h_host_copy(gpuml_ctx *ctx, const gpuml_tensor *t);
int64_t h_numel(int nd, const int64_t *shape);

/* Run one case on all backends; returns the number of failures (and
 * prints each). */
int harness_run_case(const h_case *c);

/* ---- op tables keyed by the op registry (kernels/ops.def) -------------
 * A test file keeps its cases in one table, each row named by its op's
 * registry name ("unary.neg", "knn"; c->op carries the enum value for
 * family rows):
 *
 *     const h_case h_cases[] = {
 *         {"unary.neg", 5, setup_unary, ref_unary, run_unary, bwd_unary, 1e-6, 2e-6, 2e-3, GPUML_UNARY_NEG},
 *         ...
 *     };
 *     const int h_ncases = H_N(h_cases);
 *     static void test_unary(void **s) { assert_int_equal(H_RUN("unary"), 0); }
 *     int main(int argc, char **argv)
 *     {
 *         if (H_LIST_CASES(argc, argv))
 *             return 0;
 *         ...
 *         return H_TABLE_DONE(cmocka_run_group_tests_name(...));
 *     }
 *
 * `test_x --list-cases` prints the table (one line per row: name,
 * variants, whether it checks a backward, whether it runs on CUDA) for
 * tests/test_registry.c, which fails when a registry op has no row. */
#define H_N(a) ((int)(sizeof(a) / sizeof((a)[0])))
/* The table of the test program that defines it (const h_case h_cases[] =
 * {...}; const int h_ncases = H_N(h_cases);), and shorthands for it. */
extern const h_case h_cases[];
extern const int h_ncases;
#define H_RUN(...) h_run_cases(h_cases, h_ncases, __VA_ARGS__, (const char *)NULL)
#define H_LIST_CASES(argc, argv) h_list_cases(argc, argv, h_cases, h_ncases)
#define H_TABLE_DONE(rc) h_table_done(rc, h_cases, h_ncases)
/* Run every row whose name is one of the NULL-terminated patterns, or
 * starts with a pattern and a dot ("unary" runs "unary.neg", ...). Returns
 * the number of failures; a pattern that matches no row is one. */
int h_run_cases(const h_case *cases, int n, ...);
/* With argv[1] == "--list-cases": print the table to stdout, return 1. */
int h_list_cases(int argc, char **argv, const h_case *cases, int n);
/* The exit status of main: rc, or 1 (with a message) when rc is 0 but a
 * row of the table was never run by h_run_cases - a row listed but not
 * run would satisfy test_registry without testing anything. */
int h_table_done(int rc, const h_case *cases, int n);

/* Declaring a case's inputs and outputs in a setup function:
 * IN(io, 0, GPUML_F32, V_NORMAL, 10, 3) is input 0, f32 [10, 3];
 * OUT(io, 0, GPUML_F32, 10) output 0, f32 [10]; IN0 a scalar input.
 * Floating inputs / outputs take part in the gradient check. */
void h_set_in(h_case_io *io, int i, gpuml_dtype dt, h_kind k, int nd, const int64_t *shape);
void h_set_out(h_case_io *io, int o, gpuml_dtype dt, int nd, const int64_t *shape);
#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define IN(io, i, dt, k, ...) h_set_in(io, i, dt, k, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))
#define OUT(io, o, dt, ...) h_set_out(io, o, dt, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))
#define IN0(io, i, dt, k) h_set_in(io, i, dt, k, 0, NULL)

/* Run op(ctx, user) with its n-th allocation failing, for n = 1, 2, ...
 * until it succeeds: each failure must be OUT_OF_MEMORY, leave `out` as it
 * was and return every byte. Prints each problem (`name` says which op) and
 * returns their number; an op that never allocates, or still fails after
 * 99, is a problem too. */
typedef gpuml_status (*h_op_fn)(gpuml_ctx *ctx, void *user);
int h_every_allocation_fails(gpuml_ctx *ctx, h_op_fn op, void *user, gpuml_tensor *out, const char *name);

/* got against a peer's reference `want` (f32, host): |a - b| <= tol *
 * (max|want| + |b|) + 1e-6 - scaled by the tensor's largest value, with an
 * absolute floor for float32 noise on sums that vanish in exact
 * arithmetic. Prints up to 4 offenders (labelled `peer`); returns 0 or 1. */
int h_compare_scaled(const char *what, const gpuml_tensor *got, const gpuml_tensor *want, double tol,
                     const char *peer);

/* Number of backends present (CPU, plus CUDA when a GPU is usable). */
int h_num_backends(void);
gpuml_device_type h_backend(int i);

#endif
