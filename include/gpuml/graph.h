/*
 * gpuml/graph.h - the fused ops that GravNet and EdgeConv layers are built
 * from, with their backward functions, and batch normalisation over rows.
 *
 * The graph is the output of gpuml_knn: idx [N, k] i32 holds global row
 * numbers (slot 0 is the point itself, -1 pads the tail of a row whose event
 * has fewer than k points) and dist2 [N, k] f32 the squared distances. A
 * slot is a valid edge i -> idx[i, s] when 0 <= idx[i, s] < N, and, with
 * exclude_self != 0, s >= 1. Everything else is padding: it contributes
 * nothing and receives no gradient.
 *
 * GravNet (PyTorch Geometric GravNetConv semantics), h = Linear(x) [N, P]:
 *
 *     // idx [N, k], dist2 [N, k] from gpuml_knn on the learned coordinates s [N, S]
 *     gpuml_gravnet_aggregate(ctx, h, idx, dist2, 10.0f, 0, agg, argmax);
 *     // agg [N, 2P] = [mean, max] of exp(-10 dist2_ij) h_j over neighbours j
 *     ...
 *     gpuml_index_csr(ctx, idx, rowptr, col);   // once per graph, shared
 *     gpuml_gravnet_aggregate_backward(ctx, h, idx, dist2, 10.0f, 0, argmax, g_agg,
 *                                      rowptr, col, g_h, g_dist2);
 *     // g_dist2 then goes through the kNN backward to the coordinates s
 *
 * EdgeConv block (ParticleNet: k + 1 neighbours, self excluded), edges
 * [N, k_e, C] with k_e = k - exclude_self:
 *
 *     gpuml_edge_first_linear(ctx, x, idx, 1, w, b, e1);  // W [x_i, x_j - x_i] + b
 *     gpuml_edge_mask(ctx, idx, 1, mask);                 // [N, k_e] u8
 *     gpuml_batch_norm(ctx, &bn, e1, mask, gamma, beta, rmean, rvar, e1, smean, sinv);
 *     gpuml_relu(ctx, e1, e1);
 *     ... more per-edge linear layers (gpuml_linear on [N * k_e, C]) ...
 *     gpuml_neighbour_aggregate(ctx, GPUML_REDUCE_MEAN, e3, idx, 1, out, NULL);
 *
 * All ops read their inputs and write caller-allocated outputs on the
 * context's device, enqueued on its stream. Backward functions overwrite
 * their outputs unless an `accumulate` flag says otherwise; NULL gradient
 * outputs are skipped. Results are bitwise the same for every CPU thread
 * count: sums run in a fixed order (in double where stated) and gradients
 * that several edges send to one node are gathered through the reverse
 * adjacency (gpuml_index_csr), never with atomics. CPU and CUDA agree to
 * float rounding (expf differs by an ulp between the two).
 *
 * Backward functions that gather over the reverse adjacency take it as
 * rowptr [N+1] i64 and col [N*k] i64, exactly as gpuml_index_csr(idx)
 * writes them, so that one CSR serves every op on the same graph; pass NULL
 * for both and the function builds it in scratch memory. Entries that do
 * not match idx are skipped, so a wrong CSR gives wrong gradients but never
 * reads out of bounds.
 *
 * Errors: INVALID_ARGUMENT (NULL, bad parameter), DTYPE, SHAPE,
 * DEVICE_MISMATCH, OUT_OF_MEMORY (scratch), CUDA/CUDNN from the backend. On
 * error nothing is written.
 */
#ifndef GPUML_GRAPH_H
#define GPUML_GRAPH_H

#include "gpuml/context.h"
#include "gpuml/ops.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- GravNet ------------------------------------------------------------ */

/* out [N, 2P] f32 = [mean, max] over the valid neighbours j of row i of the
 * messages w_ij * h[j] with w_ij = exp(-alpha * dist2[i, s]); h [N, P] f32,
 * idx [N, k] i32, dist2 [N, k] f32. The mean divides by the number of valid
 * neighbours; a row without any gives 0 in both halves. The [N, k, P]
 * messages are never stored. The max propagates NaN; argmax [N, P] i32
 * (NULL when no backward follows) receives the slot s of the maximum
 * (ties: the lowest slot; -1 for a row without neighbours). alpha must be
 * finite (PyG uses 10). */
GPUML_API gpuml_status gpuml_gravnet_aggregate(gpuml_ctx *ctx, const gpuml_tensor *h, const gpuml_tensor *idx,
                                               const gpuml_tensor *dist2, float alpha, int exclude_self,
                                               gpuml_tensor *out, gpuml_tensor *argmax);

/* Gradients of gpuml_gravnet_aggregate from gout [N, 2P]: gh [N, P] and
 * gdist2 [N, k] (0 on padding and excluded slots). argmax is the forward's
 * (required). The max half routes each gradient to the arg-max slot only.
 * rowptr/col: the reverse adjacency of idx, or both NULL (see the top). */
GPUML_API gpuml_status gpuml_gravnet_aggregate_backward(gpuml_ctx *ctx, const gpuml_tensor *h,
                                                        const gpuml_tensor *idx, const gpuml_tensor *dist2,
                                                        float alpha, int exclude_self, const gpuml_tensor *argmax,
                                                        const gpuml_tensor *gout, const gpuml_tensor *rowptr,
                                                        const gpuml_tensor *col, gpuml_tensor *gh,
                                                        gpuml_tensor *gdist2);

/* ---- EdgeConv ----------------------------------------------------------- */

/* The first linear layer of EdgeConv's edge network, W [C, 2F] (PyTorch
 * nn.Linear(2F, C) layout) and bias [C] (or NULL) applied to [x_i, x_j - x_i]
 * for every edge: out [N, k_e, C] f32 with k_e = k - (exclude_self != 0);
 * out[i, t] belongs to idx slot t + (exclude_self != 0). Computed from two
 * per-node products, (W1 - W2) x_i + b and W2 x_j (W1 = W[:, :F],
 * W2 = W[:, F:]), with one CBLAS / cuBLAS GEMM over the nodes: the [x_i,
 * x_j - x_i] tensor is never built. Padding edges give 0. x [N, F] f32. */
GPUML_API gpuml_status gpuml_edge_first_linear(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *idx,
                                               int exclude_self, const gpuml_tensor *w, const gpuml_tensor *bias,
                                               gpuml_tensor *out);

/* Gradients of gpuml_edge_first_linear from gout [N, k_e, C]: gx [N, F]
 * (overwritten), gw [C, 2F] and gbias [C] (added to when accumulate != 0).
 * The x_j part is gathered per node through the reverse adjacency
 * (rowptr/col or both NULL, see the top). */
GPUML_API gpuml_status gpuml_edge_first_linear_backward(gpuml_ctx *ctx, const gpuml_tensor *x,
                                                        const gpuml_tensor *idx, int exclude_self,
                                                        const gpuml_tensor *w, const gpuml_tensor *gout,
                                                        const gpuml_tensor *rowptr, const gpuml_tensor *col,
                                                        gpuml_tensor *gx, gpuml_tensor *gw, gpuml_tensor *gbias,
                                                        int accumulate);

/* Reduce an edge tensor edges [N, k_e, C] f32 (k_e = k - (exclude_self != 0),
 * laid out as gpuml_edge_first_linear's output) over the valid edges of
 * each row: out [N, C]. op: GPUML_REDUCE_SUM, _MEAN or _MAX; a row without
 * valid edges gives 0. MAX propagates NaN and fills argmax [N, C] i32 with
 * the edge slot t of the maximum (ties: the lowest; -1 for none); argmax is
 * ignored (may be NULL) for SUM and MEAN. */
GPUML_API gpuml_status gpuml_neighbour_aggregate(gpuml_ctx *ctx, gpuml_reduce_op op, const gpuml_tensor *edges,
                                                 const gpuml_tensor *idx, int exclude_self, gpuml_tensor *out,
                                                 gpuml_tensor *argmax);

/* gedges [N, k_e, C] from gout [N, C] (0 on padding edges). MAX needs the
 * forward argmax and routes each gradient to that edge only. */
GPUML_API gpuml_status gpuml_neighbour_aggregate_backward(gpuml_ctx *ctx, gpuml_reduce_op op,
                                                          const gpuml_tensor *idx, int exclude_self,
                                                          const gpuml_tensor *gout, const gpuml_tensor *argmax,
                                                          gpuml_tensor *gedges);

/* mask [N, k_e] u8 or bool: 1 where edge slot t is a valid edge, else 0.
 * The row mask gpuml_batch_norm takes to keep padding edges out of the
 * statistics. */
GPUML_API gpuml_status gpuml_edge_mask(gpuml_ctx *ctx, const gpuml_tensor *idx, int exclude_self,
                                       gpuml_tensor *mask);

/* ---- batch normalisation over rows ----------------------------------- */

typedef struct gpuml_batch_norm_params {
    float momentum; /* running = (1 - momentum) running + momentum batch; 0.1      */
    float eps;      /* added to the variance; 1e-5                                 */
    int training;   /* 1: batch statistics (and running update); 0: running stats  */
    int use_cudnn;  /* 1: cuDNN's batch norm where it fits (CUDA context, cuDNN in
                       the build, no mask, at least 2 rows; see below); 0 (default):
                       the portable kernels                                        */
} gpuml_batch_norm_params;

/* momentum 0.1, eps 1e-5, training 1, use_cudnn 0 (PyTorch's defaults). */
GPUML_API void gpuml_batch_norm_params_init_defaults(gpuml_batch_norm_params *p);

/* Batch normalisation of x [..., C] f32 over its R = numel / C rows (nodes,
 * or edges [N, k_e, C]), per channel: y = (x - mean) / sqrt(var + eps) *
 * gamma + beta, y of x's shape. gamma, beta [C] f32 or NULL (1 and 0).
 *
 * mask: NULL, or u8 / bool with R elements; rows where it is 0 are padding:
 * left out of the statistics, y = 0 there (and gx = 0 in the backward).
 *
 * Training (p->training != 0): mean and the biased variance of the valid
 * rows (sums in double, in a fixed order of row chunks); save_mean and
 * save_invstd [C] (NULL when no backward follows) receive mean and
 * 1 / sqrt(var + eps); running_mean / running_var [C] (both NULL, or both
 * given) are updated in place with momentum, the variance UNBIASED
 * (n / (n - 1)) as PyTorch does. With fewer than 2 valid rows the running
 * statistics are left unchanged; with none, y is all 0.
 * Inference (p->training == 0): normalises with running_mean / running_var
 * (required, not changed); save_mean / save_invstd, when given, receive
 * running_mean and 1 / sqrt(running_var + eps) for the backward.
 *
 * y may be x (for inference: the backward needs x). p NULL: defaults.
 *
 * cuDNN: cudnnBatchNormalization* (spatial mode over an [R, C, 1, 1] view)
 * is bitwise repeatable on one GPU model but does not sum in double and
 * does not match the portable kernels bit for bit, so it is opt-in; where
 * use_cudnn is set but it does not fit, the portable kernels run. */
GPUML_API gpuml_status gpuml_batch_norm(gpuml_ctx *ctx, const gpuml_batch_norm_params *p, const gpuml_tensor *x,
                                        const gpuml_tensor *mask, const gpuml_tensor *gamma,
                                        const gpuml_tensor *beta, gpuml_tensor *running_mean,
                                        gpuml_tensor *running_var, gpuml_tensor *y, gpuml_tensor *save_mean,
                                        gpuml_tensor *save_invstd);

/* Gradients of gpuml_batch_norm: gx (x's shape, overwritten), ggamma and
 * gbeta [C] (added to when accumulate != 0). save_mean / save_invstd are the
 * forward's; p->training must be the forward's (training: the statistics'
 * dependence on x is included; inference: gx = gy gamma invstd). gamma NULL:
 * 1. Rows masked out get gx = 0 and add nothing to ggamma / gbeta. */
GPUML_API gpuml_status gpuml_batch_norm_backward(gpuml_ctx *ctx, const gpuml_batch_norm_params *p,
                                                 const gpuml_tensor *x, const gpuml_tensor *mask,
                                                 const gpuml_tensor *gamma, const gpuml_tensor *save_mean,
                                                 const gpuml_tensor *save_invstd, const gpuml_tensor *gy,
                                                 gpuml_tensor *gx, gpuml_tensor *ggamma, gpuml_tensor *gbeta,
                                                 int accumulate);

#ifdef __cplusplus
}
#endif
#endif
