/* broken.h -- which generated images a person would call broken: near-blank
 * dark images, washed-out white blobs and noise, told apart from the rest by
 * three numbers per image ("looks"), each compared with the range the
 * reference's real images cover.
 *
 * The looks of an image, on its pixels clamped to [-1, 1] (the mean of the
 * channels for colour):
 *   ink    the share of pixels brighter than -0.5      (low: dark, near blank)
 *   white  the share of pixels brighter than 0.9       (high: a blown-out blob)
 *   rough  1 - the correlation of neighbouring pixels (each pixel with the
 *          one right of it and the one below; 0 for a flat image)
 *                                                      (high: noise, specks)
 * An image is broken when one of them lies beyond the 0.1% tail of the
 * reference's (the 0.1% quantile of ink, the 99.9% quantiles of white and
 * rough): by construction about 0.3% of real images drawn like the
 * reference's are flagged. The rule does not use the features: the F-MNIST
 * network's distance to the data flags clean trousers and misses white blobs
 * and most noise images (docs/quality.md).
 */
#ifndef DDPM_BROKEN_H
#define DDPM_BROKEN_H

#include "core/status.h"
#include "featnet.h"

enum { BROKEN_DARK, BROKEN_WHITE, BROKEN_NOISY, BROKEN_LOOKS };

#define BROKEN_TAIL 0.001 /* the share of the reference beyond each threshold */

/* The looks [s->n, BROKEN_LOOKS] of the images of s. */
void broken_looks(float *looks, const image_set *s);

/* The thresholds, from the looks of n >= 1 reference images. */
typedef struct broken_rule {
    float ink_min, white_max, rough_max;
} broken_rule;
int broken_rule_from(broken_rule *r, const float *looks, long long n, err_t *err);

/* Why an image with these looks is broken: a bit (1 << BROKEN_DARK, ...) per
 * look out of range; 0 when it is not. */
int broken_why(const broken_rule *r, const float *look);

/* Counts the broken rows of looks [n, BROKEN_LOOKS]: by_why[BROKEN_DARK..]
 * the images each reason flags (an image may have several); returns the
 * images with at least one. */
long long broken_count(const broken_rule *r, const float *looks, long long n, long long by_why[BROKEN_LOOKS]);

#endif
