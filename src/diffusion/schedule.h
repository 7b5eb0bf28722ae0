/* schedule.h -- the noise schedule of a diffusion model: the beta table and
 * every per-timestep quantity derived from it (alphas, alphabar, the sqrt terms
 * of q(x_t | x_0), the posterior q(x_{t-1} | x_t, x_0)), plus the scheduler
 * options of a diffusers DDPMScheduler / DDIMScheduler config
 * (scheduler_config.json, read and written with cJSON).
 *
 * Conventions: timesteps are 0-based like diffusers (t = 0..T-1; the paper's t
 * is t+1 here). The tables follow diffusers: betas and alphas are the float32
 * values PyTorch computes (docs/diffusers.md, "Beta tables"), alphas_cumprod is their product
 * accumulated in double and rounded to float (exactly what torch.cumprod does
 * on the CPU). Every derived table is computed in double from the float
 * alphas_cumprod and stored as float. The posterior tables use the per-step
 * beta' = 1 - alphabar_t / alphabar_{t-1} that DDPMScheduler.step forms (equal
 * to beta_t in exact arithmetic; in float it keeps the posterior consistent
 * with alphabar, e.g. post_c0[0] = 1 and post_ct[0] = 0 exactly), so they are
 * the coefficients of diffusion_ddpm_step with prev_t = t - 1.
 */
#ifndef DDPM_SCHEDULE_H
#define DDPM_SCHEDULE_H

#include "core/status.h"

enum { SCHED_FIXED_SMALL = 0, /* sigma_t^2 = posterior variance beta~_t (diffusers "fixed_small") */
       SCHED_FIXED_LARGE = 1, /* sigma_t^2 = beta_t (diffusers "fixed_large") */
       SCHED_LEARNED_RANGE = 2 /* log sigma_t^2 between log beta~_t and log beta_t, the network's second half
                                * of channels v in [-1, 1] saying where (diffusers "learned_range", Nichol &
                                * Dhariwal 2021) */ };

/* diffusers' name of a variance type (SCHED_FIXED_SMALL ...). */
const char *schedule_variance_name(int variance_type);

/* What the network predicts (diffusers prediction_type), with
 * ab = alphabar_t: the noise eps ("epsilon"), x0 itself ("sample"), or
 * v = sqrt(ab) eps - sqrt(1 - ab) x0 ("v_prediction", Salimans & Ho 2022). */
enum { SCHED_PRED_EPSILON = 0, SCHED_PRED_SAMPLE = 1, SCHED_PRED_V = 2 };

/* diffusers' name of a prediction (SCHED_PRED_*), and back (-1: unknown). */
const char *schedule_prediction_name(int prediction);
int schedule_prediction_parse(const char *name);

#define SCHED_MAX_T 100000 /* largest T accepted (a sanity bound on configs) */

typedef struct schedule {
    int T;                  /* number of training timesteps (num_train_timesteps) */
    char kind[32];          /* beta_schedule: "linear", "scaled_linear" or "squaredcos_cap_v2" */
    int trained;            /* 1 if betas came from trained_betas (kind is then only recorded) */
    int variance_type;      /* SCHED_FIXED_SMALL | SCHED_FIXED_LARGE */
    int prediction;         /* what the network predicts (prediction_type): SCHED_PRED_EPSILON | _SAMPLE | _V */
    int clip_sample;        /* clamp predicted x0 to [-clip_range, clip_range] when stepping */
    float clip_range;       /* clip_sample_range */
    int thresholding;       /* dynamic thresholding of predicted x0 (wins over clip_sample), see diffusion_x0_threshold */
    float threshold_ratio;  /* dynamic_thresholding_ratio: the percentile of |x0| */
    float sample_max;       /* sample_max_value: the largest threshold */
    int set_alpha_to_one;   /* DDIM: alphabar_prev = 1 (else alphas_cumprod[0]) when prev_t < 0 */
    char timestep_spacing[16]; /* "leading" | "trailing" | "linspace" (for diffusion_timesteps_set) */
    int spacing_given;      /* the config names timestep_spacing (else each scheduler's default applies) */
    int steps_offset;       /* added to "leading" timesteps */
    double beta_start, beta_end;
    /* Tables, each [T], all pointing into one allocation (mem). With
     * alphabar_{-1} = 1 (ac_prev below):                                        */
    float *betas;                /* beta_t                                        */
    float *alphas;               /* 1 - beta_t                                    */
    float *alphas_cumprod;       /* alphabar_t = prod_{s<=t} alpha_s              */
    float *sqrt_ac;              /* sqrt(alphabar_t)                              */
    float *sqrt_1m_ac;           /* sqrt(1 - alphabar_t)                          */
    /* with beta' = 1 - alphabar_t / ac_prev and alpha' = 1 - beta':            */
    float *post_var;             /* beta' (1 - ac_prev) / (1 - alphabar_t); 0 at t=0 */
    float *post_log_var_clipped; /* log(post_var[max(t, 1)])                      */
    float *post_c0;              /* beta' sqrt(ac_prev) / (1 - alphabar_t)        */
    float *post_ct;              /* (1 - ac_prev) sqrt(alpha') / (1 - alphabar_t) */
    float *mem;
} schedule;

/* Builds the schedule of kind ("linear", "scaled_linear", "squaredcos_cap_v2"
 * or its alias "cosine") with T steps. beta_start/beta_end are used by the two
 * linear kinds and must satisfy 0 < beta_start <= beta_end < 1; the cosine
 * kind ignores them (betas[i] = min(1 - abar((i+1)/T)/abar(i/T), 0.999)).
 * "linear" reproduces PyTorch's float32 torch.linspace bit for bit (the x86
 * AVX2 CPU kernel: 8-wide vector blocks started with a fused multiply-add);
 * betas[0] == (float)beta_start, and betas[T-1] == (float)beta_end for the
 * paper's 1e-4..0.02 at every T in 2..5000 (checked against torch; the kernel's
 * vector blocks could in general leave the last value an ulp off, and we follow
 * torch there rather than the scalar formula of docs/diffusers.md, "Beta tables").
 * Options are set to the diffusers defaults (fixed_small, clip_sample on with
 * range 1, thresholding off with ratio 0.995 and sample_max_value 1,
 * set_alpha_to_one, "leading", steps_offset 0); change the fields
 * afterwards if needed. Requires 2 <= T <= SCHED_MAX_T. On failure returns -1
 * with err set and leaves *s zeroed (schedule_free is harmless).
 */
int schedule_init(schedule *s, const char *kind, int T, double beta_start, double beta_end, err_t *err);

/* Builds a schedule from explicit betas[0..T-1] (diffusers trained_betas); each
 * must be finite with 0 < beta < 1. betas are rounded to float first (as
 * diffusers' torch.tensor(..., float32) does). kind is recorded as given (may
 * be NULL -> "linear"). Same options, failure behaviour and T range as
 * schedule_init.
 */
int schedule_init_trained(schedule *s, const double *betas, int T, const char *kind, err_t *err);

/* Frees the tables and zeroes *s. Safe on a zeroed or already freed schedule. */
void schedule_free(schedule *s);

/* Reads a diffusers scheduler_config.json (DDPMScheduler or DDIMScheduler;
 * NUL-terminated text) and builds the schedule. Keys and defaults when absent:
 * num_train_timesteps 1000, beta_start 0.0001, beta_end 0.02, beta_schedule
 * "linear", trained_betas null (or an array of num_train_timesteps numbers,
 * which then wins over beta_schedule), variance_type "fixed_small" (or
 * "fixed_large"), clip_sample true, clip_sample_range 1.0 (> 0), prediction_type
 * "epsilon" (or "sample", "v_prediction"), timestep_spacing "leading" (or "trailing", "linspace"), steps_offset
 * 0 (>= 0), set_alpha_to_one true, thresholding false, dynamic_thresholding_ratio
 * 0.995 (in (0, 1]), sample_max_value 1.0 (in [1, 1e6]), rescale_betas_zero_snr
 * false. Other keys are ignored (as diffusers does). Errors, each naming the key:
 * invalid JSON or not an object, a value of the wrong type (null included,
 * except for trained_betas), an unknown beta_schedule, variance_type other than
 * the two fixed ones (e.g. "learned"), an unknown prediction_type,
 * rescale_betas_zero_snr true, values out
 * of range. On failure *s is left zeroed.
 */
int schedule_from_json(schedule *s, const char *json_text, err_t *err);

/* Serialises s as a DDPMScheduler config (keys sorted like diffusers writes
 * them, "_class_name": "DDPMScheduler", trained_betas null or the float betas).
 * Returns a malloc'd NUL-terminated string (free() it), or NULL if out of
 * memory. schedule_from_json of the result rebuilds identical tables.
 */
char *schedule_to_json(const schedule *s);

#endif
