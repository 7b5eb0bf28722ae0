/* diffusion.h -- the diffusion math on flat float arrays: the forward process
 * q(x_t | x_0), the L_simple loss value, inference timestep lists, the x0
 * prediction with clip_sample and dynamic thresholding, one reverse step of
 * the DDPM, DDIM and DPM-Solver++ samplers (diffusers DDPMScheduler.step /
 * DDIMScheduler.step / DPMSolverMultistepScheduler.step semantics, epsilon
 * prediction), and the terms of the
 * variational bound used for bits/dim (paper Sec. 3.3, Eq. 13).
 *
 * Conventions: timesteps are 0-based like diffusers (t = 0..T-1 is the paper's
 * t = 1..T); prev_t < 0 means "the step to x_0", where alphabar_prev = 1. Arrays
 * are n floats in the caller's layout (the math is element-wise); one call
 * handles one sample (one t), the caller loops over a batch. Scalar
 * coefficients are computed in double from the schedule's float tables, the
 * element-wise arithmetic is float in diffusers' operation order. Outputs may
 * be the same buffer as an input (in place), but must not partially overlap.
 * Out-of-range t / prev_t are programming errors (ERR_ASSERT).
 */
#ifndef DDPM_DIFFUSION_H
#define DDPM_DIFFUSION_H

#include <stddef.h>

#include "core/status.h"
#include "diffusion/schedule.h"

/* Forward process (diffusers add_noise): xt = sqrt(alphabar_t) x0 +
 * sqrt(1 - alphabar_t) eps, for 0 <= t < T. */
void diffusion_q_sample(const schedule *s, int t, const float *x0, const float *eps, float *xt, size_t n);

/* The same for n images of D values, image i at timestep t[i] (the op ops_q_sample_rows). */
void diffusion_q_sample_batch(const schedule *s, const int *t, int n, const float *x0, const float *eps, float *xt, size_t D);

/* The N inference timesteps of diffusers' set_timesteps(N), descending, into
 * out[0..N-1], for spacing "leading" ((N-1-i)*(T/N) + steps_offset, integer
 * T/N), "trailing" (round(T - i*T/N) - 1, numpy's arange and round-half-even
 * reproduced), or "linspace" (round(linspace(0, T-1, N)) reversed). If
 * numpy's arange yields N+1 "trailing" values (it does for some N, e.g.
 * T=1000, N=61, where diffusers then ends on t = -1) the first N are kept.
 * Errors: T < 1, N < 1, N > T, steps_offset < 0, unknown spacing, or a
 * timestep outside [0, T) (e.g. "leading" with a too large steps_offset).
 */
int diffusion_timesteps_set(int T, int N, const char *spacing, int steps_offset, int *out, err_t *err);

/* The model's prediction of x_0 from its eps at timestep t (0 <= t < T),
 * diffusers' pred_original_sample: x0 = (xt - sqrt(1 - ab) eps) / sqrt(ab),
 * ab = alphas_cumprod[t]. Not clipped: see diffusion_x0_clip and diffusion_x0_threshold. */
void diffusion_x0_from_eps(const schedule *s, int t, const float *eps, const float *xt, float *x0, size_t n);

/* The x0 of a network's output at timestep t, for s->prediction, as
 * diffusers' DDPMScheduler.step and DDIMScheduler.step compute it (ab =
 * alphas_cumprod[t]): epsilon (xt - sqrt(1 - ab) out) / sqrt(ab) (=
 * diffusion_x0_from_eps), sample out, v sqrt(ab) xt - sqrt(1 - ab) out. */
void diffusion_x0_from_output(const schedule *s, int t, const float *out, const float *xt, float *x0, size_t n);

/* The eps of a network's output at timestep t (DDIMScheduler.step's
 * pred_epsilon, from the output before x0 is clipped): epsilon out, sample
 * (xt - sqrt(ab) out) / sqrt(1 - ab), v sqrt(ab) out + sqrt(1 - ab) xt. */
void diffusion_eps_from_output(const schedule *s, int t, const float *out, const float *xt, float *eps, size_t n);

/* What the network learns to output for x0 and its noise eps at timestep t:
 * eps, x0, or v = sqrt(ab) eps - sqrt(1 - ab) x0 (diffusers get_velocity). */
void diffusion_target(const schedule *s, int t, const float *x0, const float *eps, float *target, size_t n);

/* clip_sample: clamps x0[0..n-1] to [-r, r]. */
void diffusion_x0_clip(float *x0, size_t n, float r);

/* Dynamic thresholding (Saharia et al. 2022; diffusers _threshold_sample) of
 * one image x0[0..n-1]: s = the ratio-quantile of |x0| (linear interpolation
 * between order statistics, as torch.quantile), clamped to [1, smax]; then
 * x0 = clamp(x0, -s, s) / s. scratch: n floats. Returns s. With smax = 1 it
 * is clip_sample to [-1, 1]. Requires 0 < ratio <= 1, smax >= 1, n >= 1. */
float diffusion_x0_threshold(float *x0, size_t n, float ratio, float smax, float *scratch);

/* One DDPM reverse step from x_t to x_prev (diffusers DDPMScheduler.step,
 * epsilon prediction), given the predicted x0 (diffusion_x0_from_eps, then clipped or
 * thresholded as configured). prev_t is the next inference timestep (t-1
 * without set_timesteps, or any -1 <= prev_t < t; -1 after the last). With
 * ab = alphas_cumprod[t], ab_prev = alphas_cumprod[prev_t] (1 if prev_t < 0),
 * a' = ab/ab_prev, b' = 1 - a':
 *   mean    = sqrt(ab_prev) b'/(1-ab) x0 + sqrt(a') (1-ab_prev)/(1-ab) x_t;
 *   x_prev  = mean + sigma z when t > 0 and z != NULL, else mean, with
 *             sigma^2 = max((1-ab_prev)/(1-ab) b', 1e-20) (fixed_small) or b'
 *             (fixed_large).
 * z: standard normal noise [n] (NULL = no noise; it is ignored at t == 0). */
void diffusion_ddpm_step(const schedule *s, int t, int prev_t, const float *x0, const float *xt, const float *z,
               float *x_prev, size_t n);

/* The same step for variance_type learned_range (DDPMScheduler.step and
 * _get_variance): v [n] is the network's variance output; with the fixed_small
 * sigma^2 above (floored at 1e-20) and beta', log sigma_i^2 = f_i log beta' +
 * (1 - f_i) log sigma^2, f_i = (v_i + 1)/2, and x_prev = mean +
 * exp(log sigma_i^2 / 2) z_i. */
void diffusion_ddpm_step_learned(const schedule *s, int t, int prev_t, const float *x0, const float *xt,
                                 const float *v, const float *z, float *x_prev, size_t n);

/* DDIM's previous timestep (docs/diffusers.md, "DDIMScheduler.step"): t - T/N (integer division),
 * whatever the spacing; may be negative at the last step. Requires N >= 1. */
int diffusion_ddim_prev_t(int T, int N, int t);

/* One DDIM step (diffusers DDIMScheduler.step, epsilon prediction,
 * use_clipped_model_output false) given the predicted (processed) x0 and the
 * model's eps. ab_prev = alphas_cumprod[prev_t], or for prev_t < 0: 1 if
 * s->set_alpha_to_one else alphas_cumprod[0];
 *   sigma  = eta sqrt((1-ab_prev)/(1-ab) (1 - ab/ab_prev));
 *   x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps
 *            (+ sigma z when eta > 0 and z != NULL).
 * The square root's argument is clamped at 0 (it is only negative for
 * eta > 1, where diffusers returns NaN). Requires 0 <= t < T, prev_t < t,
 * eta >= 0. z may be NULL (no noise; always so for eta == 0). */
void diffusion_ddim_step(const schedule *s, int t, int prev_t, float eta, const float *x0, const float *eps,
               const float *xt, const float *z, float *x_prev, size_t n);

/* ---- DPM-Solver++ (Lu et al. 2022), diffusers DPMSolverMultistepScheduler
 * with algorithm_type "dpmsolver++", solver_type "midpoint", final sigma 0 ----
 * In the sigma parametrisation x_t = alpha (x0 + sigma eps) with
 * sigma = sqrt((1 - ab)/ab), alpha = 1/sqrt(sigma^2 + 1): the scalar
 * arithmetic is float32 in diffusers' operation order. */

/* diffusers' sigma table: sqrt((1 - ab_t) / ab_t) in float32 (t < 0: 0). */
float diffusion_dpm_sigma(const schedule *s, int t);

/* The N timesteps of DPMSolverMultistepScheduler.set_timesteps(N) into
 * out[0..N-1] (descending): "linspace" round(linspace(0, T-1, N+1)) reversed
 * without its last (0), "leading" k * (T / (N+1)) for k = N..1 plus
 * steps_offset, "trailing" as diffusion_timesteps_set. Errors: N < 1, N >= T for
 * "leading" or "linspace" (N > T for "trailing"), a timestep outside [0, T). */
int diffusion_dpm_timesteps(int T, int N, const char *spacing, int steps_offset, int *out, err_t *err);

/* x0 from the network's output in that parametrisation (convert_model_output),
 * alpha_t = 1/sqrt(sigma^2 + 1), sigma_t = sigma alpha_t: for prediction
 * (SCHED_PRED_*) epsilon (x - sigma_t out) / alpha_t, sample out, v
 * alpha_t x - sigma_t out. */
void diffusion_dpm_x0(float sigma, int prediction, const float *out, const float *x, float *x0, size_t n);

/* One DPM-Solver++ step from sigma s0 to sigma t (t = 0: the final step,
 * which returns x0). m0 is the current x0 prediction; m1 the previous step's
 * (at sigma s1), or NULL for the first-order update (the first and the last
 * step). out may be x. */
void diffusion_dpm_step(float sigma_t, float sigma_s0, float sigma_s1, const float *m0, const float *m1, const float *x,
              float *out, size_t n);

/* ---- variational bound terms (nats; divide totals by D ln 2 for bits/dim) ---- */

/* KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats. */
double diffusion_normal_kl(double mean1, double logvar1, double mean2, double logvar2);

/* log of the mass that N(mean, e^(2 log_scale)) puts on the bin of pixel value
 * x in [-1, 1] (paper Eq. 13, the official code's discretized decoder): the
 * bin is [x - 1/255, x + 1/255], extended to -inf for x < -0.999 and to +inf
 * for x > 0.999. The normal CDF is the exact 0.5 erfc(-u/sqrt 2) (not the
 * official code's tanh approximation); a bin inside the upper tail is
 * computed as a difference of upper-tail masses to avoid cancellation. As in
 * the official code each probability is floored at 1e-12 before the log, so
 * the result is >= log(1e-12) = -27.63. */
double diffusion_discretized_gaussian_loglik(double x, double mean, double log_scale);

/* Mean of the posterior q(x_{t-1} | x_t, x_0): mean = post_c0[t] x0 +
 * post_ct[t] xt (0 <= t < T). Its variance is s->post_var[t] and its clipped
 * log variance s->post_log_var_clipped[t]. */
void diffusion_posterior_mean_var(const schedule *s, int t, const float *x0, const float *xt, float *mean, size_t n);

/* log sigma_t^2 of the reverse process p(x_{t-1} | x_t) for the schedule's
 * variance type, as the official code uses it in the bound: fixed_small ->
 * post_log_var_clipped[t]; fixed_large -> log(beta') with the step's beta' =
 * 1 - alphabar_t / alphabar_{t-1} (= beta_t up to float rounding), except
 * log(post_var[1]) at t == 0. */
double diffusion_reverse_log_variance(const schedule *s, int t);

/* One image's term of the bound for a learned-range network, as
 * improved-diffusion trains it (_vb_terms_bpd with the mean frozen, x0 not
 * clipped), in bits per dimension: with p's mean the posterior mean of x0p
 * (the network's x0) and x_t, and log sigma^2_j = f_j log beta_t + (1 - f_j)
 * post_log_var_clipped[t], f_j = (v_j + 1)/2, the mean over the D values of
 * KL(q(x_{t-1} | x_t, x0) || p) for t > 0, or of the decoder's negative
 * log-likelihood of x0 (diffusion_discretized_gaussian_loglik) at t = 0.
 * dv (=) its gradient with respect to v (the mean gets none). scratch: 2 D
 * floats. */
double diffusion_vlb_term(const schedule *s, int t, const float *x0, const float *xt, const float *x0p,
                          const float *v, float *dv, size_t D, float *scratch);

/* The prior term L_T = KL(q(x_T | x_0) || N(0, I)) in nats, summed over the
 * n values of x0 (float64 arithmetic from alphas_cumprod[T-1]). */
double diffusion_prior_bpd_nats(const schedule *s, const float *x0, size_t n);

#endif
