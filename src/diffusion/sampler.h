/* sampler.h -- the sampling loops: ancestral DDPM sampling (paper Algorithm 2,
 * diffusers DDPMPipeline + DDPMScheduler) and DDIM (diffusers DDIMPipeline +
 * DDIMScheduler), both driving the U-Net over a batch and stepping with
 * ddpm_step / ddim_step (diffusion.h).
 *
 * Timesteps: K = o->steps inference steps from timesteps_set(T, K,
 * s->timestep_spacing, s->steps_offset) -- diffusers' set_timesteps; with the
 * default "leading" spacing and K = T this is T-1, ..., 0 (plain Algorithm 2).
 * DDPM steps to the next listed timestep (-1 after the last: x_0), with
 * sigma^2 from s->variance_type (fixed_small: posterior variance beta~,
 * fixed_large: beta'), predicted x_0 clamped to +-s->clip_range when
 * s->clip_sample; no noise at t = 0. DDIM steps to t - T/K (ddim_prev_t),
 * sigma = eta * DDIM eq. 16, noise only when eta > 0.
 *
 * Randomness (rng.h) depends only on (seed, global image index, timestep),
 * never on the batch size, the batch position or the thread count. For the
 * image with global index g = first_index + i, with D = H*W*C values in NHWC
 * order (the image's [H, W, C] block):
 *   x_T          = rng_normal(D, seed, RNG_PRIOR,  g)
 *   z at step t  = rng_normal(D, seed, RNG_SAMPLE, rng_stream(t, g))
 * So sampling 64 images in batches of 16 draws exactly the noise of one batch
 * of 64. Whether the results are then bitwise equal also depends on the
 * network's arithmetic being independent of the batch it runs in (see
 * unet.h); the noise never differs.
 *
 * The network always runs u->batch images; when n < u->batch the unused rows
 * are zero (their outputs are ignored).
 */
#ifndef DDPM_SAMPLER_H
#define DDPM_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "diffusion/schedule.h"
#include "model/unet.h"

typedef struct sampler_opts {
    int ddim;      /* 0: DDPM (ancestral), 1: DDIM */
    int steps;     /* K inference steps, 1..T */
    float eta;     /* DDIM only: 0 = deterministic, 1 = DDPM-like variance; in [0, 1] */
    uint64_t seed;
    /* Optional (zero = off): the x0 the model predicts at the ntrack timesteps
     * track_t[j] (each one the sampler visits) go to track_x0[(j * n + i) * D]
     * for image i (progressive generation, the paper's Fig. 6). */
    int ntrack;
    const int *track_t;
    float *track_x0;
    /* Optional: start_from > 0 runs only the steps at timesteps <= start_from - 1
     * (x_T is then the given x_t at that timestep: interpolation, Fig. 8). */
    int start_from;
} sampler_opts;

/* Called after every network evaluation: done of total (total = K). */
typedef void (*sampler_progress)(void *ctx, int done, int total);

/* Checks the options against the schedule: steps in 1..T, eta finite in
 * [0, 1], eta == 0 for DDPM, and that the timestep list can be built (e.g. a
 * too large steps_offset). Returns 0, or -1 with a message naming the option. */
int sampler_check(const schedule *s, const sampler_opts *o, ddpm_err *err);

/* The K inference timesteps (descending) into ts[0..K-1], and the timestep
 * each one steps to into prev[0..K-1] (-1 or below: to x_0). Either array may
 * be NULL. Same errors as sampler_check. */
int sampler_timesteps(const schedule *s, const sampler_opts *o, int *ts, int *prev, ddpm_err *err);

/* Draws x_T for images first_index .. first_index+n-1 into x[n, D] (D values
 * per image, NHWC): image i gets rng_normal(D, seed, RNG_PRIOR, first_index+i). */
void sampler_prior(uint64_t seed, int first_index, int n, size_t D, float *x);

/* Runs the sampler for n images (1 <= n <= u->batch) whose global indices are
 * first_index .. first_index+n-1. x_T: the starting noise [n, H, W, C] (NHWC),
 * or NULL to draw it with sampler_prior. x: the result [n, H, W, C] in [-1, 1]
 * (exactly so when s->clip_sample with range 1; otherwise approximately); x
 * may be the same buffer as x_T. cb (may be NULL) reports progress.
 * Requires u's out_channels == in_channels. Allocates its working buffers
 * (2 * u->batch images) once per call.
 * Errors: bad options (sampler_check), out of memory, or non-finite values --
 * the network's output or the sample at some step (message names the image
 * and timestep); x is then unspecified. */
int sampler_run(unet *u, const schedule *s, const sampler_opts *o, int first_index, int n, float *x,
                const float *x_T, sampler_progress cb, void *ctx, ddpm_err *err);

/* Reports non-finite values in x[n, D] (n images of D values): returns 0 if
 * all are finite, else -1 with "<what>: N non-finite value(s) (NaN/Inf),
 * first in image I at element J" (I counted from first_index). */
int sampler_check_finite(const char *what, const float *x, int n, size_t D, int first_index, ddpm_err *err);

#endif
