// Compiles GpumlInference.h against the stub framework headers in stubs/
// (the shapes of the CMSSW classes it uses), so that the build catches a
// wrapper that no longer matches gpuml's API. Not linked, never run.
#include "GpumlInference.h"

template class std::unique_ptr<gpuml::cmssw::Engine>;
template class std::unique_ptr<gpuml::cmssw::Engines>;
static_assert(sizeof(GpumlTaggerExample) > 0, "the example module is a complete type");
