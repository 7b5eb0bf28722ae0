/* optim.c -- the training step's whole-buffer arithmetic: squared error and
 * its gradient, the gradient norm, q_sample over a batch, fused Adam + EMA
 * (see ops.h). */
#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"

double ops_sq_error(float *dpred, const float *pred, const float *target, size_t n, float gscale) {
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        float d = pred[i] - target[i];
        acc += (double)d * d;
        if (dpred) dpred[i] = gscale * d;
    }
    return acc;
}

double ops_mse_loss(float *dpred, const float *pred, const float *target, size_t n) {
    return ops_sq_error(dpred, pred, target, n, 2.0f / (float)n) / (double)n;
}

double ops_sum_squares(const float *x, size_t n) {
    enum { CHUNK = 1 << 16, MAX_CHUNKS = 4096 };
    size_t nc = (n + CHUNK - 1) / CHUNK;
    double part[MAX_CHUNKS], total = 0;
    /* Chunks of a fixed size summed in order: the same bits for any thread
     * count (buffers past MAX_CHUNKS chunks are done in rounds). */
    for (size_t c0 = 0; c0 < nc; c0 += MAX_CHUNKS) {
        size_t m = nc - c0 < MAX_CHUNKS ? nc - c0 : MAX_CHUNKS;
        #pragma omp parallel for schedule(static)
        for (size_t c = 0; c < m; c++) {
            size_t b = (c0 + c) * CHUNK, e = b + CHUNK < n ? b + CHUNK : n;
            double s = 0;
            for (size_t i = b; i < e; i++) s += (double)x[i] * x[i];
            part[c] = s;
        }
        for (size_t c = 0; c < m; c++) total += part[c];
    }
    return total;
}

void ops_q_sample_rows(float *xt, const float *x0, const float *eps, const float *a, const float *b, int rows,
                   size_t per) {
    #pragma omp parallel for schedule(static) if (rows > 1)
    for (int r = 0; r < rows; r++) {
        const float ar = a[r], br = b[r];
        const size_t o = (size_t)r * per;
        for (size_t i = 0; i < per; i++) xt[o + i] = ar * x0[o + i] + br * eps[o + i];
    }
}

void ops_adam_ema_update(float *p, float *m, float *v, float *ema, const float *grad, size_t n, const adam_ema_coef *c) {
    const float scale = c->scale, b1 = c->b1, b2 = c->b2, c1 = c->c1, c2 = c->c2, eps = c->eps, d = c->decay;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = grad[i] * scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= c1 * m[i] / (sqrtf(v[i]) * c2 + eps);
        ema[i] = d * ema[i] + (1.0f - d) * p[i];
    }
}
