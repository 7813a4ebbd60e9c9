// GpumlInference.h - gpuml's inference engine inside CMSSW, through ExternalWork.
//
// Header only; drop it into a package (e.g. RecoTracker/GpumlTagger/plugins/)
// whose BuildFile.xml has <use name="gpuml"/> (SCRAM tool file: gpuml.xml here).
//
//   - gpuml::cmssw::Engine: one engine (thread-safe), on one GPU or spread over
//     several;
//   - gpuml::cmssw::Engines: the engines of the job, held in the module's
//     GlobalCache and shared by every stream; with several GPUs either one
//     engine over all of them, or one engine per GPU with stream s on GPU
//     s % nDevices (see the class);
//   - gpuml::cmssw::Request: one event's request, a member of the stream module;
//     submit() in acquire(), results ready in produce();
//   - GpumlTaggerExample: an edm::stream::EDProducer<edm::ExternalWork,
//     edm::GlobalCache<...>> using both.
//
// acquire() submits the event and returns; the engine batches it with the
// events of other streams, runs one forward, and calls back on an engine
// thread, which calls WaitingTaskWithArenaHolder::doneWaiting: the framework
// then schedules produce(). A failure (model error, deadline, shutdown)
// reaches the framework as an exception through doneWaiting's
// std::exception_ptr, like any other ExternalWork error. When the engine's
// queue is full (back-pressure), the event runs in direct mode, on its own,
// in acquire().
#ifndef GPUML_CMSSW_GPUML_INFERENCE_H
#define GPUML_CMSSW_GPUML_INFERENCE_H

#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "FWCore/Concurrency/interface/WaitingTaskWithArenaHolder.h"
#include "FWCore/Framework/interface/Event.h"
#include "FWCore/Framework/interface/EventSetup.h"
#include "FWCore/Framework/interface/stream/EDProducer.h"
#include "FWCore/ParameterSet/interface/ParameterSet.h"
#include "FWCore/Utilities/interface/Exception.h"
#include "FWCore/Utilities/interface/StreamID.h"

#include <gpuml/gpuml.h>

#include "gpuml_tbb_executor.h"

namespace gpuml {
  namespace cmssw {

    // The message of a gpuml error as a cms::Exception ("GpumlError" category).
    inline cms::Exception makeException(gpuml_status st, const char* what) {
      cms::Exception ex("GpumlError");
      ex << what << ": " << gpuml_status_string(st) << ": " << gpuml_last_error();
      return ex;
    }

    // Owns a gpuml_engine. Configured from the module's ParameterSet:
    //   modelPath (string), device ("cpu" | "cuda"), instances (0: one per
    //   core on the CPU, one per GPU on CUDA), maxBatchEvents, maxBatchRows,
    //   maxQueueDelayUs, queueCapacity;
    // and by Engines: the GPU `cudaDevice`, or with `spreadOver` not empty a
    // multi-device engine whose instances are spread over those GPUs.
    class Engine {
    public:
      Engine(edm::ParameterSet const& ps, int cudaDevice, std::vector<int> const& spreadOver = {}) {
        gpuml_engine_config cfg;
        gpuml_engine_config_init_defaults(&cfg);
        cfg.device.type = ps.getParameter<std::string>("device") == "cuda" ? GPUML_DEVICE_CUDA : GPUML_DEVICE_CPU;
        cfg.device.index = cudaDevice;
        if (!spreadOver.empty()) {
          cfg.devices = spreadOver.data();  // copied by gpuml_engine_create
          cfg.n_devices = static_cast<int>(spreadOver.size());
        }
        cfg.num_instances = ps.getParameter<int>("instances");
        cfg.max_batch_events = ps.getParameter<int>("maxBatchEvents");
        cfg.max_batch_rows = ps.getParameter<int>("maxBatchRows");
        cfg.max_queue_delay_us = ps.getParameter<int>("maxQueueDelayUs");
        cfg.queue_capacity = ps.getParameter<int>("queueCapacity");
        // The framework owns the threads: the instances' CPU kernels run as
        // isolated tbb::parallel_for loops in the framework's arena (the one
        // the GlobalCache is built in), and gpuml starts no compute thread.
        cfg.executor = executor_.get();
        gpuml_engine* e = nullptr;
        gpuml_status st = gpuml_engine_create(ps.getParameter<std::string>("modelPath").c_str(), &cfg, &e);
        if (st != GPUML_OK)
          throw makeException(st, "gpuml_engine_create");
        engine_.reset(e);
      }
      gpuml_engine* get() const { return engine_.get(); }
      // Model input i / output o feature counts (checked against the event's data).
      int64_t inputFeatures(int i) const {
        int64_t f = 0;
        gpuml_model_input_info(gpuml_engine_model(engine_.get()), i, nullptr, &f);
        return f;
      }
      int64_t outputFeatures(int o, bool* perEvent = nullptr) const {
        int64_t f = 0;
        int pe = 0;
        gpuml_model_output_info(gpuml_engine_model(engine_.get()), o, nullptr, &f, &pe);
        if (perEvent)
          *perEvent = pe != 0;
        return f;
      }

    private:
      // Destroying the engine (end of job) cancels what waits; no event is in
      // flight then, since every acquire() has been matched by its produce().
      struct Deleter {
        void operator()(gpuml_engine* e) const { gpuml_engine_destroy(e); }
      };
      gpuml::tbb_executor executor_;  // declared first: outlives engine_
      std::unique_ptr<gpuml_engine, Deleter> engine_;
    };

    // The engines of the job (the module's GlobalCache). GPUs: `cudaDevices`
    // (vint32); empty: `cudaDevice` alone, or every visible GPU when
    // cudaDevice is -1. With several GPUs, `perStreamDevice` chooses how
    // streams use them:
    //   true:  one single-device engine per GPU, and stream s uses GPU
    //          s % nDevices - the choice ONNX Runtime's session cache makes in
    //          CMSSW. A stream always runs on the same GPU; each engine batches
    //          only the events of its own streams.
    //   false: one engine whose instances are spread over the GPUs
    //          (gpuml_engine_config.devices). It batches the events of every
    //          stream and hands each batch to a GPU with nothing in flight
    //          first, so no GPU idles while another has work queued; results
    //          do not depend on the GPU (identical GPUs), only on the batch.
    class Engines {
    public:
      explicit Engines(edm::ParameterSet const& ps) {
        std::vector<int> devices;
        if (ps.getParameter<std::string>("device") == "cuda") {
          devices = ps.getParameter<std::vector<int>>("cudaDevices");
          int one = ps.getParameter<int>("cudaDevice");
          if (devices.empty() && one >= 0)
            devices.push_back(one);
          for (int d = 0; devices.empty() && d < gpuml_cuda_device_count(); ++d)
            devices.push_back(d);  // cudaDevice -1: every visible GPU ...
          if (devices.empty())
            devices.push_back(0);  // ... none: creation reports GPUML_ERR_NO_DEVICE
        } else {
          devices.push_back(0);  // the CPU
        }
        if (devices.size() == 1)
          engines_.push_back(std::make_unique<Engine>(ps, devices[0]));
        else if (ps.getParameter<bool>("perStreamDevice"))
          for (int d : devices)
            engines_.push_back(std::make_unique<Engine>(ps, d));
        else
          engines_.push_back(std::make_unique<Engine>(ps, devices[0], devices));
      }
      // The engine stream `streamID` uses: GPU streamID % nDevices when there
      // is one engine per GPU, else the one engine.
      Engine const& forStream(unsigned int streamID) const { return *engines_[streamID % engines_.size()]; }

    private:
      std::vector<std::unique_ptr<Engine>> engines_;
    };

    // One event's inference: a member of the stream module (one event at a
    // time per stream), so its buffers are reused from event to event.
    class Request {
    public:
      // inputs[i]: rows x F_i floats, row-major. They are not copied: they must
      // stay valid until produce(), as event products do.
      // outputs[o]: sized here (rows x F, or F for per-event outputs).
      void submit(Engine const& engine,
                  int64_t rows,
                  std::vector<const float*> inputs,
                  edm::WaitingTaskWithArenaHolder holder) {
        int nOut = gpuml_model_num_outputs(gpuml_engine_model(engine.get()));
        outputs_.resize(nOut);
        outPtrs_.resize(nOut);
        for (int o = 0; o < nOut; ++o) {
          bool perEvent = false;
          int64_t f = engine.outputFeatures(o, &perEvent);
          outputs_[o].assign(static_cast<size_t>((perEvent ? 1 : rows) * f), 0.f);
          outPtrs_[o] = outputs_[o].data();
        }
        inputs_ = std::move(inputs);
        gpuml_engine_request req;
        gpuml_engine_request_init(&req);
        req.rows = rows;
        req.inputs = inputs_.data();
        req.outputs = outPtrs_.data();
        req.borrow_inputs = 1;
        holder_ = std::move(holder);
        gpuml_status st = gpuml_engine_submit(engine.get(), &req, &Request::done, this);
        if (st == GPUML_OK)
          return;  // done() will call doneWaiting
        auto h = std::move(holder_);
        if (st == GPUML_ERR_QUEUE_FULL) {
          // Back-pressure: run this event by itself, here, and continue.
          st = gpuml_engine_run_direct(engine.get(), &req, nullptr);
          if (st == GPUML_OK) {
            h.doneWaiting(nullptr);
            return;
          }
        }
        h.doneWaiting(std::make_exception_ptr(makeException(st, "gpuml_engine_submit")));
      }

      // Output o of the last event (valid in produce()).
      std::vector<float>& output(int o) { return outputs_[o]; }

    private:
      // Runs on an engine thread, exactly once per accepted request, after
      // the outputs are written. doneWaiting is safe from any thread: it
      // schedules produce() in the framework's task arena.
      static void done(void* user, gpuml_status st) {
        auto* self = static_cast<Request*>(user);
        std::exception_ptr ex;
        if (st != GPUML_OK)
          ex = std::make_exception_ptr(makeException(st, "gpuml inference"));  // gpuml_last_error() is ours here
        auto holder = std::move(self->holder_);  // produce() may start as soon as doneWaiting returns
        holder.doneWaiting(ex);
      }

      std::vector<const float*> inputs_;
      std::vector<std::vector<float>> outputs_;
      std::vector<float*> outPtrs_;
      edm::WaitingTaskWithArenaHolder holder_;
    };

  }  // namespace cmssw
}  // namespace gpuml

// An example module: per-hit features in, a per-hit score and a per-event
// classification out. Products are plain vectors to keep the example short.
class GpumlTaggerExample
    : public edm::stream::EDProducer<edm::ExternalWork, edm::GlobalCache<gpuml::cmssw::Engines>> {
public:
  GpumlTaggerExample(edm::ParameterSet const& ps, gpuml::cmssw::Engines const* engines)
      : hitsToken_(consumes<std::vector<float>>(ps.getParameter<edm::InputTag>("hits"))),
        scoreToken_(produces<std::vector<float>>("hitScore")),
        classToken_(produces<std::vector<float>>("eventClass")),
        features_(engines->forStream(0).inputFeatures(0)) {}

  static std::unique_ptr<gpuml::cmssw::Engines> initializeGlobalCache(edm::ParameterSet const& ps) {
    return std::make_unique<gpuml::cmssw::Engines>(ps.getParameterSet("gpuml"));
  }
  static void globalEndJob(gpuml::cmssw::Engines const*) {}

  // The stream's engine, fixed for the job: with one engine per GPU this is
  // GPU streamID % nDevices.
  void beginStream(edm::StreamID id) override { engine_ = &globalCache()->forStream(id.value()); }

  void acquire(edm::Event const& event, edm::EventSetup const&, edm::WaitingTaskWithArenaHolder holder) override {
    std::vector<float> const& hits = event.get(hitsToken_);  // [rows, features], kept by the event
    if (hits.size() % static_cast<size_t>(features_) != 0)
      throw cms::Exception("GpumlError") << "hits has " << hits.size() << " values, not a multiple of " << features_;
    request_.submit(*engine_, static_cast<int64_t>(hits.size()) / features_, {hits.data()}, std::move(holder));
  }

  void produce(edm::Event& event, edm::EventSetup const&) override {
    // An error in acquire's work was rethrown by the framework before this.
    event.emplace(scoreToken_, std::move(request_.output(0)));
    event.emplace(classToken_, std::move(request_.output(1)));
  }

private:
  edm::EDGetTokenT<std::vector<float>> hitsToken_;
  edm::EDPutTokenT<std::vector<float>> scoreToken_;
  edm::EDPutTokenT<std::vector<float>> classToken_;
  int64_t features_;
  gpuml::cmssw::Engine const* engine_ = nullptr;  // set in beginStream
  gpuml::cmssw::Request request_;
};

// In the package's plugin file:
//   #include "FWCore/Framework/interface/MakerMacros.h"
//   DEFINE_FWK_MODULE(GpumlTaggerExample);

#endif
