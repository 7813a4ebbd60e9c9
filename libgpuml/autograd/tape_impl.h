/* libgpuml/autograd/tape_impl.h - the tape's internals, shared by the
 * differentiable ops (ad_*.c) and the layers (libgpuml/nn/). */
#ifndef GPUML_AUTOGRAD_TAPE_IMPL_H
#define GPUML_AUTOGRAD_TAPE_IMPL_H

#include "core/arena.h"
#include "core/internal.h"
#include "gpuml/autograd.h"

struct gpuml_node;

struct gpuml_var {
    gpuml_tensor value;        /* descriptor; data in the arena, a slab or caller memory */
    gpuml_tensor grad;         /* descriptor; data NULL until a gradient is stored        */
    bool requires_grad;
    bool is_param;
    uint64_t grad_epoch;       /* non-params: grad is valid when == tape->backward_epoch   */
    struct gpuml_node *producer;
    /* parameters only */
    int group;
    uint64_t use_step;         /* tape step in which first_use was recorded               */
    struct gpuml_node *first_use;
    uint64_t hook_epoch;       /* backward epoch in which the hook has fired              */
};

typedef struct gpuml_node gpuml_node;
typedef gpuml_status (*gpuml_backward_fn)(gpuml_tape *t, gpuml_node *n);

#define GPUML_NODE_AUX 6

struct gpuml_node {
    gpuml_backward_fn backward;
    const char *op;            /* for messages */
    gpuml_node *prev;
    int n_in, n_out;
    gpuml_var **in;
    gpuml_var **out;
    int ip[6];
    float fp[4];
    uint64_t u64[2];
    gpuml_tensor *aux[GPUML_NODE_AUX]; /* saved tensors (argidx, statistics, ...) */
    const gpuml_tensor *ext[4];        /* caller tensors kept by reference (indices, row splits) */
};

struct gpuml_tape {
    gpuml_ctx *ctx;
    gpuml_arena *arena;
    gpuml_node *last;
    int num_nodes;
    bool grad_enabled;
    bool training;
    uint64_t step;             /* bumped by reset                                          */
    uint64_t backward_epoch;   /* bumped by every backward                                 */
    gpuml_grad_hook hook;
    void *hook_user;
    gpuml_var *const *tracked; /* parameters reported at the end of backward if unused     */
    int n_tracked;
    /* Gradient buffers no longer needed in this backward (an intermediate's
     * gradient once its producer has run, a committed temporary), kept for
     * reuse by later gradients of the same byte size: the live gradient
     * memory of a backward pass stays near its widest point, not its sum. */
    struct gpuml_grad_slot *pool;
    int n_pool, cap_pool;
};

typedef struct gpuml_grad_slot {
    void *ptr;
    size_t bytes;
} gpuml_grad_slot;

/* A new var in the arena with an uninitialised value of the given shape. */
gpuml_status gpuml_ad_new_var(gpuml_tape *t, gpuml_dtype dtype, int ndim, const int64_t *shape, gpuml_var **out,
                              const char *fn);
/* A new arena tensor (saved state, temporaries). */
gpuml_status gpuml_ad_new_tensor(gpuml_tape *t, gpuml_dtype dtype, int ndim, const int64_t *shape,
                                 gpuml_tensor **out, const char *fn);

/* A descriptor in the arena over existing memory (no data allocated). */
gpuml_status gpuml_ad_new_view(gpuml_tape *t, void *data, gpuml_dtype dtype, int ndim, const int64_t *shape,
                               gpuml_tensor **out, const char *fn);

/* True when an op with these inputs must be recorded. */
bool gpuml_ad_needs_grad(const gpuml_tape *t, gpuml_var *const *in, int n);

/* Record a node (call only when gpuml_ad_needs_grad); marks the outputs as
 * requiring grad. *node may be NULL on success when... never: returns the
 * node for the caller to fill ip/fp/aux. */
gpuml_status gpuml_ad_record(gpuml_tape *t, const char *op, gpuml_backward_fn bw, gpuml_var *const *in, int n_in,
                             gpuml_var *const *out, int n_out, gpuml_node **node, const char *fn);

/* ---- gradient plumbing for backward functions ---------------------------
 * The upstream gradient of an output (NULL when none reached it). */
gpuml_tensor *gpuml_ad_out_grad(const gpuml_tape *t, const gpuml_var *v);

/* Where a backward function writes d/dv:
 *   - NULL: v needs no gradient, skip it;
 *   - v's own gradient buffer, to overwrite (first contribution), or
 *   - a temporary, which gpuml_ad_grad_commit then adds into v's gradient.
 * Always pair with gpuml_ad_grad_commit. */
gpuml_status gpuml_ad_grad_begin(gpuml_tape *t, gpuml_var *v, gpuml_tensor **dst, const char *fn);
gpuml_status gpuml_ad_grad_commit(gpuml_tape *t, gpuml_var *v, gpuml_tensor *dst, const char *fn);

/* For ops that can accumulate natively (GEMM with beta = 1): returns v's
 * gradient buffer and whether to add into it (1) or overwrite it (0).
 * *dst NULL: skip. */
gpuml_status gpuml_ad_grad_native(gpuml_tape *t, gpuml_var *v, gpuml_tensor **dst, int *accumulate, const char *fn);

#endif
