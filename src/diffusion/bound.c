/* bound.c -- the variational bound per image, every timestep (see bound.h). */
#include "bound.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "diffusion/diffusion.h"

int bound_terms(const denoiser *d, const schedule *s, const float *x0, int n, int first_index, uint64_t seed,
                double *terms, double *mse, void (*cb)(void *, int, int), void *ctx, err_t *err) {
    int B = d->batch, T = s->T;
    size_t D = d->D;
    if (n < 1 || n > B) return err_fail(err, "bound: %d images for a network of batch %d", n, B);
    float *xt = calloc((size_t)B * D, sizeof *xt), *eps = calloc((size_t)B * D, sizeof *eps);
    float *out = calloc((size_t)B * D, sizeof *out), *tt = calloc((size_t)B, sizeof *tt);
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
        for (int i = 0; i < n && rc == 0; i++) {
            const float *e = out + i * D, *xi = x0 + i * D, *xti = xt + i * D;
            double se = 0;
            for (size_t j = 0; j < D; j++) {
                if (!isfinite(e[j])) {
                    rc = err_fail(err, "bound: the network output is not finite (image %d, t = %d)",
                                   first_index + i, t);
                    break;
                }
                double p = ((double)xti[j] - s1 * e[j]) / sa;
                p = p < -1 ? -1 : p > 1 ? 1 : p;
                x0p[j] = (float)p;
                se += (p - xi[j]) * (p - xi[j]);
            }
            if (rc) break;
            if (mse) mse[(size_t)i * T + t] = se / (double)D;
            diffusion_posterior_mean_var(s, t, x0p, xti, mp, D);
            double L = 0;
            if (t == 0) {
                for (size_t j = 0; j < D; j++) L -= diffusion_discretized_gaussian_loglik(xi[j], mp[j], 0.5 * lv_p);
            } else {
                diffusion_posterior_mean_var(s, t, xi, xti, mq, D);
                for (size_t j = 0; j < D; j++) L += diffusion_normal_kl(mq[j], lv_q, mp[j], lv_p);
            }
            terms[(size_t)i * (T + 1) + t] = L;
        }
        if (cb) cb(ctx, k + 1, T);
    }
    free(xt), free(eps), free(out), free(tt), free(x0p), free(mq), free(mp);
    return rc;
}
