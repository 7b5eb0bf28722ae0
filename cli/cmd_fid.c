/* cmd_fid.c -- `ddpm eval fid` (FID, Inception Score, precision/recall of
 * samples against a reference) and `ddpm eval stats` (a reference's statistics
 * as pytorch-fid's .npz). Inputs are "sources": a samples .npy, a data set as
 * --data takes it (IDX, CIFAR-10 binary, PNG folder), a statistics .npz, or
 * (samples only) a model or run folder to sample from. Samples with class
 * labels (a labelled data set, or a class-conditional model's samples, drawn
 * class by class) also get a per-class report: FID against the reference
 * images of the class, and the feature network's accuracy. Written on the
 * public API (ddpm.h) alone. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddpm.h"

#include "args.h"
#include "commands.h"
#include "common.h"

#define DEFAULT_MODEL_N 1000 /* images sampled from a model when --n is not given */
#define NAME_LEN 64          /* class names are kept to 63 bytes, as the data sets keep theirs */
#define NPY_MAX_PIXELS (1 << 26) /* H W of one image in a samples .npy */

/* ---- sources ---------------------------------------------------------------- */

typedef struct source {
    int is_stats;            /* a statistics file: stats only */
    ddpm_stats *stats;       /* the file's statistics, or the images' once computed */
    float *x;                /* the images [n, c, h, w] in [-1, 1] (values outside: clipped by the features) */
    int n, c, h, w;
    int32_t *labels;         /* [n] class labels (a labelled data set, or the samples of a conditional model) */
    int nclasses;            /* classes (names[nclasses]) when labelled */
    char (*names)[NAME_LEN];
    ddpm_sample_report range; /* float images: values beyond [-1, 1] (range.images = 0: not measured) */
    int32_t *pick;           /* a conditional model's samples: the classes drawn, in turn (npick of them) */
    int npick;
    double guidance;         /* and the guidance weight */
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
    ddpm_stats_free(s->stats);
    free(s->x);
    free(s->labels);
    free(s->names);
    free(s->pick);
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

/* A samples .npy: [n, C, H, W] float in [-1, 1] or uint8 0..255, C = 1 or 3.
 * Returns 0 or an exit status after a message. */
static int load_npy(const arg_cmd *cmd, const char *flag, source *s, const char *path, long long limit) {
    float *raw = NULL;
    int ndim, st;
    int64_t sh[DDPM_NPY_MAX_DIMS];
    ddpm_dtype type;
    if ((st = ddpm_npy_read(path, &raw, &ndim, sh, &type))) {
        if (st == DDPM_ERR_NOMEM) return cli_status(cmd, st);
        args_error(cmd, "%s: %s", flag, ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    if (ndim != 4 || sh[0] < 1 || (sh[1] != 1 && sh[1] != 3) || sh[2] < 1 || sh[3] < 1 || sh[0] > INT32_MAX ||
        sh[2] * sh[3] > NPY_MAX_PIXELS) {
        args_error(cmd, "%s: %s: expected images [n, C, H, W] with C = 1 or 3 (NCHW, as `ddpm sample` writes)", flag,
                   path);
        ddpm_free(raw);
        return EXIT_USAGE;
    }
    int n = (int)sh[0];
    if (limit > 0 && limit < n) n = (int)limit;
    s->n = n, s->c = (int)sh[1], s->h = (int)sh[2], s->w = (int)sh[3];
    size_t D = (size_t)s->c * s->h * s->w;
    if (!(s->x = malloc(sizeof(float) * (size_t)n * D))) {
        ddpm_free(raw);
        args_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    const int u8 = type == DDPM_DTYPE_U8;
    for (size_t i = 0; i < (size_t)n * D; i++) s->x[i] = u8 ? raw[i] / 127.5f - 1.0f : raw[i];
    ddpm_free(raw);
    if (!u8) ddpm_sample_report_add(&s->range, n, D, s->x);
    snprintf(s->desc, sizeof s->desc, "%d images %dx%dx%d from %s", n, s->h, s->w, s->c, path);
    return 0;
}

/* Room for the class names of K classes, and (n > 0) labels for n images.
 * Returns 0 or an exit status after a message. */
static int alloc_classes(const arg_cmd *cmd, source *s, int K, int n) {
    s->nclasses = K;
    if (!(s->names = calloc((size_t)K, sizeof *s->names)) || (n > 0 && !(s->labels = malloc(sizeof *s->labels * n)))) {
        args_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    return 0;
}

/* A data set as --data takes it (split, up to limit images). Returns 0 or an
 * exit status after a message. */
static int load_dataset(const arg_cmd *cmd, const char *flag, source *s, const char *spec, int split,
                        long long limit) {
    ddpm_dataset *d = NULL;
    ddpm_dataset_info di;
    int st = ddpm_dataset_load(spec, split, (int)limit, &d), rc = 0;
    if (st) {
        if (st == DDPM_ERR_NOMEM) return cli_status(cmd, st);
        args_error(cmd, "%s: %s", flag, ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    if ((st = ddpm_dataset_get_info(d, &di))) {
        rc = cli_status(cmd, st);
        goto done;
    }
    s->n = di.n, s->c = di.channels, s->h = di.height, s->w = di.width;
    if (di.num_classes > 0 && (rc = alloc_classes(cmd, s, di.num_classes, di.n))) goto done;
    for (int k = 0; k < s->nclasses; k++) snprintf(s->names[k], NAME_LEN, "%s", ddpm_dataset_class_name(d, k));
    if (!(s->x = malloc(sizeof(float) * (size_t)s->n * s->c * s->h * s->w))) {
        args_error(cmd, "out of memory");
        rc = EXIT_RUNTIME;
        goto done;
    }
    if ((st = ddpm_dataset_images(d, 0, s->n, s->x, s->labels))) {
        rc = cli_status(cmd, st);
        goto done;
    }
    snprintf(s->desc, sizeof s->desc, "%s", di.desc);
done:
    ddpm_dataset_free(d);
    return rc;
}

typedef struct progress {
    const char *what;
    int tty, last;
    double t0;
} progress;

static int on_progress(void *ctx, long long done, long long total) {
    progress *p = ctx;
    int pct = (int)(100.0 * (double)done / (double)total);
    double el = ddpm_now() - p->t0;
    if (p->tty) {
        fprintf(stderr, "\r%s: %3d%%  %lld/%lld  %.0f s   ", p->what, pct, done, total, el);
        if (done == total) fputc('\n', stderr);
    } else if (pct / 25 != p->last / 25 || done == total) {
        fprintf(stderr, "%s: %3d%%  %lld/%lld  %.0f s\n", p->what, pct, done, total, el);
    }
    p->last = pct;
    return 0;
}

/* A conditional model m's classes: those drawn (--class, else all) into
 * s->pick, every class's name into s->names, and each of the n images' class
 * into s->labels (image i: pick[i mod npick]), the guidance weight into
 * s->guidance. An unconditional model: refuses --class and --guidance.
 * Returns 0 or an exit status after a message. */
static int model_classes(const arg_cmd *cmd, const ddpm_model *m, const ddpm_model_info *mi, const sample_args *a,
                         int n, source *s) {
    int32_t pick[CLI_MAX_PICK];
    int npick = 0, r;
    if (mi->num_class_embeds <= 0 && (a->classes || a->guidance_seen)) {
        args_error(cmd, "--class and --guidance need a class-conditional model (ddpm train --classes); %s is "
                        "unconditional", mi->dir);
        return EXIT_USAGE;
    }
    if (mi->num_class_embeds <= 0) return 0;
    if (a->classes && (r = cli_pick_classes(cmd, m, a->classes, pick, &npick))) return r;
    const int K = mi->num_classes;
    double w = a->guidance_seen ? a->guidance : mi->null_class >= 0 ? CLI_GUIDANCE : 1.0;
    if (mi->null_class < 0 && w != 1) {
        args_error(cmd, "%s has no null class (not trained by ddpm --classes): only --guidance 1", mi->dir);
        return EXIT_USAGE;
    }
    if ((r = alloc_classes(cmd, s, K, n))) return r;
    for (int k = 0; k < K; k++) snprintf(s->names[k], NAME_LEN, "%s", ddpm_model_class_name(m, k));
    s->npick = a->classes ? npick : K, s->guidance = w;
    if (!(s->pick = malloc(sizeof *s->pick * (size_t)s->npick))) {
        args_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    for (int j = 0; j < s->npick; j++) s->pick[j] = a->classes ? pick[j] : j;
    for (int i = 0; i < n; i++) s->labels[i] = s->pick[i % s->npick];
    return 0;
}

/* Samples n images from the model or run folder path into s; a conditional
 * model's images class by class (model_classes), with guidance, as `ddpm
 * sample` draws them. Returns 0 or an exit status after a message. */
static int sample_model(const arg_cmd *cmd, source *s, const char *path, int n, const sample_args *a) {
    ddpm_model *m = NULL;
    ddpm_model_info mi;
    ddpm_sample_options o;
    int rc, st = ddpm_model_load(path, &m);
    if (st) return cli_status(cmd, st);
    if ((st = ddpm_model_get_info(m, &mi))) {
        rc = cli_status(cmd, st);
        goto done;
    }
    if (mi.out_channels != mi.in_channels || (mi.in_channels != 1 && mi.in_channels != 3)) {
        args_error(cmd, "%s: only epsilon models of 1 or 3 channels can be sampled", mi.dir);
        rc = EXIT_USAGE;
        goto done;
    }
    ddpm_sample_options_init(&o);
    if ((rc = model_classes(cmd, m, &mi, a, n, s)) || (rc = cli_sample_options(cmd, &a->s, m, &o))) goto done;
    o.batch = a->batch < n ? a->batch : n;
    if (s->labels) o.classes = s->labels, o.guidance = (float)s->guidance;
    if ((st = ddpm_sample_check(m, &o))) {
        rc = cli_status(cmd, st);
        goto done;
    }
    s->n = n, s->c = mi.in_channels, s->h = s->w = mi.sample_size;
    if (!(s->x = malloc(sizeof(float) * (size_t)n * s->c * s->h * s->w))) {
        args_error(cmd, "out of memory");
        rc = EXIT_RUNTIME;
        goto done;
    }
    char desc[256], classes[96] = "";
    ddpm_sample_describe(m, &o, desc, sizeof desc);
    if (s->labels) snprintf(classes, sizeof classes, "; %d class(es) in turn, guidance %g", s->npick, s->guidance);
    fprintf(stderr, "ddpm %s: sampling %d images from %s (%s, seed %llu%s)\n", cmd->name, n, mi.dir, desc,
            (unsigned long long)o.seed, classes);
    progress pg = {"sampling (network calls)", isatty(2), -1, ddpm_now()};
    o.progress = on_progress, o.progress_ctx = &pg;
    if ((st = ddpm_sample(m, &o, n, s->x, &s->range))) {
        rc = cli_status(cmd, st);
        goto done;
    }
    snprintf(s->desc, sizeof s->desc, "%d samples of %.400s (%.150s, seed %llu%s)", n, mi.dir, desc,
             (unsigned long long)o.seed, classes);
    rc = 0;
done:
    ddpm_model_free(m);
    return rc;
}

/* Opens spec as a source (limit > 0: at most that many images). sa != NULL
 * allows a model folder (sampled). Returns 0 or an exit status after a message. */
static int source_open(const arg_cmd *cmd, const char *flag, const char *spec, int split, long long limit,
                       const sample_args *sa, source *s) {
    int r, st;
    memset(s, 0, sizeof *s);
    if (sa && (sa->classes || sa->guidance_seen) && !is_model_dir(spec)) {
        args_error(cmd, "--class and --guidance apply to sampling a class-conditional model (--samples MODEL_DIR); "
                        "%s is not a model folder", spec);
        return EXIT_USAGE;
    }
    if (ends_with(spec, ".npz")) {
        ddpm_stats_info si;
        if ((st = ddpm_stats_load(spec, &s->stats)) || (st = ddpm_stats_get_info(s->stats, &si)))
            return cli_status(cmd, st);
        s->is_stats = 1;
        snprintf(s->desc, sizeof s->desc, "statistics of %lld-d features from %s%s", (long long)si.dim, spec,
                 si.features ? " (with features)" : "");
        return 0;
    }
    if (ends_with(spec, ".npy")) r = load_npy(cmd, flag, s, spec, limit);
    else if (!is_model_dir(spec)) r = load_dataset(cmd, flag, s, spec, split, limit);
    else if (sa) r = sample_model(cmd, s, spec, limit > 0 ? (int)limit : DEFAULT_MODEL_N, sa);
    else {
        args_error(cmd, "%s %s is a model folder: only --samples can be sampled from a model", flag, spec);
        r = EXIT_USAGE;
    }
    if (r) source_free(s);
    return r;
}

/* --features: a name, or auto (ddpm_features_auto: a statistics reference
 * decides by its dimension; otherwise 28x28 gray images get F-MNIST features). */
static ddpm_features_kind pick_features(const char *name, const source *samples, const source *ref) {
    ddpm_features_kind k;
    if (strcmp(name, "auto") && !ddpm_features_kind_parse(name, &k)) return k;
    return ddpm_features_auto(samples->c, samples->h, samples->w, ref && ref->is_stats ? ref->stats : NULL);
}

/* The statistics of an image source (features and labels kept, for
 * precision/recall and the per-class FID). */
static int source_stats(const arg_cmd *cmd, ddpm_features *net, source *s, const char *what) {
    if (s->is_stats) return 0;
    if (s->n < 2) {
        args_error(cmd, "%s: statistics need at least 2 images, got %d", what, s->n);
        return EXIT_USAGE;
    }
    if (ddpm_features_check(net, s->n, s->c, s->h, s->w, s->x)) {
        args_error(cmd, "%s: %s", what, ddpm_errmsg(net));
        return EXIT_USAGE;
    }
    char label[64];
    snprintf(label, sizeof label, "%s features", what);
    progress pg = {label, isatty(2), -1, ddpm_now()};
    int st = ddpm_stats_compute(net, s->n, s->c, s->h, s->w, s->x, s->labels, DDPM_STATS_FEATURES, on_progress, &pg,
                                &s->stats);
    return st ? cli_status(cmd, st) : 0;
}

/* ---- ddpm eval fid ---------------------------------------------------------- */

/* Everything `eval fid` computes. */
typedef struct fid_job {
    source S, R;             /* S.stats: the samples' statistics, features and logits */
    ddpm_features *net;
    ddpm_features_info fi;
    ddpm_quality q;
    ddpm_quality_class *cls; /* per-class report (samples with labels), ncls classes */
    int ncls;
    int has_acc;             /* the feature network's classes are the samples' classes: accuracy */
    long long correct;       /* samples classified as their class */
    int ref_feats;           /* the reference's statistics keep features */
    double secs;
} fid_job;

static void fid_job_free(fid_job *j) {
    ddpm_features_free(j->net);
    source_free(&j->S);
    source_free(&j->R);
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
        const ddpm_quality_class *q = &j->cls[c];
        json_num(fid, sizeof fid, q->has_fid, q->fid);
        json_num(a, sizeof a, q->has_acc && q->n > 0, q->n > 0 ? (double)q->correct / (double)q->n : 0);
        json_num(nref, sizeof nref, q->ref_k >= 0, (double)q->n_ref);
        jprintf(b, "%s{\"class\": ", c ? ", " : "");
        jstr(b, j->S.names[q->k]);
        jprintf(b, ", \"index\": %d, \"n\": %lld, \"n_ref\": %s, \"fid\": %s, \"accuracy\": %s}", q->k, q->n, nref,
                fid, a);
    }
    jprintf(b, "], ");
}

/* Writes the results as JSON to path. Returns 0 or an exit status after a message. */
static int write_json(const arg_cmd *cmd, const char *path, const fid_job *j) {
    const ddpm_quality *q = &j->q;
    const ddpm_sample_report *r = &j->S.range;
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
            j->fi.name, j->fi.label, q->fid, is[0], is[1], is[2], is[3], DDPM_QUALITY_PR_K, q->n, nref, q->n_pr,
            rng[0], rng[1], rng[2]);
    if (j->cls) json_classes(&b, j);
    jprintf(&b, "\"seconds\": %.3f}\n", j->secs);
    int rc = 0, st;
    if (b.oom) {
        args_error(cmd, "out of memory");
        rc = EXIT_RUNTIME;
    } else if ((st = ddpm_file_write(path, b.p, b.len))) {
        rc = cli_status(cmd, st);
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
    source *S = &j->S, *R = &j->R;
    ddpm_stats_info ri = {0};
    int rc, st;
    if ((rc = source_open(cmd, "--samples", samples, samples_test, n, sa, S))) return rc;
    if ((rc = source_open(cmd, "--ref", ref, ref_test, ref_n, NULL, R))) return rc;
    if (S->is_stats) {
        args_error(cmd, "--samples must be images, not statistics (FID needs the samples' features)");
        return EXIT_USAGE;
    }
    if (!R->is_stats && (R->h != S->h || R->w != S->w || R->c != S->c)) {
        args_error(cmd, "the samples are %dx%dx%d images but the reference %dx%dx%d: compare like with like",
                   S->h, S->w, S->c, R->h, R->w, R->c);
        return EXIT_USAGE;
    }
    ddpm_features_kind kind = pick_features(features, S, R);
    int nmax = S->n > R->n ? S->n : R->n; /* R->n = 0 for a statistics file */
    if ((st = ddpm_features_open(kind, inception, sa->batch < nmax ? sa->batch : nmax, &j->net)) ||
        (st = ddpm_features_get_info(j->net, &j->fi)))
        return cli_status(cmd, st);
    if (R->is_stats && (st = ddpm_stats_get_info(R->stats, &ri))) return cli_status(cmd, st);
    if (R->is_stats && ri.dim != j->fi.dim) {
        args_error(cmd, "--ref %s holds %d-dimensional statistics, but the %s network's features are %d-d "
                        "(made with other features?)", ref, ri.dim, j->fi.name, j->fi.dim);
        return EXIT_USAGE;
    }
    int bad = ddpm_features_check(j->net, S->n, S->c, S->h, S->w, S->x) != DDPM_OK;
    if (bad || S->n < 2) {
        args_error(cmd, "--samples: %s", bad ? ddpm_errmsg(j->net) : "FID needs at least 2 samples");
        return EXIT_USAGE;
    }
    if ((rc = source_stats(cmd, j->net, R, "reference"))) return rc;
    if ((st = ddpm_stats_get_info(R->stats, &ri))) return cli_status(cmd, st);
    j->ref_feats = ri.features > 0;
    fprintf(stderr, "ddpm eval fid: samples: %s\nddpm eval fid: reference: %s\n", S->desc, R->desc);
    return 0;
}

/* The class of R named name (or given by its index as text), -1: none. */
static int ref_class(const source *R, const char *name) {
    long v = 0;
    for (int k = 0; k < R->nclasses; k++)
        if (!strcmp(R->names[k], name)) return k;
    if (!*name) return -1;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v >= R->nclasses) return -1;
    }
    return (int)v;
}

/* The classes of the per-class report: those drawn from a conditional model
 * (each once, in the order drawn), else every class of labelled samples; each
 * with the reference's class of the same name (or index). Returns 0, or -1
 * when out of memory. */
static int fid_classes(fid_job *j) {
    const source *S = &j->S, *R = &j->R;
    int m = S->pick ? S->npick : S->nclasses;
    if (!(j->cls = calloc((size_t)m, sizeof *j->cls))) return -1;
    for (int i = 0; i < m; i++) {
        int k = S->pick ? S->pick[i] : i, seen = 0;
        for (int c = 0; c < j->ncls; c++) seen |= j->cls[c].k == k;
        if (seen) continue;
        ddpm_quality_class *q = &j->cls[j->ncls++];
        q->k = k;
        q->ref_k = R->labels ? ref_class(R, S->names[k]) : -1;
    }
    return 0;
}

/* The samples' features and logits, the overall measures, and the per-class ones. */
static int fid_measure(const arg_cmd *cmd, fid_job *j) {
    source *S = &j->S;
    progress pg = {"sample features", isatty(2), -1, ddpm_now()};
    int st = ddpm_stats_compute(j->net, S->n, S->c, S->h, S->w, S->x, S->labels,
                                DDPM_STATS_FEATURES | DDPM_STATS_LOGITS, on_progress, &pg, &S->stats);
    if (st || (st = ddpm_quality_compare(j->net, S->stats, j->R.stats, &j->q))) return cli_status(cmd, st);
    if (!S->labels) return 0;
    j->has_acc = j->fi.classes == S->nclasses;
    if (fid_classes(j)) {
        args_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    if ((st = ddpm_quality_by_class(S->stats, j->R.stats, j->has_acc, j->cls, j->ncls))) return cli_status(cmd, st);
    for (int c = 0; c < j->ncls; c++) j->correct += j->cls[c].correct;
    return 0;
}

/* The per-class table (stderr), with notes on what could not be measured. */
static void report_classes(const fid_job *j) {
    const char *p = "ddpm eval fid:";
    char g[48] = "the samples' labels";
    if (j->S.pick) snprintf(g, sizeof g, "guidance %g", j->S.guidance);
    fprintf(stderr, "%s per class (%s): %s against the reference images of the class, accuracy of the %s network\n",
            p, g, j->fi.label, j->fi.name);
    if (!j->R.labels)
        fprintf(stderr, "%s the reference has no class labels (a data set with labels is needed): no per-class FID\n",
                p);
    if (!j->has_acc)
        fprintf(stderr, "%s the %s network's %d classes are not the samples' %d: no accuracy\n", p, j->fi.name,
                j->fi.classes, j->S.nclasses);
    fprintf(stderr, "  %5s  %-24s %6s %6s %12s %9s\n", "index", "class", "n", "n_ref", "FID", "accuracy");
    for (int c = 0; c < j->ncls; c++) {
        const ddpm_quality_class *q = &j->cls[c];
        char nref[24] = "-", fid[40] = "-", acc[24] = "-";
        if (q->ref_k >= 0) snprintf(nref, sizeof nref, "%lld", q->n_ref);
        if (q->has_fid) snprintf(fid, sizeof fid, "%.4f", q->fid);
        if (q->has_acc && q->n > 0) snprintf(acc, sizeof acc, "%.4f", (double)q->correct / (double)q->n);
        fprintf(stderr, "  %5d  %-24s %6lld %6s %12s %9s\n", q->k, j->S.names[q->k], q->n, nref, fid, acc);
    }
}

/* The results on stdout (and the per-class table on stderr). */
static void fid_report(const fid_job *j) {
    const ddpm_quality *q = &j->q;
    printf("%s: %.4f\n", j->fi.label, q->fid);
    if (q->has_is) printf("Inception Score: %.4f +- %.4f (10 splits)\n", q->is_mean, q->is_std);
    if (q->has_pr)
        printf("precision: %.4f  recall: %.4f (k = 3, %lld images per side)\n", q->precision, q->recall, q->n_pr);
    else if (!j->ref_feats)
        printf("precision/recall: not computed (the reference has no features; make it with `ddpm eval stats "
               "--save-features`)\n");
    else
        printf("precision/recall: not computed (needs more than %d images on each side)\n", DDPM_QUALITY_PR_K);
    if (j->cls && j->has_acc)
        printf("accuracy (%s classifier): %.4f (%lld of %lld samples)\n", j->fi.name,
               (double)j->correct / (double)q->n, j->correct, q->n);
    if (q->n_ref > 0) printf("N: %lld samples, %lld reference images; %.1f s\n", q->n, q->n_ref, j->secs);
    else printf("N: %lld samples, reference statistics of an unknown number of images; %.1f s\n", q->n, j->secs);
    const ddpm_sample_report *sr = &j->S.range;
    if (sr->images > 0)
        printf("out of range: %.3f%% of pixels beyond +-%.2f (largest |x| %.3g); broken: %lld of %lld images (%.1f%%)\n",
               100.0 * (double)sr->out_pixels / (double)sr->pixels, (double)(float)DDPM_RANGE_TOL, sr->max_abs,
               sr->broken, sr->images, 100.0 * (double)sr->broken / (double)sr->images);
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
    ddpm_set_verify(!no_verify);
    double t0 = ddpm_now();
    fid_job j = {0};
    int rc = fid_setup(&cmd, &j, samples, ref, !strcmp(samples_split, "test"), !strcmp(ref_split, "test"), n, ref_n,
                       features, inception, &sa);
    if (rc || (rc = fid_measure(&cmd, &j))) goto done;
    j.secs = ddpm_now() - t0;
    fid_report(&j);
    if (json) rc = write_json(&cmd, json, &j);
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
    source S;
    ddpm_features *net = NULL;
    ddpm_features_info fi;
    int rc, st;
    if ((rc = source_open(&cmd, "--data", data, !strcmp(split, "test"), n, NULL, &S))) return rc;
    if (S.is_stats) {
        args_error(&cmd, "--data %s is a statistics file, not images", data);
        rc = EXIT_USAGE;
        goto done;
    }
    if (S.n < 2) {
        args_error(&cmd, "--data: statistics need at least 2 images, got %d", S.n);
        rc = EXIT_USAGE;
        goto done;
    }
    ddpm_features_kind kind = pick_features(features, &S, NULL);
    if ((st = ddpm_features_open(kind, inception, batch < S.n ? (int)batch : S.n, &net)) ||
        (st = ddpm_features_get_info(net, &fi))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    if (ddpm_features_check(net, S.n, S.c, S.h, S.w, S.x)) {
        args_error(&cmd, "--data: %s", ddpm_errmsg(net));
        rc = EXIT_USAGE;
        goto done;
    }
    fprintf(stderr, "ddpm eval stats: %s; %s features\n", S.desc, fi.name);
    progress pg = {"features", isatty(2), -1, ddpm_now()};
    int flags = save_features ? DDPM_STATS_FEATURES | DDPM_STATS_LOGITS : 0;
    if ((st = ddpm_stats_compute(net, S.n, S.c, S.h, S.w, S.x, NULL, flags, on_progress, &pg, &S.stats)) ||
        (st = ddpm_stats_save(S.stats, out))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    double secs = ddpm_now() - t0;
    printf("%s: mu [%d], sigma [%d, %d]%s of %d images (%s features), %.1f s (%.1f img/s)\n", out, fi.dim, fi.dim,
           fi.dim, save_features ? ", features, logits" : "", S.n, fi.name, secs, S.n / secs);
    rc = 0;
done:
    ddpm_features_free(net);
    source_free(&S);
    return rc;
}
