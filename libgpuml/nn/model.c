/* Models: JSON parsing and validation, parameter / gradient / buffer slabs,
 * initialisation, summary, forward over the DAG. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"

static const gpuml_layer_i *const gpuml_layer_types[] = {
    &gpuml_layer_linear,     &gpuml_layer_layernorm, &gpuml_layer_dropout,   &gpuml_layer_concat,
    &gpuml_layer_add,        &gpuml_layer_global_pool, &gpuml_layer_broadcast, &gpuml_layer_relu,
    &gpuml_layer_gelu,       &gpuml_layer_tanh,      &gpuml_layer_sigmoid,   &gpuml_layer_softplus,
    &gpuml_layer_elu,        &gpuml_layer_leaky_relu, &gpuml_layer_batchnorm, &gpuml_layer_gravnet,
    &gpuml_layer_edgeconv,   &gpuml_layer_dynamic_edgeconv, &gpuml_layer_particlenet_block,
    &gpuml_layer_softmax,    &gpuml_layer_standardize, &gpuml_layer_mul, &gpuml_layer_truncate,
};
#define NUM_TYPES ((int)(sizeof gpuml_layer_types / sizeof gpuml_layer_types[0]))

#define SLAB_ALIGN 16 /* elements: parameter offsets are 64-byte aligned */

typedef struct {
    char *name;             /* "layer.param" */
    int layer;
    int ndim;
    int64_t shape[GPUML_MAX_DIMS];
    int64_t offset;         /* in the slab */
    gpuml_init_kind init;
    double bound;
    gpuml_tensor value, grad; /* views into the slabs */
    gpuml_var *var;
} param_entry;

typedef struct {
    char *name;
    int layer;
    int ndim;
    int64_t shape[GPUML_MAX_DIMS];
    int64_t offset;
    gpuml_init_kind init;
    gpuml_tensor value;
} buffer_entry;

typedef struct {
    char *name;
    int64_t features;
} input_entry;

struct gpuml_model {
    gpuml_ctx *ctx;
    char *config;           /* normalised JSON */
    int n_inputs;
    input_entry *inputs;
    int n_layers;
    gpuml_layer *layers;
    int n_outputs;
    int *outputs;           /* value ids */
    int n_params, n_buffers;
    param_entry *params;
    buffer_entry *buffers;
    gpuml_var **param_vars; /* for gpuml_tape_track_params */
    int64_t param_count, buffer_count;
    gpuml_tensor *param_slab, *grad_slab, *buffer_slab;
};

#define MAX_ATTRS 32

/* Value names (model inputs, then nodes as they are built) -> value id, so
 * that resolving a node's inputs costs O(1) and building a model of n nodes
 * is linear in n (a scan per lookup made 40k nodes take 36 s). Open
 * addressing; the keys are the model's own name strings. */
typedef struct {
    const char **keys;
    int *ids;
    size_t cap; /* power of two, at least twice the entries */
} name_table;

struct gpuml_build {
    gpuml_model *m;
    json_t *node;           /* the node being built */
    const char *seen[MAX_ATTRS]; /* attribute keys the layer read */
    int n_seen;
    int cap_params, cap_buffers;
    name_table names;
    int64_t trunc_len; /* length of the truncate nodes built so far, or 0 */
};

static void mark_seen(gpuml_build *b, const char *key)
{
    if (b->n_seen < MAX_ATTRS)
        b->seen[b->n_seen++] = key;
}

/* ---- build-time helpers --------------------------------------------------- */
gpuml_status gpuml_build_fail(gpuml_build *b, gpuml_layer *l, gpuml_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (l)
        return gpuml_fail(b->m->ctx, st, "gpuml_model_create", "node '%s' (%s): %s", l->name,
                          l->iface ? l->iface->op : "?", msg);
    return gpuml_fail(b->m->ctx, st, "gpuml_model_create", "%s", msg);
}

gpuml_status gpuml_attr_int(gpuml_build *b, gpuml_layer *l, const char *key, int required, int64_t def, int64_t min,
                            int64_t max, int64_t *out)
{
    mark_seen(b, key);
    json_t *v = json_object_get(b->node, key);
    if (!v) {
        if (required)
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' is required", key);
        json_object_set_new(b->node, key, json_integer(def));
        *out = def;
        return GPUML_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' must be an integer in [%" PRId64 ", %" PRId64 "]",
                                key, min, max);
    *out = json_integer_value(v);
    return GPUML_OK;
}

gpuml_status gpuml_attr_float(gpuml_build *b, gpuml_layer *l, const char *key, int required, double def, double min,
                              double max, double *out)
{
    mark_seen(b, key);
    json_t *v = json_object_get(b->node, key);
    if (!v) {
        if (required)
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' is required", key);
        json_object_set_new(b->node, key, json_real(def));
        *out = def;
        return GPUML_OK;
    }
    if (!json_is_number(v) || !(json_number_value(v) >= min && json_number_value(v) <= max))
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' must be a number in [%g, %g]", key, min, max);
    *out = json_number_value(v);
    return GPUML_OK;
}

gpuml_status gpuml_attr_ints(gpuml_build *b, gpuml_layer *l, const char *key, int64_t min, int64_t max, int64_t *out,
                             int cap, int *count)
{
    mark_seen(b, key);
    json_t *v = json_object_get(b->node, key);
    if (!v)
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' is required", key);
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > (size_t)cap)
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' must be an array of 1 to %d integers", key,
                                cap);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < min || json_integer_value(e) > max)
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT,
                                    "attribute '%s'[%zu] must be an integer in [%" PRId64 ", %" PRId64 "]", key, i,
                                    min, max);
        out[i] = json_integer_value(e);
    }
    *count = (int)json_array_size(v);
    return GPUML_OK;
}

gpuml_status gpuml_attr_bool(gpuml_build *b, gpuml_layer *l, const char *key, int def, int *out)
{
    mark_seen(b, key);
    json_t *v = json_object_get(b->node, key);
    if (!v) {
        json_object_set_new(b->node, key, json_boolean(def));
        *out = def;
        return GPUML_OK;
    }
    if (!json_is_boolean(v))
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' must be true or false", key);
    *out = json_is_true(v);
    return GPUML_OK;
}

gpuml_status gpuml_attr_enum(gpuml_build *b, gpuml_layer *l, const char *key, const char *def,
                             const char *const *choices, int *out)
{
    mark_seen(b, key);
    json_t *v = json_object_get(b->node, key);
    const char *s = def;
    if (!v)
        json_object_set_new(b->node, key, json_string(def));
    else if (!json_is_string(v))
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' must be a string", key);
    else
        s = json_string_value(v);
    for (int i = 0; choices[i]; i++)
        if (!strcmp(s, choices[i])) {
            *out = i;
            return GPUML_OK;
        }
    char list[256] = "";
    for (int i = 0; choices[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? ", " : "", choices[i]);
    return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "attribute '%s' = '%s' is not one of %s", key, s, list);
}

static gpuml_status declare(gpuml_build *b, gpuml_layer *l, const char *what, const char *pname, int ndim,
                            const int64_t *shape, char **name_out)
{
    if (ndim < 1 || ndim > GPUML_MAX_DIMS)
        return gpuml_build_fail(b, l, GPUML_ERR_INTERNAL, "%s '%s' has %d dimensions", what, pname, ndim);
    for (int d = 0; d < ndim; d++)
        if (shape[d] <= 0 || shape[d] > ((int64_t)1 << 31))
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "%s '%s' would have dimension %" PRId64, what, pname,
                                    shape[d]);
    size_t len = strlen(l->name) + strlen(pname) + 2;
    *name_out = malloc(len);
    if (!*name_out)
        return gpuml_build_fail(b, l, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(*name_out, len, "%s.%s", l->name, pname);
    return GPUML_OK;
}

gpuml_status gpuml_build_param(gpuml_build *b, gpuml_layer *l, const char *pname, int ndim, const int64_t *shape,
                               gpuml_init_kind init, double bound)
{
    gpuml_model *m = b->m;
    if (m->n_params == b->cap_params) {
        int cap = b->cap_params ? 2 * b->cap_params : 16;
        param_entry *p = realloc(m->params, (size_t)cap * sizeof *p);
        if (!p)
            return gpuml_build_fail(b, l, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
        m->params = p;
        b->cap_params = cap;
    }
    param_entry *e = &m->params[m->n_params];
    memset(e, 0, sizeof *e);
    GPUML_TRY(declare(b, l, "parameter", pname, ndim, shape, &e->name));
    e->layer = l->index;
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->init = init;
    e->bound = bound;
    if (l->n_params == 0)
        l->first_param = m->n_params;
    l->n_params++;
    m->n_params++;
    return GPUML_OK;
}

gpuml_status gpuml_build_buffer(gpuml_build *b, gpuml_layer *l, const char *bname, int ndim, const int64_t *shape,
                                gpuml_init_kind init)
{
    gpuml_model *m = b->m;
    if (m->n_buffers == b->cap_buffers) {
        int cap = b->cap_buffers ? 2 * b->cap_buffers : 8;
        buffer_entry *p = realloc(m->buffers, (size_t)cap * sizeof *p);
        if (!p)
            return gpuml_build_fail(b, l, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
        m->buffers = p;
        b->cap_buffers = cap;
    }
    buffer_entry *e = &m->buffers[m->n_buffers];
    memset(e, 0, sizeof *e);
    GPUML_TRY(declare(b, l, "buffer", bname, ndim, shape, &e->name));
    e->layer = l->index;
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->init = init;
    if (l->n_buffers == 0)
        l->first_buffer = m->n_buffers;
    l->n_buffers++;
    m->n_buffers++;
    return GPUML_OK;
}

/* ---- parsing ------------------------------------------------------------- */
static const gpuml_layer_i *find_type(const char *op)
{
    for (int i = 0; i < NUM_TYPES; i++)
        if (!strcmp(gpuml_layer_types[i]->op, op))
            return gpuml_layer_types[i];
    return NULL;
}

static size_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (size_t)(h ^ (h >> 29));
}

/* Room for n names. */
static bool names_init(name_table *t, size_t n)
{
    t->cap = 16;
    while (t->cap < 2 * n + 2)
        t->cap *= 2;
    t->keys = calloc(t->cap, sizeof *t->keys);
    t->ids = calloc(t->cap, sizeof *t->ids);
    return t->keys && t->ids;
}

static void names_free(name_table *t)
{
    free(t->keys);
    free(t->ids);
    t->keys = NULL;
    t->ids = NULL;
}

/* Slot of name: where it is, or the empty slot where it would go. */
static size_t names_slot(const name_table *t, const char *name)
{
    size_t i = name_hash(name) & (t->cap - 1);
    while (t->keys[i] && strcmp(t->keys[i], name) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

/* name must stay valid while the table is used (it is the model's copy). */
static void names_add(name_table *t, const char *name, int id)
{
    size_t i = names_slot(t, name);
    t->keys[i] = name;
    t->ids[i] = id;
}

/* Value id of a name among those added so far (model inputs, then the
 * nodes built before the current one), or -1. */
static int value_id(const gpuml_build *b, const char *name)
{
    size_t i = names_slot(&b->names, name);
    return b->names.keys[i] ? b->names.ids[i] : -1;
}

static gpuml_feat value_feat(const gpuml_model *m, int id)
{
    gpuml_feat f;
    if (id < m->n_inputs) {
        f.features = m->inputs[id].features;
        f.kind = GPUML_FEAT_ROW;
        f.rows = 0;
        return f;
    }
    return m->layers[id - m->n_inputs].out;
}

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-'))
            return false;
    return true;
}

static gpuml_status parse_inputs(gpuml_build *b, json_t *root)
{
    gpuml_model *m = b->m;
    json_t *ins = json_object_get(root, "inputs");
    if (!json_is_array(ins) || json_array_size(ins) == 0)
        return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "'inputs' must be a non-empty array");
    m->n_inputs = (int)json_array_size(ins);
    m->inputs = calloc((size_t)m->n_inputs, sizeof *m->inputs);
    json_t *nodes = json_object_get(root, "nodes");
    if (!m->inputs || !names_init(&b->names, (size_t)m->n_inputs + json_array_size(nodes)))
        return gpuml_build_fail(b, NULL, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < m->n_inputs; i++) {
        json_t *in = json_array_get(ins, (size_t)i);
        const char *name = json_string_value(json_object_get(in, "name"));
        json_t *f = json_object_get(in, "features");
        if (!json_is_object(in) || !valid_name(name))
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT,
                                    "inputs[%d] needs a 'name' of letters, digits, '_' or '-' (at most 64)", i);
        if (!json_is_integer(f) || json_integer_value(f) < 1 || json_integer_value(f) > (1 << 20))
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "input '%s': 'features' must be a positive integer",
                                    name);
        if (value_id(b, name) >= 0)
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "input name '%s' is used twice", name);
        m->inputs[i].name = strdup(name);
        m->inputs[i].features = json_integer_value(f);
        if (!m->inputs[i].name)
            return gpuml_build_fail(b, NULL, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
        names_add(&b->names, m->inputs[i].name, i);
    }
    return GPUML_OK;
}

/* Keys a node may carry besides its attributes. */
static bool structural_key(const char *k) { return !strcmp(k, "name") || !strcmp(k, "op") || !strcmp(k, "inputs"); }

static gpuml_status parse_nodes(gpuml_build *b, json_t *root)
{
    gpuml_model *m = b->m;
    json_t *nodes = json_object_get(root, "nodes");
    if (!json_is_array(nodes) || json_array_size(nodes) == 0)
        return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "'nodes' must be a non-empty array");
    m->n_layers = (int)json_array_size(nodes);
    m->layers = calloc((size_t)m->n_layers, sizeof *m->layers);
    if (!m->layers)
        return gpuml_build_fail(b, NULL, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
    for (int j = 0; j < m->n_layers; j++) {
        json_t *node = json_array_get(nodes, (size_t)j);
        gpuml_layer *l = &m->layers[j];
        l->index = j;
        if (!json_is_object(node))
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "nodes[%d] is not an object", j);
        const char *name = json_string_value(json_object_get(node, "name"));
        if (!valid_name(name))
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT,
                                    "nodes[%d] needs a 'name' of letters, digits, '_' or '-' (at most 64)", j);
        if (value_id(b, name) >= 0)
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "node name '%s' is used twice", name);
        l->name = strdup(name);
        if (!l->name)
            return gpuml_build_fail(b, NULL, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
        const char *op = json_string_value(json_object_get(node, "op"));
        if (!op)
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "field 'op' is missing or not a string");
        l->iface = find_type(op);
        if (!l->iface)
            return gpuml_fail(m->ctx, GPUML_ERR_FORMAT, "gpuml_model_create", "node '%s': unknown op '%s'", name, op);
        json_t *ins = json_object_get(node, "inputs");
        if (!json_is_array(ins))
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "field 'inputs' must be an array of names");
        l->n_in = (int)json_array_size(ins);
        if (l->n_in < l->iface->min_inputs || (l->iface->max_inputs >= 0 && l->n_in > l->iface->max_inputs))
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "takes %d to %d inputs, got %d", l->iface->min_inputs,
                                    l->iface->max_inputs, l->n_in);
        l->inputs = calloc((size_t)l->n_in + 1, sizeof *l->inputs);
        gpuml_feat *feats = calloc((size_t)l->n_in + 1, sizeof *feats);
        if (!l->inputs || !feats) {
            free(feats);
            return gpuml_build_fail(b, l, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
        }
        for (int i = 0; i < l->n_in; i++) {
            const char *iname = json_string_value(json_array_get(ins, (size_t)i));
            int id = iname ? value_id(b, iname) : -1;
            if (id < 0) {
                free(feats);
                /* a later node's name means a cycle or wrong order */
                bool later = false;
                for (size_t k = (size_t)j + 1; iname && k < json_array_size(nodes); k++) {
                    const char *other = json_string_value(json_object_get(json_array_get(nodes, k), "name"));
                    later = later || (other && !strcmp(other, iname));
                }
                if (later)
                    return gpuml_build_fail(b, l, GPUML_ERR_FORMAT,
                                            "input '%s' is not defined before this node (nodes must be in order; "
                                            "cycles are not allowed)",
                                            iname);
                return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "input %d ('%s') is not a model input or node", i,
                                        iname ? iname : "(not a string)");
            }
            l->inputs[i] = id;
            feats[i] = value_feat(m, id);
        }
        b->node = node;
        b->n_seen = 0;
        gpuml_status st = l->iface->build(b, l, feats, l->n_in, &l->out);
        /* Row sets: per-row inputs must share one; truncate moves to set 1;
         * a per-row value made from per-event ones only (broadcast) is on
         * the rows of the last truncate built so far, if any. */
        int rows = -1;
        for (int i = 0; st == GPUML_OK && i < l->n_in; i++) {
            if (feats[i].kind != GPUML_FEAT_ROW)
                continue;
            if (rows >= 0 && feats[i].rows != rows)
                st = gpuml_build_fail(b, l, GPUML_ERR_FORMAT,
                                      "inputs mix rows before and after a truncate node (input %d)", i);
            rows = feats[i].rows;
        }
        if (st == GPUML_OK && l->iface == &gpuml_layer_truncate) {
            if (b->trunc_len && b->trunc_len != l->iattr[0])
                st = gpuml_build_fail(b, l, GPUML_ERR_FORMAT,
                                      "length %lld differs from an earlier truncate node's %lld: one row set only",
                                      (long long)l->iattr[0], (long long)b->trunc_len);
            b->trunc_len = l->iattr[0];
            rows = 1;
        }
        l->out.rows = rows >= 0 ? rows : b->trunc_len > 0;
        free(feats);
        if (st != GPUML_OK)
            return st;
        /* every key must be one the layer read: a typo is an error, not a default */
        const char *key;
        json_t *val;
        json_object_foreach(node, key, val)
        {
            (void)val;
            bool known = structural_key(key);
            for (int k = 0; !known && k < b->n_seen; k++)
                known = !strcmp(b->seen[k], key);
            if (!known)
                return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "unknown attribute '%s'", key);
        }
        names_add(&b->names, l->name, m->n_inputs + j); /* visible to later nodes */
    }
    return GPUML_OK;
}

static gpuml_status parse_outputs(gpuml_build *b, json_t *root)
{
    gpuml_model *m = b->m;
    json_t *outs = json_object_get(root, "outputs");
    if (!json_is_array(outs) || json_array_size(outs) == 0)
        return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "'outputs' must be a non-empty array of node names");
    m->n_outputs = (int)json_array_size(outs);
    m->outputs = calloc((size_t)m->n_outputs, sizeof *m->outputs);
    if (!m->outputs)
        return gpuml_build_fail(b, NULL, GPUML_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < m->n_outputs; i++) {
        const char *name = json_string_value(json_array_get(outs, (size_t)i));
        int id = name ? value_id(b, name) : -1;
        if (id < 0)
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT, "outputs[%d] ('%s') is not a node or input", i,
                                    name ? name : "(not a string)");
        gpuml_feat f = value_feat(m, id);
        if (f.kind == GPUML_FEAT_ROW && f.rows != 0) /* callers split per-row outputs by the input rows */
            return gpuml_build_fail(b, NULL, GPUML_ERR_FORMAT,
                                    "outputs[%d] ('%s') is per row after a truncate node: only per-event outputs "
                                    "may follow one", i, name);
        m->outputs[i] = id;
    }
    return GPUML_OK;
}

/* ---- slabs ---------------------------------------------------------------- */
static int64_t align_up(int64_t x) { return (x + SLAB_ALIGN - 1) / SLAB_ALIGN * SLAB_ALIGN; }

static gpuml_status allocate_slabs(gpuml_model *m)
{
    static const char fn[] = "gpuml_model_create";
    int64_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        m->params[i].offset = off;
        off = align_up(off + gpuml_numel(m->params[i].ndim, m->params[i].shape));
    }
    m->param_count = off;
    int64_t n = off > 0 ? off : 1;
    GPUML_TRY(gpuml_tensor_zeros(m->ctx, GPUML_F32, 1, &n, &m->param_slab));
    GPUML_TRY(gpuml_tensor_zeros(m->ctx, GPUML_F32, 1, &n, &m->grad_slab));
    m->param_vars = calloc((size_t)m->n_params + 1, sizeof *m->param_vars);
    if (!m->param_vars)
        return gpuml_fail(m->ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    for (int i = 0; i < m->n_params; i++) {
        param_entry *e = &m->params[i];
        gpuml_tensor_init_view(&e->value, (float *)m->param_slab->data + e->offset, m->ctx->device, GPUML_F32, e->ndim,
                               e->shape);
        gpuml_tensor_init_view(&e->grad, (float *)m->grad_slab->data + e->offset, m->ctx->device, GPUML_F32, e->ndim,
                               e->shape);
        GPUML_TRY(gpuml_param_create(&e->value, &e->grad, &e->var));
        gpuml_param_set_group(e->var, e->layer);
        m->param_vars[i] = e->var;
    }
    off = 0;
    for (int i = 0; i < m->n_buffers; i++) {
        m->buffers[i].offset = off;
        off = align_up(off + gpuml_numel(m->buffers[i].ndim, m->buffers[i].shape));
    }
    m->buffer_count = off;
    if (off > 0) {
        GPUML_TRY(gpuml_tensor_zeros(m->ctx, GPUML_F32, 1, &off, &m->buffer_slab));
        for (int i = 0; i < m->n_buffers; i++) {
            buffer_entry *e = &m->buffers[i];
            gpuml_tensor_init_view(&e->value, (float *)m->buffer_slab->data + e->offset, m->ctx->device, GPUML_F32,
                                   e->ndim, e->shape);
        }
    }
    return GPUML_OK;
}

gpuml_status gpuml_model_init_params(gpuml_model *m, uint64_t seed)
{
    static const char fn[] = "gpuml_model_init_params";
    if (!m)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'm' is NULL");
    uint64_t saved_seed, saved_counter;
    gpuml_ctx_get_rng_state(m->ctx, &saved_seed, &saved_counter);
    gpuml_ctx_set_seed(m->ctx, seed);
    gpuml_status st = GPUML_OK;
    for (int i = 0; i < m->n_params && st == GPUML_OK; i++) {
        param_entry *e = &m->params[i];
        switch (e->init) {
        case GPUML_INIT_ZEROS: st = gpuml_fill(m->ctx, &e->value, 0.0); break;
        case GPUML_INIT_ONES: st = gpuml_fill(m->ctx, &e->value, 1.0); break;
        case GPUML_INIT_UNIFORM: st = gpuml_rand_uniform(m->ctx, &e->value, (float)-e->bound, (float)e->bound); break;
        default: st = gpuml_fill(m->ctx, &e->value, e->init == GPUML_INIT_NEG_INF ? -INFINITY : INFINITY); break;
        }
    }
    for (int i = 0; i < m->n_buffers && st == GPUML_OK; i++) {
        gpuml_init_kind k = m->buffers[i].init;
        double v = k == GPUML_INIT_ONES ? 1.0 : k == GPUML_INIT_NEG_INF ? -INFINITY : k == GPUML_INIT_POS_INF ? INFINITY : 0.0;
        st = gpuml_fill(m->ctx, &m->buffers[i].value, v);
    }
    gpuml_ctx_set_rng_state(m->ctx, saved_seed, saved_counter);
    return st;
}

/* ---- create / destroy ---------------------------------------------------- */
void gpuml_model_destroy(gpuml_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_inputs && m->inputs; i++)
        free(m->inputs[i].name);
    free(m->inputs);
    for (int j = 0; j < m->n_layers && m->layers; j++) {
        free(m->layers[j].name);
        free(m->layers[j].inputs);
    }
    free(m->layers);
    for (int i = 0; i < m->n_params; i++) {
        free(m->params[i].name);
        gpuml_param_destroy(m->params[i].var);
    }
    free(m->params);
    for (int i = 0; i < m->n_buffers; i++)
        free(m->buffers[i].name);
    free(m->buffers);
    free(m->param_vars);
    free(m->outputs);
    free(m->config);
    gpuml_tensor_destroy(m->param_slab);
    gpuml_tensor_destroy(m->grad_slab);
    gpuml_tensor_destroy(m->buffer_slab);
    free(m);
}

gpuml_status gpuml_model_create(gpuml_ctx *ctx, const char *json, gpuml_model **out)
{
    static const char fn[] = "gpuml_model_create";
    if (!ctx || !json || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !ctx ? "ctx" : !json ? "json" : "out");
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return gpuml_fail(ctx, GPUML_ERR_FORMAT, fn, "config is not valid JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
    gpuml_model *m = calloc(1, sizeof *m);
    if (!m) {
        json_decref(root);
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the model");
    }
    m->ctx = ctx;
    gpuml_build b = {0};
    b.m = m;
    gpuml_status st = GPUML_OK;
    if (!json_is_object(root))
        st = gpuml_fail(ctx, GPUML_ERR_FORMAT, fn, "config must be a JSON object");
    if (st == GPUML_OK) {
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val)
        {
            (void)val;
            if (strcmp(key, "inputs") && strcmp(key, "nodes") && strcmp(key, "outputs") && strcmp(key, "name") &&
                strcmp(key, "meta")) {
                st = gpuml_fail(ctx, GPUML_ERR_FORMAT, fn, "unknown top-level field '%s'", key);
                break;
            }
        }
    }
    if (st == GPUML_OK)
        st = parse_inputs(&b, root);
    if (st == GPUML_OK)
        st = parse_nodes(&b, root);
    if (st == GPUML_OK)
        st = parse_outputs(&b, root);
    names_free(&b.names);
    if (st == GPUML_OK)
        st = allocate_slabs(m);
    if (st == GPUML_OK) {
        m->config = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!m->config)
            st = gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    }
    if (st == GPUML_OK)
        st = gpuml_model_init_params(m, 0);
    json_decref(root);
    if (st != GPUML_OK) {
        gpuml_model_destroy(m);
        return st;
    }
    *out = m;
    return GPUML_OK;
}

gpuml_status gpuml_model_create_from_file(gpuml_ctx *ctx, const char *path, gpuml_model **out)
{
    static const char fn[] = "gpuml_model_create_from_file";
    if (!ctx || !path || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !ctx ? "ctx" : !path ? "path" : "out");
    FILE *f = fopen(path, "rb");
    if (!f)
        return gpuml_fail(ctx, GPUML_ERR_IO, fn, "cannot open '%s'", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            if (cap > ((size_t)64 << 20)) {
                free(buf);
                fclose(f);
                return gpuml_fail(ctx, GPUML_ERR_FORMAT, fn, "'%s' is larger than 64 MiB: not a model config", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    gpuml_status st = gpuml_model_create(ctx, buf, out);
    free(buf);
    return st;
}

/* ---- accessors ------------------------------------------------------------ */
const char *gpuml_model_config(const gpuml_model *m) { return m ? m->config : NULL; }
gpuml_ctx *gpuml_model_ctx(const gpuml_model *m) { return m ? m->ctx : NULL; }
int gpuml_model_num_inputs(const gpuml_model *m) { return m->n_inputs; }
int gpuml_model_num_outputs(const gpuml_model *m) { return m->n_outputs; }
int gpuml_model_num_params(const gpuml_model *m) { return m->n_params; }
int64_t gpuml_model_param_count(const gpuml_model *m) { return m->param_count; }
gpuml_tensor *gpuml_model_param_slab(const gpuml_model *m) { return m->param_slab; }
gpuml_tensor *gpuml_model_grad_slab(const gpuml_model *m) { return m->grad_slab; }
int gpuml_model_num_buffers(const gpuml_model *m) { return m->n_buffers; }
gpuml_tensor *gpuml_model_buffer_slab(const gpuml_model *m) { return m->buffer_slab; }

static gpuml_status bad_index(const gpuml_model *m, const char *fn, int i, int n)
{
    return gpuml_fail(m ? m->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "index %d is not in [0, %d)", i, n);
}

gpuml_status gpuml_model_input_info(const gpuml_model *m, int i, const char **name, int64_t *features)
{
    if (!m || i < 0 || i >= m->n_inputs)
        return bad_index(m, "gpuml_model_input_info", i, m ? m->n_inputs : 0);
    if (name)
        *name = m->inputs[i].name;
    if (features)
        *features = m->inputs[i].features;
    return GPUML_OK;
}

gpuml_status gpuml_model_output_info(const gpuml_model *m, int i, const char **name, int64_t *features, int *per_event)
{
    if (!m || i < 0 || i >= m->n_outputs)
        return bad_index(m, "gpuml_model_output_info", i, m ? m->n_outputs : 0);
    int id = m->outputs[i];
    gpuml_feat f = value_feat(m, id);
    if (name)
        *name = id < m->n_inputs ? m->inputs[id].name : m->layers[id - m->n_inputs].name;
    if (features)
        *features = f.features;
    if (per_event)
        *per_event = f.kind == GPUML_FEAT_EVENT;
    return GPUML_OK;
}

gpuml_status gpuml_model_param(const gpuml_model *m, int i, const char **name, gpuml_tensor **value,
                               gpuml_tensor **grad, gpuml_var **var)
{
    if (!m || i < 0 || i >= m->n_params)
        return bad_index(m, "gpuml_model_param", i, m ? m->n_params : 0);
    param_entry *e = &m->params[i];
    if (name)
        *name = e->name;
    if (value)
        *value = &e->value;
    if (grad)
        *grad = &e->grad;
    if (var)
        *var = e->var;
    return GPUML_OK;
}

gpuml_status gpuml_model_find_param(const gpuml_model *m, const char *name, gpuml_tensor **value, gpuml_tensor **grad)
{
    static const char fn[] = "gpuml_model_find_param";
    if (!m || !name)
        return gpuml_fail(m ? m->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", m ? "name" : "m");
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name))
            return gpuml_model_param(m, i, NULL, value, grad, NULL);
    return gpuml_fail(m->ctx, GPUML_ERR_NOT_FOUND, fn, "no parameter '%s'", name);
}

int gpuml_model_param_layer(const gpuml_model *m, int i) { return (i >= 0 && i < m->n_params) ? m->params[i].layer : -1; }

int64_t gpuml_model_param_offset(const gpuml_model *m, int i)
{
    return (i >= 0 && i < m->n_params) ? m->params[i].offset : -1;
}

gpuml_status gpuml_model_buffer(const gpuml_model *m, int i, const char **name, gpuml_tensor **value)
{
    if (!m || i < 0 || i >= m->n_buffers)
        return bad_index(m, "gpuml_model_buffer", i, m ? m->n_buffers : 0);
    if (name)
        *name = m->buffers[i].name;
    if (value)
        *value = &m->buffers[i].value;
    return GPUML_OK;
}

gpuml_status gpuml_model_zero_grad(gpuml_model *m)
{
    if (!m)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_model_zero_grad", "argument 'm' is NULL");
    return gpuml_fill(m->ctx, m->grad_slab, 0.0);
}

size_t gpuml_model_summary(const gpuml_model *m, char *buf, size_t size)
{
    size_t need = 0;
    char line[256];
#define EMIT(...)                                                     \
    do {                                                              \
        int n_ = snprintf(line, sizeof line, __VA_ARGS__);            \
        if (buf && need < size)                                       \
            snprintf(buf + need, size - need, "%s", line);            \
        need += (size_t)(n_ > 0 ? n_ : 0);                            \
    } while (0)
    if (buf && size)
        buf[0] = '\0';
    EMIT("%-24s %-14s %-14s %12s\n", "layer", "op", "output", "parameters");
    for (int i = 0; i < m->n_inputs; i++) {
        char shape[64];
        snprintf(shape, sizeof shape, "[N, %" PRId64 "]", m->inputs[i].features);
        EMIT("%-24s %-14s %-14s %12d\n", m->inputs[i].name, "input", shape, 0);
    }
    for (int j = 0; j < m->n_layers; j++) {
        const gpuml_layer *l = &m->layers[j];
        int64_t count = 0;
        for (int p = 0; p < l->n_params; p++)
            count += gpuml_numel(m->params[l->first_param + p].ndim, m->params[l->first_param + p].shape);
        char shape[64];
        snprintf(shape, sizeof shape, "[%s, %" PRId64 "]", l->out.kind == GPUML_FEAT_EVENT ? "B" : "N",
                 l->out.features);
        EMIT("%-24s %-14s %-14s %12" PRId64 "\n", l->name, l->iface->op, shape, count);
    }
    int64_t total = 0;
    for (int i = 0; i < m->n_params; i++)
        total += gpuml_numel(m->params[i].ndim, m->params[i].shape);
    EMIT("total parameters: %" PRId64 " (%d tensors; slab %" PRId64 " floats)\n", total, m->n_params, m->param_count);
#undef EMIT
    return need;
}

/* ---- forward -------------------------------------------------------------- */
gpuml_var *gpuml_fwd_param(gpuml_fwd *f, const gpuml_layer *l, int k) { return f->m->params[l->first_param + k].var; }

gpuml_tensor *gpuml_fwd_buffer(gpuml_fwd *f, const gpuml_layer *l, int k)
{
    return &f->m->buffers[l->first_buffer + k].value;
}

gpuml_status gpuml_fwd_event_ids(gpuml_fwd *f, gpuml_tensor **ids)
{
    if (!f->event_ids) {
        GPUML_TRY(gpuml_tape_tensor(f->tape, GPUML_I32, 1, &f->n_rows, &f->event_ids));
        GPUML_TRY(gpuml_segment_ids(f->ctx, f->row_splits, f->event_ids));
    }
    *ids = f->event_ids;
    return GPUML_OK;
}

gpuml_status gpuml_model_forward(gpuml_model *m, gpuml_tape *tape, const gpuml_tensor *const *inputs,
                                 const gpuml_tensor *row_splits, gpuml_var **outputs)
{
    static const char fn[] = "gpuml_model_forward";
    if (!m || !tape || !inputs || !row_splits || !outputs)
        return gpuml_fail(m ? m->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !m ? "m" : !tape ? "tape" : !inputs ? "inputs" : !row_splits ? "row_splits" : "outputs");
    gpuml_ctx *ctx = gpuml_tape_ctx(tape);
    if (ctx->device.type != m->ctx->device.type || ctx->device.index != m->ctx->device.index)
        return gpuml_fail(ctx, GPUML_ERR_DEVICE_MISMATCH, fn, "the tape's context is on another device than the model");
    int64_t n_rows = -1;
    for (int i = 0; i < m->n_inputs; i++) {
        char arg[96];
        snprintf(arg, sizeof arg, "inputs[%d] ('%s')", i, m->inputs[i].name);
        GPUML_TRY(gpuml_check_dtype(ctx, fn, arg, inputs[i], GPUML_F32));
        if (inputs[i]->ndim != 2 || inputs[i]->shape[1] != m->inputs[i].features ||
            (n_rows >= 0 && inputs[i]->shape[0] != n_rows)) {
            char s[160];
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "%s is %s, expected [N, %" PRId64 "] with one N for all", arg,
                              gpuml_shape_str(inputs[i]->ndim, inputs[i]->shape, s, sizeof s), m->inputs[i].features);
        }
        n_rows = inputs[i]->shape[0];
    }
    int64_t batch;
    GPUML_TRY(gpuml_check_row_splits(ctx, fn, "row_splits", row_splits, n_rows, &batch));
    gpuml_fwd f = {m, tape, ctx, row_splits, n_rows, batch, NULL, {row_splits, NULL}, {n_rows, 0}, {NULL, NULL},
                   NULL, 0};
    gpuml_tape_track_params(tape, m->param_vars, m->n_params);
    /* one var per value id, in the tape's arena: concurrent forwards of one
     * model on different tapes share nothing mutable */
    gpuml_var **values;
    void *vmem;
    GPUML_TRY(gpuml_arena_alloc_meta(tape->arena, (size_t)(m->n_inputs + m->n_layers) * sizeof *values, &vmem, fn));
    values = vmem;
    for (int i = 0; i < m->n_inputs; i++)
        GPUML_TRY(gpuml_var_input(tape, inputs[i], 0, &values[i]));
    gpuml_var *ins[64];
    for (int j = 0; j < m->n_layers; j++) {
        gpuml_layer *l = &m->layers[j];
        gpuml_var **in = ins;
        if (l->n_in > 64) {
            void *mem;
            GPUML_TRY(gpuml_arena_alloc_meta(tape->arena, (size_t)l->n_in * sizeof *in, &mem, fn));
            in = mem;
        }
        for (int i = 0; i < l->n_in; i++)
            in[i] = values[l->inputs[i]];
        int rs = (l->iface == &gpuml_layer_truncate || !f.trunc_len) ? 0 : l->out.rows; /* rows it runs on */
        if (f.row_splits != f.rs[rs]) {
            f.ids[rs ^ 1] = f.event_ids;
            f.row_splits = f.rs[rs], f.n_rows = f.nr[rs], f.event_ids = f.ids[rs];
        }
        gpuml_status st = l->iface->forward(&f, l, in, l->n_in, &values[m->n_inputs + j]);
        if (st != GPUML_OK)
            return gpuml_fail(ctx, st, fn, "node '%s' (%s): %s", l->name, l->iface->op, gpuml_last_error());
    }
    for (int i = 0; i < m->n_outputs; i++)
        outputs[i] = values[m->outputs[i]];
    return GPUML_OK;
}
