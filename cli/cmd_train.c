/* cmd_train.c -- `ddpm train`: Algorithm 1 on a data set with the paper's
 * recipe, into a run folder (checkpoints, metrics.jsonl, sample grids), stopping
 * cleanly on --steps, --time, Ctrl-C or SIGTERM and resuming exactly (see
 * docs/determinism.md). The work is the library's (ddpm_trainer_*); this file
 * parses the flags, prints the progress and handles the signals. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "common.h"
#include "ddpm.h"

/* --recipe short (ddpm_train_options_recipe): the best FID at 15 and 30
 * minutes on 2 CPU cores among the recipes measured in docs/quality.md (the
 * paper's recipe stays the default). */
#define RECIPE_SHORT_TEXT "32, 2e-3, 200, 0.999, 0, cosine, min-snr"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

/* The flags' values. */
typedef struct train_flags {
    const char *data, *preset, *config, *out, *schedule_kind, *variance, *inception, *recipe;
    const char *prediction, *lr_schedule, *loss_weight, *conv, *precision;
    long long steps, batch, warmup, seed, limit, threads, T, shards;
    long long save_every, log_every, sample_every, sample_n, eval_every, eval_n;
    double time_limit, lr, clip, ema, dropout, beta_start, beta_end, p_uncond, snr_gamma, vlb_weight;
    int resume, flip, no_ema_warmup, classes, no_verify, no_tensorboard, tensorboard;
} train_flags;

/* The defaults: ddpm_train_options_init's. */
static train_flags default_flags(void)
{
    ddpm_train_options o;
    ddpm_train_options_init(&o);
    const ddpm_train_cadence *c = &o.cadence;
    return (train_flags){.preset = o.preset, .out = "runs/fmnist", .schedule_kind = o.schedule,
                         .variance = o.variance, .recipe = "paper", .steps = 800000, .batch = o.batch,
                         .warmup = o.warmup, .T = o.T, .save_every = c->save_every, .log_every = c->log_every,
                         .sample_every = c->sample_every, .sample_n = c->sample_n, .eval_every = c->eval_every,
                         .eval_n = c->eval_n, .lr = o.lr, .clip = o.clip, .ema = o.ema, .dropout = o.dropout,
                         .beta_start = o.beta_start, .beta_end = o.beta_end, .p_uncond = o.p_uncond,
                         .prediction = "epsilon", .lr_schedule = o.lr_schedule, .loss_weight = o.loss_weight,
                         .snr_gamma = o.snr_gamma, .vlb_weight = o.vlb_weight, .conv = CLI_CONV_DEFAULT,
                         .precision = o.precision};
}

/* --recipe short: its values, where the flag itself is not given. */
static void apply_recipe(train_flags *f, const arg_spec *specs)
{
    ddpm_train_options r;
    ddpm_train_options_init(&r);
    if (ddpm_train_options_recipe(&r, f->recipe)) return;
    if (!args_seen(specs, "batch")) f->batch = r.batch;
    if (!args_seen(specs, "lr")) f->lr = r.lr;
    if (!args_seen(specs, "warmup")) f->warmup = r.warmup;
    if (!args_seen(specs, "ema")) f->ema = r.ema;
    if (!args_seen(specs, "dropout")) f->dropout = r.dropout;
    if (!args_seen(specs, "lr-schedule")) f->lr_schedule = r.lr_schedule;
    if (!args_seen(specs, "loss-weight")) f->loss_weight = r.loss_weight;
}

/* --resume: the run keeps its own options; only the cadence flags may be given again. */
static int check_fixed(const arg_cmd *cmd, const arg_spec *specs)
{
    static const char *fixed[] = {"data", "limit", "recipe", "preset", "config", "batch", "lr", "warmup", "clip", "ema",
                                  "no-ema-warmup", "dropout", "flip", "seed", "T", "schedule", "beta-start",
                                  "beta-end", "variance", "shards", "classes", "p-uncond", "prediction",
                                  "lr-schedule", "loss-weight", "snr-gamma", "vlb-weight", "precision", NULL};
    for (const arg_spec *s = specs; s->name; s++)
        for (int i = 0; fixed[i]; i++)
            if (s->seen && !strcmp(s->name, fixed[i])) {
                args_error(cmd, "--%s cannot change when resuming: the run keeps its own options", s->name);
                return EXIT_USAGE;
            }
    return 0;
}

/* The cadence flags given on the command line (the others -1: the run's own). */
static ddpm_train_cadence given_cadence(const train_flags *f, const arg_spec *specs)
{
    ddpm_train_cadence c = {-1, -1, -1, -1, -1, -1, -1};
    if (args_seen(specs, "save-every")) c.save_every = f->save_every;
    if (args_seen(specs, "log-every")) c.log_every = f->log_every;
    if (args_seen(specs, "sample-every")) c.sample_every = f->sample_every;
    if (args_seen(specs, "sample-n")) c.sample_n = f->sample_n;
    if (args_seen(specs, "eval-every")) c.eval_every = f->eval_every;
    if (args_seen(specs, "eval-n")) c.eval_n = f->eval_n;
    if (f->no_tensorboard || f->tensorboard) c.tensorboard = f->tensorboard;
    return c;
}

static ddpm_train_options new_options(const train_flags *f)
{
    ddpm_train_options o;
    ddpm_train_options_init(&o);
    o.data = f->data, o.limit = (int)f->limit, o.preset = f->preset, o.config = f->config;
    o.batch = (int)f->batch, o.lr = f->lr, o.warmup = (int)f->warmup, o.clip = f->clip, o.ema = f->ema;
    o.ema_warmup = !f->no_ema_warmup, o.dropout = f->dropout, o.flip = f->flip, o.classes = f->classes;
    o.p_uncond = f->p_uncond, o.seed = (uint64_t)f->seed, o.T = (int)f->T, o.schedule = f->schedule_kind;
    o.beta_start = f->beta_start, o.beta_end = f->beta_end, o.variance = f->variance, o.shards = (int)f->shards;
    o.inception = f->inception;
    o.prediction = !strcmp(f->prediction, "v") ? "v_prediction" : f->prediction;
    o.lr_schedule = f->lr_schedule, o.loss_weight = f->loss_weight, o.snr_gamma = f->snr_gamma;
    o.vlb_weight = f->vlb_weight;
    o.precision = f->precision;
    o.cadence = (ddpm_train_cadence){f->save_every, f->log_every, f->sample_every, f->sample_n, f->eval_every,
                                     f->eval_n, !f->no_tensorboard};
    return o;
}

/* A new run, or the run in --out resumed. Returns 0 with *t, or the exit status after a message. */
static int open_run(const arg_cmd *cmd, const arg_spec *specs, const train_flags *f, ddpm_trainer **t)
{
    int exists = ddpm_run_exists(f->out), st;
    if (f->tensorboard && f->no_tensorboard) {
        args_error(cmd, "--tensorboard and --no-tensorboard: pick one");
        return EXIT_USAGE;
    }
    if (f->tensorboard && !f->resume) {
        args_error(cmd, "--tensorboard applies to --resume only (a new run writes the event files by default)");
        return EXIT_USAGE;
    }
    if (f->resume) {
        if ((st = check_fixed(cmd, specs))) return st;
        if (!exists) {
            args_error(cmd, "--resume: %s/training_state.safetensors does not exist", f->out);
            return EXIT_USAGE;
        }
        ddpm_train_cadence c = given_cadence(f, specs);
        st = ddpm_trainer_resume(f->out, &c, f->inception, t);
    } else {
        if (exists) {
            args_error(cmd, "%s already holds a run: add --resume to continue it, or pick another --out", f->out);
            return EXIT_USAGE;
        }
        if (!f->classes && args_seen(specs, "p-uncond")) {
            args_error(cmd, "--p-uncond applies to --classes only");
            return EXIT_USAGE;
        }
        ddpm_train_options o = new_options(f);
        st = ddpm_trainer_create(f->out, &o, t);
    }
    return st ? cli_status(cmd, st) : 0;
}

static void banner(ddpm_trainer *t, const train_flags *f, int nthreads)
{
    ddpm_train_metrics m;
    ddpm_trainer_get_metrics(t, &m);
    fprintf(stderr, "ddpm train: %s\n", m.data_desc);
    if (m.processes > 1)
        fprintf(stderr, "ddpm train: %d processes x %d images of batch %d, %d threads each, %d shards\n",
                m.processes, m.local_batch, m.batch, nthreads, m.shards);
    ddpm_train_options o;
    ddpm_trainer_get_options(t, &o);
    int fp32 = !strcmp(o.precision, "fp32");
    fprintf(stderr, "ddpm train: %zu parameters, batch %d, %d threads (%s kernels%s%s), run folder %s%s\n",
            m.num_parameters, m.batch, nthreads, ddpm_cpu_level(), fp32 ? "" : ", ", fp32 ? "" : o.precision, f->out,
            f->resume ? " (resumed)" : "");
    if (f->resume) fprintf(stderr, "ddpm train: resuming at step %lld\n", m.step);
}

static void fmt_eta(char *b, size_t n, double s)
{
    if (!isfinite(s) || s < 0) snprintf(b, n, "?");
    else if (s >= 3600) snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* What rank 0 prints after a step: the metrics line (without a terminal), the
 * progress line (on a terminal), the FID. */
static void report(const ddpm_train_metrics *m, const train_flags *f, int tty, double t0, long long start,
                   double smooth, double *tdraw)
{
    double now = ddpm_now(), ips = (double)(m->step - start) * m->batch / (now - t0);
    if (m->logged && !tty)
        fprintf(stderr, "step %lld  loss %.4f  lr %.3g  grad-norm %.3g  %.1f img/s\n", m->step, m->log_loss, m->lr,
                m->grad_norm, m->log_img_per_s);
    if (tty && now - *tdraw > 0.25) {
        double left = (double)(f->steps - m->step) * m->batch / ips;
        if (f->time_limit > 0 && f->time_limit - (now - t0) < left) left = f->time_limit - (now - t0);
        char eta[32];
        fmt_eta(eta, sizeof eta, left);
        fprintf(stderr, "\rstep %lld  loss %.4f  %.1f img/s  ETA %s   ", m->step, smooth, ips, eta);
        *tdraw = now;
    }
    if (m->evaluated == 1)
        fprintf(stderr, "%sstep %lld  %s %.3f  precision %.3f  recall %.3f  broken %.1f%%  out of range %.1f%%  "
                        "(%d EMA samples, %.0f s)\n", tty ? "\n" : "", m->step, m->fid_label, m->fid, m->precision,
                m->recall, 100 * m->broken, 100 * m->out_of_range, m->eval_n, m->eval_s);
}

/* The step after which the learning rate reaches zero: --steps, or with
 * --time the steps done plus those the time left allows at the speed so far
 * (one process: the ranks would not agree on a measured speed), at most
 * --steps. */
static long long horizon(const train_flags *f, long long start, long long step, double elapsed)
{
    if (f->time_limit <= 0 || ddpm_proc_size() > 1 || step - start < 20 || elapsed <= 0) return f->steps;
    double est = (double)step + (f->time_limit - elapsed) * (double)(step - start) / elapsed;
    return est < (double)f->steps ? (long long)est : f->steps;
}

/* Steps until --steps, --time or a signal; then the final save. Returns the exit status. */
static int train_loop(ddpm_trainer *t, const train_flags *f)
{
    const int rank0 = ddpm_proc_rank() == 0, tty = rank0 && isatty(2);
    ddpm_train_metrics m;
    ddpm_trainer_get_metrics(t, &m);
    int rc = 0, stopped = 0;
    double t0 = ddpm_now(), tdraw = 0, smooth = NAN;
    const long long start = m.step;
    long long step = start;
    for (;;) {
        /* Every rank takes the same turn: stop on a signal or the time limit
         * seen by any rank, or on a failure of rank 0's saves and grids. */
        int flags = ddpm_proc_or(stop_signal << 2 | (f->time_limit > 0 && ddpm_now() - t0 >= f->time_limit) |
                                 (rc != 0) << 1);
        if (flags & 2) {
            if (!rc) rc = EXIT_RUNTIME;
            break;
        }
        if (flags >> 2) stopped = flags >> 2;
        if (flags || step >= f->steps) break;
        if (step == start || (step - start) % 100 == 20) /* the estimate, corrected as the run goes */
            ddpm_trainer_set_horizon(t, horizon(f, start, step, ddpm_now() - t0));
        int st = ddpm_trainer_step(t, &m);
        if (st) { /* the other ranks hear of it at the top */
            if (rank0 || st != DDPM_ERR_NONFINITE) /* a non-finite loss is the same on every rank */
                fprintf(stderr, "%sddpm train: %s\n", tty ? "\n" : "", ddpm_errmsg(t));
            rc = EXIT_RUNTIME;
            continue;
        }
        step = m.step;
        smooth = isnan(smooth) ? m.loss : 0.98 * smooth + 0.02 * m.loss;
        if (rank0) report(&m, f, tty, t0, start, smooth, &tdraw);
    }
    if (tty) fputc('\n', stderr);
    if (rc == 0 && ddpm_trainer_finish(t)) {
        fprintf(stderr, "ddpm train: %s\n", ddpm_errmsg(t));
        rc = EXIT_RUNTIME;
    }
    if (ddpm_proc_or(rc != 0) && !rc) rc = EXIT_RUNTIME;
    if (rc) return rc;
    double el = ddpm_now() - t0;
    if (rank0)
        fprintf(stderr, "ddpm train: %s at step %lld after %.0f s (%.1f img/s); model in %s/model\n",
                stopped ? "interrupted, saved" : "done", step, el,
                el > 0 ? (double)(step - start) * m.batch / el : 0.0, f->out);
    return stopped ? 128 + (stop_signal ? stop_signal : stopped) : 0;
}

int cmd_train(int argc, char **argv)
{
    train_flags fl = default_flags(), *f = &fl;
    arg_spec specs[] = {
        {"data", ARG_STR, &f->data, "SRC", "images: IDX file or MNIST-layout dir, CIFAR-10 dir or .bin, PNG dir "
                                         "(default: Debian's Fashion-MNIST train split)", 0, 0, NULL, 0, 0},
        {"limit", ARG_INT, &f->limit, "N", "use only the first N images (0 = all)", 0, 2e9, NULL, 0, 0},
        {"recipe", ARG_CHOICE, &f->recipe, NULL, "training recipe: the defaults of --batch --lr --warmup --ema "
         "--dropout --lr-schedule --loss-weight; paper: 128, 2e-4, 5000, 0.9999, the config's, constant, none; short, for budgets of minutes to hours on a CPU (docs/quality.md): "
         RECIPE_SHORT_TEXT, 0, 0, "paper|short", 0, 0},
        {"preset", ARG_CHOICE, &f->preset, NULL, "network preset", 0, 0, "fmnist-small|fmnist|cifar10", 0, 0},
        {"config", ARG_STR, &f->config, "FILE", "network config.json (diffusers UNet2DModel keys) instead of a preset",
         0, 0, NULL, 0, 0},
        {"out", ARG_STR, &f->out, "DIR", "run folder", 0, 0, NULL, 0, 0},
        {"resume", ARG_FLAG, &f->resume, NULL, "continue the run in --out with its own options", 0, 0, NULL, 0, 0},
        {"steps", ARG_INT, &f->steps, "N", "stop after N steps in all", 1, 1e12, NULL, 0, 0},
        {"time", ARG_SECONDS, &f->time_limit, "TIME", "stop (and save) after this long, e.g. 10m", 1, 1e9, NULL, 0, 0},
        {"batch", ARG_INT, &f->batch, "N", "images per step", 1, 65536, NULL, 0, 0},
        {"lr", ARG_FLOAT, &f->lr, "X", "Adam learning rate [2e-4]", 1e-12, 10, NULL, 0, 0},
        {"warmup", ARG_INT, &f->warmup, "N", "steps of linear learning-rate warm-up", 0, 1e9, NULL, 0, 0},
        {"clip", ARG_FLOAT, &f->clip, "X", "global gradient-norm clip, 0 = off [1]", 0, 1e9, NULL, 0, 0},
        {"ema", ARG_FLOAT, &f->ema, "X", "EMA decay of the weights [0.9999]", 0, 1, NULL, 0, 0},
        {"no-ema-warmup", ARG_FLAG, &f->no_ema_warmup, NULL,
         "use the decay from step 1 (default: min(decay, (1+k)/(10+k)) at step k)", 0, 0, NULL, 0, 0},
        {"dropout", ARG_FLOAT, &f->dropout, "P", "dropout probability (default: the config's, 0.1 for presets)",
         0, 0.99, NULL, 0, 0},
        {"flip", ARG_FLAG, &f->flip, NULL, "random horizontal flips (the paper's CIFAR-10 recipe)", 0, 0, NULL, 0, 0},
        {"classes", ARG_FLAG, &f->classes, NULL,
         "class-conditional model (diffusers num_class_embeds) on the data's labels, for classifier-free guidance",
         0, 0, NULL, 0, 0},
        {"p-uncond", ARG_FLOAT, &f->p_uncond, "P", "with --classes: probability of training an image as the null "
         "class (the unconditional model guidance needs) [0.1]", 0, 1, NULL, 0, 0},
        {"seed", ARG_INT, &f->seed, "N", "seed of every random choice", 0, 9.2e18, NULL, 0, 0},
        {"T", ARG_INT, &f->T, "N", "diffusion steps", 2, 100000, NULL, 0, 0},
        {"schedule", ARG_CHOICE, &f->schedule_kind, NULL, "beta schedule", 0, 0, "linear|cosine", 0, 0},
        {"beta-start", ARG_FLOAT, &f->beta_start, "X", "first beta of the linear schedule [1e-4]", 1e-8, 0.5, NULL, 0, 0},
        {"beta-end", ARG_FLOAT, &f->beta_end, "X", "last beta of the linear schedule [0.02]", 1e-8, 0.999, NULL, 0, 0},
        {"variance", ARG_CHOICE, &f->variance, NULL, "the reverse process's variance, written to "
         "scheduler_config.json: fixed (the paper's two), or learned_range: the network also outputs where log "
         "sigma^2 lies between them (out_channels doubled; Improved DDPM's L_hybrid, --vlb-weight)", 0, 0,
         "fixed_small|fixed_large|learned_range", 0, 0},
        {"vlb-weight", ARG_FLOAT, &f->vlb_weight, "X", "with --variance learned_range: lambda of L_hybrid = "
         "L_simple + lambda L_vlb [0.001]", 0, 1e3, NULL, 0, 0},
        {"prediction", ARG_CHOICE, &f->prediction, NULL, "what the network learns to output (written to "
         "scheduler_config.json as prediction_type): the noise (the paper's), x0 (sample) or v = sqrt(ab) eps - "
         "sqrt(1-ab) x0 (v_prediction)", 0, 0, "epsilon|sample|v", 0, 0},
        {"lr-schedule", ARG_CHOICE, &f->lr_schedule, NULL, "the learning rate after warm-up: constant, or decaying "
         "to zero at the end of --steps (or of --time, estimated from the speed as the run goes); a resume with "
         "another budget goes on from the current rate (docs/quality.md)", 0, 0, "constant|linear|cosine", 0, 0},
        {"loss-weight", ARG_CHOICE, &f->loss_weight, NULL, "each image's loss weight: none, or min-snr "
         "(Min-SNR-gamma, Hang et al. 2023)", 0, 0, "none|min-snr", 0, 0},
        {"snr-gamma", ARG_FLOAT, &f->snr_gamma, "X", "gamma of --loss-weight min-snr [5]", 1e-3, 1e6, NULL, 0, 0},
        {"save-every", ARG_INT, &f->save_every, "N", "checkpoint every N steps (and at the end)", 1, 1e12, NULL, 0, 0},
        {"log-every", ARG_INT, &f->log_every, "N", "metrics line every N steps", 1, 1e12, NULL, 0, 0},
        {"sample-every", ARG_INT, &f->sample_every, "N",
         "write RUN/samples/step_N.png (EMA weights, ancestral sampling, 50 steps) every N steps and at the end; 0 = never",
         0, 1e12, NULL, 0, 0},
        {"sample-n", ARG_INT, &f->sample_n, "N", "images in those grids", 1, 1024, NULL, 0, 0},
        {"eval-every", ARG_INT, &f->eval_every, "N",
         "log the FID of EMA samples (ancestral sampling, 50 steps, fixed noise) against the training data in metrics.jsonl "
         "every N steps; F-MNIST features for 28x28 gray images, else Inception; 0 = never", 0, 2e9, NULL, 0, 0},
        {"eval-n", ARG_INT, &f->eval_n, "N", "samples per FID evaluation [1000]", 10, 100000, NULL, 0, 0},
        {"no-tensorboard", ARG_FLAG, &f->no_tensorboard, NULL,
         "write no TensorBoard event files (default: RUN/tb/events.out.tfevents.*, docs/monitoring.md); kept by --resume",
         0, 0, NULL, 0, 0},
        {"tensorboard", ARG_FLAG, &f->tensorboard, NULL,
         "with --resume: write the event files again in a run started with --no-tensorboard", 0, 0, NULL, 0, 0},
        {"inception", ARG_STR, &f->inception, "FILE", "Inception weights for --eval-every (see `ddpm eval fid --help`)",
         0, 0, NULL, 0, 0},
        {"shards", ARG_INT, &f->shards, "N",
         "split each batch into N shards (a power of two), each on one thread, whose gradients are summed in a "
         "fixed tree, so that the weights do not depend on the thread count or on a process count dividing N "
         "(docs/determinism.md) (default: the largest power of two up to min(8, batch/4), at least the process "
         "count; one process does not split a batch under 8)", 0, 65536, NULL, 0, 0},
        ARG_THREADS(&f->threads),
        ARG_CONV(&f->conv),
        ARG_PRECISION(&f->precision),
        ARG_NO_VERIFY(&f->no_verify),
        {0},
    };
    arg_cmd cmd = {"train", "Train a noise-prediction U-Net (Algorithm 1 of Ho et al. 2020).",
                   "The run folder gets model/ (EMA weights, diffusers layout: load it with `ddpm sample` or\n"
                   "diffusers), model-raw/ (raw weights), training_state.safetensors (to --resume; the one\n"
                   "before it stays as training_state.prev.safetensors, which --resume falls back on when the\n"
                   "latest is corrupt; --save-every, --log-every, --sample-every/-n, --eval-every/-n and --no-tensorboard are kept),\n"
                   "metrics.jsonl (one JSON object per --log-every steps), samples/ (--sample-every), tb/ (TensorBoard\n"
                   "event files: `tensorboard --logdir DIR`; --no-tensorboard). Ctrl-C or SIGTERM finishes the\n"
                   "step, saves and exits (status 130 / 143).\n"
                   "Over MPI (mpirun -np N ddpm train ...), the N processes (a power of two) share each --batch and\n"
                   "make one run; rank 0 writes the run folder.",
                   specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!strcmp(f->recipe, "short")) apply_recipe(f, specs);
    int nthreads = ddpm_set_threads((int)f->threads);
    ddpm_set_verify(!f->no_verify);
    ddpm_set_conv_algorithm(f->conv);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    ddpm_trainer *t = NULL;
    int rc = open_run(&cmd, specs, f, &t);
    if (rc) return rc;
    if (ddpm_proc_rank() == 0) banner(t, f, nthreads);
    rc = train_loop(t, f);
    ddpm_trainer_free(t);
    return rc;
}
