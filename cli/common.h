/* common.h -- what every ddpm command shares: thread setup, locating the model
 * folder inside a run folder, and reporting runtime errors. */
#ifndef DDPM_CLI_COMMON_H
#define DDPM_CLI_COMMON_H

#include <stddef.h>

#include "args.h"
#include "model/config.h"
#include "core/status.h"
#include "diffusion/sampler.h"
#include "io/safetensors.h"

/* The --threads flag every compute command takes (0 = every CPU we may use). */
#define ARG_THREADS(dst) {"threads", ARG_INT, (dst), "N", "CPU threads (0 = all available)", 0, 4096, NULL, 0, 0}

/* --no-verify, the flag of every command that loads weights or resumes a run:
 * after args_parse, st_set_verify(!flag) (io/safetensors.h). */
#define ARG_NO_VERIFY(dst)                                                                                          \
    {"no-verify", ARG_FLAG, (dst), NULL, "skip checking the weights against the checksums ddpm stores in its files " \
     "(faster loads; a corrupt file is then not noticed)", 0, 0, NULL, 0, 0}

/* A run folder holds its model in RUN/model; a model folder is used as it is.
 * Writes the folder to use into buf. */
void cli_model_dir(const char *dir, char *buf, size_t len);

/* After a failed call of the public API (include/ddpm.h) that returned
 * status: prints "ddpm CMD: <ddpm_errmsg(NULL)>" and returns the exit status:
 * EXIT_USAGE for a bad argument or input (DDPM_ERR_ARG, DDPM_ERR_INPUT),
 * EXIT_RUNTIME for everything else (out of memory, I/O, NaN, ...). */
int cli_status(const arg_cmd *cmd, int status);

/* Prints "ddpm CMD: <err>" and returns EXIT_RUNTIME (a failure while running). */
int cli_fail(const arg_cmd *cmd, const ddpm_err *err);

/* Prints "ddpm CMD: <err>" and returns EXIT_USAGE: an input the user named
 * (model folder, data, .npy) is missing, malformed or of the wrong shape --
 * or EXIT_RUNTIME when err says memory ran out (err->oom) while reading it. */
int cli_bad_input(const arg_cmd *cmd, const ddpm_err *err);

/* Splitting a command's images over the ranks of an MPI job (src/dist/dist.h).
 * The n images are cut into the batches one process computes, [0, B), [B, 2B),
 * ... (the last one partial), and rank r of N takes the whole batches
 * [r nb / N, (r+1) nb / N) of the nb there are: every image is computed in the
 * same batch as in a plain run (the network's rounding may depend on the
 * batch), so the results are the same bits with any number of ranks. */

/* Rank rank's share: images [*first, *first + *count) (count 0 when it gets no
 * batch; rank 0's share starts at 0). Not collective. */
void cli_share(int n, int batch, int rank, int *first, int *count);

/* Collective: the or over the ranks of failed (a rank that failed has printed
 * why); if any rank failed, returns EXIT_RUNTIME on every rank and gathers
 * nothing. Else gathers every rank's share (mine: its count records of item
 * bytes each) into all[n records] on rank 0 (ignored elsewhere), in image
 * order, and returns 0. */
int cli_gather_share(int failed, const void *mine, void *all, int n, int batch, size_t item);

/* The classes of the model in folder dir (config cfg): *nclasses classes to
 * draw (without ddpm's null class), *null_class (-1: none), and when list is
 * not NULL the classes it names ("a,b,...": names, or indices < *nclasses)
 * into pick[*npick] (at most CLI_MAX_PICK). Returns 0, or EXIT_USAGE / the
 * bad-input status after a message. */
#define CLI_MAX_PICK 256

/* --guidance when not given: the best FID of docs/classes.md's table for
 * models with a null class; plain conditioning (1) for those without. */
#define CLI_GUIDANCE 3.0
#define CLI_GUIDANCE_HELP "classifier-free guidance weight: 0 unconditional, 1 plain conditioning " \
                          "(default: 3; 1 for a model without a null class)"
int cli_classes(const arg_cmd *cmd, const char *dir, const unet_config *cfg, const char *list, int32_t *pick,
                int *npick, int *nclasses, int *null_class);

/* Loads up to limit images (0 = all) of src's test split (NULL: Fashion-MNIST)
 * into d and checks they have the size of model folder dir's network.
 * Returns 0, or EXIT_USAGE after a message (d then needs no freeing). */
struct dataset;
int cli_load_images(const arg_cmd *cmd, const char *dir, const char *src, int limit, struct dataset *d);

/* Reads the noise schedule of model folder dir (its scheduler_config.json,
 * which must exist) into s. Returns 0, or EXIT_USAGE after a message. */
struct schedule;
int cli_read_schedule(const arg_cmd *cmd, const char *dir, struct schedule *s);

/* The sampler flags of `ddpm sample` and `ddpm eval fid` (sampling a model):
 * --sampler --steps --eta --seed --spacing --x0 --threshold --threshold-max
 * --raw. Declare a cli_sampler with CLI_SAMPLER_INIT, put CLI_SAMPLER_SPECS in
 * the flag table, and after args_parse turn it into options with
 * cli_sampler_opts. */
typedef struct cli_sampler {
    const char *sampler, *spacing, *x0;
    long long steps, seed;
    double eta, threshold, threshold_max;
    int raw;
} cli_sampler;

/* The defaults, chosen by measurement (docs/quality.md): ancestral sampling
 * with 20 network calls, predicted x0 left as it is (--x0 auto: none for
 * ddpm, the scheduler_config's clip_sample/thresholding for ddim and dpm++2m). */
#define CLI_SAMPLER_DEFAULT "ddpm"
#define CLI_SAMPLER_INIT {CLI_SAMPLER_DEFAULT, "config", "auto", 0, 0, 0.0, 0.0, 0.0, 0}
#define CLI_SAMPLER_SPECS(a)                                                                                         \
    {"sampler", ARG_CHOICE, &(a)->sampler, "ddpm|ddim|dpm++2m", "sampling algorithm", 0, 0, "ddpm|ddim|dpm++2m", 0, 0}, \
    {"steps", ARG_INT, &(a)->steps, "K", "network calls in 1..T (default: 20; T = 1000 is the paper's sampler)", \
     1, SCHED_MAX_T, NULL, 0, 0},                                                                                     \
    {"eta", ARG_FLOAT, &(a)->eta, "X", "DDIM noise scale in [0, 1] (0 = deterministic)", 0, 1, NULL, 0, 0},          \
    {"seed", ARG_INT, &(a)->seed, "S", "random seed", 0, 9.2e18, NULL, 0, 0},                                     \
    {"spacing", ARG_CHOICE, &(a)->spacing, "config|leading|trailing|linspace",                                       \
     "timestep spacing (config: the scheduler_config's timestep_spacing)", 0, 0, "config|leading|trailing|linspace", 0, 0}, \
    {"x0", ARG_CHOICE, &(a)->x0, "auto|config|none|clip|threshold",                                                  \
     "what is done to each predicted x0: config (scheduler_config: thresholding, else clip_sample), none, clip "    \
     "(to +-clip_sample_range) or threshold (dynamic thresholding); auto: none for ddpm, config otherwise", 0, 0,   \
     "auto|config|none|clip|threshold", 0, 0},                                                                     \
    {"threshold", ARG_FLOAT, &(a)->threshold, "P", "--x0 threshold: percentile of |x0| (default: the config's "   \
     "dynamic_thresholding_ratio, 0.995)", 1e-6, 1, NULL, 0, 0},                                                   \
    {"threshold-max", ARG_FLOAT, &(a)->threshold_max, "X", "--x0 threshold: largest threshold (default: the "     \
     "config's sample_max_value, 1 = plain clipping)", 1, 1e6, NULL, 0, 0},                                        \
    {"raw", ARG_FLAG, &(a)->raw, NULL, "keep the final samples as computed (default: clamped to [-1, 1])", 0, 0, NULL, 0, 0}

/* The sampler options the flags ask for, checked against the schedule s
 * (steps at most T, eta for DDIM only). Returns 0, or EXIT_USAGE after a message. */
int cli_sampler_opts(const arg_cmd *cmd, const cli_sampler *a, const schedule *s, sampler_opts *o);

/* "dpm++2m, 20 steps, x0 clip" and the like, for logs. */
void cli_sampler_desc(const sampler_opts *o, const schedule *s, char *buf, size_t len);

#endif
