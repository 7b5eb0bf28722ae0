/* cmd_fid.c -- `ddpm eval fid` (FID, Inception Score, precision/recall of
 * samples against a reference) and `ddpm eval stats` (a reference's statistics
 * as pytorch-fid's .npz). Inputs are "sources": a samples .npy, a data set as
 * --data takes it (IDX, CIFAR-10 binary, PNG folder), a statistics .npz, or
 * (samples only) a model or run folder to sample from. Samples with class
 * labels (a labelled data set, or a class-conditional model's samples, drawn
 * class by class) also get a per-class report: FID against the reference
 * images of the class, and the feature network's accuracy. */
#include <math.h>
#include <stdarg.h>
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
    dataset d;       /* images as bytes (data sets, uint8 .npy); class labels, count and names (a labelled data
                      * set, or the samples of a class-conditional model) */
    float *f32;      /* images as floats in [-1, 1], NHWC (float .npy, samples of a model) */
    image_set img;
    quality_ref ref; /* is_stats: a statistics file */
    sample_range range; /* float images: values beyond [-1, 1] (range.images = 0: not measured) */
    int32_t *pick;   /* a conditional model's samples: the classes drawn, in turn (npick of them) */
    int npick;
    double guidance; /* and the guidance weight */
    char desc[700];
} source;

/* Sampling options for a model given as --samples. */
typedef struct sample_args {
    cli_sampler s;
    int batch;
    const char *classes; /* --class (NULL: every class) */
    double guidance;     /* --guidance */
    int guidance_seen;
} sample_args;

static void source_free(source *s) {
    dataset_free(&s->d);
    free(s->f32);
    free(s->pick);
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

/* The names of model folder dir's K classes into d (config.json's
 * _class_names, else "0", "1", ...). */
static int class_names(const arg_cmd *cmd, const char *dir, int K, dataset *d) {
    ddpm_err err = {0};
    unet_classes cls;
    if (model_read_classes(dir, &cls, &err)) return cli_bad_input(cmd, &err);
    if (!(d->names = ddpm_malloc(sizeof *d->names * (size_t)K, &err))) {
        unet_classes_free(&cls);
        return cli_fail(cmd, &err);
    }
    d->nclasses = K;
    for (int k = 0; k < K; k++)
        if (k < cls.n) snprintf(d->names[k], sizeof d->names[k], "%s", cls.names[k]);
        else snprintf(d->names[k], sizeof d->names[k], "%d", k);
    unet_classes_free(&cls);
    return 0;
}

/* A conditional model's classes (config c, folder dir): those drawn (--class,
 * else all) into s->pick, every class's name into s->d, and each of the n
 * images' class into s->d.labels (image i: pick[i mod npick]), the guidance
 * weight into s->guidance. An unconditional model: refuses --class and
 * --guidance. Returns 0 or an exit status after a message. */
static int model_classes(const arg_cmd *cmd, const char *dir, const unet_config *c, const sample_args *a, int n,
                         source *s, int *null_class) {
    ddpm_err err = {0};
    int32_t pick[CLI_MAX_PICK];
    int npick, K, r;
    *null_class = -1;
    if (c->num_class_embeds <= 0 && (a->classes || a->guidance_seen)) {
        args_error(cmd, "--class and --guidance need a class-conditional model (ddpm train --classes); %s is "
                        "unconditional", dir);
        return EXIT_USAGE;
    }
    if (c->num_class_embeds <= 0) return 0;
    if ((r = cli_classes(cmd, dir, c, a->classes, pick, &npick, &K, null_class))) return r;
    double w = a->guidance_seen ? a->guidance : *null_class >= 0 ? CLI_GUIDANCE : 1.0;
    if (*null_class < 0 && w != 1) {
        args_error(cmd, "%s has no null class (not trained by ddpm --classes): only --guidance 1", dir);
        return EXIT_USAGE;
    }
    if ((r = class_names(cmd, dir, K, &s->d))) return r;
    s->npick = a->classes ? npick : K, s->guidance = w;
    if (!(s->pick = ddpm_malloc(sizeof *s->pick * (size_t)s->npick, &err)) ||
        !(s->d.labels = ddpm_malloc(sizeof *s->d.labels * (size_t)n, &err)))
        return cli_fail(cmd, &err);
    for (int j = 0; j < s->npick; j++) s->pick[j] = a->classes ? pick[j] : j;
    for (int i = 0; i < n; i++) s->d.labels[i] = s->pick[i % s->npick];
    return 0;
}

/* Samples n images from a model folder into s (floats); a conditional model's
 * images class by class (model_classes), with the guided denoiser of `ddpm sample`. */
static int sample_model(const arg_cmd *cmd, source *s, const char *path, int n, const sample_args *a) {
    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(path, dir, sizeof dir);
    unet_config c;
    if (model_read_config(dir, &c, &err)) return cli_bad_input(cmd, &err);
    if (c.out_channels != c.in_channels || (c.in_channels != 1 && c.in_channels != 3)) {
        args_error(cmd, "%s: only epsilon models of 1 or 3 channels can be sampled", dir);
        return EXIT_USAGE;
    }
    int null_class, rc = model_classes(cmd, dir, &c, a, n, s, &null_class);
    if (rc) return rc;
    schedule sch;
    if ((rc = cli_read_schedule(cmd, dir, &sch))) return rc;
    unet *u = NULL;
    sampler_opts o;
    denoiser den;
    guided g = {0};
    const int B = a->batch < n ? a->batch : n, cond = s->d.labels != NULL;
    const float w = (float)s->guidance;
    if ((rc = cli_sampler_opts(cmd, &a->s, &sch, &o))) goto done;
    o.range = &s->range;
    rc = EXIT_USAGE;
    if (model_load(&u, dir, cond ? guided_rows(w, B) : B, 0, &err) ||
        (cond ? sampler_guided(&den, &g, u, B, null_class, w, &err) : sampler_unet(&den, u, &err))) {
        rc = cli_bad_input(cmd, &err);
        goto done;
    }
    rc = EXIT_RUNTIME;
    size_t D = (size_t)c.sample_size * c.sample_size * c.in_channels;
    if (!(s->f32 = ddpm_alloc_floats((size_t)n * D, &err))) {
        cli_fail(cmd, &err);
        goto done;
    }
    char desc[256], classes[96] = "";
    cli_sampler_desc(&o, &sch, desc, sizeof desc);
    if (cond) snprintf(classes, sizeof classes, "; %d class(es) in turn, guidance %g", s->npick, s->guidance);
    fprintf(stderr, "ddpm %s: sampling %d images from %s (%s, seed %llu%s)\n", cmd->name, n, dir, desc,
            (unsigned long long)o.seed, classes);
    progress pg = {"sampling (network calls)", isatty(2), -1, ddpm_now()};
    if (quality_sample_classes(&den, cond ? &g : NULL, s->d.labels, &sch, &o, n, s->f32, on_progress, &pg, &err)) {
        cli_fail(cmd, &err);
        goto done;
    }
    s->d.n = n;
    s->img = (image_set){n, c.sample_size, c.sample_size, c.in_channels, NULL, s->f32};
    snprintf(s->desc, sizeof s->desc, "%d samples of %.400s (%.150s, seed %llu%s)", n, dir, desc,
             (unsigned long long)o.seed, classes);
    rc = 0;
done:
    guided_free(&g);
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
    if (sa && (sa->classes || sa->guidance_seen) && !is_model_dir(spec)) {
        args_error(cmd, "--class and --guidance apply to sampling a class-conditional model (--samples MODEL_DIR); "
                        "%s is not a model folder", spec);
        return EXIT_USAGE;
    }
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

/* Everything `eval fid` computes. */
typedef struct fid_job {
    source S, R;
    featnet *net;
    int kind;
    quality_ref mine; /* the samples' statistics and features */
    float *logits;    /* the samples' logits [n, featnet_classes] */
    quality q;
    quality_class *cls; /* per-class report (samples with labels), ncls classes */
    int ncls;
    int has_acc;        /* the feature network's classes are the samples' classes: accuracy */
    long long correct;  /* samples classified as their class */
    double secs;
} fid_job;

static void fid_job_free(fid_job *j) {
    featnet_free(j->net);
    source_free(&j->S);
    source_free(&j->R);
    quality_ref_free(&j->mine);
    free(j->logits);
    free(j->cls);
}

/* JSON text grown piece by piece (oom: a piece did not fit in memory). */
typedef struct jbuf {
    char *p;
    size_t len, cap;
    int oom;
} jbuf;

static void jprintf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jprintf(jbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->oom || k < 0) return;
    if (b->len + (size_t)k + 1 > b->cap) {
        size_t cap = 2 * (b->len + (size_t)k + 1);
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
}

/* s as a JSON string (quotes, backslashes and control bytes escaped). */
static void jstr(jbuf *b, const char *s) {
    jprintf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') jprintf(b, "\\%c", ch);
        else if (ch < 0x20) jprintf(b, "\\u%04x", ch);
        else jprintf(b, "%c", ch);
    }
    jprintf(b, "\"");
}

/* A number, or null when absent (JSON has no NaN). */
static void json_num(char *b, size_t n, int has, double v) {
    if (has) snprintf(b, n, "%.17g", v);
    else snprintf(b, n, "null");
}

/* , "guidance": .., "accuracy": .., "per_class": [...] (samples with labels only). */
static void json_classes(jbuf *b, const fid_job *j) {
    char g[40], acc[40], fid[40], a[40], nref[40];
    long long n = 0;
    for (int c = 0; c < j->ncls; c++) n += j->cls[c].n;
    json_num(g, sizeof g, j->S.pick != NULL, j->S.guidance);
    json_num(acc, sizeof acc, j->has_acc && n > 0, n > 0 ? (double)j->correct / (double)n : 0);
    jprintf(b, "\"guidance\": %s, \"accuracy\": %s, \"per_class\": [", g, acc);
    for (int c = 0; c < j->ncls; c++) {
        const quality_class *q = &j->cls[c];
        json_num(fid, sizeof fid, q->has_fid, q->fid);
        json_num(a, sizeof a, q->has_acc && q->n > 0, q->n > 0 ? (double)q->correct / (double)q->n : 0);
        json_num(nref, sizeof nref, q->ref_k >= 0, (double)q->n_ref);
        jprintf(b, "%s{\"class\": ", c ? ", " : "");
        jstr(b, j->S.d.names[q->k]);
        jprintf(b, ", \"index\": %d, \"n\": %lld, \"n_ref\": %s, \"fid\": %s, \"accuracy\": %s}", q->k, q->n, nref,
                fid, a);
    }
    jprintf(b, "], ");
}

static int write_json(const char *path, const fid_job *j, ddpm_err *err) {
    const quality *q = &j->q;
    const sample_range *r = &j->S.range;
    char is[4][40], rng[3][40], nref[40];
    json_num(rng[0], 40, r->images > 0, r->images > 0 ? (double)r->out_pixels / (double)r->pixels : 0);
    json_num(rng[1], 40, r->images > 0, r->images > 0 ? (double)r->broken / (double)r->images : 0);
    json_num(rng[2], 40, r->images > 0, r->max_abs);
    json_num(is[0], 40, q->has_is, q->is_mean), json_num(is[1], 40, q->has_is, q->is_std);
    json_num(is[2], 40, q->has_pr, q->precision), json_num(is[3], 40, q->has_pr, q->recall);
    json_num(nref, sizeof nref, q->n_ref > 0, (double)q->n_ref);
    jbuf b = {0};
    jprintf(&b, "{\"features\": \"%s\", \"label\": \"%s\", \"fid\": %.17g, \"inception_score\": %s, "
                "\"inception_score_std\": %s, \"precision\": %s, \"recall\": %s, \"pr_k\": %d, "
                "\"n\": %lld, \"n_ref\": %s, \"n_pr\": %lld, \"out_of_range\": %s, "
                "\"broken\": %s, \"max_abs\": %s, ",
            featnet_kind_name(j->kind), featnet_fid_label(j->net), q->fid, is[0], is[1], is[2], is[3], QUALITY_PR_K,
            q->n, nref, q->n_pr, rng[0], rng[1], rng[2]);
    if (j->cls) json_classes(&b, j);
    jprintf(&b, "\"seconds\": %.3f}\n", j->secs);
    int rc = b.oom ? ddpm_fail(err, "out of memory") : 0;
    if (!rc) {
        const void *chunk = b.p;
        rc = file_write_atomic(path, &chunk, &b.len, 1, err);
    }
    free(b.p);
    return rc;
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
    "50,000 samples against the statistics of the 50,000 training images.\n"
    "Classes: a class-conditional model (ddpm train --classes) is sampled class by class,\n"
    "image i of class i mod K of its K classes (or of the --class list), with classifier-free\n"
    "guidance --guidance W as in `ddpm sample` (default 3; 1: plain conditioning; 0: the unconditional\n"
    "model, the images still labelled in turn). Such samples, and a data set with labels as\n"
    "--samples, also get a per-class report (a table on stderr, \"per_class\" in the JSON):\n"
    "for each class its FID against the reference images with the same class name (or index;\n"
    "needs a --ref data set with labels), and the accuracy of the feature network as a\n"
    "classifier (the share of the class's samples whose largest logit is the class), when the\n"
    "network's classes are the samples' (the F-MNIST network's 10 for Fashion-MNIST classes;\n"
    "never Inception's 1008); the overall accuracy is over all samples.";

/* Opens the sources, the feature network, and the reference's statistics. */
static int fid_setup(const arg_cmd *cmd, fid_job *j, const char *samples, const char *ref, int samples_test,
                     int ref_test, long long n, long long ref_n, const char *features, const char *inception,
                     const sample_args *sa) {
    ddpm_err err = {0};
    source *S = &j->S, *R = &j->R;
    int rc;
    if ((rc = source_open(cmd, "--samples", samples, samples_test, n, sa, S))) return rc;
    if ((rc = source_open(cmd, "--ref", ref, ref_test, ref_n, NULL, R))) return rc;
    if (S->is_stats) {
        args_error(cmd, "--samples must be images, not statistics (FID needs the samples' features)");
        return EXIT_USAGE;
    }
    if (!R->is_stats && (R->img.h != S->img.h || R->img.w != S->img.w || R->img.c != S->img.c)) {
        args_error(cmd, "the samples are %dx%dx%d images but the reference %dx%dx%d: compare like with like",
                   S->img.h, S->img.w, S->img.c, R->img.h, R->img.w, R->img.c);
        return EXIT_USAGE;
    }
    j->kind = pick_features(features, S, R);
    int nmax = S->img.n > R->img.n ? S->img.n : R->img.n; /* R->img.n = 0 for a statistics file */
    if ((rc = open_net(cmd, j->kind, inception, sa->batch < nmax ? sa->batch : nmax, &j->net))) return rc;
    if (R->is_stats && R->ref.st.d != featnet_dim(j->net)) {
        args_error(cmd, "--ref %s holds %d-dimensional statistics, but the %s network's features are %d-d "
                        "(made with other features?)", ref, R->ref.st.d, featnet_kind_name(j->kind),
                   featnet_dim(j->net));
        return EXIT_USAGE;
    }
    if (featnet_check(j->net, &S->img, &err) || (S->img.n < 2 && ddpm_fail(&err, "FID needs at least 2 samples"))) {
        args_error(cmd, "--samples: %s", err.msg);
        return EXIT_USAGE;
    }
    if ((rc = source_stats(cmd, j->net, R, "reference"))) return rc;
    fprintf(stderr, "ddpm eval fid: samples: %s\nddpm eval fid: reference: %s\n", S->desc, R->desc);
    return 0;
}

/* The classes of the per-class report: those drawn from a conditional model
 * (each once, in the order drawn), else every class of labelled samples; each
 * with the reference's class of the same name (or index). */
static int fid_classes(fid_job *j, ddpm_err *err) {
    const dataset *d = &j->S.d;
    int m = j->S.pick ? j->S.npick : d->nclasses;
    if (!(j->cls = ddpm_calloc((size_t)m, sizeof *j->cls, err))) return -1;
    for (int i = 0; i < m; i++) {
        int k = j->S.pick ? j->S.pick[i] : i, seen = 0;
        for (int c = 0; c < j->ncls; c++) seen |= j->cls[c].k == k;
        if (seen) continue;
        quality_class *q = &j->cls[j->ncls++];
        q->k = k;
        q->ref_k = j->R.d.labels ? dataset_class_index(&j->R.d, d->names[k]) : -1;
    }
    return 0;
}

/* The samples' features and logits, the overall measures, and the per-class ones. */
static int fid_measure(const arg_cmd *cmd, fid_job *j) {
    ddpm_err err = {0};
    progress pg = {"sample features", isatty(2), -1, ddpm_now()};
    if (quality_ref_from_images(&j->mine, j->net, &j->S.img, 1, &j->logits, on_progress, &pg, &err) ||
        quality_compare(&j->q, j->net, &j->mine, j->logits, &j->R.ref, &err))
        return cli_fail(cmd, &err);
    if (!j->S.d.labels) return 0;
    const int K = featnet_classes(j->net);
    j->has_acc = K == j->S.d.nclasses;
    if (fid_classes(j, &err) ||
        quality_by_class(j->cls, j->ncls, &j->mine, j->S.d.labels, j->has_acc ? j->logits : NULL, K, &j->R.ref,
                         j->R.d.labels, &err))
        return cli_fail(cmd, &err);
    for (int c = 0; c < j->ncls; c++) j->correct += j->cls[c].correct;
    return 0;
}

/* The per-class table (stderr), with notes on what could not be measured. */
static void report_classes(const fid_job *j) {
    const char *p = "ddpm eval fid:";
    char g[48] = "the samples' labels";
    if (j->S.pick) snprintf(g, sizeof g, "guidance %g", j->S.guidance);
    fprintf(stderr, "%s per class (%s): %s against the reference images of the class, accuracy of the %s network\n",
            p, g, featnet_fid_label(j->net), featnet_kind_name(j->kind));
    if (!j->R.d.labels)
        fprintf(stderr, "%s the reference has no class labels (a data set with labels is needed): no per-class FID\n",
                p);
    if (!j->has_acc)
        fprintf(stderr, "%s the %s network's %d classes are not the samples' %d: no accuracy\n", p,
                featnet_kind_name(j->kind), featnet_classes(j->net), j->S.d.nclasses);
    fprintf(stderr, "  %5s  %-24s %6s %6s %12s %9s\n", "index", "class", "n", "n_ref", "FID", "accuracy");
    for (int c = 0; c < j->ncls; c++) {
        const quality_class *q = &j->cls[c];
        char nref[24] = "-", fid[40] = "-", acc[24] = "-";
        if (q->ref_k >= 0) snprintf(nref, sizeof nref, "%lld", q->n_ref);
        if (q->has_fid) snprintf(fid, sizeof fid, "%.4f", q->fid);
        if (q->has_acc && q->n > 0) snprintf(acc, sizeof acc, "%.4f", (double)q->correct / (double)q->n);
        fprintf(stderr, "  %5d  %-24s %6lld %6s %12s %9s\n", q->k, j->S.d.names[q->k], q->n, nref, fid, acc);
    }
}

/* The results on stdout (and the per-class table on stderr). */
static void fid_report(const fid_job *j) {
    const quality *q = &j->q;
    printf("%s: %.4f\n", featnet_fid_label(j->net), q->fid);
    if (q->has_is) printf("Inception Score: %.4f +- %.4f (10 splits)\n", q->is_mean, q->is_std);
    if (q->has_pr)
        printf("precision: %.4f  recall: %.4f (k = 3, %lld images per side)\n", q->precision, q->recall, q->n_pr);
    else if (!j->R.ref.feats)
        printf("precision/recall: not computed (the reference has no features; make it with `ddpm eval stats "
               "--save-features`)\n");
    else
        printf("precision/recall: not computed (needs more than %d images on each side)\n", QUALITY_PR_K);
    if (j->cls && j->has_acc)
        printf("accuracy (%s classifier): %.4f (%lld of %lld samples)\n", featnet_kind_name(j->kind),
               (double)j->correct / (double)q->n, j->correct, q->n);
    if (q->n_ref > 0) printf("N: %lld samples, %lld reference images; %.1f s\n", q->n, q->n_ref, j->secs);
    else printf("N: %lld samples, reference statistics of an unknown number of images; %.1f s\n", q->n, j->secs);
    const sample_range *sr = &j->S.range;
    if (sr->images > 0)
        printf("out of range: %.3f%% of pixels beyond +-%.2f (largest |x| %.3g); broken: %lld of %lld images (%.1f%%)\n",
               100.0 * (double)sr->out_pixels / (double)sr->pixels, (double)SAMPLE_RANGE_TOL, sr->max_abs, sr->broken,
               sr->images, 100.0 * (double)sr->broken / (double)sr->images);
    fflush(stdout);
    if (j->cls) report_classes(j);
}

int eval_fid(int argc, char **argv) {
    const char *samples = NULL, *ref = "fashion-mnist", *features = "auto", *inception = NULL, *json = NULL;
    const char *ref_split = "train", *samples_split = "train";
    long long n = 0, ref_n = 0, batch = 50, threads = 0;
    sample_args sa = {CLI_SAMPLER_INIT, 0, NULL, 1, 0};
    int no_verify = 0;
    arg_spec specs[] = {
        {"samples", ARG_STR, &samples, "X", "the images to measure (see below)", 0, 0, NULL, 1, 0},
        {"ref", ARG_STR, &ref, "Y", "the reference (see below)", 0, 0, NULL, 0, 0},
        {"n", ARG_INT, &n, "N", "use the first N samples (a model: sample N) (default: all; 1000 for a model)", 2, 1e9,
         NULL, 0, 0},
        {"ref-n", ARG_INT, &ref_n, "N", "use the first N reference images (default: all)", 2, 1e9, NULL, 0, 0},
        {"ref-split", ARG_CHOICE, &ref_split, "train|test", "split of a data-set reference", 0, 0,
         "train|test", 0, 0},
        {"samples-split", ARG_CHOICE, &samples_split, "train|test", "split of data-set samples", 0, 0,
         "train|test", 0, 0},
        {"features", ARG_CHOICE, &features, "auto|inception|fmnist", "feature network", 0, 0,
         "auto|inception|fmnist", 0, 0},
        {"inception", ARG_STR, &inception, "FILE", "Inception weights (default $DDPM_INCEPTION or "
                                                   "~/.cache/ddpm/inception-2015-12-05.safetensors)", 0, 0, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call", 1, 4096, NULL, 0, 0},
        {"json", ARG_STR, &json, "FILE", "also write the results as JSON", 0, 0, NULL, 0, 0},
        CLI_SAMPLER_SPECS(&sa.s),
        {"class", ARG_STR, &sa.classes, "NAME|INDEX[,...]", "a conditional model: sample only these classes, in turn",
         0, 0, NULL, 0, 0},
        {"guidance", ARG_FLOAT, &sa.guidance, "W", "a conditional model: " CLI_GUIDANCE_HELP, 0, 100, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"eval fid", "Sample quality: FID, Inception Score, precision and recall against a reference.",
                   fid_usage, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    sa.batch = (int)batch;
    sa.guidance_seen = args_seen(specs, "guidance");
    ddpm_set_threads((int)threads);
    st_set_verify(!no_verify);
    double t0 = ddpm_now();
    ddpm_err err = {0};
    fid_job j = {0};
    int rc = fid_setup(&cmd, &j, samples, ref, !strcmp(samples_split, "test"), !strcmp(ref_split, "test"), n, ref_n,
                       features, inception, &sa);
    if (rc || (rc = fid_measure(&cmd, &j))) goto done;
    j.secs = ddpm_now() - t0;
    fid_report(&j);
    if (json && write_json(json, &j, &err)) rc = cli_fail(&cmd, &err);
done:
    fid_job_free(&j);
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
        {"split", ARG_CHOICE, &split, "train|test", "split of a data set", 0, 0, "train|test", 0, 0},
        {"n", ARG_INT, &n, "N", "use the first N images (default all)", 2, 1e9, NULL, 0, 0},
        {"features", ARG_CHOICE, &features, "auto|inception|fmnist", "feature network", 0, 0,
         "auto|inception|fmnist", 0, 0},
        {"inception", ARG_STR, &inception, "FILE", "Inception weights (see `ddpm eval fid --help`)", 0, 0, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call", 1, 4096, NULL, 0, 0},
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
