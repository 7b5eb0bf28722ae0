/* rng.c -- Philox-4x32-10 (Salmon et al., SC'11) and the distributions built on it. */
#include "rng.h"

#include <math.h>

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

void rng_uniform_at(float *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t first) {
    for (size_t i = 0; i < n; i += 4) {
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
