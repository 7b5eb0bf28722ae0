/* groupnorm.c -- GroupNorm over NHWC rows, optionally fused with SiLU.
 * Statistics are accumulated in double per channel, then per group. Work is
 * split by sample; per-sample partial parameter gradients are summed in sample
 * order afterwards, so results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static inline float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

void groupnorm_forward(float *y, int ldy, float *mean, float *rstd, const float *x, int ldx,
                       const float *gamma, const float *beta, int B, int HW, int C, int G,
                       float eps, int silu) {
    int cg = C / G;
    DDPM_ASSERT(cg * G == C && C <= 4096);
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        double s[4096], q[4096];
        float scale[4096], shift[4096];
        memset(s, 0, sizeof(double) * C);
        memset(q, 0, sizeof(double) * C);
        const float *xb = x + (size_t)b * HW * ldx;
        for (int p = 0; p < HW; p++) {
            const float *r = xb + (size_t)p * ldx;
            for (int c = 0; c < C; c++) {
                double v = r[c];
                s[c] += v;
                q[c] += v * v;
            }
        }
        double n = (double)HW * cg;
        for (int g = 0; g < G; g++) {
            double sg = 0, qg = 0;
            for (int c = g * cg; c < (g + 1) * cg; c++) {
                sg += s[c];
                qg += q[c];
            }
            double m = sg / n, var = qg / n - m * m;
            if (var < 0) var = 0;
            float rs = (float)(1.0 / sqrt(var + eps));
            mean[b * G + g] = (float)m;
            rstd[b * G + g] = rs;
            for (int c = g * cg; c < (g + 1) * cg; c++) {
                scale[c] = gamma[c] * rs;
                shift[c] = beta[c] - (float)m * scale[c];
            }
        }
        float *yb = y + (size_t)b * HW * ldy;
        for (int p = 0; p < HW; p++) {
            const float *r = xb + (size_t)p * ldx;
            float *o = yb + (size_t)p * ldy;
            if (silu)
                for (int c = 0; c < C; c++) {
                    float z = r[c] * scale[c] + shift[c];
                    o[c] = z * sigmoidf(z);
                }
            else
                for (int c = 0; c < C; c++) o[c] = r[c] * scale[c] + shift[c];
        }
    }
}

/* Per-sample partial sums of dgamma/dbeta, [B][2][C]; grown, never shrunk. */
static _Thread_local double *partial; /* per thread: shards run concurrently */
static _Thread_local size_t partial_len;

void groupnorm_backward(float *dx, int lddx, float *dgamma, float *dbeta, const float *dy, int lddy,
                        const float *x, int ldx, const float *mean, const float *rstd,
                        const float *gamma, const float *beta, int B, int HW, int C, int G,
                        int silu, int accumulate) {
    int cg = C / G;
    DDPM_ASSERT(cg * G == C && C <= 4096);
    size_t need = (size_t)B * 2 * C;
    if (need > partial_len) {
        free(partial);
        partial = malloc(need * sizeof(double));
        DDPM_ASSERT(partial != NULL);
        partial_len = need;
    }
    double *part = partial; /* the caller's buffer, shared with the team below */
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        double *sdz = part + (size_t)b * 2 * C, *sdzx = sdz + C;
        memset(sdz, 0, sizeof(double) * 2 * C);
        const float *xb = x + (size_t)b * HW * ldx, *dyb = dy + (size_t)b * HW * lddy;
        const float *mb = mean + b * G, *rb = rstd + b * G;
        /* Pass 1: per-channel sums of dz and dz * xhat. */
        for (int p = 0; p < HW; p++) {
            const float *r = xb + (size_t)p * ldx, *g = dyb + (size_t)p * lddy;
            for (int c = 0; c < C; c++) {
                float xh = (r[c] - mb[c / cg]) * rb[c / cg];
                float dz = g[c];
                if (silu) {
                    float z = xh * gamma[c] + beta[c], sg = sigmoidf(z);
                    dz *= sg * (1.0f + z * (1.0f - sg));
                }
                sdz[c] += dz;
                sdzx[c] += (double)dz * xh;
            }
        }
        float ag[4096], bg[4096]; /* per group: mean of dxhat, mean of dxhat * xhat */
        double n = (double)HW * cg;
        for (int gi = 0; gi < G; gi++) {
            double a = 0, bb = 0;
            for (int c = gi * cg; c < (gi + 1) * cg; c++) {
                a += gamma[c] * sdz[c];
                bb += gamma[c] * sdzx[c];
            }
            ag[gi] = (float)(a / n);
            bg[gi] = (float)(bb / n);
        }
        /* Pass 2: dx = rstd * (gamma dz - mean(dxhat) - xhat mean(dxhat xhat)). */
        float *dxb = dx + (size_t)b * HW * lddx;
        for (int p = 0; p < HW; p++) {
            const float *r = xb + (size_t)p * ldx, *g = dyb + (size_t)p * lddy;
            float *o = dxb + (size_t)p * lddx;
            for (int c = 0; c < C; c++) {
                int gi = c / cg;
                float xh = (r[c] - mb[gi]) * rb[gi];
                float dz = g[c];
                if (silu) {
                    float z = xh * gamma[c] + beta[c], sg = sigmoidf(z);
                    dz *= sg * (1.0f + z * (1.0f - sg));
                }
                float v = rb[gi] * (gamma[c] * dz - ag[gi] - xh * bg[gi]);
                o[c] = accumulate ? o[c] + v : v;
            }
        }
    }
    for (int b = 0; b < B; b++) {
        const double *sdz = partial + (size_t)b * 2 * C, *sdzx = sdz + C;
        for (int c = 0; c < C; c++) {
            dbeta[c] += (float)sdz[c];
            dgamma[c] += (float)sdzx[c];
        }
    }
}
