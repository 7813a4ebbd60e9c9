/* The tape: recording, the reverse walk, gradient buffers, hooks. */
#include <stdlib.h>
#include <string.h>

#include "autograd/tape_impl.h"

gpuml_status gpuml_tape_create(gpuml_ctx *ctx, gpuml_tape **out)
{
    static const char fn[] = "gpuml_tape_create";
    if (!ctx || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ctx ? "out" : "ctx");
    *out = NULL;
    gpuml_tape *t = calloc(1, sizeof *t);
    if (!t)
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the tape");
    gpuml_status st = gpuml_arena_create(ctx, 0, &t->arena);
    if (st != GPUML_OK) {
        free(t);
        return st;
    }
    t->ctx = ctx;
    t->grad_enabled = true;
    t->training = true;
    t->step = 1;
    *out = t;
    return GPUML_OK;
}

void gpuml_tape_destroy(gpuml_tape *t)
{
    if (!t)
        return;
    gpuml_arena_destroy(t->arena);
    free(t);
}

void gpuml_tape_reset(gpuml_tape *t)
{
    if (!t)
        return;
    gpuml_arena_reset(t->arena);
    t->last = NULL;
    t->num_nodes = 0;
    t->step++;
    t->tracked = NULL;
    t->n_tracked = 0;
    t->pool = NULL; /* lived in the arena */
    t->n_pool = t->cap_pool = 0;
}

void gpuml_tape_set_grad_enabled(gpuml_tape *t, int enabled) { t->grad_enabled = enabled != 0; }
int gpuml_tape_grad_enabled(const gpuml_tape *t) { return t->grad_enabled; }
void gpuml_tape_set_training(gpuml_tape *t, int training) { t->training = training != 0; }
int gpuml_tape_training(const gpuml_tape *t) { return t->training; }
gpuml_ctx *gpuml_tape_ctx(const gpuml_tape *t) { return t->ctx; }
int gpuml_tape_num_nodes(const gpuml_tape *t) { return t->num_nodes; }
size_t gpuml_tape_arena_used(const gpuml_tape *t) { return gpuml_arena_used(t->arena); }
size_t gpuml_tape_arena_capacity(const gpuml_tape *t) { return gpuml_arena_capacity(t->arena); }

void gpuml_tape_set_grad_hook(gpuml_tape *t, gpuml_grad_hook hook, void *user)
{
    t->hook = hook;
    t->hook_user = user;
}

void gpuml_tape_track_params(gpuml_tape *t, gpuml_var *const *params, int n)
{
    t->tracked = params;
    t->n_tracked = n;
}

gpuml_status gpuml_tape_tensor(gpuml_tape *t, gpuml_dtype dtype, int ndim, const int64_t *shape, gpuml_tensor **out)
{
    if (!t || !out)
        return gpuml_fail(t ? t->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_tape_tensor", "argument '%s' is NULL",
                          t ? "out" : "tape");
    return gpuml_tensor_create_in_arena(t->arena, dtype, ndim, shape, out);
}

gpuml_status gpuml_ad_new_tensor(gpuml_tape *t, gpuml_dtype dtype, int ndim, const int64_t *shape, gpuml_tensor **out,
                                 const char *fn)
{
    (void)fn;
    return gpuml_tensor_create_in_arena(t->arena, dtype, ndim, shape, out);
}

gpuml_status gpuml_ad_new_view(gpuml_tape *t, void *data, gpuml_dtype dtype, int ndim, const int64_t *shape,
                               gpuml_tensor **out, const char *fn)
{
    void *meta = NULL;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, sizeof(gpuml_tensor), &meta, fn));
    gpuml_tensor_init_view(meta, data, t->ctx->device, dtype, ndim, shape);
    *out = meta;
    return GPUML_OK;
}

gpuml_status gpuml_ad_new_var(gpuml_tape *t, gpuml_dtype dtype, int ndim, const int64_t *shape, gpuml_var **out,
                              const char *fn)
{
    void *meta = NULL;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, sizeof(gpuml_var), &meta, fn));
    gpuml_var *v = meta;
    memset(v, 0, sizeof *v);
    gpuml_tensor *val = NULL;
    GPUML_TRY(gpuml_tensor_create_in_arena(t->arena, dtype, ndim, shape, &val));
    v->value = *val;
    gpuml_tensor_init_view(&v->grad, NULL, t->ctx->device, dtype, ndim, shape);
    *out = v;
    return GPUML_OK;
}

gpuml_status gpuml_var_input(gpuml_tape *t, const gpuml_tensor *value, int requires_grad, gpuml_var **out)
{
    static const char fn[] = "gpuml_var_input";
    if (!t || !value || !out)
        return gpuml_fail(t ? t->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !t ? "tape" : !value ? "value" : "out");
    GPUML_TRY(gpuml_check_tensor(t->ctx, fn, "value", value));
    void *meta = NULL;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, sizeof(gpuml_var), &meta, fn));
    gpuml_var *v = meta;
    memset(v, 0, sizeof *v);
    gpuml_tensor_init_view(&v->value, value->data, value->device, value->dtype, value->ndim, value->shape);
    gpuml_tensor_init_view(&v->grad, NULL, value->device, value->dtype, value->ndim, value->shape);
    v->requires_grad = requires_grad != 0 && value->dtype == GPUML_F32;
    *out = v;
    return GPUML_OK;
}

gpuml_tensor *gpuml_var_value(const gpuml_var *v) { return v ? (gpuml_tensor *)&v->value : NULL; }

gpuml_tensor *gpuml_var_grad(const gpuml_var *v)
{
    if (!v || !v->grad.data)
        return NULL;
    return (gpuml_tensor *)&v->grad;
}

int gpuml_var_requires_grad(const gpuml_var *v) { return v && v->requires_grad; }

gpuml_status gpuml_param_create(gpuml_tensor *value, gpuml_tensor *grad, gpuml_var **out)
{
    static const char fn[] = "gpuml_param_create";
    if (!value || !grad || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !value ? "value" : !grad ? "grad" : "out");
    if (value->dtype != GPUML_F32 || grad->dtype != GPUML_F32)
        return gpuml_fail(NULL, GPUML_ERR_DTYPE, fn, "parameters are f32");
    bool same = value->ndim == grad->ndim && value->device.type == grad->device.type;
    for (int i = 0; same && i < value->ndim; i++)
        same = value->shape[i] == grad->shape[i];
    if (!same)
        return gpuml_fail(NULL, GPUML_ERR_SHAPE, fn, "grad must match value in shape and device");
    gpuml_var *v = calloc(1, sizeof *v);
    if (!v)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the parameter");
    gpuml_tensor_init_view(&v->value, value->data, value->device, value->dtype, value->ndim, value->shape);
    gpuml_tensor_init_view(&v->grad, grad->data, grad->device, grad->dtype, grad->ndim, grad->shape);
    v->requires_grad = true;
    v->is_param = true;
    *out = v;
    return GPUML_OK;
}

void gpuml_param_destroy(gpuml_var *p)
{
    if (p && p->is_param)
        free(p);
}

void gpuml_param_set_group(gpuml_var *p, int group) { p->group = group; }
int gpuml_param_group(const gpuml_var *p) { return p->group; }

bool gpuml_ad_needs_grad(const gpuml_tape *t, gpuml_var *const *in, int n)
{
    if (!t->grad_enabled)
        return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad)
            return true;
    return false;
}

gpuml_status gpuml_ad_record(gpuml_tape *t, const char *op, gpuml_backward_fn bw, gpuml_var *const *in, int n_in,
                             gpuml_var *const *out, int n_out, gpuml_node **node, const char *fn)
{
    void *meta = NULL;
    size_t bytes = sizeof(gpuml_node) + (size_t)(n_in + n_out) * sizeof(gpuml_var *);
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, bytes, &meta, fn));
    gpuml_node *n = meta;
    memset(n, 0, sizeof *n);
    n->in = (gpuml_var **)(n + 1);
    n->out = n->in + n_in;
    n->backward = bw;
    n->op = op;
    n->n_in = n_in;
    n->n_out = n_out;
    for (int i = 0; i < n_in; i++) {
        n->in[i] = in[i];
        gpuml_var *p = in[i];
        if (p && p->is_param && p->use_step != t->step) {
            p->use_step = t->step;
            p->first_use = n;
        }
    }
    for (int i = 0; i < n_out; i++) {
        n->out[i] = out[i];
        if (out[i] && out[i]->value.dtype == GPUML_F32) {
            out[i]->requires_grad = true;
            out[i]->producer = n;
        }
    }
    n->prev = t->last;
    t->last = n;
    t->num_nodes++;
    *node = n;
    return GPUML_OK;
}

static bool has_grad(const gpuml_tape *t, const gpuml_var *v)
{
    return v->is_param ? v->grad.data != NULL : (v->grad_epoch == t->backward_epoch && v->grad.data);
}

gpuml_tensor *gpuml_ad_out_grad(const gpuml_tape *t, const gpuml_var *v)
{
    return (v && !v->is_param && has_grad(t, v)) ? (gpuml_tensor *)&v->grad : NULL;
}

/* A gradient-sized buffer: a recycled one of the same byte size, else new
 * arena memory. */
static gpuml_status grad_memory(gpuml_tape *t, const gpuml_tensor *like, gpuml_tensor *out, const char *fn)
{
    size_t bytes = gpuml_tensor_nbytes(like);
    void *ptr = NULL;
    for (int i = t->n_pool - 1; i >= 0 && bytes > 0; i--)
        if (t->pool[i].bytes == bytes) {
            ptr = t->pool[i].ptr;
            t->pool[i] = t->pool[--t->n_pool];
            break;
        }
    if (!ptr && bytes > 0)
        GPUML_TRY(gpuml_arena_alloc(t->arena, bytes, &ptr, fn));
    gpuml_tensor_init_view(out, ptr, like->device, like->dtype, like->ndim, like->shape);
    return GPUML_OK;
}

/* Give a gradient buffer back for reuse within this backward. */
static void grad_release(gpuml_tape *t, void *ptr, size_t bytes)
{
    if (!ptr || bytes == 0)
        return;
    if (t->n_pool == t->cap_pool) { /* grow in the arena: no allocation once warm */
        int cap = t->cap_pool ? 2 * t->cap_pool : 32;
        void *mem = NULL;
        if (gpuml_arena_alloc_meta(t->arena, (size_t)cap * sizeof(gpuml_grad_slot), &mem, "gpuml_backward") !=
            GPUML_OK) {
            gpuml_clear_error(); /* no room to remember it: the buffer is simply not reused */
            return;
        }
        if (t->n_pool)
            memcpy(mem, t->pool, (size_t)t->n_pool * sizeof(gpuml_grad_slot));
        t->pool = mem;
        t->cap_pool = cap;
    }
    t->pool[t->n_pool].ptr = ptr;
    t->pool[t->n_pool].bytes = bytes;
    t->n_pool++;
}

/* Allocate v's gradient buffer for this backward. */
static gpuml_status ensure_grad_buffer(gpuml_tape *t, gpuml_var *v, const char *fn)
{
    if (v->grad.data)
        return GPUML_OK; /* a leaf's buffer from an earlier backward of this step */
    return grad_memory(t, &v->value, &v->grad, fn);
}

gpuml_status gpuml_ad_grad_begin(gpuml_tape *t, gpuml_var *v, gpuml_tensor **dst, const char *fn)
{
    *dst = NULL;
    if (!v || !v->requires_grad)
        return GPUML_OK;
    if (!v->is_param && !has_grad(t, v)) {
        GPUML_TRY(ensure_grad_buffer(t, v, fn));
        v->grad_epoch = t->backward_epoch;
        *dst = &v->grad; /* first contribution: overwrite */
        return GPUML_OK;
    }
    /* a temporary, added into v's gradient by gpuml_ad_grad_commit */
    void *meta = NULL;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, sizeof(gpuml_tensor), &meta, fn));
    GPUML_TRY(grad_memory(t, &v->value, meta, fn));
    *dst = meta;
    return GPUML_OK;
}

gpuml_status gpuml_ad_grad_commit(gpuml_tape *t, gpuml_var *v, gpuml_tensor *dst, const char *fn)
{
    (void)fn;
    if (!dst || dst == &v->grad)
        return GPUML_OK;
    gpuml_status st = gpuml_axpy(t->ctx, 1.0f, dst, &v->grad);
    grad_release(t, dst->data, gpuml_tensor_nbytes(dst));
    return st;
}

gpuml_status gpuml_ad_grad_native(gpuml_tape *t, gpuml_var *v, gpuml_tensor **dst, int *accumulate, const char *fn)
{
    *dst = NULL;
    *accumulate = 0;
    if (!v || !v->requires_grad)
        return GPUML_OK;
    if (v->is_param || has_grad(t, v)) {
        *dst = &v->grad;
        *accumulate = 1;
        return GPUML_OK;
    }
    GPUML_TRY(ensure_grad_buffer(t, v, fn));
    v->grad_epoch = t->backward_epoch;
    *dst = &v->grad;
    return GPUML_OK;
}

static void fire_hook(gpuml_tape *t, gpuml_var *p)
{
    if (p->hook_epoch == t->backward_epoch)
        return;
    p->hook_epoch = t->backward_epoch;
    if (t->hook)
        t->hook(t->hook_user, p, p->group);
}

gpuml_status gpuml_backward(gpuml_tape *t, gpuml_var *loss, const gpuml_tensor *seed)
{
    static const char fn[] = "gpuml_backward";
    if (!t || !loss)
        return gpuml_fail(t ? t->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          t ? "loss" : "tape");
    gpuml_ctx *ctx = t->ctx;
    if (!loss->requires_grad)
        return gpuml_fail(ctx, GPUML_ERR_STATE, fn,
                          "loss does not depend on anything that requires a gradient (or gradients were disabled)");
    if (loss->is_param)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "loss is a parameter");
    if (seed) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "seed", seed, GPUML_F32));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "loss", &loss->value, "seed", seed));
    } else if (gpuml_tensor_numel(&loss->value) != 1) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "loss %s has more than one element: give a seed gradient",
                          gpuml_shape_str(loss->value.ndim, loss->value.shape, s, sizeof s));
    }
    t->backward_epoch++;
    gpuml_tensor *g = NULL;
    GPUML_TRY(gpuml_ad_grad_begin(t, loss, &g, fn));
    GPUML_TRY(seed ? gpuml_tensor_copy(ctx, g, seed) : gpuml_fill(ctx, g, 1.0));
    GPUML_TRY(gpuml_ad_grad_commit(t, loss, g, fn));

    for (gpuml_node *n = t->last; n; n = n->prev) {
        bool any = false;
        for (int i = 0; i < n->n_out; i++)
            any = any || (n->out[i] && has_grad(t, n->out[i]));
        if (any) {
            gpuml_status st = n->backward(t, n);
            if (st != GPUML_OK)
                return gpuml_fail(ctx, st, fn, "backward of '%s' failed: %s", n->op, gpuml_last_error());
            /* Nobody reads these outputs' gradients any more: their producer
             * (this node) has run. Leaves keep theirs for the caller. */
            for (int i = 0; i < n->n_out; i++) {
                gpuml_var *o = n->out[i];
                if (o && !o->is_param && o->grad.data && o != loss) {
                    grad_release(t, o->grad.data, gpuml_tensor_nbytes(&o->grad));
                    o->grad.data = NULL;
                    o->grad_epoch = 0;
                }
            }
        }
        for (int i = 0; i < n->n_in; i++) {
            gpuml_var *p = n->in[i];
            if (p && p->is_param && p->first_use == n && p->use_step == t->step)
                fire_hook(t, p);
        }
    }
    for (int i = 0; i < t->n_tracked; i++)
        fire_hook(t, t->tracked[i]);
    return GPUML_OK;
}
