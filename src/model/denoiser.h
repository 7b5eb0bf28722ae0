/* denoiser.h -- the U-Net as the samplers' and the bound's eps function
 * (diffusion/denoiser.h): plain, with class labels, or guided. diffusion/
 * knows no model type; these adapters are where the U-Net meets it. */
#ifndef DDPM_MODEL_DENOISER_H
#define DDPM_MODEL_DENOISER_H

#include <stdint.h>

#include "core/status.h"
#include "diffusion/denoiser.h"
#include "model/unet.h"

/* The U-Net as a denoiser (batch u->batch; calls with fewer images run
 * zero-padded rows, see unet.h), unconditional. Requires out_channels ==
 * in_channels (no learned variance); returns -1 with a message otherwise. */
int unet_denoiser(denoiser *d, unet *u, err_t *err);

/* The U-Net as a denoiser whose rows carry class labels: row i of a call
 * with n images gets y[i] for i < n and the last class (a ddpm model's null
 * class) otherwise, or the last class everywhere when y is NULL (set l->y
 * before each call: the batch's labels). An unconditional u gets no labels.
 * Same refusals as unet_denoiser; the caller keeps l alive and calls
 * unet_labelled_free. */
typedef struct unet_labelled {
    unet *u;          /* ctx of the denoiser */
    const int32_t *y; /* the labels of the batch's images, or NULL */
    int32_t *yb;      /* [u->batch] the rows' labels (NULL: unconditional) */
} unet_labelled;

int unet_labelled_denoiser(denoiser *d, unet_labelled *l, unet *u, err_t *err);
void unet_labelled_free(unet_labelled *l);

/* Classifier-free guidance (Ho & Salimans 2021) over a class-conditional
 * U-Net, as diffusers' pipelines compute it:
 *   eps = eps(x, t, null) + w (eps(x, t, y) - eps(x, t, null)),
 * then with rescale R > 0 diffusers' rescale_noise_cfg (Lin et al. 2023) per
 * image: eps = R eps std(eps(x, t, y)) / std(eps) + (1 - R) eps, the std
 * over the image's values, unbiased (torch's)
 * with both evaluations in one forward pass of 2B rows (the unconditional
 * half after the conditional one). w = 1 is plain conditioning and w = 0 the
 * unconditional model: each is one evaluation of B rows. The labels of the
 * rows of the next calls are y[0..B-1] (set g->y before each sampler_run:
 * the batch's labels). Guidance applies at the timesteps t_from <= t <= t_to
 * (a guidance interval, Kynkaenniemi et al. 2024; by default every one):
 * elsewhere eps is the conditional output as it is, unmixed and unrescaled. */
typedef struct unet_guided {
    unet *u;          /* batch unet_guided_rows(w, B); ctx of the denoiser */
    const int32_t *y; /* the labels of the batch's images */
    int null_class;   /* the model's null class */
    float w;
    float rescale;    /* guidance_rescale in [0, 1] (set after unet_guided_denoiser; 0: off) */
    int t_from, t_to; /* the guidance interval in timesteps (set after unet_guided_denoiser; 0, INT_MAX) */
    unet *plain;      /* NULL, or B rows for the calls outside the interval (unet_guided_plain; borrowed) */
    int B;
    float *xin, *tin, *out; /* [2B] rows of scratch */
    float *rows;      /* [2B] rows of a learned-variance network's whole output (NULL otherwise) */
    int32_t *yin;
} unet_guided;

/* Rows the network of a guided denoiser of batch B needs: 2B, or B when w is 0 or 1. */
int unet_guided_rows(float w, int B);

/* A guided denoiser of batch B over u (which has unet_guided_rows(w, B) rows
 * and null_class in range); the caller keeps g alive and calls unet_guided_free. */
int unet_guided_denoiser(denoiser *d, unet_guided *g, unet *u, int B, int null_class, float w, err_t *err);
/* Gives g the network `plain` (B rows, g's network's parameters and
 * precision; the caller keeps it alive) for the calls whose timesteps all lie
 * outside the guidance interval: only the conditional rows are needed there,
 * so they cost B rows, not 2B, and equal plain conditioning (W = 1) bit for
 * bit. Returns 0, or -1 with err set when plain does not fit g. */
int unet_guided_plain(unet_guided *g, unet *plain, err_t *err);
void unet_guided_free(unet_guided *g);

#endif
