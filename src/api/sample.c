/* sample.c -- the public sampling calls (include/ddpm.h, "sampling"): the
 * options turned into the sampler's (diffusion/sampler.h) and checked, and
 * ddpm_sample, which runs the sampler batch by batch over a model's network
 * (guided for conditional models), splits the batches over the MPI ranks and
 * gathers the images on rank 0. Public arrays are NCHW, the sampler's NHWC. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/sampler.h"
#include "dist/dist.h"
#include "exec/executor.h"
#include "ops/ops.h"

_Static_assert(DDPM_SAMPLER_DDPM == (int)SAMPLER_DDPM && DDPM_SAMPLER_DDIM == (int)SAMPLER_DDIM &&
               DDPM_SAMPLER_DPMPP_2M == (int)SAMPLER_DPMPP, "ddpm_sampler follows sampler_kind");

const char *ddpm_sampler_name(ddpm_sampler s)
{
    return (int)s >= 0 && (int)s < SAMPLER_KINDS ? sampler_name((sampler_kind)s) : NULL;
}

int ddpm_sampler_parse(const char *name, ddpm_sampler *s)
{
    API_REQUIRE(NULL, name);
    API_REQUIRE(NULL, s);
    err_t err = {0};
    sampler_kind k;
    if (sampler_parse(name, &k, &err)) return api_status(NULL, DDPM_ERR_ARG, &err);
    *s = (ddpm_sampler)k;
    return DDPM_OK;
}

void ddpm_sample_options_init(ddpm_sample_options *o)
{
    if (!o) return;
    *o = (ddpm_sample_options){0};
    o->sampler = DDPM_SAMPLER_DDPM;
    o->batch = 64;
    o->guidance = -1;
    o->guidance_interval[0] = DDPM_GUIDANCE_INTERVAL_LO;
    o->guidance_interval[1] = DDPM_GUIDANCE_INTERVAL_HI;
}

/* The guidance weight o asks of m: 0 without classes (the null class alone),
 * else o->guidance, or its default. */
static float guidance_of(const ddpm_model *m, const ddpm_sample_options *o)
{
    if (!o->classes) return 0.0f;
    return o->guidance >= 0 ? o->guidance : m->null_class >= 0 ? DDPM_GUIDANCE_DEFAULT : 1.0f;
}

/* The timesteps [*from, *to] whose noise level sqrt((1 - alphabar_t) /
 * alphabar_t) lies in the interval (gi[0], gi[1]] (it grows with t); an empty
 * range (*from > *to) when none does. */
static void guidance_timesteps(const schedule *s, const float gi[2], int *from, int *to)
{
    *from = s->T, *to = -1;
    for (int t = 0; t < s->T; t++) {
        const double ab = s->alphas_cumprod[t], sigma = sqrt((1 - ab) / ab);
        if (sigma > gi[0] && sigma <= gi[1]) {
            if (*from > t) *from = t;
            *to = t;
        }
    }
}

/* What o asks for on the schedule of m as sampler options (so) and guidance
 * weight (*w). Returns DDPM_OK, or DDPM_ERR_ARG with the message in h. */
static int resolve(const ddpm_model *m, const ddpm_sample_options *o, sampler_opts *so, float *w, api_obj *h)
{
    const schedule *s = &m->sched;
    const unet_config *c = &m->cfg;
    err_t err = {0};
    if ((int)o->sampler < 0 || (int)o->sampler >= SAMPLER_KINDS)
        return api_fail(h, DDPM_ERR_ARG, "sampler %d is not a ddpm_sampler", (int)o->sampler);
    const int learned = s->variance_type == SCHED_LEARNED_RANGE;
    if (c->out_channels != (learned ? 2 : 1) * c->in_channels)
        return api_fail(h, DDPM_ERR_ARG, "%s: the model predicts %d channels for %d input channels; variance_type %s "
                        "needs %s", m->dir, c->out_channels, c->in_channels, schedule_variance_name(s->variance_type),
                        learned ? "twice as many" : "as many");
    *so = (sampler_opts){.kind = (sampler_kind)o->sampler, .eta = o->eta, .seed = o->seed, .raw = o->raw,
                         .spacing = o->spacing, .threshold_ratio = o->threshold_ratio,
                         .threshold_max = o->threshold_max, .start_from = o->start_t};
    switch (o->x0) {
    case DDPM_X0_AUTO:
        /* What the diffusers scheduler the sampler follows does with this
         * scheduler_config: DDIMScheduler clips or thresholds as the config says;
         * DPMSolverMultistepScheduler has no clip_sample and only thresholds. The
         * ddpm sampler departs from DDPMScheduler (which clips by default): x0 as
         * predicted measured a better FID (docs/quality.md, docs/diffusers.md). */
        so->x0 = so->kind == SAMPLER_DDPM ? X0_NONE
               : so->kind == SAMPLER_DPMPP ? (s->thresholding ? X0_THRESHOLD : X0_NONE) : X0_CONFIG;
        break;
    case DDPM_X0_CONFIG: so->x0 = X0_CONFIG; break;
    case DDPM_X0_NONE: so->x0 = X0_NONE; break;
    case DDPM_X0_CLIP: so->x0 = X0_CLIP; break;
    case DDPM_X0_THRESHOLD: so->x0 = X0_THRESHOLD; break;
    default: return api_fail(h, DDPM_ERR_ARG, "x0 %d is not a ddpm_x0", (int)o->x0);
    }
    /* A config without timestep_spacing: DDPMScheduler and DDIMScheduler default
     * to "leading" (the schedule's), DPMSolverMultistepScheduler to "linspace". */
    if (!so->spacing && so->kind == SAMPLER_DPMPP && !s->spacing_given) so->spacing = "linspace";
    so->steps = o->steps ? o->steps : sampler_default_steps(so->kind, s->T);
    if (so->steps < 1 || so->steps > s->T)
        return api_fail(h, DDPM_ERR_ARG, "steps %d is out of range [1, %d] (the schedule's num_train_timesteps)",
                        so->steps, s->T);
    if (so->kind != SAMPLER_DDIM && o->eta != 0)
        return api_fail(h, DDPM_ERR_ARG, "eta applies to the ddim sampler only");
    if ((o->threshold_ratio || o->threshold_max) && so->x0 != X0_THRESHOLD && !(so->x0 == X0_CONFIG && s->thresholding))
        return api_fail(h, DDPM_ERR_ARG, "threshold_ratio and threshold_max apply to x0 thresholding only");
    if (o->batch < 1) return api_fail(h, DDPM_ERR_ARG, "batch %d: need at least 1 image per network call", o->batch);
    if (o->start_t < 0 || o->start_t > s->T)
        return api_fail(h, DDPM_ERR_ARG, "start_t %d is out of range [0, %d]", o->start_t, s->T);
    if (o->ntrack < 0 || (o->ntrack && (!o->track_t || !o->track_x0)))
        return api_fail(h, DDPM_ERR_ARG, "ntrack %d needs track_t and track_x0", o->ntrack);
    if (o->ntrack && dist_size() > 1)
        return api_fail(h, DDPM_ERR_ARG, "tracking x0 (ntrack) does not work with several processes");
    so->ntrack = o->ntrack, so->track_t = o->track_t;
    if (c->num_class_embeds <= 0 && o->classes)
        return api_fail(h, DDPM_ERR_ARG, "classes need a class-conditional model; %s is unconditional", m->dir);
    if (!(o->guidance_rescale >= 0 && o->guidance_rescale <= 1))
        return api_fail(h, DDPM_ERR_ARG, "guidance_rescale %g is out of range [0, 1]", (double)o->guidance_rescale);
    const float *gi = o->guidance_interval;
    if (!(gi[0] >= 0 && gi[1] > gi[0]))
        return api_fail(h, DDPM_ERR_ARG, "guidance_interval (%g, %g] is not an interval of noise levels: need "
                        "0 <= lo < hi", (double)gi[0], (double)gi[1]);
    *w = guidance_of(m, o);
    if (c->num_class_embeds > 0 && !isfinite(*w))
        return api_fail(h, DDPM_ERR_ARG, "guidance %g is not finite", (double)*w);
    if (c->num_class_embeds > 0 && m->null_class < 0 && (!o->classes || *w != 1.0f))
        return api_fail(h, DDPM_ERR_ARG, "%s has no null class (not trained by ddpm --classes): give classes, with "
                        "guidance 1", m->dir);
    if (sampler_check(s, so, &err)) return api_status(h, DDPM_ERR_ARG, &err);
    if (api_precision(h, o->precision) < 0) return DDPM_ERR_ARG;
    return DDPM_OK;
}

int ddpm_sample_check(const ddpm_model *m, const ddpm_sample_options *o)
{
    API_REQUIRE(NULL, m);
    API_REQUIRE((api_obj *)&m->head, o);
    sampler_opts so;
    float w;
    return resolve(m, o, &so, &w, (api_obj *)&m->head);
}

void ddpm_sample_describe(const ddpm_model *m, const ddpm_sample_options *o, char *buf, size_t len)
{
    if (!buf || !len) return;
    sampler_opts so;
    float w;
    if (!m || !o || resolve(m, o, &so, &w, NULL)) {
        snprintf(buf, len, "invalid sampler options");
        return;
    }
    const schedule *s = &m->sched;
    x0_mode x = so.x0 != X0_CONFIG ? so.x0 : s->thresholding ? X0_THRESHOLD : s->clip_sample ? X0_CLIP : X0_NONE;
    char x0[64];
    if (x == X0_THRESHOLD)
        snprintf(x0, sizeof x0, "threshold %g max %g",
                 (double)(so.threshold_ratio > 0 ? so.threshold_ratio : s->threshold_ratio),
                 (double)(so.threshold_max > 0 ? so.threshold_max : s->sample_max));
    else
        snprintf(x0, sizeof x0, "%s", x == X0_CLIP ? "clip" : "none");
    char guided[128] = "";
    const float *gi = o->guidance_interval;
    if (o->classes && m->cfg.num_class_embeds > 0 && w != 0.0f && w != 1.0f) {
        int from, to;
        guidance_timesteps(s, gi, &from, &to);
        if (from > to)
            snprintf(guided, sizeof guided, ", guidance %g where sigma_t is in (%g, %g]: at no timestep, so plain "
                     "conditioning", (double)w, (double)gi[0], (double)gi[1]);
        else if (from == 0 && to == s->T - 1)
            snprintf(guided, sizeof guided, ", guidance %g at every step", (double)w);
        else
            snprintf(guided, sizeof guided, ", guidance %g where sigma_t is in (%g, %g] (t %d..%d)", (double)w,
                     (double)gi[0], (double)gi[1], from, to);
    } else if (o->classes && m->cfg.num_class_embeds > 0) {
        snprintf(guided, sizeof guided, ", guidance %g", (double)w);
    }
    snprintf(buf, len, "%s, %d steps%s, %s spacing, x0 %s%s%s", sampler_name(so.kind), so.steps,
             so.kind == SAMPLER_DDIM && so.eta > 0 ? ", eta > 0" : "", so.spacing ? so.spacing : s->timestep_spacing,
             x0, guided, so.raw ? ", raw" : "");
}

/* ------------------------------------------------------------- the run */

/* The caller's progress callback and cancellation around the sampler: the
 * sampler's callback cannot stop it, so a cancel makes the next network
 * evaluation fail (and the run then stops). */
typedef struct run_watch {
    ddpm_progress_fn fn;
    void *ctx;
    long long base, total; /* evaluations of the finished batches; of the whole share */
    int last;              /* evaluations of the batch so far */
    int cancelled;
    const denoiser *inner;
} run_watch;

static void watch_progress(void *ctx, int done, int total)
{
    run_watch *r = ctx;
    (void)total;
    r->last = done;
    if (r->fn && !r->cancelled && r->fn(r->ctx, r->base + done, r->total)) r->cancelled = 1;
}

static int watch_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err)
{
    run_watch *r = ctx;
    if (r->cancelled) return err_fail(err, "cancelled");
    return r->inner->eps(r->inner->ctx, n, x, t, eps, err);
}

/* Everything one ddpm_sample call holds. */
typedef struct sample_run {
    const ddpm_sample_options *o;
    sampler_opts so;
    float w;
    int n, B, first, count;
    size_t D;
    float *x;          /* NHWC: all n images on rank 0 (the caller's x), the share elsewhere */
    float *own;        /* x when this rank allocated it */
    float *xT, *track, *tmp; /* a batch of x_T; of tracked x0; one image */
    int32_t *labels;   /* conditional models: every image's class */
    unet_guided g;
    denoiser den;
    sample_range range;
} sample_run;

/* Buffers and the network (every rank). Returns a status recorded on m. */
static int run_setup(ddpm_model *m, sample_run *r, float *x)
{
    const ddpm_sample_options *o = r->o;
    const int root = dist_rank() == 0, conditional = m->cfg.num_class_embeds > 0;
    err_t err = {0};
    if (o->noise && sampler_check_finite("noise", o->noise, r->n, r->D, 0, &err))
        return api_status(&m->head, DDPM_ERR_ARG, &err);
    if (conditional && o->classes && api_model_check_labels(m, "ddpm_sample", r->n, o->classes))
        return DDPM_ERR_ARG;
    r->x = root ? x : (r->own = mem_alloc(sizeof(float) * ((size_t)r->count + 1) * r->D, &err));
    r->tmp = mem_alloc(sizeof(float) * r->D, &err);
    if (!r->x || !r->tmp) return api_status(&m->head, DDPM_ERR_NOMEM, &err);
    if (o->noise && !(r->xT = mem_alloc(sizeof(float) * (size_t)r->B * r->D, &err)))
        return api_status(&m->head, DDPM_ERR_NOMEM, &err);
    if (o->ntrack && !(r->track = mem_alloc(sizeof(float) * (size_t)o->ntrack * r->B * r->D, &err)))
        return api_status(&m->head, DDPM_ERR_NOMEM, &err);
    if (conditional) {
        if (!(r->labels = mem_alloc(sizeof *r->labels * (size_t)r->n, &err)))
            return api_status(&m->head, DDPM_ERR_NOMEM, &err);
        for (int i = 0; i < r->n; i++) r->labels[i] = o->classes ? o->classes[i] : m->null_class;
    }
    /* Guidance applies at the timesteps [from, to]; an interval with none of them is plain conditioning
     * (W = 0, the unconditional model, does not guide and ignores the interval). */
    int from = 0, to = m->sched.T - 1;
    if (conditional) guidance_timesteps(&m->sched, o->guidance_interval, &from, &to);
    const float w = from > to && r->w != 0.0f ? 1.0f : r->w;
    const int precision = exec_precision_parse(o->precision ? o->precision : "fp32");
    unet *u = NULL, *plain = NULL;
    if (api_model_net(m, conditional ? unet_guided_rows(w, r->B) : r->B, precision, &u, &err) ||
        (conditional ? unet_guided_denoiser(&r->den, &r->g, u, r->B, m->null_class, w, &err)
                     : unet_denoiser(&r->den, u, &err)))
        return api_status(&m->head, DDPM_ERR_RUNTIME, &err);
    if (conditional) {
        r->g.rescale = o->guidance_rescale;
        r->g.t_from = from, r->g.t_to = to;
        /* Calls outside the interval need the conditional rows alone: B rows, not 2B. */
        if ((from > 0 || to < m->sched.T - 1) && u->batch != r->B &&
            (api_model_plain_net(m, r->B, precision, &plain, &err) || unet_guided_plain(&r->g, plain, &err)))
            return api_status(&m->head, DDPM_ERR_RUNTIME, &err);
    }
    return DDPM_OK;
}

/* The tracked x0 of the batch of m images at image i (NHWC, [ntrack][m]) into
 * the caller's track_x0 [ntrack][n] (NCHW). */
static void copy_track(const ddpm_model *m, const sample_run *r, int i, int mb)
{
    const int C = m->cfg.in_channels, HW = m->cfg.sample_size * m->cfg.sample_size;
    for (int j = 0; j < r->o->ntrack; j++)
        ops_nhwc_to_nchw(r->o->track_x0 + ((size_t)j * r->n + i) * r->D, r->track + (size_t)j * mb * r->D, mb, C, HW);
}

/* Samples this rank's share in the batches of B a plain run uses. */
static int run_share(ddpm_model *m, sample_run *r)
{
    const int C = m->cfg.in_channels, HW = m->cfg.sample_size * m->cfg.sample_size;
    const int nb = (r->count + r->B - 1) / r->B;
    run_watch watch = {dist_rank() == 0 ? r->o->progress : NULL, r->o->progress_ctx, 0,
                       (long long)nb * r->so.steps, 0, 0, &r->den};
    denoiser den = {watch_eps, &watch, r->den.batch, r->den.D, r->den.out_mult};
    err_t err = {0};
    for (int i = 0; i < r->count; i += r->B) {
        const int mb = r->count - i < r->B ? r->count - i : r->B, g = r->first + i;
        if (r->labels) r->g.y = r->labels + g; /* the batch's classes */
        if (r->xT) ops_nchw_to_nhwc(r->xT, r->o->noise + (size_t)g * r->D, mb, C, HW);
        r->so.track_x0 = r->track;
        if (sampler_run(&den, &m->sched, &r->so, r->o->first_index + g, mb, r->x + (size_t)i * r->D, r->xT,
                        watch_progress, &watch, &err)) {
            if (watch.cancelled) return api_fail(&m->head, DDPM_ERR_CANCELLED, "ddpm_sample: cancelled");
            return api_status(&m->head, DDPM_ERR_NONFINITE, &err);
        }
        if (r->track) copy_track(m, r, g, mb);
        watch.base += watch.last;
    }
    if (watch.cancelled) return api_fail(&m->head, DDPM_ERR_CANCELLED, "ddpm_sample: cancelled");
    return DDPM_OK;
}

/* *r (=) the sum of every rank's range statistics. */
static int range_sum(sample_range *r)
{
    sample_range *ranks = malloc(sizeof *ranks * (size_t)dist_size());
    if (dist_or(!ranks)) {
        free(ranks);
        return -1;
    }
    dist_allgather(r, ranks, sizeof *r);
    *r = (sample_range){0};
    for (int q = 0; q < dist_size(); q++) {
        r->images += ranks[q].images, r->pixels += ranks[q].pixels;
        r->out_pixels += ranks[q].out_pixels, r->out_images += ranks[q].out_images;
        r->max_abs = ranks[q].max_abs > r->max_abs ? ranks[q].max_abs : r->max_abs;
    }
    free(ranks);
    return 0;
}

int ddpm_sample(ddpm_model *m, const ddpm_sample_options *o, int n, float *x, ddpm_sample_report *report)
{
    API_REQUIRE(NULL, m);
    API_REQUIRE(&m->head, o);
    const int root = dist_rank() == 0;
    sample_run r = {.o = o, .n = n, .D = api_model_image_size(m)};
    int st = DDPM_OK;
    if (n < 1)
        st = api_fail(&m->head, DDPM_ERR_ARG, "ddpm_sample: n = %d, need at least 1 image", n);
    else if (root && !x)
        st = api_fail(&m->head, DDPM_ERR_ARG, "ddpm_sample: x is NULL");
    else if (!(st = resolve(m, o, &r.so, &r.w, &m->head))) {
        r.B = o->batch < n ? o->batch : n;
        r.so.range = &r.range;
        dist_share(n, r.B, dist_rank(), &r.first, &r.count);
        st = run_setup(m, &r, x);
    }
    /* Setting up may fail on one rank alone: every rank learns it before sampling. */
    if ((st = api_model_agree(m, "ddpm_sample", st))) goto done;
    st = run_share(m, &r);
    if ((st = api_model_agree(m, "ddpm_sample", st))) goto done;
    /* On rank 0 the gather is in place: its share already lies at the start of x. */
    if (dist_gather_share(r.x, r.x, n, r.B, sizeof(float) * r.D) || range_sum(&r.range)) {
        st = api_fail(&m->head, DDPM_ERR_NOMEM, "ddpm_sample: out of memory");
        goto done;
    }
    if (root) { /* NHWC -> NCHW, image by image in place */
        const int C = m->cfg.in_channels, HW = m->cfg.sample_size * m->cfg.sample_size;
        for (int i = 0; i < n; i++) {
            ops_nhwc_to_nchw(r.tmp, x + (size_t)i * r.D, 1, C, HW);
            memcpy(x + (size_t)i * r.D, r.tmp, sizeof(float) * r.D);
        }
    }
    if (report)
        *report = (ddpm_sample_report){r.range.images, r.range.pixels, r.range.out_pixels, r.range.out_images,
                                       r.range.max_abs};
done:
    unet_guided_free(&r.g);
    free(r.own), free(r.xT), free(r.track), free(r.tmp), free(r.labels);
    return st;
}

void ddpm_sample_report_add(ddpm_sample_report *r, int n, size_t values_per_image, const float *x)
{
    if (!r || !x || n < 1) return;
    sample_range s = {r->images, r->pixels, r->out_pixels, r->out_images, r->max_abs};
    sampler_range_add(&s, x, n, values_per_image);
    *r = (ddpm_sample_report){s.images, s.pixels, s.out_pixels, s.out_images, s.max_abs};
}
