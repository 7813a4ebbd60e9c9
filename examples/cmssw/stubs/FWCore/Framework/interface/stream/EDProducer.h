// STUB for the syntax check of ../../../GpumlInference.h only - not CMSSW's
// header: the shape of edm::stream::EDProducer<edm::ExternalWork,
// edm::GlobalCache<T>> that the wrapper uses.
#ifndef STUB_FWCore_Framework_stream_EDProducer_h
#define STUB_FWCore_Framework_stream_EDProducer_h
#include <string>
#include "FWCore/Concurrency/interface/WaitingTaskWithArenaHolder.h"
#include "FWCore/Framework/interface/Event.h"
#include "FWCore/Framework/interface/EventSetup.h"
#include "FWCore/Utilities/interface/EDGetToken.h"
#include "FWCore/Utilities/interface/StreamID.h"
namespace edm {
  struct ExternalWork {};
  template <typename T>
  struct GlobalCache {};
  namespace stream {
    namespace detail {
      template <typename... Ts>
      struct cache_of {
        using type = void;
      };
      template <typename T, typename... Ts>
      struct cache_of<GlobalCache<T>, Ts...> {
        using type = T;
      };
      template <typename U, typename... Ts>
      struct cache_of<U, Ts...> : cache_of<Ts...> {};
    }  // namespace detail
    template <typename... Ts>
    class EDProducer {
    public:
      virtual ~EDProducer() = default;
      virtual void beginStream(StreamID) {}
      virtual void acquire(Event const&, EventSetup const&, WaitingTaskWithArenaHolder) {}
      virtual void produce(Event&, EventSetup const&) = 0;

    protected:
      template <typename P>
      EDGetTokenT<P> consumes(InputTag const& tag);
      template <typename P>
      EDPutTokenT<P> produces(std::string const& instance = std::string());
      typename detail::cache_of<Ts...>::type const* globalCache() const;
    };
  }  // namespace stream
}  // namespace edm
#endif
