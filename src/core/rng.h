/* rng.h -- counter-based random numbers (Philox-4x32-10).
 *
 * Every random value in ddpm is a pure function of (seed, purpose, stream,
 * index): the noise of sample i at training step s is
 * rng_normal(out, n, seed, RNG_NOISE, rng_stream(s, i)). Nothing depends on the
 * thread count, the batch or on how many values were drawn before, so a resumed
 * run draws what an uninterrupted one would (what is bit-identical overall: see
 * docs/determinism.md).
 */
#ifndef DDPM_RNG_H
#define DDPM_RNG_H

#include <stddef.h>
#include <stdint.h>

/* What a stream of random numbers is for (part of the key). */
enum rng_purpose {
    RNG_INIT = 1,    /* parameter initialisation; stream = parameter index */
    RNG_NOISE,       /* training noise eps; stream = rng_stream(step, sample) */
    RNG_TIMESTEP,    /* training timestep t; stream = step */
    RNG_DROPOUT,     /* dropout masks; stream = rng_stream(step, layer) */
    RNG_FLIP,        /* horizontal flips; stream = step */
    RNG_SHUFFLE,     /* data order; stream = epoch */
    RNG_SAMPLE,      /* sampler noise; stream = rng_stream(t, sample) */
    RNG_PRIOR,       /* sampler x_T; stream = sample */
    RNG_EVAL,        /* evaluation noise; stream = rng_stream(t, sample) */
    RNG_UNCOND       /* label dropout (class-conditional training); stream = rng_stream(step, image) */
};

/* Combines two 32-bit indices into one stream id. */
static inline uint64_t rng_stream(uint64_t hi, uint64_t lo) { return (hi << 32) ^ (lo & 0xffffffffu); }

/* Philox-4x32-10 block: four 32-bit outputs for a 128-bit counter and 64-bit key. */
void rng_philox(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* out[i] = the i-th (i in [0,n)) 32-bit word of stream (seed, purpose, stream). */
void rng_u32(uint32_t *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream);

/* Uniform floats in [0, 1): value i depends only on (seed, purpose, stream, i). */
void rng_uniform(float *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream);

/* Uniform floats in [0, 1) for indices [first, first+n) of the stream; first % 4 == 0. */
void rng_uniform_at(float *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t first);

/* Standard normal floats (Box-Muller on pairs of words): value i depends only on
 * (seed, purpose, stream, i). */
void rng_normal(float *out, size_t n, uint64_t seed, uint32_t purpose, uint64_t stream);

/* One uniform integer in [0, bound) (bound > 0), the index-th of the stream. */
uint32_t rng_below(uint32_t bound, uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t index);

#endif
