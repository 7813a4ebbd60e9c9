/* Engine statistics: counters, the batch-size histogram, and timings in
 * log-binned histograms (8 bins per power of two: percentiles within ~6 %,
 * fixed memory, nothing allocated per request). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "infer/engine_impl.h"

#define SUB 8

static int bin_of(double us)
{
    if (!(us >= 1.0))
        return 0;
    int ex;
    double frac = frexp(us, &ex); /* us = frac * 2^ex, frac in [0.5, 1) */
    int sub = (int)((frac * 2.0 - 1.0) * SUB);
    int b = 1 + (ex - 1) * SUB + sub;
    return b < ENG_HIST_BINS ? b : ENG_HIST_BINS - 1;
}

/* Middle of bin b's range. */
static double bin_value(int b)
{
    if (b == 0)
        return 0.5;
    int ex = (b - 1) / SUB, sub = (b - 1) % SUB;
    double lo = ldexp(1.0 + (double)sub / SUB, ex), hi = ldexp(1.0 + (double)(sub + 1) / SUB, ex);
    return 0.5 * (lo + hi);
}

void eng_hist_add(eng_hist *h, double us)
{
    if (us < 0)
        us = 0;
    h->count++;
    h->sum += us;
    if (us > h->max)
        h->max = us;
    h->bins[bin_of(us)]++;
}

static double quantile(const eng_hist *h, double q)
{
    uint64_t rank = (uint64_t)ceil(q * (double)h->count), seen = 0;
    if (rank < 1)
        rank = 1;
    for (int b = 0; b < ENG_HIST_BINS; b++) {
        seen += h->bins[b];
        if (seen >= rank) {
            double v = bin_value(b);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

void eng_hist_summary(const eng_hist *h, gpuml_engine_timing *out)
{
    memset(out, 0, sizeof *out);
    out->count = h->count;
    if (h->count == 0)
        return;
    out->mean_us = h->sum / (double)h->count;
    out->p50_us = quantile(h, 0.50);
    out->p90_us = quantile(h, 0.90);
    out->p99_us = quantile(h, 0.99);
    out->max_us = h->max;
}

void eng_stats_request_locked(gpuml_engine *e, gpuml_status status, int64_t t_submit, int64_t t_dequeue,
                              int64_t t_done)
{
    switch (status) {
    case GPUML_OK: e->st.completed++; break;
    case GPUML_ERR_TIMEOUT: e->st.timed_out++; break;
    case GPUML_ERR_CANCELLED: e->st.cancelled++; break;
    default: e->st.failed++; break;
    }
    if (t_dequeue >= 0)
        eng_hist_add(&e->h_queue, (double)(t_dequeue - t_submit));
    eng_hist_add(&e->h_latency, (double)(t_done - t_submit));
}

void eng_stats_batch(gpuml_engine *e, const eng_batch *b, const gpuml_status *status, int64_t t_done)
{
    pthread_mutex_lock(&e->stats_lock);
    if (b->ran) {
        e->st.batches++;
        e->st.batch_events += (uint64_t)b->n_events;
        e->st.batch_rows += (uint64_t)b->n_rows;
        e->batch_hist[b->n_events]++;
        b->inst->n_batches++;
        b->inst->n_events += (uint64_t)b->n_events;
        b->inst->n_rows += (uint64_t)b->n_rows;
        b->inst->n_failed += b->status != GPUML_OK;
        eng_hist_add(&e->h_compute, (double)(t_done - b->t_start));
        if (b->status != GPUML_OK) {
            e->st.failed_batches++;
            memcpy(e->last_error, b->msg, sizeof e->last_error);
        }
    }
    for (int k = 0; k < b->n_events; k++)
        eng_stats_request_locked(e, status[k], b->items[k]->t_submit, b->items[k]->t_dequeue, t_done);
    pthread_mutex_unlock(&e->stats_lock);
}

gpuml_status gpuml_engine_get_stats(gpuml_engine *e, gpuml_engine_stats *out)
{
    if (!e || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_engine_get_stats", "argument '%s' is NULL",
                          e ? "out" : "e");
    pthread_mutex_lock(&e->stats_lock);
    *out = e->st;
    eng_hist_summary(&e->h_queue, &out->queue_time);
    eng_hist_summary(&e->h_compute, &out->compute_time);
    eng_hist_summary(&e->h_latency, &out->latency);
    pthread_mutex_unlock(&e->stats_lock);
    pthread_mutex_lock(&e->lock);
    out->queued = e->heap_n;
    out->in_flight = e->in_flight;
    pthread_mutex_unlock(&e->lock);
    return GPUML_OK;
}

gpuml_status gpuml_engine_get_instance_stats(gpuml_engine *e, int instance, gpuml_engine_instance_stats *out)
{
    static const char fn[] = "gpuml_engine_get_instance_stats";
    if (!e || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", e ? "out" : "e");
    if (instance < 0 || instance >= e->n_inst)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "instance = %d is not in [0, %d)", instance,
                          e->n_inst);
    const eng_instance *in = &e->inst[instance];
    memset(out, 0, sizeof *out);
    out->device.type = e->cfg.device.type;
    out->device.index = in->device;
    pthread_mutex_lock(&e->stats_lock);
    out->batches = in->n_batches;
    out->failed_batches = in->n_failed;
    out->batch_events = in->n_events;
    out->batch_rows = in->n_rows;
    pthread_mutex_unlock(&e->stats_lock);
    pthread_mutex_lock(&e->lock);
    for (int k = 0; k < ENG_STAGES; k++)
        out->in_flight_batches += in->stages[k].busy;
    out->in_flight_batches -= in->taking; /* the stage it is filling holds no batch yet */
    pthread_mutex_unlock(&e->lock);
    return GPUML_OK;
}

gpuml_status gpuml_engine_batch_histogram(gpuml_engine *e, uint64_t *counts, int n)
{
    static const char fn[] = "gpuml_engine_batch_histogram";
    if (!e || !counts)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", e ? "counts" : "e");
    if (n < 1)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "n = %d must be positive", n);
    memset(counts, 0, (size_t)n * sizeof *counts);
    pthread_mutex_lock(&e->stats_lock);
    for (int k = 0; k <= e->cfg.max_batch_events; k++)
        counts[k < n - 1 ? k : n - 1] += e->batch_hist[k];
    pthread_mutex_unlock(&e->stats_lock);
    return GPUML_OK;
}

void gpuml_engine_reset_stats(gpuml_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->stats_lock);
    memset(&e->st, 0, sizeof e->st);
    memset(&e->h_queue, 0, sizeof e->h_queue);
    memset(&e->h_compute, 0, sizeof e->h_compute);
    memset(&e->h_latency, 0, sizeof e->h_latency);
    memset(e->batch_hist, 0, ((size_t)e->cfg.max_batch_events + 1) * sizeof *e->batch_hist);
    for (int i = 0; i < e->n_inst; i++)
        e->inst[i].n_batches = e->inst[i].n_failed = e->inst[i].n_events = e->inst[i].n_rows = 0;
    pthread_mutex_unlock(&e->stats_lock);
}

const char *gpuml_engine_last_error(gpuml_engine *e, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    buf[0] = '\0';
    if (!e)
        return buf;
    pthread_mutex_lock(&e->stats_lock);
    snprintf(buf, size, "%s", e->last_error);
    pthread_mutex_unlock(&e->stats_lock);
    return buf;
}
