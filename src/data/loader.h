/* loader.h -- deterministic, resumable mini-batches from a dataset: shuffled
 * once per epoch and optionally flipped, with every choice a pure function of
 * (seed, step, batch size, dataset), so a resumed run sees exactly the batches
 * an uninterrupted one would.
 */
#ifndef DDPM_DATA_LOADER_H
#define DDPM_DATA_LOADER_H

#include <stdint.h>

#include "core/status.h"
#include "data/dataset.h"

typedef struct loader {
    const dataset *d;  /* borrowed; must outlive the loader */
    uint64_t seed;
    int flip;          /* non-zero: random horizontal flips */
    int64_t epoch;     /* epoch whose permutation is cached in perm, -1 = none */
    uint32_t *perm;    /* d->n entries */
} loader;

/* Prepares l to draw batches from d (which must hold at least one image).
 * Returns 0, or -1 with a message (empty dataset, out of memory). */
int loader_init(loader *l, const dataset *d, uint64_t seed, int flip, err_t *err);

/* Dataset index of global position g (g = step * batch + i): with n = d->n,
 * epoch = g / n and the index is perm_epoch[g % n], where perm_epoch starts as
 * 0..n-1 and is Fisher-Yates shuffled with, for k = n-1 down to 1,
 * j = rng_below(k + 1, seed, RNG_SHUFFLE, epoch, k); swap(perm[k], perm[j]).
 * Recomputes the cached permutation when the epoch changes. */
uint32_t loader_index(loader *l, uint64_t g);

/* Fills x [n, h, w, c] (NHWC) with images first..first+n-1 of the global batch
 * of `batch` at `step` (a process of a data-parallel run asks for its share):
 * image i is dataset image loader_index(step*batch + i), as described there,
 * each pixel p mapped to p / 127.5 - 1 (so 0..255 -> [-1, 1]). If l->flip,
 * image i is mirrored left-right when rng_below(2, seed, RNG_FLIP, step, i) == 1.
 * The result depends only on (seed, flip, step, batch, i, dataset), never on
 * earlier calls or on how the batch is split. Not thread-safe on one loader
 * (it updates the cached permutation). */
void loader_batch(loader *l, uint64_t step, int batch, int first, int n, float *x);

/* y[n] (=) the class labels (d->labels, which must exist) of the images
 * loader_batch gives for the same arguments. */
void loader_labels(loader *l, uint64_t step, int batch, int first, int n, int32_t *y);

/* Frees l's permutation and zeroes *l. Safe on a zeroed loader. */
void loader_free(loader *l);

#endif
