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
 *   - runs it again with 1 and 2 CPU threads and requires bitwise equality;
 *   - checks the backward against central finite differences of the
 *     double reference of loss = sum(gout * out).
 */
#ifndef GPUML_TESTS_HARNESS_H
#define GPUML_TESTS_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include <gpuml/gpuml.h>

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
} h_case;

/* ---- general helpers -------------------------------------------------- */
uint64_t h_rand_u64(uint64_t *state);
double h_rand_uniform(uint64_t *state, double lo, double hi);
double h_rand_normal(uint64_t *state);

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
