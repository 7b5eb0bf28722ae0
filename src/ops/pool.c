/* pool.c -- pooling and bilinear resizing on NHWC for the feature networks:
 * max and average pooling as PyTorch's max_pool2d / avg_pool2d (floor mode;
 * the average divides by the window's in-image pixels, count_include_pad=False),
 * the global average pool, and F.interpolate(mode='bilinear',
 * align_corners=False). Plain loops parallelised with OpenMP. */
#include <float.h>

#include "ops.h"

void ops_pool2d_out_size(int H, int W, int k, int stride, int pad, int *Ho, int *Wo) {
    *Ho = (H + 2 * pad - k) / stride + 1;
    *Wo = (W + 2 * pad - k) / stride + 1;
}

void ops_pool2d_forward(float *y, int ldy, const float *x, int ldx, int B, int H, int W, int C, int k, int stride,
                    int pad, int max) {
    int Ho, Wo;
    ops_pool2d_out_size(H, W, k, stride, pad, &Ho, &Wo);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < B; n++)
        for (int oy = 0; oy < Ho; oy++) {
            int y0 = oy * stride - pad, y1 = y0 + k;
            y0 = y0 < 0 ? 0 : y0, y1 = y1 > H ? H : y1;
            for (int ox = 0; ox < Wo; ox++) {
                int x0 = ox * stride - pad, x1 = x0 + k;
                x0 = x0 < 0 ? 0 : x0, x1 = x1 > W ? W : x1;
                float *o = y + ((size_t)(n * Ho + oy) * Wo + ox) * ldy;
                for (int c = 0; c < C; c++) o[c] = max ? -FLT_MAX : 0.0f;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        const float *in = x + ((size_t)(n * H + iy) * W + ix) * ldx;
                        if (max)
                            for (int c = 0; c < C; c++) o[c] = in[c] > o[c] ? in[c] : o[c];
                        else
                            for (int c = 0; c < C; c++) o[c] += in[c];
                    }
                if (!max) {
                    float inv = 1.0f / (float)((y1 - y0) * (x1 - x0));
                    for (int c = 0; c < C; c++) o[c] *= inv;
                }
            }
        }
}

void ops_global_avgpool(float *y, const float *x, int ldx, int B, int HW, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < B; n++) {
        double acc[C];
        for (int c = 0; c < C; c++) acc[c] = 0;
        for (int p = 0; p < HW; p++) {
            const float *in = x + ((size_t)n * HW + p) * ldx;
            for (int c = 0; c < C; c++) acc[c] += in[c];
        }
        for (int c = 0; c < C; c++) y[(size_t)n * C + c] = (float)(acc[c] / HW);
    }
}

/* Source index and weights of output position o: s = (o + 1/2) in/out - 1/2,
 * clamped at 0; taps i0 = floor(s) and i0 + 1 (the last pixel repeats). */
static void bilinear_taps(int o, int in, int out, int *i0, int *i1, float *l1) {
    float s = ((float)o + 0.5f) * ((float)in / (float)out) - 0.5f;
    if (s < 0) s = 0;
    *i0 = (int)s;
    if (*i0 > in - 1) *i0 = in - 1;
    *i1 = *i0 < in - 1 ? *i0 + 1 : *i0;
    *l1 = s - (float)*i0;
}

void ops_resize_bilinear(float *y, const float *x, int B, int H, int W, int C, int Ho, int Wo) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < B; n++)
        for (int oy = 0; oy < Ho; oy++) {
            int y0, y1;
            float ly;
            bilinear_taps(oy, H, Ho, &y0, &y1, &ly);
            const float *r0 = x + (size_t)(n * H + y0) * W * C, *r1 = x + (size_t)(n * H + y1) * W * C;
            for (int ox = 0; ox < Wo; ox++) {
                int x0, x1;
                float lx;
                bilinear_taps(ox, W, Wo, &x0, &x1, &lx);
                float *o = y + ((size_t)(n * Ho + oy) * Wo + ox) * C;
                for (int c = 0; c < C; c++) {
                    float top = (1 - lx) * r0[(size_t)x0 * C + c] + lx * r0[(size_t)x1 * C + c];
                    float bot = (1 - lx) * r1[(size_t)x0 * C + c] + lx * r1[(size_t)x1 * C + c];
                    o[c] = (1 - ly) * top + ly * bot;
                }
            }
        }
}
