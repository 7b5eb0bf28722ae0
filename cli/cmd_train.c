/* cmd_train.c -- `ddpm train`: Algorithm 1 on a data set with the paper's
 * recipe, into a run folder (checkpoints, metrics.jsonl, sample grids), stopping
 * cleanly on --steps, --time, Ctrl-C or SIGTERM and resuming bit-exactly. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "eval/quality.h"
#include "core/threads.h"
#include "dist/dist.h"
#include "io/fileio.h"
#include "model/config.h"
#include "diffusion/sampler.h"
#include "io/png.h"
#include "train/trainer.h"

/* --recipe short: the best FID at 15 and 30 minutes on 2 CPU cores among the
 * recipes measured in docs/quality.md (the paper's recipe stays the default). */
#define RECIPE_SHORT_BATCH 32
#define RECIPE_SHORT_LR 1e-3
#define RECIPE_SHORT_WARMUP 200
#define RECIPE_SHORT_EMA 0.999
#define RECIPE_SHORT_TEXT "32, 1e-3, 200, 0.999"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

/* Keeps the lines of RUN/metrics.jsonl up to `step` (a resumed run rewrites the rest). */
static int trim_metrics(const char *path, long long step, ddpm_err *err) {
    unsigned char *buf;
    size_t len;
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (file_read_all(path, &buf, &len, err)) return -1;
    size_t keep = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        long long s = -1;
        if (sscanf((const char *)buf + i, "{\"step\":%lld", &s) == 1 && s > step) break;
        keep = e < len ? e + 1 : e;
        i = keep;
    }
    const void *chunks[1] = {buf};
    int rc = file_write_atomic(path, chunks, &keep, 1, err);
    free(buf);
    return rc;
}

/* How training looks at its EMA weights (grids and FID): `ddpm sample`'s
 * default sampler (ancestral, min(20, T) steps, x0 as predicted), seed 0 --
 * the same noise every time. */
static sampler_opts ema_sampler(const trainer *tr) {
    return (sampler_opts){.kind = SAMPLER_DDPM, .steps = tr->sched.T < 20 ? tr->sched.T : 20, .x0 = X0_NONE, .seed = 0};
}

/* RUN/samples/step_NNNNNNNN.png: n images from the EMA weights (`ddpm sample`'s default sampler,
 * the same noise every time, so the grids show the model's progress). A
 * conditional model draws the classes in turn, plainly conditioned (guidance
 * 1): one column per class. */
static int sample_grid(const trainer *tr, unet **su, int n, const char *run, ddpm_err *err) {
    const unet_config *c = &tr->u->cfg;
    if (!*su && unet_create(su, c, n, 0, err)) return -1;
    memcpy((*su)->params, tr->ema, tr->u->nparams * sizeof(float));
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    float *x = malloc((size_t)n * D * sizeof *x);
    int32_t *y = malloc((size_t)n * sizeof *y);
    if (!x || !y) {
        free(x), free(y);
        return ddpm_fail(err, "out of memory");
    }
    const int K = tr->cls.n;
    for (int i = 0; i < n; i++) y[i] = K ? i % K : 0;
    sampler_opts so = ema_sampler(tr);
    char path[4300];
    snprintf(path, sizeof path, "%s/samples", run);
    denoiser d;
    guided g = {0};
    int rc = make_dirs(path, err) || (K ? sampler_guided(&d, &g, *su, n, K, 1.0f, err) : sampler_unet(&d, *su, err));
    g.y = y;
    rc = rc || sampler_run(&d, &tr->sched, &so, 0, n, x, NULL, NULL, NULL, err);
    if (!rc) {
        snprintf(path, sizeof path, "%s/samples/step_%08lld.png", run, (long long)tr->step);
        int cols = 1;
        while (cols * cols < n) cols++;
        rc = png_write_grid(path, x, n, c->sample_size, c->sample_size, c->in_channels, K && K <= n ? K : cols, 2, err);
    }
    guided_free(&g);
    free(x), free(y);
    return rc ? -1 : 0;
}

/* FID during training: eval_n images from the EMA weights (`ddpm sample`'s default sampler,
 * the same noise every time) against the training data's statistics, one
 * metrics.jsonl line {"step", "fid", "features", "precision", "recall",
 * "eval_n", "eval_s"}. The network, features and reference are made on first use. */
typedef struct fid_eval {
    int every, n;
    const char *inception;
    unet *u;
    featnet *net;
    quality_ref ref;
    float *x;
} fid_eval;

/* The feature network and the reference statistics (the first 10,000
 * training images), made before training starts. */
static int fid_eval_init(fid_eval *e, const trainer *tr, const dataset *d, ddpm_err *err) {
    const unet_config *c = &tr->u->cfg;
    int kind = c->sample_size == 28 && c->in_channels == 1 ? FEATNET_FMNIST : FEATNET_INCEPTION;
    int nref = d->n < 10000 ? d->n : 10000;
    image_set real = {nref, d->h, d->w, d->c, d->pixels, NULL};
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    double t0 = ddpm_now();
    if (featnet_open(&e->net, kind, e->inception, 16, err) ||
        quality_ref_from_images(&e->ref, e->net, &real, 1, NULL, NULL, NULL, err) ||
        unet_create(&e->u, c, e->n < 64 ? e->n : 64, 0, err) || !(e->x = ddpm_alloc_floats((size_t)e->n * D, err)))
        return ddpm_wrap(err, "--eval-every");
    fprintf(stderr, "ddpm train: --eval-every: %s of %d EMA samples against %d training images (%.0f s to set up)\n",
            featnet_fid_label(e->net), e->n, nref, ddpm_now() - t0);
    return 0;
}

static int eval_during_training(fid_eval *e, const trainer *tr, FILE *mf, ddpm_err *err) {
    const unet_config *c = &tr->u->cfg;
    double t0 = ddpm_now();
    memcpy(e->u->params, tr->ema, tr->u->nparams * sizeof(float));
    sampler_opts so = ema_sampler(tr);
    sample_range range = {0};
    so.range = &range;
    image_set s = {e->n, c->sample_size, c->sample_size, c->in_channels, NULL, e->x};
    quality q;
    denoiser d;
    if (sampler_unet(&d, e->u, err) || quality_sample(&d, &tr->sched, &so, e->n, e->x, NULL, NULL, err) ||
        quality_measure(&q, e->net, &s, &e->ref, NULL, NULL, err))
        return ddpm_wrap(err, "FID evaluation");
    double secs = ddpm_now() - t0;
    const double broken = (double)range.broken / (double)range.images;
    fprintf(mf, "{\"step\":%lld,\"fid\":%.6g,\"features\":\"%s\",\"precision\":%.4g,\"recall\":%.4g,"
                "\"broken\":%.4g,\"eval_n\":%d,\"eval_s\":%.3f}\n", (long long)tr->step, q.fid,
            featnet_kind_name(featnet_kind_of(e->net)), q.precision, q.recall, broken, e->n, secs);
    fflush(mf);
    fprintf(stderr, "%sstep %lld  %s %.3f  precision %.3f  recall %.3f  broken %.1f%%  (%d EMA samples, %.0f s)\n",
            isatty(2) ? "\n" : "", (long long)tr->step, featnet_fid_label(e->net), q.fid, q.precision, q.recall,
            100 * broken, e->n, secs);
    return 0;
}

static void fid_eval_free(fid_eval *e) {
    unet_free(e->u);
    featnet_free(e->net);
    quality_ref_free(&e->ref);
    free(e->x);
}

static void fmt_eta(char *b, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(b, n, "?");
    else if (s >= 3600) snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

int cmd_train(int argc, char **argv)
{
    train_opts o = train_opts_default();
    const char *data = NULL, *preset = "fmnist-small", *config = NULL, *out = "runs/fmnist";
    const char *schedule_kind = "linear", *variance = "fixed_small";
    long long steps = 800000, batch = o.batch, warmup = o.warmup, seed = 0, limit = 0, threads = 0;
    long long save_every = o.save_every, log_every = o.log_every, T = 1000, sample_every = o.sample_every;
    long long sample_n = o.sample_n, eval_every = o.eval_every, eval_n = o.eval_n, shards = 0;
    const char *inception = NULL, *recipe = "paper";
    double time_limit = 0, lr = o.lr, clip = o.clip, ema = o.ema, dropout = -1, beta_start = 1e-4, beta_end = 0.02;
    double p_uncond = o.p_uncond;
    int resume = 0, flip = 0, no_ema_warmup = 0, classes = 0, no_verify = 0;
    arg_spec specs[] = {
        {"data", ARG_STR, &data, "SRC", "images: IDX file or MNIST-layout dir, CIFAR-10 dir or .bin, PNG dir "
                                         "(default: Debian's Fashion-MNIST train split)", 0, 0, NULL, 0, 0},
        {"limit", ARG_INT, &limit, "N", "use only the first N images (0 = all)", 0, 2e9, NULL, 0, 0},
        {"recipe", ARG_CHOICE, &recipe, NULL, "training recipe: the defaults of --batch --lr --warmup --ema; "
         "paper: 128, 2e-4, 5000, 0.9999; short, for budgets of minutes to hours on a CPU (docs/quality.md): "
         RECIPE_SHORT_TEXT, 0, 0, "paper|short", 0, 0},
        {"preset", ARG_CHOICE, &preset, NULL, "network preset", 0, 0, "fmnist-small|fmnist|cifar10", 0, 0},
        {"config", ARG_STR, &config, "FILE", "network config.json (diffusers UNet2DModel keys) instead of a preset",
         0, 0, NULL, 0, 0},
        {"out", ARG_STR, &out, "DIR", "run folder", 0, 0, NULL, 0, 0},
        {"resume", ARG_FLAG, &resume, NULL, "continue the run in --out with its own options", 0, 0, NULL, 0, 0},
        {"steps", ARG_INT, &steps, "N", "stop after N steps in all", 1, 1e12, NULL, 0, 0},
        {"time", ARG_SECONDS, &time_limit, "TIME", "stop (and save) after this long, e.g. 10m", 1, 1e9, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "N", "images per step", 1, 65536, NULL, 0, 0},
        {"lr", ARG_FLOAT, &lr, "X", "Adam learning rate [2e-4]", 1e-12, 10, NULL, 0, 0},
        {"warmup", ARG_INT, &warmup, "N", "steps of linear learning-rate warm-up", 0, 1e9, NULL, 0, 0},
        {"clip", ARG_FLOAT, &clip, "X", "global gradient-norm clip, 0 = off [1]", 0, 1e9, NULL, 0, 0},
        {"ema", ARG_FLOAT, &ema, "X", "EMA decay of the weights [0.9999]", 0, 1, NULL, 0, 0},
        {"no-ema-warmup", ARG_FLAG, &no_ema_warmup, NULL,
         "use the decay from step 1 (default: min(decay, (1+k)/(10+k)) at step k)", 0, 0, NULL, 0, 0},
        {"dropout", ARG_FLOAT, &dropout, "P", "dropout probability (default: the config's, 0.1 for presets)",
         0, 0.99, NULL, 0, 0},
        {"flip", ARG_FLAG, &flip, NULL, "random horizontal flips (the paper's CIFAR-10 recipe)", 0, 0, NULL, 0, 0},
        {"classes", ARG_FLAG, &classes, NULL,
         "class-conditional model (diffusers num_class_embeds) on the data's labels, for classifier-free guidance",
         0, 0, NULL, 0, 0},
        {"p-uncond", ARG_FLOAT, &p_uncond, "P", "with --classes: probability of training an image as the null "
         "class (the unconditional model guidance needs) [0.1]", 0, 1, NULL, 0, 0},
        {"seed", ARG_INT, &seed, "N", "seed of every random choice", 0, 9.2e18, NULL, 0, 0},
        {"T", ARG_INT, &T, "N", "diffusion steps", 2, 100000, NULL, 0, 0},
        {"schedule", ARG_CHOICE, &schedule_kind, NULL, "beta schedule", 0, 0, "linear|cosine", 0, 0},
        {"beta-start", ARG_FLOAT, &beta_start, "X", "first beta of the linear schedule [1e-4]", 1e-8, 0.5, NULL, 0, 0},
        {"beta-end", ARG_FLOAT, &beta_end, "X", "last beta of the linear schedule [0.02]", 1e-8, 0.999, NULL, 0, 0},
        {"variance", ARG_CHOICE, &variance, NULL, "sampler variance written to scheduler_config.json", 0, 0,
         "fixed_small|fixed_large", 0, 0},
        {"save-every", ARG_INT, &save_every, "N", "checkpoint every N steps (and at the end)", 1, 1e12, NULL, 0, 0},
        {"log-every", ARG_INT, &log_every, "N", "metrics line every N steps", 1, 1e12, NULL, 0, 0},
        {"sample-every", ARG_INT, &sample_every, "N",
         "write RUN/samples/step_N.png (EMA weights, ancestral sampling, 20 steps) every N steps and at the end; 0 = never",
         0, 1e12, NULL, 0, 0},
        {"sample-n", ARG_INT, &sample_n, "N", "images in those grids", 1, 1024, NULL, 0, 0},
        {"eval-every", ARG_INT, &eval_every, "N",
         "log the FID of EMA samples (ancestral sampling, 20 steps, fixed noise) against the training data in metrics.jsonl "
         "every N steps; F-MNIST features for 28x28 gray images, else Inception; 0 = never", 0, 2e9, NULL, 0, 0},
        {"eval-n", ARG_INT, &eval_n, "N", "samples per FID evaluation [1000]", 10, 100000, NULL, 0, 0},
        {"inception", ARG_STR, &inception, "FILE", "Inception weights for --eval-every (see `ddpm eval fid --help`)",
         0, 0, NULL, 0, 0},
        {"shards", ARG_INT, &shards, "N",
         "split each batch into N shards whose gradients are summed in a fixed tree: the weights are the same bits "
         "with any thread count and any number of MPI processes dividing N (default: 8 or fewer for batches under "
         "32, and at least the process count)", 0, 65536, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"train", "Train a noise-prediction U-Net (Algorithm 1 of Ho et al. 2020).",
                   "The run folder gets model/ (EMA weights, diffusers layout: load it with `ddpm sample` or\n"
                   "diffusers), model-raw/ (raw weights), training_state.safetensors (to --resume; the one\n"
                   "before it stays as training_state.prev.safetensors, which --resume falls back on when the\n"
                   "latest is corrupt; --save-every, --log-every, --sample-every/-n and --eval-every/-n are kept),\n"
                   "metrics.jsonl (one JSON object per --log-every steps), samples/ (--sample-every). Ctrl-C or SIGTERM finishes the\n"
                   "step, saves and exits (status 130 / 143).\n"
                   "Over MPI (mpirun -np N ddpm train ...), the N processes (a power of two) share each --batch and\n"
                   "make one run; rank 0 writes the run folder.",
                   specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    if (!strcmp(recipe, "short")) { /* the recipe's values, where the flag itself is not given */
        if (!args_seen(specs, "batch")) batch = RECIPE_SHORT_BATCH;
        if (!args_seen(specs, "lr")) lr = RECIPE_SHORT_LR;
        if (!args_seen(specs, "warmup")) warmup = RECIPE_SHORT_WARMUP;
        if (!args_seen(specs, "ema")) ema = RECIPE_SHORT_EMA;
    }
    int nthreads = ddpm_set_threads((int)threads);
    st_set_verify(!no_verify);
    ddpm_err err = {0};
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    unet_config cfg;
    schedule sched = {0};
    char state[4200], prev[4200];
    snprintf(state, sizeof state, "%s/%s", out, TRAIN_STATE_FILE);
    snprintf(prev, sizeof prev, "%s/%s", out, TRAIN_STATE_PREV_FILE);
    struct stat st;
    const int rank0 = dist_rank() == 0;
    int have_state = stat(state, &st) == 0 || stat(prev, &st) == 0;
    ddpm_err why = {0}; /* with --resume: what is wrong with the latest state, when the previous one is used */
    dist_bcast(&have_state, sizeof have_state); /* rank 0's view: it alone writes the folder */
    if (resume) {
        static const char *fixed[] = {"data", "limit", "recipe", "preset", "config", "batch", "lr", "warmup", "clip", "ema", "no-ema-warmup",
                                      "dropout", "flip", "seed", "T", "schedule", "beta-start", "beta-end",
                                      "variance", "shards", "classes", "p-uncond", NULL};
        for (arg_spec *s = specs; s->name; s++)
            for (int i = 0; fixed[i]; i++)
                if (s->seen && !strcmp(s->name, fixed[i])) {
                    args_error(&cmd, "--%s cannot change when resuming: the run keeps its own options", s->name);
                    return EXIT_USAGE;
                }
        if (!have_state) {
            args_error(&cmd, "--resume: %s does not exist", state);
            return EXIT_USAGE;
        }
        if (trainer_find_state(out, state, sizeof state, &why, &err)) return cli_bad_input(&cmd, &err);
        if (rank0 && why.msg[0])
            fprintf(stderr, "ddpm train: %s\nddpm train: resuming from the previous state, %s\n", why.msg, state);
        char *cj, *sj;
        int64_t done;
        if (trainer_read_run(state, &o, &done, &cj, &sj, &err)) return cli_fail(&cmd, &err);
        /* The run's cadence, unless given again. */
        long long *mine[] = {&save_every, &log_every, &sample_every, &sample_n, &eval_every, &eval_n};
        long long *run[] = {&o.save_every, &o.log_every, &o.sample_every, &o.sample_n, &o.eval_every, &o.eval_n};
        const char *flag[] = {"save-every", "log-every", "sample-every", "sample-n", "eval-every", "eval-n"};
        for (int i = 0; i < 6; i++) {
            if (args_seen(specs, flag[i])) *run[i] = *mine[i];
            else *mine[i] = *run[i];
        }
        int bad = unet_config_from_json(&cfg, cj, &err) || schedule_from_json(&sched, sj, &err);
        free(cj), free(sj);
        if (bad) return cli_fail(&cmd, &err);
    } else {
        if (have_state) {
            args_error(&cmd, "%s already holds a run: add --resume to continue it, or pick another --out", out);
            return EXIT_USAGE;
        }
        if (config) {
            unsigned char *txt;
            size_t len;
            if (file_read_all(config, &txt, &len, &err) ||
                (txt = realloc(txt, len + 1), txt[len] = 0, unet_config_from_json(&cfg, (char *)txt, &err))) {
                args_error(&cmd, "--config: %s", err.msg);
                return EXIT_USAGE;
            }
            free(txt);
        } else if (unet_config_preset(&cfg, preset, &err)) {
            return cli_fail(&cmd, &err);
        }
        if (dropout >= 0) cfg.dropout = (float)dropout;
        if (beta_start > beta_end) {
            args_error(&cmd, "--beta-start %g is larger than --beta-end %g", beta_start, beta_end);
            return EXIT_USAGE;
        }
        if (schedule_init(&sched, schedule_kind, (int)T, beta_start, beta_end, &err)) {
            args_error(&cmd, "%s", err.msg);
            return EXIT_USAGE;
        }
        sched.variance_type = strcmp(variance, "fixed_large") ? SCHED_FIXED_SMALL : SCHED_FIXED_LARGE;
        o.seed = (uint64_t)seed, o.batch = (int)batch, o.lr = lr, o.warmup = (int)warmup, o.clip = clip;
        o.ema = ema, o.ema_warmup = !no_ema_warmup, o.flip = flip, o.shards = (int)shards;
        o.classes = classes, o.p_uncond = p_uncond;
        o.save_every = save_every, o.log_every = log_every, o.sample_every = sample_every, o.sample_n = sample_n;
        o.eval_every = eval_every, o.eval_n = eval_n;
        if (data && strlen(data) >= sizeof o.data) {
            args_error(&cmd, "--data: the path is too long");
            return EXIT_USAGE;
        }
        snprintf(o.data, sizeof o.data, "%s", data ? data : "");
        o.limit = (int)limit;
    }

    dataset d;
    if (dataset_load(&d, o.data[0] ? o.data : NULL, DATASET_TRAIN, o.limit, &err)) {
        schedule_free(&sched);
        args_error(&cmd, "--data: %s", err.msg);
        return EXIT_USAGE;
    }
    if (!resume && o.classes) {
        if (!d.labels) {
            args_error(&cmd, "--classes: %s has no class labels (an IDX label file next to the images, CIFAR-10 "
                             "batches, or a PNG folder with one subfolder per class)", d.desc);
            dataset_free(&d), schedule_free(&sched);
            return EXIT_USAGE;
        }
        cfg.num_class_embeds = d.nclasses + 1; /* the last: the null class */
    }
    if (!o.classes && args_seen(specs, "p-uncond")) {
        args_error(&cmd, "--p-uncond applies to --classes only");
        dataset_free(&d), schedule_free(&sched);
        return EXIT_USAGE;
    }
    trainer tr;
    unet *su = NULL; /* inference network for the sample grids, made on first use */
    fid_eval fe = {.every = (int)eval_every, .n = (int)eval_n, .inception = inception};
    if (trainer_init(&tr, &cfg, &sched, &d, &o, &err)) {
        schedule_free(&sched);
        dataset_free(&d);
        args_error(&cmd, "%s", err.msg);
        return EXIT_USAGE;
    }
    schedule_free(&sched);
    int rc = 0;
    /* Before anything is written: a missing Inception file leaves no run folder behind. */
    if (rank0 && fe.every > 0 && fid_eval_init(&fe, &tr, &d, &err))
        rc = strstr(err.msg, "oneDNN") ? cli_fail(&cmd, &err) : cli_bad_input(&cmd, &err);
    char metrics[4200];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out);
    FILE *mf = NULL;
    /* Every rank reads the checkpoint; rank 0 alone writes. */
    if (rc) {
    } else if (resume ? trainer_load(&tr, state, &err) || (rank0 && trim_metrics(metrics, tr.step, &err))
                      : rank0 && trainer_save(&tr, out, &err)) { /* step 0: the folder is usable (and writable) from the start */
        rc = cli_fail(&cmd, &err);
    } else if (rank0) {
        if (!resume) remove(metrics);
        if (!(mf = fopen(metrics, "a"))) {
            fprintf(stderr, "ddpm train: cannot open %s: %s\n", metrics, strerror(errno));
            rc = EXIT_RUNTIME;
        }
    }
    if (dist_or(rc != 0)) { /* one rank failed: all stop, with its status */
        if (!rc) rc = EXIT_RUNTIME;
        if (mf) fclose(mf);
        goto done;
    }
    /* Resumed from the previous state: every rank has read it; it becomes the
     * latest again, so the next save keeps it rather than the corrupt file. */
    if (rank0 && why.msg[0] && trainer_restore_prev(out, &err)) rc = cli_fail(&cmd, &err);

    if (rank0) {
        fprintf(stderr, "ddpm train: %s\n", d.desc);
        if (tr.nranks > 1)
            fprintf(stderr, "ddpm train: %d processes x %d images of batch %d, %d threads each, %d shards\n",
                    tr.nranks, tr.local, o.batch, nthreads, tr.o.shards);
        fprintf(stderr, "ddpm train: %zu parameters, batch %d, %d threads, run folder %s%s\n", tr.u->nparams, o.batch,
                nthreads, out, resume ? " (resumed)" : "");
        if (resume) fprintf(stderr, "ddpm train: resuming at step %lld\n", (long long)tr.step);
    }

    int tty = rank0 && isatty(2), stopped = 0;
    double t0 = ddpm_now(), tlast = t0, tdraw = 0, loss_sum = 0, reduce_sum = 0, smooth = NAN;
    long long start = tr.step, last_log = tr.step, last_save = tr.step;
    for (;;) {
        /* Every rank takes the same turn: stop on a signal or the time limit
         * seen by any rank, or on a failure of rank 0's saves and grids. */
        int flags = dist_or(stop_signal << 2 | (time_limit > 0 && ddpm_now() - t0 >= time_limit) | (rc != 0) << 1);
        if (flags & 2) {
            if (!rc) rc = EXIT_RUNTIME;
            break;
        }
        if (flags >> 2) stopped = flags >> 2;
        if (flags || tr.step >= steps) break;
        if (trainer_step(&tr, &err)) { /* the same failure on every rank: the loss and gradient are global */
            if (rank0) fprintf(stderr, "%sddpm train: %s\n", tty ? "\n" : "", err.msg);
            rc = EXIT_RUNTIME;
            break;
        }
        loss_sum += tr.loss;
        reduce_sum += tr.reduce_s;
        smooth = isnan(smooth) ? tr.loss : 0.98 * smooth + 0.02 * tr.loss;
        if (!rank0) continue;
        double now = ddpm_now(), ips = (double)(tr.step - start) * o.batch / (now - t0);
        if (tr.step % log_every == 0) {
            double ips_int = (double)(tr.step - last_log) * o.batch / (now - tlast);
            fprintf(mf, "{\"step\":%lld,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,\"img_per_s\":%.4g,"
                        "\"elapsed_s\":%.3f", (long long)tr.step, loss_sum / (double)(tr.step - last_log),
                    tr.lr, tr.grad_norm, ips_int, now - t0);
            if (tr.nranks > 1) /* seconds per step spent in the sum over the processes */
                fprintf(mf, ",\"reduce_s\":%.4g", reduce_sum / (double)(tr.step - last_log));
            fputs("}\n", mf);
            fflush(mf);
            if (!tty)
                fprintf(stderr, "step %lld  loss %.4f  lr %.3g  grad-norm %.3g  %.1f img/s\n", (long long)tr.step,
                        loss_sum / (double)(tr.step - last_log), tr.lr, tr.grad_norm, ips_int);
            loss_sum = 0, reduce_sum = 0, last_log = tr.step, tlast = now;
        }
        if (tty && now - tdraw > 0.25) {
            double left = (double)(steps - tr.step) * o.batch / ips;
            if (time_limit > 0 && time_limit - (now - t0) < left) left = time_limit - (now - t0);
            char eta[32];
            fmt_eta(eta, sizeof eta, left);
            fprintf(stderr, "\rstep %lld  loss %.4f  %.1f img/s  ETA %s   ", (long long)tr.step, smooth, ips, eta);
            tdraw = now;
        }
        if (tr.step - last_save >= save_every) {
            if (trainer_save(&tr, out, &err)) {
                fprintf(stderr, "%sddpm train: saving the checkpoint failed: %s\n", tty ? "\n" : "", err.msg);
                rc = EXIT_RUNTIME;
                continue; /* the other ranks hear of it at the top */
            }
            last_save = tr.step;
        }
        if (sample_every > 0 && tr.step % sample_every == 0 && sample_grid(&tr, &su, (int)sample_n, out, &err)) {
            fprintf(stderr, "%sddpm train: sample grid: %s\n", tty ? "\n" : "", err.msg);
            rc = EXIT_RUNTIME;
            continue;
        }
        /* A failed evaluation (e.g. non-finite samples early in training) is
         * reported and logged; training goes on. */
        if (fe.every > 0 && tr.step % fe.every == 0 && eval_during_training(&fe, &tr, mf, &err)) {
            fprintf(stderr, "%sddpm train: step %lld: %s\n", tty ? "\n" : "", (long long)tr.step, err.msg);
            fprintf(mf, "{\"step\":%lld,\"fid\":null}\n", (long long)tr.step);
            fflush(mf);
        }
    }
    if (tty) fputc('\n', stderr);
    if (mf) fclose(mf);
    if (rank0 && rc == 0 && tr.step != last_save && trainer_save(&tr, out, &err)) {
        fprintf(stderr, "ddpm train: saving the checkpoint failed: %s\n", err.msg);
        rc = EXIT_RUNTIME;
    }
    if (rank0 && rc == 0 && sample_every > 0 && tr.step % sample_every != 0 &&
        sample_grid(&tr, &su, (int)sample_n, out, &err)) {
        fprintf(stderr, "ddpm train: sample grid: %s\n", err.msg);
        rc = EXIT_RUNTIME;
    }
    if (dist_or(rc != 0) && !rc) rc = EXIT_RUNTIME;
    if (rc == 0) {
        double el = ddpm_now() - t0;
        if (rank0)
            fprintf(stderr, "ddpm train: %s at step %lld after %.0f s (%.1f img/s); model in %s/model\n",
                    stopped ? "interrupted, saved" : "done", (long long)tr.step, el,
                    el > 0 ? (double)(tr.step - start) * o.batch / el : 0.0, out);
        if (stopped) rc = 128 + (stop_signal ? stop_signal : stopped);
    }
done:
    unet_free(su);
    fid_eval_free(&fe);
    trainer_free(&tr);
    dataset_free(&d);
    return rc;
}
