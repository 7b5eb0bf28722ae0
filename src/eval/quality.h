/* quality.h -- sample quality of a set of images against a reference: FID,
 * Inception Score (Inception features only) and improved precision/recall
 * (k = 3), in a feature network's space (featnet.h), with the statistics of
 * stats.h; reference statistics saved and loaded as pytorch-fid's .npz
 * (float64 `mu`, `sigma`; ddpm may add float32 `features` [n, d], which
 * precision/recall need, and `logits` [n, k]). pytorch-fid reads ddpm's files
 * and ddpm reads pytorch-fid's. For labelled images, the same per class: FID
 * against the reference rows of the class, and the feature network's accuracy
 * as a classifier.
 */
#ifndef DDPM_QUALITY_H
#define DDPM_QUALITY_H

#include "broken.h"
#include "diffusion/sampler.h"
#include "featnet.h"
#include "stats.h"

#define QUALITY_PR_K 3      /* Kynkaanniemi et al.'s k */
#define QUALITY_IS_SPLITS 10 /* as the original IS code */

/* What images are compared against: Gaussian statistics, and (optionally)
 * the features themselves. */
typedef struct quality_ref {
    fid_stats st;
    float *feats;        /* [n, d] or NULL */
    long long n;         /* rows of feats (0 without) */
    float *looks;        /* [n_looks, BROKEN_LOOKS] (broken.h) or NULL */
    long long n_looks;
} quality_ref;

typedef struct quality {
    double fid, is_mean, is_std, precision, recall;
    int has_is, has_pr, has_broken;
    long long broken, broken_by[BROKEN_LOOKS]; /* has_broken: broken images (broken.h), and by reason */
    long long n, n_ref, n_pr; /* images measured, reference images, images per side in P/R */
} quality;

typedef void (*quality_progress)(void *ctx, int done, int total);

/* Features (and logits, if logits_out) of s, then their statistics, and the
 * looks of its images (broken.h). r->feats is kept when keep_feats. *logits_out (may be NULL) gets [n, classes]. */
int quality_ref_from_images(quality_ref *r, featnet *net, const image_set *s, int keep_feats, float **logits_out,
                            quality_progress cb, void *ctx, err_t *err);
/* Writes r (and logits [r->n, classes] if not NULL) as an .npz (atomically). */
int quality_ref_save(const quality_ref *r, const float *logits, int classes, const char *path, err_t *err);
/* Reads mu and sigma (and features and looks when present) of an .npz; checks the shapes
 * and that every value is finite. */
int quality_ref_load(quality_ref *r, const char *path, err_t *err);
void quality_ref_free(quality_ref *r);

/* Measures s against ref: FID always; IS with Inception features (n >= 10);
 * the broken images when ref has looks (broken.h, by ref's rule); precision/recall when ref has features, on m = min(n, ref n) rows of each
 * side (equal sizes, as the method expects): the first m samples, and m
 * reference rows spread evenly over the reference. */
int quality_measure(quality *q, featnet *net, const image_set *s, const quality_ref *ref, quality_progress cb,
                    void *ctx, err_t *err);

/* quality_measure on features computed already: mine holds the samples'
 * statistics and features (mine->feats, for precision/recall), logits [mine->n,
 * classes] or NULL (then no IS). Same results as quality_measure on the images. */
int quality_compare(quality *q, featnet *net, const quality_ref *mine, const float *logits, const quality_ref *ref,
                    err_t *err);

/* s (=) the statistics (stats_fid_compute) of the rows i of feats [n, d] with
 * labels[i] == k; there must be at least 2. */
int quality_class_stats(fid_stats *s, const float *feats, long long n, int d, const int32_t *labels, int k,
                        err_t *err);

/* One class of a per-class report: the caller sets k and ref_k, quality_by_class the rest. */
typedef struct quality_class {
    int k;              /* the samples' label of this class (and the classifier's class index) */
    int ref_k;          /* the reference's label of this class (-1: none) */
    long long n, n_ref; /* samples labelled k; reference rows labelled ref_k */
    long long correct;  /* of the n samples, those whose largest logit is logit k (has_acc) */
    double fid;         /* has_fid: the samples labelled k against the reference rows labelled ref_k */
    int has_fid, has_acc;
} quality_class;

/* Per-class measurements, for c[0..m-1] (k, ref_k set by the caller), of the
 * samples' features mine->feats [mine->n, d] (with mine->st) and labels[mine->n]:
 *   n, correct: over the samples i with labels[i] == k; correct
 *     counts those whose logits [i, 0..nlogits) are largest at k (the first
 *     largest on ties); has_acc when logits != NULL and k < nlogits;
 *   fid: of quality_class_stats of mine->feats (class k) against those of
 *     ref->feats with ref_labels[ref->n] (class ref_k); has_fid when
 *     ref_labels and ref->feats are given, ref_k >= 0, and n >= 2 and n_ref >= 2.
 * Samples of classes not in c are left out. Returns 0, or -1 (out of memory,
 * stats_fid_distance's errors) with a message naming the class. */
int quality_by_class(quality_class *c, int m, const quality_ref *mine, const int32_t *labels, const float *logits,
                     int nlogits, const quality_ref *ref, const int32_t *ref_labels, err_t *err);

/* Samples n images from d with the sampler options into x [n, D] (NHWC),
 * batch by batch (image indices 0..n-1, so the noise does not depend on d's
 * batch; the network's rounding may, see docs/determinism.md). cb reports
 * network calls done of the total. */
int quality_sample(const denoiser *d, const schedule *s, const sampler_opts *o, int n, float *x, quality_progress cb,
                   void *ctx, err_t *err);

/* quality_sample for a class-conditional model: d is a denoiser that reads
 * its batch's labels from *y (a guided U-Net's), and image i gets the class
 * labels[i] (*y is set to each batch's labels, as `ddpm sample` does). */
int quality_sample_classes(const denoiser *d, const int32_t **y, const int32_t *labels, const schedule *s,
                           const sampler_opts *o, int n, float *x, quality_progress cb, void *ctx, err_t *err);

#endif
