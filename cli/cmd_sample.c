/* cmd_sample.c -- `ddpm sample`: draw images from a model folder with the DDPM
 * (ancestral, paper Algorithm 2), DDIM or DPM-Solver++ 2M sampler, and write a
 * PNG grid, one PNG per image and all samples as an .npy. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "ddpm.h"

#define SAMPLE_MAX_N 1000000 /* images per run (all are held in memory for samples.npy) */
#define GRID_MAX 1024        /* grid.png shows at most this many (the first) images */

static const char sample_usage[] =
    "Starts from x_T ~ N(0, I) (or --noise) and runs the network --steps times.\n"
    "  ddpm: ancestral sampling (DDPMScheduler): sigma_t^2 from the scheduler's variance_type\n"
    "        (fixed_small = posterior variance, fixed_large = beta_t). The default, with 50\n"
    "        steps and x0 as predicted: the best samples on models trained for minutes to\n"
    "        hours (docs/quality.md); ddim and dpm++2m default to 20, gaining nothing beyond.\n"
    "        DDPMScheduler clips x0 when the config's clip_sample says so; ddpm does that\n"
    "        only with --x0 config. --steps 1000 is the paper's sampler.\n"
    "  ddim: DDIMScheduler, --eta 0 deterministic, 1 ~ DDPM variance.\n"
    "  dpm++2m: DPM-Solver++ (2M), as diffusers' DPMSolverMultistepScheduler (dpmsolver++,\n"
    "        order 2, lower_order_final); deterministic. Like it, x0 is not clipped unless\n"
    "        the config sets thresholding or --x0 says so.\n"
    "K < T steps use the --spacing of set_timesteps (default: the scheduler_config's).\n"
    "Each predicted x_0 is processed as --x0 says: clip_sample, dynamic thresholding\n"
    "(Saharia et al. 2022, diffusers' thresholding) or nothing.\n"
    "The noise schedule comes from the model folder's scheduler_config.json; without one\n"
    "the diffusers DDPMScheduler defaults are used: linear betas 1e-4..0.02, T = 1000,\n"
    "variance fixed_small, clip_sample true.\n"
    "The noise depends only on (--seed, image index, timestep), never on --batch,\n"
    "--threads or the process count; the network's rounding may depend on --batch, and\n"
    "below 8 images per batch on --threads (docs/determinism.md). Under mpirun the\n"
    "processes share the batches, and rank 0 writes the files.\n"
    "Writes OUT/grid.png (the first up to 1024 images, ~sqrt(n) columns, 2 px gaps),\n"
    "OUT/samples/000000.png ... (one PNG per image; 1- or 3-channel models) and\n"
    "OUT/samples.npy: float32 [n, C, H, W] (NCHW, as PyTorch), values in [-1, 1]: the\n"
    "samples are clamped there, as diffusers' pipelines do, unless --raw\n"
    "(pixel = round((x + 1) / 2 * 255) as diffusers saves images). Reports the share of\n"
    "pixels beyond +-1.05 before that clamp, and the images with more than 1% of them\n"
    "(out of range; `ddpm eval fid` also counts broken images).\n"
    "Class-conditional models (ddpm train --classes): --class picks the classes (names or\n"
    "indices, given to the images in turn), --per-class K draws K of every class (one grid\n"
    "row per class), and --guidance W mixes in the unconditional model (classifier-free\n"
    "guidance): eps = eps_uncond + W (eps_class - eps_uncond), both in one batched pass;\n"
    "W = 1 is plain conditioning, W = 0 the unconditional model. Guidance applies to the\n"
    "steps of noise level sigma_t = sqrt((1 - alphabar_t) / alphabar_t) in (0, 2] by\n"
    "default (--guidance-interval; all: every step). Without --class or\n"
    "--per-class a conditional model samples unconditionally (its null class).";


typedef struct progress {
    int tty;
    double t0;
    int last_tenth;
    double last_print; /* tty: redraw at most every 0.2 s */
} progress;

static int progress_cb(void *ctx, long long done, long long total)
{
    progress *p = ctx;
    double el = ddpm_now() - p->t0, frac = (double)done / (double)total;
    double eta = frac > 0 ? el / frac - el : 0;
    if (p->tty) {
        if (done < total && el - p->last_print < 0.2) return 0;
        p->last_print = el;
        fprintf(stderr, "\rddpm sample: %5.1f%%  %lld/%lld network calls  %.1f s elapsed, %.1f s left   ",
                100 * frac, done, total, el, eta);
        if (done == total) fputc('\n', stderr);
        fflush(stderr);
    } else {
        int tenth = (int)(10 * done / total);
        if (tenth > p->last_tenth) {
            p->last_tenth = tenth;
            fprintf(stderr, "ddpm sample: %3d%%  %lld/%lld network calls  %.1f s elapsed, %.1f s left\n",
                    tenth * 10, done, total, el, eta);
        }
    }
    return 0;
}

/* Writes the n images x [n, C, H, W] as sdir/%06d.png and OUT/grid.png (1- or
 * 3-channel images), and OUT/samples.npy. Returns 0, or the exit status after a message. */
static int write_samples(const arg_cmd *cmd, const char *out, const char *sdir, const float *x, int n, int H, int W,
                         int C, int cols)
{
    const size_t D = (size_t)H * W * C;
    char path[4200];
    int st;
    if (C == 1 || C == 3) {
        for (int i = 0; i < n; i++) {
            if (snprintf(path, sizeof path, "%s/%06d.png", sdir, i) >= (int)sizeof path) {
                fprintf(stderr, "ddpm %s: output path too long: %s\n", cmd->name, sdir);
                return EXIT_RUNTIME;
            }
            if ((st = ddpm_png_write(path, x + (size_t)i * D, C, H, W))) return cli_status(cmd, st);
        }
        int g = n < GRID_MAX ? n : GRID_MAX;
        if (cols <= 0) cols = (int)ceil(sqrt((double)g));
        snprintf(path, sizeof path, "%s/grid.png", out);
        if ((st = ddpm_png_write_grid(path, x, g, C, H, W, cols, 2))) return cli_status(cmd, st);
    }
    snprintf(path, sizeof path, "%s/samples.npy", out);
    int64_t shape[4] = {n, C, H, W};
    return (st = ddpm_npy_write(path, x, 4, shape)) ? cli_status(cmd, st) : 0;
}

/* Reads --noise (float32 [n, C, H, W], finite) into *xT and sets *n. Returns
 * 0, or the exit status after a message. */
static int read_noise(const arg_cmd *cmd, const char *noise, const ddpm_model_info *mi, int n_seen, long long *n,
                      float **xT)
{
    const int C = mi->in_channels, H = mi->sample_size, W = mi->sample_size;
    int ndim, st;
    int64_t shape[DDPM_NPY_MAX_DIMS];
    if ((st = ddpm_npy_read(noise, xT, &ndim, shape, NULL))) return cli_status(cmd, st);
    if (ndim != 4 || shape[0] < 1 || shape[0] > SAMPLE_MAX_N || shape[1] != C || shape[2] != H || shape[3] != W) {
        char got[160] = "";
        size_t k = 0;
        for (int i = 0; i < ndim && k < sizeof got; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
        args_error(cmd, "--noise %s: expected float32 [n, %d, %d, %d] with 1 <= n <= %d, got [%s]", noise, C, H, W,
                   SAMPLE_MAX_N, got);
        return EXIT_USAGE;
    }
    if (n_seen && *n != shape[0]) {
        args_error(cmd, "--n %lld disagrees with --noise %s, which holds %lld images", *n, noise, (long long)shape[0]);
        return EXIT_USAGE;
    }
    *n = shape[0];
    const size_t D = (size_t)C * H * W, total = (size_t)*n * D;
    size_t bad = 0, first = 0;
    for (size_t j = 0; j < total; j++)
        if (!isfinite((*xT)[j]) && !bad++) first = j;
    if (bad) {
        args_error(cmd, "--noise: %zu non-finite value(s) (NaN/Inf), first in image %zu at element %zu (%s)", bad,
                   first / D, first % D, noise);
        return EXIT_USAGE;
    }
    return 0;
}

/* The class flags: which class each of the n images gets (labels, NULL for
 * an unconditional sample) and the guidance weight. Returns 0, or EXIT_USAGE
 * after a message. */
static int pick_labels(const arg_cmd *cmd, const arg_spec *specs, const ddpm_model *m, const char *classes,
                       long long per_class, long long *n, double guidance, int32_t **labels, float *w)
{
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    int32_t pick[CLI_MAX_PICK];
    int npick = 0, r, conditional = mi.num_class_embeds > 0, n_seen = args_seen(specs, "n");
    if ((r = cli_pick_classes(cmd, m, conditional ? classes : NULL, pick, &npick))) return r;
    if (!conditional && (classes || per_class || args_seen(specs, "guidance"))) {
        args_error(cmd, "--class, --per-class and --guidance need a class-conditional model (ddpm train "
                        "--classes); %s is unconditional", mi.dir);
        return EXIT_USAGE;
    }
    if (classes && per_class) {
        args_error(cmd, "--class and --per-class exclude each other");
        return EXIT_USAGE;
    }
    if (per_class && n_seen && *n != per_class * mi.num_classes) {
        args_error(cmd, "--per-class %lld draws %lld images (%d classes), not --n %lld", per_class,
                   per_class * mi.num_classes, mi.num_classes, *n);
        return EXIT_USAGE;
    }
    if (per_class) *n = per_class * mi.num_classes;
    /* No classes asked: the null class, with guidance 0 (one evaluation). */
    if (!args_seen(specs, "guidance")) guidance = mi.null_class >= 0 ? DDPM_GUIDANCE_DEFAULT : 1.0;
    *w = conditional && !classes && !per_class ? 0.0f : (float)guidance;
    if (conditional && mi.null_class < 0 && *w != 1.0f) {
        args_error(cmd, "%s has no null class (not trained by ddpm --classes): give --class or --per-class, with "
                        "--guidance 1", mi.dir);
        return EXIT_USAGE;
    }
    *labels = NULL;
    if (!conditional || (!classes && !per_class)) return 0;
    if (!(*labels = malloc(sizeof **labels * (size_t)*n))) {
        fprintf(stderr, "ddpm sample: out of memory\n");
        return EXIT_RUNTIME;
    }
    for (long long i = 0; i < *n; i++) (*labels)[i] = per_class ? (int32_t)(i / per_class) : pick[i % npick];
    return 0;
}

int cmd_sample(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *noise = NULL, *classes = NULL;
    long long n = 64, batch = 64, threads = 0, per_class = 0;
    double guidance = 1;
    cli_sampler sa = CLI_SAMPLER_INIT;
    int no_verify = 0;
    const char *conv = CLI_CONV_DEFAULT;
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
        ARG_CONV(&conv),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"sample", "Sample images from a model with the DPM-Solver++, DDIM or DDPM sampler.", sample_usage,
                   specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    const int root = ddpm_proc_rank() == 0;
    int nthreads = ddpm_set_threads((int)threads);
    ddpm_set_verify(!no_verify);
    ddpm_set_conv_algorithm(conv);

    ddpm_model *m = NULL;
    ddpm_model_info mi;
    ddpm_sample_options o;
    ddpm_sample_report rep;
    int32_t *labels = NULL;
    float *xT = NULL, *x = NULL, w = 0;
    int rc = 0, st;
    if ((st = ddpm_model_load(model, &m))) return cli_status(&cmd, st);
    ddpm_model_get_info(m, &mi);
    const int H = mi.sample_size, W = mi.sample_size, C = mi.in_channels;
    const size_t D = (size_t)H * W * C;
    if (mi.out_channels != (strcmp(mi.variance_type, "learned_range") ? 1 : 2) * mi.in_channels) {
        args_error(&cmd, "%s: the model predicts %d channels for %d input channels, which variance_type %s does not "
                         "fit (the same number, or twice as many for learned_range)", mi.dir, mi.out_channels,
                   mi.in_channels, mi.variance_type);
        rc = EXIT_USAGE;
        goto done;
    }
    if ((rc = pick_labels(&cmd, specs, m, classes, per_class, &n, guidance, &labels, &w))) goto done;
    if (!mi.has_scheduler && root)
        fprintf(stderr, "ddpm sample: %s has no scheduler_config.json; using the DDPMScheduler defaults "
                        "(linear 1e-4..0.02, T = 1000, fixed_small, clip_sample)\n", mi.dir);
    ddpm_sample_options_init(&o);
    if ((rc = cli_sample_options(&cmd, &sa, m, &o))) goto done;
    if (noise && (rc = read_noise(&cmd, noise, &mi, args_seen(specs, "n"), &n, &xT))) goto done;

    const int N = (int)n, B = (int)(batch < n ? batch : n), png_ok = C == 1 || C == 3;
    char sdir[4200];
    snprintf(sdir, sizeof sdir, "%s/samples", out);
    /* Setting up may fail on rank 0 alone: every rank learns it before sampling. */
    if (root && (st = ddpm_make_dirs(png_ok ? sdir : out))) {
        rc = cli_status(&cmd, st);
    } else if (root && !(x = malloc(sizeof(float) * (size_t)N * D))) {
        fprintf(stderr, "ddpm sample: out of memory for %d images\n", N);
        rc = EXIT_RUNTIME;
    }
    if (ddpm_proc_or(rc != 0)) {
        rc = rc ? rc : EXIT_RUNTIME;
        goto done;
    }
    if (root && !png_ok) fprintf(stderr, "ddpm sample: %d-channel images: writing samples.npy only (no PNGs)\n", C);
    char desc[256], procs[64] = "";
    o.batch = B, o.classes = labels, o.guidance = w, o.noise = xT;
    ddpm_sample_describe(m, &o, desc, sizeof desc);
    if (ddpm_proc_size() > 1) snprintf(procs, sizeof procs, " in each of %d processes", ddpm_proc_size());
    if (root)
        fprintf(stderr, "ddpm sample: %d image(s) of %dx%dx%d, %s, %s, batch %d, seed %llu, %d thread(s)%s\n", N, H,
                W, C, desc, mi.variance_type, B, (unsigned long long)o.seed, nthreads, procs);

    progress pg = {isatty(2), ddpm_now(), -1, 0};
    o.progress = progress_cb, o.progress_ctx = &pg;
    double t0 = ddpm_now();
    if ((st = ddpm_sample(m, &o, N, x, &rep))) {
        if (root && pg.tty) fputc('\n', stderr);
        rc = cli_status_all(&cmd, st);
        goto done;
    }
    double secs = ddpm_now() - t0;
    if (!root) goto done;
    if ((rc = write_samples(&cmd, out, sdir, x, N, H, W, C, per_class ? (int)per_class : 0))) goto done;
    fprintf(stderr, "ddpm sample: %d image(s) in %.2f s (%.3f s per image)\n", N, secs, secs / N);
    fprintf(stderr, "ddpm sample: before the clamp to [-1, 1]: %.3f%% of pixels beyond +-%.2f (largest |x| %.3g), "
                    "%lld of %d image(s) out of range (more than %.0f%% of their pixels)%s\n",
            100.0 * (double)rep.out_pixels / (double)rep.pixels, DDPM_RANGE_TOL, rep.max_abs, rep.out_images, N,
            100 * DDPM_OUT_IMAGE_FRAC, o.raw ? "; --raw: not clamped" : "");
    if (png_ok) printf("%s/grid.png\n%s/000000.png .. %06d.png\n", out, sdir, N - 1);
    printf("%s/samples.npy [%d, %d, %d, %d] float32 NCHW\n", out, N, C, H, W);
done:
    free(labels);
    free(x);
    ddpm_free(xT);
    ddpm_model_free(m);
    return rc;
}
