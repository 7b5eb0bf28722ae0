/* trainer.h -- Algorithm 1 of the paper with its recipe: x0 from the loader,
 * t ~ U{1..T} (0-based here), eps ~ N(0, I), the U-Net's eps prediction, L_simple,
 * global-norm clipping, Adam with linear warm-up, and an EMA of the weights.
 *
 * Data parallel (dist/dist.h): with N processes (a power of two), each runs
 * batch/N images of the global batch on its threads; the gradients of the
 * global batch's shards are summed in one fixed tree (exec/executor.h, then
 * dist_sum_tree), and every process makes the same Adam/EMA update. Every
 * random choice is a pure function of (seed, step, global image index). With
 * 2 or more shards in all (train_split) each shard runs on one thread, and
 * the weights after step k do not depend on the thread count or on an N that
 * divides the shard count; a run of one process and one shard (a batch under
 * 8, no opts.shards) has multi-threaded operators and is not thread-count
 * independent. What is bit-identical across what, resuming included: see
 * docs/determinism.md.
 *
 * Checkpoint: RUN/training_state.safetensors holds everything needed to go on
 * (raw weights, EMA weights, Adam m and v; metadata: step, options, model
 * config and scheduler config as JSON, and every tensor's checksum, see
 * io/safetensors.h); RUN/training_state.prev.safetensors is the state of the
 * save before it; RUN/model/ (EMA weights) and RUN/model-raw/ (raw weights)
 * are model folders in the diffusers layout. */
#ifndef DDPM_TRAINER_H
#define DDPM_TRAINER_H

#include <stdint.h>

#include "core/status.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "diffusion/schedule.h"
#include "model/unet.h"

#define TRAIN_STATE_FILE "training_state.safetensors"
#define TRAIN_STATE_PREV_FILE "training_state.prev.safetensors"

typedef struct train_opts {
    uint64_t seed;
    int batch;
    double lr;          /* Adam learning rate after warm-up (paper: 2e-4) */
    int warmup;         /* steps of linear warm-up: lr * min(1, (step+1)/warmup) (paper: 5000) */
    double beta1, beta2, adam_eps;
    double clip;        /* global-norm clip (paper: 1); 0 = off */
    double ema;         /* EMA decay (paper: 0.9999) */
    int ema_warmup;     /* decay min(ema, (1+k)/(10+k)) at update k (k = 1, 2, ...) */
    int flip;           /* random horizontal flips */
    char data[1024];    /* the data source as given ("" = the default), recorded for --resume */
    int limit;          /* images used (0 = all), recorded for --resume */
    int classes;        /* class-conditional: labels from the data, null class = the last embedding */
    double p_uncond;    /* probability that an image's label is replaced by the null class (label dropout) */
    int shards;         /* the global batch's shards, whose gradients are summed in a fixed tree
                         * (0 = the default, see train_split); recorded for --resume */
    /* The learning rate's decay after warm-up (train_lr_factor): TRAIN_LR_CONSTANT,
     * TRAIN_LR_LINEAR or TRAIN_LR_COSINE, to zero after step lr_total (0: not
     * known yet, constant until then), starting from factor lr_s0 at step lr_k0
     * (0 and 1 for a run with one budget; trainer_set_horizon moves them). */
    int lr_schedule;
    long long lr_total, lr_k0;
    double lr_s0;
    /* Each image's loss weight: TRAIN_WEIGHT_NONE or TRAIN_WEIGHT_MIN_SNR (Hang et
     * al. 2023, with gamma snr_gamma: min(SNR, gamma) / SNR for an epsilon network,
     * min(SNR, gamma) for a sample one, min(SNR, gamma) / (SNR + 1) for a v one). */
    int loss_weight;
    double snr_gamma;
    /* A learned-variance network (variance_type learned_range, out_channels 2C)
     * trains on L_hybrid = L_simple + vlb_weight L_vlb (Nichol & Dhariwal 2021;
     * 0.001): each image adds vlb_weight T times its bound term
     * (diffusion_vlb_term, the mean frozen), whose gradient reaches only the
     * variance half. */
    double vlb_weight;
    /* The precision of the network's convolutions and matrix products
     * (exec/executor.h: EXEC_FP32, EXEC_BF16, EXEC_BF16_EMULATED); the master
     * weights, Adam and the EMA are fp32 in all. */
    int precision;
    /* The run's cadence, in steps and images (the CLI's --save-every, --log-every,
     * --sample-every, --sample-n, --eval-every, --eval-n; tensorboard: 1, or 0 with
     * --no-tensorboard): the trainer does not use them; they are recorded so that
     * --resume keeps them (defaults when a state from before them lacks them). */
    long long save_every, log_every, sample_every, sample_n, eval_every, eval_n, tensorboard;
} train_opts;

enum { TRAIN_LR_CONSTANT = 0, TRAIN_LR_LINEAR = 1, TRAIN_LR_COSINE = 2 };
enum { TRAIN_WEIGHT_NONE = 0, TRAIN_WEIGHT_MIN_SNR = 1 };

/* The paper's recipe (flips off: set it for CIFAR-10). */
train_opts train_opts_default(void);

/* The names of the lr schedules ("constant", "linear", "cosine") and loss
 * weights ("none", "min-snr"), and back (-1: unknown). */
const char *train_lr_schedule_name(int schedule);
int train_lr_schedule_parse(const char *name);
const char *train_loss_weight_name(int weight);
int train_loss_weight_parse(const char *name);

/* The factor of the learning rate at step k (1-based) after warm-up: 1 for a
 * constant schedule or before the horizon is known; else, with u = (k - lr_k0)
 * / (lr_total + 1 - lr_k0) in [0, 1], lr_s0 (1 - u) (linear) or the rest of
 * the cosine from where it equals lr_s0, (1 + cos(pi (u0 + (1 - u0) u))) / 2
 * with (1 + cos(pi u0)) / 2 = lr_s0 (cosine; (1 + cos(pi u)) / 2 for a run
 * with one budget): it reaches zero one step after lr_total. */
double train_lr_factor(const train_opts *o, long long k);

/* The cadence fields of train_opts (save_every .. tensorboard): each one's name, where it
 * lies in train_opts, and the range a value must be in (what the CLI's flags allow). */
#define TRAIN_CADENCE_FIELDS 7
typedef struct train_cadence_field {
    const char *name;
    size_t offset;
    double min, max;
} train_cadence_field;
extern const train_cadence_field train_cadence[TRAIN_CADENCE_FIELDS];

/* Cadence field i of o. */
long long *train_cadence_of(train_opts *o, int i);

typedef struct trainer {
    train_opts o;
    unet *u;              /* training network; u->params are the raw weights */
    schedule sched;
    loader ld;
    float *m, *v, *ema;   /* [nparams] each */
    int64_t step;         /* steps done */
    double loss, grad_norm, lr; /* of the last step */
    double ema_decay;     /* the EMA decay of the last step's update */
    /* The last step's loss by timestep quartile (improved-diffusion's loss_q0..q3): the
     * sum of the images' losses (mean squared error over the pixels) of the global batch
     * whose t is in quartile q (q = 4t/T) and their count; loss = sum of q_sum / batch. */
    double q_sum[4];
    int q_n[4];
    double reduce_s;      /* seconds the last step spent summing over the processes */
    int nranks, first, local; /* processes in the run; this one's images: first..first+local-1 of the batch */
    float *x0, *eps, *xt, *out, *t; /* per-step buffers, [local] images */
    float *target;        /* what the network learns to output: eps itself for an epsilon network, else [local] images */
    float *w;             /* [local] each image's loss weight */
    float *vlb;           /* learned variance: [local][6 D] scratch of each image's bound term (else NULL) */
    int *ti;              /* [local] timesteps */
    int32_t *y;           /* [local] class labels (conditional runs) */
    unet_classes cls;     /* the class names (conditional runs) */
    double *sq;           /* [batch] the squared error of each image of the global batch */
} trainer;

/* The shard count of a run of `batch` images per step over nranks processes:
 * `shards`, or by default unet_shard_count(batch) and at least nranks. Fails
 * unless nranks is a power of two dividing the batch and the shard count a
 * power of two (<= batch) that nranks divides. */
int train_split(int batch, int shards, int nranks, int *out, err_t *err);

/* Builds a trainer for a network of config cfg on dataset d (borrowed; its
 * image size must match cfg), with schedule sched (copied), initialising the
 * weights as the official code (seed) and the EMA to them. With o->classes,
 * d must have labels and cfg->num_class_embeds == d->nclasses + 1 (the last
 * is the null class); without, cfg must be unconditional. */
int trainer_init(trainer *tr, const unet_config *cfg, const schedule *sched, const dataset *d,
                 const train_opts *o, err_t *err);
void trainer_free(trainer *tr);

/* Sets the step after which the learning rate reaches zero (the run's budget,
 * or its estimate); a no-op for a constant schedule, whose run (and state)
 * then does not depend on the budget. A change keeps the rate continuous: from
 * the current factor at the current step (lr_k0, lr_s0) the rate follows the
 * rest of the same curve, stretched or squeezed to end at the new horizon (a
 * cosine does not start again flat, so an estimate corrected every few steps
 * decays as the curve does). */
void trainer_set_horizon(trainer *tr, long long total);

/* One training step. Collective. Returns 0, or -1 without touching the weights
 * when the loss or the gradient is not finite (err says which, at which step)
 * or when this or another process ran out of memory for the network's
 * temporaries (err->oom set). */
int trainer_step(trainer *tr, err_t *err);

/* Writes the checkpoint into run_dir (created if needed): the training state
 * first, then model/ and model-raw/, each file atomically (a failed save never
 * leaves a torn file). The state that was the latest is kept as the previous
 * one first (file_keep_previous: a hard link), then the new state replaces the
 * latest (temporary file, fsync, rename). At every moment of a save, killed at
 * any point, the latest file is a complete state (old or new), and after it
 * the previous file holds the state before. A run resumed from the previous
 * state (because the latest was corrupt) must call trainer_restore_prev
 * before its first save, or that save would keep the corrupt file. */
int trainer_save(const trainer *tr, const char *run_dir, err_t *err);

/* The state file to resume run_dir from, into path (n bytes): the latest,
 * RUN/training_state.safetensors, when it is whole -- it opens, its checksums
 * verify (unless verification is off, st_set_verify), it holds the metadata
 * and tensors of a training state -- else RUN/training_state.prev.safetensors
 * when that is whole, with why->msg saying what is wrong with the latest
 * (why->msg is "" when the latest is used). When neither is, fails with an
 * err naming both files and what is wrong with each. */
int trainer_find_state(const char *run_dir, char *path, size_t n, err_t *why, err_t *err);

/* After resuming from the previous state (trainer_find_state passed over the
 * latest): makes it the latest again (one rename), so that the next save keeps
 * it as the previous one rather than the corrupt file. */
int trainer_restore_prev(const char *run_dir, err_t *err);

/* Reads the options, model config and schedule a run was started with from
 * the training state file at state (trainer_find_state). The caller frees
 * *cfg_json, *sched_json. */
int trainer_read_run(const char *state, train_opts *o, int64_t *step, char **cfg_json, char **sched_json,
                     err_t *err);

/* Restores weights, EMA, Adam moments and step from the training state file
 * at state into a trainer built with the run's options and config
 * (trainer_read_run); every tensor's checksum is checked. */
int trainer_load(trainer *tr, const char *state, err_t *err);

/* Options as JSON (malloc'd), and back. */
char *train_opts_to_json(const train_opts *o);
int train_opts_from_json(train_opts *o, const char *json, err_t *err);

#endif
