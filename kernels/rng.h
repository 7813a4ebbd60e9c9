/* kernels/rng.h - Philox-4x32-10 (Salmon et al., SC'11), counter-based: the
 * numbers for element i depend only on (seed, counter), so every backend and
 * thread count draws the same values. */
#ifndef GPUML_KERNELS_RNG_H
#define GPUML_KERNELS_RNG_H

#include "common.h"

typedef struct gpuml_k_u32x4 {
    uint32_t v[4];
} gpuml_k_u32x4;

GPUML_HD static inline uint32_t gpuml_k_mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

GPUML_HD static inline gpuml_k_u32x4 gpuml_k_philox(uint64_t counter, uint64_t seed)
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = gpuml_k_mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = gpuml_k_mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    gpuml_k_u32x4 r;
    r.v[0] = c0, r.v[1] = c1, r.v[2] = c2, r.v[3] = c3;
    return r;
}

/* Uniform in [0, 1) with 24 random bits (exact in f32). */
GPUML_HD static inline float gpuml_k_u01(uint32_t x) { return (float)(x >> 8) * 5.9604644775390625e-08f; }

/* Element i of a draw that started at counter `base`. */
GPUML_HD static inline float gpuml_k_rand_uniform(uint64_t seed, uint64_t base, int64_t i, float lo, float hi)
{
    gpuml_k_u32x4 r = gpuml_k_philox(base + (uint64_t)(i >> 2), seed);
    return lo + (hi - lo) * gpuml_k_u01(r.v[i & 3]);
}

/* Box-Muller over lanes (0,1) and (2,3) of one Philox block. */
GPUML_HD static inline float gpuml_k_rand_normal(uint64_t seed, uint64_t base, int64_t i, float mean, float std)
{
    gpuml_k_u32x4 r = gpuml_k_philox(base + (uint64_t)(i >> 2), seed);
    int pair = (int)(i & 2);
    float u1 = ((float)(r.v[pair] >> 8) + 1.0f) * 5.9604644775390625e-08f; /* (0, 1] */
    float u2 = gpuml_k_u01(r.v[pair + 1]);
    float rad = sqrtf(-2.0f * logf(u1));
    float ang = 6.2831853071795864769f * u2;
    float z = (i & 1) ? rad * sinf(ang) : rad * cosf(ang);
    return mean + std * z;
}

/* Inverted dropout of element i: keep with probability 1 - p, scaled by
 * 1 / (1 - p). The same (seed, base, i) regenerates the mask in backward. */
GPUML_HD static inline float gpuml_k_dropout_scale(uint64_t seed, uint64_t base, int64_t i, float p)
{
    return gpuml_k_rand_uniform(seed, base, i, 0.0f, 1.0f) >= p ? 1.0f / (1.0f - p) : 0.0f;
}

/* Element i of dropout's output for input x. */
GPUML_HD static inline float gpuml_k_dropout(uint64_t seed, uint64_t base, int64_t i, float p, float x)
{
    return x * gpuml_k_dropout_scale(seed, base, i, p);
}

#endif
