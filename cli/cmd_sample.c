/* cmd_sample.c -- `ddpm sample`: draw images from a model folder with the DDPM
 * (ancestral, paper Algorithm 2), DDIM or DPM-Solver++ 2M sampler, and write a
 * PNG grid, one PNG per image and all samples as an .npy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "core/threads.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "dist/dist.h"
#include "io/fileio.h"
#include "io/modelfolder.h"
#include "io/npy.h"
#include "io/png.h"
#include "ops/ops.h"

#define SAMPLE_MAX_N 1000000 /* images per run (all are held in memory for samples.npy) */
#define GRID_MAX 1024        /* grid.png shows at most this many (the first) images */

static const char sample_usage[] =
    "Starts from x_T ~ N(0, I) (or --noise) and runs the network --steps times.\n"
    "  ddpm: ancestral sampling (DDPMScheduler): sigma_t^2 from the scheduler's variance_type\n"
    "        (fixed_small = posterior variance, fixed_large = beta_t). The default, with 20\n"
    "        steps and x0 as predicted: the best samples per network call on models trained\n"
    "        for minutes to hours (docs/quality.md). --steps 1000 is the paper's sampler.\n"
    "  ddim: DDIMScheduler, --eta 0 deterministic, 1 ~ DDPM variance.\n"
    "  dpm++2m: DPM-Solver++ (2M), as diffusers' DPMSolverMultistepScheduler (dpmsolver++,\n"
    "        order 2, lower_order_final); deterministic.\n"
    "K < T steps use the --spacing of set_timesteps (default: the scheduler_config's).\n"
    "Each predicted x_0 is processed as --x0 says: clip_sample, dynamic thresholding\n"
    "(Saharia et al. 2022, diffusers' thresholding) or nothing.\n"
    "The noise schedule comes from the model folder's scheduler_config.json; without one\n"
    "the diffusers DDPMScheduler defaults are used: linear betas 1e-4..0.02, T = 1000,\n"
    "variance fixed_small, clip_sample true.\n"
    "Randomness depends only on (--seed, image index, timestep), so the result does not\n"
    "depend on --batch or --threads. Under mpirun the processes share the batches, and\n"
    "rank 0 writes the same files as one process would.\n"
    "Writes OUT/grid.png (the first up to 1024 images, ~sqrt(n) columns, 2 px gaps),\n"
    "OUT/samples/000000.png ... (one PNG per image; 1- or 3-channel models) and\n"
    "OUT/samples.npy: float32 [n, C, H, W] (NCHW, as PyTorch), values in [-1, 1]: the\n"
    "samples are clamped there, as diffusers' pipelines do, unless --raw\n"
    "(pixel = round((x + 1) / 2 * 255) as diffusers saves images). Reports the share of\n"
    "pixels beyond +-1.05 before that clamp, and the images with more than 1% of them\n"
    "(broken samples).\n"
    "Class-conditional models (ddpm train --classes): --class picks the classes (names or\n"
    "indices, given to the images in turn), --per-class K draws K of every class (one grid\n"
    "row per class), and --guidance W mixes in the unconditional model (classifier-free\n"
    "guidance): eps = eps_uncond + W (eps_class - eps_uncond), both in one batched pass;\n"
    "W = 1 is plain conditioning, W = 0 the unconditional model. Without --class or\n"
    "--per-class a conditional model samples unconditionally (its null class).";

typedef struct progress {
    int tty;
    double t0;
    long long done, total; /* network evaluations */
    long long base;        /* evaluations of the finished batches */
    int last_tenth;
    double last_print;     /* tty: redraw at most every 0.2 s */
} progress;

static void progress_cb(void *ctx, int done, int total) {
    progress *p = ctx;
    (void)total;
    p->done = p->base + done;
    double el = ddpm_now() - p->t0, frac = (double)p->done / (double)p->total;
    double eta = frac > 0 ? el / frac - el : 0;
    if (p->tty) {
        if (p->done < p->total && el - p->last_print < 0.2) return;
        p->last_print = el;
        fprintf(stderr, "\rddpm sample: %5.1f%%  %lld/%lld network calls  %.1f s elapsed, %.1f s left   ",
                100 * frac, p->done, p->total, el, eta);
        if (p->done == p->total) fputc('\n', stderr);
        fflush(stderr);
    } else {
        int tenth = (int)(10 * p->done / p->total);
        if (tenth > p->last_tenth) {
            p->last_tenth = tenth;
            fprintf(stderr, "ddpm sample: %3d%%  %lld/%lld network calls  %.1f s elapsed, %.1f s left\n",
                    tenth * 10, p->done, p->total, el, eta);
        }
    }
}

/* Writes images [m, h, w, c] as OUT/samples/%06d.png. */
static int write_pngs(const char *dir, const float *x, int m, int h, int w, int c, ddpm_err *err) {
    size_t D = (size_t)h * w * c;
    uint8_t *pix = malloc(D);
    if (!pix) return ddpm_fail(err, "out of memory");
    char path[4200];
    for (int i = 0; i < m; i++) {
        if (snprintf(path, sizeof path, "%s/%06d.png", dir, i) >= (int)sizeof path) {
            free(pix);
            return ddpm_fail(err, "output path too long: %s", dir);
        }
        image_to_u8(x + (size_t)i * D, pix, D);
        if (png_write_u8(path, pix, w, h, c, err)) {
            free(pix);
            return -1;
        }
    }
    free(pix);
    return 0;
}

/* Samples this rank's images [first, first + count) into x, in the batches of
 * B a plain run uses. Progress lines come from rank 0 alone and count only
 * rank 0's own share (the other ranks run silently). Returns 0, or -1 after a
 * message. */
static int sample_share(const arg_cmd *cmd, const denoiser *den, guided *g, const int32_t *labels,
                        const schedule *sch, const sampler_opts *o, int first, int count, int B, size_t D,
                        const float *xT, float *x)
{
    ddpm_err err = {0};
    const int root = dist_rank() == 0;
    progress pg = {isatty(2), ddpm_now(), 0, (long long)((count + B - 1) / B) * o->steps, 0, 0, -1};
    for (int i = 0; i < count; i += B) {
        int m = count - i < B ? count - i : B;
        if (g) g->y = labels + first + i; /* the batch's classes */
        if (sampler_run(den, sch, o, first + i, m, x + (size_t)i * D, xT ? xT + (size_t)(first + i) * D : NULL,
                        root ? progress_cb : NULL, &pg, &err)) {
            if (root && pg.tty) fputc('\n', stderr);
            cli_fail(cmd, &err);
            return -1;
        }
        pg.base += o->steps;
    }
    return 0;
}

/* *r (=) the sum of every rank's range statistics, through ranks[dist_size()]. */
static void range_sum(sample_range *r, sample_range *ranks)
{
    dist_allgather(r, ranks, sizeof *r);
    *r = (sample_range){0};
    for (int q = 0; q < dist_size(); q++) {
        r->images += ranks[q].images, r->pixels += ranks[q].pixels;
        r->out_pixels += ranks[q].out_pixels, r->broken += ranks[q].broken;
        r->max_abs = ranks[q].max_abs > r->max_abs ? ranks[q].max_abs : r->max_abs;
    }
}

/* Writes the n images x[n, H, W, C] as sdir/%06d.png and OUT/grid.png (1- or
 * 3-channel images), then turns x into NCHW in place and writes
 * OUT/samples.npy. Returns 0, or -1 (err set). */
static int write_samples(const char *out, const char *sdir, float *x, int n, int H, int W, int C, int cols,
                         ddpm_err *err)
{
    const size_t D = (size_t)H * W * C;
    char path[4200];
    if (C == 1 || C == 3) {
        if (write_pngs(sdir, x, n, H, W, C, err)) return -1;
        int g = n < GRID_MAX ? n : GRID_MAX;
        if (cols <= 0) cols = (int)ceil(sqrt((double)g));
        snprintf(path, sizeof path, "%s/grid.png", out);
        if (png_write_grid(path, x, g, H, W, C, cols, 2, err)) return -1;
    }
    /* NHWC -> NCHW one image at a time (in place through a one-image buffer). */
    float *tmp = malloc(sizeof(float) * D);
    if (!tmp) return ddpm_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        nhwc_to_nchw(tmp, x + (size_t)i * D, 1, C, H * W);
        memcpy(x + (size_t)i * D, tmp, sizeof(float) * D);
    }
    free(tmp);
    snprintf(path, sizeof path, "%s/samples.npy", out);
    int64_t shape[4] = {n, C, H, W};
    return npy_write_f32(path, x, 4, shape, err);
}

int cmd_sample(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *noise = NULL, *classes = NULL;
    long long n = 64, batch = 64, threads = 0, per_class = 0;
    double guidance = 1;
    cli_sampler sa = CLI_SAMPLER_INIT;
    int no_verify = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder (diffusers layout) or run folder", 0, 0, NULL, 1, 0},
        {"out", ARG_STR, &out, "DIR", "output folder (created if missing)", 0, 0, NULL, 1, 0},
        {"n", ARG_INT, &n, "N", "number of images", 1, SAMPLE_MAX_N, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call", 1, 4096, NULL, 0, 0},
        CLI_SAMPLER_SPECS(&sa),
        {"class", ARG_STR, &classes, "NAME|INDEX[,...]", "conditional models: the classes to draw, in turn",
         0, 0, NULL, 0, 0},
        {"per-class", ARG_INT, &per_class, "K", "conditional models: K images of every class, one grid row per class (default: off)",
         1, 10000, NULL, 0, 0},
        {"guidance", ARG_FLOAT, &guidance, "W", CLI_GUIDANCE_HELP, 0, 100, NULL, 0, 0},
        {"noise", ARG_STR, &noise, "X_T.npy",
         "start from this x_T instead of drawing it: float32 [n, C, H, W] (sets --n)", 0, 0, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"sample", "Sample images from a model with the DPM-Solver++, DDIM or DDPM sampler.", sample_usage,
                   specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    const int n_seen = args_seen(specs, "n");
    int nthreads = ddpm_set_threads((int)threads);
    st_set_verify(!no_verify);

    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(model, dir, sizeof dir);
    unet_config cfg;
    if (model_read_config(dir, &cfg, &err)) return cli_bad_input(&cmd, &err);
    if (cfg.out_channels != cfg.in_channels) {
        args_error(&cmd, "%s: the model predicts %d channels for %d input channels; only epsilon models "
                         "(out_channels == in_channels) can be sampled", dir, cfg.out_channels, cfg.in_channels);
        return EXIT_USAGE;
    }
    const int H = cfg.sample_size, W = cfg.sample_size, C = cfg.in_channels, HW = H * W;
    const size_t D = (size_t)HW * C;
    /* Classes: which to draw (pick), and the guidance weight w. */
    int32_t pick[CLI_MAX_PICK];
    int npick = 0, nclasses, null_class, bad = 1, conditional = cfg.num_class_embeds > 0;
    if ((r = cli_classes(&cmd, dir, &cfg, classes, pick, &npick, &nclasses, &null_class))) return r;
    if (!conditional && (classes || per_class || args_seen(specs, "guidance")))
        args_error(&cmd, "--class, --per-class and --guidance need a class-conditional model (ddpm train "
                         "--classes); %s is unconditional", dir);
    else if (classes && per_class)
        args_error(&cmd, "--class and --per-class exclude each other");
    else if (per_class && n_seen && n != per_class * nclasses)
        args_error(&cmd, "--per-class %lld draws %lld images (%d classes), not --n %lld", per_class,
                   per_class * nclasses, nclasses, n);
    else
        bad = 0;
    if (bad) return EXIT_USAGE;
    if (per_class) n = per_class * nclasses;
    /* No classes asked: the null class, with guidance 0 (one evaluation). */
    if (!args_seen(specs, "guidance")) guidance = null_class >= 0 ? CLI_GUIDANCE : 1.0;
    const float w = conditional && !classes && !per_class ? 0.0f : (float)guidance;
    if (conditional && null_class < 0 && w != 1.0f) {
        args_error(&cmd, "%s has no null class (not trained by ddpm --classes): give --class or --per-class, with "
                         "--guidance 1", dir);
        return EXIT_USAGE;
    }

    /* The noise schedule. */
    schedule sch;
    char *sj = NULL;
    if (model_read_scheduler(dir, &sj, &err)) return cli_bad_input(&cmd, &err);
    if (sj) {
        int rc = schedule_from_json(&sch, sj, &err);
        free(sj);
        if (rc) {
            ddpm_wrap(&err, "%s/scheduler_config.json", dir);
            return cli_bad_input(&cmd, &err);
        }
    } else {
        if (schedule_init(&sch, "linear", 1000, 1e-4, 0.02, &err)) return cli_fail(&cmd, &err);
        if (dist_rank() == 0)
            fprintf(stderr, "ddpm sample: %s has no scheduler_config.json; using the DDPMScheduler defaults "
                            "(linear 1e-4..0.02, T = 1000, fixed_small, clip_sample)\n", dir);
    }

    sampler_opts o;
    sample_range range = {0};
    if (cli_sampler_opts(&cmd, &sa, &sch, &o)) {
        schedule_free(&sch);
        return EXIT_USAGE;
    }
    o.range = &range;

    /* Optional x_T: NCHW on disk -> NHWC here. */
    float *xT = NULL;
    if (noise) {
        float *raw = NULL;
        int ndim;
        int64_t shape[NPY_MAX_DIMS];
        if (npy_read_f32(noise, &raw, &ndim, shape, &err)) {
            schedule_free(&sch);
            return cli_bad_input(&cmd, &err);
        }
        if (ndim != 4 || shape[0] < 1 || shape[0] > SAMPLE_MAX_N || shape[1] != C || shape[2] != H || shape[3] != W) {
            char got[160] = "";
            size_t k = 0;
            for (int i = 0; i < ndim && k < sizeof got; i++)
                k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
            args_error(&cmd, "--noise %s: expected float32 [n, %d, %d, %d] with 1 <= n <= %d, got [%s]", noise, C, H,
                       W, SAMPLE_MAX_N, got);
            free(raw);
            schedule_free(&sch);
            return EXIT_USAGE;
        }
        if (n_seen && n != shape[0]) {
            args_error(&cmd, "--n %lld disagrees with --noise %s, which holds %lld images", n, noise,
                       (long long)shape[0]);
            free(raw);
            schedule_free(&sch);
            return EXIT_USAGE;
        }
        n = shape[0];
        if (sampler_check_finite("--noise", raw, (int)n, D, 0, &err)) {
            args_error(&cmd, "%s (%s)", err.msg, noise);
            free(raw);
            schedule_free(&sch);
            return EXIT_USAGE;
        }
        xT = malloc(sizeof(float) * (size_t)n * D);
        if (xT) nchw_to_nhwc(xT, raw, (int)n, C, HW);
        free(raw);
        if (!xT) {
            fprintf(stderr, "ddpm sample: out of memory\n");
            schedule_free(&sch);
            return EXIT_RUNTIME;
        }
    }

    const int N = (int)n, B = (int)(batch < n ? batch : n), root = dist_rank() == 0;
    int first, count; /* this rank's images (all of them in a plain run) */
    cli_share(N, B, dist_rank(), &first, &count);
    int rc = 0;
    unet *u = NULL;
    float *x = NULL; /* rank 0: all N images, its own share first; other ranks: their share (+1: never malloc(0)) */
    int32_t *labels = NULL; /* conditional models: every image's class */
    guided g = {0};
    sample_range *ranks = NULL; /* every rank's range statistics */
    char sdir[4200];
    snprintf(sdir, sizeof sdir, "%s/samples", out);
    const int png_ok = C == 1 || C == 3;
    denoiser den;
    /* Setting up may fail on one rank alone: every rank learns it before sampling. */
    if (root && (png_ok ? make_dirs(sdir, &err) : make_dirs(out, &err))) {
        rc = cli_fail(&cmd, &err);
    } else if (!(x = malloc(sizeof(float) * (size_t)(root ? N : count + 1) * D)) ||
               !(ranks = malloc(sizeof *ranks * (size_t)dist_size()))) {
        fprintf(stderr, "ddpm sample: out of memory for %d images\n", root ? N : count);
        rc = EXIT_RUNTIME;
    } else if (conditional && !(labels = malloc(sizeof *labels * (size_t)N))) {
        fprintf(stderr, "ddpm sample: out of memory\n");
        rc = EXIT_RUNTIME;
    } else if (model_load(&u, dir, conditional ? guided_rows(w, B) : B, 0, &err) ||
               (conditional ? sampler_guided(&den, &g, u, B, null_class, w, &err) : sampler_unet(&den, u, &err))) {
        rc = cli_bad_input(&cmd, &err);
    }
    for (int i = 0; labels && i < N; i++)
        labels[i] = per_class ? i / (int)per_class : npick ? pick[i % npick] : null_class;
    if (dist_or(rc != 0)) {
        rc = rc ? rc : EXIT_RUNTIME;
        goto done;
    }
    if (root && !png_ok) fprintf(stderr, "ddpm sample: %d-channel images: writing samples.npy only (no PNGs)\n", C);
    char desc[256], procs[64] = "";
    cli_sampler_desc(&o, &sch, desc, sizeof desc);
    if (dist_size() > 1) snprintf(procs, sizeof procs, " in each of %d processes", dist_size());
    if (root)
        fprintf(stderr, "ddpm sample: %d image(s) of %dx%dx%d, %s, %s, batch %d, seed %llu, %d thread(s)%s\n", N, H,
                W, C, desc, sch.variance_type == SCHED_FIXED_SMALL ? "fixed_small" : "fixed_large", B,
                (unsigned long long)o.seed, nthreads, procs);

    double t0 = ddpm_now();
    int failed = sample_share(&cmd, &den, conditional ? &g : NULL, labels, &sch, &o, first, count, B, D, xT, x);
    /* On rank 0 the gather is in place: its share already lies at the start of x. */
    if ((rc = cli_gather_share(failed, x, x, N, B, sizeof(float) * D))) goto done;
    range_sum(&range, ranks);
    double secs = ddpm_now() - t0;
    if (!root) goto done;

    if (write_samples(out, sdir, x, N, H, W, C, per_class ? (int)per_class : 0, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    fprintf(stderr, "ddpm sample: %d image(s) in %.2f s (%.3f s per image)\n", N, secs, secs / N);
    fprintf(stderr, "ddpm sample: before the clamp to [-1, 1]: %.3f%% of pixels beyond +-%.2f (largest |x| %.3g), "
                    "%lld of %d image(s) broken (more than %.0f%% of their pixels)%s\n",
            100.0 * (double)range.out_pixels / (double)range.pixels, (double)SAMPLE_RANGE_TOL, range.max_abs,
            range.broken, N, 100 * SAMPLE_BROKEN_FRAC, o.raw ? "; --raw: not clamped" : "");
    if (png_ok) printf("%s/grid.png\n%s/000000.png .. %06d.png\n", out, sdir, N - 1);
    printf("%s/samples.npy [%d, %d, %d, %d] float32 NCHW\n", out, N, C, H, W);
done:
    guided_free(&g);
    unet_free(u);
    free(labels);
    free(x);
    free(ranks);
    free(xT);
    schedule_free(&sch);
    return rc;
}
