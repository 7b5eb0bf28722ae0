/* ddpm.h -- the public C API of ddpm: Denoising Diffusion Probabilistic Models
 * (Ho, Jain, Abbeel 2020). Load a diffusers-layout model folder, predict the
 * noise, sample (DDPM, DDIM, DPM-Solver++ 2M, with classifier-free guidance),
 * train, and measure (bits/dim, FID). This is the only header a program that
 * uses libddpm includes; the `ddpm` command-line program is written on it alone.
 *
 *   #include <ddpm.h>          cc app.c $(pkg-config --cflags --libs ddpm)
 *
 * CONVENTIONS (they hold for every function below unless its comment says otherwise)
 *
 * Images.  A batch of n images is float32, NCHW (PyTorch's layout): image i,
 *   channel k, row y, column x at ((i*C + k)*H + y)*W + x, values in [-1, 1]
 *   (pixel value p in 0..255 is p / 127.5 - 1; diffusers' convention).
 *
 * Status.  Every function that can fail returns an int: DDPM_OK (0) on
 *   success, else one of enum ddpm_status. The message of a failure is
 *   ddpm_errmsg(handle) for a call on a handle, and ddpm_errmsg(NULL) for any
 *   call (the calling thread's last failure). Out-parameters are left
 *   unspecified on failure unless the comment says otherwise.
 *
 * Ownership.  Handles are created by ddpm_X_load / _create / _open and freed by
 *   ddpm_X_free (which accepts NULL). Memory the library returns to the caller
 *   through a float ** or void ** is freed with ddpm_free. Strings returned as
 *   const char * belong to the handle and live until it is freed (or until the
 *   next call on it, where the comment says so). Input arrays are borrowed for
 *   the duration of the call only.
 *
 * Output.  The library never prints and never exits. Progress goes to the
 *   callbacks the caller passes; notes and warnings (e.g. "resuming from the
 *   previous state") go to the log function of ddpm_set_log, if any.
 *
 * Threads.  ddpm runs its work on a pool of CPU threads (ddpm_set_threads).
 *   The library is NOT reentrant: call it from one thread at a time (any
 *   thread). The exceptions are marked "Thread-safe" (version, status names,
 *   ddpm_errmsg(NULL), which is per thread).
 *
 * Options.  Structs of options are filled by their _init function first (the
 *   defaults), then changed field by field: new fields get defaults there.
 *   Until version 1.0 a minor version may change struct layouts (the soname
 *   stays libddpm.so.0): rebuild programs against the header they run with.
 *
 * Processes (MPI).  When ddpm_proc_init finds an MPI launcher (mpirun, srun),
 *   the calls marked "Collective" must be made by every rank in the same order:
 *   they split their work over the ranks (what is then bit-identical to one
 *   process, and across thread counts: docs/determinism.md). Everything else
 *   is per process. Without MPI every call is a plain local call.
 */
#ifndef DDPM_H
#define DDPM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DDPM_API __attribute__((visibility("default")))
#else
#define DDPM_API
#endif

/* ------------------------------------------------------------------ version */

#define DDPM_VERSION_MAJOR 0
#define DDPM_VERSION_MINOR 7
#define DDPM_VERSION_PATCH 0
#define DDPM_VERSION "0.7.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH: compare with ddpm_version_number(). */
#define DDPM_VERSION_NUMBER (DDPM_VERSION_MAJOR * 10000 + DDPM_VERSION_MINOR * 100 + DDPM_VERSION_PATCH)

/* The version of the library the program runs with ("0.5.0"), which may differ
 * from the DDPM_VERSION it was compiled against. Thread-safe. */
DDPM_API const char *ddpm_version(void);
/* The same as DDPM_VERSION_NUMBER computes. Thread-safe. */
DDPM_API int ddpm_version_number(void);

/* ------------------------------------------------------------ status, log */

typedef enum ddpm_status {
    DDPM_OK = 0,
    DDPM_ERR_ARG = 1,       /* an argument or option is invalid (NULL, out of range, contradictory) */
    DDPM_ERR_INPUT = 2,     /* an input file or folder is missing, unreadable, malformed, corrupt or of the
                             * wrong shape (model folder, data set, .npy, .png, statistics) */
    DDPM_ERR_NOMEM = 3,     /* memory ran out */
    DDPM_ERR_IO = 4,        /* an output could not be written (permissions, full disk); nothing torn is left */
    DDPM_ERR_NONFINITE = 5, /* a computation gave NaN or infinity (the message names where) */
    DDPM_ERR_CANCELLED = 6, /* a progress callback asked to stop */
    DDPM_ERR_RUNTIME = 7    /* any other failure while running (the CPU backend, MPI) */
} ddpm_status;

/* "ok", "invalid argument", "bad input", "out of memory", "cannot write",
 * "not finite", "cancelled", "runtime error"; "unknown status" otherwise.
 * Thread-safe. */
DDPM_API const char *ddpm_status_name(int status);

/* The message of the last failure: of a call on `handle` (any ddpm handle:
 * ddpm_model *, ddpm_trainer *, ddpm_dataset *, ddpm_features *, ddpm_stats *),
 * or with handle NULL of the calling thread's last failed call of any
 * function. "" when there was none. The string lives until the next failing
 * call on that handle (or in that thread). Thread-safe for NULL. */
DDPM_API const char *ddpm_errmsg(const void *handle);

typedef enum ddpm_log_level { DDPM_LOG_INFO = 0, DDPM_LOG_WARN = 1 } ddpm_log_level;
/* Receives the library's notes (one line, no newline). */
typedef void (*ddpm_log_fn)(void *ctx, ddpm_log_level level, const char *msg);
/* Sends the library's notes to fn (NULL: nowhere, the default). Under MPI
 * only rank 0 logs. Call before other threads use the library. */
DDPM_API void ddpm_set_log(ddpm_log_fn fn, void *ctx);

/* Progress of a long call: done of total units (network evaluations unless
 * said otherwise). Return 0 to go on, non-zero to cancel: the call then
 * returns DDPM_ERR_CANCELLED as soon as it can (without writing its outputs). */
typedef int (*ddpm_progress_fn)(void *ctx, long long done, long long total);

/* --------------------------------------------------------------- settings */

/* Uses n CPU threads for the work (0: every CPU this process may use).
 * Returns the count in use. Call before other threads use the library. */
DDPM_API int ddpm_set_threads(int n);

/* The instruction-set level ddpm's own kernels (Winograd transforms,
 * GroupNorm, element-wise, optimizer, RNG) run at: "x86-64", "avx2" or
 * "avx512", the highest this CPU supports, capped by the environment's
 * ONEDNN_MAX_CPU_ISA, which caps oneDNN's kernels too (ONEDNN_MAX_CPU_ISA=AVX2
 * makes an AVX-512 machine compute what an AVX2 one does). Chosen when the
 * library loads. */
DDPM_API const char *ddpm_cpu_level(void);

/* Whether weights are checked against the XXH64 checksums ddpm stores in its
 * safetensors files when they are read (on: the default; off is faster and
 * does not notice a corrupt file). Call before other threads use the library. */
DDPM_API void ddpm_set_verify(int on);

/* How the 3x3 convolutions of networks made from now on are computed:
 * "measure" (the default): for each shape and pass (forward, input gradient,
 * weight gradient), whichever of the algorithms offered measures fastest on
 * this machine: oneDNN's direct kernels, ddpm's Winograd F(2x2, 3x3), or
 * oneDNN's Winograd. Measured once per shape and machine (a few seconds at
 * most) and remembered in $XDG_CACHE_HOME/ddpm/conv-algorithms.txt
 * (~/.cache/ddpm/ without XDG_CACHE_HOME); a training run keeps its choices
 * in RUN/conv_algorithms.txt, which a resume uses. "direct", "winograd",
 * "onednn-winograd": that algorithm wherever it applies, direct elsewhere.
 * Returns DDPM_OK, or DDPM_ERR_ARG for another name. Call before other
 * threads use the library. */
DDPM_API int ddpm_set_conv_algorithm(const char *name);

/* Seconds on a monotonic clock (for timing and progress). Thread-safe. */
DDPM_API double ddpm_now(void);

/* ------------------------------------------------------- processes (MPI) */

/* Joins the MPI job when a launcher started this process (the environment of
 * mpirun or srun); otherwise does nothing. Call once, before any other
 * collective call. Fails with DDPM_ERR_RUNTIME when several processes were
 * launched but the library was built without MPI. */
DDPM_API int ddpm_proc_init(void);
/* This process's rank (0 without MPI) and the number of processes (1). */
DDPM_API int ddpm_proc_rank(void);
DDPM_API int ddpm_proc_size(void);
/* Collective: the bitwise or of every rank's v (v itself without MPI); how
 * ranks agree to stop. */
DDPM_API int ddpm_proc_or(int v);
/* Ends every process of the job with status (a failure one rank alone saw). */
DDPM_API void ddpm_proc_abort(int status);
/* Leaves the MPI job (call last; a no-op without MPI). */
DDPM_API void ddpm_proc_finalize(void);

/* ------------------------------------------------------------------ models */

/* A U-Net (diffusers UNet2DModel) with its noise schedule and class names. */
typedef struct ddpm_model ddpm_model;

/* Loads the model folder dir (config.json, diffusion_pytorch_model.safetensors
 * and scheduler_config.json, diffusers' layout), or the model of the training
 * run folder dir (dir/model). Without scheduler_config.json the diffusers
 * DDPMScheduler defaults are used (info.has_scheduler is then 0).
 * Errors: DDPM_ERR_ARG (NULL), DDPM_ERR_INPUT (missing or malformed files,
 * failed checksums), DDPM_ERR_NOMEM. On success *out is a new model. */
DDPM_API int ddpm_model_load(const char *dir, ddpm_model **out);
DDPM_API void ddpm_model_free(ddpm_model *m);

/* The largest num_train_timesteps ddpm accepts (a sanity bound on configs). */
#define DDPM_MAX_TIMESTEPS 100000

typedef struct ddpm_model_info {
    int sample_size;         /* H = W */
    int in_channels, out_channels;
    int num_class_embeds;    /* diffusers' num_class_embeds (0: unconditional) */
    int num_classes;         /* classes to draw: num_class_embeds without the null class */
    int null_class;          /* the class that means "no class" (ddpm train --classes), -1: none */
    int has_class_names;     /* 1: the config names the classes (_class_names); 0: they are "0", "1", ... */
    int num_train_timesteps; /* T */
    int has_scheduler;       /* 0: no scheduler_config.json, the DDPMScheduler defaults are used */
    size_t num_parameters;
    double flops_per_image;  /* of one forward pass (a multiply-add counts 2) */
    const char *dir;         /* the model folder loaded (dir/model for a run folder) */
    /* The network (config.json): levels = len(block_out_channels) (at most 8),
     * down_attention[i] = 1 when down block i has attention. */
    int levels, block_out_channels[8], down_attention[8], layers_per_block, norm_groups;
    double norm_eps, dropout;
    /* The noise schedule (scheduler_config.json or the defaults). */
    const char *beta_schedule;    /* "linear", "scaled_linear", "squaredcos_cap_v2" */
    double beta_start, beta_end;
    const char *variance_type;    /* "fixed_small" | "fixed_large" | "learned_range" (out_channels = 2 in_channels) */
    const char *timestep_spacing; /* "leading" | "trailing" | "linspace" */
    const char *prediction_type;  /* what the network outputs: "epsilon" | "sample" | "v_prediction" */
} ddpm_model_info;
/* Fills *info. The strings belong to m. */
DDPM_API int ddpm_model_get_info(const ddpm_model *m, ddpm_model_info *info);
/* The training run m was loaded from (ddpm_model_load of a run folder): its
 * step and options (JSON text) as its training state file records them, into
 * *step and *options (NULL when m was loaded from a plain model folder, or the
 * state lacks the entry; the strings belong to m). The state file is checked
 * against its checksums unless ddpm_set_verify(0). Errors: DDPM_ERR_INPUT (a
 * corrupt state file, named), DDPM_ERR_NOMEM. */
DDPM_API int ddpm_model_run_state(ddpm_model *m, const char **step, const char **options);
/* config.json and scheduler_config.json of m as ddpm writes them (JSON text). */
DDPM_API const char *ddpm_model_config_json(const ddpm_model *m);
DDPM_API const char *ddpm_model_scheduler_json(const ddpm_model *m);
/* The name of class k (0 <= k < num_class_embeds): the config's _class_names
 * entry, else its index as text; NULL when k is out of range. */
DDPM_API const char *ddpm_model_class_name(const ddpm_model *m, int k);
/* The class named name, or given by its index as text ("3"), among the
 * num_classes classes to draw; -1 when there is none. */
DDPM_API int ddpm_model_find_class(const ddpm_model *m, const char *name);

/* The network's noise prediction eps(x_t, t) for n images x [n, C, H, W] at
 * 0-based timesteps t[n] (in 0..T-1) into eps [n, out_channels, H, W];
 * labels[n] are the classes of a conditional model (NULL: its null class;
 * ignored by an unconditional one). Results do not depend on n beyond float
 * rounding (the network is built for n images; another n rebuilds it).
 * Errors: DDPM_ERR_ARG (n < 1, t or a label out of range, NULL labels for a
 * conditional model without a null class, non-finite x),
 * DDPM_ERR_NOMEM, DDPM_ERR_NONFINITE (the network's output), DDPM_ERR_RUNTIME. */
DDPM_API int ddpm_model_eps(ddpm_model *m, int n, const float *x, const int32_t *t, const int32_t *labels,
                            float *eps);

/* The forward process q(x_t | x_0) (Eq. 4): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise,
 * for n images x0 [n, C, H, W] at timesteps t[n] (0..T-1) into x_t; noise
 * [n, C, H, W], or NULL to draw image i's noise from (seed, first_index + i)
 * alone: the same noise at every t, so two calls with one first_index share
 * it (the paper's Fig. 7 and 8). x_t may be x0.
 * Errors: DDPM_ERR_ARG (NULL, n < 1, t out of range), DDPM_ERR_NOMEM. */
DDPM_API int ddpm_model_diffuse(const ddpm_model *m, int n, const float *x0, const int32_t *t, const float *noise,
                                uint64_t seed, int first_index, float *x_t);

/* ---------------------------------------------------------------- sampling */

typedef enum ddpm_sampler {
    DDPM_SAMPLER_DDPM = 0,  /* "ddpm": ancestral sampling (Algorithm 2, DDPMScheduler) */
    DDPM_SAMPLER_DDIM = 1,  /* "ddim": DDIMScheduler (eta 0: deterministic) */
    DDPM_SAMPLER_DPMPP_2M = 2 /* "dpm++2m": DPMSolverMultistepScheduler, dpmsolver++, order 2 */
} ddpm_sampler;
/* "ddpm", "ddim", "dpm++2m" (NULL for others); and back (DDPM_ERR_ARG for an unknown name). Thread-safe. */
DDPM_API const char *ddpm_sampler_name(ddpm_sampler s);
DDPM_API int ddpm_sampler_parse(const char *name, ddpm_sampler *s);

/* What is done to each predicted x0 before a step uses it. */
typedef enum ddpm_x0 {
    /* What the diffusers scheduler of the sampler does with the scheduler_config:
     * DDPM_X0_CONFIG for ddim (DDIMScheduler); for dpm++2m thresholding when
     * the config sets it, else none (DPMSolverMultistepScheduler has no
     * clip_sample). For the ddpm sampler DDPM_X0_NONE, a measured departure from
     * DDPMScheduler, which clips (docs/quality.md). */
    DDPM_X0_AUTO = 0,
    DDPM_X0_CONFIG,    /* the scheduler_config's: thresholding if set, else clip_sample */
    DDPM_X0_NONE,      /* as predicted */
    DDPM_X0_CLIP,      /* clamped to +-clip_sample_range */
    DDPM_X0_THRESHOLD  /* dynamic thresholding (Saharia et al. 2022, diffusers' thresholding) */
} ddpm_x0;

typedef struct ddpm_sample_options {
    ddpm_sampler sampler;   /* default DDPM_SAMPLER_DDPM */
    int steps;              /* network calls, 1..T (0, the default: 50 for ddpm, 20 for ddim and dpm++2m; at most T, T - 1 for dpm++2m) */
    float eta;              /* DDIM only, in [0, 1] */
    uint64_t seed;          /* x_T and every step's noise depend only on (seed, image index, timestep) */
    const char *spacing;    /* "leading" | "trailing" | "linspace"; NULL: the scheduler_config's */
    ddpm_x0 x0;
    float threshold_ratio;  /* DDPM_X0_THRESHOLD: percentile of |x0| (0: the config's) */
    float threshold_max;    /* DDPM_X0_THRESHOLD: largest threshold (0: the config's) */
    int raw;                /* 1: the final x as computed; 0: clamped to [-1, 1] (the default) */
    int batch;              /* images per network call (default 64) */
    /* Conditional models: classes[n] gives each image's class (NULL: the null
     * class, an unconditional sample; DDPM_ERR_ARG for a model without one).
     * guidance W mixes eps = eps_null + W (eps_class - eps_null)
     * (classifier-free guidance, one batched pass); W < 0 (the default) means
     * 3 for models with a null class, 1 otherwise; W != 1 needs a null class.
     * Unconditional models take no classes and ignore guidance.
     * guidance_rescale R in [0, 1] (0, the default: off) is diffusers'
     * guidance_rescale (Lin et al. 2023, rescale_noise_cfg): the guided output
     * g of each image becomes R g std(c)/std(g) + (1 - R) g, c its conditional
     * output (std over the image's values, unbiased), which keeps guidance
     * from overshooting. guidance_interval (below) limits where guidance
     * applies. */
    const int32_t *classes;
    float guidance;
    float guidance_rescale;
    /* Optional start: x_T [n, C, H, W], finite (NULL: drawn from the seed). With
     * start_t > 0, noise is x_t at timestep start_t - 1 and only the steps
     * from there run (the paper's Fig. 7 and 8). */
    const float *noise;
    int start_t;
    /* Optional (progressive generation, Fig. 6): the x0 predicted at the
     * ntrack timesteps track_t[j] (each must be one the sampler visits) go to
     * track_x0 [ntrack][n][C][H][W]. Not with MPI. */
    int ntrack;
    const int *track_t;
    float *track_x0;
    int first_index;        /* index of the first image (its randomness); 0 by default */
    ddpm_progress_fn progress; /* network calls done of total (rank 0 under MPI: its own share) */
    void *progress_ctx;
    const char *precision;  /* "fp32" (NULL, the default), "bf16" or "bf16-emulated": as ddpm_train_options'
                             * precision */
    /* Guidance applies only at the timesteps whose noise level
     * sigma_t = sqrt((1 - alphabar_t) / alphabar_t) lies in
     * (guidance_interval[0], guidance_interval[1]] (a guidance interval,
     * Kynkaenniemi et al. 2024); elsewhere the conditional output is used as it
     * is (W = 1). The default, DDPM_GUIDANCE_INTERVAL_LO/_HI, was measured to
     * keep guided images from blowing out (docs/classes.md); {0, INFINITY}
     * guides every step, as diffusers' pipelines do. Needs 0 <= lo < hi. */
    float guidance_interval[2];
} ddpm_sample_options;

/* The defaults of guidance: the weight W for models with a null class, and
 * the noise-level interval where it applies (ddpm_sample_options). */
#define DDPM_GUIDANCE_DEFAULT 3.0f
#define DDPM_GUIDANCE_INTERVAL_LO 0.0f
#define DDPM_GUIDANCE_INTERVAL_HI 2.0f

/* The defaults (zeros, batch 64, guidance -1, the default guidance interval). Always start from these. */
DDPM_API void ddpm_sample_options_init(ddpm_sample_options *o);

/* Checks o against m without running anything (steps within 1..T, eta for DDIM
 * only, threshold options with thresholding, classes and guidance against the
 * model, ...). Returns DDPM_OK or DDPM_ERR_ARG with a message naming the
 * option. ddpm_sample makes the same checks. */
DDPM_API int ddpm_sample_check(const ddpm_model *m, const ddpm_sample_options *o);

/* One line describing what o does on m ("ddpm, 50 steps, leading spacing, x0
 * none"; with classes also the guidance: ", guidance 3 where sigma_t is in
 * (0, 2] (t 0..395)") into buf (len bytes, truncated, always terminated). */
DDPM_API void ddpm_sample_describe(const ddpm_model *m, const ddpm_sample_options *o, char *buf, size_t len);

/* What ddpm_sample saw in the final samples before the clamp to [-1, 1]: a
 * pixel is out when |x| > DDPM_RANGE_TOL (the small overshoot of a flat
 * background at +-1 is normal), an image is out of range when more than
 * DDPM_OUT_IMAGE_FRAC of its pixels are out. (Broken images, those a person
 * would call broken, are measured against a reference: ddpm_quality.) */
#define DDPM_RANGE_TOL 1.05
#define DDPM_OUT_IMAGE_FRAC 0.01
typedef struct ddpm_sample_report {
    long long images, pixels;
    long long out_pixels; /* |x| > DDPM_RANGE_TOL */
    long long out_images; /* images with more than DDPM_OUT_IMAGE_FRAC of their pixels out */
    double max_abs;       /* the largest |x| */
} ddpm_sample_report;

/* Collective. Draws n images into x [n, C, H, W] (C = in_channels, H = W =
 * sample_size), in batches of o->batch, image i with index o->first_index + i
 * (its noise depends on that index alone). Under MPI each rank computes whole
 * batches of a one-process call on the same network, so the process count
 * does not change the images; another o->batch changes them by float
 * rounding, and so may the thread count (docs/determinism.md). x is filled on
 * rank 0 only and may be NULL elsewhere. report (may be NULL) gets the range
 * statistics over all n (every rank). The network is built for min(batch, n)
 * images (twice that with guidance W other than 0 and 1).
 * Errors: those of ddpm_sample_check (and n < 1, a non-finite noise),
 * DDPM_ERR_NOMEM, DDPM_ERR_NONFINITE (a non-finite network output or sample:
 * the message names the image and timestep), DDPM_ERR_CANCELLED,
 * DDPM_ERR_RUNTIME. Under MPI every rank returns the same status (a rank
 * whose own share went well says another one failed). */
DDPM_API int ddpm_sample(ddpm_model *m, const ddpm_sample_options *o, int n, float *x, ddpm_sample_report *report);

/* Adds n images x [n, values_per_image] (any values, e.g. samples read from a
 * file) to the range statistics r, as ddpm_sample counts its samples. Start
 * from a zeroed report. Thread-safe (on distinct reports). */
DDPM_API void ddpm_sample_report_add(ddpm_sample_report *r, int n, size_t values_per_image, const float *x);

/* -------------------------------------------------------------- likelihood */

/* Collective. The variational bound (Sec. 3.3) of n images x [n, C, H, W]
 * with labels[n] (conditional models; NULL: the null class), every term
 * evaluated, in batches of batch images (0: 64), noise from (seed, image
 * index, t). Outputs, each may be NULL, filled on rank 0:
 *   bpd[n]            the total in bits/dim;
 *   terms[n * (T+1)]  image i's terms in nats: [i*(T+1) + t] is L_0 (t = 0) or
 *                     the KL term of step t (t >= 1), [i*(T+1) + T] is the prior L_T;
 *   mse[n * T]        the mean squared error of the clipped predicted x0 at each t.
 * Every rank passes all n images (and labels). Image i (0-based in this call)
 * uses the noise of index i. progress counts network evaluations (rank 0: its
 * own share); a cancel takes effect at the end of the batch in progress.
 * Errors: DDPM_ERR_ARG (NULL m or x, n < 1, a label out of range, NULL labels
 * for a conditional model without a null class), DDPM_ERR_NOMEM,
 * DDPM_ERR_NONFINITE, DDPM_ERR_CANCELLED, DDPM_ERR_RUNTIME; under MPI the
 * same status on every rank. */
DDPM_API int ddpm_nll(ddpm_model *m, int n, const float *x, const int32_t *labels, int batch, uint64_t seed,
                      double *bpd, double *terms, double *mse, ddpm_progress_fn progress, void *progress_ctx);

/* --------------------------------------------------------------- data sets */

typedef struct ddpm_dataset ddpm_dataset;
enum { DDPM_SPLIT_TRAIN = 0, DDPM_SPLIT_TEST = 1 };

/* Loads up to limit images (0: all) of split from src:
 *   NULL or "fashion-mnist": Debian's Fashion-MNIST (/usr/share/datasets/fashion-mnist);
 *   an IDX file (.gz or raw), or a folder in MNIST's layout;
 *   a CIFAR-10 binary folder, or one .bin batch;
 *   a folder of PNGs (one subfolder per class: labelled).
 * Labels come from the IDX label file beside the images, CIFAR's records, or
 * the subfolders. Errors: DDPM_ERR_INPUT naming the file, DDPM_ERR_NOMEM. */
DDPM_API int ddpm_dataset_load(const char *src, int split, int limit, ddpm_dataset **out);
DDPM_API void ddpm_dataset_free(ddpm_dataset *d);

typedef struct ddpm_dataset_info {
    int n, channels, height, width;
    int num_classes;  /* 0: unlabelled */
    const char *desc; /* one line: what was loaded and from where */
} ddpm_dataset_info;
DDPM_API int ddpm_dataset_get_info(const ddpm_dataset *d, ddpm_dataset_info *info);
/* The name of class k, NULL out of range. */
DDPM_API const char *ddpm_dataset_class_name(const ddpm_dataset *d, int k);
/* Images first .. first+n-1 into x [n, C, H, W] (pixel p: p / 127.5 - 1) and,
 * if not NULL, their labels into labels[n] (-1 for unlabelled data).
 * DDPM_ERR_ARG out of range. */
DDPM_API int ddpm_dataset_images(const ddpm_dataset *d, int first, int n, float *x, int32_t *labels);

/* ---------------------------------------------------------------- training */

typedef struct ddpm_trainer ddpm_trainer;

/* What a run writes, and how often (in steps; 0 = never). Kept by the run
 * (its checkpoints record it): a resumed run uses its own unless told
 * otherwise (ddpm_trainer_resume, ddpm_trainer_set_cadence). Everything is
 * written by rank 0 under MPI. */
typedef struct ddpm_train_cadence {
    long long save_every;   /* checkpoint (RUN/training_state.safetensors, RUN/model, RUN/model-raw) when this
                             * many steps passed since the last save (or create/resume); >= 1; default 1000 */
    long long log_every;    /* a line of RUN/metrics.jsonl at every step that is a multiple; >= 1; default 100 */
    long long sample_every; /* RUN/samples/step_NNNNNNNN.png from the EMA weights at multiples; default 0 */
    long long sample_n;     /* images in those grids, 1..1024; default 16 */
    long long eval_every;   /* an FID of EMA samples against the training data (the first 10,000 images) in
                             * metrics.jsonl at multiples: F-MNIST features for 28x28 gray images, else
                             * Inception; default 0 */
    long long eval_n;       /* samples per FID, 10..100000; default 1000 */
    long long tensorboard;  /* 1: TensorBoard event files in RUN/tb (the metrics lines' values, the grids, the
                             * FIDs; docs/monitoring.md); 0: none; default 1 */
} ddpm_train_cadence;

typedef struct ddpm_train_options {
    const char *data;       /* the images (ddpm_dataset_load's src; NULL: Fashion-MNIST), train split */
    int limit;              /* use the first limit images (0: all) */
    const char *preset;     /* network: "fmnist-small" (default), "fmnist", "cifar10" ... */
    const char *config;     /* ... or a config.json file (diffusers UNet2DModel keys); overrides preset */
    int batch;              /* images per step, 1..65536 (paper: 128) */
    double lr;              /* Adam's learning rate after warm-up (2e-4) */
    int warmup;             /* steps of linear warm-up (5000) */
    double clip;            /* global gradient-norm clip, 0 = off (1) */
    double ema;             /* EMA decay in [0, 1] (0.9999) */
    int ema_warmup;         /* decay min(ema, (1+k)/(10+k)) at step k (1) */
    double dropout;         /* < 0: the config's (0.1 for presets) */
    int flip;               /* random horizontal flips (0) */
    int classes;            /* class-conditional on the data's labels, with a null class (0) */
    double p_uncond;        /* with classes: label dropout to the null class (0.1) */
    uint64_t seed;          /* every random choice (0) */
    int T;                  /* diffusion steps (1000) */
    const char *schedule;   /* "linear" (default) | "cosine" */
    double beta_start, beta_end; /* linear schedule (1e-4, 0.02) */
    const char *variance;   /* "fixed_small" (default) | "fixed_large", for the scheduler_config; or
                             * "learned_range": the network's out_channels doubled, its second half the
                             * variance, trained on L_hybrid with vlb_weight (Nichol & Dhariwal 2021) */
    int shards;             /* gradient shards summed in a fixed tree (0: the default: the largest power of
                             * two up to min(8, batch / 4), at least the process count; docs/determinism.md) */
    const char *inception;  /* Inception weights for eval_every on non-F-MNIST data (NULL: the default path) */
    ddpm_train_cadence cadence;
    const char *prediction; /* what the network learns to output (scheduler_config's prediction_type): "epsilon"
                             * (default, the paper's), "sample" (x0) or "v_prediction" (sqrt(ab) eps - sqrt(1-ab) x0) */
    const char *lr_schedule; /* the learning rate after warm-up: "constant" (default), "linear" or "cosine",
                              * decaying to zero after the run's horizon (ddpm_trainer_set_horizon) */
    const char *loss_weight; /* each image's loss weight: "none" (default) or "min-snr" (Min-SNR-gamma) */
    double snr_gamma;       /* min-snr's gamma, > 0 (5) */
    double vlb_weight;      /* learned_range: lambda of L_hybrid = L_simple + lambda L_vlb, >= 0 (0.001) */
    const char *precision;  /* of the convolutions and matrix products: "fp32" (default); "bf16" (mixed
                             * precision on oneDNN's bf16 kernels: operands rounded to bf16, products summed
                             * in fp32; weights, Adam and the EMA stay fp32; needs a CPU with AVX512_BF16 or
                             * AMX-BF16, else DDPM_ERR_ARG naming what is missing); or "bf16-emulated" (the
                             * same numbers on any CPU, on the fp32 kernels: slower than fp32) */
} ddpm_train_options;

/* The paper's recipe (the defaults above). */
DDPM_API void ddpm_train_options_init(ddpm_train_options *o);
/* Sets the recipe's batch, lr, warmup and ema: "paper" (128, 2e-4, 5000,
 * 0.9999) or "short" (32, 2e-3, 200, 0.999, and dropout 0, lr_schedule
 * "cosine", loss_weight "min-snr": the best samples per minute on a CPU,
 * docs/quality.md). DDPM_ERR_ARG for another name. */
DDPM_API int ddpm_train_options_recipe(ddpm_train_options *o, const char *recipe);

/* Collective. Starts a new run in run_dir (created if missing): loads the
 * data, builds the network with the official initialisation, opens the FID
 * evaluation when cadence.eval_every > 0 (its feature network and the
 * reference statistics; logged), and only then saves the step-0 checkpoint
 * so the folder is usable from the start (rank 0 writes; RUN/metrics.jsonl
 * starts empty). Nothing is written when it fails before that save.
 * Errors: DDPM_ERR_ARG (NULL, an option out of range, beta_start > beta_end,
 * classes on unlabelled data, a batch that does not split over the
 * processes, data of another size than the network's, run_dir already holds
 * a run), DDPM_ERR_INPUT (the data, the config file, the Inception weights),
 * DDPM_ERR_NOMEM, DDPM_ERR_IO (run_dir not writable), DDPM_ERR_RUNTIME
 * (another process failed). On success *out is a new trainer at step 0. */
DDPM_API int ddpm_trainer_create(const char *run_dir, const ddpm_train_options *o, ddpm_trainer **out);

/* Collective. Continues the run in run_dir with its own options, from its
 * latest checkpoint -- or from the previous one when the latest is corrupt
 * (what is wrong is logged as a warning, then "resuming from the previous
 * state, PATH"). The run goes on exactly as if it had never stopped (with
 * which thread and process counts: docs/determinism.md). cadence (may
 * be NULL) replaces the run's cadence field by field where a field is >= 0
 * (< 0: the run's own), from now on; inception as in the options (NULL: the
 * default path). Lines of RUN/metrics.jsonl after the checkpoint's step are
 * dropped (they are written again).
 * Errors: DDPM_ERR_ARG (NULL, no run in run_dir, a cadence field out of
 * range), DDPM_ERR_INPUT (both states corrupt, the data changed, the
 * Inception weights), DDPM_ERR_NOMEM, DDPM_ERR_IO, DDPM_ERR_RUNTIME. */
DDPM_API int ddpm_trainer_resume(const char *run_dir, const ddpm_train_cadence *cadence, const char *inception,
                                 ddpm_trainer **out);
/* Sets the step after which the learning rate of a "linear" or "cosine"
 * lr_schedule reaches zero: the run's budget in steps, or an estimate of it
 * (ddpm train sets it from --steps, or from --time and the measured speed,
 * as the run goes). The run records it. A change keeps the rate continuous:
 * from the current rate at the current step it follows the rest of the same
 * curve, stretched or squeezed to reach zero at the new horizon. Until a
 * horizon is set the rate stays constant; a "constant" lr_schedule ignores
 * it (its run does not depend on it). Not
 * collective, but every rank must set the same value before the same step.
 * DDPM_ERR_ARG for NULL or total < 1. */
DDPM_API int ddpm_trainer_set_horizon(ddpm_trainer *t, long long total);

/* Closes RUN/metrics.jsonl and frees t (NULL is fine); writes nothing else
 * (call ddpm_trainer_finish first to save). */
DDPM_API void ddpm_trainer_free(ddpm_trainer *t);

/* Collective. Whether run_dir holds a run to resume (its training state file
 * or the previous one): 1 or 0, rank 0's view on every rank. */
DDPM_API int ddpm_run_exists(const char *run_dir);

/* The run's options (strings belong to t). For a resumed run: its own, with
 * preset and config NULL (the network is the run's) and schedule "linear"
 * or "cosine". */
DDPM_API int ddpm_trainer_get_options(const ddpm_trainer *t, ddpm_train_options *o);
/* Changes what the run writes and how often from now on (kept by its
 * checkpoints). Fields < 0 stay. An FID evaluation asked for here opens its
 * feature network at its first use (a failure there is a failed evaluation).
 * DDPM_ERR_ARG for a field out of range. */
DDPM_API int ddpm_trainer_set_cadence(ddpm_trainer *t, const ddpm_train_cadence *c);

typedef struct ddpm_train_metrics {
    long long step;        /* steps done */
    double loss;           /* this step's loss (mean over the global batch) */
    double grad_norm;      /* before clipping */
    double lr;
    double img_per_s;      /* since create/resume */
    double reduce_s;       /* seconds of this step spent summing over the processes (MPI) */
    size_t num_parameters;
    int batch, processes, shards, local_batch;
    const char *data_desc; /* one line: the data set used (belongs to t) */
    /* Set at a step that wrote a metrics.jsonl line (log_every, rank 0): the
     * mean loss and images per second since the previous line. */
    int logged;
    double log_loss, log_img_per_s;
    /* Set at a step that ran an FID evaluation (eval_every, rank 0): 1, or -1
     * when it failed (logged as a warning "step N: ..."; training goes on). */
    int evaluated;
    double fid, precision, recall, eval_s;
    double broken;       /* the share of broken samples (ddpm_quality) */
    double out_of_range; /* the share of samples out of range (ddpm_sample_report) */
    int eval_n;
    const char *fid_label; /* "FID" (Inception) or "FID (F-MNIST features)" */
    int saved, sampled;    /* this step wrote a checkpoint / a sample grid (rank 0) */
} ddpm_train_metrics;

/* Collective. One step of Algorithm 1 (and the Adam/EMA update), then what
 * the cadence asks for at the new step (rank 0): the metrics.jsonl line, the
 * checkpoint, the sample grid, the FID. m (may be NULL) gets the metrics.
 * Errors: DDPM_ERR_NONFINITE (the loss or gradient, on every rank; the step
 * is not taken), DDPM_ERR_NOMEM (memory for the network's pass ran out on
 * some rank: on every rank, the step is not taken), DDPM_ERR_IO or
 * DDPM_ERR_NOMEM from rank 0's cadence writes (the step is taken; under MPI
 * on rank 0 alone: agree with ddpm_proc_or before the next step),
 * DDPM_ERR_RUNTIME. */
DDPM_API int ddpm_trainer_step(ddpm_trainer *t, ddpm_train_metrics *m);

/* Fills m with the state now (step, parameters, batch split; no step). */
DDPM_API int ddpm_trainer_get_metrics(const ddpm_trainer *t, ddpm_train_metrics *m);

/* Rank 0 writes the checkpoint now (crash-safe: at any moment the run folder
 * holds a complete state; the one before stays as the previous state); a
 * no-op elsewhere. DDPM_ERR_IO, DDPM_ERR_NOMEM. */
DDPM_API int ddpm_trainer_save(ddpm_trainer *t);

/* Rank 0 writes RUN/samples/step_NNNNNNNN.png now (sample_n EMA samples, the
 * ddpm sampler with its default steps and fixed noise; one column per class);
 * a no-op elsewhere. */
DDPM_API int ddpm_trainer_sample_grid(ddpm_trainer *t);

/* The end of a run (rank 0; a no-op elsewhere): saves unless the last step
 * was saved, and writes the grid unless this step has one (and
 * sample_every > 0). Under MPI agree on its status with ddpm_proc_or. */
DDPM_API int ddpm_trainer_finish(ddpm_trainer *t);

/* ------------------------------------------------------- sample quality (FID) */

/* Sample quality in a feature network's space: FID (pytorch-fid's Frechet
 * distance), the Inception Score, and improved precision/recall (Kynkaanniemi
 * et al. 2019, k = DDPM_QUALITY_PR_K); for labelled images also per class
 * (FID against the reference images of the class, and the feature network's
 * accuracy as a classifier). Per process: nothing here is collective. */

#define DDPM_QUALITY_PR_K 3       /* precision/recall's k nearest neighbours */
#define DDPM_QUALITY_IS_SPLITS 10 /* the Inception Score's splits, as the original code */

/* A feature network: the built-in Fashion-MNIST classifier's features (28x28
 * gray images; 256-d features, 10 class logits) or Inception-v3's pool3
 * (pytorch-fid's FID network: any size and 1 or 3 channels, resized to
 * 299x299; 2048-d features, 1008 logits for the Inception Score), whose
 * weights come from a file (tools/convert_inception.py makes it). */
typedef struct ddpm_features ddpm_features;
/* Statistics of a set of images in a feature space (below). */
typedef struct ddpm_stats ddpm_stats;
typedef enum ddpm_features_kind {
    DDPM_FEATURES_FMNIST = 0,
    DDPM_FEATURES_INCEPTION = 1
} ddpm_features_kind;

/* "fmnist", "inception" (NULL for another value); and back (DDPM_ERR_ARG for
 * an unknown name). Thread-safe. */
DDPM_API const char *ddpm_features_kind_name(ddpm_features_kind kind);
DDPM_API int ddpm_features_kind_parse(const char *name, ddpm_features_kind *kind);

/* The network `--features auto` picks: with reference statistics ref (may be
 * NULL), the one whose features have ref's dimension (256: FMNIST, else
 * INCEPTION); without, FMNIST for 28x28 gray images (c = 1, h = w = 28) and
 * INCEPTION for any other. Thread-safe. */
DDPM_API ddpm_features_kind ddpm_features_auto(int c, int h, int w, const ddpm_stats *ref);

/* Where the Inception weights are read from when none are named, into buf
 * (len bytes, truncated, always terminated): $DDPM_INCEPTION, else
 * $XDG_CACHE_HOME/ddpm/inception-2015-12-05.safetensors, else
 * ~/.cache/ddpm/inception-2015-12-05.safetensors. */
DDPM_API void ddpm_features_default_inception(char *buf, size_t len);

/* Opens the feature network kind, running batch images per network call
 * (>= 1; results do not depend on it beyond float rounding). inception:
 * the Inception weights file (NULL: the default path above), ignored for
 * FMNIST. Errors: DDPM_ERR_ARG (kind, batch), DDPM_ERR_INPUT (the weights
 * file missing -- the message says how to make one --, unreadable or
 * malformed), DDPM_ERR_NOMEM, DDPM_ERR_RUNTIME (the CPU backend). On success
 * *out is a new handle. */
DDPM_API int ddpm_features_open(ddpm_features_kind kind, const char *inception, int batch, ddpm_features **out);
DDPM_API void ddpm_features_free(ddpm_features *f);

typedef struct ddpm_features_info {
    ddpm_features_kind kind;
    int dim;           /* feature length (FMNIST 256, INCEPTION 2048) */
    int classes;       /* logits per image (10, 1008) */
    int batch;         /* images per network call */
    const char *name;  /* ddpm_features_kind_name(kind) */
    const char *label; /* "FID" or "FID (F-MNIST features)": how distances must be labelled */
} ddpm_features_info;
/* Fills *info (the strings are static). */
DDPM_API int ddpm_features_get_info(const ddpm_features *f, ddpm_features_info *info);
/* info.label: "FID" or "FID (F-MNIST features)". */
DDPM_API const char *ddpm_features_label(const ddpm_features *f);

/* Whether f takes n images [n, c, h, w]: c 1 or 3, 28x28 gray for FMNIST,
 * and (x not NULL) every value finite. Values outside [-1, 1] are fine (they
 * are clipped, as writing the image would). Returns DDPM_OK, or DDPM_ERR_ARG
 * with a message saying what is wrong (the image, for a non-finite value). */
DDPM_API int ddpm_features_check(ddpm_features *f, int n, int c, int h, int w, const float *x);

/* Statistics of a set of images in a feature space: the mean and covariance
 * of their features (float64, pytorch-fid's mu and sigma), and, when kept,
 * the features [n, dim] (precision/recall and per-class measures need them),
 * the logits [n, classes] (the Inception Score and the accuracy need them)
 * and the images' class labels. */

/* Flags of ddpm_stats_compute: what is kept besides mu and sigma. */
enum { DDPM_STATS_FEATURES = 1, DDPM_STATS_LOGITS = 2 };

/* The statistics of n >= 2 images x [n, c, h, w] in f's feature space;
 * labels[n] (may be NULL) are their classes, kept with them (any int32
 * values; the per-class measures match them). flags: an or of DDPM_STATS_*.
 * progress (may be NULL) counts images done of n. x is borrowed for the call.
 * Errors: DDPM_ERR_ARG (n < 2, what ddpm_features_check refuses),
 * DDPM_ERR_NOMEM, DDPM_ERR_NONFINITE (a feature), DDPM_ERR_CANCELLED,
 * DDPM_ERR_RUNTIME. On success *out is a new handle. */
DDPM_API int ddpm_stats_compute(ddpm_features *f, int n, int c, int h, int w, const float *x,
                                const int32_t *labels, int flags, ddpm_progress_fn progress, void *progress_ctx,
                                ddpm_stats **out);
/* Reads an .npz of pytorch-fid's layout (float64 `mu` [d], `sigma` [d, d];
 * ddpm's also float32 `features` [n, d], which are then kept; `logits` are
 * not read). Checks the shapes and that every value is finite.
 * Errors: DDPM_ERR_ARG (NULL), DDPM_ERR_INPUT (missing, not an .npz, wrong
 * shapes or values, naming the file), DDPM_ERR_NOMEM. */
DDPM_API int ddpm_stats_load(const char *path, ddpm_stats **out);
/* Writes s as an .npz pytorch-fid reads: `mu`, `sigma`, and `features` and
 * `logits` when s keeps them (logits only with features). Crash-safe.
 * Errors: DDPM_ERR_ARG (NULL), DDPM_ERR_IO, DDPM_ERR_NOMEM. */
DDPM_API int ddpm_stats_save(const ddpm_stats *s, const char *path);
DDPM_API void ddpm_stats_free(ddpm_stats *s);

typedef struct ddpm_stats_info {
    int dim;            /* feature length */
    long long n;        /* images the statistics are of (0: unknown, a file without features) */
    long long features; /* rows of features kept (0: none) */
    int logits;         /* logits per row kept (0: none) */
    int labelled;       /* 1: class labels kept */
} ddpm_stats_info;
DDPM_API int ddpm_stats_get_info(const ddpm_stats *s, ddpm_stats_info *info);

typedef struct ddpm_quality {
    double fid;
    double is_mean, is_std;     /* Inception Score (has_is: Inception features, samples' logits kept, n >= 10) */
    double precision, recall;   /* improved precision/recall, k = DDPM_QUALITY_PR_K (has_pr: both sides keep
                                 * features and have more than k rows) */
    int has_is, has_pr;
    long long n, n_ref;         /* samples; reference images (0: unknown) */
    long long n_pr;             /* images per side in precision/recall */
    int has_broken;             /* both sides keep looks (below) */
    long long broken;           /* samples a person would call broken (below) */
    long long broken_by[3];     /* of them: dark (near blank), white (a blown-out blob), noisy (an image may be
                                 * counted under several) */
} ddpm_quality;
/* Broken images: besides features, ddpm_stats_compute keeps three numbers per
 * image, its "looks", on its pixels clamped to [-1, 1] (gray: the mean of the
 * channels): ink, the share of pixels brighter than -0.5; white, the share
 * brighter than 0.9; rough, 1 - the correlation of neighbouring pixels (right
 * and below). A sample is broken when its ink is below the 0.1%
 * quantile of the reference's (dark, near blank), or its white or rough above
 * the 99.9% quantile (a blown-out blob; noise): about 0.3% of real images
 * drawn like the reference's are. The old pixel statistic (values beyond
 * +-DDPM_RANGE_TOL before the clamp) is ddpm_sample_report's "out of range".
 * Statistics files keep the looks as `looks` [n, 3]; pytorch-fid's have none. */

/* Measures samples against ref (both in f's feature space): the FID always;
 * the Inception Score with Inception features over the samples' logits in
 * DDPM_QUALITY_IS_SPLITS splits; the broken samples when both keep looks (by
 * the rule of ref's); precision/recall on m = min(n, ref n) rows of
 * each side: the first m samples, and m reference rows spread evenly over the
 * reference (which may be sorted, e.g. by class).
 * Errors: DDPM_ERR_ARG (NULL, statistics of another dimension than f's
 * features), DDPM_ERR_NOMEM, DDPM_ERR_RUNTIME (LAPACK). */
DDPM_API int ddpm_quality_compare(ddpm_features *f, const ddpm_stats *samples, const ddpm_stats *ref,
                                  ddpm_quality *q);

/* One class of a per-class report: the caller sets k and ref_k,
 * ddpm_quality_by_class the rest. */
typedef struct ddpm_quality_class {
    int k;              /* the samples' label of the class (and the feature network's class for accuracy) */
    int ref_k;          /* the reference's label of the class (-1: none) */
    long long n, n_ref; /* samples labelled k; reference rows labelled ref_k (0 without ref labels) */
    long long correct;  /* has_acc: of the n samples, those whose largest logit (the first on ties) is logit k */
    double fid;         /* has_fid: the samples labelled k against the reference rows labelled ref_k */
    int has_fid, has_acc;
} ddpm_quality_class;
/* Per-class measures of samples (which must keep features and labels)
 * against ref, for c[0..m-1]: FID where ref keeps features and labels, ref_k
 * >= 0, and both sides have at least 2 rows of the class; with accuracy set
 * (the samples must keep logits), the accuracy where k < the logits per row.
 * Samples of classes not in c are left out.
 * Errors: DDPM_ERR_ARG (NULL, m < 0, samples without features or labels,
 * accuracy without logits, statistics of different dimensions),
 * DDPM_ERR_NOMEM, DDPM_ERR_RUNTIME (LAPACK; the message names the class). */
DDPM_API int ddpm_quality_by_class(const ddpm_stats *samples, const ddpm_stats *ref, int accuracy,
                                   ddpm_quality_class *c, int m);

/* ------------------------------------------------------------ image files */

/* Writes n images x [n, C, H, W] (C 1 or 3) as one PNG grid of cols columns
 * (cols <= 0: ~sqrt(n)) with gap-pixel gaps; pixel = round((x + 1) / 2 * 255),
 * clamped. Crash-safe (temporary file, rename). DDPM_ERR_IO on failure. */
DDPM_API int ddpm_png_write_grid(const char *path, const float *x, int n, int c, int h, int w, int cols, int gap);
/* One image [C, H, W] as a PNG. */
DDPM_API int ddpm_png_write(const char *path, const float *x, int c, int h, int w);
/* Reads a PNG (gray or RGB, 8 bit) into *x [C, H, W] (ddpm_free it). */
DDPM_API int ddpm_png_read(const char *path, float **x, int *c, int *h, int *w);

#define DDPM_NPY_MAX_DIMS 8
/* The element types .npy files may hold ('<f4', '<f8', '|u1'). */
typedef enum ddpm_dtype { DDPM_DTYPE_F32 = 0, DDPM_DTYPE_F64 = 1, DDPM_DTYPE_U8 = 2 } ddpm_dtype;
/* Reads a little-endian C-order .npy of float32, float64 or uint8 elements
 * into *data as floats (ddpm_free it): float64 rounded to float, uint8 as its
 * values 0..255 (not scaled: the caller knows what bytes mean). Its rank goes
 * to *ndim, its shape to shape[], and the stored type to *dtype (may be NULL).
 * Errors: DDPM_ERR_ARG (NULL), DDPM_ERR_INPUT (missing, truncated, another
 * dtype, Fortran order, trailing bytes: the message names the file),
 * DDPM_ERR_NOMEM. */
DDPM_API int ddpm_npy_read(const char *path, float **data, int *ndim, int64_t shape[DDPM_NPY_MAX_DIMS],
                           ddpm_dtype *dtype);
/* Reads array `name` of an .npz archive (np.savez or np.savez_compressed:
 * "arr_0" is the first unnamed array) as ddpm_npy_read reads a .npy: floats
 * in *data (ddpm_free it), rank, shape and stored type. When the archive has
 * no array `name`, *ndim is -1 (told apart from a corrupt one: *ndim 0) and
 * the message lists the arrays it has.
 * Errors: DDPM_ERR_ARG (NULL), DDPM_ERR_INPUT (missing or corrupt file, no
 * such array, as ddpm_npy_read: the message names the file and the entry),
 * DDPM_ERR_NOMEM. */
DDPM_API int ddpm_npz_read(const char *path, const char *name, float **data, int *ndim,
                           int64_t shape[DDPM_NPY_MAX_DIMS], ddpm_dtype *dtype);
/* Writes data as a float32 .npy of shape[ndim]. Crash-safe. */
DDPM_API int ddpm_npy_write(const char *path, const float *data, int ndim, const int64_t *shape);

/* Writes len bytes to path crash-safely (temporary file, fsync, rename). */
DDPM_API int ddpm_file_write(const char *path, const void *data, size_t len);
/* Creates the folder path and its parents (like mkdir -p). */
DDPM_API int ddpm_make_dirs(const char *path);

/* Frees memory the library returned (a float ** or void ** out-parameter). */
DDPM_API void ddpm_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* DDPM_H */
