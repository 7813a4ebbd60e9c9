// examples/cmssw/gpuml_tbb_executor.h - gpuml's CPU loops on the host's TBB
// pool (header-only; needs oneTBB, e.g. Debian's libtbb-dev, and C++17).
//
// In CMSSW every thread belongs to the framework's TBB arena. With this
// executor gpuml starts no compute thread: each CPU kernel loop becomes a
// tbb::parallel_for in the arena the executor is bound to, inside
// tbb::this_task_arena::isolate, so a thread that waits for the loop's
// pieces only ever picks up pieces of that loop - never another module's
// task (which could take long, or wait for this very thread: the deadlock
// and latency hazards isolation exists for). Several modules (or stream
// copies of one) may run gpuml at the same time through one executor.
//
//     #include "gpuml_tbb_executor.h"
//     gpuml::tbb_executor ex;                      // the arena of the constructing thread
//     gpuml_ctx_config cfg;
//     gpuml_ctx_config_init_defaults(&cfg);
//     cfg.executor = ex.get();                     // ex must outlive the context
//     gpuml_engine_config ecfg;                    // or for the inference engine
//     gpuml_engine_config_init_defaults(&ecfg);
//     ecfg.executor = ex.get();
//
// Worker indices are the arena's thread slots
// (tbb::this_task_arena::current_thread_index), in [0, max_concurrency):
// a slot runs one piece at a time, which is all gpuml's per-worker scratch
// needs. Results are bitwise those of the serial executor.
#ifndef GPUML_TBB_EXECUTOR_H
#define GPUML_TBB_EXECUTOR_H

#include <gpuml/executor.h>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <cstdint>

namespace gpuml {

class tbb_executor {
public:
    // Bound to the arena the constructing thread runs in (CMSSW: the
    // framework's), or the default arena outside any.
    tbb_executor() : own_(tbb::task_arena::attach()), arena_(&own_) { init(); }
    // Bound to the caller's arena (it must outlive this object).
    explicit tbb_executor(tbb::task_arena &arena) : arena_(&arena) { init(); }

    tbb_executor(const tbb_executor &) = delete;
    tbb_executor &operator=(const tbb_executor &) = delete;

    // For gpuml_ctx_config.executor / gpuml_engine_config.executor; valid
    // while this object lives.
    const gpuml_executor *get() const { return &ex_; }
    int max_workers() const { return workers_; }

private:
    void init()
    {
        arena_->initialize();
        workers_ = arena_->max_concurrency();
        ex_.parallel_for = &tbb_executor::run;
        ex_.max_workers = &tbb_executor::workers;
        ex_.self = this;
    }

    static void run(void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg)
    {
        tbb_executor *t = static_cast<tbb_executor *>(self);
        // simple_partitioner: pieces of at most `grain`, split by the
        // range alone (gpuml's results do not depend on the cut anyway).
        auto loop = [=] {
            tbb::this_task_arena::isolate([=] {
                tbb::parallel_for(
                    tbb::blocked_range<int64_t>(0, n, grain > 0 ? grain : 1),
                    [=](const tbb::blocked_range<int64_t> &r) {
                        fn(arg, r.begin(), r.end(), tbb::this_task_arena::current_thread_index());
                    },
                    tbb::simple_partitioner());
            });
        };
        // From a thread of the arena this runs in place; from any other
        // thread (an engine instance) it joins the arena for the loop.
        t->arena_->execute(loop);
    }

    static int workers(void *self) { return static_cast<const tbb_executor *>(self)->workers_; }

    tbb::task_arena own_;      // the attached arena, when not given one
    tbb::task_arena *arena_;   // where loops run
    int workers_ = 1;
    gpuml_executor ex_{};
};

} // namespace gpuml

#endif
