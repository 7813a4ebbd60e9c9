// STUB for the syntax check of ../../GpumlInference.h only - not CMSSW's header.
#ifndef STUB_FWCore_Framework_Event_h
#define STUB_FWCore_Framework_Event_h
#include "FWCore/Utilities/interface/EDGetToken.h"
namespace edm {
  class Event {
  public:
    template <typename T>
    T const& get(EDGetTokenT<T> const& token) const;
    template <typename T, typename... Args>
    void emplace(EDPutTokenT<T> const& token, Args&&... args);
  };
}  // namespace edm
#endif
