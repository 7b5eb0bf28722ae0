/* test_stats.c -- the sample-quality statistics (src/eval/stats.c) against the
 * real references in tests/fixtures/stats.safetensors (tools/fixtures_stats.py):
 * numpy's mean/cov, pytorch-fid's calculate_frechet_distance (scipy sqrtm) and
 * the exact FID (nuclear norm of X1c X2c^T), numpy brute force for the
 * Inception Score and precision/recall; FID cases with closed forms (S1 = S2,
 * diagonal, 2 x 2 non-commuting, rank one) that a wrong square-root trace
 * fails; precision/recall equal at 1 and 3 threads; and the error paths. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval/stats.h"
#include "fixture.h"

#define FIXTURE "tests/fixtures/stats.safetensors"

/* F64 (or I32, by size) tensor `name` raw into a new buffer of `size`-byte elements. */
static void *fx_raw(const st_file *f, const char *name, int dtype, size_t *n) {
    const st_tensor *t = fx_tensor(f, name);
    if (t->dtype != dtype) {
        fprintf(stderr, "fixture: tensor '%s' is %s, expected %s\n", name, st_dtype_name(t->dtype),
                st_dtype_name(dtype));
        exit(1);
    }
    void *p = malloc(t->end - t->begin);
    err_t err;
    if (st_read_raw(f, t, p, t->end - t->begin, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        exit(1);
    }
    if (n) *n = t->numel;
    return p;
}

static double fx_scalar(const st_file *f, const char *name) {
    double *p = fx_raw(f, name, ST_F64, NULL), v = p[0];
    free(p);
    return v;
}

/* Rows and columns of the 2-d tensor `name`. */
static float *fx_rows(const st_file *f, const char *name, long long *n, int *d) {
    const st_tensor *t = fx_tensor(f, name);
    *n = t->shape[0], *d = (int)t->shape[1];
    return fx_get(f, name, NULL);
}

/* ---- FID against numpy, pytorch-fid and the exact value ------------------- */

static void test_mean_cov(void) {
    st_file f = fx_open(FIXTURE);
    long long n;
    int d;
    float *x = fx_rows(&f, "fid_d64_n300.x1", &n, &d);
    size_t nmu, nsig;
    double *mu = fx_raw(&f, "fid_d64_n300.mu1", ST_F64, &nmu), *sig = fx_raw(&f, "fid_d64_n300.sigma1", ST_F64, &nsig);
    fid_stats s;
    err_t err;
    CHECK(stats_fid_compute(&s, x, n, d, &err) == 0, "compute: %s", err.msg);
    CHECK(s.d == d && s.n == n && nmu == (size_t)d && nsig == (size_t)d * d, "sizes");
    double emu = 0, esig = 0, msig = 0, asym = 0;
    for (int i = 0; i < d; i++) emu = fmax(emu, fabs(s.mu[i] - mu[i]) / (fabs(mu[i]) + 1e-3));
    for (size_t i = 0; i < nsig; i++) esig = fmax(esig, fabs(s.sigma[i] - sig[i])), msig = fmax(msig, fabs(sig[i]));
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) asym = fmax(asym, fabs(s.sigma[i * d + j] - s.sigma[j * d + i]));
    printf("  mean rel err %.2e, cov max abs err %.2e (max |cov| %.3g), asymmetry %.1e\n", emu, esig, msig, asym);
    CHECK(emu < 1e-12, "mean vs numpy: %.3e", emu);
    CHECK(esig < 1e-12 * msig, "cov vs numpy: %.3e", esig);
    CHECK(asym == 0, "sigma exactly symmetric: %.3e", asym);
    stats_fid_free(&s);
    CHECK(s.mu == NULL && s.sigma == NULL, "free zeroes");
    stats_fid_free(&s);
    free(x), free(mu), free(sig);
    st_close(&f);
}

static void test_fid_fixtures(void) {
    static const char *cases[] = {"fid_d64_n300", "fid_d64_n30_n200", "fid_d128_n60", "fid_d256_n100",
                                  "fid_d256_n400", "fid_d256_n100_same"};
    st_file f = fx_open(FIXTURE);
    double worst_ref = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char nm[128];
        long long n1, n2;
        int d1, d2;
        snprintf(nm, sizeof nm, "%s.x1", cases[c]);
        float *x1 = fx_rows(&f, nm, &n1, &d1);
        snprintf(nm, sizeof nm, "%s.x2", cases[c]);
        float *x2 = fx_rows(&f, nm, &n2, &d2);
        snprintf(nm, sizeof nm, "%s.fid_ref", cases[c]);
        double ref = fx_scalar(&f, nm);
        snprintf(nm, sizeof nm, "%s.fid_exact", cases[c]);
        double exact = fx_scalar(&f, nm);
        snprintf(nm, sizeof nm, "%s.scale", cases[c]);
        double scale = fx_scalar(&f, nm);

        fid_stats a, b;
        err_t err;
        double fid = NAN;
        CHECK(stats_fid_compute(&a, x1, n1, d1, &err) == 0, "%s: %s", cases[c], err.msg);
        CHECK(stats_fid_compute(&b, x2, n2, d2, &err) == 0, "%s: %s", cases[c], err.msg);
        CHECK(stats_fid_distance(&fid, &a, &b, &err) == 0, "%s: %s", cases[c], err.msg);
        /* Relative to the FID, or to ||dmu||^2 + tr S1 + tr S2 where the FID is ~0 (identical sets). */
        double den = fabs(ref) > 1e-3 * scale ? fabs(ref) : scale;
        double rref = fabs(fid - ref) / den, rexact = fabs(fid - exact) / den;
        worst_ref = fmax(worst_ref, rref);
        printf("  %-20s d=%-4d n=%lld,%lld  fid %.10g  pytorch-fid %.10g (rel %.2e)  exact %.10g (rel %.2e)\n",
               cases[c], d1, n1, n2, fid, ref, rref, exact, rexact);
        CHECK(rref <= 1e-5, "%s: vs pytorch-fid rel %.3e", cases[c], rref);
        CHECK(rexact <= 1e-10, "%s: vs exact rel %.3e", cases[c], rexact);
        stats_fid_free(&a), stats_fid_free(&b);
        free(x1), free(x2);
    }
    printf("  worst relative difference to pytorch-fid: %.2e\n", worst_ref);
    st_close(&f);
}

/* ---- FID closed forms: each fails if tr (S1 S2)^{1/2} is computed wrongly --- */

static fid_stats make_stats(int d) {
    fid_stats s = {d, 2, calloc(d, sizeof(double)), calloc((size_t)d * d, sizeof(double))};
    return s;
}

static void test_fid_closed_forms(void) {
    err_t err;
    double fid;
    uint64_t z = 12345;
#define UNIF() ((double)((z = z * 6364136223846793005ull + 1442695040888963407ull) >> 11) * 0x1.0p-53)

    /* S1 = S2 (a full-rank covariance of random features): FID = ||mu1 - mu2||^2. */
    int d = 40, n = 100;
    float *x = malloc(sizeof(float) * n * d);
    for (int i = 0; i < n * d; i++) x[i] = (float)(UNIF() * 2 - 1 + (i % d) * 0.01);
    fid_stats a, b;
    CHECK(stats_fid_compute(&a, x, n, d, &err) == 0, "%s", err.msg);
    CHECK(stats_fid_compute(&b, x, n, d, &err) == 0, "%s", err.msg);
    double dmu = 0, tr = 0;
    for (int i = 0; i < d; i++) {
        double t = 0.1 * UNIF();
        b.mu[i] += t, dmu += t * t, tr += a.sigma[i * d + i];
    }
    CHECK(stats_fid_distance(&fid, &a, &b, &err) == 0, "%s", err.msg);
    printf("  S1 = S2: fid %.15g, ||dmu||^2 %.15g\n", fid, dmu);
    CHECK(fabs(fid - dmu) <= 1e-12 * (2 * tr), "S1 = S2: %.17g vs %.17g", fid, dmu);
    stats_fid_free(&a), stats_fid_free(&b);

    /* Diagonal: FID = ||dmu||^2 + sum (sqrt a_i - sqrt b_i)^2 (some a_i, b_i zero). */
    d = 30;
    a = make_stats(d), b = make_stats(d);
    double want = 0;
    for (int i = 0; i < d; i++) {
        double ai = i % 7 == 0 ? 0 : 4 * UNIF(), bi = i % 5 == 0 ? 0 : 4 * UNIF();
        a.sigma[i * d + i] = ai, b.sigma[i * d + i] = bi;
        a.mu[i] = UNIF(), b.mu[i] = UNIF();
        want += (a.mu[i] - b.mu[i]) * (a.mu[i] - b.mu[i]) + (sqrt(ai) - sqrt(bi)) * (sqrt(ai) - sqrt(bi));
    }
    CHECK(stats_fid_distance(&fid, &a, &b, &err) == 0, "%s", err.msg);
    printf("  diagonal: fid %.15g, closed form %.15g\n", fid, want);
    CHECK(fabs(fid - want) <= 1e-12 * want, "diagonal: %.17g vs %.17g", fid, want);
    stats_fid_free(&a), stats_fid_free(&b);

    /* 2 x 2, not commuting: tr sqrt(P) = sqrt(tr P + 2 sqrt(det P)) for P = S1 S2. */
    a = make_stats(2), b = make_stats(2);
    double s1[4] = {2.0, 0.7, 0.7, 1.0}, s2[4] = {0.5, -0.3, -0.3, 3.0};
    memcpy(a.sigma, s1, sizeof s1), memcpy(b.sigma, s2, sizeof s2);
    double trp = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
    double detp = (s1[0] * s1[3] - s1[1] * s1[2]) * (s2[0] * s2[3] - s2[1] * s2[2]);
    want = s1[0] + s1[3] + s2[0] + s2[3] - 2 * sqrt(trp + 2 * sqrt(detp));
    CHECK(stats_fid_distance(&fid, &a, &b, &err) == 0, "%s", err.msg);
    printf("  2x2: fid %.15g, closed form %.15g\n", fid, want);
    CHECK(fabs(fid - want) <= 1e-13 * 7, "2x2: %.17g vs %.17g", fid, want);
    stats_fid_free(&a), stats_fid_free(&b);

    /* Rank one: S1 = u u^T, so tr (S1 S2)^{1/2} = sqrt(u^T S2 u); S2 = G G^T + I. */
    d = 50;
    a = make_stats(d), b = make_stats(d);
    double *u = malloc(sizeof(double) * d), *g = malloc(sizeof(double) * d * d), us2u = 0, tr1 = 0, tr2 = 0;
    for (int i = 0; i < d; i++) u[i] = UNIF() - 0.5, tr1 += u[i] * u[i];
    for (int i = 0; i < d * d; i++) g[i] = (UNIF() - 0.5) / sqrt(d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double v = i == j;
            for (int l = 0; l < d; l++) v += g[i * d + l] * g[j * d + l];
            b.sigma[i * d + j] = v;
            a.sigma[i * d + j] = u[i] * u[j];
        }
    for (int i = 0; i < d; i++) {
        tr2 += b.sigma[i * d + i];
        for (int j = 0; j < d; j++) us2u += u[i] * b.sigma[i * d + j] * u[j];
    }
    want = tr1 + tr2 - 2 * sqrt(us2u);
    CHECK(stats_fid_distance(&fid, &a, &b, &err) == 0, "%s", err.msg);
    printf("  rank one: fid %.15g, closed form %.15g\n", fid, want);
    CHECK(fabs(fid - want) <= 1e-12 * (tr1 + tr2), "rank one: %.17g vs %.17g", fid, want);
    stats_fid_free(&a), stats_fid_free(&b);
    free(u), free(g), free(x);
#undef UNIF
}

/* ---- Inception Score ------------------------------------------------------ */

static void test_inception_score(void) {
    static const char *cases[] = {"is_a", "is_b", "is_c"};
    st_file f = fx_open(FIXTURE);
    err_t err;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char nm[128];
        long long n;
        int k;
        snprintf(nm, sizeof nm, "%s.logits", cases[c]);
        float *z = fx_rows(&f, nm, &n, &k);
        snprintf(nm, sizeof nm, "%s.splits", cases[c]);
        int *sp = fx_raw(&f, nm, ST_I32, NULL);
        snprintf(nm, sizeof nm, "%s.expected", cases[c]);
        double *e = fx_raw(&f, nm, ST_F64, NULL), m = NAN, s = NAN;
        CHECK(stats_inception_score(&m, &s, z, n, k, sp[0], &err) == 0, "%s: %s", cases[c], err.msg);
        printf("  %s n=%lld k=%d splits=%d: IS %.12g +- %.6g, numpy %.12g +- %.6g\n", cases[c], n, k, sp[0], m, s,
               e[0], e[1]);
        CHECK(fabs(m - e[0]) <= 1e-10 * e[0], "%s mean %.15g vs %.15g", cases[c], m, e[0]);
        CHECK(fabs(s - e[1]) <= 1e-10 * e[0], "%s std %.15g vs %.15g", cases[c], s, e[1]);
        free(z), free(sp), free(e);
    }
    st_close(&f);

    /* One row per split: p_i = p(y|x), every KL is 0, every score exactly 1. */
    float z[3 * 4] = {1, 2, 3, 4, -5, 0, 5, 9, 0.5f, 0.5f, 0.5f, 0.5f};
    double m, s;
    CHECK(stats_inception_score(&m, &s, z, 3, 4, 3, &err) == 0, "%s", err.msg);
    CHECK(m == 1.0 && s == 0.0, "one row per split: %.17g +- %.3g", m, s);
    /* Very spread logits (p(y|x) = 0 in double) stay finite. */
    float w[2 * 3] = {0, -1e30f, 1e30f, 3e4f, -3e4f, 0};
    CHECK(stats_inception_score(&m, &s, w, 2, 3, 1, &err) == 0, "%s", err.msg);
    CHECK(fabs(m - 2.0) < 1e-12 && s == 0, "two one-hot rows: IS %.17g (want 2)", m);
}

/* ---- precision / recall --------------------------------------------------- */

static void test_precision_recall(void) {
    static const char *cases[] = {"pr_a", "pr_b"};
    st_file f = fx_open(FIXTURE);
    err_t err;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char nm[128];
        long long nr, nf;
        int d, d2;
        size_t nk;
        snprintf(nm, sizeof nm, "%s.real", cases[c]);
        float *real = fx_rows(&f, nm, &nr, &d);
        snprintf(nm, sizeof nm, "%s.fake", cases[c]);
        float *fake = fx_rows(&f, nm, &nf, &d2);
        snprintf(nm, sizeof nm, "%s.k", cases[c]);
        int *ks = fx_raw(&f, nm, ST_I32, &nk);
        snprintf(nm, sizeof nm, "%s.expected", cases[c]);
        double *e = fx_raw(&f, nm, ST_F64, NULL);
        for (size_t q = 0; q < nk; q++) {
            double p = NAN, r = NAN;
            CHECK(stats_precision_recall(&p, &r, real, nr, fake, nf, d, ks[q], &err) == 0, "%s", err.msg);
            printf("  %s nr=%lld nf=%lld d=%d k=%d: P %.6f R %.6f, numpy P %.6f R %.6f\n", cases[c], nr, nf, d, ks[q],
                   p, r, e[2 * q], e[2 * q + 1]);
            CHECK(p == e[2 * q] && r == e[2 * q + 1], "%s k=%d", cases[c], ks[q]);
        }
        /* The real set against itself: every row is inside its own sphere. */
        double p, r;
        CHECK(stats_precision_recall(&p, &r, real, nr, real, nr, d, 3, &err) == 0, "%s", err.msg);
        CHECK(p == 1.0 && r == 1.0, "%s against itself: P %.6f R %.6f", cases[c], p, r);
        free(real), free(fake), free(ks), free(e);
    }
    st_close(&f);
}

/* The same precision and recall at 1 and 3 threads, on tiles that do not divide the sets. */
static void test_precision_recall_threads(void) {
    long long nr = 1300, nf = 1100;
    int d = 24;
    float *real = malloc(sizeof(float) * nr * d), *fake = malloc(sizeof(float) * nf * d);
    uint64_t z = 99;
    for (long long i = 0; i < nr * d; i++) real[i] = (float)((z = z * 6364136223846793005ull + 1) >> 40) * 0x1.0p-24f;
    for (long long i = 0; i < nf * d; i++) fake[i] = (float)((z = z * 6364136223846793005ull + 1) >> 40) * 0x1.0p-24f + 0.25f;
    int saved = omp_get_max_threads();
    double p[2], r[2];
    err_t err;
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t ? 3 : 1);
        CHECK(stats_precision_recall(&p[t], &r[t], real, nr, fake, nf, d, 4, &err) == 0, "%s", err.msg);
    }
    omp_set_num_threads(saved);
    printf("  1 thread: P %.6f R %.6f; 3 threads: P %.6f R %.6f\n", p[0], r[0], p[1], r[1]);
    CHECK(p[0] == p[1] && r[0] == r[1], "thread count changed the result");
    CHECK(p[0] > 0 && p[0] < 1 && r[0] > 0 && r[0] < 1, "a non-trivial case");
    free(real), free(fake);
}

/* ---- errors --------------------------------------------------------------- */

static void test_errors(void) {
    err_t err;
    fid_stats a, b;
    double fid, m, s, p, r;
    float x[20 * 4];
    for (int i = 0; i < 80; i++) x[i] = (float)(i % 7) - (float)(i % 3);

    CHECK(stats_fid_compute(&a, x, 1, 4, &err) == -1 && strstr(err.msg, "at least 2"), "n < 2: %s", err.msg);
    x[17 * 4 + 2] = NAN;
    CHECK(stats_fid_compute(&a, x, 20, 4, &err) == -1 && strstr(err.msg, "feature row 17 is not finite"),
          "NaN row: %s", err.msg);
    CHECK(a.mu == NULL && a.sigma == NULL, "zeroed on failure");
    x[17 * 4 + 2] = INFINITY;
    CHECK(stats_fid_compute(&a, x, 20, 4, &err) == -1 && strstr(err.msg, "row 17"), "inf row: %s", err.msg);
    x[17 * 4 + 2] = 1;

    CHECK(stats_fid_compute(&a, x, 20, 4, &err) == 0, "%s", err.msg);
    CHECK(stats_fid_compute(&b, x, 10, 8, &err) == 0, "%s", err.msg);
    CHECK(stats_fid_distance(&fid, &a, &b, &err) == -1 && strstr(err.msg, "dimensions differ (4 and 8)"), "d: %s", err.msg);
    stats_fid_free(&b);
    CHECK(stats_fid_compute(&b, x, 20, 4, &err) == 0, "%s", err.msg);
    b.sigma[5] = NAN;
    CHECK(stats_fid_distance(&fid, &a, &b, &err) == -1 && strstr(err.msg, "second statistics: sigma[1, 1]"), "sigma: %s",
          err.msg);
    stats_fid_free(&b);
    CHECK(stats_fid_distance(&fid, &a, &b, &err) == -1 && strstr(err.msg, "empty"), "empty: %s", err.msg);
    stats_fid_free(&a);

    CHECK(stats_inception_score(&m, &s, x, 3, 4, 5, &err) == -1 && strstr(err.msg, "splits"), "splits: %s", err.msg);
    x[2 * 4 + 1] = -INFINITY;
    CHECK(stats_inception_score(&m, &s, x, 20, 4, 2, &err) == -1 && strstr(err.msg, "logit row 2 is not finite"),
          "inf logit: %s", err.msg);
    x[2 * 4 + 1] = 0;

    CHECK(stats_precision_recall(&p, &r, x, 3, x, 10, 4, 3, &err) == -1 && strstr(err.msg, "more than k = 3"), "k: %s",
          err.msg);
    x[9 * 4] = NAN;
    CHECK(stats_precision_recall(&p, &r, x, 8, x + 40, 10, 4, 3, &err) == 0, "a NaN outside both sets: %s", err.msg);
    CHECK(stats_precision_recall(&p, &r, x, 20, x, 20, 4, 3, &err) == -1 && strstr(err.msg, "real feature row 9"),
          "NaN real: %s", err.msg);
    CHECK(stats_precision_recall(&p, &r, x + 40, 10, x, 20, 4, 3, &err) == -1 && strstr(err.msg, "fake feature row 9"),
          "NaN fake: %s", err.msg);
}

TEST_MAIN(test_mean_cov, test_fid_fixtures, test_fid_closed_forms, test_inception_score, test_precision_recall,
          test_precision_recall_threads, test_errors)
