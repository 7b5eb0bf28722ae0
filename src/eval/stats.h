/* stats.h -- the sample-quality statistics of `ddpm eval fid`, on feature
 * vectors computed elsewhere (float32 rows [n, d], row-major): the Frechet
 * distance between two Gaussians fitted to features (FID), the Inception
 * Score, and improved precision and recall.
 *
 * Every function returns 0 on success and -1 with a one-line message in err on
 * bad input (sizes, non-finite values, mismatched dimensions), on out of
 * memory, or if LAPACK fails. Accumulation is in double except where said.
 */
#ifndef DDPM_STATS_H
#define DDPM_STATS_H

#include "core/status.h"

/* Gaussian statistics of n feature rows: mu[d], sigma[d*d] row-major (symmetric). */
typedef struct fid_stats {
    int d;
    long long n;
    double *mu;
    double *sigma;
} fid_stats;

/* s (=) the mean and covariance in double of feats [n, d] (n >= 2), as numpy's
 * np.mean(feats, axis=0) and np.cov(feats, rowvar=False):
 *     mu = sum_i x_i / n,   sigma = sum_i (x_i - mu)(x_i - mu)^T / (n - 1).
 * Rows are centred and widened to double in blocks of 1024, so the extra
 * memory is 1024*d doubles besides sigma. Every value must be finite (the
 * error names the first bad row). s is zeroed on failure. */
int stats_fid_compute(fid_stats *s, const float *feats, long long n, int d, err_t *err);

/* Frees s->mu and s->sigma and zeroes s. Safe on a zeroed or freed s. */
void stats_fid_free(fid_stats *s);

/* *fid (=) ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), as
 * pytorch-fid's calculate_frechet_distance (which uses scipy's sqrtm).
 * The trace of the square root comes from two symmetric eigenproblems
 * (LAPACK dsyevd), not a general matrix square root:
 *     S1 = V diag(l) V^T,   W = V diag(sqrt(l)) (columns with l > tol only),
 *     tr (S1 S2)^{1/2} = sum_k sqrt(m_k),   m = eig(W^T S2 W) with m_k > tol,
 * since W^T S2 W is similar to R S2 R with R = S1^{1/2}, and R S2 R to
 * S1 S2. tol = d * DBL_EPSILON * (largest eigenvalue) drops the eigenvalues
 * that are rounding noise around an exact zero (covariances of n < d rows are
 * singular), whose square roots would otherwise add up to a visible error.
 * Only the symmetric parts (S + S^T)/2 of the covariances are used. The result
 * is not clamped: identical statistics give 0 up to rounding, of either sign. */
int stats_fid_distance(double *fid, const fid_stats *a, const fid_stats *b, err_t *err);

/* Inception Score as the original code (Salimans et al. 2016, openai
 * improved-gan inception_score.py): p(y|x) = softmax of logits [n, k] (in
 * double, stable), rows split into `splits` consecutive parts exactly as
 * there, part i = rows [i*n/splits, (i+1)*n/splits) with integer division (so
 * part sizes differ by at most one when splits does not divide n), and
 *     score_i = exp( mean_{x in part i} sum_y p(y|x) (log p(y|x) - log p_i(y)) ),
 *     p_i(y) = mean_{x in part i} p(y|x);
 * *mean and *std (=) the mean and the population standard deviation (numpy
 * std, ddof 0) of the scores. log p(y|x) is the log-softmax itself (logit -
 * logsumexp), and a term with p(y|x) = 0 counts 0 (the original would give
 * NaN there). Needs 1 <= splits <= n, k >= 1, finite logits. */
int stats_inception_score(double *mean, double *std, const float *logits, long long n, int k, int splits,
                    err_t *err);

/* Improved precision and recall (Kynkaanniemi et al. 2019) with k nearest
 * neighbours, for real [nr, d] and fake [nf, d]. The radius r(x) of a real row
 * is its Euclidean distance to its k-th nearest other real row (itself
 * excluded by index, so duplicates count as neighbours at distance 0);
 * likewise for fake rows among the fakes. Then
 *     precision (=) fraction of fake rows f with |f - x| <= r(x) for some real x,
 *     recall    (=) fraction of real rows x with |x - f| <= r(f) for some fake f.
 * Squared distances are ||a||^2 + ||b||^2 - 2 a.b in float (the products from
 * the project's sgemm in fixed 256 x 1024 tiles, negatives clamped to 0), so
 * memory stays bounded and the result does not depend on the thread count.
 * Needs 1 <= k < nr and k < nf, d >= 1, finite features. */
int stats_precision_recall(double *precision, double *recall, const float *real, long long nr,
                     const float *fake, long long nf, int d, int k, err_t *err);

#endif
