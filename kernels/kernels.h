/*
 * kernels/kernels.h - entry points of the CPU drivers (gpuml_cpu_*) and the
 * CUDA launchers (gpuml_cuda_*), called by the op layer (libgpuml/ops/)
 * after it has validated the arguments. Pointers are raw device pointers of
 * the right dtype; shapes are already checked. Launchers enqueue on
 * k->stream and report launch errors; drivers complete before returning.
 */
#ifndef GPUML_KERNELS_KERNELS_H
#define GPUML_KERNELS_KERNELS_H

#include "common.h"
#include "binary.h"
#include "reduce.h"
#include "rows.h"
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPUML_K_DECLARE(name, ...)                              \
    gpuml_status gpuml_cpu_##name(const gpuml_kctx *k, __VA_ARGS__); \
    gpuml_status gpuml_cuda_##name(const gpuml_kctx *k, __VA_ARGS__);

/* unary.h */
GPUML_K_DECLARE(unary, int op, float alpha, int64_t n, const float *x, float *y)
GPUML_K_DECLARE(unary_grad, int op, float alpha, int64_t n, const float *x, const float *gy, float *gx)
/* binary.h: ga_full / gb_full are out-shaped (either may be NULL) */
GPUML_K_DECLARE(binary, int op, gpuml_k_bcast bc, const float *a, const float *b, float *out)
GPUML_K_DECLARE(binary_grad, int op, gpuml_k_bcast bc, const float *a, const float *b, const float *g,
                float *ga_full, float *gb_full)
GPUML_K_DECLARE(axpby, int64_t n, float alpha, const float *x, float beta, float *y) /* y = a*x + b*y; b==0 ignores y */
GPUML_K_DECLARE(affine, int64_t n, float a, const float *x, float b, float *y) /* y = a*x + b */
/* cast.h */
GPUML_K_DECLARE(cast, int64_t n, const void *x, int xt, void *y, int yt)
GPUML_K_DECLARE(fill, int64_t n, void *y, int yt, double value)
/* reduce.h */
/* reduce.h: every axis reduction (reduce, column sums, bias and norm-parameter gradients, gradient norm) */
GPUML_K_DECLARE(reduce, gpuml_k_rjob j)
GPUML_K_DECLARE(reduce_grad, int op, const float *gout, const int64_t *arg, int64_t outer, int64_t len,
                int64_t inner, float *gx)
GPUML_K_DECLARE(softmax, const float *x, float *y, int64_t rows, int64_t n, int take_log)
GPUML_K_DECLARE(softmax_grad, const float *y, const float *gy, float *gx, int64_t rows, int64_t n, int take_log)
/* matmul.h: row-major, batch strides in elements (0: shared operand) */
GPUML_K_DECLARE(gemm, int ta, int tb, int64_t m, int64_t n, int64_t kk, float alpha, const float *a,
                int64_t stride_a, const float *b, int64_t stride_b, float beta, float *c, int64_t stride_c,
                int64_t batch)
GPUML_K_DECLARE(bias_rows, int64_t rows, int64_t cols, const float *bias, float *y)
/* rows.h */
GPUML_K_DECLARE(gather_rows, const void *x, int64_t n, const void *idx, int is64, void *out, int64_t m,
                int64_t row_bytes)
/* CSR of an index array (see gpuml_index_csr). ws: workspace of
 * gpuml_cuda_csr_workspace(m, ntargets) bytes on CUDA, unused on the CPU. */
GPUML_K_DECLARE(csr_build, const void *idx, int is64, int64_t m, int64_t ntargets, int64_t *rowptr, int64_t *col,
                void *ws)
size_t gpuml_cuda_csr_workspace(int64_t m, int64_t ntargets);
/* split == 0: pieces -> wide; split != 0: wide -> pieces */
GPUML_K_DECLARE(concat, gpuml_k_pieces p, int64_t rows, void *wide, int64_t wide_row_bytes, int split)
/* oc_cluster.h: ws of gpuml_{cpu,cuda}_oc_cluster_workspace(n, nev) bytes; energy (row i at
 * energy[i * estride]) and cenergy may be NULL; cp and cenergy are [n] (cluster c of event e at
 * row_splits[e] + c), count [nev]. */
GPUML_K_DECLARE(oc_cluster, const float *beta, const float *x, int64_t n, int d, const int64_t *row_splits,
                int64_t nev, const float *energy, int64_t estride, float t_beta, float t_d, int32_t *cluster_id, int32_t *cp,
                float *cenergy, int32_t *count, void *ws)
size_t gpuml_cpu_oc_cluster_workspace(int64_t n, int64_t nev);
size_t gpuml_cuda_oc_cluster_workspace(int64_t n, int64_t nev);
/* segment.h */
/* also scatter-add: j.col = a CSR's sources, j.row_splits its rowptr, j.accumulate */
GPUML_K_DECLARE(segment_reduce, gpuml_k_seg j)
GPUML_K_DECLARE(segment_grad, int op, const float *gout, const int64_t *arg, const int64_t *row_splits,
                int64_t batch, int64_t nrows, int64_t ncols, float *gx)
GPUML_K_DECLARE(segment_ids, const int64_t *row_splits, int64_t batch, int64_t nrows, int32_t *ids)
/* knn.h: ws of gpuml_{cpu,cuda}_knn_workspace(n, d, nev, kk, nthreads) bytes; r2 = max_radius^2 or +inf;
 * algo a gpuml_knn_algo, or'ed with GPUML_K_KNN_ALGO_EXPANDED for weaver's expanded distance
 * (GPUML_KNN_DIST_EXPANDED). grad: rowptr [n+1] / col [n*kk], the reverse CSR of idx. */
#define GPUML_K_KNN_ALGO_EXPANDED 0x100
GPUML_K_DECLARE(knn, const float *x, int64_t n, int d, const int64_t *row_splits, int64_t nev, int kk, float r2,
                int algo, int32_t *idx, float *dist2, void *ws)
size_t gpuml_cpu_knn_workspace(int64_t n, int d, int64_t nev, int kk, int nthreads);
size_t gpuml_cuda_knn_workspace(int64_t n, int d, int64_t nev, int kk, int nthreads);
GPUML_K_DECLARE(knn_grad, const float *x, int64_t n, int d, const int32_t *idx, int kk, const float *g,
                const int64_t *rowptr, const int64_t *col, float *gx)
/* rng.h */
GPUML_K_DECLARE(rand, int normal, uint64_t seed, uint64_t base, int64_t n, float p0, float p1, float *y)
/* y = x * dropout mask; also the backward (x = upstream gradient). */
GPUML_K_DECLARE(dropout, uint64_t seed, uint64_t base, int64_t n, float p, const float *x, float *y)
/* layernorm.h: gamma/beta may be NULL; ggamma/gbeta NULL to skip; accumulate adds into them */
GPUML_K_DECLARE(layernorm, const float *x, const float *gamma, const float *beta, float eps, int64_t rows, int64_t c,
                float *y, float *mean, float *rstd)
/* dx only: the parameter gradients are reductions (GPUML_K_RLN_GAMMA, SUM of gy) */
GPUML_K_DECLARE(layernorm_grad, const float *x, const float *gamma, const float *gy, const float *mean,
                const float *rstd, int64_t rows, int64_t c, float *gx)
/* loss.h: pos_weight [c] may be NULL; elements are [n, c] row-major */
GPUML_K_DECLARE(bce_logits, int64_t n, int64_t c, const float *x, const float *y, const float *pos_weight, float *out)
GPUML_K_DECLARE(bce_logits_grad, int64_t n, int64_t c, const float *x, const float *y, const float *pos_weight,
                const float *gout, float *gx)
GPUML_K_DECLARE(cross_entropy, const float *x, int64_t rows, int64_t c, const void *labels, int is64, float *nll,
                float *lse)
GPUML_K_DECLARE(cross_entropy_grad, const float *x, int64_t rows, int64_t c, const void *labels, int is64,
                const float *lse, const float *gnll, float *gx)

/* condensation.h: alpha [B*K] i64, stats [B*GPUML_OC_STATS], vterm [N] workspace, out[0] loss, out[1..3]
 * components, ws gpuml_k_oc_ws_bytes(N, B, K, D) bytes (gpuml_k_oc_ws) */
GPUML_K_DECLARE(oc_forward, const float *beta, const float *x, const int32_t *truth, const int64_t *row_splits,
                int64_t batch, int64_t nobj, int64_t n, int64_t d, float q_min, float s_b, int64_t *alpha,
                float *vterm, float *stats, float *out, void *ws)
/* obj_acc [B*K*(1+D)] workspace; gloss: device scalar (upstream gradient); ws as the forward's
 * (the number of non-empty events is counted by the same fixed-order reduction) */
GPUML_K_DECLARE(oc_backward, const float *beta, const float *x, const int32_t *truth, const int64_t *row_splits,
                int64_t batch, int64_t nobj, int64_t n, int64_t d, float q_min, float s_b, const int64_t *alpha,
                const float *stats, const float *gloss, float *obj_acc, float *gbeta, float *gx, void *ws)
/* optim.h: gscale (device scalar) multiplies g; NULL = 1. state2 unused by SGD. */
GPUML_K_DECLARE(optim_sgd, int64_t n, float *p, const float *g, float *buf, const float *gscale, float lr,
                float momentum, float dampening, float wd, int nesterov, int first)
GPUML_K_DECLARE(optim_adam, int64_t n, float *p, const float *g, float *m, float *v, const float *gscale, float lr,
                float beta1, float beta2, float eps, float wd, int decoupled, float step_size, float bc2_sqrt)
/* ws: gpuml_k_grad_norm_ws_bytes(n) bytes; out [2] f32: norm, clip factor */
GPUML_K_DECLARE(grad_norm, int64_t n, const float *g, void *ws, float max_norm, float *out)

/* gravnet.h: idx [n, kk] i32, slot valid when >= first and 0 <= idx < n; w [n, kk], cnt [n] */
GPUML_K_DECLARE(gravnet_weights, const int32_t *idx, const float *d2, int64_t n, int64_t kk, int first, float alpha,
                float *w, int32_t *cnt)
GPUML_K_DECLARE(gravnet_fwd, const float *h, const int32_t *idx, const float *w, int64_t n, int64_t kk, int64_t P,
                int first, float *out, int32_t *am)
GPUML_K_DECLARE(gravnet_grad_mean, const float *gout, const int32_t *cnt, int64_t n, int64_t P, float *gm)
GPUML_K_DECLARE(gravnet_grad_d2, const float *h, const int32_t *idx, const float *w, const float *gm,
                const int32_t *am, const float *gout, int64_t n, int64_t kk, int64_t P, int first, float alpha, float *gd2)
GPUML_K_DECLARE(gravnet_grad_h, const int32_t *idx, const float *w, const float *gm, const int32_t *am,
                const float *gout, const int64_t *rowptr, const int64_t *col, int64_t n, int64_t kk, int64_t P,
                int first, float *gh)
/* edgeconv.h: wcat [2C, F], pn / gpn [n, 2C], edge tensors [n, kk - first, C] */
GPUML_K_DECLARE(edge_wcat, const float *w, int64_t C, int64_t F, float *wcat)
GPUML_K_DECLARE(edge_combine, const float *pn, const float *bias, const int32_t *idx, int64_t n, int64_t kk, int first,
                int64_t C, float *out)
GPUML_K_DECLARE(edge_grad_node, const float *gout, const int32_t *idx, const int64_t *rowptr, const int64_t *col,
                int64_t n, int64_t kk, int first, int64_t C, float *gpn)
GPUML_K_DECLARE(edge_grad_w, const float *gwcat, int64_t C, int64_t F, int accumulate, float *gw)
/* neighbour.h */
GPUML_K_DECLARE(neighbour_reduce, int op, const float *edges, const int32_t *idx, int64_t n, int64_t kk, int first,
                int64_t C, float *out, int32_t *am)
GPUML_K_DECLARE(neighbour_grad, int op, const float *gout, const int32_t *am, const int32_t *idx, int64_t n,
                int64_t kk, int first, int64_t C, float *gedges)
GPUML_K_DECLARE(edge_mask, const int32_t *idx, int64_t n, int64_t kk, int first, uint8_t *mask)
/* batchnorm.h: x [R, C]; partials p0/p1/p2 [chunks(R), C] double */
GPUML_K_DECLARE(bn_partial, int kind, const float *x, const float *gy, const uint8_t *mask, int64_t R, int64_t C,
                const double *mean_d, const float *mean_f, const float *invstd_f, const float *gamma, const float *beta,
                int relu, int64_t gk, double *p0, double *p1, double *p2)
GPUML_K_DECLARE(bn_mean, const double *p0, const double *p2, int64_t nch, int64_t C, double *mean_d, double *cnt_d)
GPUML_K_DECLARE(bn_var, const double *p0, int64_t nch, int64_t C, const double *mean_d, const double *cnt_d, float eps,
                float momentum, float *rm, float *rv, float *mean_f, float *invstd_f)
GPUML_K_DECLARE(bn_running, const float *rm, const float *rv, float eps, int64_t C, float *mean_f, float *invstd_f)
GPUML_K_DECLARE(bn_normalize, const float *x, const uint8_t *mask, int64_t R, int64_t C, const float *mean_f,
                const float *invstd_f, const float *gamma, const float *beta, int relu, float *y)
GPUML_K_DECLARE(bn_grad_stats, const double *p0, const double *p1, const double *p2, int64_t nch, int64_t C,
                int training, int accumulate, float *ggamma, float *gbeta, float *coef)
GPUML_K_DECLARE(bn_grad_x, const float *x, const float *gy, const uint8_t *mask, int64_t R, int64_t C, int training,
                const float *mean_f, const float *invstd_f, const float *gamma, const float *beta, int relu, int64_t gk,
                const float *coef, float *gx)
/* batch norm + activation + SUM / MEAN over groups of ke rows (nodes) */
GPUML_K_DECLARE(bn_aggregate, const float *x, const uint8_t *mask, int64_t n, int64_t ke, int64_t C,
                const float *mean_f, const float *invstd_f, const float *gamma, const float *beta, int relu, int op,
                float *out)
GPUML_K_DECLARE(bn_aggregate_grad, const float *gout, const uint8_t *mask, int64_t n, int64_t ke, int64_t C, int op,
                float *gnode)
/* cuDNN batch norm (CUDA builds with cuDNN only): cudnn is the context's
 * gpuml_cudnn (core/cudnn_api.h: handle on k->stream, functions); gamma/beta non-NULL; R, C < 2^31. */
gpuml_status gpuml_cuda_bn_cudnn_fwd(const gpuml_kctx *k, void *cudnn, int training, int64_t R, int64_t C,
                                     const float *x, float *y, const float *gamma, const float *beta, float momentum,
                                     float eps, float *rm, float *rv, float *save_mean, float *save_invstd);
gpuml_status gpuml_cuda_bn_cudnn_bwd(const gpuml_kctx *k, void *cudnn, int64_t R, int64_t C, const float *x,
                                     const float *gy, float *gx, const float *gamma, float *ggamma, float *gbeta,
                                     int accumulate, float eps, const float *save_mean, const float *save_invstd);

#ifdef __cplusplus
}
#endif
#endif
