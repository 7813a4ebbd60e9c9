// tests/test_tbb.cc - gpuml driven from inside TBB tasks through the adapter
// of examples/cmssw/gpuml_tbb_executor.h (issue 13):
//  1. with the TBB executor, a GravNet model's forward starts no thread of
//     gpuml's (counted in /proc/self/task), while a context left to its
//     defaults does start its pool (so the count can see threads);
//  2. the pieces ran on several TBB threads (the host's pool did the work);
//  3. 32 TBB tasks, each with its own context on the one executor, run
//     concurrently inside an arena without deadlock, and every result is
//     bitwise the serial executor's;
//  4. the engine, given the executor, serves requests from TBB tasks with
//     the same results and no compute threads of its own.
#include "gpuml_tbb_executor.h"

#include <gpuml/gpuml.h>
#include <gpuml/testing.h>

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

static int g_fails = 0;
#define CHECK(cond)                                                                                 \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            std::printf("FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, gpuml_last_error());    \
            g_fails++;                                                                              \
        }                                                                                           \
    } while (0)

static int count_threads()
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    while (struct dirent *e = readdir(d))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

// Counts the distinct worker slots that ran pieces, around the TBB executor.
struct counting {
    const gpuml_executor *inner;
    std::mutex mu;
    std::set<int> workers;
    std::set<std::thread::id> threads;
    gpuml_executor ex{};
    struct call {
        counting *c;
        gpuml_range_fn fn;
        void *arg;
    };
    explicit counting(const gpuml_executor *in) : inner(in)
    {
        ex.parallel_for = [](void *self, int64_t n, int64_t grain, gpuml_range_fn fn, void *arg) {
            counting *c = static_cast<counting *>(self);
            call k{c, fn, arg};
            c->inner->parallel_for(
                c->inner->self, n, grain,
                [](void *p, int64_t b, int64_t e, int w) {
                    call *k = static_cast<call *>(p);
                    {
                        std::lock_guard<std::mutex> g(k->c->mu);
                        k->c->workers.insert(w);
                        k->c->threads.insert(std::this_thread::get_id());
                    }
                    k->fn(k->arg, b, e, w);
                },
                &k);
        };
        ex.max_workers = [](void *self) {
            counting *c = static_cast<counting *>(self);
            return c->inner->max_workers(c->inner->self);
        };
        ex.self = this;
    }
};

struct event {
    int64_t n;
    std::vector<float> x;
    std::vector<float> out; // first output
};

static event make_event(int64_t n, unsigned seed)
{
    event e;
    e.n = n;
    e.x.resize((size_t)n * 5);
    unsigned s = seed * 2654435761u + 1;
    for (auto &v : e.x) {
        s = s * 1664525u + 1013904223u;
        v = (float)((s >> 8) & 0xffff) / 65536.0f * 4.0f - 2.0f;
    }
    return e;
}

// Forward of the GravNet model (parameters from seed 0, as the engine makes
// them from a JSON config) on one event, on a context with `ex`.
static bool forward(const gpuml_executor *ex, event &e, int threshold)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.executor = ex;
    gpuml_ctx *ctx = nullptr;
    if (gpuml_ctx_create(&cfg, &ctx) != GPUML_OK)
        return false;
    if (threshold > 0)
        gpuml_ctx_set_parallel_threshold(ctx, threshold);
    gpuml_model *m = nullptr;
    gpuml_tape *tape = nullptr;
    gpuml_tensor *tx = nullptr, *ts = nullptr;
    int64_t splits[2] = {0, e.n};
    int64_t xs[2] = {e.n, 5}, two = 2;
    bool ok = gpuml_model_create_from_file(ctx, GPUML_TEST_CONFIGS "/gravnet_oc.json", &m) == GPUML_OK &&
              gpuml_model_init_params(m, 0) == GPUML_OK && gpuml_tape_create(ctx, &tape) == GPUML_OK &&
              gpuml_tensor_wrap(e.x.data(), cfg.device, GPUML_F32, 2, xs, nullptr, nullptr, &tx) == GPUML_OK &&
              gpuml_tensor_wrap(splits, cfg.device, GPUML_I64, 1, &two, nullptr, nullptr, &ts) == GPUML_OK;
    if (ok) {
        gpuml_tape_set_grad_enabled(tape, 0);
        gpuml_tape_set_training(tape, 0); // inference, as the engine runs it
        gpuml_var *outs[4] = {};
        const gpuml_tensor *ins[1] = {tx};
        ok = gpuml_model_forward(m, tape, ins, ts, outs) == GPUML_OK;
        if (ok) {
            gpuml_tensor *o = gpuml_var_value(outs[0]);
            size_t bytes = gpuml_tensor_nbytes(o);
            e.out.resize(bytes / sizeof(float));
            std::memcpy(e.out.data(), gpuml_tensor_data(o), bytes);
        }
    }
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(ts);
    gpuml_tape_destroy(tape);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
    return ok;
}

int main()
{
    tbb::task_arena arena(4);
    gpuml::tbb_executor tbbex(arena);
    CHECK(tbbex.max_workers() == 4);

    // Wake all of the arena's threads first, so that later counts compare
    // like with like.
    arena.execute([] {
        std::atomic<int> spin{0};
        tbb::parallel_for(0, 64, [&](int) {
            for (int i = 0; i < 200000; i++)
                spin.fetch_add(1, std::memory_order_relaxed);
        });
    });

    // 1 + 2: no gpuml threads; the work spread over the arena's threads.
    event ref = make_event(2000, 1);
    CHECK(forward(gpuml_executor_serial(), ref, 0));
    counting cnt(tbbex.get());
    int before = count_threads();
    event e1 = make_event(2000, 1);
    bool ok = false;
    arena.execute([&] { ok = forward(&cnt.ex, e1, 0); });
    int after = count_threads();
    CHECK(ok);
    CHECK(e1.out.size() == ref.out.size() && e1.out == ref.out);
    std::printf("threads: %d before, %d after the forward on the TBB executor; pieces ran on %zu worker slots, "
                "%zu threads\n", before, after, cnt.workers.size(), cnt.threads.size());
    CHECK(after <= before);
    CHECK(cnt.workers.size() >= 2);
    for (int w : cnt.workers)
        CHECK(w >= 0 && w < tbbex.max_workers());

    // The counter sees threads: a default context starts its pool.
    {
        gpuml_ctx_config cfg;
        gpuml_ctx_config_init_defaults(&cfg);
        cfg.num_threads = 3;
        gpuml_ctx *ctx = nullptr;
        CHECK(gpuml_ctx_create(&cfg, &ctx) == GPUML_OK);
        std::vector<float> big(1 << 20, 1.5f);
        gpuml_tensor *t = nullptr;
        int64_t nb = (int64_t)big.size();
        CHECK(gpuml_tensor_wrap(big.data(), cfg.device, GPUML_F32, 1, &nb, nullptr, nullptr, &t) == GPUML_OK);
        int b0 = count_threads();
        CHECK(gpuml_relu(ctx, t, t) == GPUML_OK);
        int b1 = count_threads();
        std::printf("threads: %d before, %d after an op on a default context of 3\n", b0, b1);
        CHECK(b1 == b0 + 2);
        gpuml_tensor_destroy(t);
        gpuml_ctx_destroy(ctx);
        CHECK(count_threads() == b0);
    }

    // 3: many TBB tasks at once, each its own context on the one executor,
    // loops cut fine so that pieces interleave; bitwise the serial results.
    const int ntasks = 32;
    std::vector<event> evs, refs;
    for (int i = 0; i < ntasks; i++) {
        evs.push_back(make_event(100 + 23 * i, 100 + i));
        refs.push_back(evs.back());
        CHECK(forward(gpuml_executor_serial(), refs.back(), 0));
    }
    std::atomic<int> done{0};
    int t0 = count_threads();
    arena.execute([&] {
        tbb::parallel_for(0, ntasks, [&](int i) {
            if (forward(tbbex.get(), evs[i], i % 2 ? 1 : 0))
                done++;
        });
    });
    int t1 = count_threads();
    CHECK(done.load() == ntasks);
    for (int i = 0; i < ntasks; i++)
        CHECK(evs[i].out == refs[i].out);
    CHECK(t1 <= t0);
    std::printf("nested: %d of %d tasks done, threads %d -> %d\n", done.load(), ntasks, t0, t1);

    // 4: the engine on the host's executor, driven from TBB tasks.
    {
        gpuml_engine_config ec;
        gpuml_engine_config_init_defaults(&ec);
        ec.executor = tbbex.get();
        ec.completion_threads = 1;
        ec.max_batch_rows = 4096;  // a small warm-up
        ec.max_batch_events = 1;   // batch of one: bitwise the direct forward on any CPU (see test_engine)
        gpuml_engine *eng = nullptr;
        CHECK(gpuml_engine_create(GPUML_TEST_CONFIGS "/gravnet_oc.json", &ec, &eng) == GPUML_OK);
        if (eng) {
            // The engine's own threads (instances, completion) exist now;
            // its kernels must add none.
            int e0 = count_threads();
            std::vector<event> req;
            for (int i = 0; i < 16; i++)
                req.push_back(make_event(300 + 11 * i, 500 + i));
            std::vector<event> want = req;
            std::atomic<int> finished{0}, good{0};
            struct ctxt {
                std::atomic<int> *finished, *good;
            } cb{&finished, &good};
            const gpuml_model *em = gpuml_engine_model(eng);
            int nout = gpuml_model_num_outputs(em);
            std::vector<std::vector<std::vector<float>>> outs(req.size());
            std::vector<std::vector<float *>> optrs(req.size());
            arena.execute([&] {
                tbb::parallel_for(0, (int)req.size(), [&](int i) {
                    std::vector<float *> &optr = optrs[i];
                    outs[i].resize((size_t)nout);
                    for (int o = 0; o < nout; o++) {
                        int64_t nf = 0;
                        const char *nm = nullptr;
                        int per_event = 0;
                        gpuml_model_output_info(em, o, &nm, &nf, &per_event);
                        outs[i][o].assign((size_t)(per_event ? 1 : req[i].n) * (size_t)nf, 0.0f);
                        optr.push_back(outs[i][o].data());
                    }
                    const float *in[1] = {req[i].x.data()};
                    gpuml_engine_request r;
                    gpuml_engine_request_init(&r);
                    r.rows = req[i].n;
                    r.inputs = in;
                    r.outputs = optr.data();
                    gpuml_status st = gpuml_engine_submit(
                        eng, &r,
                        [](void *u, gpuml_status s) {
                            ctxt *c = static_cast<ctxt *>(u);
                            if (s == GPUML_OK)
                                (*c->good)++;
                            (*c->finished)++;
                        },
                        &cb);
                    if (st != GPUML_OK)
                        finished++;
                });
            });
            while (finished.load() < (int)req.size())
                std::this_thread::yield();
            int e1c = count_threads();
            CHECK(good.load() == (int)req.size());
            for (size_t i = 0; i < req.size(); i++) {
                CHECK(forward(gpuml_executor_serial(), want[i], 0));
                CHECK(outs[i][0] == want[i].out);
            }
            std::printf("engine: %d of %zu requests ok, threads %d -> %d\n", good.load(), req.size(), e0, e1c);
            CHECK(e1c <= e0);
            gpuml_engine_destroy(eng);
        }
    }

    std::printf(g_fails ? "test_tbb: %d failure(s)\n" : "test_tbb: all passed\n", g_fails);
    return g_fails ? 1 : 0;
}
