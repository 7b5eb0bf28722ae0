/* elementwise.c -- SiLU, adds, nearest upsampling, dropout, the timestep and
 * class embeddings, the sampler steps' arithmetic, the guidance mix and the
 * rounding to bf16: plain loops parallelised with OpenMP. */
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "ops.h"
#include "vmath.h"

enum { PAR_MIN = 1 << 15 }; /* element-wise loops shorter than this stay on one thread */

void ops_silu_forward(float *y, const float *x, size_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * vsigmoidf(x[i]);
}

void ops_silu_backward(float *dx, const float *dy, const float *x, size_t n) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float s = vsigmoidf(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void ops_add_rows(float *y, int ldy, const float *x, int ldx, int M, int C) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *o = y + (size_t)i * ldy;
        const float *r = x + (size_t)i * ldx;
        for (int c = 0; c < C; c++) o[c] += r[c];
    }
}

void ops_add_bias_per_sample(float *y, const float *v, int B, int HW, int C) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int p = 0; p < HW; p++) {
            float *o = y + ((size_t)b * HW + p) * C;
            const float *vb = v + (size_t)b * C;
            for (int c = 0; c < C; c++) o[c] += vb[c];
        }
}

void ops_sum_per_sample(float *v, const float *dy, int B, int HW, int C) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        double acc[4096];
        ERR_ASSERT(C <= 4096);
        memset(acc, 0, sizeof(double) * C);
        for (int p = 0; p < HW; p++) {
            const float *r = dy + ((size_t)b * HW + p) * C;
            for (int c = 0; c < C; c++) acc[c] += r[c];
        }
        for (int c = 0; c < C; c++) v[(size_t)b * C + c] = (float)acc[c];
    }
}

void ops_sum_rows(float *s, const float *x, int ld, size_t rows, int C) {
    memset(s, 0, sizeof(float) * C);
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) s[c] += x[r * ld + c];
}

void ops_upsample2x_forward(float *y, const float *x, int ldx, int B, int H, int W, int C) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < 2 * H; oy++)
            for (int ox = 0; ox < 2 * W; ox++)
                memcpy(y + (((size_t)b * 2 * H + oy) * 2 * W + ox) * C,
                       x + (((size_t)b * H + oy / 2) * W + ox / 2) * ldx, (size_t)C * sizeof(float));
}

void ops_upsample2x_backward(float *dx, int lddx, const float *dy, int B, int H, int W, int C) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int iy = 0; iy < H; iy++)
            for (int ix = 0; ix < W; ix++) {
                float *o = dx + (((size_t)b * H + iy) * W + ix) * lddx;
                for (int d = 0; d < 4; d++) {
                    const float *g = dy + (((size_t)b * 2 * H + 2 * iy + d / 2) * 2 * W + 2 * ix + d % 2) * C;
                    for (int c = 0; c < C; c++) o[c] += g[c];
                }
            }
}

/* Keep element i of sample b when its uniform draw is >= p. Draws come in
 * Philox blocks of 4, generated one block at a time. */
static void dropout_apply(float *dst, const float *src, int B, size_t n, float p, uint64_t seed,
                          uint64_t stream) {
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        uint64_t st = stream + (uint64_t)b; /* == stream ^ b: the low 16 bits of stream are 0 */
        const float *s = src + (size_t)b * n;
        float *d = dst + (size_t)b * n;
        for (size_t i = 0; i < n; i += 256) {
            float u[256];
            size_t m = n - i < 256 ? n - i : 256;
            rng_uniform_at(u, m, seed, RNG_DROPOUT, st, i);
            for (size_t j = 0; j < m; j++) d[i + j] = u[j] >= p ? s[i + j] * scale : 0.0f;
        }
    }
}

void ops_dropout_forward(float *x, int B, size_t n_per_sample, float p, uint64_t seed, uint64_t stream) {
    if (p <= 0.0f) return;
    dropout_apply(x, x, B, n_per_sample, p, seed, stream);
}

void ops_dropout_backward(float *dx, const float *dy, int B, size_t n_per_sample, float p, uint64_t seed,
                      uint64_t stream) {
    if (p <= 0.0f) {
        if (dx != dy) memcpy(dx, dy, (size_t)B * n_per_sample * sizeof(float));
        return;
    }
    dropout_apply(dx, dy, B, n_per_sample, p, seed, stream);
}

void ops_guidance_mix(float *out, const float *c, const float *u, float w, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = u[i] + w * (c[i] - u[i]);
}

void ops_embedding_forward(float *y, const float *W, const int32_t *idx, int B, int D) {
    for (int b = 0; b < B; b++) {
        const float *w = W + (size_t)idx[b] * D;
        float *yb = y + (size_t)b * D;
        for (int j = 0; j < D; j++) yb[j] += w[j];
    }
}

void ops_embedding_backward(float *dW, const float *dy, const int32_t *idx, int B, int D) {
    for (int b = 0; b < B; b++) {
        float *g = dW + (size_t)idx[b] * D;
        const float *d = dy + (size_t)b * D;
        for (int j = 0; j < D; j++) g[j] += d[j];
    }
}

void ops_timestep_embedding(float *out, const float *t, int B, int D, int flip_sin_to_cos, float freq_shift) {
    int half = D / 2;
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * D;
        for (int k = 0; k < half; k++) {
            /* The float32 sequence diffusers uses: exp(-ln(10000) * k / (half - shift)). */
            float e = -logf(10000.0f) * (float)k;
            e = e / ((float)half - freq_shift);
            float arg = t[b] * expf(e);
            float sn = sinf(arg), cs = cosf(arg);
            o[k] = flip_sin_to_cos ? cs : sn;
            o[half + k] = flip_sin_to_cos ? sn : cs;
        }
        if (D % 2) o[D - 1] = 0.0f;
    }
}

void ops_lincomb(float *out, float a, const float *u, float b, const float *w, float c, const float *z, size_t n) {
    if (!z) {
        #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = a * u[i] + b * w[i];
        return;
    }
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = a * u[i] + b * w[i];
        out[i] = v + c * z[i];
    }
}

void ops_unmix(float *out, const float *x, float b, const float *e, float a, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = (x[i] - b * e[i]) / a;
}

/* The bf16 nearest to x, ties to even (the upper 16 bits of a float after
 * adding half a unit of the last kept place, plus one when that place is
 * odd); every NaN becomes the quiet NaN 0x7FC0. PyTorch's and oneDNN's
 * conversion; infinities and overflow to them behave as IEEE rounding. */
static inline uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    return (u & 0x7FFFFFFFu) > 0x7F800000u ? (uint16_t)0x7FC0 : (uint16_t)r;
}

void ops_round_bf16(float *y, int ldy, const float *x, int ldx, size_t rows, int C) {
    #pragma omp parallel for schedule(static) if (rows * C >= PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *in = x + r * ldx;
        float *out = y + r * ldy;
        for (int c = 0; c < C; c++) {
            uint32_t u = (uint32_t)bf16_bits(in[c]) << 16;
            memcpy(&out[c], &u, sizeof u);
        }
    }
}

void ops_to_bf16(uint16_t *y, int ldy, const float *x, int ldx, size_t rows, int C) {
    #pragma omp parallel for schedule(static) if (rows * C >= PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *in = x + r * ldx;
        uint16_t *out = y + r * ldy;
        for (int c = 0; c < C; c++) out[c] = bf16_bits(in[c]);
    }
}

void ops_nchw_to_nhwc(float *dst, const float *src, int B, int C, int HW) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < HW; p++) dst[((size_t)b * HW + p) * C + c] = src[((size_t)b * C + c) * HW + p];
}

void ops_nhwc_to_nchw(float *dst, const float *src, int B, int C, int HW) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < HW; p++) dst[((size_t)b * C + c) * HW + p] = src[((size_t)b * HW + p) * C + c];
}
