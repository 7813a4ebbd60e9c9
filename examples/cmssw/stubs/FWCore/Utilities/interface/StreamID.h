// STUB for the syntax check of ../../GpumlInference.h only - not CMSSW's header.
#ifndef STUB_FWCore_Utilities_StreamID_h
#define STUB_FWCore_Utilities_StreamID_h
namespace edm {
  class StreamID {
  public:
    unsigned int value() const;
  };
}  // namespace edm
#endif
