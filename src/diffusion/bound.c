/* bound.c -- the variational bound per image, every timestep (see bound.h). */
#include "bound.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "diffusion/diffusion.h"

/* The reverse step's log variance of value j: the schedule's (fixed), or the
 * network's v between min_log and max_log (learned range). */
static double log_var(const float *v, size_t j, double min_log, double max_log, double fixed) {
    if (!v) return fixed;
    double f = ((double)v[j] + 1.0) / 2.0;
    return f * max_log + (1.0 - f) * min_log;
}

int bound_terms(const denoiser *d, const schedule *s, const float *x0, int n, int first_index, uint64_t seed,
                double *terms, double *mse, void (*cb)(void *, int, int), void *ctx, err_t *err) {
    int B = d->batch, T = s->T;
    size_t D = d->D;
    if (n < 1 || n > B) return err_fail(err, "bound: %d images for a network of batch %d", n, B);
    float *xt = calloc((size_t)B * D, sizeof *xt), *eps = calloc((size_t)B * D, sizeof *eps);
    const int learned = s->variance_type == SCHED_LEARNED_RANGE;
    if (learned != (d->out_mult == 2))
        return err_fail(err, "bound: variance_type %s does not fit a network with %s", schedule_variance_name(s->variance_type),
                        d->out_mult == 2 ? "a variance output" : "no variance output");
    float *out = calloc((size_t)B * D * (learned ? 2 : 1), sizeof *out), *tt = calloc((size_t)B, sizeof *tt);
    float *x0p = malloc(D * sizeof *x0p), *mq = malloc(D * sizeof *mq), *mp = malloc(D * sizeof *mp);
    if (!xt || !eps || !out || !tt || !x0p || !mq || !mp) {
        free(xt), free(eps), free(out), free(tt), free(x0p), free(mq), free(mp);
        return err_oom(err, "out of memory");
    }
    int rc = 0;
    for (int i = 0; i < n; i++) terms[(size_t)i * (T + 1) + T] = diffusion_prior_bpd_nats(s, x0 + i * D, D);
    for (int k = 0; k < T && rc == 0; k++) {
        int t = T - 1 - k;
        for (int i = 0; i < n; i++) {
            rng_normal(eps + i * D, D, seed, RNG_EVAL, rng_stream((uint64_t)t, (uint64_t)(first_index + i)));
            diffusion_q_sample(s, t, x0 + i * D, eps + i * D, xt + i * D, D);
            tt[i] = (float)t;
        }
        if ((rc = d->eps(d->ctx, n, xt, tt, out, err))) break;
        double sa = s->sqrt_ac[t], s1 = s->sqrt_1m_ac[t];
        double lv_q = s->post_log_var_clipped[t], lv_p = diffusion_reverse_log_variance(s, t);
        /* learned range (improved-diffusion's p_mean_variance): between the clipped posterior and beta_t */
        double min_log = s->post_log_var_clipped[t], max_log = log((double)s->betas[t]);
        for (int i = 0; i < n && rc == 0; i++) {
            const float *e = out + i * D, *xi = x0 + i * D, *xti = xt + i * D;
            const float *v = learned ? out + ((size_t)B + i) * D : NULL;
            double se = 0;
            for (size_t j = 0; j < D; j++) {
                if (!isfinite(e[j]) || (v && !isfinite(v[j]))) {
                    rc = err_fail(err, "bound: the network output is not finite (image %d, t = %d)",
                                   first_index + i, t);
                    break;
                }
                double p = s->prediction == SCHED_PRED_EPSILON ? ((double)xti[j] - s1 * e[j]) / sa
                           : s->prediction == SCHED_PRED_SAMPLE ? (double)e[j]
                                                                : sa * xti[j] - s1 * e[j];
                p = p < -1 ? -1 : p > 1 ? 1 : p;
                x0p[j] = (float)p;
                se += (p - xi[j]) * (p - xi[j]);
            }
            if (rc) break;
            if (mse) mse[(size_t)i * T + t] = se / (double)D;
            diffusion_posterior_mean_var(s, t, x0p, xti, mp, D);
            double L = 0;
            if (t == 0) {
                for (size_t j = 0; j < D; j++)
                    L -= diffusion_discretized_gaussian_loglik(xi[j], mp[j], 0.5 * log_var(v, j, min_log, max_log, lv_p));
            } else {
                diffusion_posterior_mean_var(s, t, xi, xti, mq, D);
                for (size_t j = 0; j < D; j++)
                    L += diffusion_normal_kl(mq[j], lv_q, mp[j], log_var(v, j, min_log, max_log, lv_p));
            }
            terms[(size_t)i * (T + 1) + t] = L;
        }
        if (cb) cb(ctx, k + 1, T);
    }
    free(xt), free(eps), free(out), free(tt), free(x0p), free(mq), free(mp);
    return rc;
}
