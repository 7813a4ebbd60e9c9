/* kernels/cast.h - conversions between the eight dtypes, used by cast and
 * fill. Floats go through double; f16 and bf16 round to nearest even. */
#ifndef GPUML_KERNELS_CAST_H
#define GPUML_KERNELS_CAST_H

#include <string.h>

#include "common.h"
#include "gpuml/tensor.h"

GPUML_HD static inline uint32_t gpuml_k_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

GPUML_HD static inline float gpuml_k_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

GPUML_HD static inline uint16_t gpuml_k_f32_to_bf16(float f)
{
    uint32_t u = gpuml_k_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and a NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

GPUML_HD static inline float gpuml_k_bf16_to_f32(uint16_t h) { return gpuml_k_bits_f32((uint32_t)h << 16); }

GPUML_HD static inline uint16_t gpuml_k_f32_to_f16(float f)
{
    uint32_t u = gpuml_k_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u)                  /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {                 /* below 2^-14: subnormal or 0 */
        if (a < 0x33000000u)               /* below half the smallest subnormal */
            return (uint16_t)sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        /* value = m * 2^(e-150) and the f16 subnormal unit is 2^-24, so the
         * result is m / 2^(126-e), rounded to nearest even (shift in 14..24). */
        uint32_t shift = 126u - e;
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent 127 -> 15, keep 10 mantissa bits, RNE */
    uint32_t r = a - 0x38000000u; /* subtract (127-15) << 23 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

GPUML_HD static inline float gpuml_k_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in f32 */
        float v = (float)m * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (e == 31)
        return gpuml_k_bits_f32(sign | 0x7f800000u | (m << 13));
    return gpuml_k_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* Read element i of any dtype as double (i64 beyond 2^53 rounds). */
GPUML_HD static inline double gpuml_k_load_f64(const void *p, int dtype, int64_t i)
{
    switch (dtype) {
    case GPUML_F32: return (double)((const float *)p)[i];
    case GPUML_F16: return (double)gpuml_k_f16_to_f32(((const uint16_t *)p)[i]);
    case GPUML_BF16: return (double)gpuml_k_bf16_to_f32(((const uint16_t *)p)[i]);
    case GPUML_F64: return ((const double *)p)[i];
    case GPUML_I32: return (double)((const int32_t *)p)[i];
    case GPUML_I64: return (double)((const int64_t *)p)[i];
    case GPUML_U8: return (double)((const uint8_t *)p)[i];
    case GPUML_BOOL: return ((const uint8_t *)p)[i] ? 1.0 : 0.0;
    default: return NAN;
    }
}

GPUML_HD static inline int gpuml_k_is_int(int dtype)
{
    return dtype == GPUML_I32 || dtype == GPUML_I64 || dtype == GPUML_U8 || dtype == GPUML_BOOL;
}

/* Float to integer: truncate toward zero, NaN -> 0, saturate at the range. */
GPUML_HD static inline int64_t gpuml_k_sat_i64(double v, double lo, double hi)
{
    if (v != v)
        return 0;
    if (v <= lo)
        return (int64_t)lo;
    if (v >= hi)
        return (int64_t)hi;
    return (int64_t)v;
}

GPUML_HD static inline void gpuml_k_store_f64(void *p, int dtype, int64_t i, double v)
{
    switch (dtype) {
    case GPUML_F32: ((float *)p)[i] = (float)v; break;
    case GPUML_F16: ((uint16_t *)p)[i] = gpuml_k_f32_to_f16((float)v); break;
    case GPUML_BF16: ((uint16_t *)p)[i] = gpuml_k_f32_to_bf16((float)v); break;
    case GPUML_F64: ((double *)p)[i] = v; break;
    case GPUML_I32: ((int32_t *)p)[i] = (int32_t)gpuml_k_sat_i64(v, -2147483648.0, 2147483647.0); break;
    case GPUML_I64:
        /* 2^63 is not representable in int64: saturate just below it. */
        ((int64_t *)p)[i] = v != v ? 0 : v >= 9223372036854775807.0 ? INT64_MAX
                                     : v <= -9223372036854775808.0 ? INT64_MIN : (int64_t)v;
        break;
    case GPUML_U8: ((uint8_t *)p)[i] = (uint8_t)gpuml_k_sat_i64(v, 0.0, 255.0); break;
    case GPUML_BOOL: ((uint8_t *)p)[i] = (v != 0.0) ? 1 : 0; break;
    default: break;
    }
}

/* Integer to integer without the double detour (exact for all i64). */
GPUML_HD static inline int64_t gpuml_k_load_i64(const void *p, int dtype, int64_t i)
{
    switch (dtype) {
    case GPUML_I32: return ((const int32_t *)p)[i];
    case GPUML_I64: return ((const int64_t *)p)[i];
    case GPUML_U8: return ((const uint8_t *)p)[i];
    case GPUML_BOOL: return ((const uint8_t *)p)[i] ? 1 : 0;
    default: return 0;
    }
}

GPUML_HD static inline void gpuml_k_store_i64(void *p, int dtype, int64_t i, int64_t v)
{
    switch (dtype) {
    case GPUML_I32: ((int32_t *)p)[i] = (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v); break;
    case GPUML_I64: ((int64_t *)p)[i] = v; break;
    case GPUML_U8: ((uint8_t *)p)[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); break;
    case GPUML_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: break;
    }
}

/* Element i of x (dtype xt) converted into y (dtype yt). */
GPUML_HD static inline void gpuml_k_cast_one(const void *x, int xt, void *y, int yt, int64_t i)
{
    /* Note: f64 -> f16/bf16 goes through f32 and may round twice (the result
     * is then off by one unit in the last place in rare halfway cases). */
    if (gpuml_k_is_int(xt) && gpuml_k_is_int(yt))
        gpuml_k_store_i64(y, yt, i, gpuml_k_load_i64(x, xt, i));
    else
        gpuml_k_store_f64(y, yt, i, gpuml_k_load_f64(x, xt, i));
}

#endif
