/* broken.c -- the looks of images and the broken rule (broken.h). */
#include "broken.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Pixel (y, x) of image i of s as a gray value in [-1, 1]. */
static float gray(const image_set *s, size_t i, int y, int x) {
    size_t at = (((size_t)i * s->h + y) * s->w + x) * s->c;
    float v = 0;
    for (int c = 0; c < s->c; c++) {
        float p = s->u8 ? s->u8[at + c] / 127.5f - 1.0f : s->f32[at + c];
        v += p < -1 ? -1 : p > 1 ? 1 : p;
    }
    return v / (float)s->c;
}

/* Sums over the pairs (p, q) of neighbouring pixels, for their correlation. */
typedef struct pair_sums {
    double n, p, q, pp, qq, pq;
} pair_sums;

static void add_pair(pair_sums *s, double p, double q) {
    s->n++, s->p += p, s->q += q, s->pp += p * p, s->qq += q * q, s->pq += p * q;
}

/* 1 - the correlation of the pairs; 0 when either side is flat. */
static double decorrelation(const pair_sums *s) {
    if (s->n < 1) return 0;
    double mp = s->p / s->n, mq = s->q / s->n;
    double vp = s->pp / s->n - mp * mp, vq = s->qq / s->n - mq * mq;
    if (!(vp * vq > 1e-12)) return 0;
    return 1 - (s->pq / s->n - mp * mq) / sqrt(vp * vq);
}

void broken_looks(float *looks, const image_set *s) {
    const int h = s->h, w = s->w;
    const double px = (double)h * w;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < s->n; i++) {
        double ink = 0, white = 0;
        pair_sums pairs = {0};
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = gray(s, (size_t)i, y, x);
                ink += v > -0.5f, white += v > 0.9f;
                if (x + 1 < w) add_pair(&pairs, v, gray(s, (size_t)i, y, x + 1));
                if (y + 1 < h) add_pair(&pairs, v, gray(s, (size_t)i, y + 1, x));
            }
        float *l = looks + (size_t)i * BROKEN_LOOKS;
        l[BROKEN_DARK] = (float)(ink / px);
        l[BROKEN_WHITE] = (float)(white / px);
        l[BROKEN_NOISY] = (float)decorrelation(&pairs);
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of column j of looks [n, BROKEN_LOOKS] (the order statistic
 * at floor(q (n - 1)), no interpolation). */
static float quantile(float *tmp, const float *looks, long long n, int j, double q) {
    for (long long i = 0; i < n; i++) tmp[i] = looks[(size_t)i * BROKEN_LOOKS + j];
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_float);
    return tmp[(long long)(q * (double)(n - 1))];
}

int broken_rule_from(broken_rule *r, const float *looks, long long n, err_t *err) {
    if (n < 1) return err_fail(err, "the broken-image rule needs at least 1 reference image");
    float *tmp = mem_alloc_floats((size_t)n, err);
    if (!tmp) return -1;
    r->ink_min = quantile(tmp, looks, n, BROKEN_DARK, BROKEN_TAIL);
    r->white_max = quantile(tmp, looks, n, BROKEN_WHITE, 1 - BROKEN_TAIL);
    r->rough_max = quantile(tmp, looks, n, BROKEN_NOISY, 1 - BROKEN_TAIL);
    free(tmp);
    return 0;
}

int broken_why(const broken_rule *r, const float *look) {
    return (look[BROKEN_DARK] < r->ink_min) << BROKEN_DARK | (look[BROKEN_WHITE] > r->white_max) << BROKEN_WHITE |
           (look[BROKEN_NOISY] > r->rough_max) << BROKEN_NOISY;
}

long long broken_count(const broken_rule *r, const float *looks, long long n, long long by_why[BROKEN_LOOKS]) {
    long long any = 0;
    memset(by_why, 0, sizeof(long long) * BROKEN_LOOKS);
    for (long long i = 0; i < n; i++) {
        int why = broken_why(r, looks + (size_t)i * BROKEN_LOOKS);
        any += why != 0;
        for (int j = 0; j < BROKEN_LOOKS; j++) by_why[j] += why >> j & 1;
    }
    return any;
}
