/* attention.c -- the single-head self-attention block of the DDPM U-Net
 * (diffusers Attention with one head): GroupNorm, q/k/v projections, softmax
 * attention over the H*W tokens of each image, output projection, residual.
 * The per-image products run in parallel over images when there are enough
 * of them (each GEMM then single-threaded), else one image at a time with
 * threaded GEMMs. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops.h"
#include "vmath.h"

size_t ops_attn_scratch_floats(int B, int HW, int C) {
    return 5 * (size_t)B * HW * C + (size_t)B * HW * HW;
}

/* Inside a parallel region (a shard of a sharded U-Net) the per-image loop runs
 * on the calling thread, so the arithmetic never depends on the thread count. */
static int per_image_parallel(int B) { return omp_in_parallel() || B >= omp_get_max_threads(); }

static void softmax_rows(float *p, int rows, int n) {
    for (int i = 0; i < rows; i++) {
        float *r = p + (size_t)i * n, m = r[0];
        for (int j = 1; j < n; j++) m = r[j] > m ? r[j] : m;
        for (int j = 0; j < n; j++) r[j] = vexpf(r[j] - m);
        double s = 0;
        for (int j = 0; j < n; j++) s += r[j];
        float inv = (float)(1.0 / s);
        for (int j = 0; j < n; j++) r[j] *= inv;
    }
}

void ops_attn_forward(float *out, int ldo, attn_saved *s, const float *x, int ldx, const attn_params *p,
                  int B, int HW, int C, int G, float eps) {
    int M = B * HW, prec = exec_precision(); /* asked here: the image loop's threads are not workers */
    float scale = 1.0f / sqrtf((float)C);
    ops_groupnorm_forward(s->g, C, s->mean, s->rstd, x, ldx, p->gn_w, p->gn_b, B, HW, C, G, eps, 0);
    ops_linear_forward(s->q, C, s->g, C, p->wq, p->bq, M, C, C, 0);
    ops_linear_forward(s->k, C, s->g, C, p->wk, p->bk, M, C, C, 0);
    ops_linear_forward(s->v, C, s->g, C, p->wv, p->bv, M, C, C, 0);
    #pragma omp parallel for schedule(static) if (per_image_parallel(B))
    for (int b = 0; b < B; b++) {
        size_t a = (size_t)b * HW * C;
        float *pb = s->p + (size_t)b * HW * HW;
        ops_gemm_prec(prec, 0, 1, HW, HW, C, scale, s->q + a, C, s->k + a, C, 0.0f, pb, HW);
        softmax_rows(pb, HW, HW);
        ops_gemm_prec(prec, 0, 0, HW, C, HW, 1.0f, pb, HW, s->v + a, C, 0.0f, s->o + a, C);
    }
    ops_linear_forward(out, ldo, s->o, C, p->wo, p->bo, M, C, C, 0);
    ops_add_rows(out, ldo, x, ldx, M, C);
}

void ops_attn_backward(float *dx, int lddx, attn_grads *g, const float *dout, int lddo, const attn_saved *s,
                   const float *x, int ldx, const attn_params *p, int B, int HW, int C, int G,
                   float *scratch) {
    int M = B * HW, prec = exec_precision();
    size_t MC = (size_t)M * C;
    float scale = 1.0f / sqrtf((float)C);
    float *d_o = scratch, *dq = d_o + MC, *dk = dq + MC, *dv = dk + MC, *dg = dv + MC, *dp = dg + MC;

    ops_add_rows(dx, lddx, dout, lddo, M, C); /* the residual path */
    ops_gemm_prec(prec, 0, 0, M, C, C, 1.0f, dout, lddo, p->wo, C, 0.0f, d_o, C);
    ops_linear_backward(NULL, 0, g->wo, g->bo, dout, lddo, s->o, C, p->wo, M, C, C);

    #pragma omp parallel for schedule(static) if (per_image_parallel(B))
    for (int b = 0; b < B; b++) {
        size_t a = (size_t)b * HW * C;
        const float *pb = s->p + (size_t)b * HW * HW;
        float *dpb = dp + (size_t)b * HW * HW;
        ops_gemm_prec(prec, 0, 1, HW, HW, C, 1.0f, d_o + a, C, s->v + a, C, 0.0f, dpb, HW);
        ops_gemm_prec(prec, 1, 0, HW, C, HW, 1.0f, pb, HW, d_o + a, C, 0.0f, dv + a, C);
        /* Softmax backward: dS = P * (dP - rowsum(dP * P)), times the scale. */
        for (int i = 0; i < HW; i++) {
            const float *pr = pb + (size_t)i * HW;
            float *dr = dpb + (size_t)i * HW;
            double dot = 0;
            for (int j = 0; j < HW; j++) dot += (double)dr[j] * pr[j];
            for (int j = 0; j < HW; j++) dr[j] = pr[j] * (dr[j] - (float)dot) * scale;
        }
        ops_gemm_prec(prec, 0, 0, HW, C, HW, 1.0f, dpb, HW, s->k + a, C, 0.0f, dq + a, C);
        ops_gemm_prec(prec, 1, 0, HW, C, HW, 1.0f, dpb, HW, s->q + a, C, 0.0f, dk + a, C);
    }
    ops_gemm_prec(prec, 0, 0, M, C, C, 1.0f, dq, C, p->wq, C, 0.0f, dg, C);
    ops_gemm_prec(prec, 0, 0, M, C, C, 1.0f, dk, C, p->wk, C, 1.0f, dg, C);
    ops_gemm_prec(prec, 0, 0, M, C, C, 1.0f, dv, C, p->wv, C, 1.0f, dg, C);
    ops_linear_backward(NULL, 0, g->wq, g->bq, dq, C, s->g, C, p->wq, M, C, C);
    ops_linear_backward(NULL, 0, g->wk, g->bk, dk, C, s->g, C, p->wk, M, C, C);
    ops_linear_backward(NULL, 0, g->wv, g->bv, dv, C, s->g, C, p->wv, M, C, C);
    ops_groupnorm_backward(dx, lddx, g->gn_w, g->gn_b, dg, C, x, ldx, s->mean, s->rstd, p->gn_w, p->gn_b,
                       B, HW, C, G, 0, 1);
}
