/* sampler.c -- DDPM, DDIM and DPM-Solver++ 2M sampling loops over a
 * denoiser (see sampler.h). */
#include "diffusion/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "diffusion/diffusion.h"
#include "ops/ops.h"

static const char *const kind_names[SAMPLER_KINDS] = {"ddpm", "ddim", "dpm++2m"};

const char *sampler_name(sampler_kind k) { return k >= 0 && k < SAMPLER_KINDS ? kind_names[k] : "?"; }

int sampler_parse(const char *name, sampler_kind *k, err_t *err) {
    for (int i = 0; i < SAMPLER_KINDS; i++)
        if (name && !strcmp(name, kind_names[i])) {
            *k = (sampler_kind)i;
            return 0;
        }
    return err_fail(err, "unknown sampler '%.64s' (known: ddpm, ddim, dpm++2m)", name ? name : "");
}

int sampler_default_steps(sampler_kind k, int T) {
    int steps = k == SAMPLER_DDPM ? 50 : 20;
    return steps < T ? steps : k == SAMPLER_DPMPP ? T - 1 : T;
}

void sampler_range_add(sample_range *r, const float *x, int n, size_t D) {
    for (int i = 0; i < n; i++) {
        long long out = 0;
        for (size_t j = 0; j < D; j++) {
            float a = fabsf(x[(size_t)i * D + j]);
            if (a > SAMPLE_RANGE_TOL) out++;
            if (a > r->max_abs) r->max_abs = a;
        }
        r->images++;
        r->pixels += (long long)D;
        r->out_pixels += out;
        if ((double)out > SAMPLE_OUT_IMAGE_FRAC * (double)D) r->out_images++;
    }
}

/* The x0 processing the options ask for, resolved against the schedule. */
static x0_mode resolve_x0(const schedule *s, const sampler_opts *o, float *ratio, float *smax) {
    *ratio = o->threshold_ratio > 0 ? o->threshold_ratio : s->threshold_ratio;
    *smax = o->threshold_max > 0 ? o->threshold_max : s->sample_max;
    if (o->x0 != X0_CONFIG) return o->x0;
    return s->thresholding ? X0_THRESHOLD : s->clip_sample ? X0_CLIP : X0_NONE;
}

int sampler_check(const schedule *s, const sampler_opts *o, err_t *err) {
    return sampler_timesteps(s, o, NULL, NULL, err);
}

int sampler_timesteps(const schedule *s, const sampler_opts *o, int *ts, int *prev, err_t *err) {
    if (o->kind < 0 || o->kind >= SAMPLER_KINDS) return err_fail(err, "sampler: unknown kind %d", (int)o->kind);
    if (o->steps < 1 || o->steps > s->T)
        return err_fail(err, "steps must be in 1..%d (the schedule's num_train_timesteps), is %d", s->T, o->steps);
    if (!isfinite(o->eta) || o->eta < 0 || o->eta > 1)
        return err_fail(err, "eta must be in [0, 1], is %g", (double)o->eta);
    if (o->kind != SAMPLER_DDIM && o->eta != 0)
        return err_fail(err, "eta applies to the DDIM sampler only (DDPM has eta = 1, DPM-Solver++ 0)");
    if (o->x0 < X0_CONFIG || o->x0 > X0_THRESHOLD) return err_fail(err, "sampler: unknown x0 mode %d", (int)o->x0);
    if (!(o->threshold_ratio >= 0 && o->threshold_ratio <= 1))
        return err_fail(err, "the thresholding ratio must be in (0, 1], is %g", (double)o->threshold_ratio);
    if (!(o->threshold_max == 0 || (o->threshold_max >= 1 && o->threshold_max <= 1e6)))
        return err_fail(err, "the thresholding maximum (sample_max_value) must be in [1, 1e6], is %g",
                         (double)o->threshold_max);
    const char *spacing = o->spacing ? o->spacing : s->timestep_spacing;
    int *buf = malloc(sizeof(int) * (size_t)o->steps);
    if (!buf) return err_oom(err, "out of memory (%d timesteps)", o->steps);
    int rc = o->kind == SAMPLER_DPMPP ? diffusion_dpm_timesteps(s->T, o->steps, spacing, s->steps_offset, buf, err)
                                      : diffusion_timesteps_set(s->T, o->steps, spacing, s->steps_offset, buf, err);
    if (rc) {
        free(buf);
        return err_wrap(err, "timesteps");
    }
    for (int k = 0; k < o->steps; k++) {
        if (ts) ts[k] = buf[k];
        if (prev)
            prev[k] = o->kind == SAMPLER_DDIM ? diffusion_ddim_prev_t(s->T, o->steps, buf[k]) : k + 1 < o->steps ? buf[k + 1] : -1;
    }
    free(buf);
    return 0;
}

void sampler_prior(uint64_t seed, int first_index, int n, size_t D, float *x) {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int i = 0; i < n; i++) rng_normal(x + (size_t)i * D, D, seed, RNG_PRIOR, (uint64_t)(first_index + i));
}

int sampler_check_finite(const char *what, const float *x, int n, size_t D, int first_index, err_t *err) {
    size_t bad = 0, first = 0;
    size_t total = (size_t)n * D;
    for (size_t j = 0; j < total; j++)
        if (!isfinite(x[j])) {
            if (!bad) first = j;
            bad++;
        }
    if (!bad) return 0;
    return err_fail(err, "%s: %zu non-finite value(s) (NaN/Inf), first in image %lld at element %zu", what, bad,
                     (long long)first_index + (long long)(first / D), first % D);
}

/* What the step loop needs besides the options: timesteps, x0 processing. */
typedef struct step_ctx {
    const schedule *s;
    const sampler_opts *o;
    x0_mode mode;
    float ratio, smax;
    const int *ts, *prev;
    const float *sig; /* DPM: sigma of each timestep, sig[K] = 0 */
} step_ctx;

/* Step k of the sampler on n images of D values, each a whole-batch call but
 * for what is per image (x0 thresholding, the noise of image first_index + i):
 * out: the network's output (s->prediction); var: its variance half (learned
 * range; the ancestral step uses it, DDIM and DPM++ have no use for it) or
 * NULL; x0 (=) the prediction from out, processed; x (=) the sampler's update; m1: DPM's previous x0 (NULL: first
 * order); z, scratch, eps: [n D] temporaries. */
static void step_batch(const step_ctx *c, int k, int n, size_t D, int first_index, float *x, const float *out,
                       const float *var, float *x0, const float *m1, float *scratch, float *z, float *eps) {
    const schedule *s = c->s;
    const sampler_opts *o = c->o;
    const int t = c->ts[k], K = o->steps;
    const size_t nd = (size_t)n * D;
    if (o->kind == SAMPLER_DPMPP)
        diffusion_dpm_x0(c->sig[k], s->prediction, out, x, x0, nd);
    else
        diffusion_x0_from_output(s, t, out, x, x0, nd);
    if (o->kind == SAMPLER_DDIM) diffusion_eps_from_output(s, t, out, x, eps, nd); /* before x0 is processed */
    if (c->mode == X0_CLIP) diffusion_x0_clip(x0, nd, s->clip_range);
    if (c->mode == X0_THRESHOLD) {
#pragma omp parallel for schedule(static) if (n > 1)
        for (int i = 0; i < n; i++) diffusion_x0_threshold(x0 + (size_t)i * D, D, c->ratio, c->smax, scratch + (size_t)i * D);
    }
    const int noise = (o->kind == SAMPLER_DDPM && t > 0) || (o->kind == SAMPLER_DDIM && o->eta > 0);
    if (noise) {
#pragma omp parallel for schedule(static) if (n > 1)
        for (int i = 0; i < n; i++)
            rng_normal(z + (size_t)i * D, D, o->seed, RNG_SAMPLE, rng_stream((uint64_t)t, (uint64_t)(first_index + i)));
    }
    switch (o->kind) {
    case SAMPLER_DDPM:
        if (var)
            diffusion_ddpm_step_learned(s, t, c->prev[k], x0, x, var, noise ? z : NULL, x, nd);
        else
            diffusion_ddpm_step(s, t, c->prev[k], x0, x, noise ? z : NULL, x, nd);
        break;
    case SAMPLER_DDIM:
        diffusion_ddim_step(s, t, c->prev[k], o->eta, x0, eps, x, noise ? z : NULL, x, nd);
        break;
    default:
        diffusion_dpm_step(c->sig[k + 1], c->sig[k], k > 0 ? c->sig[k - 1] : 0.0f, x0, k == K - 1 ? NULL : m1, x, x, nd);
        break;
    }
}

int sampler_run(const denoiser *d, const schedule *s, const sampler_opts *o, int first_index, int n, float *x,
                const float *x_T, sampler_progress cb, void *ctx, err_t *err) {
    if (n < 1 || n > d->batch) return err_fail(err, "sampler: %d images for a network of batch %d", n, d->batch);
    if (first_index < 0) return err_fail(err, "sampler: negative image index %d", first_index);
    if (sampler_check(s, o, err)) return -1;
    if ((s->variance_type == SCHED_LEARNED_RANGE) != (d->out_mult == 2))
        return err_fail(err, "sampler: variance_type %s needs a network with %s output channels as input channels",
                        schedule_variance_name(s->variance_type), d->out_mult == 2 ? "as many" : "twice as many");

    const int B = d->batch, K = o->steps, dpm = o->kind == SAMPLER_DPMPP;
    const size_t D = d->D, nd = (size_t)n * D;
    int rc = -1;
    int *ts = malloc(sizeof(int) * (size_t)K), *prev = malloc(sizeof(int) * (size_t)K);
    float *sig = malloc(sizeof(float) * (size_t)(K + 1)), *tt = malloc(sizeof(float) * (size_t)B);
    /* x and the output with the denoiser's B rows (the padding rows stay zero),
     * then per image: x0, DPM's previous x0, the thresholding scratch, the
     * noise, DDIM's eps */
    float *xb = mem_alloc_floats((size_t)B * D, err);
    float *eb = xb ? mem_alloc_floats((size_t)B * D * (d->out_mult == 2 ? 2 : 1), err) : NULL;
    float *work = eb ? mem_alloc_floats(5 * nd, err) : NULL;
    if (!ts || !prev || !sig || !tt || !work) {
        if (work) err_fail(err, "sampler: out of memory");
        goto done;
    }
    if (sampler_timesteps(s, o, ts, prev, err)) goto done;
    for (int k = 0; k < K; k++) sig[k] = diffusion_dpm_sigma(s, ts[k]);
    sig[K] = 0.0f;
    float *x0b = work, *m1b = work + nd, *scr = work + 2 * nd, *zb = work + 3 * nd, *epb = work + 4 * nd;
    step_ctx sc = {.s = s, .o = o, .ts = ts, .prev = prev, .sig = sig};
    sc.mode = resolve_x0(s, o, &sc.ratio, &sc.smax);

    memset(xb, 0, sizeof(float) * (size_t)B * D);
    if (x_T)
        memcpy(xb, x_T, sizeof(float) * nd);
    else
        sampler_prior(o->seed, first_index, n, D, xb);
    if (sampler_check_finite("sampler: x_T", xb, n, D, first_index, err)) goto done;

    int have_m1 = 0; /* DPM: m1b holds the previous step's x0 */
    for (int k = 0; k < K; k++) {
        const int t = ts[k];
        if (o->start_from > 0 && t > o->start_from - 1) {
            if (cb) cb(ctx, k + 1, K);
            continue;
        }
        for (int i = 0; i < B; i++) tt[i] = (float)t;
        if (d->eps(d->ctx, n, xb, tt, eb, err)) goto done;
        char what[96];
        snprintf(what, sizeof what, "sampler: network output at timestep %d (step %d of %d)", t, k + 1, K);
        if (sampler_check_finite(what, eb, n, D, first_index, err) ||
            (d->out_mult == 2 && sampler_check_finite(what, eb + (size_t)B * D, n, D, first_index, err)))
            goto done;
        step_batch(&sc, k, n, D, first_index, xb, eb, d->out_mult == 2 ? eb + (size_t)B * D : NULL, x0b,
                   dpm && have_m1 ? m1b : NULL, scr, zb, epb);
        for (int j = 0; j < o->ntrack; j++)
            if (o->track_t[j] == t) memcpy(o->track_x0 + (size_t)j * nd, x0b, nd * sizeof *x0b);
        if (dpm) memcpy(m1b, x0b, nd * sizeof *x0b);
        have_m1 = 1;
        if (cb) cb(ctx, k + 1, K);
    }
    if (sampler_check_finite("sampler: result", xb, n, D, first_index, err)) goto done;
    if (o->range) sampler_range_add(o->range, xb, n, D);
    if (!o->raw) diffusion_x0_clip(xb, nd, 1.0f);
    memcpy(x, xb, sizeof(float) * nd);
    rc = 0;
done:
    free(ts), free(prev), free(sig), free(tt), free(xb), free(eb), free(work);
    return rc;
}
