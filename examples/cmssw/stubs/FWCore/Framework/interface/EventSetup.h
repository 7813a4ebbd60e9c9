// STUB for the syntax check of ../../GpumlInference.h only - not CMSSW's header.
#ifndef STUB_FWCore_Framework_EventSetup_h
#define STUB_FWCore_Framework_EventSetup_h
namespace edm {
  class EventSetup {};
}  // namespace edm
#endif
