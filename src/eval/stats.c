/* stats.c -- FID statistics and distance (OpenBLAS/LAPACK in double), the
 * Inception Score, and improved precision and recall (the project's sgemm in
 * fixed tiles). Formulas in stats.h. */
#include "stats.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

/* ---- BLAS / LAPACK (OpenBLAS, Fortran interface, column-major) ------------
 * The trailing size_t arguments are the hidden lengths of the character
 * arguments (gfortran's convention). A row-major symmetric matrix is the same
 * array in column-major order. */
extern void dsyrk_(const char *uplo, const char *trans, const int *n, const int *k, const double *alpha,
                   const double *a, const int *lda, const double *beta, double *c, const int *ldc,
                   size_t luplo, size_t ltrans);
extern void dgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
                   const double *alpha, const double *a, const int *lda, const double *b, const int *ldb,
                   const double *beta, double *c, const int *ldc, size_t lta, size_t ltb);
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info,
                    size_t ljobz, size_t luplo);

enum {
    COV_BLOCK = 1024, /* rows centred and widened to double per dsyrk */
    PR_ROWS = 256,    /* precision/recall tile: rows of the first set ... */
    PR_COLS = 1024    /* ... against this many rows of the second */
};

/* The first row of x [n, d] holding a NaN or infinity, or -1; *col its column. */
static long long first_nonfinite_row(const float *x, long long n, int d, int *col) {
    long long bad = n;
    #pragma omp parallel for schedule(static) reduction(min : bad)
    for (long long i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        int ok = 1;
        for (int j = 0; j < d; j++) ok &= isfinite(r[j]) != 0;
        if (!ok && i < bad) bad = i;
    }
    if (bad == n) return -1;
    const float *r = x + (size_t)bad * d;
    for (*col = 0; *col < d && isfinite(r[*col]); (*col)++) {}
    return bad;
}

static int check_rows(const float *x, long long n, int d, const char *what, err_t *err) {
    int col = 0;
    long long bad = first_nonfinite_row(x, n, d, &col);
    if (bad >= 0)
        return err_fail(err, "%s row %lld is not finite (column %d is %g)", what, bad, col,
                         (double)x[(size_t)bad * d + col]);
    return 0;
}

/* ---- mean and covariance -------------------------------------------------- */

void stats_fid_free(fid_stats *s) {
    if (!s) return;
    free(s->mu);
    free(s->sigma);
    memset(s, 0, sizeof *s);
}

int stats_fid_compute(fid_stats *s, const float *feats, long long n, int d, err_t *err) {
    memset(s, 0, sizeof *s);
    if (n < 2) return err_fail(err, "FID statistics need at least 2 feature rows, got %lld", n);
    if (d < 1) return err_fail(err, "FID statistics: feature dimension %d < 1", d);
    if (check_rows(feats, n, d, "feature", err)) return -1;
    double *mu = mem_calloc((size_t)d, sizeof(double), err);
    double *sigma = mu ? mem_calloc((size_t)d * d, sizeof(double), err) : NULL;
    long long bs = n < COV_BLOCK ? n : COV_BLOCK;
    double *blk = sigma ? mem_alloc(sizeof(double) * (size_t)bs * d, err) : NULL;
    if (!blk) {
        free(mu), free(sigma);
        return err_wrap(err, "FID statistics (d = %d)", d);
    }

    /* mu = sum_i x_i / n, each column summed in row order (any thread count). */
    #pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < d; j0 += 64) {
        int j1 = j0 + 64 < d ? j0 + 64 : d;
        for (long long i = 0; i < n; i++) {
            const float *r = feats + (size_t)i * d;
            for (int j = j0; j < j1; j++) mu[j] += r[j];
        }
    }
    for (int j = 0; j < d; j++) mu[j] /= (double)n;

    /* sigma = sum over blocks of Xc^T Xc (upper triangle in column-major,
     * the lower one in row-major), Xc = the block's rows minus mu. */
    for (long long i0 = 0; i0 < n; i0 += bs) {
        int rows = (int)(n - i0 < bs ? n - i0 : bs);
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < rows; i++) {
            const float *r = feats + (size_t)(i0 + i) * d;
            double *o = blk + (size_t)i * d;
            for (int j = 0; j < d; j++) o[j] = (double)r[j] - mu[j];
        }
        const double one = 1.0, beta = i0 == 0 ? 0.0 : 1.0;
        dsyrk_("U", "N", &d, &rows, &one, blk, &d, &beta, sigma, &d, 1, 1);
    }
    free(blk);

    /* Column-major upper = row-major lower: mirror it and divide by n - 1. */
    const double inv = 1.0 / (double)(n - 1);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < d; i++) {
        for (int j = 0; j <= i; j++) sigma[(size_t)i * d + j] *= inv;
        for (int j = 0; j < i; j++) sigma[(size_t)j * d + i] = sigma[(size_t)i * d + j];
    }
    s->d = d, s->n = n, s->mu = mu, s->sigma = sigma;
    return 0;
}

/* ---- Frechet distance ----------------------------------------------------- */

static int check_stats(const fid_stats *s, const char *which, err_t *err) {
    if (!s || !s->mu || !s->sigma || s->d < 1) return err_fail(err, "FID: %s statistics are empty", which);
    size_t d = (size_t)s->d;
    for (size_t j = 0; j < d; j++)
        if (!isfinite(s->mu[j])) return err_fail(err, "FID: %s statistics: mu[%zu] is not finite", which, j);
    for (size_t i = 0; i < d * d; i++)
        if (!isfinite(s->sigma[i]))
            return err_fail(err, "FID: %s statistics: sigma[%zu, %zu] is not finite", which, i / d, i % d);
    return 0;
}

/* Eigenvalues w[n] ascending of the symmetric a [n, n] (upper triangle read,
 * overwritten by the eigenvectors as columns when vectors != 0). */
static int sym_eig(double *a, int n, double *w, int vectors, err_t *err) {
    const char *jobz = vectors ? "V" : "N";
    int lwork = -1, liwork = -1, info = 0, iq = 0;
    double wq = 0;
    dsyevd_(jobz, "U", &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info, 1, 1);
    if (info != 0) return err_fail(err, "FID: LAPACK dsyevd workspace query failed (info %d)", info);
    lwork = (int)wq + 1, liwork = iq > 1 ? iq : 1;
    double *work = mem_alloc(sizeof(double) * (size_t)lwork, err);
    int *iwork = work ? mem_alloc(sizeof(int) * (size_t)liwork, err) : NULL;
    if (!iwork) {
        free(work);
        return err_wrap(err, "FID: eigendecomposition of a %d x %d matrix", n, n);
    }
    dsyevd_(jobz, "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work), free(iwork);
    if (info != 0)
        return err_fail(err, "FID: LAPACK dsyevd did not converge on a %d x %d matrix (info %d)", n, n, info);
    return 0;
}

int stats_fid_distance(double *fid, const fid_stats *a, const fid_stats *b, err_t *err) {
    if (check_stats(a, "first", err) || check_stats(b, "second", err)) return -1;
    if (a->d != b->d)
        return err_fail(err, "FID: feature dimensions differ (%d and %d)", a->d, b->d);
    if (a->d > 30000) /* LAPACK's workspace, 1 + 6d + 2d^2, must fit in an int */
        return err_fail(err, "FID: feature dimension %d is too large (at most 30000)", a->d);
    int d = a->d, rc = -1;
    size_t dd = (size_t)d * d;
    double *V = mem_alloc(sizeof(double) * dd, err);   /* S1, then its eigenvectors */
    double *S2 = V ? mem_alloc(sizeof(double) * dd, err) : NULL;
    double *W = S2 ? mem_alloc(sizeof(double) * dd, err) : NULL;  /* V diag(sqrt l), d x r */
    double *T = W ? mem_alloc(sizeof(double) * dd, err) : NULL;   /* S2 W, then W^T S2 W */
    double *l = T ? mem_alloc(sizeof(double) * d, err) : NULL;
    if (!l) {
        err_wrap(err, "FID (d = %d)", d);
        goto done;
    }

    /* Symmetric parts, and the terms without a square root. */
    double dmu = 0, tr1 = 0, tr2 = 0;
    for (int i = 0; i < d; i++) {
        double t = a->mu[i] - b->mu[i];
        dmu += t * t;
        tr1 += a->sigma[(size_t)i * d + i], tr2 += b->sigma[(size_t)i * d + i];
    }
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            size_t ij = (size_t)i * d + j, ji = (size_t)j * d + i;
            V[ij] = 0.5 * (a->sigma[ij] + a->sigma[ji]);
            S2[ij] = 0.5 * (b->sigma[ij] + b->sigma[ji]);
        }

    /* S1 = V diag(l) V^T; W = the columns sqrt(l_k) v_k with l_k > tol. */
    if (sym_eig(V, d, l, 1, err)) goto done;
    double tol = (double)d * DBL_EPSILON * l[d - 1];
    int r = 0;
    for (int k = 0; k < d; k++) {
        if (!(l[k] > tol && l[k] > 0)) continue;
        double s = sqrt(l[k]);
        const double *v = V + (size_t)k * d;  /* column k of the column-major result */
        double *w = W + (size_t)r * d;
        for (int i = 0; i < d; i++) w[i] = s * v[i];
        r++;
    }

    /* m = eig(W^T S2 W) (r x r, symmetrised), tr (S1 S2)^{1/2} = sum sqrt(m_k > tol). */
    double trs = 0;
    if (r > 0) {
        const double one = 1.0, zero = 0.0;
        dgemm_("N", "N", &d, &r, &d, &one, S2, &d, W, &d, &zero, T, &d, 1, 1);  /* T = S2 W  [d x r] */
        double *M = V;                                                       /* V is no longer needed */
        dgemm_("T", "N", &r, &r, &d, &one, W, &d, T, &d, &zero, M, &r, 1, 1);   /* M = W^T T [r x r] */
        for (int i = 0; i < r; i++)
            for (int j = 0; j < i; j++) {
                double s = 0.5 * (M[(size_t)i * r + j] + M[(size_t)j * r + i]);
                M[(size_t)i * r + j] = M[(size_t)j * r + i] = s;
            }
        if (sym_eig(M, r, l, 0, err)) goto done;
        double tol2 = (double)d * DBL_EPSILON * l[r - 1];
        for (int k = 0; k < r; k++)
            if (l[k] > tol2 && l[k] > 0) trs += sqrt(l[k]);
    }
    *fid = dmu + tr1 + tr2 - 2.0 * trs;
    rc = 0;
done:
    free(V), free(S2), free(W), free(T), free(l);
    return rc;
}

/* ---- Inception Score ------------------------------------------------------ */

int stats_inception_score(double *mean, double *std, const float *logits, long long n, int k, int splits,
                    err_t *err) {
    if (k < 1) return err_fail(err, "Inception Score: %d classes", k);
    if (splits < 1 || n < splits)
        return err_fail(err, "Inception Score: %lld rows cannot make %d splits (need 1 <= splits <= rows)",
                         n, splits);
    if (check_rows(logits, n, k, "logit", err)) return -1;
    double *lse = mem_alloc(sizeof(double) * (size_t)n, err);  /* logsumexp of each row */
    double *kl = lse ? mem_alloc(sizeof(double) * (size_t)n, err) : NULL;
    double *pm = kl ? mem_alloc(sizeof(double) * (size_t)k, err) : NULL;
    double *score = pm ? mem_alloc(sizeof(double) * (size_t)splits, err) : NULL;
    if (!score) {
        free(lse), free(kl), free(pm);
        return err_wrap(err, "Inception Score (%lld x %d)", n, k);
    }

    /* log p(y|x) = z_y - lse(z), lse(z) = max z + log sum exp(z - max z). */
    #pragma omp parallel for schedule(static)
    for (long long i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        double m = z[0], s = 0;
        for (int y = 1; y < k; y++) m = z[y] > m ? z[y] : m;
        for (int y = 0; y < k; y++) s += exp(z[y] - m);
        lse[i] = m + log(s);
    }
    for (int p = 0; p < splits; p++) {
        long long i0 = (long long)p * n / splits, i1 = (long long)(p + 1) * n / splits;
        /* p_i(y) = mean over the part of p(y|x), each class summed in row order. */
        #pragma omp parallel for schedule(static)
        for (int y0 = 0; y0 < k; y0 += 64) {
            int y1 = y0 + 64 < k ? y0 + 64 : k;
            for (int y = y0; y < y1; y++) pm[y] = 0;
            for (long long i = i0; i < i1; i++)
                for (int y = y0; y < y1; y++) pm[y] += exp(logits[(size_t)i * k + y] - lse[i]);
            for (int y = y0; y < y1; y++) pm[y] /= (double)(i1 - i0);
        }
        /* KL(p(y|x) || p_i(y)) per row, then their mean in row order. */
        #pragma omp parallel for schedule(static)
        for (long long i = i0; i < i1; i++) {
            const float *z = logits + (size_t)i * k;
            double s = 0;
            for (int y = 0; y < k; y++) {
                double lp = z[y] - lse[i], py = exp(lp);
                if (py > 0) s += py * (lp - log(pm[y]));
            }
            kl[i] = s;
        }
        double s = 0;
        for (long long i = i0; i < i1; i++) s += kl[i];
        score[p] = exp(s / (double)(i1 - i0));
    }
    double mu = 0, var = 0;
    for (int p = 0; p < splits; p++) mu += score[p];
    mu /= splits;
    for (int p = 0; p < splits; p++) var += (score[p] - mu) * (score[p] - mu);
    *mean = mu, *std = sqrt(var / splits);
    free(lse), free(kl), free(pm), free(score);
    return 0;
}

/* ---- improved precision and recall ---------------------------------------- */

/* nrm[i] (=) ||x_i||^2 (summed in double, stored as float). */
static void row_norms(float *nrm, const float *x, long long n, int d) {
    #pragma omp parallel for schedule(static)
    for (long long i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
        nrm[i] = (float)s;
    }
}

/* D[m, c] (=) max(0, ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j) for a [m, d], b [c, d]
 * (an, bn their squared norms). Called inside a parallel region, so the sgemm
 * runs on this thread alone and the tile's values never depend on the team. */
static void sqdist_tile(float *D, const float *a, const float *an, int m, const float *b, const float *bn,
                        int c, int d) {
    ops_gemm(0, 1, m, c, d, -2.0f, a, d, b, d, 0.0f, D, c);
    for (int i = 0; i < m; i++) {
        float *row = D + (size_t)i * c;
        for (int j = 0; j < c; j++) {
            float v = (an[i] + bn[j]) + row[j];
            row[j] = v < 0.0f ? 0.0f : v;
        }
    }
}

/* r2[i] (=) the squared distance from x_i to its k-th nearest other row of x [n, d].
 * buf: per thread, PR_ROWS * PR_COLS + PR_ROWS * k floats. */
static void knn_radii(float *r2, const float *x, const float *nrm, long long n, int d, int k, float *buf,
                      int nt) {
    long long nblk = (n + PR_ROWS - 1) / PR_ROWS;
    size_t per = (size_t)PR_ROWS * PR_COLS + (size_t)PR_ROWS * k;
    #pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long long bi = 0; bi < nblk; bi++) {
        float *D = buf + per * (size_t)omp_get_thread_num(), *top = D + (size_t)PR_ROWS * PR_COLS;
        long long i0 = bi * PR_ROWS;
        int m = (int)(n - i0 < PR_ROWS ? n - i0 : PR_ROWS);
        for (size_t t = 0; t < (size_t)m * k; t++) top[t] = INFINITY;
        for (long long j0 = 0; j0 < n; j0 += PR_COLS) {
            int c = (int)(n - j0 < PR_COLS ? n - j0 : PR_COLS);
            sqdist_tile(D, x + (size_t)i0 * d, nrm + i0, m, x + (size_t)j0 * d, nrm + j0, c, d);
            for (int i = 0; i < m; i++) {
                const float *row = D + (size_t)i * c;
                float *t = top + (size_t)i * k;  /* the k smallest so far, ascending */
                for (int j = 0; j < c; j++) {
                    float v = row[j];
                    if (!(v < t[k - 1]) || j0 + j == i0 + i) continue;
                    int p = k - 1;
                    for (; p > 0 && t[p - 1] > v; p--) t[p] = t[p - 1];
                    t[p] = v;
                }
            }
        }
        for (int i = 0; i < m; i++) r2[i0 + i] = top[(size_t)i * k + k - 1];
    }
}

int stats_precision_recall(double *precision, double *recall, const float *real, long long nr,
                     const float *fake, long long nf, int d, int k, err_t *err) {
    if (d < 1) return err_fail(err, "precision/recall: feature dimension %d < 1", d);
    if (k < 1) return err_fail(err, "precision/recall: k = %d neighbours (need k >= 1)", k);
    if (nr <= k || nf <= k)
        return err_fail(err, "precision/recall: %lld real and %lld fake rows, need more than k = %d of each",
                         nr, nf, k);
    if (check_rows(real, nr, d, "real feature", err) || check_rows(fake, nf, d, "fake feature", err)) return -1;
    int nt = omp_get_max_threads();
    size_t per = (size_t)PR_ROWS * PR_COLS + (size_t)PR_ROWS * k;
    float *rn = mem_alloc(sizeof(float) * (size_t)(nr + nf) * 2, err);  /* norms, then radii^2 */
    float *buf = rn ? mem_alloc(sizeof(float) * per * nt, err) : NULL;
    unsigned char *hit = buf ? mem_calloc((size_t)nr + (size_t)nf * nt, 1, err) : NULL;
    if (!hit) {
        free(rn), free(buf);
        return err_wrap(err, "precision/recall (%lld real, %lld fake rows)", nr, nf);
    }
    float *fn = rn + nr, *rr2 = fn + nf, *fr2 = rr2 + nr;
    row_norms(rn, real, nr, d);
    row_norms(fn, fake, nf, d);
    knn_radii(rr2, real, rn, nr, d, k, buf, nt);
    knn_radii(fr2, fake, fn, nf, d, k, buf, nt);

    /* One pass over real x fake tiles: real row i is recalled if inside some
     * fake sphere; fake column j is precise if inside some real sphere (flags
     * per thread, OR-ed afterwards). */
    unsigned char *rec = hit, *prec = hit + nr;
    long long nblk = (nr + PR_ROWS - 1) / PR_ROWS;
    #pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long long bi = 0; bi < nblk; bi++) {
        int tid = omp_get_thread_num();
        float *D = buf + per * (size_t)tid;
        unsigned char *pf = prec + (size_t)nf * tid;
        long long i0 = bi * PR_ROWS;
        int m = (int)(nr - i0 < PR_ROWS ? nr - i0 : PR_ROWS);
        for (long long j0 = 0; j0 < nf; j0 += PR_COLS) {
            int c = (int)(nf - j0 < PR_COLS ? nf - j0 : PR_COLS);
            sqdist_tile(D, real + (size_t)i0 * d, rn + i0, m, fake + (size_t)j0 * d, fn + j0, c, d);
            for (int i = 0; i < m; i++) {
                const float *row = D + (size_t)i * c;
                float ri = rr2[i0 + i];
                unsigned char in = 0;
                for (int j = 0; j < c; j++) {
                    in |= row[j] <= fr2[j0 + j];
                    pf[j0 + j] |= row[j] <= ri;
                }
                rec[i0 + i] |= in;
            }
        }
    }
    long long np = 0, nrec = 0;
    for (long long j = 0; j < nf; j++) {
        unsigned char any = 0;
        for (int t = 0; t < nt; t++) any |= prec[(size_t)nf * t + j];
        np += any;
    }
    for (long long i = 0; i < nr; i++) nrec += rec[i];
    *precision = (double)np / (double)nf;
    *recall = (double)nrec / (double)nr;
    free(rn), free(buf), free(hit);
    return 0;
}
