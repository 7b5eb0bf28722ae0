/* rng.c -- Philox-4x32-10 (Salmon et al., SC'11) and the distributions built
 * on it. Uniform draws (dropout masks) come 8 blocks at a time with AVX2 where
 * the build has it: the same words as one block at a time. */
#include "rng.h"

#include <math.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void rng_philox(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* Key = seed mixed with purpose; counter = (block index, stream). */
static void block(uint32_t out[4], uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t blk) {
    uint32_t key[2] = {(uint32_t)seed ^ (purpose * 0x85EBCA6Bu), (uint32_t)(seed >> 32) ^ purpose};
    uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    rng_philox(out, ctr, key);
}

void rng_u32(uint32_t *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream) {
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w[4];
        block(w, seed, purpose, stream, i / 4);
        for (size_t j = 0; j < 4 && i + j < n; j++) out[i + j] = w[j];
    }
}

static inline float u01(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

void rng_uniform(float *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream) {
    rng_uniform_at(out, n, seed, purpose, stream, 0);
}

#ifdef __AVX2__
/* (hi, lo) 32-bit halves of m * c for the 8 lanes of c. */
static inline void mulhilo8(__m256i c, __m256i m, __m256i *hi, __m256i *lo) {
    __m256i even = _mm256_mul_epu32(c, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* out[4 l + j] = u01(word j of block blk + l), l < 8: the blocks 8 lanes at once. */
static void uniform32(float *out, uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t blk) {
    uint32_t k0 = (uint32_t)seed ^ (purpose * 0x85EBCA6Bu), k1 = (uint32_t)(seed >> 32) ^ purpose;
    uint32_t lo[8], hi[8];
    for (int l = 0; l < 8; l++) lo[l] = (uint32_t)(blk + (uint64_t)l), hi[l] = (uint32_t)((blk + (uint64_t)l) >> 32);
    __m256i c0 = _mm256_loadu_si256((const __m256i *)lo), c1 = _mm256_loadu_si256((const __m256i *)hi);
    __m256i c2 = _mm256_set1_epi32((int)(uint32_t)stream), c3 = _mm256_set1_epi32((int)(uint32_t)(stream >> 32));
    const __m256i m0 = _mm256_set1_epi64x(PHILOX_M0), m1 = _mm256_set1_epi64x(PHILOX_M1);
    for (int r = 0; r < 10; r++) {
        __m256i h0, l0, h1, l1;
        mulhilo8(c0, m0, &h0, &l0);
        mulhilo8(c2, m1, &h1, &l1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(h1, c1), _mm256_set1_epi32((int)k0));
        c2 = _mm256_xor_si256(_mm256_xor_si256(h0, c3), _mm256_set1_epi32((int)k1));
        c1 = l1;
        c3 = l0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    /* u01 of each word (exact: w >> 8 < 2^24), then a 4x8 transpose into block order. */
    const __m256 s = _mm256_set1_ps(1.0f / 16777216.0f);
    __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c0, 8)), s);
    __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c1, 8)), s);
    __m256 f2 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c2, 8)), s);
    __m256 f3 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c3, 8)), s);
    __m256 t0 = _mm256_unpacklo_ps(f0, f1), t1 = _mm256_unpackhi_ps(f0, f1);
    __m256 t2 = _mm256_unpacklo_ps(f2, f3), t3 = _mm256_unpackhi_ps(f2, f3);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE); /* blocks 0|4, 1|5 */
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE); /* blocks 2|6, 3|7 */
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(u0, u1, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
    _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
}
#endif

void rng_uniform_at(float *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t first) {
    size_t i = 0;
#ifdef __AVX2__
    if (first % 4 == 0)
        for (; i + 32 <= n; i += 32) uniform32(out + i, seed, purpose, stream, (first + i) / 4);
#endif
    for (; i < n; i += 4) {
        uint32_t w[4];
        block(w, seed, purpose, stream, (first + i) / 4);
        for (size_t j = 0; j < 4 && i + j < n; j++) out[i + j] = u01(w[j]);
    }
}

void rng_normal(float *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream) {
    /* Each Philox block gives two Box-Muller pairs = 4 normals. */
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w[4];
        block(w, seed, purpose, stream, i / 4);
        float z[4];
        for (int p = 0; p < 2; p++) {
            /* u1 in (0, 1] so log is finite; u2 in [0, 1). */
            double u1 = ((double)(w[2 * p] >> 8) + 1.0) * (1.0 / 16777216.0);
            double u2 = (double)(w[2 * p + 1] >> 8) * (1.0 / 16777216.0);
            double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
            z[2 * p] = (float)(r * cos(th));
            z[2 * p + 1] = (float)(r * sin(th));
        }
        for (size_t j = 0; j < 4 && i + j < n; j++) out[i + j] = z[j];
    }
}

uint32_t rng_below(uint32_t bound, uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t index) {
    uint32_t w[4];
    block(w, seed, purpose, stream, index / 4);
    /* 64-bit multiply-shift: bias below 2^-32, fine for these bounds. */
    return (uint32_t)(((uint64_t)w[index % 4] * bound) >> 32);
}
