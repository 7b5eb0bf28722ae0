/* run.h -- a training run's folder: a trainer (trainer.h) on its data set,
 * started new or resumed, and what the run's cadence writes as it goes.
 *
 *   RUN/training_state.safetensors       the latest state (trainer_save)
 *   RUN/training_state.prev.safetensors  the state of the save before it
 *   RUN/model/, RUN/model-raw/           EMA and raw weights, diffusers layout
 *   RUN/metrics.jsonl                    one JSON line per log_every step and per FID
 *   RUN/samples/step_NNNNNNNN.png        sample grids of the EMA weights (sample_every)
 *   RUN/tb/events.out.tfevents.*         TensorBoard event files (tensorboard: one per
 *                                        create/resume) with the metrics lines' values,
 *                                        the grids and the FIDs (io/tfevents.h)
 *
 * A resumed run goes on from the latest whole state, or from the previous one
 * when the latest is corrupt (trainer_find_state), and drops the metrics lines
 * past the state's step; its new event file starts with a SessionLog START at
 * the first step it logs, so TensorBoard drops the values past the state's step
 * too (what an event file holds after the state's step, a run killed after
 * its last save, or a fallback to the previous state, logged). Under MPI every rank trains and reads the state;
 * rank 0 alone writes the folder.
 *
 * The functions return 0 or a run_failure saying what kind of failure it was,
 * with err's message (err->oom when memory ran out); the public API maps the
 * kinds to its status codes. */
#ifndef DDPM_RUN_H
#define DDPM_RUN_H

#include <stdio.h>

#include "data/dataset.h"
#include "eval/quality.h"
#include "io/tfevents.h"
#include "train/trainer.h"

typedef enum run_failure {
    RUN_OK = 0,
    RUN_BAD_ARG,    /* options or data that do not fit together */
    RUN_BAD_INPUT,  /* a file that cannot be read: data, state, the FID's feature network */
    RUN_IO,         /* writing the folder failed */
    RUN_NONFINITE,  /* the loss or the gradient (the step was not taken) */
    RUN_RUNTIME     /* oneDNN, or another process that failed */
} run_failure;

/* The FID during training (eval_every): the feature network and the reference
 * statistics (the first 10,000 training images) made once; the sampling
 * network and the sample buffer sized for n images. */
typedef struct run_fid {
    featnet *net;
    quality_ref ref;
    int have_ref;
    unet *u;
    float *x;
    int n;
} run_fid;

typedef struct train_run {
    char *dir;                 /* the run folder */
    char *inception;           /* the Inception weights for the FID (NULL: the default path) */
    dataset d;                 /* the training images (the trainer borrows them) */
    trainer tr;
    FILE *mf;                  /* RUN/metrics.jsonl (rank 0) */
    tfevents *tb;              /* RUN/tb's event file (rank 0, tensorboard) */
    unet *su;                  /* the sample grids' network, for su_n images */
    int su_n;
    run_fid fe;
    double t0, tlast;          /* create/resume, the last metrics line */
    double loss_sum, reduce_sum; /* since the last metrics line */
    double q_sum[4];           /* ... and the loss by timestep quartile (trainer's q_sum, q_n) */
    long long q_n[4];
    long long start, last_log, last_save; /* steps at create/resume, the last metrics line, the last save */
} train_run;

/* What the cadence did at a step (rank 0). */
typedef struct run_events {
    int logged;                /* a metrics line: the mean loss and images/s since the one before */
    double log_loss, log_img_per_s;
    int evaluated;             /* an FID: 1, or -1 when it failed (logged as a warning; training goes on) */
    double fid, precision, recall, eval_s;
    double broken, out_of_range; /* shares of the samples: broken (broken.h), out of range (sample_range) */
    int eval_n;
    const char *fid_label;     /* "FID" or "FID (F-MNIST features)" */
    int saved, sampled;        /* a checkpoint, a sample grid */
} run_events;

/* Whether dir holds a run (a latest or a previous state), as rank 0 sees it. Collective. */
int run_exists(const char *dir);

/* Starts a new run in dir (which must hold none): loads the data of o->data
 * (the default set when ""), o->limit images; builds the trainer on cfg
 * (with o->classes, its class embeddings are set to the data's classes + the
 * null class) and sched; writes the step-0 checkpoint and opens
 * metrics.jsonl. inception: the FID's Inception weights (NULL: the default).
 * On failure r is freed. Collective. */
int run_create(train_run *r, const char *dir, const unet_config *cfg, const schedule *sched, const train_opts *o,
               const char *inception, err_t *err);

/* Resumes the run in dir with the options, config and schedule it was started
 * with; cadence (may be NULL): [TRAIN_CADENCE_FIELDS] values that replace the
 * run's from now on where >= 0. On failure r is freed. Collective. */
int run_resume(train_run *r, const char *dir, const long long *cadence, const char *inception, err_t *err);

void run_free(train_run *r);

/* One training step, then what the cadence asks for at the new step (rank 0):
 * the metrics line, the checkpoint, the grid, the FID. ev (may be NULL) says
 * what was done. Collective. */
int run_step(train_run *r, run_events *ev, err_t *err);

/* Rank 0 writes the checkpoint now; a no-op elsewhere. */
int run_save(train_run *r, err_t *err);

/* Rank 0 writes RUN/samples/step_NNNNNNNN.png now (sample_n EMA samples); a no-op elsewhere. */
int run_sample_grid(train_run *r, err_t *err);

/* The end of a run (rank 0): saves unless the last step was saved, and writes
 * the grid unless this step has one (and sample_every > 0). */
int run_finish(train_run *r, err_t *err);

/* Images per second since create/resume. */
double run_img_per_s(const train_run *r);

#endif
