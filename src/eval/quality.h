/* quality.h -- sample quality of a set of images against a reference: FID,
 * Inception Score (Inception features only) and improved precision/recall
 * (k = 3), in a feature network's space (featnet.h), with the statistics of
 * stats.h; reference statistics saved and loaded as pytorch-fid's .npz
 * (float64 `mu`, `sigma`; ddpm may add float32 `features` [n, d], which
 * precision/recall need, and `logits` [n, k]). pytorch-fid reads ddpm's files
 * and ddpm reads pytorch-fid's.
 */
#ifndef DDPM_QUALITY_H
#define DDPM_QUALITY_H

#include "diffusion/sampler.h"
#include "featnet.h"
#include "stats.h"

#define QUALITY_PR_K 3      /* Kynkaanniemi et al.'s k */
#define QUALITY_IS_SPLITS 10 /* as the original IS code */

/* What images are compared against: Gaussian statistics, and (optionally)
 * the features themselves. */
typedef struct quality_ref {
    fid_stats st;
    float *feats; /* [n, d] or NULL */
    long long n;  /* rows of feats (0 without) */
} quality_ref;

typedef struct quality {
    double fid, is_mean, is_std, precision, recall;
    int has_is, has_pr;
    long long n, n_ref, n_pr; /* images measured, reference images, images per side in P/R */
} quality;

typedef void (*quality_progress)(void *ctx, int done, int total);

/* Features (and logits, if logits_out) of s, then their statistics. r->feats
 * is kept when keep_feats. *logits_out (may be NULL) gets [n, classes]. */
int quality_ref_from_images(quality_ref *r, featnet *net, const image_set *s, int keep_feats, float **logits_out,
                            quality_progress cb, void *ctx, ddpm_err *err);
/* Writes r (and logits [r->n, classes] if not NULL) as an .npz (atomically). */
int quality_ref_save(const quality_ref *r, const float *logits, int classes, const char *path, ddpm_err *err);
/* Reads mu and sigma (and features when present) of an .npz; checks the shapes
 * and that every value is finite. */
int quality_ref_load(quality_ref *r, const char *path, ddpm_err *err);
void quality_ref_free(quality_ref *r);

/* Measures s against ref: FID always; IS with Inception features (n >= 10);
 * precision/recall when ref has features, on m = min(n, ref n) rows of each
 * side (equal sizes, as the method expects): the first m samples, and m
 * reference rows spread evenly over the reference. */
int quality_measure(quality *q, featnet *net, const image_set *s, const quality_ref *ref, quality_progress cb,
                    void *ctx, ddpm_err *err);

/* Samples n images from d with the sampler options into x [n, D] (NHWC),
 * batch by batch (image indices 0..n-1, so the result does not depend on d's
 * batch). cb reports network calls done of the total. */
int quality_sample(const denoiser *d, const schedule *s, const sampler_opts *o, int n, float *x, quality_progress cb,
                   void *ctx, ddpm_err *err);

#endif
