/* denoiser.h -- what the samplers (sampler.h) and the bound (bound.h) see of
 * a network: eps(x_t, t) over a batch, a function and its context. diffusion/
 * knows no model type; the adapters that make a network into a denoiser live
 * beside the network (a U-Net, a guided U-Net, a U-Net with class labels). */
#ifndef DDPM_DIFFUSION_DENOISER_H
#define DDPM_DIFFUSION_DENOISER_H

#include <stddef.h>

#include "core/status.h"

/* eps(x_t, t) for n images: x[n, D] at timesteps t[n] into eps[n, D].
 * Returns 0, or -1 with err set. */
typedef int (*denoiser_fn)(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err);

typedef struct denoiser {
    denoiser_fn eps;
    void *ctx;
    int batch;   /* the most images one call takes */
    size_t D;    /* values per image */
} denoiser;

#endif
