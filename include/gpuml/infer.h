/*
 * gpuml/infer.h - the asynchronous inference engine.
 *
 * An engine owns a model on a device and runs it for many threads at once.
 * Host threads (a framework's event loop: CMSSW's ExternalWork acquire())
 * submit one event each and return at once; the engine batches the events
 * that are waiting into one ragged batch, runs one forward pass, splits the
 * outputs back per event and calls each request's `done` on an engine
 * thread. No network hop, no server: batching in-process.
 *
 *     gpuml_engine_config cfg;
 *     gpuml_engine_config_init_defaults(&cfg);
 *     cfg.device.type = GPUML_DEVICE_CUDA;
 *     cfg.max_batch_events = 32;
 *     cfg.max_queue_delay_us = 500;
 *     gpuml_engine *eng;
 *     if (gpuml_engine_create("model.h5", &cfg, &eng) != GPUML_OK) { puts(gpuml_last_error()); ... }
 *
 *     // in acquire(): inputs [rows, F_i] f32, outputs [rows, F] (per row) or [1, F] (per event)
 *     const float *in[2] = {hits, tracks_per_hit};
 *     float *out[1] = {scores};
 *     gpuml_engine_request req;
 *     gpuml_engine_request_init(&req);
 *     req.rows = n_hits;
 *     req.inputs = in;
 *     req.outputs = out;
 *     gpuml_status st = gpuml_engine_submit(eng, &req, on_done, event_ctx);
 *     if (st == GPUML_ERR_QUEUE_FULL) ... back-pressure: retry later or run elsewhere
 *     // hits may be reused now; `scores` must stay valid until on_done runs:
 *     //   void on_done(void *event_ctx, gpuml_status st) { ... resume the event ... }
 *
 *     gpuml_engine_destroy(eng);
 *
 * Batching. A request is one event: `rows` rows of every model input. The
 * batcher takes waiting requests in priority order (higher first, FIFO
 * within a priority) until max_batch_events or max_batch_rows is reached,
 * waiting at most max_queue_delay_us after the first waiting request for
 * more to arrive - and not at all once every request the callers keep in
 * flight is already in the engine (the most seen in flight at a completion
 * over the last 100 ms): then nothing more can arrive until a batch
 * completes, so a limit above what can be waiting costs no delay. When
 * several instances are idle, each takes about its share of the waiting
 * rows instead of the first taking all. The batch is the events' rows concatenated with their
 * row_splits, so per-event ops (pooling, kNN, graph layers) never mix
 * events. Per-row outputs are split back by the row splits, per-event
 * outputs by event index. Every result is BITWISE equal to running the
 * event alone (gpuml_engine_run_direct, or gpuml_model_forward on a batch
 * of one) on the CPU: every op is row-local or per-event with fixed
 * reduction orders, and the CPU matrix products are batch-invariant
 * (kernels/matmul.h). On CUDA, cuBLAS picks its GEMM algorithm by shape, so
 * batched results may differ from single-event ones in the last bits.
 *
 * Defaults. With the config from gpuml_engine_config_init_defaults a CPU
 * engine runs one single-threaded instance per core (gpuml_default_num_
 * threads(); with cfg.executor, its max_workers instances whose loops run on
 * the host's pool) and batches of up to 8 events: small events do not split
 * well over threads, and instances overlap one another's serial parts
 * (bench/README-engine.md has the measurements). A CUDA engine runs one
 * instance per device with batches of up to 64. Set the fields to override.
 *
 * Execution. Each of num_instances instances has its own context (and
 * CUDA stream), its own copy of the model, a tape and buffers reserved at
 * creation for the largest batch: two sets of staging buffers (pinned host
 * memory on CUDA), so that one batch is prepared while the previous one
 * runs. On CUDA, inputs go to the device by asynchronous copies on the
 * instance's stream; completion is detected by waiting on a CUDA event on a
 * completion thread (never by host callbacks on the stream, which CUDA
 * skips once its context has an error). In steady state no request
 * allocates: request slots come from a pool of queue_capacity, copied
 * inputs from a pinned pool of queue_rows rows, and the tapes' arenas are
 * warmed by a largest-batch forward at creation.
 *
 * Several devices. With cfg.devices / cfg.n_devices a CUDA engine places
 * instance i on devices[i % n_devices] (one instance per device by
 * default), each with its own context, stream, staging and copy of the
 * model on that device. All instances take batches from the one queue, and
 * an instance takes a batch only when it has a free stage (two per
 * instance), so work goes to the devices that finish it (back-pressure per
 * device: a slow or busy device simply takes less); when an instance that
 * has nothing in flight is waiting, one that already has a batch in flight
 * lets it form the next batch first (least loaded first). A batch's result
 * does not depend on the device it ran on: the same kernels with the same
 * launch shapes on identical devices give bitwise the same outputs, so with
 * max_batch_events = 1 every result equals gpuml_engine_run_direct on any
 * one device bitwise (batched results are as described under Batching).
 * gpuml_engine_get_instance_stats shows the balance. Requests with device
 * memory (inputs_on / outputs_on CUDA) need a single-device engine: on a
 * multi-device engine submit refuses them (DEVICE_MISMATCH) since the
 * device is chosen later; gpuml_engine_run_direct runs on devices[0] and
 * accepts its memory. Devices of different kinds may round differently.
 *
 * Errors. A request that is accepted gets exactly one `done(user, status)`
 * call, on an engine thread, after its outputs are written: GPUML_OK, the
 * error of its batch's forward pass (only that batch's requests fail),
 * GPUML_ERR_TIMEOUT when its deadline passed before its batch was computed,
 * or GPUML_ERR_CANCELLED when the engine shut down first. Inside `done`,
 * gpuml_last_error() holds the message of a failure. A rejected submit
 * (bad arguments, queue full, engine shutting down) returns the error and
 * never calls `done`. Outputs of a failed request are left untouched.
 *
 * Memory cap. cfg.mem_cap_bytes bounds the device memory (host memory on
 * a CPU engine) that the engine's contexts hold together - instances and
 * direct lanes, in use and cached, as gpuml/context.h "memory caps"
 * counts it - so that several engines (or jobs) can share one GPU. One cap
 * for the whole engine rather than one per instance: the share of a GPU is
 * what a user knows, not the number of instances the engine picks (on
 * the CPU one per core), and the instances' needs differ (the batch each
 * takes varies), so a split cap would refuse work that fits. When an
 * allocation would pass the cap, the caches of all the engine's contexts
 * are released first; if it still does not fit the batch (or direct call)
 * fails with GPUML_ERR_OUT_OF_MEMORY, naming the cap, and the engine keeps
 * serving the others. Creation fails (OUT_OF_MEMORY) when the model copies,
 * staging and warm-up of num_instances instances do not fit under it.
 * gpuml_engine_mem_usage reports what the cap counts and the cap.
 *
 * Threading: every function may be called from any thread, concurrently,
 * except gpuml_engine_shutdown / gpuml_engine_destroy, which must not race
 * with other calls on the same engine (and must not be called from `done`).
 * `done` runs on one of the engine's completion threads: keep it short
 * (signal, enqueue a task) - it delays the other requests of its batch.
 */
#ifndef GPUML_INFER_H
#define GPUML_INFER_H

#include <stdint.h>

#include "gpuml/context.h"
#include "gpuml/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpuml_engine gpuml_engine;

typedef enum gpuml_engine_shutdown_mode {
    GPUML_ENGINE_CANCEL = 0, /* waiting requests get GPUML_ERR_CANCELLED      */
    GPUML_ENGINE_DRAIN = 1   /* waiting requests are computed, without delay  */
} gpuml_engine_shutdown_mode;

/* Post-processing for object condensation models (include/gpuml/cluster.h):
 * clusters instead of raw beta and coordinates. With `enabled`, every
 * batch's beta and clustering coordinates go through gpuml_oc_cluster on
 * the engine's device (per event, so batching changes nothing), and every
 * request has GPUML_ENGINE_CLUSTER_OUTPUTS more outputs after the model's
 * n_out = gpuml_model_num_outputs, all f32 (integers are exact below 2^24):
 *   outputs[n_out + 0] cluster_id     [rows, 1]: cluster of each hit, -1 noise
 *   outputs[n_out + 1] cluster_cp     [rows, 1]: slot c < count: row (in the
 *                                     event) of cluster c's condensation point;
 *                                     -1 beyond
 *   outputs[n_out + 2] cluster_energy [rows, 1]: slot c: cluster c's energy
 *                                     (sum of energy_input's column over its
 *                                     hits; 0 without energy_input)
 *   outputs[n_out + 3] cluster_count  [1, 1]
 * The model's own outputs may then be NULL in a request: not wanted. */
#define GPUML_ENGINE_CLUSTER_OUTPUTS 4

typedef struct gpuml_engine_clusters {
    int enabled;        /* default 0: the model's outputs only                          */
    int beta_output;    /* model output with beta [rows, 1]; default 0                  */
    int coords_output;  /* model output with the clustering coordinates; default 1      */
    int energy_input;   /* model input holding the hit energy; -1 (default): none       */
    int energy_column;  /* its column; default 0                                        */
    float t_beta, t_d;  /* gpuml_oc_cluster_params; default 0.1, 0.5                    */
} gpuml_engine_clusters;

/* cfg.n_devices: spread the instances over every visible CUDA device. */
#define GPUML_ENGINE_ALL_DEVICES (-1)

typedef struct gpuml_engine_config {
    gpuml_device device;          /* default: CPU                                                  */
    const int *devices;           /* CUDA: ordinals to spread the instances over, instance i on
                                     devices[i % n_devices] (read during create only; distinct,
                                     each < gpuml_cuda_device_count()). NULL (default): all on
                                     device.index                                                 */
    int n_devices;                /* entries of devices; 0 (default): device.index only;
                                     GPUML_ENGINE_ALL_DEVICES: devices 0 .. count - 1             */
    int num_instances;            /* execution instances (model copies, streams); 0 (default): CPU
                                     one per core (gpuml_default_num_threads, or the executor's
                                     max_workers), CUDA 1 per device; with several devices at
                                     least one per device                                          */
    int max_batch_events;         /* events per batch; 0 (default): CPU 8, CUDA 64                 */
    int64_t max_batch_rows;       /* rows per batch, also the largest request; default 65536       */
    int64_t max_queue_delay_us;   /* wait for more events after the first; default 1000 (0: none)  */
    int queue_capacity;           /* requests accepted and not yet completed; default 1024         */
    int64_t queue_rows;           /* rows of copied inputs held at once; <= 0: 4 * max_batch_rows  */
    int completion_threads;       /* threads that wait for batches and run `done`; default 1       */
    int cpu_threads;              /* CPU workers per instance's context (1: serial); <= 0:
                                     gpuml_default_num_threads() / num_instances, at least 1 -
                                     1 with the default num_instances                              */
    const gpuml_executor *executor; /* the host's executor for the instances' CPU loops (borrowed:
                                     it must outlive the engine); NULL: per cpu_threads            */
    int max_direct_lanes;         /* concurrent gpuml_engine_run_direct calls; default 2           */
    gpuml_engine_shutdown_mode on_destroy; /* what gpuml_engine_destroy does; default CANCEL       */
    int warmup;                   /* != 0 (default): run a largest-batch forward per instance at
                                     creation, so that the first requests allocate nothing         */
    gpuml_log_fn log_fn;          /* for the engine's contexts; NULL: stderr                       */
    void *log_user;
    gpuml_log_level log_level;    /* default GPUML_LOG_WARN                                        */
    gpuml_engine_clusters clusters; /* object condensation post-processing, see above; off          */
    int require_checksum;         /* 1: a model file without gpuml's whole-file checksum is refused
                                     (FORMAT); 0 (default): read with a WARN log. A checksum that
                                     does not match is FORMAT either way (gpuml_ctx_config)        */
    size_t mem_cap_bytes;         /* cap on the memory of all the engine's contexts together
                                     (instances and direct lanes; cached blocks included); 0
                                     (default): none. See "Memory cap" above.                      */
} gpuml_engine_config;

/* Fill cfg with the defaults above. Always call it before setting fields. */
GPUML_API void gpuml_engine_config_init_defaults(gpuml_engine_config *cfg);

/* Create an engine for the model stored at `path`: a model file written by
 * gpuml_model_save (HDF5: config and weights, validated on read), or a JSON
 * model config, whose parameters are then the deterministic initialisation
 * of gpuml_model_create (seed 0) - for tests and benchmarks. Errors:
 * INVALID_ARGUMENT (cfg), IO, FORMAT, NO_DEVICE, OUT_OF_MEMORY, CUDA. *out
 * is NULL on failure. */
GPUML_API gpuml_status gpuml_engine_create(const char *path, const gpuml_engine_config *cfg, gpuml_engine **out);

/* Create an engine running `model` (on any device): every instance gets
 * its own copy of the model's config, parameters and buffers on its own
 * context. The model is only read, during this call; on CUDA, work that
 * writes its parameters must be complete (synchronise its context first).
 * The model may be destroyed afterwards. */
GPUML_API gpuml_status gpuml_engine_create_from_model(const gpuml_model *model, const gpuml_engine_config *cfg,
                                                      gpuml_engine **out);

/* Stop accepting requests (submit then returns GPUML_ERR_STATE), finish or
 * cancel the waiting ones according to `mode`, let batches already started
 * complete (their requests get their real results), and join the engine's
 * threads. Returns when every accepted request's `done` has run. A second
 * call returns GPUML_OK at once. */
GPUML_API gpuml_status gpuml_engine_shutdown(gpuml_engine *e, gpuml_engine_shutdown_mode mode);

/* gpuml_engine_shutdown(e, cfg.on_destroy) if not done yet, then free
 * everything. NULL: no-op. */
GPUML_API void gpuml_engine_destroy(gpuml_engine *e);

/* ---- requests ------------------------------------------------------------ */

/* Called exactly once per accepted request, on an engine thread; see the
 * overview for the statuses. */
typedef void (*gpuml_engine_done_fn)(void *user, gpuml_status status);

typedef struct gpuml_engine_request {
    int64_t rows;                 /* rows of the event, 0 .. max_batch_rows                        */
    const float *const *inputs;   /* one pointer per model input i: [rows, F_i] f32, row-major     */
    float *const *outputs;        /* one pointer per model output: [rows, F] f32 for per-row
                                     outputs, [1, F] for per-event outputs (gpuml_model_output_info),
                                     then the cluster outputs when cfg.clusters.enabled            */
    gpuml_device_type inputs_on;  /* CPU (default): host memory, copied by submit unless
                                     borrow_inputs; CUDA: device memory of the engine's GPU, whose
                                     contents must be ready (producing work synchronised) and stay
                                     valid until `done`                                           */
    gpuml_device_type outputs_on; /* CPU (default): host memory; CUDA: device memory of the
                                     engine's GPU. Must stay valid until `done`.                   */
    int borrow_inputs;            /* != 0: host inputs are not copied: they must stay valid and
                                     unchanged until `done` (saves a copy for large events)         */
    int priority;                 /* higher is taken first; default 0                              */
    int64_t deadline_us;          /* gpuml_engine_clock_us() time after which the request is not
                                     worth computing (GPUML_ERR_TIMEOUT); 0 (default): none        */
} gpuml_engine_request;

/* Zero the request: CPU memory, priority 0, no deadline. */
GPUML_API void gpuml_engine_request_init(gpuml_engine_request *req);

/* Microseconds on the monotonic clock the engine uses for deadlines. */
GPUML_API int64_t gpuml_engine_clock_us(void);

/* Queue one request; never waits for compute. When it returns GPUML_OK,
 * host inputs have been copied (unless borrowed) and `done(user, ...)` will
 * be called exactly once. Errors (no `done` call): INVALID_ARGUMENT (NULL
 * pointers, rows out of range, done NULL), DEVICE_MISMATCH (CUDA memory on
 * a CPU engine), QUEUE_FULL (queue_capacity requests in flight, or no room
 * for the inputs in the queue_rows pool: back-pressure), STATE (shutting
 * down). */
GPUML_API gpuml_status gpuml_engine_submit(gpuml_engine *e, const gpuml_engine_request *req,
                                           gpuml_engine_done_fn done, void *user);

/* Convenience: submit and wait for the request's completion; returns its
 * final status (or submit's error, QUEUE_FULL included), with the message
 * on the calling thread. Not from inside `done` (it would wait for the
 * thread it blocks). */
GPUML_API gpuml_status gpuml_engine_run(gpuml_engine *e, const gpuml_engine_request *req);

/* Direct mode: run one request by itself, without queue or batching, on
 * the caller's thread. On a CUDA engine the work is ordered on `stream`
 * (a cudaStream_t on the engine's device; NULL: wait for completion before
 * returning): the call returns once it is enqueued, and outputs are valid
 * when the stream reaches that point. Host outputs are copied with
 * cudaMemcpyAsync, which is asynchronous only for pinned memory
 * (gpuml_pinned_alloc); host inputs may be reused on return. On the CPU it
 * simply runs (stream ignored). Deadline and priority are ignored. At most
 * max_direct_lanes calls run at once; more wait for a lane. Errors as
 * submit, plus the forward pass's. */
GPUML_API gpuml_status gpuml_engine_run_direct(gpuml_engine *e, const gpuml_engine_request *req, void *stream);

/* The engine's model (instance 0's copy) for gpuml_model_input_info /
 * gpuml_model_output_info; owned by the engine, read-only. */
GPUML_API const gpuml_model *gpuml_engine_model(const gpuml_engine *e);

/* The configuration the engine runs with, automatic choices (num_instances,
 * max_batch_events, queue_rows 0, n_devices) resolved. With several devices,
 * devices points to the engine's own list (valid until destroy), n_devices
 * counts them and device.index is devices[0]. Errors: INVALID_ARGUMENT. */
GPUML_API gpuml_status gpuml_engine_get_config(const gpuml_engine *e, gpuml_engine_config *out);

/* ---- statistics ---------------------------------------------------------- */
typedef struct gpuml_engine_timing {
    uint64_t count;
    double mean_us, p50_us, p90_us, p99_us, max_us; /* percentiles within ~6 % (log-binned) */
} gpuml_engine_timing;

typedef struct gpuml_engine_stats {
    uint64_t submitted;      /* accepted requests                                  */
    uint64_t rejected;       /* submits refused for back-pressure (QUEUE_FULL)     */
    uint64_t completed;      /* done with GPUML_OK                                 */
    uint64_t failed;         /* done with an error of the forward pass             */
    uint64_t timed_out;      /* done with GPUML_ERR_TIMEOUT                        */
    uint64_t cancelled;      /* done with GPUML_ERR_CANCELLED                      */
    uint64_t direct;         /* gpuml_engine_run_direct calls that succeeded       */
    uint64_t batches;        /* forward passes of the batcher                      */
    uint64_t failed_batches;
    uint64_t batch_events;   /* sum over batches: mean = batch_events / batches    */
    uint64_t batch_rows;
    int64_t queued;          /* waiting now                                        */
    int64_t in_flight;       /* accepted, done not yet called                      */
    gpuml_engine_timing queue_time;   /* per request: submit -> taken into a batch */
    gpuml_engine_timing compute_time; /* per batch: taken -> results on the host   */
    gpuml_engine_timing latency;      /* per request: submit -> done called        */
} gpuml_engine_stats;

/* Snapshot of the counters since creation (or the last reset). */
GPUML_API gpuml_status gpuml_engine_get_stats(gpuml_engine *e, gpuml_engine_stats *out);

/* One instance's share of the work, to see how it is balanced over the
 * instances and devices. */
typedef struct gpuml_engine_instance_stats {
    gpuml_device device;     /* where the instance runs                            */
    uint64_t batches;        /* forward passes (failed ones included)              */
    uint64_t failed_batches;
    uint64_t batch_events;   /* events in those batches                            */
    uint64_t batch_rows;
    int in_flight_batches;   /* batches taken and not yet completed, now (0..2)    */
} gpuml_engine_instance_stats;

/* Counters of instance `instance` (0 .. num_instances - 1 of
 * gpuml_engine_get_config) since creation or the last reset. Errors:
 * INVALID_ARGUMENT (NULL, instance out of range). */
GPUML_API gpuml_status gpuml_engine_get_instance_stats(gpuml_engine *e, int instance,
                                                       gpuml_engine_instance_stats *out);

/* Batch-size histogram: counts[k] = batches of k events, for k < n - 1;
 * counts[n - 1] = batches of n - 1 events or more. */
GPUML_API gpuml_status gpuml_engine_batch_histogram(gpuml_engine *e, uint64_t *counts, int n);

/* Zero the counters and timings (queued and in_flight are live values). */
GPUML_API void gpuml_engine_reset_stats(gpuml_engine *e);

/* Copy the message of the engine's last failed batch into buf (always
 * NUL-terminated; "" if none). Returns buf. */
GPUML_API const char *gpuml_engine_last_error(gpuml_engine *e, char *buf, size_t size);

/* Allocator statistics summed over the instances' contexts (pinned != 0:
 * their pinned staging allocators), and the bytes held by their tapes'
 * arenas in *arena_bytes (may be NULL): constant in steady state.
 * bytes_cap: cfg.mem_cap_bytes (0 for pinned: the cap is on device memory). */
GPUML_API gpuml_status gpuml_engine_alloc_stats(gpuml_engine *e, int pinned, gpuml_alloc_stats *out,
                                                size_t *arena_bytes);

/* What the memory cap counts: *held receives the bytes all the engine's
 * contexts (instances and direct lanes) hold from the system now, in use
 * and cached; *cap cfg.mem_cap_bytes (0: none). Either may be NULL.
 * Errors: INVALID_ARGUMENT (e NULL). */
GPUML_API gpuml_status gpuml_engine_mem_usage(gpuml_engine *e, size_t *held, size_t *cap);

#ifdef __cplusplus
}
#endif
#endif
