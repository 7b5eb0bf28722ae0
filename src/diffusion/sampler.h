/* sampler.h -- the sampling loops over an eps function (a "denoiser"):
 * ancestral DDPM (paper Algorithm 2, diffusers DDPMScheduler), DDIM
 * (DDIMScheduler) and DPM-Solver++ 2M (DPMSolverMultistepScheduler with
 * algorithm_type "dpmsolver++", solver_order 2, lower_order_final), with
 * clip_sample or dynamic thresholding of the predicted x0, and the samples
 * contract: the result is clamped to [-1, 1] unless raw output is asked for.
 *
 * The samplers see the network only as eps(x_t, t) over a batch (a denoiser,
 * diffusion/denoiser.h): the U-Net, guidance or distributed evaluation
 * compose without the samplers knowing.
 *
 * Timesteps: K = o->steps inference steps.
 *  - DDPM and DDIM: diffusion_timesteps_set(T, K, spacing, steps_offset), diffusers'
 *    set_timesteps; with the default "leading" spacing and K = T this is
 *    T-1, ..., 0 (plain Algorithm 2). DDPM steps to the next listed timestep
 *    (-1 after the last: x_0) with sigma^2 from s->variance_type, no noise at
 *    t = 0; DDIM steps to t - T/K (diffusion_ddim_prev_t), sigma = eta * DDIM eq. 16.
 *  - DPM++ 2M: diffusion_dpm_timesteps (its own set_timesteps), sigmas from diffusion_dpm_sigma
 *    plus a final 0; first order at the first and the last step, second
 *    order (midpoint) in between. Deterministic.
 * The spacing is o->spacing, or the schedule's timestep_spacing when NULL.
 *
 * Randomness (rng.h) depends only on (seed, global image index, timestep),
 * never on the batch size, the batch position or the thread count. For the
 * image with global index g = first_index + i, with D values per image:
 *   x_T          = rng_normal(D, seed, RNG_PRIOR,  g)
 *   z at step t  = rng_normal(D, seed, RNG_SAMPLE, rng_stream(t, g))
 * So sampling 64 images in batches of 16 draws exactly the noise of one batch
 * of 64; the images are then equal up to the network's rounding, which may
 * depend on the batch it runs in (see docs/determinism.md).
 */
#ifndef DDPM_SAMPLER_H
#define DDPM_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "diffusion/denoiser.h"
#include "diffusion/schedule.h"

typedef enum sampler_kind {
    SAMPLER_DDPM,  /* "ddpm": ancestral sampling */
    SAMPLER_DDIM,  /* "ddim" */
    SAMPLER_DPMPP, /* "dpm++2m": DPM-Solver++ (2M) */
    SAMPLER_KINDS
} sampler_kind;

/* "ddpm", "ddim", "dpm++2m". */
const char *sampler_name(sampler_kind k);
/* Parses one of those names; -1 with a message listing them otherwise. */
int sampler_parse(const char *name, sampler_kind *k, err_t *err);
/* The network calls a sampler of kind k makes when none are asked for, on a
 * schedule of T steps: 50 for ancestral sampling, whose FID keeps improving
 * with calls on models trained for minutes (docs/quality.md), 20 for DDIM and
 * DPM-Solver++, which gain nothing beyond; at most T (T - 1 for dpm++2m). */
int sampler_default_steps(sampler_kind k, int T);

/* What is done to each predicted x0 before it is used. */
typedef enum x0_mode {
    X0_CONFIG = 0, /* the schedule's: thresholding if set, else clip_sample */
    X0_NONE,       /* as predicted */
    X0_CLIP,       /* clamped to +-clip_range (clip_sample) */
    X0_THRESHOLD   /* dynamic thresholding (diffusion_x0_threshold) */
} x0_mode;

/* Out-of-range statistics of final samples before the clamp of the samples
 * contract: a pixel is out of range when |x| > SAMPLE_RANGE_TOL, and an image
 * is out of range when more than SAMPLE_OUT_IMAGE_FRAC of its pixels are. The
 * tolerance ignores the small overshoot of values that should be exactly +-1
 * (a flat background), which a working model makes too. */
#define SAMPLE_RANGE_TOL 1.05f
#define SAMPLE_OUT_IMAGE_FRAC 0.01
typedef struct sample_range {
    long long images, pixels;  /* counted so far */
    long long out_pixels;      /* pixels with |x| > SAMPLE_RANGE_TOL */
    long long out_images;      /* images with more than SAMPLE_OUT_IMAGE_FRAC of their pixels out */
    double max_abs;            /* the largest |x| */
} sample_range;

/* Adds n images of D values to r. */
void sampler_range_add(sample_range *r, const float *x, int n, size_t D);

typedef struct sampler_opts {
    sampler_kind kind;
    int steps;          /* K inference steps, 1..T (DPM++ with leading/linspace spacing: 1..T-1) */
    float eta;          /* DDIM only: 0 = deterministic, 1 = DDPM-like variance; in [0, 1] */
    uint64_t seed;
    const char *spacing; /* "leading" | "trailing" | "linspace"; NULL: the schedule's timestep_spacing */
    x0_mode x0;          /* X0_CONFIG (zero) follows the schedule */
    float threshold_ratio; /* X0_THRESHOLD: the percentile (0: the schedule's dynamic_thresholding_ratio) */
    float threshold_max;   /* X0_THRESHOLD: sample_max_value (0: the schedule's) */
    int raw;             /* 1: return the final x as computed; 0: clamped to [-1, 1] */
    sample_range *range; /* optional: the final x is added here before the clamp */
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

/* Checks the options against the schedule: the kind, steps in range, eta
 * finite in [0, 1] and 0 unless DDIM, the x0 mode and its parameters, and
 * that the timestep list can be built (e.g. a too large steps_offset).
 * Returns 0, or -1 with a message naming the option. */
int sampler_check(const schedule *s, const sampler_opts *o, err_t *err);

/* The K inference timesteps (descending) into ts[0..K-1], and the timestep
 * each one steps to into prev[0..K-1] (-1 or below: to x_0). Either array may
 * be NULL. Same errors as sampler_check. */
int sampler_timesteps(const schedule *s, const sampler_opts *o, int *ts, int *prev, err_t *err);

/* Draws x_T for images first_index .. first_index+n-1 into x[n, D] (D values
 * per image, NHWC): image i gets rng_normal(D, seed, RNG_PRIOR, first_index+i). */
void sampler_prior(uint64_t seed, int first_index, int n, size_t D, float *x);

/* Runs the sampler for n images (1 <= n <= d->batch) whose global indices are
 * first_index .. first_index+n-1. x_T: the starting noise [n, D], or NULL to
 * draw it with sampler_prior. x: the result [n, D], in [-1, 1] unless o->raw;
 * x may be the same buffer as x_T. cb (may be NULL) reports progress.
 * Allocates its working buffers once per call.
 * Errors: bad options (sampler_check), out of memory, the denoiser's errors,
 * or non-finite values -- the network's output or the sample at some step
 * (message names the image and timestep); x is then unspecified. */
int sampler_run(const denoiser *d, const schedule *s, const sampler_opts *o, int first_index, int n, float *x,
                const float *x_T, sampler_progress cb, void *ctx, err_t *err);

/* Reports non-finite values in x[n, D] (n images of D values): returns 0 if
 * all are finite, else -1 with "<what>: N non-finite value(s) (NaN/Inf),
 * first in image I at element J" (I counted from first_index). */
int sampler_check_finite(const char *what, const float *x, int n, size_t D, int first_index, err_t *err);

#endif
