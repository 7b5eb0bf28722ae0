/* common.h -- what the ddpm commands share: the flags of several commands
 * (--threads, --no-verify, the sampler's), reporting a failed call of the
 * public API as an exit status, and turning sampler and class flags into
 * the API's options. Like every file of cli/, it sees only include/ddpm.h. */
#ifndef DDPM_CLI_COMMON_H
#define DDPM_CLI_COMMON_H

#include <stddef.h>

#include "args.h"
#include "ddpm.h"

/* The --threads flag every compute command takes (0 = every CPU we may use). */
#define ARG_THREADS(dst) {"threads", ARG_INT, (dst), "N", "CPU threads (0 = all available)", 0, 4096, NULL, 0, 0}

/* --conv, the flag of every command that runs a U-Net or a feature network:
 * after args_parse, ddpm_set_conv_algorithm(value). */
#define CLI_CONV_DEFAULT "measure"
#define ARG_CONV(dst)                                                                                               \
    {"conv", ARG_CHOICE, (dst), NULL, "how 3x3 convolutions are computed: measure (per shape and pass, the fastest " \
     "algorithm on this CPU, measured once and cached in ~/.cache/ddpm), or that algorithm wherever it applies "   \
     "(docs/perf.md)", 0, 0, "measure|direct|winograd|onednn-winograd", 0, 0}

/* --precision, of train and sample. */
#define ARG_PRECISION(dst)                                                                                         \
    {"precision", ARG_CHOICE, (dst), NULL, "of the convolutions and matrix products: fp32; bf16 (mixed precision "  \
     "on oneDNN's bf16 kernels, needs AVX512_BF16 or AMX-BF16; weights, Adam and EMA stay fp32); bf16-emulated "    \
     "(bf16's numbers on any CPU, slower than fp32) (docs/perf.md)", 0, 0, "fp32|bf16|bf16-emulated", 0, 0}

/* --no-verify, the flag of every command that loads weights or resumes a run:
 * after args_parse, ddpm_set_verify(!flag). */
#define ARG_NO_VERIFY(dst)                                                                                          \
    {"no-verify", ARG_FLAG, (dst), NULL, "skip checking the weights against the checksums ddpm stores in its files " \
     "(faster loads; a corrupt file is then not noticed)", 0, 0, NULL, 0, 0}

/* After a failed call of the public API (include/ddpm.h) that returned
 * status: prints "ddpm CMD: <ddpm_errmsg(NULL)>" and returns the exit status:
 * EXIT_USAGE for a bad argument or input (DDPM_ERR_ARG, DDPM_ERR_INPUT),
 * EXIT_RUNTIME for everything else (out of memory, I/O, NaN, ...). */
int cli_status(const arg_cmd *cmd, int status);

/* The most classes --class may list. */
#define CLI_MAX_PICK 256

/* --guidance when not given: DDPM_GUIDANCE_DEFAULT for models with a null
 * class; plain conditioning (1) for those without. */
#define CLI_GUIDANCE_HELP "classifier-free guidance weight: 0 unconditional, 1 plain conditioning " \
                          "(default: 3; 1 for a model without a null class)"
/* The sampler flags of `ddpm sample` and `ddpm eval fid` (sampling a model):
 * --sampler --steps --eta --seed --spacing --x0 --threshold --threshold-max --guidance-rescale
 * --guidance-interval --raw. Declare a cli_sampler with CLI_SAMPLER_INIT, put CLI_SAMPLER_SPECS in
 * the flag table, and after args_parse turn it into options with
 * cli_sample_options. */
typedef struct cli_sampler {
    const char *sampler, *spacing, *x0, *precision, *guidance_interval;
    long long steps, seed;
    double eta, threshold, threshold_max, guidance_rescale;
    int raw;
} cli_sampler;

/* The defaults, chosen by measurement (docs/quality.md): ancestral sampling
 * with 50 network calls (DDIM and DPM-Solver++: 20), predicted x0 left as it is (--x0 auto: none for
 * ddpm, a departure from DDPMScheduler's clip_sample; for ddim and dpm++2m what
 * DDIMScheduler and DPMSolverMultistepScheduler do with the scheduler_config). */
#define CLI_SAMPLER_DEFAULT "ddpm"
#define CLI_SAMPLER_INIT {CLI_SAMPLER_DEFAULT, "config", "auto", "fp32", NULL, 0, 0, 0.0, 0.0, 0.0, 0.0, 0}
#define CLI_SAMPLER_SPECS(a)                                                                                         \
    {"sampler", ARG_CHOICE, &(a)->sampler, "ddpm|ddim|dpm++2m", "sampling algorithm", 0, 0, "ddpm|ddim|dpm++2m", 0, 0}, \
    {"steps", ARG_INT, &(a)->steps, "K", "network calls in 1..T (default: 50 for ddpm, 20 for ddim and dpm++2m; T = 1000 is the paper's sampler)", \
     1, DDPM_MAX_TIMESTEPS, NULL, 0, 0},                                                                                     \
    {"eta", ARG_FLOAT, &(a)->eta, "X", "DDIM noise scale in [0, 1] (0 = deterministic)", 0, 1, NULL, 0, 0},          \
    {"guidance-rescale", ARG_FLOAT, &(a)->guidance_rescale, "R", "a conditional model with guidance: diffusers' "     \
     "guidance_rescale in [0, 1] (Lin et al. 2023), which keeps the guided prediction's spread that of the "         \
     "conditional one (0 = off)", 0, 1, NULL, 0, 0},                                                                 \
    {"guidance-interval", ARG_STR, &(a)->guidance_interval, "LO,HI|all", "a conditional model with guidance: "      \
     "guide only the steps whose noise level sqrt((1 - alphabar_t) / alphabar_t) is in (LO, HI], elsewhere plain " \
     "conditioning (Kynkaenniemi et al. 2024); all: every step, as diffusers' pipelines (default: 0,2, measured " \
     "to keep guided images from blowing out, docs/classes.md)", 0, 0, NULL, 0, 0},                              \
    {"seed", ARG_INT, &(a)->seed, "S", "random seed", 0, 9.2e18, NULL, 0, 0},                                     \
    {"spacing", ARG_CHOICE, &(a)->spacing, "config|leading|trailing|linspace",                                       \
     "timestep spacing (config: the scheduler_config's timestep_spacing)", 0, 0, "config|leading|trailing|linspace", 0, 0}, \
    {"x0", ARG_CHOICE, &(a)->x0, "auto|config|none|clip|threshold",                                                  \
     "what is done to each predicted x0: config (scheduler_config: thresholding, else clip_sample), none, clip "    \
     "(to +-clip_sample_range) or threshold (dynamic thresholding); auto, as the sampler's diffusers scheduler: "  \
     "config for ddim, threshold if the config says so else none for dpm++2m, and none for ddpm, a departure from " \
     "DDPMScheduler's clip_sample measured better (docs/quality.md)", 0, 0,                                         \
     "auto|config|none|clip|threshold", 0, 0},                                                                     \
    {"threshold", ARG_FLOAT, &(a)->threshold, "P", "--x0 threshold: percentile of |x0| (default: the config's "   \
     "dynamic_thresholding_ratio, 0.995)", 1e-6, 1, NULL, 0, 0},                                                   \
    {"threshold-max", ARG_FLOAT, &(a)->threshold_max, "X", "--x0 threshold: largest threshold (default: the "     \
     "config's sample_max_value, 1 = plain clipping)", 1, 1e6, NULL, 0, 0},                                        \
    {"raw", ARG_FLAG, &(a)->raw, NULL, "keep the final samples as computed (default: clamped to [-1, 1])", 0, 0, NULL, 0, 0}, \
    ARG_PRECISION(&(a)->precision)

/* The sampler fields of o (after ddpm_sample_options_init) from the flags a,
 * checked against model m (ddpm_sample_check). Returns 0, or EXIT_USAGE after
 * a message. */
int cli_sample_options(const arg_cmd *cmd, const cli_sampler *a, const ddpm_model *m, ddpm_sample_options *o);

/* The classes "a,b,..." of list (names, or indices < num_classes) of model m
 * into pick[*npick] (at most CLI_MAX_PICK; *npick = 0 when list is NULL).
 * Returns 0, or EXIT_USAGE after a message. */
int cli_pick_classes(const arg_cmd *cmd, const ddpm_model *m, const char *list, int32_t *pick, int *npick);

/* Opens up to limit images (0 = all) of src's test split (NULL: Fashion-MNIST)
 * into *d and checks they have the size of m's images. Returns 0, or the exit
 * status after a message (*d is then NULL). */
int cli_open_images(const arg_cmd *cmd, const ddpm_model *m, const char *src, int limit, ddpm_dataset **d);

/* Collective: cli_status after a failed collective call (ddpm_sample,
 * ddpm_nll), whose status every rank shares: each rank prints its message,
 * then waits until every rank has, so the rank that saw the failure is heard
 * before the job ends (ddpm.c ends it on a failure). */
int cli_status_all(const arg_cmd *cmd, int status);

#endif
