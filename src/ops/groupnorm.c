/* groupnorm.c -- GroupNorm over NHWC rows, optionally fused with SiLU.
 * Statistics are accumulated per channel in float over blocks of pixels and in
 * double across blocks, then combined per group in double. Work is
 * split by sample; per-sample partial parameter gradients are summed in sample
 * order afterwards, so results do not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "vmath.h"

enum { GN_BLOCK = 16 };      /* pixels accumulated in float before adding to the double sums */
enum { GN_SILU_CHUNK = 256 }; /* channels of a pixel whose SiLU is computed at a time */

void ops_groupnorm_forward(float *y, int ldy, float *mean, float *rstd, const float *x, int ldx,
                       const float *gamma, const float *beta, int B, int HW, int C, int G,
                       float eps, int silu) {
    int cg = C / G;
    ERR_ASSERT(cg * G == C && C <= 4096);
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        /* Per channel: sums of d = x - k and d^2 over the pixels, with k the
         * channel's first pixel (so that the variance does not cancel when
         * the mean is large), in float over blocks of GN_BLOCK pixels (this
         * vectorises) and in double across blocks. */
        double s[4096], q[4096];
        float k[4096], fs[4096], fq[4096], scale[4096], shift[4096];
        memset(s, 0, sizeof(double) * C);
        memset(q, 0, sizeof(double) * C);
        const float *xb = x + (size_t)b * HW * ldx;
        memcpy(k, xb, sizeof(float) * C);
        for (int p0 = 0; p0 < HW; p0 += GN_BLOCK) {
            int p1 = p0 + GN_BLOCK < HW ? p0 + GN_BLOCK : HW;
            memset(fs, 0, sizeof(float) * C);
            memset(fq, 0, sizeof(float) * C);
            for (int p = p0; p < p1; p++) {
                const float *r = xb + (size_t)p * ldx;
                for (int c = 0; c < C; c++) {
                    float d = r[c] - k[c];
                    fs[c] += d;
                    fq[c] += d * d;
                }
            }
            for (int c = 0; c < C; c++) s[c] += fs[c], q[c] += fq[c];
        }
        double n = (double)HW * cg;
        for (int g = 0; g < G; g++) {
            double sg = 0, qg = 0;
            for (int c = g * cg; c < (g + 1) * cg; c++) sg += s[c] + (double)HW * k[c];
            double m = sg / n;
            /* sum over the group's pixels of (x - m)^2 = sum_c q_c + 2 a s_c + HW a^2, a = k_c - m */
            for (int c = g * cg; c < (g + 1) * cg; c++) {
                double a = (double)k[c] - m;
                qg += q[c] + 2.0 * a * s[c] + (double)HW * a * a;
            }
            double var = qg / n;
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
            if (silu) { /* z, then its sigmoid, then the product: as one loop GCC makes slow code (docs/perf.md) */
                float sg[GN_SILU_CHUNK];
                for (int c0 = 0; c0 < C; c0 += GN_SILU_CHUNK) {
                    const int n = C - c0 < GN_SILU_CHUNK ? C - c0 : GN_SILU_CHUNK;
                    for (int c = 0; c < n; c++) o[c0 + c] = r[c0 + c] * scale[c0 + c] + shift[c0 + c];
                    for (int c = 0; c < n; c++) sg[c] = vsigmoidf(o[c0 + c]);
                    for (int c = 0; c < n; c++) o[c0 + c] *= sg[c];
                }
            } else
                for (int c = 0; c < C; c++) o[c] = r[c] * scale[c] + shift[c];
        }
    }
}

/* The backward of one sample: per-channel sums of dz and dz * xhat into
 * sdz/sdzx (=), and dx. dz (the gradient w.r.t. the normalised-affine output,
 * through SiLU when fused) is computed once and kept in dzb [HW, C]. */
static void gn_backward_sample(float *dxb, int lddx, double *sdz, double *sdzx, float *dzb, const float *dyb,
                               int lddy, const float *xb, int ldx, const float *mb, const float *rb,
                               const float *gamma, const float *beta, int HW, int C, int G, int silu,
                               int accumulate) {
    int cg = C / G;
    float mc[4096], rc[4096], fz[4096], fzx[4096];
    for (int c = 0; c < C; c++) mc[c] = mb[c / cg], rc[c] = rb[c / cg];
    memset(sdz, 0, sizeof(double) * C);
    memset(sdzx, 0, sizeof(double) * C);
    for (int p0 = 0; p0 < HW; p0 += GN_BLOCK) {
        int p1 = p0 + GN_BLOCK < HW ? p0 + GN_BLOCK : HW;
        memset(fz, 0, sizeof(float) * C);
        memset(fzx, 0, sizeof(float) * C);
        for (int p = p0; p < p1; p++) {
            const float *r = xb + (size_t)p * ldx, *g = dyb + (size_t)p * lddy;
            float *dz = dzb + (size_t)p * C;
            if (silu)
                for (int c = 0; c < C; c++) {
                    float xh = (r[c] - mc[c]) * rc[c];
                    float z = xh * gamma[c] + beta[c], sg = vsigmoidf(z);
                    dz[c] = g[c] * sg * (1.0f + z * (1.0f - sg));
                }
            else
                for (int c = 0; c < C; c++) dz[c] = g[c];
            for (int c = 0; c < C; c++) {
                float xh = (r[c] - mc[c]) * rc[c];
                fz[c] += dz[c];
                fzx[c] += dz[c] * xh;
            }
        }
        for (int c = 0; c < C; c++) sdz[c] += fz[c], sdzx[c] += fzx[c];
    }
    float ag[4096], bg[4096]; /* per channel: its group's mean of dxhat and of dxhat * xhat, times rstd */
    double n = (double)HW * cg;
    for (int gi = 0; gi < G; gi++) {
        double a = 0, bb = 0;
        for (int c = gi * cg; c < (gi + 1) * cg; c++) {
            a += gamma[c] * sdz[c];
            bb += gamma[c] * sdzx[c];
        }
        for (int c = gi * cg; c < (gi + 1) * cg; c++) ag[c] = (float)(a / n), bg[c] = (float)(bb / n);
    }
    /* dx = rstd * (gamma dz - mean(dxhat) - xhat mean(dxhat xhat)). */
    for (int p = 0; p < HW; p++) {
        const float *r = xb + (size_t)p * ldx, *dz = dzb + (size_t)p * C;
        float *o = dxb + (size_t)p * lddx;
        if (accumulate)
            for (int c = 0; c < C; c++) {
                float xh = (r[c] - mc[c]) * rc[c];
                o[c] += rc[c] * (gamma[c] * dz[c] - ag[c] - xh * bg[c]);
            }
        else
            for (int c = 0; c < C; c++) {
                float xh = (r[c] - mc[c]) * rc[c];
                o[c] = rc[c] * (gamma[c] * dz[c] - ag[c] - xh * bg[c]);
            }
    }
}

void ops_groupnorm_backward(float *dx, int lddx, float *dgamma, float *dbeta, const float *dy, int lddy,
                        const float *x, int ldx, const float *mean, const float *rstd,
                        const float *gamma, const float *beta, int B, int HW, int C, int G,
                        int silu, int accumulate) {
    ERR_ASSERT((C / G) * G == C && C <= 4096);
    /* Per-sample partial sums of dgamma/dbeta [B][2][C], in the caller's buffer
     * (shared with the team below); each thread keeps the dz rows of its sample. */
    double *part = exec_buffer(OPS_SLOT_GN_PARTIAL, sizeof(double) * B * 2 * C);
    float *dz = exec_buffer(OPS_SLOT_GN_DZ, sizeof(float) * HW * C * ops_team_size());
    if (!part || !dz) return; /* out of memory: see exec_buffer */
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *dzbuf = dz + (size_t)HW * C * omp_get_thread_num();
        double *sdz = part + (size_t)b * 2 * C;
        gn_backward_sample(dx + (size_t)b * HW * lddx, lddx, sdz, sdz + C, dzbuf, dy + (size_t)b * HW * lddy, lddy,
                           x + (size_t)b * HW * ldx, ldx, mean + b * G, rstd + b * G, gamma, beta, HW, C, G, silu,
                           accumulate);
    }
    /* Summed over the samples in order, then added once (see ops.h). */
    for (int c = 0; c < C; c++) {
        double sb = 0, sg = 0;
        for (int b = 0; b < B; b++) {
            sb += part[(size_t)b * 2 * C + c];
            sg += part[(size_t)b * 2 * C + C + c];
        }
        dbeta[c] += (float)sb;
        dgamma[c] += (float)sg;
    }
}
