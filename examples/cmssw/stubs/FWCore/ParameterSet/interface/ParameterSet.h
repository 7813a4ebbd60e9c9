// STUB for the syntax check of ../../GpumlInference.h only - not CMSSW's header.
#ifndef STUB_FWCore_ParameterSet_ParameterSet_h
#define STUB_FWCore_ParameterSet_ParameterSet_h
#include <string>
#include "FWCore/Utilities/interface/EDGetToken.h"
namespace edm {
  class ParameterSet {
  public:
    template <typename T>
    T getParameter(std::string const& name) const;
    ParameterSet const& getParameterSet(std::string const& name) const;
  };
}  // namespace edm
#endif
