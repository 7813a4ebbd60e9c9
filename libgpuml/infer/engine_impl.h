/* libgpuml/infer/engine_impl.h - the inference engine's internals, shared by
 * engine.c (creation, shutdown), queue.c (submit, priority queue, batch
 * formation), slots.c (the slot lifecycle and the input pool), instance.c
 * (instances and their workers), completion.c (completion threads),
 * stats.c, clusters.c and direct.c. Files call only down this list's
 * order: engine, direct, instance, completion, queue, slots, stats,
 * clusters (tools/check_layers.py checks that no two call each other).
 *
 * A request's life (one state machine for CPU and CUDA):
 *   submit:     slot from the free list, inputs copied into the pool, pushed on the heap
 *   batcher:    an instance's worker pops slots into one of its stages (expired -> TIMEOUT)
 *   run:        inputs gathered into the stage's staging, deadlines re-checked, forward,
 *               outputs copied to the staging (CUDA: async on the stream + an event)
 *   completion: a completion thread waits for the event, scatters the outputs, calls done,
 *               returns the slot and the stage
 * Requests that never reach a batch (TIMEOUT at dequeue, CANCELLED at shutdown) go
 * straight to the completion threads' `finished` list.
 *
 * Locking: one engine mutex `lock` guards the queue, the pool, the slot free
 * list, the stages' busy flags and the completion lists; `stats_lock` the
 * statistics. Nothing is allocated after creation except the lazily made
 * direct lanes. */
#ifndef GPUML_INFER_ENGINE_IMPL_H
#define GPUML_INFER_ENGINE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/internal.h"
#include "core/runtime.h"
#include "gpuml/infer.h"

#define ENG_STAGES 2        /* batches in flight per instance */
#define ENG_HIST_BINS 400   /* log-binned timings: 8 bins per power of two from 1 us */

typedef struct eng_slot {
    struct eng_slot *next;      /* free list / finished list                       */
    gpuml_engine_done_fn done;
    void *user;
    int64_t rows;
    int priority;
    uint64_t seq;               /* FIFO order within a priority                    */
    int64_t deadline_us;
    int64_t t_submit, t_dequeue;
    bool in_dev, out_dev;
    int64_t pool_off;           /* first pool row of the copied inputs, -1: none   */
    const float **in;           /* [n_in] where the inputs are now                 */
    float **out;                /* [n_out] the caller's buffers                    */
    gpuml_status status;        /* TIMEOUT / CANCELLED once decided, else OK       */
    int64_t row0;               /* first row in its batch                          */
} eng_slot;

typedef struct eng_instance eng_instance;

typedef struct eng_batch {
    struct eng_batch *next;     /* completion queue                                */
    eng_instance *inst;
    bool busy;                  /* a batch owns the stage (engine lock)            */
    eng_slot **items;           /* [max_events]                                    */
    int n_events;
    int64_t n_rows;
    bool computed;              /* the forward ran and outputs were copied out     */
    bool event_recorded;
    gpuml_status status;
    char msg[GPUML_MSG_MAX];
    void *event;                /* cudaEvent_t                                     */
    int64_t t_start;
    float *h_in;                /* staging: input i at in_off[i] floats, [max_rows, F_i] */
    int64_t *h_splits;          /* [max_events + 1]                                */
    int *h_flag;                /* CUDA: the context's device error word, read back */
    float *h_out;               /* staging: output o at out_off[o] floats          */
    gpuml_tensor **d_in;        /* CUDA: [n_in] device buffers [max_rows, F_i]     */
    gpuml_tensor *d_splits;     /* CUDA: [max_events + 1] i64                      */
    gpuml_tensor *in_view;      /* [n_in] views of this batch's inputs             */
    gpuml_tensor splits_view;
    gpuml_var **outs;           /* [n_out] the forward's outputs                   */
    const float *cl_src[GPUML_ENGINE_CLUSTER_OUTPUTS]; /* the cluster outputs (device) */
    bool ran;                   /* a forward was attempted (some request was live) */
} eng_batch;

struct eng_instance {
    gpuml_engine *eng;
    int index;
    int device;                 /* CUDA ordinal of its context (0 on the CPU)      */
    bool taking;                /* its worker is in eng_take_batch (engine lock)   */
    uint64_t n_batches, n_failed, n_events, n_rows; /* its share (stats_lock)      */
    gpuml_ctx *ctx;
    gpuml_model *model;
    gpuml_tape *tape;
    pthread_t thread;
    bool started;
    bool cv_ready;
    atomic_size_t arena_bytes;  /* the tape's arena capacity, published by the worker */
    pthread_cond_t stage_cv;    /* a stage became free                             */
    eng_batch stages[ENG_STAGES];
};

/* A completion thread and its private copy of a batch's callbacks, so that
 * the stage can go back to its worker before the callbacks run. */
typedef struct eng_cthread {
    gpuml_engine *eng;
    pthread_t thread;
    bool started;
    gpuml_engine_done_fn *done; /* [max_events] */
    void **user;
    gpuml_status *status;
    char msg[GPUML_MSG_MAX];
} eng_cthread;

typedef struct eng_hist {
    uint64_t count;
    double sum, max;
    uint64_t bins[ENG_HIST_BINS];
} eng_hist;

typedef struct eng_lane {
    gpuml_ctx *ctx;
    gpuml_tape *tape;
    void *ev_in, *ev_out;       /* CUDA events ordering the lane's stream with the caller's */
    bool busy;
} eng_lane;

struct gpuml_engine {
    gpuml_engine_config cfg;
    bool cuda;
    int n_in, n_out;            /* n_out: the model's outputs + the cluster outputs  */
    int n_mout;                 /* the model's outputs                             */
    int64_t *f_in, *f_out;      /* features per input / output                     */
    int *out_event;             /* output o is per event                           */
    int64_t f_in_sum;
    int64_t *in_off, *out_off;  /* staging offsets in floats                       */
    int64_t in_floats, out_floats;

    bool sync_ready;            /* locks and condition variables initialised       */
    pthread_mutex_t lock;
    pthread_cond_t queue_cv;    /* the batch former waits for requests (monotonic clock) */
    pthread_cond_t turn_cv;     /* other workers wait for their turn to form       */
    pthread_cond_t done_cv;     /* completion threads wait for work                */
    pthread_cond_t submit_cv;   /* shutdown waits for submits that hold a slot     */
    int submitting;             /* submits between taking a slot and pushing it    */
    bool forming;
    int takers;                 /* workers in eng_take_batch: idle instances  */
    bool stopping, stopped, shutdown_started;
    gpuml_engine_shutdown_mode stop_mode;
    int workers_alive;

    eng_slot *slots;            /* [queue_capacity]                                */
    void *slot_ptrs;            /* the slots' in/out pointer arrays, one block     */
    eng_slot *free_slots;
    int64_t in_flight;
    /* The most requests in flight at a completion, over the current and
     * the previous window: how many the callers keep submitted (8 threads
     * with one event each: 8). When that many are in the engine, nothing
     * more can arrive until one completes, so the batcher stops waiting. */
    int64_t pop_cur, pop_prev, pop_window_start;
    eng_slot **heap;            /* [queue_capacity] max-heap on (priority, -seq)   */
    int heap_n;
    int64_t heap_rows;
    int64_t oldest_submit;      /* submit time of the oldest waiting request       */
    uint64_t next_seq;

    float *pool;                /* [pool_rows * f_in_sum] copied inputs            */
    int64_t pool_rows;
    int64_t *ext_off, *ext_len; /* free extents of the pool, sorted by offset      */
    int n_ext;

    eng_slot *fin_head, *fin_tail;   /* finished without a batch                   */
    eng_batch *cq_head, *cq_tail;    /* computed batches to complete               */

    eng_instance *inst;
    int n_inst;
    int *devices;               /* [n_devices] the resolved cfg.devices, or NULL   */
    int n_devices;              /* distinct devices of the instances (1: one)      */
    eng_cthread *cthreads;
    int n_cthreads;

    pthread_mutex_t stats_lock;
    gpuml_engine_stats st;      /* counters only; timings from the histograms      */
    eng_hist h_queue, h_compute, h_latency;
    uint64_t *batch_hist;       /* [max_events + 1]                                */
    char last_error[GPUML_MSG_MAX];
    atomic_long fail_countdown;

    pthread_mutex_t lane_lock;
    pthread_cond_t lane_cv;
    eng_lane *lanes;            /* [max_direct_lanes], created on first use        */
    int n_lanes;

    gpuml_mem_budget *budget;   /* cfg.mem_cap_bytes shared by every context, or NULL */
};

/* ---- clusters.c ---- */
gpuml_status eng_clusters_check(gpuml_engine *e, const gpuml_model *m);
/* gpuml_oc_cluster on a forward's outputs, results in f32 tensors of the
 * tape; src receives their data pointers (cluster_id, cp, energy, count). */
gpuml_status eng_clusters_run(gpuml_engine *e, gpuml_ctx *ctx, gpuml_tape *tape, const gpuml_tensor *const *ins,
                              const gpuml_tensor *splits, gpuml_var *const *outs, int64_t rows, int64_t events,
                              const float **src);
/* Source of output o of a forward (model output or cluster output). */
static inline const float *eng_out_src(const gpuml_engine *e, gpuml_var *const *outs, const float *const *cl, int o)
{
    return o < e->n_mout ? (const float *)gpuml_tensor_data(gpuml_var_value(outs[o])) : cl[o - e->n_mout];
}

/* ---- slots.c: the slot lifecycle ---- */
/* A free slot and, for rows > 0, that many rows of the input pool
 * (*pool_off; -1 when rows = 0). NULL when either is exhausted, then
 * nothing is taken. Lock held. */
eng_slot *eng_slot_take_locked(gpuml_engine *e, int64_t rows, int64_t *pool_off);
/* Finish a slot outside any batch (TIMEOUT / CANCELLED): lock held. */
void eng_finish_slot_locked(gpuml_engine *e, eng_slot *s, gpuml_status status);
/* Give back the pool rows of the batch's copied inputs (after gathering). */
void eng_release_inputs(gpuml_engine *e, eng_batch *b);
/* Return a slot (and its pool rows) to the free lists. Lock held. */
void eng_slot_free_locked(gpuml_engine *e, eng_slot *s);
/* Call back a list of finished slots (no lock held). */
void eng_complete_finished(gpuml_engine *e, eng_slot *list);
/* Set the thread's last error for a failed request (msg NULL or empty: the
 * status's own text), then call done. No lock held. */
void eng_call_done(gpuml_engine_done_fn done, void *user, gpuml_status st, const char *msg);

/* ---- queue.c ---- */
gpuml_status eng_queue_init(gpuml_engine *e);
void eng_queue_fini(gpuml_engine *e);
/* Check a request against the model and the engine (fn names the caller). */
gpuml_status eng_check_request(gpuml_engine *e, const gpuml_engine_request *req, const char *fn);
/* Fill the stage `b` with the next batch; waits for requests. Returns false
 * when the engine is stopping and nothing is left for this worker. */
bool eng_take_batch(gpuml_engine *e, eng_batch *b);
/* Move every waiting request to the finished list with `status`. Lock held. */
void eng_cancel_waiting_locked(gpuml_engine *e, gpuml_status status);

/* ---- engine.c ---- */
/* The engine's clock (deadlines, timings, the batcher's timed wait). */
static inline int64_t eng_now_us(void) { return gpuml_clock_us(); }
/* A context on CUDA device `device` (ignored on the CPU) with the engine's
 * configured threads and log (the default threads shared among the
 * instances). */
static inline gpuml_status eng_make_ctx(gpuml_engine *e, int device, gpuml_ctx **out)
{
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.device = e->cfg.device;
    if (e->cuda)
        cc.device.index = device;
    cc.num_threads = e->cfg.cpu_threads;
    cc.executor = e->cfg.executor;
    cc.log_fn = e->cfg.log_fn;
    cc.log_user = e->cfg.log_user;
    cc.log_level = e->cfg.log_level;
    GPUML_TRY(gpuml_ctx_create_shared(&cc, e->n_inst, out));
    if (e->budget) { /* cfg.mem_cap_bytes: every context of the engine charges one budget */
        gpuml_status st = gpuml_allocator_join_budget((*out)->alloc, e->budget);
        if (st != GPUML_OK) {
            gpuml_ctx_destroy(*out);
            *out = NULL;
            return st;
        }
    }
    return GPUML_OK;
}

/* ---- instance.c ---- */
gpuml_status eng_instance_init(gpuml_engine *e, eng_instance *in, const gpuml_model *src);
void eng_instance_fini(eng_instance *in);
/* A largest-batch forward of zeros: arena and caches in steady state. */
gpuml_status eng_warm_up(eng_instance *in);
void *eng_worker_main(void *instance);

/* ---- completion.c ---- */
void *eng_completion_main(void *cthread);

/* ---- stats.c ---- */
void eng_hist_add(eng_hist *h, double us);
void eng_hist_summary(const eng_hist *h, gpuml_engine_timing *out);
/* Account a completed request (t_dequeue < 0: it never reached a batch). */
void eng_stats_request_locked(gpuml_engine *e, gpuml_status status, int64_t t_submit, int64_t t_dequeue,
                              int64_t t_done);
/* Account a batch and its requests (statuses as given to done). */
void eng_stats_batch(gpuml_engine *e, const eng_batch *b, const gpuml_status *status, int64_t t_done);

/* ---- direct.c ---- */
void eng_lanes_fini(gpuml_engine *e);

/* ---- CUDA calls (core/runtime.h), in the engine's name -------------------
 * Each selects `device` for the call and restores the thread's device. */
typedef gpuml_copy_kind eng_copy_kind;
#define ENG_H2D GPUML_COPY_H2D
#define ENG_D2H GPUML_COPY_D2H
#define ENG_D2D GPUML_COPY_D2D
#define ENG_FN "gpuml_engine"
/* For the engine's own threads: the device stays current. */
static inline gpuml_status eng_cuda_set_device(int device) { return gpuml_cuda_rt_set_device(device, ENG_FN); }
/* Blocking sync: a waiting completion thread sleeps instead of spinning
 * on a core the host framework needs. */
static inline gpuml_status eng_cuda_event_create(int device, void **ev)
{
    return gpuml_cuda_rt_event_create(device, GPUML_EVENT_BLOCKING, ev, ENG_FN);
}
static inline void eng_cuda_event_destroy(int device, void *ev) { gpuml_cuda_rt_event_destroy(device, ev); }
static inline gpuml_status eng_cuda_event_record(int device, void *ev, void *stream)
{
    return gpuml_cuda_rt_event_record(device, ev, stream, ENG_FN);
}
/* Blocks until the event's work is done; reports the stream's error. */
static inline gpuml_status eng_cuda_event_sync(int device, void *ev)
{
    return gpuml_cuda_rt_event_sync(device, ev, ENG_FN);
}
static inline gpuml_status eng_cuda_stream_wait(int device, void *stream, void *ev)
{
    return gpuml_cuda_rt_stream_wait(device, stream, ev, ENG_FN);
}
static inline gpuml_status eng_cuda_stream_sync(int device, void *stream)
{
    return gpuml_cuda_rt_stream_sync(device, stream, ENG_FN);
}
/* Never synchronises (D2H into pageable memory is synchronous in CUDA itself). */
static inline gpuml_status eng_cuda_memcpy_async(int device, void *dst, const void *src, size_t n,
                                                 eng_copy_kind kind, void *stream)
{
    return gpuml_cuda_rt_memcpy_async(device, dst, src, n, kind, stream, ENG_FN);
}

#endif
