/* diffusion.c -- forward process, timestep lists, DDPM/DDIM reverse steps and
 * the variational-bound terms (see diffusion.h).
 */
#include "diffusion/diffusion.h"

#include <math.h>
#include <string.h>

#include "ops/ops.h"

void diffusion_q_sample(const schedule *s, int t, const float *x0, const float *eps, float *xt, size_t n) {
    diffusion_q_sample_batch(s, &t, 1, x0, eps, xt, n);
}

void diffusion_q_sample_batch(const schedule *s, const int *t, int n, const float *x0, const float *eps, float *xt, size_t D) {
    enum { ROWS = 256 };
    float a[ROWS], b[ROWS];
    for (int r0 = 0; r0 < n; r0 += ROWS) {
        int m = n - r0 < ROWS ? n - r0 : ROWS;
        for (int i = 0; i < m; i++) {
            ERR_ASSERT(t[r0 + i] >= 0 && t[r0 + i] < s->T);
            a[i] = s->sqrt_ac[t[r0 + i]], b[i] = s->sqrt_1m_ac[t[r0 + i]];
        }
        size_t o = (size_t)r0 * D;
        ops_q_sample_rows(xt + o, x0 + o, eps + o, a, b, m, D);
    }
}

/* The last check of both timestep lists: every t in [0, T). */
static int timesteps_in_range(int T, int N, const char *spacing, int steps_offset, const int *out, err_t *err) {
    for (int i = 0; i < N; i++)
        if (out[i] < 0 || out[i] >= T)
            return err_fail(err, "timesteps: %s spacing with T = %d, N = %d, steps_offset = %d gives t = %d "
                                  "outside [0, %d)", spacing, T, N, steps_offset, out[i], T);
    return 0;
}

int diffusion_timesteps_set(int T, int N, const char *spacing, int steps_offset, int *out, err_t *err) {
    if (T < 1) return err_fail(err, "timesteps: num_train_timesteps = %d must be >= 1", T);
    if (N < 1) return err_fail(err, "timesteps: number of inference steps = %d must be >= 1", N);
    if (N > T)
        return err_fail(err, "timesteps: %d inference steps exceed num_train_timesteps = %d", N, T);
    if (steps_offset < 0) return err_fail(err, "timesteps: steps_offset = %d must be >= 0", steps_offset);
    if (!spacing) spacing = "leading";
    if (!strcmp(spacing, "leading")) {
        int r = T / N;
        for (int i = 0; i < N; i++) out[i] = (N - 1 - i) * r + steps_offset;
    } else if (!strcmp(spacing, "trailing")) {
        /* np.round(np.arange(T, 0, -T/N)) - 1: numpy fills arange as start,
         * start + step, then start + i*d with d = (start + step) - start. */
        double r = (double)T / N, v1 = (double)T + (-r), d = v1 - (double)T;
        for (int i = 0; i < N; i++) {
            double v = i == 0 ? (double)T : i == 1 ? v1 : (double)T + (double)i * d;
            out[i] = (int)nearbyint(v) - 1; /* default rounding: half to even, like np.round */
        }
    } else if (!strcmp(spacing, "linspace")) {
        /* np.linspace(0, T-1, N): i * ((T-1)/(N-1)), last = T-1 exactly */
        for (int i = 0; i < N; i++) {
            double v = N == 1 ? 0.0 : i == N - 1 ? (double)(T - 1) : (double)i * ((double)(T - 1) / (N - 1));
            out[N - 1 - i] = (int)nearbyint(v);
        }
    } else {
        return err_fail(err, "timesteps: unknown spacing \"%.64s\" (expected leading, trailing or linspace)",
                         spacing);
    }
    return timesteps_in_range(T, N, spacing, steps_offset, out, err);
}

void diffusion_x0_from_eps(const schedule *s, int t, const float *eps, const float *xt, float *x0, size_t n) {
    ERR_ASSERT(t >= 0 && t < s->T);
    const float sa = (float)sqrt((double)s->alphas_cumprod[t]), sb = (float)sqrt(1.0 - (double)s->alphas_cumprod[t]);
    ops_unmix(x0, xt, sb, eps, sa, n);
}

/* sqrt(ab) and sqrt(1 - ab) of timestep t, rounded to float. */
static void coefs(const schedule *s, int t, float *sa, float *sb) {
    ERR_ASSERT(t >= 0 && t < s->T);
    *sa = (float)sqrt((double)s->alphas_cumprod[t]);
    *sb = (float)sqrt(1.0 - (double)s->alphas_cumprod[t]);
}

void diffusion_x0_from_output(const schedule *s, int t, const float *out, const float *xt, float *x0, size_t n) {
    float sa, sb;
    coefs(s, t, &sa, &sb);
    if (s->prediction == SCHED_PRED_EPSILON) ops_unmix(x0, xt, sb, out, sa, n);
    else if (s->prediction == SCHED_PRED_SAMPLE) memmove(x0, out, n * sizeof *x0);
    else
        for (size_t i = 0; i < n; i++) x0[i] = sa * xt[i] - sb * out[i];
}

void diffusion_eps_from_output(const schedule *s, int t, const float *out, const float *xt, float *eps, size_t n) {
    float sa, sb;
    coefs(s, t, &sa, &sb);
    if (s->prediction == SCHED_PRED_EPSILON) memmove(eps, out, n * sizeof *eps);
    else if (s->prediction == SCHED_PRED_SAMPLE) ops_unmix(eps, xt, sa, out, sb, n);
    else
        for (size_t i = 0; i < n; i++) eps[i] = sa * out[i] + sb * xt[i];
}

void diffusion_target(const schedule *s, int t, const float *x0, const float *eps, float *target, size_t n) {
    float sa, sb;
    coefs(s, t, &sa, &sb);
    if (s->prediction == SCHED_PRED_EPSILON) memmove(target, eps, n * sizeof *target);
    else if (s->prediction == SCHED_PRED_SAMPLE) memmove(target, x0, n * sizeof *target);
    else
        for (size_t i = 0; i < n; i++) target[i] = sa * eps[i] - sb * x0[i];
}

void diffusion_x0_clip(float *x0, size_t n, float r) {
    for (size_t i = 0; i < n; i++) x0[i] = x0[i] < -r ? -r : x0[i] > r ? r : x0[i];
}

/* The k-th smallest of v[0..n-1] (0-based), reordering v so that every
 * v[j] with j > k is >= it (quickselect with three-way partitions). */
static float select_kth(float *v, size_t n, size_t k) {
    size_t lo = 0, hi = n; /* v[k] lies in [lo, hi) */
    while (hi - lo > 1) {
        float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1];
        float p = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            float x = v[i];
            if (x < p) v[i++] = v[lt], v[lt++] = x;
            else if (x > p) v[i] = v[--gt], v[gt] = x;
            else i++;
        }
        if (k < lt) hi = lt;
        else if (k >= gt) lo = gt;
        else return p;
    }
    return v[k];
}

float diffusion_x0_threshold(float *x0, size_t n, float ratio, float smax, float *scratch) {
    ERR_ASSERT(n >= 1 && ratio > 0 && ratio <= 1 && smax >= 1);
    for (size_t i = 0; i < n; i++) scratch[i] = fabsf(x0[i]);
    /* torch.quantile: rank = q (n-1) in float, lerp between the order statistics below and above it */
    float rank = ratio * (float)(n - 1);
    size_t below = (size_t)rank;
    if (below > n - 1) below = n - 1;
    float w = rank - (float)below;
    float a = select_kth(scratch, n, below), b = below + 1 < n ? scratch[below + 1] : a;
    for (size_t i = below + 2; i < n; i++)
        if (scratch[i] < b) b = scratch[i];
    float q = w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
    float sc = q < 1.0f ? 1.0f : q > smax ? smax : q;
    for (size_t i = 0; i < n; i++) {
        float v = x0[i] < -sc ? -sc : x0[i] > sc ? sc : x0[i];
        x0[i] = v / sc;
    }
    return sc;
}

void diffusion_ddpm_step(const schedule *s, int t, int prev_t, const float *x0, const float *xt, const float *z,
               float *x_prev, size_t n) {
    ERR_ASSERT(t >= 0 && t < s->T && prev_t >= -1 && prev_t < t);
    double ab = s->alphas_cumprod[t], ab_prev = prev_t >= 0 ? (double)s->alphas_cumprod[prev_t] : 1.0;
    double bt = 1.0 - ab, bt_prev = 1.0 - ab_prev;
    double cur_alpha = ab / ab_prev, cur_beta = 1.0 - cur_alpha;
    const float c0 = (float)(sqrt(ab_prev) * cur_beta / bt);
    const float ct = (float)(sqrt(cur_alpha) * bt_prev / bt);
    double var;
    if (s->variance_type == SCHED_FIXED_LARGE) {
        var = cur_beta;
    } else {
        var = bt_prev / bt * cur_beta;
        if (var < 1e-20) var = 1e-20;
    }
    const float sigma = (float)sqrt(var);
    ops_lincomb(x_prev, c0, x0, ct, xt, sigma, t > 0 ? z : NULL, n); /* mean, + sigma z */
}

void diffusion_ddpm_step_learned(const schedule *s, int t, int prev_t, const float *x0, const float *xt,
                                 const float *v, const float *z, float *x_prev, size_t n) {
    ERR_ASSERT(t >= 0 && t < s->T && prev_t >= -1 && prev_t < t);
    double ab = s->alphas_cumprod[t], ab_prev = prev_t >= 0 ? (double)s->alphas_cumprod[prev_t] : 1.0;
    double cur_beta = 1.0 - ab / ab_prev, var = (1.0 - ab_prev) / (1.0 - ab) * cur_beta;
    const float c0 = (float)(sqrt(ab_prev) * cur_beta / (1.0 - ab));
    const float ct = (float)(sqrt(ab / ab_prev) * (1.0 - ab_prev) / (1.0 - ab));
    const float min_log = (float)log(var < 1e-20 ? 1e-20 : var), max_log = (float)log(cur_beta);
    ops_lincomb(x_prev, c0, x0, ct, xt, 0.0f, NULL, n); /* the mean */
    if (t == 0 || !z) return;
    for (size_t i = 0; i < n; i++) {
        float f = (v[i] + 1.0f) / 2.0f;
        x_prev[i] += expf(0.5f * (f * max_log + (1.0f - f) * min_log)) * z[i];
    }
}

int diffusion_ddim_prev_t(int T, int N, int t) {
    ERR_ASSERT(N >= 1);
    return t - T / N;
}

void diffusion_ddim_step(const schedule *s, int t, int prev_t, float eta, const float *x0, const float *eps,
               const float *xt, const float *z, float *x_prev, size_t n) {
    ERR_ASSERT(t >= 0 && t < s->T && prev_t < t && eta >= 0);
    (void)xt;
    double ab = s->alphas_cumprod[t];
    double ab_prev = prev_t >= 0 ? (double)s->alphas_cumprod[prev_t]
                                 : s->set_alpha_to_one ? 1.0 : (double)s->alphas_cumprod[0];
    double bt = 1.0 - ab, bt_prev = 1.0 - ab_prev;
    double var = bt_prev / bt * (1.0 - ab / ab_prev);
    double std = (double)eta * sqrt(var);
    double dir2 = 1.0 - ab_prev - std * std;
    const float cx = (float)sqrt(ab_prev), ce = (float)sqrt(dir2 > 0 ? dir2 : 0.0);
    const float sigma = (float)std;
    ops_lincomb(x_prev, cx, x0, ce, eps, sigma, eta > 0 ? z : NULL, n);
}

float diffusion_dpm_sigma(const schedule *s, int t) {
    ERR_ASSERT(t < s->T);
    if (t < 0) return 0.0f;
    float ab = s->alphas_cumprod[t];
    return sqrtf((1.0f - ab) / ab);
}

int diffusion_dpm_timesteps(int T, int N, const char *spacing, int steps_offset, int *out, err_t *err) {
    if (!spacing) spacing = "linspace";
    if (!strcmp(spacing, "trailing")) return diffusion_timesteps_set(T, N, spacing, steps_offset, out, err);
    if (N < 1) return err_fail(err, "timesteps: number of inference steps = %d must be >= 1", N);
    if (N >= T)
        return err_fail(err, "timesteps: %d DPM-Solver steps with %s spacing need N < num_train_timesteps = %d", N,
                         spacing, T);
    if (steps_offset < 0) return err_fail(err, "timesteps: steps_offset = %d must be >= 0", steps_offset);
    if (!strcmp(spacing, "linspace")) {
        /* np.linspace(0, T-1, N+1).round()[::-1][:-1]: i * ((T-1)/N), the last exactly T-1 */
        for (int i = N; i >= 1; i--) {
            double v = i == N ? (double)(T - 1) : (double)i * ((double)(T - 1) / N);
            out[N - i] = (int)nearbyint(v);
        }
    } else if (!strcmp(spacing, "leading")) {
        int r = T / (N + 1);
        for (int i = N; i >= 1; i--) out[N - i] = i * r + steps_offset;
    } else {
        return err_fail(err, "timesteps: unknown spacing \"%.64s\" (expected leading, trailing or linspace)",
                         spacing);
    }
    return timesteps_in_range(T, N, spacing, steps_offset, out, err);
}

/* _sigma_to_alpha_sigma_t in float32: alpha = 1/sqrt(sigma^2 + 1), sigma_t = sigma alpha. */
static void dpm_alpha_sigma(float sigma, float *alpha, float *sig) {
    *alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sig = sigma * *alpha;
}

void diffusion_dpm_x0(float sigma, int prediction, const float *out, const float *x, float *x0, size_t n) {
    float a, sg;
    dpm_alpha_sigma(sigma, &a, &sg);
    if (prediction == SCHED_PRED_EPSILON) ops_unmix(x0, x, sg, out, a, n);
    else if (prediction == SCHED_PRED_SAMPLE) memmove(x0, out, n * sizeof *x0);
    else
        for (size_t i = 0; i < n; i++) x0[i] = a * x[i] - sg * out[i];
}

void diffusion_dpm_step(float sigma_t, float sigma_s0, float sigma_s1, const float *m0, const float *m1, const float *x,
              float *out, size_t n) {
    if (sigma_t == 0.0f) { /* lambda_t = +inf: the step lands on x0 */
        if (out != m0) memcpy(out, m0, n * sizeof *out);
        return;
    }
    float at, st, a0, s0;
    dpm_alpha_sigma(sigma_t, &at, &st);
    dpm_alpha_sigma(sigma_s0, &a0, &s0);
    float lt = logf(at) - logf(st), l0 = logf(a0) - logf(s0);
    float h = lt - l0;
    const float cx = st / s0, cm = at * (expf(-h) - 1.0f);
    if (!m1) {
        ops_lincomb(out, cx, x, -cm, m0, 0.0f, NULL, n); /* cx x - cm m0 (negation is exact) */
        return;
    }
    float a1, s1;
    dpm_alpha_sigma(sigma_s1, &a1, &s1);
    float l1 = logf(a1) - logf(s1);
    float r0 = (l0 - l1) / h;
    const float cd = 1.0f / r0, half = 0.5f * cm;
    for (size_t i = 0; i < n; i++) {
        float d1 = cd * (m0[i] - m1[i]);
        out[i] = cx * x[i] - cm * m0[i] - half * d1;
    }
}

double diffusion_normal_kl(double mean1, double logvar1, double mean2, double logvar2) {
    double d = mean1 - mean2;
    return 0.5 * (-1.0 + logvar2 - logvar1 + exp(logvar1 - logvar2) + d * d * exp(-logvar2));
}

double diffusion_discretized_gaussian_loglik(double x, double mean, double log_scale) {
    const double inv = exp(-log_scale), r2 = 1.0 / sqrt(2.0);
    const double plus_in = inv * (x - mean + 1.0 / 255.0);
    const double min_in = inv * (x - mean - 1.0 / 255.0);
    double p;
    if (x < -0.999)
        p = 0.5 * erfc(-plus_in * r2); /* CDF(plus_in) */
    else if (x > 0.999)
        p = 0.5 * erfc(min_in * r2); /* 1 - CDF(min_in) */
    else if (min_in > 0)
        p = 0.5 * (erfc(min_in * r2) - erfc(plus_in * r2)); /* both in the upper tail */
    else
        p = 0.5 * (erfc(-plus_in * r2) - erfc(-min_in * r2));
    return log(p > 1e-12 ? p : 1e-12);
}

void diffusion_posterior_mean_var(const schedule *s, int t, const float *x0, const float *xt, float *mean, size_t n) {
    ERR_ASSERT(t >= 0 && t < s->T);
    const float c0 = s->post_c0[t], ct = s->post_ct[t];
    for (size_t i = 0; i < n; i++) {
        float a = x0[i], b = xt[i];
        mean[i] = c0 * a + ct * b;
    }
}

double diffusion_reverse_log_variance(const schedule *s, int t) {
    ERR_ASSERT(t >= 0 && t < s->T);
    if (s->variance_type == SCHED_FIXED_LARGE) {
        if (t == 0) return s->post_log_var_clipped[0];
        return log(1.0 - (double)s->alphas_cumprod[t] / (double)s->alphas_cumprod[t - 1]);
    }
    return s->post_log_var_clipped[t];
}

/* d log P / d log_scale of diffusion_discretized_gaussian_loglik (0 where P is floored). */
static double loglik_dscale(double x, double mean, double log_scale) {
    const double inv = exp(-log_scale), r2 = 1.0 / sqrt(2.0), k = 1.0 / sqrt(2.0 * M_PI);
    const double plus_in = inv * (x - mean + 1.0 / 255.0), min_in = inv * (x - mean - 1.0 / 255.0);
    const double dplus = plus_in * k * exp(-0.5 * plus_in * plus_in), dmin = min_in * k * exp(-0.5 * min_in * min_in);
    double p, dp;
    if (x < -0.999) p = 0.5 * erfc(-plus_in * r2), dp = -dplus;
    else if (x > 0.999) p = 0.5 * erfc(min_in * r2), dp = dmin;
    else if (min_in > 0) p = 0.5 * (erfc(min_in * r2) - erfc(plus_in * r2)), dp = dmin - dplus;
    else p = 0.5 * (erfc(-plus_in * r2) - erfc(-min_in * r2)), dp = dmin - dplus;
    return p > 1e-12 ? dp / p : 0.0;
}

double diffusion_vlb_term(const schedule *s, int t, const float *x0, const float *xt, const float *x0p,
                          const float *v, float *dv, size_t D, float *scratch) {
    ERR_ASSERT(t >= 0 && t < s->T);
    float *mp = scratch, *mq = scratch + D;
    const double min_log = s->post_log_var_clipped[t], max_log = log((double)s->betas[t]);
    const double lq = s->post_log_var_clipped[t], per = 1.0 / ((double)D * M_LN2);
    diffusion_posterior_mean_var(s, t, x0p, xt, mp, D);
    if (t > 0) diffusion_posterior_mean_var(s, t, x0, xt, mq, D);
    double L = 0;
    for (size_t j = 0; j < D; j++) {
        const double f = ((double)v[j] + 1.0) / 2.0, lp = f * max_log + (1.0 - f) * min_log;
        double g; /* d term / d lp */
        if (t > 0) {
            const double d = (double)mq[j] - (double)mp[j];
            L += diffusion_normal_kl(mq[j], lq, mp[j], lp);
            g = 0.5 * (1.0 - exp(lq - lp) - d * d * exp(-lp));
        } else {
            L -= diffusion_discretized_gaussian_loglik(x0[j], mp[j], 0.5 * lp);
            g = -0.5 * loglik_dscale(x0[j], mp[j], 0.5 * lp);
        }
        dv[j] = (float)(g * 0.5 * (max_log - min_log) * per);
    }
    return L * per;
}

double diffusion_prior_bpd_nats(const schedule *s, const float *x0, size_t n) {
    double aT = s->alphas_cumprod[s->T - 1];
    double m = sqrt(aT), lv = log(1.0 - aT), acc = 0;
    for (size_t i = 0; i < n; i++) acc += diffusion_normal_kl(m * (double)x0[i], lv, 0.0, 0.0);
    return acc;
}
