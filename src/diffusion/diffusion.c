/* diffusion.c -- forward process, timestep lists, DDPM/DDIM reverse steps and
 * the variational-bound terms (see diffusion.h).
 */
#include "diffusion/diffusion.h"

#include <math.h>
#include <string.h>

void q_sample(const schedule *s, int t, const float *x0, const float *eps, float *xt, size_t n) {
    DDPM_ASSERT(t >= 0 && t < s->T);
    const float a = s->sqrt_ac[t], b = s->sqrt_1m_ac[t];
    for (size_t i = 0; i < n; i++) {
        float x = x0[i], e = eps[i];
        xt[i] = a * x + b * e;
    }
}

double loss_simple(const float *eps_pred, const float *eps, size_t n) {
    DDPM_ASSERT(n > 0);
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)eps_pred[i] - (double)eps[i];
        acc += d * d;
    }
    return acc / (double)n;
}

int timesteps_set(int T, int N, const char *spacing, int steps_offset, int *out, ddpm_err *err) {
    if (T < 1) return ddpm_fail(err, "timesteps: num_train_timesteps = %d must be >= 1", T);
    if (N < 1) return ddpm_fail(err, "timesteps: number of inference steps = %d must be >= 1", N);
    if (N > T)
        return ddpm_fail(err, "timesteps: %d inference steps exceed num_train_timesteps = %d", N, T);
    if (steps_offset < 0) return ddpm_fail(err, "timesteps: steps_offset = %d must be >= 0", steps_offset);
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
        return ddpm_fail(err, "timesteps: unknown spacing \"%.64s\" (expected leading, trailing or linspace)",
                         spacing);
    }
    for (int i = 0; i < N; i++)
        if (out[i] < 0 || out[i] >= T)
            return ddpm_fail(err, "timesteps: %s spacing with T = %d, N = %d, steps_offset = %d gives t = %d "
                                  "outside [0, %d)", spacing, T, N, steps_offset, out[i], T);
    return 0;
}

/* x0 = (xt - sb*eps)/sa, clamped to +-r if clip. */
static inline float pred_x0(float xt, float e, float sa, float sb, int clip, float r) {
    float x0 = (xt - sb * e) / sa;
    if (clip) x0 = x0 < -r ? -r : x0 > r ? r : x0;
    return x0;
}

void ddpm_step(const schedule *s, int t, int prev_t, const float *eps, const float *xt, const float *z,
               float *x_prev, float *x0_pred, size_t n) {
    DDPM_ASSERT(t >= 0 && t < s->T && prev_t >= -1 && prev_t < t);
    double ab = s->alphas_cumprod[t], ab_prev = prev_t >= 0 ? (double)s->alphas_cumprod[prev_t] : 1.0;
    double bt = 1.0 - ab, bt_prev = 1.0 - ab_prev;
    double cur_alpha = ab / ab_prev, cur_beta = 1.0 - cur_alpha;
    const float sa = (float)sqrt(ab), sb = (float)sqrt(bt);
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
    const int noise = t > 0 && z != NULL, clip = s->clip_sample;
    const float r = s->clip_range;
    for (size_t i = 0; i < n; i++) {
        float x = xt[i], e = eps[i], zi = noise ? z[i] : 0.0f;
        float x0 = pred_x0(x, e, sa, sb, clip, r);
        float mean = c0 * x0 + ct * x;
        x_prev[i] = noise ? mean + sigma * zi : mean;
        if (x0_pred) x0_pred[i] = x0;
    }
}

int ddim_prev_t(int T, int N, int t) {
    DDPM_ASSERT(N >= 1);
    return t - T / N;
}

void ddim_step(const schedule *s, int t, int prev_t, float eta, const float *eps, const float *xt,
               const float *z, float *x_prev, float *x0_pred, size_t n) {
    DDPM_ASSERT(t >= 0 && t < s->T && prev_t < t && eta >= 0);
    double ab = s->alphas_cumprod[t];
    double ab_prev = prev_t >= 0 ? (double)s->alphas_cumprod[prev_t]
                                 : s->set_alpha_to_one ? 1.0 : (double)s->alphas_cumprod[0];
    double bt = 1.0 - ab, bt_prev = 1.0 - ab_prev;
    double var = bt_prev / bt * (1.0 - ab / ab_prev);
    double std = (double)eta * sqrt(var);
    double dir2 = 1.0 - ab_prev - std * std;
    const float sa = (float)sqrt(ab), sb = (float)sqrt(bt);
    const float cx = (float)sqrt(ab_prev), ce = (float)sqrt(dir2 > 0 ? dir2 : 0.0);
    const float sigma = (float)std;
    const int noise = eta > 0 && z != NULL, clip = s->clip_sample;
    const float r = s->clip_range;
    for (size_t i = 0; i < n; i++) {
        float x = xt[i], e = eps[i], zi = noise ? z[i] : 0.0f;
        float x0 = pred_x0(x, e, sa, sb, clip, r);
        float out = cx * x0 + ce * e;
        x_prev[i] = noise ? out + sigma * zi : out;
        if (x0_pred) x0_pred[i] = x0;
    }
}

double normal_kl(double mean1, double logvar1, double mean2, double logvar2) {
    double d = mean1 - mean2;
    return 0.5 * (-1.0 + logvar2 - logvar1 + exp(logvar1 - logvar2) + d * d * exp(-logvar2));
}

double discretized_gaussian_loglik(double x, double mean, double log_scale) {
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

void posterior_mean_var(const schedule *s, int t, const float *x0, const float *xt, float *mean, size_t n) {
    DDPM_ASSERT(t >= 0 && t < s->T);
    const float c0 = s->post_c0[t], ct = s->post_ct[t];
    for (size_t i = 0; i < n; i++) {
        float a = x0[i], b = xt[i];
        mean[i] = c0 * a + ct * b;
    }
}

double reverse_log_variance(const schedule *s, int t) {
    DDPM_ASSERT(t >= 0 && t < s->T);
    if (s->variance_type == SCHED_FIXED_LARGE) {
        if (t == 0) return s->post_log_var_clipped[0];
        return log(1.0 - (double)s->alphas_cumprod[t] / (double)s->alphas_cumprod[t - 1]);
    }
    return s->post_log_var_clipped[t];
}

double prior_bpd_nats(const schedule *s, const float *x0, size_t n) {
    double aT = s->alphas_cumprod[s->T - 1];
    double m = sqrt(aT), lv = log(1.0 - aT), acc = 0;
    for (size_t i = 0; i < n; i++) acc += normal_kl(m * (double)x0[i], lv, 0.0, 0.0);
    return acc;
}
