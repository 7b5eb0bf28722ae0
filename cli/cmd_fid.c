/* cmd_fid.c -- `ddpm eval fid` (FID, Inception Score, precision/recall of
 * samples against a reference) and `ddpm eval stats` (a reference's statistics
 * as pytorch-fid's .npz). Inputs are "sources": a samples .npy, a data set as
 * --data takes it (IDX, CIFAR-10 binary, PNG folder), a statistics .npz, or
 * (samples only) a model or run folder to sample from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "eval/quality.h"
#include "io/fileio.h"
#include "io/modelfolder.h"
#include "io/npy.h"
#include "ops/ops.h"

#define DEFAULT_MODEL_N 1000 /* images sampled from a model when --n is not given */

/* ---- sources ---------------------------------------------------------------- */

typedef struct source {
    int is_stats;
    dataset d;       /* images as bytes (data sets, uint8 .npy) */
    float *f32;      /* images as floats in [-1, 1], NHWC (float .npy, samples of a model) */
    image_set img;
    quality_ref ref; /* is_stats: a statistics file */
    sample_range range; /* float images: values beyond [-1, 1] (range.images = 0: not measured) */
    char desc[700];
} source;

/* Sampling options for a model given as --samples. */
typedef struct sample_args {
    cli_sampler s;
    int batch;
} sample_args;

static void source_free(source *s) {
    dataset_free(&s->d);
    free(s->f32);
    quality_ref_free(&s->ref);
    memset(s, 0, sizeof *s);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

static int is_model_dir(const char *path) {
    char buf[4200];
    struct stat st;
    snprintf(buf, sizeof buf, "%s/config.json", path);
    if (stat(buf, &st) == 0) return 1;
    snprintf(buf, sizeof buf, "%s/model/config.json", path);
    return stat(buf, &st) == 0;
}

/* A samples .npy: [n, C, H, W] float in [-1, 1] or uint8 0..255, C = 1 or 3. */
static int load_npy(source *s, const char *path, long long limit, ddpm_err *err) {
    unsigned char *buf = NULL;
    size_t len;
    npy_info info;
    float *raw = NULL;
    int ndim, rc = -1;
    int64_t shape[NPY_MAX_DIMS];
    if (file_read_all(path, &buf, &len, err) || npy_parse_header(path, buf, len, len, &info, err)) goto done;
    if (info.ndim != 4 || info.shape[0] < 1 || (info.shape[1] != 1 && info.shape[1] != 3) || info.shape[2] < 1 ||
        info.shape[3] < 1 || info.shape[0] > INT32_MAX || info.shape[2] * info.shape[3] > (1 << 26)) {
        ddpm_fail(err, "%s: expected images [n, C, H, W] with C = 1 or 3 (NCHW, as `ddpm sample` writes)", path);
        goto done;
    }
    int n = (int)info.shape[0], C = (int)info.shape[1], H = (int)info.shape[2], W = (int)info.shape[3];
    if (limit > 0 && limit < n) n = (int)limit;
    size_t HW = (size_t)H * W, D = HW * C;
    if (info.type == NPY_U8) {
        const unsigned char *src = buf + info.data_offset;
        if (!(s->d.pixels = ddpm_malloc((size_t)n * D, err))) goto done;
        for (size_t i = 0; i < (size_t)n; i++)
            for (size_t p = 0; p < HW; p++)
                for (int c = 0; c < C; c++) s->d.pixels[(i * HW + p) * C + c] = src[(i * C + c) * HW + p];
        s->d.n = n, s->d.h = H, s->d.w = W, s->d.c = C;
        s->img = (image_set){n, H, W, C, s->d.pixels, NULL};
    } else {
        if (npy_parse(path, buf, len, NPY_F32, (void **)&raw, &ndim, shape, err)) goto done;
        if (!(s->f32 = ddpm_alloc_floats((size_t)n * D, err))) goto done;
        nchw_to_nhwc(s->f32, raw, n, C, (int)HW);
        s->img = (image_set){n, H, W, C, NULL, s->f32};
        sample_range_add(&s->range, s->f32, n, D);
    }
    snprintf(s->desc, sizeof s->desc, "%d images %dx%dx%d from %s", n, H, W, C, path);
    rc = 0;
done:
    free(buf);
    free(raw);
    return rc;
}

typedef struct progress {
    const char *what;
    int tty, last;
    double t0;
} progress;

static void on_progress(void *ctx, int done, int total) {
    progress *p = ctx;
    int pct = (int)(100.0 * done / total);
    double el = ddpm_now() - p->t0;
    if (p->tty) {
        fprintf(stderr, "\r%s: %3d%%  %d/%d  %.0f s   ", p->what, pct, done, total, el);
        if (done == total) fputc('\n', stderr);
    } else if (pct / 25 != p->last / 25 || done == total) {
        fprintf(stderr, "%s: %3d%%  %d/%d  %.0f s\n", p->what, pct, done, total, el);
    }
    p->last = pct;
}

/* Samples n images from a model folder into s (floats). */
static int sample_model(const arg_cmd *cmd, source *s, const char *path, int n, const sample_args *a) {
    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(path, dir, sizeof dir);
    schedule sch;
    int rc = cli_read_schedule(cmd, dir, &sch);
    if (rc) return rc;
    unet *u = NULL;
    sampler_opts o;
    denoiser den;
    if ((rc = cli_sampler_opts(cmd, &a->s, &sch, &o))) goto done;
    o.range = &s->range;
    rc = EXIT_USAGE;
    if (model_load(&u, dir, a->batch < n ? a->batch : n, 0, &err) || sampler_unet(&den, u, &err)) {
        rc = cli_bad_input(cmd, &err);
        goto done;
    }
    const unet_config *c = &u->cfg;
    if (c->out_channels != c->in_channels || (c->in_channels != 1 && c->in_channels != 3)) {
        args_error(cmd, "%s: only epsilon models of 1 or 3 channels can be sampled", dir);
        goto done;
    }
    rc = EXIT_RUNTIME;
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    if (!(s->f32 = ddpm_alloc_floats((size_t)n * D, &err))) {
        cli_fail(cmd, &err);
        goto done;
    }
    char desc[256];
    cli_sampler_desc(&o, &sch, desc, sizeof desc);
    fprintf(stderr, "ddpm %s: sampling %d images from %s (%s, seed %llu)\n", cmd->name, n, dir, desc,
            (unsigned long long)o.seed);
    progress pg = {"sampling (network calls)", isatty(2), -1, ddpm_now()};
    if (quality_sample(&den, &sch, &o, n, s->f32, on_progress, &pg, &err)) {
        cli_fail(cmd, &err);
        goto done;
    }
    s->img = (image_set){n, c->sample_size, c->sample_size, c->in_channels, NULL, s->f32};
    snprintf(s->desc, sizeof s->desc, "%d samples of %.400s (%s, seed %llu)", n, dir, desc, (unsigned long long)o.seed);
    rc = 0;
done:
    unet_free(u);
    schedule_free(&sch);
    return rc;
}

/* Opens spec as a source (limit > 0: at most that many images). sa != NULL
 * allows a model folder (sampled). Returns 0 or an exit status after a message. */
static int source_open(const arg_cmd *cmd, const char *flag, const char *spec, int split, long long limit,
                       const sample_args *sa, source *s) {
    ddpm_err err = {0};
    memset(s, 0, sizeof *s);
    if (ends_with(spec, ".npz")) {
        if (quality_ref_load(&s->ref, spec, &err)) return cli_bad_input(cmd, &err);
        s->is_stats = 1;
        snprintf(s->desc, sizeof s->desc, "statistics of %lld-d features from %s%s", (long long)s->ref.st.d, spec,
                 s->ref.feats ? " (with features)" : "");
        return 0;
    }
    if (ends_with(spec, ".npy")) {
        if (load_npy(s, spec, limit, &err)) {
            args_error(cmd, "%s: %s", flag, err.msg);
            source_free(s);
            return EXIT_USAGE;
        }
        return 0;
    }
    if (is_model_dir(spec)) {
        if (!sa) {
            args_error(cmd, "%s %s is a model folder: only --samples can be sampled from a model", flag, spec);
            return EXIT_USAGE;
        }
        int r = sample_model(cmd, s, spec, limit > 0 ? (int)limit : DEFAULT_MODEL_N, sa);
        if (r) source_free(s);
        return r;
    }
    if (dataset_load(&s->d, spec, split, (int)limit, &err)) {
        args_error(cmd, "%s: %s", flag, err.msg);
        return EXIT_USAGE;
    }
    s->img = (image_set){s->d.n, s->d.h, s->d.w, s->d.c, s->d.pixels, NULL};
    snprintf(s->desc, sizeof s->desc, "%s", s->d.desc);
    return 0;
}

/* --features auto: a statistics reference decides by its dimension (256:
 * F-MNIST, else Inception); otherwise 28x28 gray images get F-MNIST features. */
static int pick_features(const char *name, const source *samples, const source *ref) {
    if (strcmp(name, "auto")) return featnet_kind_from_name(name);
    if (ref && ref->is_stats) return ref->ref.st.d == 256 ? FEATNET_FMNIST : FEATNET_INCEPTION;
    const image_set *i = &samples->img;
    return i->h == 28 && i->w == 28 && i->c == 1 ? FEATNET_FMNIST : FEATNET_INCEPTION;
}

static int open_net(const arg_cmd *cmd, int kind, const char *inception, int batch, featnet **net) {
    ddpm_err err = {0};
    if (featnet_open(net, kind, inception, batch, &err)) {
        /* A missing or malformed weights file is bad input; anything else a failure. */
        return strstr(err.msg, "out of memory") || strstr(err.msg, "oneDNN") ? cli_fail(cmd, &err)
                                                                               : cli_bad_input(cmd, &err);
    }
    return 0;
}

/* The statistics of an image source (with features for precision/recall). */
static int source_stats(const arg_cmd *cmd, featnet *net, source *s, const char *what) {
    ddpm_err err = {0};
    if (s->is_stats) return 0;
    if (s->img.n < 2) {
        args_error(cmd, "%s: statistics need at least 2 images, got %d", what, s->img.n);
        return EXIT_USAGE;
    }
    if (featnet_check(net, &s->img, &err)) {
        args_error(cmd, "%s: %s", what, err.msg);
        return EXIT_USAGE;
    }
    char label[64];
    snprintf(label, sizeof label, "%s features", what);
    progress pg = {label, isatty(2), -1, ddpm_now()};
    if (quality_ref_from_images(&s->ref, net, &s->img, 1, NULL, on_progress, &pg, &err)) return cli_fail(cmd, &err);
    return 0;
}

/* ---- ddpm eval fid ---------------------------------------------------------- */

/* A number, or null when absent (JSON has no NaN). */
static void json_num(char *b, size_t n, int has, double v) {
    if (has) snprintf(b, n, "%.17g", v);
    else snprintf(b, n, "null");
}

static int write_json(const char *path, const char *features, const char *label, const quality *q,
                      const sample_range *r, double secs, ddpm_err *err) {
    char is[4][40], buf[1024], rng[3][40];
    json_num(rng[0], 40, r->images > 0, r->images > 0 ? (double)r->out_pixels / (double)r->pixels : 0);
    json_num(rng[1], 40, r->images > 0, r->images > 0 ? (double)r->broken / (double)r->images : 0);
    json_num(rng[2], 40, r->images > 0, r->max_abs);
    json_num(is[0], 40, q->has_is, q->is_mean), json_num(is[1], 40, q->has_is, q->is_std);
    json_num(is[2], 40, q->has_pr, q->precision), json_num(is[3], 40, q->has_pr, q->recall);
    char nref[40];
    json_num(nref, sizeof nref, q->n_ref > 0, (double)q->n_ref);
    size_t len = (size_t)snprintf(buf, sizeof buf,
                                  "{\"features\": \"%s\", \"label\": \"%s\", \"fid\": %.17g, \"inception_score\": %s, "
                                  "\"inception_score_std\": %s, \"precision\": %s, \"recall\": %s, \"pr_k\": %d, "
                                  "\"n\": %lld, \"n_ref\": %s, \"n_pr\": %lld, \"out_of_range\": %s, "
                                  "\"broken\": %s, \"max_abs\": %s, \"seconds\": %.3f}\n",
                                  features, label, q->fid, is[0], is[1], is[2], is[3], QUALITY_PR_K, q->n, nref,
                                  q->n_pr, rng[0], rng[1], rng[2], secs);
    const void *chunk = buf;
    return file_write_atomic(path, &chunk, &len, 1, err);
}

static const char fid_usage[] =
    "--samples and --ref are each one of:\n"
    "  a samples .npy: [n, C, H, W] float in [-1, 1] (as `ddpm sample` writes; values outside\n"
    "    are clipped, and counted as below) or uint8 0..255;\n"
    "  a data source as `ddpm train --data` takes it: an IDX file or MNIST-layout folder, a\n"
    "    CIFAR-10 binary folder or .bin batch, a folder of PNGs, or \"fashion-mnist\";\n"
    "  a statistics .npz (`ddpm eval stats`, or pytorch-fid's --save-stats);\n"
    "  --samples only: a model or run folder, from which --n images (default 1000) are\n"
    "    sampled first with the sampler flags of `ddpm sample`.\n"
    "Float samples are also checked for broken images: the share of pixels beyond +-1.05\n"
    "before the clamp to [-1, 1], and of images with more than 1% of such pixels (a model's\n"
    "samples are measured before the clamp; use --raw in `ddpm sample` to keep them).\n"
    "Features: --features inception is pytorch-fid's Inception-v3 (weights from --inception,\n"
    "see docs/fid.md); --features fmnist is ddpm's built-in F-MNIST classifier for 28x28 gray\n"
    "images, reported as \"FID (F-MNIST features)\", not comparable with Inception FID. auto\n"
    "picks fmnist for 28x28 gray images and inception otherwise.\n"
    "Prints the FID, the Inception Score (Inception features, 10 splits), and precision and\n"
    "recall (k = 3) when the reference has features (not a plain mu/sigma file), on the first\n"
    "min(N, reference N) images of each side. For a CIFAR-10 FID comparable with papers, use\n"
    "50,000 samples against the statistics of the 50,000 training images.";

int eval_fid(int argc, char **argv) {
    const char *samples = NULL, *ref = "fashion-mnist", *features = "auto", *inception = NULL, *json = NULL;
    const char *ref_split = "train", *samples_split = "train";
    long long n = 0, ref_n = 0, batch = 50, threads = 0;
    sample_args sa = {CLI_SAMPLER_INIT, 0};
    arg_spec specs[] = {
        {"samples", ARG_STR, &samples, "X", "the images to measure (see below)", 0, 0, NULL, 1, 0},
        {"ref", ARG_STR, &ref, "Y", "the reference (see below) [fashion-mnist]", 0, 0, NULL, 0, 0},
        {"n", ARG_INT, &n, "N", "use the first N samples (a model: sample N; default all, 1000 for a model)", 2, 1e9,
         NULL, 0, 0},
        {"ref-n", ARG_INT, &ref_n, "N", "use the first N reference images (default all)", 2, 1e9, NULL, 0, 0},
        {"ref-split", ARG_CHOICE, &ref_split, "train|test", "split of a data-set reference [train]", 0, 0,
         "train|test", 0, 0},
        {"samples-split", ARG_CHOICE, &samples_split, "train|test", "split of data-set samples [train]", 0, 0,
         "train|test", 0, 0},
        {"features", ARG_CHOICE, &features, "auto|inception|fmnist", "feature network [auto]", 0, 0,
         "auto|inception|fmnist", 0, 0},
        {"inception", ARG_STR, &inception, "FILE", "Inception weights (default $DDPM_INCEPTION or "
                                                   "~/.cache/ddpm/inception-2015-12-05.safetensors)", 0, 0, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call [50]", 1, 4096, NULL, 0, 0},
        {"json", ARG_STR, &json, "FILE", "also write the results as JSON", 0, 0, NULL, 0, 0},
        CLI_SAMPLER_SPECS(&sa.s),
        ARG_THREADS(&threads),
        {0},
    };
    arg_cmd cmd = {"eval fid", "Sample quality: FID, Inception Score, precision and recall against a reference.",
                   fid_usage, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    sa.batch = (int)batch;
    ddpm_set_threads((int)threads);
    double t0 = ddpm_now();
    ddpm_err err = {0};
    source S = {0}, R = {0};
    featnet *net = NULL;
    int rc;
    if ((rc = source_open(&cmd, "--samples", samples, !strcmp(samples_split, "test"), n, &sa, &S))) goto done;
    if ((rc = source_open(&cmd, "--ref", ref, !strcmp(ref_split, "test"), ref_n, NULL, &R))) goto done;
    if (S.is_stats) {
        rc = EXIT_USAGE;
        args_error(&cmd, "--samples must be images, not statistics (FID needs the samples' features)");
        goto done;
    }
    if (!R.is_stats && (R.img.h != S.img.h || R.img.w != S.img.w || R.img.c != S.img.c)) {
        args_error(&cmd, "the samples are %dx%dx%d images but the reference %dx%dx%d: compare like with like",
                   S.img.h, S.img.w, S.img.c, R.img.h, R.img.w, R.img.c);
        rc = EXIT_USAGE;
        goto done;
    }
    int kind = pick_features(features, &S, &R);
    int nmax = S.img.n > R.img.n ? S.img.n : R.img.n; /* R.img.n = 0 for a statistics file */
    if ((rc = open_net(&cmd, kind, inception, batch < nmax ? (int)batch : nmax, &net))) goto done;
    if (R.is_stats && R.ref.st.d != featnet_dim(net)) {
        args_error(&cmd, "--ref %s holds %d-dimensional statistics, but the %s network's features are %d-d "
                         "(made with other features?)", ref, R.ref.st.d, featnet_kind_name(kind), featnet_dim(net));
        rc = EXIT_USAGE;
        goto done;
    }
    if (featnet_check(net, &S.img, &err) || (S.img.n < 2 && ddpm_fail(&err, "FID needs at least 2 samples"))) {
        args_error(&cmd, "--samples: %s", err.msg);
        rc = EXIT_USAGE;
        goto done;
    }
    if ((rc = source_stats(&cmd, net, &R, "reference"))) goto done;
    fprintf(stderr, "ddpm eval fid: samples: %s\nddpm eval fid: reference: %s\n", S.desc, R.desc);
    quality q;
    progress pg = {"sample features", isatty(2), -1, ddpm_now()};
    if (quality_measure(&q, net, &S.img, &R.ref, on_progress, &pg, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    double secs = ddpm_now() - t0;
    const char *label = featnet_fid_label(net);
    printf("%s: %.4f\n", label, q.fid);
    if (q.has_is) printf("Inception Score: %.4f +- %.4f (10 splits)\n", q.is_mean, q.is_std);
    if (q.has_pr)
        printf("precision: %.4f  recall: %.4f (k = 3, %lld images per side)\n", q.precision, q.recall, q.n_pr);
    else if (!R.ref.feats)
        printf("precision/recall: not computed (the reference has no features; make it with `ddpm eval stats "
               "--save-features`)\n");
    else
        printf("precision/recall: not computed (needs more than %d images on each side)\n", QUALITY_PR_K);
    if (q.n_ref > 0) printf("N: %lld samples, %lld reference images; %.1f s\n", q.n, q.n_ref, secs);
    else printf("N: %lld samples, reference statistics of an unknown number of images; %.1f s\n", q.n, secs);
    const sample_range *sr = &S.range;
    if (sr->images > 0)
        printf("out of range: %.3f%% of pixels beyond +-%.2f (largest |x| %.3g); broken: %lld of %lld images (%.1f%%)\n",
               100.0 * (double)sr->out_pixels / (double)sr->pixels, (double)SAMPLE_RANGE_TOL, sr->max_abs, sr->broken,
               sr->images, 100.0 * (double)sr->broken / (double)sr->images);
    if (json && write_json(json, featnet_kind_name(kind), label, &q, sr, secs, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    rc = 0;
done:
    featnet_free(net);
    source_free(&S);
    source_free(&R);
    return rc;
}

/* ---- ddpm eval stats -------------------------------------------------------- */

int eval_stats(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *features = "auto", *inception = NULL, *split = "train";
    long long n = 0, batch = 50, threads = 0;
    int save_features = 0;
    arg_spec specs[] = {
        {"data", ARG_STR, &data, "SRC", "images: a data source as --data takes it, or a samples .npy", 0, 0, NULL, 1, 0},
        {"out", ARG_STR, &out, "S.npz", "statistics file to write (pytorch-fid's layout)", 0, 0, NULL, 1, 0},
        {"split", ARG_CHOICE, &split, "train|test", "split of a data set [train]", 0, 0, "train|test", 0, 0},
        {"n", ARG_INT, &n, "N", "use the first N images (default all)", 2, 1e9, NULL, 0, 0},
        {"features", ARG_CHOICE, &features, "auto|inception|fmnist", "feature network [auto]", 0, 0,
         "auto|inception|fmnist", 0, 0},
        {"inception", ARG_STR, &inception, "FILE", "Inception weights (see `ddpm eval fid --help`)", 0, 0, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call [50]", 1, 4096, NULL, 0, 0},
        {"save-features", ARG_FLAG, &save_features, NULL,
         "also store the features [n, d] (needed for precision/recall) and logits [n, k]", 0, 0, NULL, 0, 0},
        ARG_THREADS(&threads),
        {0},
    };
    arg_cmd cmd = {"eval stats", "Reference statistics for `ddpm eval fid`: mean and covariance of the features.",
                   "Writes float64 mu [d] and sigma [d, d] (pytorch-fid's .npz layout: pytorch-fid reads it, and\n"
                   "ddpm reads pytorch-fid's), plus float32 features and logits with --save-features.",
                   specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_set_threads((int)threads);
    double t0 = ddpm_now();
    ddpm_err err = {0};
    source S;
    featnet *net = NULL;
    float *logits = NULL;
    int rc;
    if ((rc = source_open(&cmd, "--data", data, !strcmp(split, "test"), n, NULL, &S))) return rc;
    if (S.is_stats) {
        args_error(&cmd, "--data %s is a statistics file, not images", data);
        rc = EXIT_USAGE;
        goto done;
    }
    if (S.img.n < 2) {
        args_error(&cmd, "--data: statistics need at least 2 images, got %d", S.img.n);
        rc = EXIT_USAGE;
        goto done;
    }
    int kind = pick_features(features, &S, NULL);
    if ((rc = open_net(&cmd, kind, inception, batch < S.img.n ? (int)batch : S.img.n, &net))) goto done;
    if (featnet_check(net, &S.img, &err)) {
        args_error(&cmd, "--data: %s", err.msg);
        rc = EXIT_USAGE;
        goto done;
    }
    fprintf(stderr, "ddpm eval stats: %s; %s features\n", S.desc, featnet_kind_name(kind));
    progress pg = {"features", isatty(2), -1, ddpm_now()};
    if (quality_ref_from_images(&S.ref, net, &S.img, save_features, save_features ? &logits : NULL, on_progress,
                                &pg, &err) ||
        quality_ref_save(&S.ref, logits, featnet_classes(net), out, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    double secs = ddpm_now() - t0;
    printf("%s: mu [%d], sigma [%d, %d]%s of %d images (%s features), %.1f s (%.1f img/s)\n", out, S.ref.st.d,
           S.ref.st.d, S.ref.st.d, save_features ? ", features, logits" : "", S.img.n, featnet_kind_name(kind), secs,
           S.img.n / secs);
    rc = 0;
done:
    free(logits);
    featnet_free(net);
    source_free(&S);
    return rc;
}
