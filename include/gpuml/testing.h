/*
 * gpuml/testing.h - hooks for gpuml's own tests: fault injection and loop
 * cutting. UNSTABLE and NOT FOR PRODUCTION USE: these functions may change
 * or disappear in any release, and a program that calls them outside a
 * test changes the library's behaviour on purpose (failed allocations,
 * failed batches and reads). They are kept out of gpuml/gpuml.h; include
 * this header explicitly:
 *
 *     #include <gpuml/gpuml.h>
 *     #include <gpuml/testing.h>
 *     gpuml_ctx_fail_allocation_after(ctx, 1);   // next allocation fails
 *
 * Each hook acts on one object and is not synchronised with work running
 * on it from other threads: set it while the object is idle.
 */
#ifndef GPUML_TESTING_H
#define GPUML_TESTING_H

#include "gpuml/context.h"
#include "gpuml/infer.h"
#include "gpuml/io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU loops of more than `work` element operations are cut into pieces of
 * about work/4 and handed to the executor (default, and work <= 0: 32768).
 * Tests set 1 so that every loop of two or more iterations is split, to
 * check that results do not depend on the cut. */
GPUML_API void gpuml_ctx_set_parallel_threshold(gpuml_ctx *ctx, int64_t work);

/* Make the n-th allocation request from now (device, pinned or arena,
 * counted together) fail with GPUML_ERR_OUT_OF_MEMORY, then continue
 * normally. n <= 0 disables. */
GPUML_API void gpuml_ctx_fail_allocation_after(gpuml_ctx *ctx, long n);

/* Of the batches gpuml_loader_next returns from now on, the n-th fails to
 * read (GPUML_ERR_IO), as a prefetch thread's read error would. Prefetched
 * batches are dropped and read again, so the count does not depend on
 * timing. n <= 0 disables. */
GPUML_API void gpuml_loader_fail_read_after(gpuml_loader *l, long n);

/* The n-th batch started from now fails in its forward pass with
 * GPUML_ERR_OUT_OF_MEMORY (message: "injected"), then batches run normally
 * again. n <= 0 disables. */
GPUML_API void gpuml_engine_fail_batch_after(gpuml_engine *e, long n);

#ifdef __cplusplus
}
#endif
#endif
