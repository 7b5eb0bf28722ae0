/* vmath.h -- exp and sigmoid written so that GCC vectorises the loops that
 * call them (libm's expf is a scalar call that blocks vectorisation).
 *
 * vexpf: range reduction x = n ln2 + r (Cody-Waite, two-part ln2), then a
 * degree-6 polynomial for e^r on |r| <= ln2/2 and 2^n put in the exponent
 * bits. Relative error below 2e-7 (about 1-2 ulp) for x in [-87, 88];
 * inputs are clamped to that range (e^-87 ~ 1.6e-38: tails do not matter for
 * sigmoid or softmax); NaN stays NaN. */
#ifndef DDPM_VMATH_H
#define DDPM_VMATH_H

#include <stdint.h>
#include <string.h>

static inline float vexpf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick: t's low mantissa bits hold n. */
    float t = x * 1.44269504088896341f + 12582912.0f, n = t - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits, e;
    memcpy(&bits, &t, sizeof bits);
    e = (bits - 0x4B400000u + 127u) << 23; /* 2^n: n + 127 in the exponent (unsigned: no UB for NaN) */
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

static inline float vsigmoidf(float z) { return 1.0f / (1.0f + vexpf(-z)); }

#endif
