/* bound.h -- the variational bound of the paper (Sec. 3.3, Eq. 5 and 13) per
 * image, in nats: L_T (prior KL), L_{t-1} for t = 2..T (KL between the forward
 * posterior and the model's reverse step, fixed variance from the schedule),
 * and L_0 (the discretized decoder). The model's step uses the x_0 it
 * predicts from eps, clipped to [-1, 1], as the official code's calc_bpd_loop.
 * Every term is evaluated (no subsampling of t); x_t uses the noise
 * rng_normal(seed, RNG_EVAL, rng_stream(t, image)), so the noise does not
 * depend on the batch size (the network's rounding may: see
 * docs/determinism.md). Accumulation is in double. */
#ifndef DDPM_BOUND_H
#define DDPM_BOUND_H

#include <stdint.h>

#include "core/status.h"
#include "diffusion/denoiser.h"
#include "diffusion/schedule.h"

/* For n <= d->batch images x0 [n, H, W, C] in [-1, 1] (D = d->D values each)
 * with global indices first_index..: terms[i * (T + 1) + t] = the term of
 * 0-based timestep t in nats (t = 0: the decoder L_0; t >= 1: the KL term of
 * step t, the paper's L_t), and terms[i * (T + 1) + T] = L_T (prior).
 * mse[i * T + t] (may be NULL) = mean squared error of the clipped x0
 * prediction at t. d is called with n images in buffers of d->batch rows (the
 * rows past n zero); a class-conditional network sees its labels through d
 * (the caller sets them). cb (may be NULL) is called after each of the T
 * network evaluations. Returns -1 on non-finite network output. */
int bound_terms(const denoiser *d, const schedule *s, const float *x0, int n, int first_index, uint64_t seed,
                double *terms, double *mse, void (*cb)(void *, int, int), void *ctx, err_t *err);

#endif
