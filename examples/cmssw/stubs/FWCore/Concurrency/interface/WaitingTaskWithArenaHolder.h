// STUB for the syntax check of ../../GpumlInference.h only - not CMSSW's header.
#ifndef STUB_FWCore_Concurrency_WaitingTaskWithArenaHolder_h
#define STUB_FWCore_Concurrency_WaitingTaskWithArenaHolder_h
#include <exception>
namespace edm {
  class WaitingTaskWithArenaHolder {
  public:
    WaitingTaskWithArenaHolder() = default;
    WaitingTaskWithArenaHolder(WaitingTaskWithArenaHolder&&) = default;
    WaitingTaskWithArenaHolder& operator=(WaitingTaskWithArenaHolder&&) = default;
    WaitingTaskWithArenaHolder(WaitingTaskWithArenaHolder const&) = default;
    WaitingTaskWithArenaHolder& operator=(WaitingTaskWithArenaHolder const&) = default;
    // Thread-safe in CMSSW: schedules the waiting task (produce) in its arena.
    void doneWaiting(std::exception_ptr ex);
  };
}  // namespace edm
#endif
