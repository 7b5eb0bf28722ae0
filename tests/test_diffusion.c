/* test_diffusion.c -- the schedule tables, q_sample, L_simple, the x0
 * prediction (diffusion_x0_from_eps, clip, dynamic thresholding), DDPM / DDIM steps,
 * timestep lists and bits/dim terms against the PyTorch reference
 * (tests/fixtures/diffusion.safetensors, written by tools/fixtures_diffusion.py;
 * see tools/FIXTURES_DIFFUSION.md), the scheduler values of docs/diffusers.md
 * ("Reference values"), and every user error of the scheduler config and timestep API.
 * Runs from the repository root.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "diffusion/diffusion.h"
#include "ops/ops.h"
#include "diffusion/schedule.h"
#include "io/safetensors.h"

#define FIXTURE "tests/fixtures/diffusion.safetensors"
#define NX 384 /* the fixture images: [2, 3, 8, 8] */

static int open_fixture(st_file *f) {
    err_t err;
    if (st_open(f, FIXTURE, &err)) {
        CHECK(0, "cannot open fixture: %s", err.msg);
        return -1;
    }
    return 0;
}

/* Loads tensor name and checks it has n elements; NULL (and a failed check) otherwise. */
static float *get(st_file *f, const char *name, size_t n) {
    err_t err;
    size_t got = 0;
    float *p = st_load_f32(f, name, -1, NULL, &got, &err);
    CHECK(p != NULL, "%s", err.msg);
    if (p && got != n) {
        CHECK(got == n, "fixture %s has %zu elements, expected %zu", name, got, n);
        free(p);
        return NULL;
    }
    return p;
}

/* Compares the fixture tensor name ([n]) with got. */
static void cmp(st_file *f, const char *name, const float *got, size_t n, double atol, double rtol) {
    float *ref = get(f, name, n);
    if (ref) check_close(name, got, ref, n, atol, rtol);
    free(ref);
}

/* The x0 the steps take, as the samplers make it from eps: diffusion_x0_from_eps, then
 * clipped to +-clip_range when the schedule has clip_sample (the fixtures'
 * DDPM/DDIM steps clip unless named "noclip"). */
static void pred_x0(const schedule *s, int t, const float *eps, const float *xt, float *x0, size_t n) {
    diffusion_x0_from_eps(s, t, eps, xt, x0, n);
    if (s->clip_sample) diffusion_x0_clip(x0, n, s->clip_range);
}

static void check_tables(st_file *f, const char *prefix, const schedule *s) {
    char name[128];
    const struct { const char *key; const float *v; double atol, rtol; } tab[] = {
        {"betas", s->betas, 0, 1e-6},
        {"alphas_cumprod", s->alphas_cumprod, 0, 1e-6},
        {"sqrt_alphas_cumprod", s->sqrt_ac, 0, 1e-6},
        {"sqrt_one_minus_alphas_cumprod", s->sqrt_1m_ac, 0, 1e-6},
        {"posterior_variance", s->post_var, 1e-12, 1e-5},
        {"posterior_log_variance_clipped", s->post_log_var_clipped, 1e-6, 1e-6},
        {"posterior_mean_coef1", s->post_c0, 1e-9, 1e-5},
        {"posterior_mean_coef2", s->post_ct, 1e-9, 1e-5},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, tab[i].key);
        cmp(f, name, tab[i].v, (size_t)s->T, tab[i].atol, tab[i].rtol);
    }
}

static void test_tables(void) {
    st_file f = {0};
    if (open_fixture(&f)) return;
    schedule s;
    err_t err;
    CHECK(!schedule_init(&s, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    check_tables(&f, "linear", &s);
    CHECK(s.betas[0] == 0.0001f && s.betas[999] == 0.02f, "linear ends %.9g %.9g", (double)s.betas[0],
          (double)s.betas[999]);
    /* bit-exact with torch.linspace (CPU kernel) on this fixture */
    float *b = get(&f, "linear.betas", 1000);
    if (b) CHECK(!memcmp(b, s.betas, sizeof(float) * 1000), "linear betas differ from torch.linspace bits");
    free(b);
    schedule_free(&s);

    CHECK(!schedule_init(&s, "cosine", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    CHECK(!strcmp(s.kind, "squaredcos_cap_v2"), "alias stored as %s", s.kind);
    check_tables(&f, "cosine", &s);
    schedule_free(&s);

    CHECK(!schedule_init(&s, "scaled_linear", 100, 0.00085, 0.012, &err), "%s", err.msg);
    check_tables(&f, "scaled_linear_100", &s);
    schedule_free(&s);
    st_close(&f);

    /* T = 4000 also ends exactly on beta_end */
    CHECK(!schedule_init(&s, "linear", 4000, 0.0001, 0.02, &err), "%s", err.msg);
    CHECK(s.betas[3999] == 0.02f, "T=4000 last beta %.9g", (double)s.betas[3999]);
    schedule_free(&s);
}

/* docs/diffusers.md, "Reference values" (float64, 6 significant digits). */
static void test_section6_table(void) {
    schedule s;
    err_t err;
    CHECK(!schedule_init(&s, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    const struct { int t; double ab, beta, c0, ct, sig_small, sig_large; } row[] = {
        {999, 4.03583e-05, 0.02, 1.28351e-04, 0.989949, 0.1414213, 0.1414214},
        {500, 0.0777967, 0.01005996, 3.05806e-03, 0.994104, 0.1002564, 0.1002994},
        {1, 0.999780, 1.1992e-04, 0.545292, 0.454708, 7.38457e-03, 1.09508e-02},
        {0, 0.9999, 1e-4, 1.0, 0.0, 0, 0},
    };
    for (size_t i = 0; i < sizeof row / sizeof row[0]; i++) {
        int t = row[i].t;
        /* 6-digit references: rtol 2e-5. The t = 1 mean coefficients divide by
         * 1 - alphabar_1 = 2.2e-4, where the float32 alphas_cumprod diffusers
         * (and we) use carries ~1.5e-4 relative rounding: rtol 3e-4 there. */
        double rt = t == 1 ? 3e-4 : 2e-5;
        double got[6] = {s.alphas_cumprod[t], s.betas[t], s.post_c0[t], s.post_ct[t], sqrt(s.post_var[t]),
                         sqrt(s.betas[t])};
        double ref[6] = {row[i].ab, row[i].beta, row[i].c0, row[i].ct, row[i].sig_small, row[i].sig_large};
        int ncol = t == 0 ? 4 : 6;
        for (int k = 0; k < ncol; k++)
            CHECK(fabs(got[k] - ref[k]) <= 1e-9 + rt * fabs(ref[k]), "t=%d column %d: got %.8g ref %.8g", t, k,
                  got[k], ref[k]);
    }
    /* the DDPM step's own sigma (fixed_small / fixed_large) at t = 500: x_prev - mean = sigma * z */
    float xt = 0.3f, e = -0.2f, z = 1.0f, x0, out1, out0;
    pred_x0(&s, 500, &e, &xt, &x0, 1);
    diffusion_ddpm_step(&s, 500, 499, &x0, &xt, &z, &out1, 1);
    diffusion_ddpm_step(&s, 500, 499, &x0, &xt, NULL, &out0, 1);
    CHECK(fabs((out1 - out0) - 0.1002564) < 2e-6, "fixed_small sigma(500) = %.8g", (double)(out1 - out0));
    s.variance_type = SCHED_FIXED_LARGE;
    diffusion_ddpm_step(&s, 500, 499, &x0, &xt, &z, &out1, 1);
    CHECK(fabs((out1 - out0) - 0.1002994) < 2e-6, "fixed_large sigma(500) = %.8g", (double)(out1 - out0));
    schedule_free(&s);
}

static void test_q_sample_and_loss(void) {
    schedule s;
    err_t err;
    CHECK(!schedule_init(&s, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    st_file f = {0};
    if (open_fixture(&f)) {
        schedule_free(&s);
        return;
    }
    float *x0 = get(&f, "x0", NX), *eps = get(&f, "eps", NX), *ep = get(&f, "eps_pred", NX);
    float *loss = get(&f, "l_simple.t300", 1);
    float xt[NX], zero[NX] = {0};
    if (x0 && eps && ep && loss) {
        diffusion_q_sample(&s, 300, x0, eps, xt, NX);
        cmp(&f, "q_sample.t300", xt, NX, 1e-6, 1e-6);
        float l = (float)ops_mse_loss(NULL, ep, eps, NX);
        check_close("l_simple.t300", &l, loss, 1, 0, 1e-6);
        /* fixture-free: eps = 0 gives exactly sqrt(alphabar_t) x0, at every few t */
        for (int t = 0; t < 1000; t += 111) {
            diffusion_q_sample(&s, t, x0, zero, xt, NX);
            int bad = 0;
            for (int i = 0; i < NX; i++) bad += xt[i] != s.sqrt_ac[t] * x0[i];
            CHECK(bad == 0, "q_sample(t=%d, eps=0) != sqrt_ac*x0 at %d elements", t, bad);
        }
        /* in place: xt may be the eps buffer */
        float buf[NX];
        memcpy(buf, eps, sizeof buf);
        diffusion_q_sample(&s, 300, x0, buf, buf, NX);
        cmp(&f, "q_sample.t300", buf, NX, 1e-6, 1e-6);
    }
    free(x0), free(eps), free(ep), free(loss);
    st_close(&f);
    schedule_free(&s);
}

/* diffusion_x0_from_eps is diffusers' pred_original_sample (xt - sqrt(1-ab) eps) / sqrt(ab),
 * unclipped, also in place; diffusion_x0_clip clamps to +-r. */
static void test_x0_from_eps(void) {
    schedule s;
    err_t err;
    CHECK(!schedule_init(&s, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    st_file f = {0};
    if (open_fixture(&f)) {
        schedule_free(&s);
        return;
    }
    float *xt = get(&f, "step.xt", NX), *eps = get(&f, "step.eps", NX);
    float x0[NX], buf[NX];
    if (xt && eps) {
        const int ts[4] = {0, 1, 500, 999};
        for (int k = 0; k < 4; k++) {
            int t = ts[k];
            double ab = s.alphas_cumprod[t];
            diffusion_x0_from_eps(&s, t, eps, xt, x0, NX);
            double maxerr = 0;
            for (int i = 0; i < NX; i++) {
                double ref = ((double)xt[i] - sqrt(1.0 - ab) * (double)eps[i]) / sqrt(ab);
                double mag = (fabs(xt[i]) + sqrt(1.0 - ab) * fabs(eps[i])) / sqrt(ab); /* the terms' size */
                double e = fabs(x0[i] - ref) / (mag + 1e-30);
                maxerr = e > maxerr ? e : maxerr;
            }
            /* float arithmetic, a few roundings, relative to the terms (the
             * difference cancels: at t = 999 x0 = 157 (xt - 0.99998 eps)) */
            CHECK(maxerr < 1e-6, "x0_from_eps(t=%d) vs the formula: max rel err %.3g", t, maxerr);
            memcpy(buf, xt, sizeof buf);
            diffusion_x0_from_eps(&s, t, eps, buf, buf, NX);
            CHECK(!memcmp(buf, x0, sizeof buf), "x0_from_eps(t=%d) in place on xt differs", t);
        }
        /* the fixture's unclipped prediction, and its clip */
        diffusion_x0_from_eps(&s, 500, eps, xt, x0, NX);
        cmp(&f, "ddpm.fixed_small.noclip.t500.x0_pred", x0, NX, 1e-5, 1e-5);
        diffusion_x0_clip(x0, NX, 1.0f);
        cmp(&f, "ddpm.fixed_small.t500.x0_pred", x0, NX, 1e-5, 1e-5);
    }
    float v[5] = {-3.0f, -0.5f, 0.0f, 2.5f, 2.4f};
    diffusion_x0_clip(v, 5, 2.4f);
    CHECK(v[0] == -2.4f && v[1] == -0.5f && v[2] == 0.0f && v[3] == 2.4f && v[4] == 2.4f,
          "x0_clip(2.4): %g %g %g %g %g", (double)v[0], (double)v[1], (double)v[2], (double)v[3], (double)v[4]);
    free(xt), free(eps);
    st_close(&f);
    schedule_free(&s);
}

/* Runs diffusion_x0_threshold on a copy of x[n] and checks the scale s and the result
 * against hand-computed values (relative tolerance 1e-6). */
static void expect_threshold(const char *what, const float *x, size_t n, float ratio, float smax, double want_s,
                             const double *want) {
    float y[16], scr[16];
    ERR_ASSERT(n <= 16);
    memcpy(y, x, n * sizeof *x);
    float got = diffusion_x0_threshold(y, n, ratio, smax, scr);
    CHECK(fabs(got - want_s) <= 1e-6 * want_s, "%s: s = %.9g, expected %.9g", what, (double)got, want_s);
    for (size_t i = 0; i < n; i++)
        CHECK(fabs(y[i] - want[i]) <= 1e-6 * (fabs(want[i]) + 1e-30), "%s: x[%zu] = %.9g, expected %.9g", what, i,
              (double)y[i], want[i]);
}

/* torch.quantile of |x0| over the image, clamped to [1, smax], sorted by a
 * plain qsort: an independent order statistic for the quickselect. */
static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}
static float ref_quantile(const float *x, size_t n, float ratio) {
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = fabsf(x[i]);
    qsort(a, n, sizeof *a, cmp_float);
    float rank = ratio * (float)(n - 1);
    size_t lo = (size_t)rank, hi = (size_t)ceilf(rank);
    float w = rank - (float)lo, lo_v = a[lo], hi_v = a[hi < n ? hi : n - 1];
    free(a);
    return w < 0.5f ? lo_v + w * (hi_v - lo_v) : hi_v - (hi_v - lo_v) * (1.0f - w);
}

/* Dynamic thresholding: s = torch.quantile(|x0|, ratio) (rank ratio*(n-1) in
 * float, linear interpolation), clamped to [1, smax]; x0 = clamp(x0, +-s) / s.
 * Hand-computed values, then the quickselect against a sort on larger images
 * with many ties. */
/* The prediction types (issue 24): for each of epsilon, sample and v, the
 * target of (x0, eps) read back by diffusion_x0_from_output and
 * diffusion_eps_from_output gives x0 and eps again (to float rounding, which
 * 1/sqrt(ab) amplifies at large t), at small and large t; DPM++'s x0 agrees
 * with diffusion_x0_from_output; and the three outputs differ. */
static void test_predictions(void) {
    schedule s;
    err_t err;
    CHECK(schedule_init(&s, "linear", 1000, 1e-4, 0.02, &err) == 0, "%s", err.msg);
    enum { n = 64 };
    float x0[n], eps[n], xt[n], target[3][n], back[n];
    for (int i = 0; i < n; i++) x0[i] = (float)sin(0.7 * i), eps[i] = (float)cos(1.3 * i + 0.2);
    const int ts[] = {0, 10, 500, 999};
    for (int k = 0; k < 4; k++) {
        int t = ts[k];
        diffusion_q_sample(&s, t, x0, eps, xt, n);
        double tol = 2e-6 / sqrt((double)s.alphas_cumprod[t]);
        for (int p = 0; p < 3; p++) {
            s.prediction = p;
            diffusion_target(&s, t, x0, eps, target[p], n);
            diffusion_x0_from_output(&s, t, target[p], xt, back, n);
            double e0 = 0, e1 = 0, e2 = 0;
            for (int i = 0; i < n; i++) e0 = fmax(e0, fabs(back[i] - x0[i]));
            diffusion_eps_from_output(&s, t, target[p], xt, back, n);
            for (int i = 0; i < n; i++) e1 = fmax(e1, fabs(back[i] - eps[i]));
            diffusion_dpm_x0(diffusion_dpm_sigma(&s, t), p, target[p], xt, back, n);
            for (int i = 0; i < n; i++) e2 = fmax(e2, fabs(back[i] - x0[i]));
            CHECK(e0 < tol && e1 < 2e-5 && e2 < 4 * tol, "%s at t %d: x0 off by %.2e, eps by %.2e, DPM's x0 by %.2e",
                  schedule_prediction_name(p), t, e0, e1, e2);
        }
        double d01 = 0, d02 = 0;
        for (int i = 0; i < n; i++)
            d01 = fmax(d01, fabs(target[0][i] - target[1][i])), d02 = fmax(d02, fabs(target[0][i] - target[2][i]));
        CHECK(d01 > 0.1 && d02 > 1e-3, "t %d: the targets differ (%.2e, %.2e)", t, d01, d02);
    }
    char *j = schedule_to_json(&s); /* v: written, and read back */
    schedule r;
    CHECK(j && strstr(j, "\"v_prediction\"") && schedule_from_json(&r, j, &err) == 0 && r.prediction == SCHED_PRED_V,
          "prediction_type round trip: %s", err.msg);
    schedule_free(&r);
    free(j);
    CHECK(schedule_from_json(&r, "{\"prediction_type\": \"velocity\"}", &err) == -1 &&
              strstr(err.msg, "prediction_type"), "an unknown prediction_type: %s", err.msg);
    schedule_free(&s);
}

/* diffusion_vlb_term's gradient against central finite differences of its
 * value, for every value of v, at t = 0 (the decoder, with pixels at both
 * edges and inside) and t > 0 (the KL); a wrong gradient (scaled by 1.1) is
 * caught. Also: v = -1 everywhere gives the fixed_small bound term. */
static void test_vlb_grad(void) {
    schedule s;
    err_t err;
    CHECK(schedule_init(&s, "linear", 1000, 1e-4, 0.02, &err) == 0, "%s", err.msg);
    enum { D = 24 };
    float x0[D], xt[D], x0p[D], v[D], dv[D], scr[2 * D], eps[D];
    for (int j = 0; j < D; j++) {
        x0[j] = j == 0 ? -1.0f : j == 1 ? 1.0f : (float)(((j * 37) % 255) / 127.5 - 1.0);
        eps[j] = (float)sin(1.7 * j);
        v[j] = (float)(0.9 * cos(0.9 * j));
    }
    const int ts[] = {0, 3, 400};
    for (int k = 0; k < 3; k++) {
        int t = ts[k];
        diffusion_q_sample(&s, t, x0, eps, xt, D);
        for (int j = 0; j < D; j++) x0p[j] = x0[j] + 0.02f * (float)sin(3.1 * j); /* a near miss */
        diffusion_vlb_term(&s, t, x0, xt, x0p, v, dv, D, scr);
        double fd[D], top = 0, worst = 0, worst_wrong = 0;
        for (int j = 0; j < D; j++) {
            float keep = v[j], tmp[D];
            const float h = 1e-3f;
            v[j] = keep + h;
            double up = diffusion_vlb_term(&s, t, x0, xt, x0p, v, tmp, D, scr);
            v[j] = keep - h;
            double down = diffusion_vlb_term(&s, t, x0, xt, x0p, v, tmp, D, scr);
            v[j] = keep;
            fd[j] = (up - down) / (2.0 * h);
            top = fmax(top, fabs(fd[j]));
        }
        for (int j = 0; j < D; j++) { /* relative to the value, or for the smallest to 1e-3 of the largest */
            double scale = fmax(fabs(fd[j]), 1e-3 * top);
            worst = fmax(worst, fabs(dv[j] - fd[j]) / scale);
            worst_wrong = fmax(worst_wrong, fabs(1.1 * dv[j] - fd[j]) / scale);
        }
        CHECK(top > 0, "t %d: the term depends on v", t);
        CHECK(worst < 2e-3, "t %d: the bound term's gradient against finite differences: worst relative error %.2e", t,
              worst);
        CHECK(worst_wrong > 2e-2, "t %d: a gradient scaled by 1.1 is caught (%.2e)", t, worst_wrong);
    }
    /* v = -1: log sigma^2 is the clipped posterior's, the fixed_small bound term (bits per dim). */
    for (int j = 0; j < D; j++) v[j] = -1.0f;
    const int t = 400;
    diffusion_q_sample(&s, t, x0, eps, xt, D);
    double got = diffusion_vlb_term(&s, t, x0, xt, x0p, v, dv, D, scr), want = 0;
    float mq[D], mp[D];
    diffusion_posterior_mean_var(&s, t, x0, xt, mq, D);
    diffusion_posterior_mean_var(&s, t, x0p, xt, mp, D);
    for (int j = 0; j < D; j++) want += diffusion_normal_kl(mq[j], s.post_log_var_clipped[t], mp[j], s.post_log_var_clipped[t]);
    want /= D * M_LN2;
    CHECK(fabs(got - want) < 1e-12 * fmax(1.0, fabs(want)), "v = -1: the fixed_small term (%.9g, want %.9g)", got, want);
    schedule_free(&s);
}

static void test_x0_threshold(void) {
    /* |x| sorted: 0.5 1.5 2 3 4 */
    const float a[5] = {-4.0f, 3.0f, 0.5f, -2.0f, 1.5f};
    /* ratio 0.6: rank 2.4, s = 2 + 0.4 (3 - 2) = 2.4 (the lerp's w < 0.5 branch) */
    const double r06[5] = {-1, 1, 0.5 / 2.4, -2 / 2.4, 1.5 / 2.4};
    expect_threshold("ratio 0.6", a, 5, 0.6f, 10.0f, 2.4, r06);
    /* ratio 0.9: rank 3.6, s = 4 - (4 - 3) 0.4 = 3.6 (the w >= 0.5 branch) */
    const double r09[5] = {-1, 3 / 3.6, 0.5 / 3.6, -2 / 3.6, 1.5 / 3.6};
    expect_threshold("ratio 0.9", a, 5, 0.9f, 10.0f, 3.6, r09);
    /* ... with smax = 3 the scale is clamped to 3 */
    const double r09m3[5] = {-1, 1, 0.5 / 3, -2.0 / 3, 0.5};
    expect_threshold("ratio 0.9, smax 3", a, 5, 0.9f, 3.0f, 3.0, r09m3);
    /* ratio 1: the max (rank n-1 exactly, no upper neighbour) */
    const double r1[5] = {-1, 0.75, 0.125, -0.5, 0.375};
    expect_threshold("ratio 1", a, 5, 1.0f, 10.0f, 4.0, r1);
    /* a quantile below 1: s = 1, the image is only clipped to [-1, 1]
     * (|x| sorted 0.1 0.2 0.5 3, ratio 0.5: rank 1.5, q = 0.35) */
    const float b[4] = {0.1f, -0.2f, 0.5f, 3.0f};
    const double rb[4] = {0.1f, -0.2f, 0.5f, 1.0};
    expect_threshold("quantile < 1", b, 4, 0.5f, 5.0f, 1.0, rb);
    /* n = 1: s = |x| clamped to [1, smax] */
    const float c1 = -2.5f, c2 = 0.3f, c3 = 5.0f;
    const double rc1 = -1, rc2 = 0.3f, rc3 = 1;
    expect_threshold("n=1, |x| = 2.5", &c1, 1, 0.995f, 10.0f, 2.5, &rc1);
    expect_threshold("n=1, |x| = 0.3", &c2, 1, 0.995f, 10.0f, 1.0, &rc2);
    expect_threshold("n=1, |x| = 5, smax 2", &c3, 1, 0.995f, 2.0f, 2.0, &rc3);
    /* ties: |x| sorted 0 1.5 1.5 3 3 3, ratio 0.5: rank 2.5 between the tied 1.5
     * and the tied 3, s = 3 - 1.5 * 0.5 = 2.25 */
    const float d[6] = {1.5f, -3.0f, 0.0f, 3.0f, -1.5f, -3.0f};
    const double rd[6] = {1.5 / 2.25, -1, 0, 1, -1.5 / 2.25, -1};
    expect_threshold("ties", d, 6, 0.5f, 10.0f, 2.25, rd);
    /* all equal: s = 2 whatever the ratio */
    const float e[6] = {2, -2, 2, -2, 2, 2};
    const double re[6] = {1, -1, 1, -1, 1, 1};
    expect_threshold("all tied", e, 6, 0.3f, 10.0f, 2.0, re);

    /* bit for bit with torch.quantile (values from torch 1.13): its lerp is
     * a + w (b - a) for w < 0.5 but b - (b - a) (1 - w) above, which here
     * differs from the first form by an ulp (4.4000001 vs 4.3999996) */
    {
        float y[5] = {-2.375f, -4.875f, 2.5f}, scr[5];
        float sc = diffusion_x0_threshold(y, 3, 0.9f, 10.0f, scr);
        CHECK(sc == 0x1.19999ap+2f && y[0] == -0.5397726893424988f && y[1] == -1.0f && y[2] == 0.5681818127632141f,
              "torch.quantile bits (w = 0.8): s = %a, x = %.9g %.9g %.9g", (double)sc, (double)y[0], (double)y[1],
              (double)y[2]);
        float z[5] = {1.875f, -4.125f, -2.0f, -1.25f, 2.5f};
        sc = diffusion_x0_threshold(z, 5, 0.995f, 10.0f, scr);
        CHECK(sc == 0x1.05eb86p+2f && z[0] == 0.4581551253795624f && z[1] == -1.0f && z[2] == -0.488698810338974f &&
                  z[3] == -0.30543676018714905f && z[4] == 0.6108735203742981f,
              "torch.quantile bits (w = 0.98): s = %a", (double)sc);
    }

    /* smax = 1 is clip_sample to [-1, 1], bit for bit */
    enum { N = 1000 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *scr = malloc(N * sizeof *scr);
    uint32_t st = 12345;
    for (int i = 0; i < N; i++) {
        st = st * 1664525u + 1013904223u;
        x[i] = ((float)(st >> 8) / 16777216.0f - 0.5f) * 6.0f; /* uniform in [-3, 3) */
    }
    memcpy(y, x, N * sizeof *x);
    float sc = diffusion_x0_threshold(y, N, 0.995f, 1.0f, scr);
    diffusion_x0_clip(x, N, 1.0f);
    CHECK(sc == 1.0f && !memcmp(x, y, N * sizeof *x), "smax = 1 differs from x0_clip(1) (s = %g)", (double)sc);

    /* the quickselect against a sort, on values with many ties (multiples of
     * 0.25 in [-4, 4]) and on distinct ones, for several sizes and ratios */
    const float ratios[5] = {0.995f, 0.5f, 0.9f, 0.01f, 1.0f};
    const size_t sizes[4] = {2, 7, 48, N};
    int bad = 0;
    for (int tie = 0; tie < 2; tie++)
        for (int si = 0; si < 4; si++)
            for (int ri = 0; ri < 5; ri++) {
                size_t n = sizes[si];
                for (size_t i = 0; i < n; i++) {
                    st = st * 1664525u + 1013904223u;
                    float u = (float)(st >> 8) / 16777216.0f; /* [0, 1) */
                    x[i] = tie ? (float)((int)(u * 33.0f) - 16) * 0.25f : (u - 0.5f) * 10.0f;
                }
                memcpy(y, x, n * sizeof *x);
                float q = ref_quantile(x, n, ratios[ri]), want = q < 1 ? 1 : q > 3.5f ? 3.5f : q;
                float got = diffusion_x0_threshold(y, n, ratios[ri], 3.5f, scr);
                int ok = got == want;
                for (size_t i = 0; i < n && ok; i++) {
                    float v = x[i] < -want ? -want : x[i] > want ? want : x[i];
                    ok = y[i] == v / want;
                }
                if (!ok && bad++ < 5)
                    CHECK(0, "threshold %s n=%zu ratio %g: s = %.9g, sorted reference %.9g", tie ? "ties" : "distinct",
                          n, (double)ratios[ri], (double)got, (double)want);
            }
    CHECK(bad == 0, "%d threshold cases differ from the sorted reference", bad);
    free(x), free(y), free(scr);
}

static void test_ddpm_step(void) {
    schedule s;
    err_t err;
    CHECK(!schedule_init(&s, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    st_file f = {0};
    if (open_fixture(&f)) {
        schedule_free(&s);
        return;
    }
    float *xt = get(&f, "step.xt", NX), *eps = get(&f, "step.eps", NX), *z = get(&f, "step.z", NX);
    float xp[NX], x0[NX];
    char name[128];
    if (xt && eps && z) {
        const char *vts[2] = {"fixed_small", "fixed_large"};
        for (int v = 0; v < 2; v++) {
            s.variance_type = v ? SCHED_FIXED_LARGE : SCHED_FIXED_SMALL;
            for (int k = 0; k < 2; k++) {
                int t = k ? 0 : 500, prev = t - 1;
                /* z is ignored at t == 0 (pass it anyway to check that) */
                pred_x0(&s, t, eps, xt, x0, NX);
                diffusion_ddpm_step(&s, t, prev, x0, xt, z, xp, NX);
                snprintf(name, sizeof name, "ddpm.%s.t%d.x_prev", vts[v], t);
                cmp(&f, name, xp, NX, 1e-5, 1e-5);
                snprintf(name, sizeof name, "ddpm.%s.t%d.x0_pred", vts[v], t);
                cmp(&f, name, x0, NX, 1e-5, 1e-5);
            }
        }
        s.variance_type = SCHED_FIXED_SMALL;
        /* in place on the xt buffer */
        float buf[NX];
        memcpy(buf, xt, sizeof buf);
        pred_x0(&s, 500, eps, buf, x0, NX);
        diffusion_ddpm_step(&s, 500, 499, x0, buf, z, buf, NX);
        cmp(&f, "ddpm.fixed_small.t500.x_prev", buf, NX, 1e-5, 1e-5);
        /* in place on the x0 buffer, and diffusion_x0_from_eps in place on the eps buffer */
        memcpy(buf, eps, sizeof buf);
        diffusion_x0_from_eps(&s, 500, buf, xt, buf, NX);
        diffusion_x0_clip(buf, NX, s.clip_range);
        diffusion_ddpm_step(&s, 500, 499, buf, xt, z, buf, NX);
        cmp(&f, "ddpm.fixed_small.t500.x_prev", buf, NX, 1e-5, 1e-5);
        /* strided step (set_timesteps(50): 500 -> 480) */
        pred_x0(&s, 500, eps, xt, x0, NX);
        diffusion_ddpm_step(&s, 500, 480, x0, xt, z, xp, NX);
        cmp(&f, "ddpm.fixed_small.t500p480.x_prev", xp, NX, 1e-5, 1e-5);
        /* without clipping the predicted x0 leaves [-1, 1] */
        s.clip_sample = 0;
        pred_x0(&s, 500, eps, xt, x0, NX);
        diffusion_ddpm_step(&s, 500, 499, x0, xt, z, xp, NX);
        cmp(&f, "ddpm.fixed_small.noclip.t500.x_prev", xp, NX, 1e-5, 1e-5);
        cmp(&f, "ddpm.fixed_small.noclip.t500.x0_pred", x0, NX, 1e-5, 1e-5);
        float mx = 0;
        for (int i = 0; i < NX; i++) mx = fabsf(x0[i]) > mx ? fabsf(x0[i]) : mx;
        CHECK(mx > 1.5f, "unclipped x0 should exceed 1 somewhere (max %g)", (double)mx);
    }
    free(xt), free(eps), free(z);
    st_close(&f);
    schedule_free(&s);
}

static void test_ddim_step(void) {
    schedule s;
    err_t err;
    CHECK(!schedule_init(&s, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    st_file f = {0};
    if (open_fixture(&f)) {
        schedule_free(&s);
        return;
    }
    CHECK(diffusion_ddim_prev_t(1000, 50, 500) == 480 && diffusion_ddim_prev_t(1000, 50, 0) == -20 && diffusion_ddim_prev_t(1000, 3, 999) == 666,
          "ddim_prev_t");
    float *xt = get(&f, "step.xt", NX), *eps = get(&f, "step.eps", NX), *z = get(&f, "step.z", NX);
    float xp[NX], x0[NX];
    char name[128];
    if (xt && eps && z) {
        const float etas[2] = {0.0f, 0.5f};
        const char *en[2] = {"eta0", "eta0.5"};
        for (int e = 0; e < 2; e++) {
            for (int k = 0; k < 2; k++) {
                int t = k ? 0 : 500;
                pred_x0(&s, t, eps, xt, x0, NX);
                diffusion_ddim_step(&s, t, diffusion_ddim_prev_t(1000, 50, t), etas[e], x0, eps, xt, e ? z : NULL, xp, NX);
                snprintf(name, sizeof name, "ddim.%s.n50.t%d.x_prev", en[e], t);
                cmp(&f, name, xp, NX, 1e-5, 1e-5);
                snprintf(name, sizeof name, "ddim.%s.n50.t%d.x0_pred", en[e], t);
                cmp(&f, name, x0, NX, 1e-5, 1e-5);
            }
        }
        /* eta = 0 ignores z; the last step (alphabar_prev = 1) returns x0_pred exactly */
        float xp2[NX];
        pred_x0(&s, 500, eps, xt, x0, NX);
        diffusion_ddim_step(&s, 500, 480, 0.0f, x0, eps, xt, NULL, xp, NX);
        diffusion_ddim_step(&s, 500, 480, 0.0f, x0, eps, xt, z, xp2, NX);
        CHECK(!memcmp(xp, xp2, sizeof xp), "eta=0 must not use z");
        /* in place on the xt buffer */
        memcpy(xp2, xt, sizeof xp2);
        diffusion_ddim_step(&s, 500, 480, 0.0f, x0, eps, xp2, NULL, xp2, NX);
        CHECK(!memcmp(xp, xp2, sizeof xp), "ddim_step in place on xt differs");
        pred_x0(&s, 0, eps, xt, x0, NX);
        diffusion_ddim_step(&s, 0, -20, 0.5f, x0, eps, xt, z, xp, NX);
        CHECK(!memcmp(xp, x0, sizeof xp), "final DDIM step must return x0_pred");
    }
    free(xt), free(eps), free(z);
    st_close(&f);
    schedule_free(&s);
}

static void test_timesteps(void) {
    int ts[1000];
    float tf[50];
    err_t err;
    st_file f = {0};
    if (!open_fixture(&f)) {
        const char *sp[3] = {"leading", "trailing", "linspace"};
        char name[64];
        for (int k = 0; k < 3; k++) {
            CHECK(!diffusion_timesteps_set(1000, 50, sp[k], 0, ts, &err), "%s", err.msg);
            for (int i = 0; i < 50; i++) tf[i] = (float)ts[i];
            snprintf(name, sizeof name, "timesteps.T1000.N50.%s", sp[k]);
            cmp(&f, name, tf, 50, 0, 0);
        }
        st_close(&f);
    }
    /* leading with steps_offset; DDPMPipeline's full list */
    CHECK(!diffusion_timesteps_set(1000, 10, "leading", 1, ts, &err), "%s", err.msg);
    CHECK(ts[0] == 901 && ts[9] == 1, "leading+offset: %d .. %d", ts[0], ts[9]);
    CHECK(!diffusion_timesteps_set(1000, 1000, "leading", 0, ts, &err), "%s", err.msg);
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= ts[i] == 999 - i;
    CHECK(ok, "N = T must give 999..0");
    /* trailing where numpy's arange makes N+1 values (the last -1): first N kept */
    CHECK(!diffusion_timesteps_set(1000, 61, "trailing", 0, ts, &err), "%s", err.msg);
    CHECK(ts[0] == 999 && ts[60] >= 0 && ts[60] < ts[59], "trailing N=61: %d .. %d", ts[0], ts[60]);
    CHECK(!diffusion_timesteps_set(1000, 1, "linspace", 0, ts, &err) && ts[0] == 0, "linspace N=1");
    CHECK(!diffusion_timesteps_set(1000, 1, "trailing", 0, ts, &err) && ts[0] == 999, "trailing N=1");

    /* errors */
    CHECK(diffusion_timesteps_set(1000, 1001, "leading", 0, ts, &err) == -1 && strstr(err.msg, "exceed"), "N > T: %s",
          err.msg);
    CHECK(diffusion_timesteps_set(1000, 0, "leading", 0, ts, &err) == -1 && strstr(err.msg, ">= 1"), "N = 0: %s", err.msg);
    CHECK(diffusion_timesteps_set(1000, -5, "trailing", 0, ts, &err) == -1, "N < 0");
    CHECK(diffusion_timesteps_set(1000, 50, "middle", 0, ts, &err) == -1 && strstr(err.msg, "unknown spacing"), "%s",
          err.msg);
    CHECK(diffusion_timesteps_set(1000, 50, "leading", 20, ts, &err) == -1 && strstr(err.msg, "outside"), "offset: %s",
          err.msg);
    CHECK(diffusion_timesteps_set(1000, 50, "leading", -1, ts, &err) == -1, "negative offset");
}

static void test_vlb_terms(void) {
    st_file f = {0};
    if (open_fixture(&f)) return;
    enum { N = 64 };
    float *m1 = get(&f, "kl.mean1", N), *l1 = get(&f, "kl.logvar1", N), *m2 = get(&f, "kl.mean2", N),
          *l2 = get(&f, "kl.logvar2", N);
    float *x = get(&f, "dgl.x", N), *mu = get(&f, "dgl.mean", N), *ls = get(&f, "dgl.log_scale", N);
    float got[N];
    if (m1 && l1 && m2 && l2) {
        for (int i = 0; i < N; i++) got[i] = (float)diffusion_normal_kl(m1[i], l1[i], m2[i], l2[i]);
        cmp(&f, "kl.value", got, N, 1e-7, 1e-6);
    }
    if (x && mu && ls) {
        for (int i = 0; i < N; i++) got[i] = (float)diffusion_discretized_gaussian_loglik(x[i], mu[i], ls[i]);
        cmp(&f, "dgl.value", got, N, 1e-6, 1e-6);
        CHECK(got[4] > -25 && got[5] > -25, "tail bins must not hit the 1e-12 floor (%g, %g)", (double)got[4],
              (double)got[5]);
    }
    /* a normalised decoder: the 256 bins of one Gaussian sum to 1 */
    double tot = 0;
    for (int k = 0; k < 256; k++) tot += exp(diffusion_discretized_gaussian_loglik(k / 127.5 - 1.0, 0.1, log(0.3)));
    CHECK(fabs(tot - 1.0) < 1e-9, "bin masses sum to %.12f", tot);
    CHECK(fabs(diffusion_normal_kl(0.3, -1.0, 0.3, -1.0)) < 1e-15, "KL(p||p) = 0");

    schedule s;
    err_t err;
    CHECK(!schedule_init(&s, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);
    float *x0 = get(&f, "x0", NX), *xt = get(&f, "step.xt", NX), *prior = get(&f, "prior_kl.linear", 1);
    float mean[NX];
    if (x0 && xt) {
        diffusion_posterior_mean_var(&s, 1, x0, xt, mean, NX);
        cmp(&f, "posterior_mean.t1", mean, NX, 1e-6, 1e-5);
        diffusion_posterior_mean_var(&s, 500, x0, xt, mean, NX);
        cmp(&f, "posterior_mean.t500", mean, NX, 1e-6, 1e-5);
    }
    if (x0 && prior) {
        float p = (float)diffusion_prior_bpd_nats(&s, x0, NX);
        check_close("prior_kl.linear", &p, prior, 1, 0, 1e-6);
    }
    CHECK(diffusion_reverse_log_variance(&s, 10) == s.post_log_var_clipped[10], "fixed_small log variance");
    s.variance_type = SCHED_FIXED_LARGE;
    /* beta' = 1 - ac_t/ac_{t-1} from the float32 alphas_cumprod equals beta_t to ~4e-4 relative at t = 10 */
    CHECK(fabs(diffusion_reverse_log_variance(&s, 10) - log(s.betas[10])) < 1e-3 &&
              fabs(diffusion_reverse_log_variance(&s, 0) - log(s.post_var[1])) < 1e-6,
          "fixed_large log variance");
    schedule_free(&s);
    free(m1), free(l1), free(m2), free(l2), free(x), free(mu), free(ls), free(x0), free(xt), free(prior);
    st_close(&f);
}

static const char *CIFAR_CFG =
    "{\n  \"_class_name\": \"DDPMScheduler\",\n  \"_diffusers_version\": \"0.1.0\",\n  \"beta_end\": 0.02,\n"
    "  \"beta_schedule\": \"linear\",\n  \"beta_start\": 0.0001,\n  \"clip_sample\": true,\n"
    "  \"num_train_timesteps\": 1000,\n  \"trained_betas\": null,\n  \"variance_type\": \"fixed_large\"\n}\n";

static int same_tables(const schedule *a, const schedule *b) {
    if (a->T != b->T) return 0;
    size_t sz = sizeof(float) * (size_t)a->T;
    return !memcmp(a->betas, b->betas, sz) && !memcmp(a->alphas_cumprod, b->alphas_cumprod, sz) &&
           !memcmp(a->post_var, b->post_var, sz) && !memcmp(a->post_c0, b->post_c0, sz) &&
           !memcmp(a->post_log_var_clipped, b->post_log_var_clipped, sz);
}

/* Expects schedule_from_json(text) to fail with a message containing want. */
static void expect_json_error(const char *text, const char *want) {
    schedule s;
    err_t err = {0};
    int rc = schedule_from_json(&s, text, &err);
    CHECK(rc == -1 && strstr(err.msg, want), "config %s: rc %d, message \"%s\", expected \"%s\"", text, rc,
          err.msg, want);
    CHECK(s.mem == NULL && s.T == 0, "failed parse must leave the schedule zeroed");
    schedule_free(&s);
}

static void test_json(void) {
    schedule s, ref, s2;
    err_t err;
    CHECK(!schedule_init(&ref, "linear", 1000, 0.0001, 0.02, &err), "%s", err.msg);

    /* google/ddpm-cifar10-32 */
    CHECK(!schedule_from_json(&s, CIFAR_CFG, &err), "%s", err.msg);
    CHECK(s.T == 1000 && s.variance_type == SCHED_FIXED_LARGE && s.clip_sample == 1 && s.clip_range == 1.0f &&
              !strcmp(s.kind, "linear") && !s.trained && s.set_alpha_to_one && s.steps_offset == 0 &&
              !strcmp(s.timestep_spacing, "leading"),
          "cifar config fields");
    CHECK(same_tables(&s, &ref), "cifar config tables differ from schedule_init(linear)");

    /* round trip */
    char *txt = schedule_to_json(&s);
    CHECK(txt && strstr(txt, "\"_class_name\"") && strstr(txt, "\"DDPMScheduler\"") &&
              strstr(txt, "\"fixed_large\"") && strstr(txt, "\"thresholding\""),
          "to_json: %s", txt ? txt : "(null)");
    if (txt) {
        CHECK(!schedule_from_json(&s2, txt, &err), "%s", err.msg);
        CHECK(same_tables(&s, &s2) && s2.variance_type == s.variance_type && s2.clip_sample == s.clip_sample &&
                  s2.beta_start == s.beta_start && s2.beta_end == s.beta_end && !s2.thresholding &&
                  s2.threshold_ratio == 0.995f && s2.sample_max == 1.0f,
              "round trip");
        schedule_free(&s2);
    }
    free(txt);
    schedule_free(&s);

    /* defaults (thresholding off, diffusers' ratio 0.995 and sample_max_value 1) */
    CHECK(!schedule_from_json(&s, "{}", &err), "%s", err.msg);
    CHECK(s.variance_type == SCHED_FIXED_SMALL && s.clip_sample && same_tables(&s, &ref), "defaults");
    CHECK(!s.thresholding && s.threshold_ratio == 0.995f && s.sample_max == 1.0f, "thresholding defaults %d %g %g",
          s.thresholding, (double)s.threshold_ratio, (double)s.sample_max);
    CHECK(!ref.thresholding && ref.threshold_ratio == 0.995f && ref.sample_max == 1.0f, "schedule_init defaults");
    schedule_free(&s);

    /* dynamic thresholding parses (alone, with the defaults; and with its
     * parameters at and inside their bounds) and round-trips */
    CHECK(!schedule_from_json(&s, "{\"thresholding\": true}", &err), "%s", err.msg);
    CHECK(s.thresholding == 1 && s.threshold_ratio == 0.995f && s.sample_max == 1.0f && s.clip_sample,
          "thresholding alone");
    schedule_free(&s);
    CHECK(!schedule_from_json(&s, "{\"dynamic_thresholding_ratio\": 1, \"sample_max_value\": 1e6}", &err), "%s",
          err.msg);
    CHECK(!s.thresholding && s.threshold_ratio == 1.0f && s.sample_max == 1e6f, "thresholding bounds");
    schedule_free(&s);
    CHECK(!schedule_from_json(&s,
                              "{\"thresholding\": true, \"dynamic_thresholding_ratio\": 0.9, "
                              "\"sample_max_value\": 2.5, \"clip_sample\": false}",
                              &err),
          "%s", err.msg);
    CHECK(s.thresholding == 1 && s.threshold_ratio == 0.9f && s.sample_max == 2.5f && !s.clip_sample &&
              same_tables(&s, &ref),
          "thresholding fields %d %g %g", s.thresholding, (double)s.threshold_ratio, (double)s.sample_max);
    txt = schedule_to_json(&s);
    CHECK(txt && strstr(txt, "\"thresholding\"") && strstr(txt, "\"dynamic_thresholding_ratio\"") &&
              strstr(txt, "\"sample_max_value\""),
          "to_json with thresholding: %s", txt ? txt : "(null)");
    if (txt) {
        CHECK(!schedule_from_json(&s2, txt, &err), "%s", err.msg);
        CHECK(s2.thresholding == 1 && s2.threshold_ratio == 0.9f && s2.sample_max == 2.5f && !s2.clip_sample &&
                  same_tables(&s, &s2),
              "thresholding round trip: %d %.9g %.9g", s2.thresholding, (double)s2.threshold_ratio,
              (double)s2.sample_max);
        schedule_free(&s2);
    }
    free(txt);
    schedule_free(&s);

    /* DDIM-style keys, cosine, options */
    CHECK(!schedule_from_json(&s,
                              "{\"_class_name\":\"DDIMScheduler\",\"beta_schedule\":\"squaredcos_cap_v2\","
                              "\"clip_sample\":false,\"clip_sample_range\":2.5,\"set_alpha_to_one\":false,"
                              "\"steps_offset\":1,\"timestep_spacing\":\"trailing\",\"num_train_timesteps\":500,"
                              "\"unknown_key\":[1,2]}",
                              &err),
          "%s", err.msg);
    CHECK(s.T == 500 && !s.clip_sample && s.clip_range == 2.5f && !s.set_alpha_to_one && s.steps_offset == 1 &&
              !strcmp(s.timestep_spacing, "trailing") && !strcmp(s.kind, "squaredcos_cap_v2"),
          "ddim config fields");
    txt = schedule_to_json(&s);
    if (txt) {
        CHECK(!schedule_from_json(&s2, txt, &err), "%s", err.msg);
        CHECK(same_tables(&s, &s2) && !s2.set_alpha_to_one && s2.steps_offset == 1 && s2.clip_range == 2.5f &&
                  !strcmp(s2.timestep_spacing, "trailing"),
              "round trip (cosine)");
        schedule_free(&s2);
    }
    free(txt);
    schedule_free(&s);

    /* trained_betas: the array wins over beta_schedule; round trip keeps the floats */
    {
        char buf[256];
        snprintf(buf, sizeof buf,
                 "{\"num_train_timesteps\":4,\"beta_schedule\":\"linear\",\"trained_betas\":[0.1,0.2,0.3,0.4]}");
        CHECK(!schedule_from_json(&s, buf, &err), "%s", err.msg);
        CHECK(s.trained && s.T == 4 && s.betas[2] == 0.3f && fabsf(s.alphas_cumprod[3] - 0.9f * 0.8f * 0.7f * 0.6f) < 1e-7f,
              "trained betas");
        txt = schedule_to_json(&s);
        if (txt) {
            CHECK(!schedule_from_json(&s2, txt, &err), "%s", err.msg);
            CHECK(s2.trained && same_tables(&s, &s2), "trained round trip");
            schedule_free(&s2);
        }
        free(txt);
        schedule_free(&s);
    }

    /* errors */
    expect_json_error("{\"beta_schedule\": \"linear\",", "invalid JSON");
    expect_json_error("[1, 2]", "not a JSON object");
    expect_json_error("{} trailing", "invalid JSON");
    expect_json_error("", "invalid JSON");
    expect_json_error("{\"beta_schedule\": \"quadratic\"}", "unknown beta_schedule \"quadratic\"");
    expect_json_error("{\"variance_type\": \"learned\"}", "variance_type \"learned\" is not supported");
    expect_json_error("{\"variance_type\": \"fixed_small_log\"}", "variance_type");
    expect_json_error("{\"prediction_type\": \"v-prediction\"}", "prediction_type \"v-prediction\" is not supported");
    expect_json_error("{\"prediction_type\": 1}", "prediction_type");
    expect_json_error("{\"num_train_timesteps\": \"1000\"}", "\"num_train_timesteps\" must be an integer");
    expect_json_error("{\"num_train_timesteps\": 10.5}", "must be an integer");
    expect_json_error("{\"num_train_timesteps\": 1}", "out of range");
    expect_json_error("{\"beta_start\": null}", "\"beta_start\" must be a number");
    expect_json_error("{\"clip_sample\": 1}", "\"clip_sample\" must be true or false");
    expect_json_error("{\"beta_start\": 0.03}", "beta_start <= beta_end");
    expect_json_error("{\"beta_end\": 1.5}", "beta_end < 1");
    expect_json_error("{\"beta_start\": 0}", "0 < beta_start");
    expect_json_error("{\"clip_sample_range\": 0}", "clip_sample_range");
    expect_json_error("{\"thresholding\": 1}", "\"thresholding\" must be true or false");
    expect_json_error("{\"thresholding\": true, \"dynamic_thresholding_ratio\": 0}", "dynamic_thresholding_ratio");
    expect_json_error("{\"dynamic_thresholding_ratio\": 1.5}", "dynamic_thresholding_ratio");
    expect_json_error("{\"dynamic_thresholding_ratio\": -0.5}", "dynamic_thresholding_ratio");
    expect_json_error("{\"dynamic_thresholding_ratio\": \"0.9\"}", "dynamic_thresholding_ratio");
    expect_json_error("{\"sample_max_value\": 0.5}", "sample_max_value");
    expect_json_error("{\"sample_max_value\": 2e6}", "sample_max_value");
    expect_json_error("{\"sample_max_value\": null}", "sample_max_value");
    expect_json_error("{\"rescale_betas_zero_snr\": true}", "rescale_betas_zero_snr");
    expect_json_error("{\"timestep_spacing\": \"middle\"}", "timestep_spacing");
    expect_json_error("{\"steps_offset\": -1}", "steps_offset");
    expect_json_error("{\"num_train_timesteps\": 3, \"trained_betas\": [0.1, 0.2]}", "trained_betas has 2 entries");
    expect_json_error("{\"num_train_timesteps\": 2, \"trained_betas\": [0.1, 1.0]}", "outside (0, 1)");
    expect_json_error("{\"num_train_timesteps\": 2, \"trained_betas\": [0.1, \"x\"]}", "trained_betas[1]");
    expect_json_error("{\"trained_betas\": 5}", "trained_betas");
    schedule_free(&ref);
}

/* Inputs fuzz/fuzz_schedule found (fuzz/corpus/schedule/crash_*): values that
 * are in range as doubles but not once kept as floats were accepted, and the
 * scheduler_config.json that schedule_to_json wrote from them did not read
 * back. They are refused now; the smallest float still reads and round-trips. */
static void test_json_fuzz(void) {
    /* the fuzzer's input, as found */
    expect_json_error("{\"_clag\": true, \"dynamic_thresholding_ratio\": 0.1e-300, \"saping\": \"linspce\"}",
                      "dynamic_thresholding_ratio");
    expect_json_error("{\"clip_sample_range\": 1e-300}", "clip_sample_range");
    expect_json_error("{\"clip_sample_range\": 1e39}", "clip_sample_range");
    /* fuzz_schedule: trained_betas of one step -- the range error names the scheduler config too */
    expect_json_error("{\"num_train_timesteps\": 1, \"trained_betas\": [-.4]}", "scheduler config: schedule: num_train_timesteps");
    /* fuzz_schedule (long run): a trained beta that is 0 once kept as a float32 -- the tables were built
     * with beta 0 and the config written back could not be read */
    expect_json_error("{\"num_train_timesteps\":4,\"trained_betas\": [0.1, 0.21e-300, 0.3, 0.4]}",
                      "trained_betas[1]");
    schedule s, s2;
    err_t err = {0};
    CHECK(!schedule_from_json(&s, "{\"dynamic_thresholding_ratio\": 1.5e-45, \"clip_sample_range\": 3.4e38}", &err),
          "%s", err.msg);
    char *txt = schedule_to_json(&s);
    CHECK(txt && !schedule_from_json(&s2, txt, &err), "round trip: %s", err.msg);
    CHECK(s2.threshold_ratio == s.threshold_ratio && s2.threshold_ratio > 0 && s2.clip_range == s.clip_range,
          "round trip: ratio %g, range %g", (double)s2.threshold_ratio, (double)s2.clip_range);
    free(txt);
    schedule_free(&s);
    schedule_free(&s2);
}

static void test_init_errors(void) {
    schedule s;
    err_t err;
    CHECK(schedule_init(&s, "linear", 1, 0.0001, 0.02, &err) == -1 && strstr(err.msg, "out of range"), "T=1: %s",
          err.msg);
    CHECK(schedule_init(&s, "linear", 1000, 0.0, 0.02, &err) == -1, "beta_start 0");
    CHECK(schedule_init(&s, "linear", 1000, 0.03, 0.02, &err) == -1, "beta_start > beta_end");
    CHECK(schedule_init(&s, "scaled_linear", 1000, 0.0001, 1.0, &err) == -1, "beta_end 1");
    CHECK(schedule_init(&s, "sigmoid", 1000, 0.0001, 0.02, &err) == -1 && strstr(err.msg, "unknown beta_schedule"),
          "%s", err.msg);
    CHECK(schedule_init(&s, "linear", 1000, 1e-9, 0.02, &err) == -1 && strstr(err.msg, "too small"), "%s",
          err.msg);
    CHECK(schedule_init(&s, "linear", 100000, 0.5, 0.9, &err) == -1 && strstr(err.msg, "underflows"), "%s",
          err.msg);
    CHECK(s.mem == NULL, "zeroed after failure");
    schedule_free(&s);
    schedule_free(&s); /* twice is harmless */
    /* the cosine schedule ignores beta_start / beta_end */
    CHECK(!schedule_init(&s, "squaredcos_cap_v2", 1000, 0, 5, &err), "%s", err.msg);
    CHECK(s.betas[999] == 0.999f, "cosine clipped at 0.999 (%.9g)", (double)s.betas[999]);
    schedule_free(&s);
}

TEST_MAIN(test_tables, test_section6_table, test_q_sample_and_loss, test_x0_from_eps, test_predictions, test_vlb_grad, test_x0_threshold,
          test_ddpm_step, test_ddim_step, test_timesteps,
          test_vlb_terms, test_json, test_json_fuzz, test_init_errors)
