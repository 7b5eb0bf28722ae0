/* loader.c -- epoch permutations (Fisher-Yates driven by the counter-based
 * RNG) and batch assembly with optional horizontal flips. */
#include "data/loader.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

int loader_init(loader *l, const dataset *d, uint64_t seed, int flip, err_t *err) {
    memset(l, 0, sizeof *l);
    if (!d || d->n <= 0 || !d->pixels || d->h <= 0 || d->w <= 0 || d->c <= 0)
        return err_fail(err, "loader: the dataset is empty");
    l->perm = mem_alloc((size_t)d->n * sizeof *l->perm, err);
    if (!l->perm) return -1;
    l->d = d;
    l->seed = seed;
    l->flip = flip;
    l->epoch = -1;
    return 0;
}

static void shuffle(loader *l, int64_t epoch) {
    uint32_t n = (uint32_t)l->d->n, *p = l->perm;
    for (uint32_t k = 0; k < n; k++) p[k] = k;
    for (uint32_t k = n - 1; k > 0; k--) {
        uint32_t j = rng_below(k + 1, l->seed, RNG_SHUFFLE, (uint64_t)epoch, k);
        uint32_t t = p[k];
        p[k] = p[j];
        p[j] = t;
    }
    l->epoch = epoch;
}

uint32_t loader_index(loader *l, uint64_t g) {
    ERR_ASSERT(l && l->perm && l->d);
    uint64_t n = (uint64_t)l->d->n;
    int64_t epoch = (int64_t)(g / n);
    if (epoch != l->epoch) shuffle(l, epoch);
    return l->perm[g % n];
}

void loader_batch(loader *l, uint64_t step, int batch, int first, int n, float *x) {
    ERR_ASSERT(l && l->perm && l->d && batch >= 0 && first >= 0 && n >= 0 && first + n <= batch);
    const dataset *d = l->d;
    const int h = d->h, w = d->w, c = d->c;
    const size_t img = (size_t)h * w * c;
    for (int j = 0; j < n; j++) {
        const uint64_t i = (uint64_t)(first + j); /* the image's place in the global batch */
        const uint8_t *src = d->pixels + (size_t)loader_index(l, step * (uint64_t)batch + i) * img;
        float *dst = x + (size_t)j * img;
        int mirror = l->flip && rng_below(2, l->seed, RNG_FLIP, step, i) == 1;
        if (!mirror) {
            for (size_t k = 0; k < img; k++) dst[k] = (float)src[k] / 127.5f - 1.0f;
            continue;
        }
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++) {
                const uint8_t *s = src + ((size_t)y * w + (w - 1 - xx)) * c;
                float *o = dst + ((size_t)y * w + xx) * c;
                for (int k = 0; k < c; k++) o[k] = (float)s[k] / 127.5f - 1.0f;
            }
    }
}

void loader_labels(loader *l, uint64_t step, int batch, int first, int n, int32_t *y) {
    ERR_ASSERT(l && l->d && l->d->labels && first >= 0 && n >= 0 && first + n <= batch);
    for (int j = 0; j < n; j++) y[j] = l->d->labels[loader_index(l, step * (uint64_t)batch + (uint64_t)(first + j))];
}

void loader_free(loader *l) {
    if (!l) return;
    free(l->perm);
    memset(l, 0, sizeof *l);
}
