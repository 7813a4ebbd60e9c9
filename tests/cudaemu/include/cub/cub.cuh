/* tests/cudaemu/include/cub/cub.cuh - the emulated CUB: DeviceRadixSort and
 * DeviceScan as gpuml calls them, with CUB's two-phase temporary-storage
 * protocol (a first call with d_temp_storage == nullptr sets the bytes
 * needed; a later call with less returns cudaErrorInvalidValue). The work
 * is queued on the stream and really uses the temporary storage. Device
 * pointers are checked when the work runs; a bad one faults (sticky
 * cudaErrorIllegalAddress), as the real kernels would. */
#ifndef GPUML_CUDAEMU_CUB_CUH
#define GPUML_CUDAEMU_CUB_CUH

#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#include "../cuda_runtime.h"

cudaError_t gpuml_emu_enqueue(cudaStream_t s, std::function<void()> fn);
bool gpuml_emu_is_device(const void *p, size_t n);
extern "C" void gpuml_emu_device_fault(const char *what);

namespace cub {

namespace detail {
static inline size_t align256(size_t n) { return (n + 255) / 256 * 256; }

template <class F> static inline cudaError_t enqueue(cudaStream_t s, F &&f) { return gpuml_emu_enqueue(s, std::forward<F>(f)); }

/* Stable LSD radix sort by bits [begin, end) of the key, 8 bits a pass,
 * ping-ponging through the temporary storage. */
template <class K, class V>
static void radix_sort(const K *kin, K *kout, const V *vin, V *vout, int64_t n, int begin, int end, void *tmp)
{
    typedef typename std::make_unsigned<K>::type U;
    K *ka = (K *)tmp;
    V *va = (V *)((char *)tmp + align256((size_t)n * sizeof(K)));
    K *kb = kout;
    V *vb = vout;
    std::memmove(ka, kin, (size_t)n * sizeof(K));
    std::memmove(va, vin, (size_t)n * sizeof(V));
    int passes = 0;
    for (int bit = begin; bit < end; bit += 8, passes++) {
        int w = end - bit < 8 ? end - bit : 8;
        U mask = (U)((1u << w) - 1);
        int64_t count[257] = {0};
        for (int64_t i = 0; i < n; i++)
            count[(((U)ka[i] >> bit) & mask) + 1]++;
        for (int d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (int64_t i = 0; i < n; i++) {
            int64_t pos = count[((U)ka[i] >> bit) & mask]++;
            kb[pos] = ka[i];
            vb[pos] = va[i];
        }
        std::swap(ka, kb);
        std::swap(va, vb);
    }
    if (ka != kout) { /* an even number of passes: the result is in tmp */
        std::memmove(kout, ka, (size_t)n * sizeof(K));
        std::memmove(vout, va, (size_t)n * sizeof(V));
    }
}
} // namespace detail

struct DeviceRadixSort {
    template <class K, class V, class N>
    static cudaError_t SortPairs(void *d_temp_storage, size_t &temp_storage_bytes, const K *d_keys_in, K *d_keys_out,
                                 const V *d_values_in, V *d_values_out, N num_items, int begin_bit = 0,
                                 int end_bit = sizeof(K) * 8, cudaStream_t stream = 0)
    {
        if (num_items < 0 || begin_bit < 0 || end_bit > (int)(sizeof(K) * 8) || begin_bit > end_bit)
            return cudaErrorInvalidValue;
        int64_t n = (int64_t)num_items;
        size_t need = detail::align256((size_t)n * sizeof(K)) + detail::align256((size_t)n * sizeof(V)) + 256;
        if (!d_temp_storage) {
            temp_storage_bytes = need;
            return cudaSuccess;
        }
        if (temp_storage_bytes < need)
            return cudaErrorInvalidValue;
        if (n == 0)
            return cudaSuccess;
        return detail::enqueue(stream, [=] {
            if (!gpuml_emu_is_device(d_keys_in, n * sizeof(K)) || !gpuml_emu_is_device(d_keys_out, n * sizeof(K)) ||
                !gpuml_emu_is_device(d_values_in, n * sizeof(V)) || !gpuml_emu_is_device(d_values_out, n * sizeof(V)) ||
                !gpuml_emu_is_device(d_temp_storage, need))
                return gpuml_emu_device_fault("cub::DeviceRadixSort::SortPairs: an argument is not device memory");
            detail::radix_sort(d_keys_in, d_keys_out, d_values_in, d_values_out, n, begin_bit, end_bit,
                               d_temp_storage);
        });
    }
};

struct DeviceScan {
    template <class In, class Out, class Op, class N>
    static cudaError_t InclusiveScan(void *d_temp_storage, size_t &temp_storage_bytes, In d_in, Out d_out, Op op,
                                     N num_items, cudaStream_t stream = 0)
    {
        typedef typename std::remove_cv<typename std::remove_pointer<In>::type>::type T;
        if (num_items < 0)
            return cudaErrorInvalidValue;
        int64_t n = (int64_t)num_items;
        size_t need = 256 + detail::align256(sizeof(T) * 64);
        if (!d_temp_storage) {
            temp_storage_bytes = need;
            return cudaSuccess;
        }
        if (temp_storage_bytes < need)
            return cudaErrorInvalidValue;
        if (n == 0)
            return cudaSuccess;
        return detail::enqueue(stream, [=] {
            if (!gpuml_emu_is_device(d_in, n * sizeof(T)) || !gpuml_emu_is_device(d_out, n * sizeof(T)) ||
                !gpuml_emu_is_device(d_temp_storage, need))
                return gpuml_emu_device_fault("cub::DeviceScan: an argument is not device memory");
            T *carry = (T *)d_temp_storage; /* the running value lives in the scratch, as CUB's tile states do */
            *carry = d_in[0];
            d_out[0] = *carry;
            for (int64_t i = 1; i < n; i++) {
                *carry = op(*carry, (T)d_in[i]);
                d_out[i] = *carry;
            }
        });
    }

    template <class In, class Out, class N>
    static cudaError_t InclusiveSum(void *d_temp_storage, size_t &temp_storage_bytes, In d_in, Out d_out,
                                    N num_items, cudaStream_t stream = 0)
    {
        typedef typename std::remove_cv<typename std::remove_pointer<In>::type>::type T;
        return InclusiveScan(d_temp_storage, temp_storage_bytes, d_in, d_out, [](T a, T b) { return a + b; },
                             num_items, stream);
    }
};

} // namespace cub

#endif
