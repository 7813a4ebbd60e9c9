/* Completion threads: wait for a batch's CUDA event, scatter its outputs
 * to the callers' buffers, return slots and stages, call `done`. */
#include <stdio.h>
#include <string.h>

#include "infer/engine_impl.h"

static void complete_batch(eng_cthread *ct, eng_batch *b)
{
    gpuml_engine *e = ct->eng;
    if (b->event_recorded) {
        gpuml_status st = eng_cuda_event_sync(b->inst->device, b->event);
        if (st != GPUML_OK && b->status == GPUML_OK) {
            b->status = st;
            b->computed = false;
            snprintf(b->msg, sizeof b->msg, "%s", gpuml_last_error());
        }
        if (b->status == GPUML_OK && b->computed && *b->h_flag) {
            b->status = gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_engine",
                                   "a kernel met invalid input on the device (code %d); the batch's outputs are "
                                   "undefined",
                                   *b->h_flag);
            b->computed = false;
            snprintf(b->msg, sizeof b->msg, "%s", gpuml_last_error());
        }
    }
    int n = b->n_events;
    for (int k = 0; k < n; k++) {
        eng_slot *s = b->items[k];
        gpuml_status st = s->status != GPUML_OK ? s->status : b->status;
        if (st == GPUML_OK && !s->out_dev) {
            for (int o = 0; o < e->n_out; o++) {
                int64_t off = e->out_event[o] ? k * e->f_out[o] : s->row0 * e->f_out[o];
                int64_t cnt = e->out_event[o] ? e->f_out[o] : s->rows * e->f_out[o];
                if (cnt > 0 && s->out[o]) /* NULL: a model output not wanted beside the clusters */
                    memcpy(s->out[o], b->h_out + e->out_off[o] + off, (size_t)cnt * sizeof(float));
            }
        }
        ct->done[k] = s->done;
        ct->user[k] = s->user;
        ct->status[k] = st;
    }
    snprintf(ct->msg, sizeof ct->msg, "%s", b->msg);
    eng_stats_batch(e, b, ct->status, eng_now_us());
    eng_instance *in = b->inst;
    pthread_mutex_lock(&e->lock);
    for (int k = 0; k < n; k++)
        eng_slot_free_locked(e, b->items[k]);
    b->n_events = 0;
    b->busy = false;
    pthread_cond_signal(&in->stage_cv);
    pthread_mutex_unlock(&e->lock);
    for (int k = 0; k < n; k++)
        eng_call_done(ct->done[k], ct->user[k], ct->status[k], ct->status[k] == GPUML_ERR_TIMEOUT ? NULL : ct->msg);
}

void *eng_completion_main(void *arg)
{
    eng_cthread *ct = arg;
    gpuml_engine *e = ct->eng;
    if (e->cuda)
        (void)eng_cuda_set_device(e->cfg.device.index);
    pthread_mutex_lock(&e->lock);
    for (;;) {
        if (e->fin_head) {
            eng_slot *list = e->fin_head;
            e->fin_head = e->fin_tail = NULL;
            pthread_mutex_unlock(&e->lock);
            eng_complete_finished(e, list);
            pthread_mutex_lock(&e->lock);
        } else if (e->cq_head) {
            eng_batch *b = e->cq_head;
            e->cq_head = b->next;
            if (!e->cq_head)
                e->cq_tail = NULL;
            pthread_mutex_unlock(&e->lock);
            complete_batch(ct, b);
            pthread_mutex_lock(&e->lock);
        } else if (e->stopping && e->workers_alive == 0) {
            break;
        } else {
            pthread_cond_wait(&e->done_cv, &e->lock);
        }
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}
