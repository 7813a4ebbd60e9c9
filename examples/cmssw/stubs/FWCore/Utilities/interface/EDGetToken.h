// STUB for the syntax check of ../../GpumlInference.h only - not CMSSW's header.
#ifndef STUB_FWCore_Utilities_EDGetToken_h
#define STUB_FWCore_Utilities_EDGetToken_h
#include <string>
namespace edm {
  template <typename T>
  class EDGetTokenT {};
  template <typename T>
  class EDPutTokenT {};
  class InputTag {
  public:
    InputTag(std::string const& label = "") : label_(label) {}

  private:
    std::string label_;
  };
}  // namespace edm
#endif
