/*
 * gpuml/knn.h - exact k-nearest neighbours within the events of a ragged
 * batch, and the gradient of the neighbour distances.
 *
 * The graph of GravNet and of DynamicEdgeConv: every point of every event is
 * a query, and its neighbours come from its own event only. The result is
 * exact and identical on every backend and thread count:
 *
 *   - dist2[i, s] = sum_d (x[i,d] - x[j,d])^2 in float32, summed in dimension
 *     order (never the |x|^2 + |y|^2 - 2xy expansion, which on detector
 *     coordinates - hundreds of cm, hits mm apart - picks wrong neighbours);
 *   - slot 0 is the point itself (dist2 = 0); slots 1 .. k-1 hold the other
 *     points of the event in ascending (dist2, row index) order, so ties are
 *     broken by the smaller global row;
 *   - missing neighbours (event smaller than k, or beyond max_radius) are
 *     idx = -1, dist2 = +inf;
 *   - a point with a non-finite coordinate (NaN or Inf) has only itself as
 *     neighbour and is nobody's neighbour; neither is a point whose float32
 *     dist2 overflows to +inf.
 *
 *     // coords [N, 4] f32 and row_splits [B+1] i64 on ctx's device
 *     gpuml_tensor *idx, *d2, *rp, *col, *gx;
 *     gpuml_tensor_create(ctx, GPUML_I32, 2, (int64_t[]){n, 40}, &idx);
 *     gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){n, 40}, &d2);
 *     gpuml_knn(ctx, coords, row_splits, 40, 0.0f, idx, d2);
 *     ...
 *     // backward: the reverse adjacency of idx, then the gradient
 *     gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){n + 1}, &rp);
 *     gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){n * 40}, &col);
 *     gpuml_knn_reverse(ctx, idx, rp, col);          // or gpuml_knn_ex(..., rp, col)
 *     gpuml_knn_backward(ctx, coords, idx, grad_d2, rp, col, gx);
 *
 * Algorithms: brute force within each event (small events, high D) and an
 * exact binned search for large low-dimensional events: the points are
 * binned into cells of 32 by their first min(D, 4) coordinates - median
 * splits on the CPU, the Z-curve of a fine grid on CUDA, so the cells adapt
 * to clustered data - under a hierarchy of cell boxes; a query visits cells
 * nearest-first and stops when no unvisited box can beat its current k-th
 * distance. Both give identical lists; AUTO picks per event by size and D.
 *
 * All tensors live on the context's device; outputs are caller-allocated.
 * On CUDA the work is enqueued on the context's stream in a fixed number of
 * launches for the whole batch; row_splits are never read on the host (bad
 * values are clamped and reported by gpuml_ctx_synchronize). Temporary
 * memory comes from the context's caching allocator: about 4 N (D + 6) bytes
 * on the CPU (plus 128 k bytes per thread), and as much again plus 8 N k on
 * CUDA, where every query keeps its list in it. On error nothing is written.
 */
#ifndef GPUML_KNN_H
#define GPUML_KNN_H

#include "gpuml/context.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits: 1 <= k <= GPUML_KNN_MAX_K, 1 <= D <= GPUML_KNN_MAX_DIM, N < 2^31. */
#define GPUML_KNN_MAX_K 1024
#define GPUML_KNN_MAX_DIM 1024

typedef enum gpuml_knn_algo {
    GPUML_KNN_AUTO = 0, /* per event: binned for large low-D events, else brute */
    GPUML_KNN_BRUTE,    /* every event by brute force                          */
    GPUML_KNN_GRID,     /* every event by the binned search (any D: bins on the
                           first min(D, 4) coordinates)                        */
    GPUML_KNN_ALGO_COUNT_
} gpuml_knn_algo;

/* How distances are computed (gpuml_knn_params.distance). */
typedef enum gpuml_knn_distance {
    GPUML_KNN_DIST_EXACT = 0, /* sum_d (a_d - b_d)^2, the contract above        */
    /* weaver compatibility: dist2[i, s] = max((|x_i|^2 - 2 x_i.x_j) + |x_j|^2,
     * 0) in float32, the dot product accumulated in dimension order by fused
     * multiply-adds, |x|^2 a float32 sum of the rounded squares in dimension
     * order: weaver ParticleNet's pairwise_distance ((xx^T + inner +
     * xx).clamp(min=0), weaver-core 0.5) as torch computes it on the CPU, bit
     * for bit for D <= 3 (for larger D torch's |x|^2 reduction order is not
     * reproduced). The value is 0 or positive for coincident points and can
     * be 0 for distinct ones. Like weaver, the k smallest of all points of the
     * event, the point itself included, are taken and the first is dropped:
     * slot 0 is still the point itself (dist2 0), and when another point
     * ranks before it, that point is dropped and the point itself appears
     * among slots 1 .. k-1. Ties: (value, row) as always (torch.topk's order
     * among equal values is not specified). Brute force only (algo is
     * ignored); max_radius compares this value. */
    GPUML_KNN_DIST_EXPANDED,
    GPUML_KNN_DIST_COUNT_
} gpuml_knn_distance;

typedef struct gpuml_knn_params {
    int k;             /* neighbours per point, self included; default 16  */
    float max_radius;  /* <= 0: no limit (default 0). Else neighbours need
                          dist2 <= max_radius * max_radius (float32)        */
    gpuml_knn_algo algo; /* default GPUML_KNN_AUTO                          */
    gpuml_knn_distance distance; /* default GPUML_KNN_DIST_EXACT           */
} gpuml_knn_params;

/* Fill p with the defaults above. */
GPUML_API void gpuml_knn_params_init_defaults(gpuml_knn_params *p);

/* k nearest neighbours of every point within its event.
 * coords [N, D] f32; row_splits [B+1] i64 (event b owns rows row_splits[b] ..
 * row_splits[b+1]-1; on the CPU it must start at 0, not decrease and end at
 * N); idx [N, k] i32 receives global row indices, dist2 [N, k] f32 the
 * squared distances (see the top of this header for the exact contract).
 * Errors: INVALID_ARGUMENT (NULL, k or D out of range, NaN max_radius, bad
 * row_splits values, outputs overlapping inputs), DTYPE, SHAPE,
 * DEVICE_MISMATCH, OUT_OF_MEMORY. */
GPUML_API gpuml_status gpuml_knn(gpuml_ctx *ctx, const gpuml_tensor *coords, const gpuml_tensor *row_splits, int k,
                                 float max_radius, gpuml_tensor *idx, gpuml_tensor *dist2);

/* gpuml_knn with parameters (k, radius, algorithm), and optionally the
 * reverse adjacency of the result for gpuml_knn_backward: rev_rowptr
 * [N+1] i64 and rev_col [N*k] i64, both given or both NULL (see
 * gpuml_knn_reverse). */
GPUML_API gpuml_status gpuml_knn_ex(gpuml_ctx *ctx, const gpuml_tensor *coords, const gpuml_tensor *row_splits,
                                    const gpuml_knn_params *p, gpuml_tensor *idx, gpuml_tensor *dist2,
                                    gpuml_tensor *rev_rowptr, gpuml_tensor *rev_col);

/* Reverse adjacency of a kNN result idx [N, k] i32: for every point t,
 * rev_col[rev_rowptr[t] .. rev_rowptr[t+1]-1] lists the flat positions
 * m*k + s with idx[m, s] == t, ascending (gpuml_index_csr of idx).
 * rev_rowptr [N+1] i64, rev_col [N*k] i64 (entries past rev_rowptr[N] are
 * not written). */
GPUML_API gpuml_status gpuml_knn_reverse(gpuml_ctx *ctx, const gpuml_tensor *idx, gpuml_tensor *rev_rowptr,
                                         gpuml_tensor *rev_col);

/* Gradient of the coordinates from the gradient of dist2:
 *   grad_coords[i] = sum_s g[i,s] * 2 (x_i - x_idx[i,s])
 *                  + sum over edges (m -> i) of g[m,s] * 2 (x_i - x_m),
 * the second sum gathered through the reverse adjacency, so the result is
 * deterministic without atomics (own slots in slot order, then reverse
 * edges in rev_col order, float32). Self edges and -1 slots contribute
 * nothing. coords [N, D] f32 and idx [N, k] i32 from the forward pass,
 * grad_dist2 [N, k] f32, rev_rowptr [N+1] i64 / rev_col [N*k] i64 from
 * gpuml_knn_reverse or gpuml_knn_ex for this idx (both NULL: built here in
 * temporary memory); grad_coords [N, D] f32 is overwritten. Out-of-range
 * entries are skipped, but a CSR of another idx gives a wrong gradient.
 * Errors: as gpuml_knn. */
GPUML_API gpuml_status gpuml_knn_backward(gpuml_ctx *ctx, const gpuml_tensor *coords, const gpuml_tensor *idx,
                                          const gpuml_tensor *grad_dist2, const gpuml_tensor *rev_rowptr,
                                          const gpuml_tensor *rev_col, gpuml_tensor *grad_coords);

#ifdef __cplusplus
}
#endif
#endif
