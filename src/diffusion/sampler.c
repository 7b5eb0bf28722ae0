/* sampler.c -- DDPM and DDIM sampling loops over the U-Net (see sampler.h). */
#include "diffusion/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "diffusion/diffusion.h"

int sampler_check(const schedule *s, const sampler_opts *o, ddpm_err *err) {
    return sampler_timesteps(s, o, NULL, NULL, err);
}

int sampler_timesteps(const schedule *s, const sampler_opts *o, int *ts, int *prev, ddpm_err *err) {
    if (o->steps < 1 || o->steps > s->T)
        return ddpm_fail(err, "steps must be in 1..%d (the schedule's num_train_timesteps), is %d", s->T, o->steps);
    if (!isfinite(o->eta) || o->eta < 0 || o->eta > 1)
        return ddpm_fail(err, "eta must be in [0, 1], is %g", (double)o->eta);
    if (!o->ddim && o->eta != 0) return ddpm_fail(err, "eta applies to the DDIM sampler only (DDPM has eta = 1)");
    int *buf = malloc(sizeof(int) * (size_t)o->steps);
    if (!buf) return ddpm_fail(err, "out of memory (%d timesteps)", o->steps);
    if (timesteps_set(s->T, o->steps, s->timestep_spacing, s->steps_offset, buf, err)) {
        free(buf);
        return ddpm_wrap(err, "timesteps");
    }
    for (int k = 0; k < o->steps; k++) {
        if (ts) ts[k] = buf[k];
        if (prev) prev[k] = o->ddim ? ddim_prev_t(s->T, o->steps, buf[k]) : k + 1 < o->steps ? buf[k + 1] : -1;
    }
    free(buf);
    return 0;
}

void sampler_prior(uint64_t seed, int first_index, int n, size_t D, float *x) {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int i = 0; i < n; i++) rng_normal(x + (size_t)i * D, D, seed, RNG_PRIOR, (uint64_t)(first_index + i));
}

int sampler_check_finite(const char *what, const float *x, int n, size_t D, int first_index, ddpm_err *err) {
    size_t bad = 0, first = 0;
    size_t total = (size_t)n * D;
    for (size_t j = 0; j < total; j++)
        if (!isfinite(x[j])) {
            if (!bad) first = j;
            bad++;
        }
    if (!bad) return 0;
    return ddpm_fail(err, "%s: %zu non-finite value(s) (NaN/Inf), first in image %lld at element %zu", what, bad,
                     (long long)first_index + (long long)(first / D), first % D);
}

int sampler_run(unet *u, const schedule *s, const sampler_opts *o, int first_index, int n, float *x,
                const float *x_T, sampler_progress cb, void *ctx, ddpm_err *err) {
    const unet_config *c = &u->cfg;
    if (n < 1 || n > u->batch) return ddpm_fail(err, "sampler: %d images for a network of batch %d", n, u->batch);
    if (first_index < 0) return ddpm_fail(err, "sampler: negative image index %d", first_index);
    if (c->out_channels != c->in_channels)
        return ddpm_fail(err, "sampler: the model predicts %d channels for %d input channels (learned variance "
                              "models are not supported)", c->out_channels, c->in_channels);
    if (sampler_check(s, o, err)) return -1;

    const int B = u->batch, K = o->steps;
    const size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    int rc = -1;
    int *ts = malloc(sizeof(int) * (size_t)K), *prev = malloc(sizeof(int) * (size_t)K);
    float *xb = ddpm_alloc_floats((size_t)B * D, err);
    float *eb = xb ? ddpm_alloc_floats((size_t)B * D, err) : NULL;
    float *zb = eb ? ddpm_alloc_floats((size_t)n * D, err) : NULL;
    float *tt = malloc(sizeof(float) * (size_t)B);
    if (!ts || !prev || !xb || !eb || !zb || !tt) {
        if (xb && eb && zb) ddpm_fail(err, "sampler: out of memory");
        goto done;
    }
    if (sampler_timesteps(s, o, ts, prev, err)) goto done;

    /* x_T into the first n rows; the padding rows stay zero. */
    memset(xb, 0, sizeof(float) * (size_t)B * D);
    if (x_T)
        memcpy(xb, x_T, sizeof(float) * (size_t)n * D);
    else
        sampler_prior(o->seed, first_index, n, D, xb);
    if (sampler_check_finite("sampler: x_T", xb, n, D, first_index, err)) goto done;

    for (int k = 0; k < K; k++) {
        const int t = ts[k], pt = prev[k];
        if (o->start_from > 0 && t > o->start_from - 1) {
            if (cb) cb(ctx, k + 1, K);
            continue;
        }
        for (int i = 0; i < B; i++) tt[i] = (float)t;
        unet_forward(u, eb, xb, tt, NULL);
        char what[96];
        snprintf(what, sizeof what, "sampler: network output at timestep %d (step %d of %d)", t, k + 1, K);
        if (sampler_check_finite(what, eb, n, D, first_index, err)) goto done;
        const int noise = o->ddim ? o->eta > 0 : t > 0;
        int track = -1;
        for (int j = 0; j < o->ntrack; j++)
            if (o->track_t[j] == t) track = j;
#pragma omp parallel for schedule(static) if (n > 1)
        for (int i = 0; i < n; i++) {
            float *xi = xb + (size_t)i * D, *zi = noise ? zb + (size_t)i * D : NULL;
            const float *ei = eb + (size_t)i * D;
            if (zi) rng_normal(zi, D, o->seed, RNG_SAMPLE, rng_stream((uint64_t)t, (uint64_t)(first_index + i)));
            float *x0 = track >= 0 ? o->track_x0 + ((size_t)track * n + i) * D : NULL;
            if (o->ddim)
                ddim_step(s, t, pt, o->eta, ei, xi, zi, xi, x0, D);
            else
                ddpm_step(s, t, pt, ei, xi, zi, xi, x0, D);
        }
        if (cb) cb(ctx, k + 1, K);
    }
    if (sampler_check_finite("sampler: result", xb, n, D, first_index, err)) goto done;
    memcpy(x, xb, sizeof(float) * (size_t)n * D);
    rc = 0;
done:
    free(ts), free(prev), free(xb), free(eb), free(zb), free(tt);
    return rc;
}
