/* denoiser.c -- the U-Net as a denoiser: plain, with labels, guided (see denoiser.h). */
#include "model/denoiser.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static int unet_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    (void)n;
    return unet_forward(ctx, eps, x, t, NULL, NULL, err); /* all u->batch rows: the caller's buffers have them */
}

int unet_denoiser(denoiser *d, unet *u, err_t *err) {
    const unet_config *c = &u->cfg;
    if (c->out_channels != c->in_channels)
        return err_fail(err, "sampler: the model predicts %d channels for %d input channels (learned variance "
                              "models are not supported)", c->out_channels, c->in_channels);
    *d = (denoiser){.eps = unet_eps, .ctx = u, .batch = u->batch,
                    .D = (size_t)c->sample_size * c->sample_size * c->in_channels};
    return 0;
}

/* --------------------------------------------------------------- labelled */

static int labelled_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    unet_labelled *l = ctx;
    if (l->yb) /* the labels, padded with the null class */
        for (int i = 0; i < l->u->batch; i++) l->yb[i] = l->y && i < n ? l->y[i] : l->u->cfg.num_class_embeds - 1;
    return unet_forward(l->u, eps, x, t, l->yb, NULL, err);
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

int unet_guided_rows(float w, int B) { return w == 0.0f || w == 1.0f ? B : 2 * B; }

static int guided_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    unet_guided *g = ctx;
    const int B = g->B, R = g->u->batch;
    const size_t D = (size_t)g->u->cfg.sample_size * g->u->cfg.sample_size * g->u->cfg.in_channels;
    /* Rows [0, B): the labels (w != 0) or the null class; rows [B, 2B): the null class. */
    for (int r = 0; r < R; r++) {
        memcpy(g->xin + (size_t)r * D, x + (size_t)(r % B) * D, D * sizeof *x);
        g->tin[r] = t[r % B];
        g->yin[r] = r < B && r < n && g->w != 0.0f ? g->y[r] : g->null_class;
    }
    if (unet_forward(g->u, R == B ? eps : g->out, g->xin, g->tin, g->yin, NULL, err)) return -1;
    if (R > B) ops_guidance_mix(eps, g->out, g->out + (size_t)B * D, g->w, (size_t)B * D); /* cond, uncond */
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
    *g = (unet_guided){.u = u, .null_class = null_class, .w = w, .B = B};
    g->xin = mem_alloc_floats(R * D, err);
    g->out = g->xin ? mem_alloc_floats(R * D, err) : NULL;
    g->tin = g->out ? mem_alloc_floats(R, err) : NULL;
    g->yin = g->tin ? mem_calloc(R, sizeof *g->yin, err) : NULL;
    if (!g->yin) {
        unet_guided_free(g);
        return -1;
    }
    *d = (denoiser){.eps = guided_eps, .ctx = g, .batch = B, .D = D};
    return 0;
}

void unet_guided_free(unet_guided *g) {
    free(g->xin), free(g->out), free(g->tin), free(g->yin);
    memset(g, 0, sizeof *g);
}
