/* denoiser.c -- the U-Net as a denoiser: plain, with labels, guided (see denoiser.h). */
#include "model/denoiser.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

/* rows [n][HW][2C] (NHWC, a learned-variance network's output) into its
 * halves: mean[n][HW][C] (the first C channels) and var[n][HW][C]. */
static void split_halves(const float *rows, int n, size_t HW, int C, float *mean, float *var) {
    for (size_t p = 0; p < (size_t)n * HW; p++) {
        memcpy(mean + p * C, rows + p * 2 * C, sizeof(float) * C);
        memcpy(var + p * C, rows + p * 2 * C + C, sizeof(float) * C);
    }
}

/* u's output for all its rows (labels y, may be NULL) in the denoiser's
 * layout: out[batch][D], then for a learned-variance network the variance
 * half out[batch + i][D]. */
static int forward_halves(unet *u, float *out, const float *x, const float *t, const int32_t *y, err_t *err) {
    if (u->cfg.out_channels == u->cfg.in_channels) return unet_forward(u, out, x, t, y, NULL, err);
    const size_t HW = (size_t)u->cfg.sample_size * u->cfg.sample_size, D = HW * u->cfg.in_channels;
    float *rows = mem_alloc_floats((size_t)u->batch * 2 * D, err);
    int rc = rows ? unet_forward(u, rows, x, t, y, NULL, err) : -1;
    if (!rc) split_halves(rows, u->batch, HW, u->cfg.in_channels, out, out + (size_t)u->batch * D);
    free(rows);
    return rc;
}

static int unet_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    (void)n;
    return forward_halves(ctx, eps, x, t, NULL, err); /* all u->batch rows: the caller's buffers have them */
}

int unet_denoiser(denoiser *d, unet *u, err_t *err) {
    const unet_config *c = &u->cfg;
    const int mult = c->out_channels / c->in_channels;
    if (c->out_channels != mult * c->in_channels || mult > 2)
        return err_fail(err, "sampler: the model predicts %d channels for %d input channels (the same, or twice "
                              "as many for a learned variance)", c->out_channels, c->in_channels);
    *d = (denoiser){.eps = unet_eps, .ctx = u, .batch = u->batch,
                    .D = (size_t)c->sample_size * c->sample_size * c->in_channels, .out_mult = mult};
    return 0;
}

/* --------------------------------------------------------------- labelled */

static int labelled_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    unet_labelled *l = ctx;
    if (l->yb) /* the labels, padded with the null class */
        for (int i = 0; i < l->u->batch; i++) l->yb[i] = l->y && i < n ? l->y[i] : l->u->cfg.num_class_embeds - 1;
    return forward_halves(l->u, eps, x, t, l->yb, err);
}

int unet_labelled_denoiser(denoiser *d, unet_labelled *l, unet *u, err_t *err) {
    memset(l, 0, sizeof *l);
    if (unet_denoiser(d, u, err)) return -1;
    l->u = u;
    if (u->cfg.num_class_embeds > 0 && !(l->yb = mem_calloc((size_t)u->batch, sizeof *l->yb, err))) return -1;
    d->eps = labelled_eps;
    d->ctx = l;
    return 0;
}

void unet_labelled_free(unet_labelled *l) {
    free(l->yb);
    memset(l, 0, sizeof *l);
}

/* ----------------------------------------------------------------- guided */

/* The unbiased standard deviation of v[0..n-1] (n >= 2), in double. */
static double stdev(const float *v, size_t n) {
    double m = 0, q = 0;
    for (size_t i = 0; i < n; i++) m += v[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
    return sqrt(q / (double)(n - 1));
}

/* diffusers' rescale_noise_cfg on one image: g = r (g std(c)/std(g)) + (1 - r) g,
 * in float as torch computes it from its float32 standard deviations. */
static void rescale(float *g, const float *c, size_t D, float r) {
    float sg = (float)stdev(g, D), sc = (float)stdev(c, D);
    if (!(sg > 0)) return;
    const float f = sc / sg, keep = (float)(1.0 - (double)r);
    for (size_t j = 0; j < D; j++) g[j] = r * (g[j] * f) + keep * g[j];
}

int unet_guided_rows(float w, int B) { return w == 0.0f || w == 1.0f ? B : 2 * B; }

/* Whether timestep t lies outside g's guidance interval. */
static int outside(const unet_guided *g, float t) { return t < (float)g->t_from || t > (float)g->t_to; }

/* eps of the B rows (D values each) from the conditional rows c and the
 * unconditional rows u: guided at the rows whose timestep t lies in g's
 * interval (then rescaled), else c as it is. */
static void guided_mix(const unet_guided *g, float *eps, const float *c, const float *u, const float *t, size_t D) {
    for (int i = 0; i < g->B; i++) {
        float *e = eps + (size_t)i * D;
        const float *ci = c + (size_t)i * D;
        if (outside(g, t[i])) {
            memcpy(e, ci, sizeof(float) * D);
            continue;
        }
        ops_guidance_mix(e, ci, u + (size_t)i * D, g->w, D);
        if (g->rescale > 0) rescale(e, ci, D, g->rescale);
    }
}

static int guided_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    unet_guided *g = ctx;
    const int B = g->B, R = g->u->batch;
    const size_t D = (size_t)g->u->cfg.sample_size * g->u->cfg.sample_size * g->u->cfg.in_channels;
    int plain = g->plain != NULL;
    for (int i = 0; plain && i < B; i++) plain = outside(g, t[i]);
    if (plain) { /* the conditional rows alone */
        for (int i = 0; i < B; i++) g->yin[i] = i < n ? g->y[i] : g->null_class;
        return forward_halves(g->plain, eps, x, t, g->yin, err);
    }
    /* Rows [0, B): the labels (w != 0) or the null class; rows [B, 2B): the null class. */
    for (int r = 0; r < R; r++) {
        memcpy(g->xin + (size_t)r * D, x + (size_t)(r % B) * D, D * sizeof *x);
        g->tin[r] = t[r % B];
        g->yin[r] = r < B && r < n && g->w != 0.0f ? g->y[r] : g->null_class;
    }
    if (g->u->cfg.out_channels != g->u->cfg.in_channels) { /* a variance half: guidance mixes the mean half */
        const size_t HW = D / (size_t)g->u->cfg.in_channels;
        if (unet_forward(g->u, g->rows, g->xin, g->tin, g->yin, NULL, err)) return -1;
        if (R == B) {
            split_halves(g->rows, R, HW, g->u->cfg.in_channels, eps, eps + (size_t)B * D);
        } else { /* xin is free until the next call: the variance of the R rows; the conditional ones' stay */
            split_halves(g->rows, R, HW, g->u->cfg.in_channels, g->out, g->xin);
            memcpy(eps + (size_t)B * D, g->xin, sizeof(float) * (size_t)B * D);
            guided_mix(g, eps, g->out, g->out + (size_t)B * D, t, D);
        }
    } else {
        if (unet_forward(g->u, R == B ? eps : g->out, g->xin, g->tin, g->yin, NULL, err)) return -1;
        if (R > B) guided_mix(g, eps, g->out, g->out + (size_t)B * D, t, D); /* cond, uncond */
    }
    return 0;
}

int unet_guided_denoiser(denoiser *d, unet_guided *g, unet *u, int B, int null_class, float w, err_t *err) {
    memset(g, 0, sizeof *g);
    if (unet_denoiser(d, u, err)) return -1;
    if (u->cfg.num_class_embeds <= 0) return err_fail(err, "guidance: the model is not class-conditional");
    if (!isfinite(w) || w < 0) return err_fail(err, "guidance: the weight must be >= 0, is %g", (double)w);
    if (w != 1.0f && (null_class < 0 || null_class >= u->cfg.num_class_embeds))
        return err_fail(err, "guidance %g needs the model's null class (ddpm's conditional models have one; "
                              "this one has none: use --guidance 1)", (double)w);
    ERR_ASSERT(u->batch == unet_guided_rows(w, B));
    const size_t D = d->D, R = (size_t)u->batch;
    *g = (unet_guided){.u = u, .null_class = null_class, .w = w, .B = B, .t_from = 0, .t_to = INT_MAX};
    g->xin = mem_alloc_floats(R * D, err);
    g->out = g->xin ? mem_alloc_floats(R * D, err) : NULL;
    g->tin = g->out ? mem_alloc_floats(R, err) : NULL;
    g->rows = g->tin && d->out_mult == 2 ? mem_alloc_floats(R * 2 * D, err) : NULL;
    g->yin = g->tin && (d->out_mult == 1 || g->rows) ? mem_calloc(R, sizeof *g->yin, err) : NULL;
    if (!g->yin) {
        unet_guided_free(g);
        return -1;
    }
    *d = (denoiser){.eps = guided_eps, .ctx = g, .batch = B, .D = D, .out_mult = d->out_mult};
    return 0;
}

int unet_guided_plain(unet_guided *g, unet *plain, err_t *err) {
    const unet *u = g->u;
    if (plain->batch != g->B || plain->precision != u->precision || plain->nparams != u->nparams)
        return err_fail(err, "guidance: the network for the calls outside the interval has %d rows (need %d), "
                        "or another precision or model", plain->batch, g->B);
    g->plain = plain;
    return 0;
}

void unet_guided_free(unet_guided *g) {
    free(g->xin), free(g->out), free(g->tin), free(g->yin), free(g->rows);
    memset(g, 0, sizeof *g);
}
