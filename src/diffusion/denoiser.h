/* denoiser.h -- what the samplers (sampler.h) and the bound (bound.h) see of
 * a network: eps(x_t, t) over a batch, a function and its context. diffusion/
 * knows no model type; the adapters that make a network into a denoiser live
 * beside the network (a U-Net, a guided U-Net, a U-Net with class labels). */
#ifndef DDPM_DIFFUSION_DENOISER_H
#define DDPM_DIFFUSION_DENOISER_H

#include <stddef.h>

#include "core/status.h"

/* The network's output for n images: x[n, D] at timesteps t[n] into
 * eps[batch, D] (its rows n..batch-1 are scratch), followed, for a network
 * that also predicts its variance (out_mult 2), by the variance outputs
 * eps[batch + i, D] of image i. Returns 0, or -1 with err set. */
typedef int (*denoiser_fn)(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err);

typedef struct denoiser {
    denoiser_fn eps;
    void *ctx;
    int batch;   /* the most images one call takes */
    size_t D;    /* values per image */
    int out_mult; /* 1, or 2 when the output has a variance half (variance_type learned_range) */
} denoiser;

#endif
