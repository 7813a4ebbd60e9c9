// tests/harness_tbb.cc - the TBB adapter (examples/cmssw/gpuml_tbb_executor.h)
// for the op-table harness: every table also runs on a TBB arena of three.
#include "gpuml_tbb_executor.h"

extern "C" const gpuml_executor *h_tbb_executor(void);

extern "C" const gpuml_executor *h_tbb_executor(void)
{
    // Kept for the process: the arena's threads end with it.
    static tbb::task_arena arena(3);
    static gpuml::tbb_executor ex(arena);
    return ex.get();
}
