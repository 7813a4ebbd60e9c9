/* libgpuml/nn/layer.h - how a layer type plugs into the model builder.
 *
 * A layer type is a gpuml_layer_i (ggml-style interface struct): build()
 * reads the node's JSON attributes, checks its inputs, declares parameters
 * and buffers and sets the output's feature count and kind; forward() runs
 * it on a tape. Registering a new type = one entry in gpuml_layer_types
 * (model.c). */
#ifndef GPUML_NN_LAYER_H
#define GPUML_NN_LAYER_H

#include <jansson.h>

#include "autograd/tape_impl.h"
#include "gpuml/model.h"

typedef enum { GPUML_FEAT_ROW = 0, GPUML_FEAT_EVENT = 1 } gpuml_feat_kind;

typedef struct gpuml_feat {
    int64_t features;
    gpuml_feat_kind kind;
    int rows; /* per-row values: 0 the model's input rows, 1 the rows kept by
                 a truncate node (set by the builder, not by layers) */
} gpuml_feat;

typedef struct gpuml_layer gpuml_layer;
typedef struct gpuml_build gpuml_build;
typedef struct gpuml_fwd gpuml_fwd;

typedef enum {
    GPUML_INIT_ZEROS = 0,
    GPUML_INIT_ONES,
    GPUML_INIT_UNIFORM, /* U(-bound, bound) */
    GPUML_INIT_NEG_INF, /* -inf / +inf: open clipping bounds (standardize) */
    GPUML_INIT_POS_INF,
} gpuml_init_kind;

typedef struct gpuml_layer_i {
    const char *op;
    int min_inputs, max_inputs; /* max < 0: unbounded */
    gpuml_status (*build)(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out);
    gpuml_status (*forward)(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out);
} gpuml_layer_i;

#define GPUML_LAYER_ATTRS 16

struct gpuml_layer {
    const gpuml_layer_i *iface;
    char *name;
    int index;
    int n_in;
    int *inputs;          /* value ids: [0, n_model_inputs) inputs, then nodes */
    gpuml_feat out;
    int first_param, n_params;
    int first_buffer, n_buffers;
    int64_t iattr[GPUML_LAYER_ATTRS];
    double fattr[GPUML_LAYER_ATTRS];
};

/* ---- build-time helpers (model.c) --------------------------------------- */
/* Attribute readers: a missing optional attribute takes the default (and is
 * written into the normalised config); a wrong type or range fails with the
 * node and field named. required != 0: missing is an error. */
gpuml_status gpuml_attr_int(gpuml_build *b, gpuml_layer *l, const char *key, int required, int64_t def, int64_t min,
                            int64_t max, int64_t *out);
gpuml_status gpuml_attr_float(gpuml_build *b, gpuml_layer *l, const char *key, int required, double def, double min,
                              double max, double *out);
/* A non-empty array of integers in [min, max], at most cap of them. */
gpuml_status gpuml_attr_ints(gpuml_build *b, gpuml_layer *l, const char *key, int64_t min, int64_t max, int64_t *out,
                             int cap, int *count);
gpuml_status gpuml_attr_bool(gpuml_build *b, gpuml_layer *l, const char *key, int def, int *out);
/* One of choices (NULL-terminated); *out = its index. */
gpuml_status gpuml_attr_enum(gpuml_build *b, gpuml_layer *l, const char *key, const char *def,
                             const char *const *choices, int *out);
gpuml_status gpuml_build_fail(gpuml_build *b, gpuml_layer *l, gpuml_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Declare a parameter / buffer of the layer (index within the layer =
 * order of declaration). */
gpuml_status gpuml_build_param(gpuml_build *b, gpuml_layer *l, const char *pname, int ndim, const int64_t *shape,
                               gpuml_init_kind init, double bound);
gpuml_status gpuml_build_buffer(gpuml_build *b, gpuml_layer *l, const char *bname, int ndim, const int64_t *shape,
                                gpuml_init_kind init);

/* ---- forward-time helpers ----------------------------------------------- */
struct gpuml_fwd {
    gpuml_model *m;
    gpuml_tape *tape;
    gpuml_ctx *ctx;
    const gpuml_tensor *row_splits; /* of the rows the current layer runs on */
    int64_t n_rows, n_events;
    gpuml_tensor *event_ids; /* [N] i32, computed on first use */
    /* the two row sets (gpuml_feat.rows): [0] the inputs', [1] truncate's
     * (trunc_len 0 until the first truncate node ran) */
    const gpuml_tensor *rs[2];
    int64_t nr[2];
    gpuml_tensor *ids[2];
    gpuml_tensor *trunc_idx; /* [nr[1]] i64: input row of each kept row */
    int64_t trunc_len;
};
gpuml_var *gpuml_fwd_param(gpuml_fwd *f, const gpuml_layer *l, int k);
gpuml_tensor *gpuml_fwd_buffer(gpuml_fwd *f, const gpuml_layer *l, int k);
/* Event index of every row ([N] i32), for per-event -> per-row broadcasts. */
gpuml_status gpuml_fwd_event_ids(gpuml_fwd *f, gpuml_tensor **ids);

/* Layer types defined in layers_*.c */
extern const gpuml_layer_i gpuml_layer_batchnorm, gpuml_layer_gravnet, gpuml_layer_edgeconv,
    gpuml_layer_dynamic_edgeconv, gpuml_layer_particlenet_block;
extern const gpuml_layer_i gpuml_layer_linear, gpuml_layer_layernorm, gpuml_layer_dropout, gpuml_layer_concat,
    gpuml_layer_add, gpuml_layer_global_pool, gpuml_layer_broadcast, gpuml_layer_relu, gpuml_layer_gelu,
    gpuml_layer_tanh, gpuml_layer_sigmoid, gpuml_layer_softplus, gpuml_layer_elu, gpuml_layer_leaky_relu,
    gpuml_layer_softmax, gpuml_layer_standardize, gpuml_layer_mul, gpuml_layer_truncate;

#endif
