/* Built-in executors (gpuml/executor.h): serial, OpenMP, and gpuml's pool.
 *
 * The pool runs one loop at a time. A loop is published under the mutex as
 * a generation number plus the loop's description; every participant (the
 * caller as worker 0, the pool threads as 1..n-1) copies the description
 * and claims pieces from one 64-bit ticket, (generation << 32) | next
 * piece, by compare-and-swap. A thread that wakes late, after its loop has
 * finished and another has begun, sees a different generation in the
 * ticket and claims nothing: so the caller never waits for stragglers, only
 * for the pieces it handed out. Waiting (pool threads for work, the caller
 * for the last pieces) spins for a few microseconds, then blocks on a
 * condition variable: an idle pool costs no CPU, and a core shared with
 * another process is not burnt spinning (the reason this pool exists:
 * libgomp spins at every barrier unless OMP_WAIT_POLICY=passive). */
#define _GNU_SOURCE /* sched_getaffinity */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "gpuml/executor.h"
#include "gpuml_config.h"

#if GPUML_HAVE_OPENMP
#include <omp.h>
#endif

/* Iterations of the pause loop before blocking: a few microseconds, enough
 * for back-to-back loops of one op sequence to find the workers awake,
 * short enough not to matter to anybody else. */
#define POOL_SPIN 256

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int gpuml_default_num_threads(void)
{
    const char *v = getenv("OMP_NUM_THREADS");
    if (v && *v) {
        char *end = NULL;
        long n = strtol(v, &end, 10); /* "4" or "4,2" (nested lists): the first level */
        if (end != v && n > 0)
            return n > 4096 ? 4096 : (int)n;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    return 1;
}

/* ---- serial ---------------------------------------------------------------- */

static void serial_for(void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg)
{
    (void)self;
    (void)grain;
    if (n > 0)
        fn(arg, 0, n, 0);
}

static int serial_workers(void *self)
{
    (void)self;
    return 1;
}

static const gpuml_executor g_serial = {serial_for, serial_workers, NULL};

const gpuml_executor *gpuml_executor_serial(void) { return &g_serial; }

/* ---- OpenMP ---------------------------------------------------------------- */

typedef struct omp_exec {
    gpuml_executor ex; /* first: ex.self points here */
    gpuml_executor_kind kind;
    int nthreads;
} omp_exec;

#if GPUML_HAVE_OPENMP
static void omp_for(void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg)
{
    const omp_exec *o = self;
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int64_t pieces = (n - 1) / grain + 1;
    int nt = o->nthreads < pieces ? o->nthreads : (int)pieces;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t p = 0; p < pieces; p++) {
        int64_t b = p * grain, e = n - b < grain ? n : b + grain;
        fn(arg, b, e, omp_get_thread_num());
    }
}
#endif

static int omp_workers(void *self) { return ((const omp_exec *)self)->nthreads; }

/* ---- pool ------------------------------------------------------------------ */

typedef struct pool {
    gpuml_executor ex; /* first: ex.self points here */
    gpuml_executor_kind kind;
    int nthreads;         /* workers, the caller included */
    int started;          /* pool threads running (<= nthreads - 1) */
    pthread_t *threads;
    pthread_mutex_t job_lock; /* one loop at a time: held by its caller */
    pthread_mutex_t mu;
    pthread_cond_t wake;      /* pool threads: a new generation, or stop */
    pthread_cond_t finished;  /* the caller: the last piece is done */
    uint32_t gen;             /* under mu */
    bool stop;                /* under mu */
    /* The current loop, written under mu before gen changes. */
    gpuml_range_fn fn;
    void *arg;
    int64_t n, grain, pieces;
    _Atomic uint32_t pub_gen;  /* gen, readable without mu (spinning) */
    _Atomic uint64_t ticket;   /* (gen << 32) | next piece */
    _Atomic int64_t done;      /* pieces finished in this generation */
    bool caller_sleeps;        /* under mu */
} pool;

typedef struct pool_job {
    gpuml_range_fn fn;
    void *arg;
    int64_t n, grain, pieces;
    uint32_t gen;
} pool_job;

static void pool_run(pool *p, const pool_job *j, int worker)
{
    for (;;) {
        uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        if ((uint32_t)(t >> 32) != j->gen || (int64_t)(t & 0xffffffffu) >= j->pieces)
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        int64_t piece = (int64_t)(t & 0xffffffffu), b = piece * j->grain;
        int64_t e = j->n - b < j->grain ? j->n : b + j->grain;
        j->fn(j->arg, b, e, worker);
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == j->pieces) {
            pthread_mutex_lock(&p->mu);
            if (p->caller_sleeps)
                pthread_cond_signal(&p->finished);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

typedef struct pool_thread_arg {
    pool *p;
    int worker;
} pool_thread_arg;

static void *pool_main(void *v)
{
    pool_thread_arg a = *(pool_thread_arg *)v;
    free(v);
    pool *p = a.p;
    uint32_t seen = 0; /* generations start at 1: a thread started late still joins its first loop */
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->gen == seen && !p->stop) {
            pthread_mutex_unlock(&p->mu);
            for (int i = 0; i < POOL_SPIN && atomic_load_explicit(&p->pub_gen, memory_order_acquire) == seen; i++)
                cpu_relax();
            pthread_mutex_lock(&p->mu);
            while (p->gen == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
        }
        if (p->stop)
            break;
        seen = p->gen;
        pool_job j = {p->fn, p->arg, p->n, p->grain, p->pieces, p->gen};
        pthread_mutex_unlock(&p->mu);
        pool_run(p, &j, a.worker);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Start the pool threads (at the first loop, under job_lock). A thread that
 * cannot be started leaves its pieces to the others. */
static void pool_start(pool *p)
{
    for (int w = 1; w < p->nthreads && p->started == w - 1; w++) {
        pool_thread_arg *a = malloc(sizeof *a);
        if (!a)
            return;
        a->p = p;
        a->worker = w;
        if (pthread_create(&p->threads[w - 1], NULL, pool_main, a) != 0) {
            free(a);
            return;
        }
        p->started++;
    }
}

static void pool_for(void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg)
{
    pool *p = self;
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if ((n - 1) / grain + 1 >= ((int64_t)1 << 31))
        grain = (n >> 30) + 1; /* pieces must fit the ticket's 32 bits */
    int64_t pieces = (n - 1) / grain + 1;
    /* Busy (another thread's loop, or a loop started inside a piece): this
     * one runs on the calling thread, so nested use never deadlocks. */
    if (p->nthreads <= 1 || pieces <= 1 || pthread_mutex_trylock(&p->job_lock) != 0) {
        fn(arg, 0, n, 0);
        return;
    }
    if (p->started < p->nthreads - 1)
        pool_start(p);
    pthread_mutex_lock(&p->mu);
    uint32_t gen = p->gen + 1;
    if (gen == 0)
        gen = 1; /* 0 is the threads' initial `seen` */
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->grain = grain;
    p->pieces = pieces;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->ticket, (uint64_t)gen << 32, memory_order_release);
    p->gen = gen;
    atomic_store_explicit(&p->pub_gen, gen, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    pool_job j = {fn, arg, n, grain, pieces, gen};
    pool_run(p, &j, 0);
    for (int i = 0; i < POOL_SPIN && atomic_load_explicit(&p->done, memory_order_acquire) < pieces; i++)
        cpu_relax();
    if (atomic_load_explicit(&p->done, memory_order_acquire) < pieces) {
        pthread_mutex_lock(&p->mu);
        p->caller_sleeps = true;
        while (atomic_load_explicit(&p->done, memory_order_acquire) < pieces)
            pthread_cond_wait(&p->finished, &p->mu);
        p->caller_sleeps = false;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->job_lock);
}

static int pool_workers(void *self) { return ((const pool *)self)->nthreads; }

static void pool_free(pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->finished);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->job_lock);
    free(p->threads);
    free(p);
}

/* ---- create / destroy -------------------------------------------------------- */

gpuml_status gpuml_executor_create(gpuml_executor_kind kind, int num_threads, gpuml_executor **out)
{
    static const char fn[] = "gpuml_executor_create";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    if (num_threads > 4096)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "num_threads %d is above 4096", num_threads);
    int nt = num_threads > 0 ? num_threads : gpuml_default_num_threads();
    switch (kind) {
    case GPUML_EXECUTOR_SERIAL:
    case GPUML_EXECUTOR_OPENMP: {
#if !GPUML_HAVE_OPENMP
        if (kind == GPUML_EXECUTOR_OPENMP)
            return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn, "this gpuml was built without OpenMP");
#endif
        omp_exec *o = calloc(1, sizeof *o);
        if (!o)
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the executor");
        o->kind = kind;
        o->nthreads = kind == GPUML_EXECUTOR_SERIAL ? 1 : nt;
#if GPUML_HAVE_OPENMP
        o->ex.parallel_for = kind == GPUML_EXECUTOR_SERIAL ? serial_for : omp_for;
#else
        o->ex.parallel_for = serial_for;
#endif
        o->ex.max_workers = omp_workers;
        o->ex.self = o;
        *out = &o->ex;
        return GPUML_OK;
    }
    case GPUML_EXECUTOR_POOL: {
        pool *p = calloc(1, sizeof *p);
        if (!p || !(p->threads = calloc((size_t)nt, sizeof *p->threads))) {
            free(p);
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the executor");
        }
        p->kind = kind;
        p->nthreads = nt;
        pthread_mutex_init(&p->job_lock, NULL);
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->wake, NULL);
        pthread_cond_init(&p->finished, NULL);
        p->ex.parallel_for = pool_for;
        p->ex.max_workers = pool_workers;
        p->ex.self = p;
        *out = &p->ex;
        return GPUML_OK;
    }
    default:
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "kind %d is not a gpuml_executor_kind", (int)kind);
    }
}

void gpuml_executor_destroy(gpuml_executor *ex)
{
    if (!ex || ex == &g_serial)
        return;
    if (ex->parallel_for == pool_for)
        pool_free(ex->self);
    else
        free(ex->self);
}
