/*
 * gpuml/gpuml.h - umbrella header for the gpuml C library.
 *
 * gpuml trains and runs graph neural networks for particle physics (GravNet,
 * EdgeConv / ParticleNet) from C, on CUDA GPUs and CPUs, inside a host
 * framework's process. Include this one header; link with
 * `pkg-config --cflags --libs gpuml`.
 *
 *     #include <gpuml/gpuml.h>
 *     gpuml_ctx_config cfg;
 *     gpuml_ctx_config_init_defaults(&cfg);
 *     gpuml_ctx *ctx;
 *     if (gpuml_ctx_create(&cfg, &ctx) != GPUML_OK) { puts(gpuml_last_error()); return 1; }
 *     ...
 *     gpuml_ctx_destroy(ctx);
 */
#ifndef GPUML_GPUML_H
#define GPUML_GPUML_H

#include "gpuml/export.h"
#include "gpuml/version.h"
#include "gpuml/status.h"
#include "gpuml/executor.h"
#include "gpuml/context.h"
#include "gpuml/tensor.h"
#include "gpuml/ops.h"
#include "gpuml/autograd.h"
#include "gpuml/model.h"
#include "gpuml/optim.h"
#include "gpuml/io.h"
#include "gpuml/checkpoint.h"
#include "gpuml/train.h"
#include "gpuml/knn.h"
#include "gpuml/cluster.h"
#include "gpuml/graph.h"
#include "gpuml/dist.h"
#include "gpuml/ddp.h"
#include "gpuml/infer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Library version string ("0.1.0") of the library actually loaded, which
 * may differ from GPUML_VERSION_STRING of the headers compiled against. */
GPUML_API const char *gpuml_version(void);

#ifdef __cplusplus
}
#endif
#endif
