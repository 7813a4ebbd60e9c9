/* tests/cudaemu/include/cudaemu.h - hooks of the emulated CUDA platform for
 * tests (not part of any real CUDA API). All are thread-safe.
 *
 * Environment read at start-up:
 *   GPUML_EMU_DEVICES      number of devices (default 2)
 *   GPUML_EMU_MEM_MB       memory capacity of each device in MiB (default 4096)
 *   GPUML_EMU_SEED         seed of the thread order within blocks (default 1)
 *   GPUML_EMU_WORKERS      extra host threads that run blocks in parallel (default 2)
 *   GPUML_EMU_FAIL_MALLOC  the n-th cudaMalloc/cudaHostAlloc of the process fails
 *   GPUML_EMU_FAULT_LAUNCH the n-th kernel launch of the process faults
 *                          (cudaErrorIllegalAddress, sticky)
 *   GPUML_EMU_COVERAGE_DIR append each kernel's name, once per process, to
 *                          <dir>/kernels.<pid>
 *   GPUML_EMU_LAUNCH_LOG   append one line per launch to <dir>/launches.<pid>.tsv:
 *                          kernel, blocks, threads per block, threads,
 *                          largest loop iteration count of one thread (every
 *                          for/while of the kernel: wrap.cpp.in),
 *                          largest CPU time of one thread (us), launch wall
 *                          time (us); stream operations that are not kernels
 *                          (cuBLAS GEMMs, cuDNN calls, copies, memsets) as
 *                          lines "library:op 0 0 0 0 0.0 0.0" when issued
 *   GPUML_EMU_STRICT_ARGS  0: do not check kernel pointer arguments (default 1)
 *   GPUML_EMU_JITTER_US    each stream operation starts up to this much later
 *   GPUML_EMU_LEGACY_DELAY_US  each legacy-stream operation starts this much
 *                          later (work ordered against it only by luck fails)
 *   GPUML_EMU_STACK_KB     fiber stack size (default 256, 1024 under ASan)
 */
#ifndef GPUML_CUDAEMU_H
#define GPUML_CUDAEMU_H

#include <stddef.h>

#include "cuda_runtime_api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The n-th device allocation from now (1 = the next) fails with
 * cudaErrorMemoryAllocation; 0 disarms. */
void gpuml_emu_fail_malloc_after(int n);
/* The n-th kernel launch from now faults on the device: the context's
 * sticky error becomes cudaErrorIllegalAddress; 0 disarms. */
void gpuml_emu_fault_launch_after(int n);
/* Clears a device's sticky error and the calling thread's last error (a
 * real process would have to restart; tests use this to go on after a
 * fault test). */
void gpuml_emu_clear_sticky(int device);
/* Bytes allocated on a device (cudaMalloc). */
size_t gpuml_emu_bytes_in_use(int device);
/* Number of kernel launches executed so far by the process. */
unsigned long long gpuml_emu_launch_count(void);
/* One line for a stream operation that is not a kernel (e.g. "cublas:sgemm")
 * in the GPUML_EMU_LAUNCH_LOG file, if one is written. */
void gpuml_emu_log_op(const char *name);

#ifdef __cplusplus
}
#endif

#endif
