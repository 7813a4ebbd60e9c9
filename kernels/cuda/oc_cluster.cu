/* CUDA launcher for kernels/oc_cluster.h. Enqueued on k->stream in a fixed
 * number of launches for the whole batch (none per event); row_splits never
 * leave the device:
 *   1. clamp row_splits into a monotone copy (a max-scan), flagging the
 *      context's device error if that changed anything;
 *   2. per hit: candidate state and cell key; radix sort (event, set, cell);
 *   3. a block per event decides the CPs in Jacobi rounds: every open
 *      candidate evaluates gpuml_k_occ_decide against the states of the
 *      previous round (written to `next`, applied after a barrier); each
 *      round decides at least the first open candidate in priority order,
 *      so the rounds are bounded by the longest chain of candidates each
 *      within t_d of a later one (a few on calorimeter data), each round
 *      O(sum of cell occupancies / block size) per thread;
 *   4. per hit: CP cell key; radix sort; per hit: the CP it joins;
 *   5. a block per event numbers its CPs in row order (block scans over
 *      chunks of 256 rows); per hit: cluster id and an integer atomic add of
 *      its fixed-point energy (order-free, so deterministic); per slot: the
 *      energy as float.
 * No thread loops over an event: every per-event loop is strided by the
 * block. */
#include <climits>

#include <cub/device/device_radix_sort.cuh>

#include "../kernels.h"
#include "../oc_cluster.h"
#include "../segment.h"
#include "../../libgpuml/core/align.h"
#include "launch.cuh"

#define OCC_BLOCK 256

struct occ_cuda_ws {
    int64_t *rs;            /* [nev+1] clamped, monotone splits */
    uint64_t *keys, *keys2; /* [n]                              */
    int32_t *rows, *rows2;  /* [n]                              */
    int32_t *state, *next;  /* [n]; next doubles as cpof        */
    int32_t *slot;          /* [n]                              */
    uint64_t *acc;          /* [n]                              */
    void *tmp;
    size_t tmp_bytes;
};

static size_t cub_bytes(int64_t n, int64_t nev)
{
    size_t a = 0, c = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, a, (uint64_t *)nullptr, (uint64_t *)nullptr, (int32_t *)nullptr,
                                    (int32_t *)nullptr, (int)n, 0, 64, (cudaStream_t)0);
    c = gpuml_cuda_monotone_splits_scratch(nev);
    return a > c ? a : c;
}

static size_t carve(void *base, int64_t n, int64_t nev, occ_cuda_ws *w)
{
    size_t un = (size_t)(n > 0 ? n : 1), tmp = cub_bytes(n, nev);
    size_t sizes[10] = {(size_t)(nev + 1) * 8, un * 8, un * 8, un * 4, un * 4, un * 4, un * 4, un * 4, un * 8, tmp};
    void **ptrs[10] = {(void **)&w->rs,    (void **)&w->keys, (void **)&w->keys2, (void **)&w->rows,
                       (void **)&w->rows2, (void **)&w->state, (void **)&w->next, (void **)&w->slot,
                       (void **)&w->acc,   &w->tmp};
    size_t off = 0;
    for (int i = 0; i < 10; i++) {
        if (base)
            *ptrs[i] = (char *)base + off;
        off += gpuml_align_up(sizes[i]);
    }
    w->tmp_bytes = tmp;
    return off;
}

extern "C" size_t gpuml_cuda_oc_cluster_workspace(int64_t n, int64_t nev)
{
    occ_cuda_ws w;
    return carve(nullptr, n, nev, &w);
}

/* mode 0: candidate states and keys; mode 1: CP keys. */
static __global__ void occ_key_kernel(gpuml_k_occ P, int mode, int32_t *state, uint64_t *keys, int32_t *rows)
{
    GPUML_GRID_STRIDE(i, P.n)
    {
        int64_t e = gpuml_k_event_of_row(P.rs, P.nev, i);
        bool in;
        if (mode == 0) {
            in = gpuml_k_occ_candidate(&P, i);
            state[i] = in ? GPUML_OCC_OPEN : GPUML_OCC_NONE;
        } else {
            in = state[i] == GPUML_OCC_IN;
        }
        keys[i] = gpuml_k_occ_row_key(&P, e, i, in);
        rows[i] = (int32_t)i;
    }
}

static __global__ void occ_mis_kernel(gpuml_k_occ P, const uint64_t *keys, const int32_t *rows, int32_t *state,
                                      int32_t *next)
{
    __shared__ int s_red[OCC_BLOCK];
    for (int64_t e = blockIdx.x; e < P.nev; e += gridDim.x) {
        int64_t b = P.rs[e], end = P.rs[e + 1];
        for (;;) {
            int open = 0;
            for (int64_t p = b + threadIdx.x; p < end; p += blockDim.x) {
                int64_t i = rows[p];
                if (state[i] == GPUML_OCC_OPEN) {
                    next[i] = gpuml_k_occ_decide(&P, keys, rows, state, e, i);
                    open |= next[i] == GPUML_OCC_OPEN;
                }
            }
            __syncthreads(); /* every decision read the previous round only */
            for (int64_t p = b + threadIdx.x; p < end; p += blockDim.x) {
                int64_t i = rows[p];
                if (state[i] == GPUML_OCC_OPEN)
                    state[i] = next[i];
            }
            if (!gpuml_cuda_block_or<OCC_BLOCK>(open, s_red)) /* its barrier publishes the new states */
                break;
        }
    }
}

static __global__ void occ_assign_kernel(gpuml_k_occ P, const uint64_t *keys, const int32_t *rows, int32_t *cpof)
{
    GPUML_GRID_STRIDE(i, P.n)
    {
        int64_t e = gpuml_k_event_of_row(P.rs, P.nev, i);
        cpof[i] = gpuml_k_occ_assign(&P, keys, rows, e, i);
    }
}

/* A block per event: CP slots in row order by block-wide inclusive scans. */
static __global__ void occ_rank_kernel(gpuml_k_occ P, const int32_t *state, int32_t *slot, int32_t *cp,
                                       int32_t *count)
{
    __shared__ int s_scan[OCC_BLOCK];
    for (int64_t e = blockIdx.x; e < P.nev; e += gridDim.x) {
        int64_t b = P.rs[e], end = P.rs[e + 1], carry = 0;
        for (int64_t base = b; base < end; base += OCC_BLOCK) {
            int64_t i = base + threadIdx.x;
            int f = i < end && state[i] == GPUML_OCC_IN;
            int upto = gpuml_cuda_block_scan<OCC_BLOCK>(f, s_scan);
            if (f) {
                int64_t s = carry + upto - 1;
                slot[i] = (int32_t)s;
                cp[b + s] = (int32_t)(i - b);
            }
            carry += s_scan[OCC_BLOCK - 1];
            __syncthreads();
        }
        if (threadIdx.x == 0)
            count[e] = (int32_t)carry;
        for (int64_t p = b + carry + threadIdx.x; p < end; p += blockDim.x)
            cp[p] = -1;
    }
}

static __global__ void occ_label_kernel(gpuml_k_occ P, const float *energy, int64_t es, const int32_t *cpof,
                                        const int32_t *slot,
                                        int32_t *cluster_id, unsigned long long *acc)
{
    GPUML_GRID_STRIDE(i, P.n)
    {
        int32_t c = cpof[i] >= 0 ? slot[cpof[i]] : -1;
        cluster_id[i] = c;
        if (c >= 0 && energy) {
            int64_t e = gpuml_k_event_of_row(P.rs, P.nev, i);
            atomicAdd(&acc[P.rs[e] + c], (unsigned long long)gpuml_k_occ_fixed(energy[i * es]));
        }
    }
}

static __global__ void occ_energy_kernel(int64_t n, const uint64_t *acc, float *cenergy)
{
    GPUML_GRID_STRIDE(p, n) cenergy[p] = gpuml_k_occ_unfixed(acc[p]);
}

extern "C" gpuml_status gpuml_cuda_oc_cluster(const gpuml_kctx *k, const float *beta, const float *x, int64_t n, int d,
                                              const int64_t *row_splits, int64_t nev, const float *energy,
                                              int64_t estride, float t_beta, float t_d, int32_t *cluster_id, int32_t *cp,
                                              float *cenergy, int32_t *count, void *ws)
{
    static const char fn[] = "gpuml_oc_cluster";
    if (nev == 0)
        return GPUML_OK;
    if (n >= INT_MAX || nev >= INT_MAX) /* CUB takes int counts */
        return gpuml_k_fail(k, GPUML_ERR_UNSUPPORTED, fn,
                            "rows, events: the CUDA clustering (CUB scan and radix sort) takes fewer than 2^31 - 1 of "
                            "each",
                            NULL, NULL, 2, n, nev);
    GPUML_CUDA_ENTER(k, fn);
    cudaStream_t s = gpuml_cuda_stream(k);
    occ_cuda_ws w;
    carve(ws, n, nev, &w);
    gpuml_k_occ P;
    P.beta = beta, P.x = x, P.rs = w.rs, P.n = n, P.nev = nev, P.d = d;
    P.db = d < GPUML_OCC_MAXBIN ? d : GPUML_OCC_MAXBIN;
    P.t_beta = t_beta, P.td2 = t_d * t_d, P.inv_cell = 1.0 / ((double)t_d * (1.0 + 1e-4));

    gpuml_status st = gpuml_cuda_monotone_splits(k, row_splits, nev, n, w.rs, w.tmp, w.tmp_bytes, fn);
    if (st != GPUML_OK)
        return st;
    size_t tb;
    /* a block per event (nev < 2^31 - 1, the grid limit): no block loops over events */
    unsigned ev_grid = (unsigned)nev;
    int end_bit = 33;
    while (end_bit < 64 && (1ll << (end_bit - 33)) < nev)
        end_bit++;
    if (n > 0) {
        for (int mode = 0; mode < 2; mode++) {
            GPUML_CUDA_LAUNCH(occ_key_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(P, mode, w.state, w.keys2,
                                                                                          w.rows2);
            tb = w.tmp_bytes;
            GPUML_CUDA_TRY(k, fn, "cub::DeviceRadixSort::SortPairs",
                           cub::DeviceRadixSort::SortPairs(w.tmp, tb, w.keys2, w.keys, w.rows2, w.rows, (int)n, 0,
                                                           end_bit, s));
            if (mode == 0)
                GPUML_CUDA_LAUNCH(occ_mis_kernel, ev_grid, OCC_BLOCK, 0, s)(P, w.keys, w.rows, w.state, w.next);
        }
        GPUML_CUDA_LAUNCH(occ_assign_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(P, w.keys, w.rows, w.next);
    }
    GPUML_CUDA_LAUNCH(occ_rank_kernel, ev_grid, OCC_BLOCK, 0, s)(P, w.state, w.slot, cp, count);
    if (n > 0) {
        GPUML_CUDA_TRY(k, fn, "cudaMemsetAsync", cudaMemsetAsync(w.acc, 0, (size_t)n * sizeof(uint64_t), s));
        GPUML_CUDA_LAUNCH(occ_label_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(
            P, energy, estride, w.next, w.slot, cluster_id, (unsigned long long *)w.acc);
        if (cenergy)
            GPUML_CUDA_LAUNCH(occ_energy_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(n, w.acc, cenergy);
    }
    return gpuml_cuda_check(k, fn);
}
