/* cmd_fid.c -- `ddpm eval fid` (FID, Inception Score, precision/recall of
 * samples against a reference) and `ddpm eval stats` (a reference's statistics
 * as pytorch-fid's .npz). Their inputs are the sources of fid_sources.h: image
 * arrays (.npy, an .npz's arr_0; NCHW, NHWC or gray), data sets, statistics
 * .npz files and (samples only) model folders to sample from. Samples with
 * class labels (a labelled data set, or a class-conditional model's samples,
 * drawn class by class) also get a per-class report: FID against the
 * reference images of the class, and the feature network's accuracy. The
 * JSON is written with cJSON. Written on the public API (ddpm.h) alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ddpm.h"

#include "args.h"
#include "commands.h"
#include "common.h"
#include "fid_sources.h"

/* ---- ddpm eval fid ---------------------------------------------------------- */

/* Everything `eval fid` computes. */
typedef struct fid_job {
    fid_source S, R;         /* S.stats: the samples' statistics, features and logits */
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
    fid_source_free(&j->S);
    fid_source_free(&j->R);
    free(j->cls);
}

/* key: v as "%.17g" (the exact double), or null when absent (JSON has no NaN).
 * Returns 0, or 1 when out of memory (the json_* helpers add up failures). */
static int json_num(cJSON *o, const char *key, int has, double v) {
    char b[40];
    snprintf(b, sizeof b, "%.17g", v);
    return !(has ? cJSON_AddRawToObject(o, key, b) : cJSON_AddNullToObject(o, key));
}

/* key: the integer v. */
static int json_int(cJSON *o, const char *key, long long v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    return !cJSON_AddRawToObject(o, key, b);
}

/* "guidance", "accuracy", "per_class": [...] (samples with labels only). */
static int json_classes(cJSON *o, const fid_job *j) {
    long long n = 0;
    for (int c = 0; c < j->ncls; c++) n += j->cls[c].n;
    int bad = json_num(o, "guidance", j->S.pick != NULL, j->S.guidance) +
              json_num(o, "accuracy", j->has_acc && n > 0, n > 0 ? (double)j->correct / (double)n : 0);
    cJSON *list = cJSON_AddArrayToObject(o, "per_class");
    if (!list) return 1;
    for (int c = 0; c < j->ncls; c++) {
        const ddpm_quality_class *q = &j->cls[c];
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(list, e)) {
            cJSON_Delete(e);
            return 1;
        }
        bad += !cJSON_AddStringToObject(e, "class", j->S.names[q->k]) + json_int(e, "index", q->k) +
               json_int(e, "n", q->n) + json_num(e, "n_ref", q->ref_k >= 0, (double)q->n_ref) +
               json_num(e, "fid", q->has_fid, q->fid) +
               json_num(e, "accuracy", q->has_acc && q->n > 0, q->n > 0 ? (double)q->correct / (double)q->n : 0);
    }
    return bad;
}

/* The results as a JSON object (NULL: out of memory). */
static cJSON *results_json(const fid_job *j) {
    const ddpm_quality *q = &j->q;
    const ddpm_sample_report *r = &j->S.range;
    const int ranged = r->images > 0;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char secs[40];
    snprintf(secs, sizeof secs, "%.3f", j->secs);
    int bad = !cJSON_AddStringToObject(o, "features", j->fi.name) + !cJSON_AddStringToObject(o, "label", j->fi.label) +
              json_num(o, "fid", 1, q->fid) + json_num(o, "inception_score", q->has_is, q->is_mean) +
              json_num(o, "inception_score_std", q->has_is, q->is_std) +
              json_num(o, "precision", q->has_pr, q->precision) + json_num(o, "recall", q->has_pr, q->recall) +
              json_int(o, "pr_k", DDPM_QUALITY_PR_K) + json_int(o, "n", q->n) +
              json_num(o, "n_ref", q->n_ref > 0, (double)q->n_ref) + json_int(o, "n_pr", q->n_pr) +
              json_num(o, "out_of_range", ranged, ranged ? (double)r->out_pixels / (double)r->pixels : 0) +
              json_num(o, "out_of_range_images", ranged, ranged ? (double)r->out_images / (double)r->images : 0) +
              json_num(o, "broken", q->has_broken, (double)q->broken / (double)q->n) +
              json_num(o, "broken_dark", q->has_broken, (double)q->broken_by[0] / (double)q->n) +
              json_num(o, "broken_white", q->has_broken, (double)q->broken_by[1] / (double)q->n) +
              json_num(o, "broken_noisy", q->has_broken, (double)q->broken_by[2] / (double)q->n) +
              json_num(o, "max_abs", ranged, r->max_abs);
    if (j->cls) bad += json_classes(o, j);
    bad += !cJSON_AddRawToObject(o, "seconds", secs);
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Writes the results as JSON to path. Returns 0 or an exit status after a message. */
static int write_json(const arg_cmd *cmd, const char *path, const fid_job *j) {
    cJSON *o = results_json(j);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL; /* one line */
    size_t len = text ? strlen(text) : 0;
    char *line = text ? malloc(len + 2) : NULL;
    int rc = 0, st;
    cJSON_Delete(o);
    if (line) memcpy(line, text, len), line[len++] = '\n', line[len] = 0;
    cJSON_free(text);
    if (!line) {
        args_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    if ((st = ddpm_file_write(path, line, len))) rc = cli_status(cmd, st);
    free(line);
    return rc;
}

static const char fid_usage[] =
    "--samples and --ref are each one of:\n"
    "  an image array: a .npy, or an .npz holding arr_0 (guided-diffusion's sample and reference\n"
    "    batches), of shape [n, C, H, W] (NCHW, as `ddpm sample` writes), [n, H, W, C] (NHWC)\n"
    "    with C = 1 or 3, or [n, H, W] (gray); float in [-1, 1] (values outside are clipped, and\n"
    "    counted as below) or uint8 0..255. The shape tells NCHW from NHWC; where it cannot (both\n"
    "    dimension 1 and 3 are 1 or 3), say which with --layout nchw|nhwc (applies to both sides);\n"
    "  a data source as `ddpm train --data` takes it: an IDX file or MNIST-layout folder, a\n"
    "    CIFAR-10 binary folder or .bin batch, a folder of PNGs, or \"fashion-mnist\";\n"
    "  a statistics .npz without arr_0 (`ddpm eval stats`, or pytorch-fid's --save-stats);\n"
    "  --samples only: a model or run folder, from which --n images (default 1000) are\n"
    "    sampled first with the sampler flags of `ddpm sample`.\n"
    "Broken images: a sample is broken when it is darker (nearly blank), whiter (a blown-out\n"
    "blob) or rougher (noise) than 99.9% of the reference images, by three numbers per image\n"
    "(docs/quality.md); the reference must be images or ddpm's statistics (pytorch-fid's have\n"
    "no such numbers). Float samples are also checked for values out of range: the share of\n"
    "pixels beyond +-1.05 before the clamp to [-1, 1], and of images with more than 1% of such\n"
    "pixels (a model's samples are measured before the clamp; use --raw in `ddpm sample` to\n"
    "keep them).\n"
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
static int fid_setup(const arg_cmd *cmd, fid_job *j, const fid_source_spec *samples, const fid_source_spec *ref,
                     const char *features, const char *inception) {
    fid_source *S = &j->S, *R = &j->R;
    const fid_sample_args *sa = samples->sample;
    ddpm_stats_info ri = {0};
    int rc, st;
    if ((rc = fid_source_open(cmd, samples, S))) return rc;
    if ((rc = fid_source_open(cmd, ref, R))) return rc;
    if (S->is_stats) {
        args_error(cmd, "--samples must be images, not statistics (FID needs the samples' features)");
        return EXIT_USAGE;
    }
    if (!R->is_stats && (R->h != S->h || R->w != S->w || R->c != S->c)) {
        args_error(cmd, "the samples are %dx%dx%d images but the reference %dx%dx%d: compare like with like",
                   S->h, S->w, S->c, R->h, R->w, R->c);
        return EXIT_USAGE;
    }
    ddpm_features_kind kind = fid_pick_features(features, S, R);
    int nmax = S->n > R->n ? S->n : R->n; /* R->n = 0 for a statistics file */
    if ((st = ddpm_features_open(kind, inception, sa->batch < nmax ? sa->batch : nmax, &j->net)) ||
        (st = ddpm_features_get_info(j->net, &j->fi)))
        return cli_status(cmd, st);
    if (R->is_stats && (st = ddpm_stats_get_info(R->stats, &ri))) return cli_status(cmd, st);
    if (R->is_stats && ri.dim != j->fi.dim) {
        args_error(cmd, "--ref %s holds %d-dimensional statistics, but the %s network's features are %d-d "
                        "(made with other features?)", ref->spec, ri.dim, j->fi.name, j->fi.dim);
        return EXIT_USAGE;
    }
    int bad = ddpm_features_check(j->net, S->n, S->c, S->h, S->w, S->x) != DDPM_OK;
    if (bad || S->n < 2) {
        args_error(cmd, "--samples: %s", bad ? ddpm_errmsg(j->net) : "FID needs at least 2 samples");
        return EXIT_USAGE;
    }
    if ((rc = fid_source_stats(cmd, j->net, R, "reference"))) return rc;
    if ((st = ddpm_stats_get_info(R->stats, &ri))) return cli_status(cmd, st);
    j->ref_feats = ri.features > 0;
    fprintf(stderr, "ddpm eval fid: samples: %s\nddpm eval fid: reference: %s\n", S->desc, R->desc);
    return 0;
}

/* The class of R named name (or given by its index as text), -1: none. */
static int ref_class(const fid_source *R, const char *name) {
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
    const fid_source *S = &j->S, *R = &j->R;
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
    fid_source *S = &j->S;
    fid_progress pg = FID_PROGRESS("sample features");
    int st = ddpm_stats_compute(j->net, S->n, S->c, S->h, S->w, S->x, S->labels,
                                DDPM_STATS_FEATURES | DDPM_STATS_LOGITS, fid_on_progress, &pg, &S->stats);
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
    if (q->has_broken)
        printf("broken: %lld of %lld images (%.1f%%): %lld dark, %lld white, %lld noisy\n", q->broken, q->n,
               100.0 * (double)q->broken / (double)q->n, q->broken_by[0], q->broken_by[1], q->broken_by[2]);
    else
        printf("broken: not counted (a statistics file without the images' looks, such as pytorch-fid's; "
               "`ddpm eval stats` keeps them)\n");
    const ddpm_sample_report *sr = &j->S.range;
    if (sr->images > 0)
        printf("out of range: %.3f%% of pixels beyond +-%.2f (largest |x| %.3g), %lld of %lld images with more than "
               "1%% of them (%.1f%%)\n", 100.0 * (double)sr->out_pixels / (double)sr->pixels,
               (double)(float)DDPM_RANGE_TOL, sr->max_abs, sr->out_images, sr->images,
               100.0 * (double)sr->out_images / (double)sr->images);
    fflush(stdout);
    if (j->cls) report_classes(j);
}

int eval_fid(int argc, char **argv) {
    const char *samples = NULL, *ref = "fashion-mnist", *features = "auto", *inception = NULL, *json = NULL;
    const char *ref_split = "train", *samples_split = "train", *layout = "auto";
    long long n = 0, ref_n = 0, batch = 50, threads = 0;
    fid_sample_args sa = {CLI_SAMPLER_INIT, 0, NULL, 1, 0};
    int no_verify = 0;
    const char *conv = CLI_CONV_DEFAULT;
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
        {"layout", ARG_CHOICE, &layout, FID_LAYOUT_CHOICES, "layout of 4-d image arrays (auto: from the shape)", 0, 0,
         FID_LAYOUT_CHOICES, 0, 0},
        CLI_SAMPLER_SPECS(&sa.s),
        {"class", ARG_STR, &sa.classes, "NAME|INDEX[,...]", "a conditional model: sample only these classes, in turn",
         0, 0, NULL, 0, 0},
        {"guidance", ARG_FLOAT, &sa.guidance, "W", "a conditional model: " CLI_GUIDANCE_HELP, 0, 100, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_CONV(&conv),
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
    ddpm_set_conv_algorithm(conv);
    double t0 = ddpm_now();
    fid_job j = {0};
    fid_source_spec ss = {"--samples", samples, !strcmp(samples_split, "test"), n, fid_layout_of(layout), &sa};
    fid_source_spec rs = {"--ref", ref, !strcmp(ref_split, "test"), ref_n, fid_layout_of(layout), NULL};
    int rc = fid_setup(&cmd, &j, &ss, &rs, features, inception);
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
    const char *data = NULL, *out = NULL, *features = "auto", *inception = NULL, *split = "train", *layout = "auto";
    long long n = 0, batch = 50, threads = 0;
    int save_features = 0;
    arg_spec specs[] = {
        {"data", ARG_STR, &data, "SRC", "images: a data source as --data takes it, a .npy, or an .npz with arr_0", 0,
         0, NULL, 1, 0},
        {"out", ARG_STR, &out, "S.npz", "statistics file to write (pytorch-fid's layout)", 0, 0, NULL, 1, 0},
        {"split", ARG_CHOICE, &split, "train|test", "split of a data set", 0, 0, "train|test", 0, 0},
        {"n", ARG_INT, &n, "N", "use the first N images (default all)", 2, 1e9, NULL, 0, 0},
        {"features", ARG_CHOICE, &features, "auto|inception|fmnist", "feature network", 0, 0,
         "auto|inception|fmnist", 0, 0},
        {"inception", ARG_STR, &inception, "FILE", "Inception weights (see `ddpm eval fid --help`)", 0, 0, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call", 1, 4096, NULL, 0, 0},
        {"layout", ARG_CHOICE, &layout, FID_LAYOUT_CHOICES, "layout of a 4-d image array (auto: from the shape)", 0,
         0, FID_LAYOUT_CHOICES, 0, 0},
        {"save-features", ARG_FLAG, &save_features, NULL,
         "also store the features [n, d] (needed for precision/recall) and logits [n, k]", 0, 0, NULL, 0, 0},
        ARG_THREADS(&threads),
        {0},
    };
    arg_cmd cmd = {"eval stats", "Reference statistics for `ddpm eval fid`: mean and covariance of the features.",
                   "Writes float64 mu [d] and sigma [d, d] (pytorch-fid's .npz layout: pytorch-fid reads it, and\n"
                   "ddpm reads pytorch-fid's), plus float32 features and logits with --save-features.\n"
                   "--data takes the images `ddpm eval fid` takes (see its --help): an image .npy or .npz\n"
                   "(NCHW, NHWC or [n, H, W]; uint8 or float), or a data set.",
                   specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_set_threads((int)threads);
    double t0 = ddpm_now();
    fid_source S;
    ddpm_features *net = NULL;
    ddpm_features_info fi;
    int rc, st;
    fid_source_spec ds = {"--data", data, !strcmp(split, "test"), n, fid_layout_of(layout), NULL};
    if ((rc = fid_source_open(&cmd, &ds, &S))) return rc;
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
    ddpm_features_kind kind = fid_pick_features(features, &S, NULL);
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
    fid_progress pg = FID_PROGRESS("features");
    int flags = save_features ? DDPM_STATS_FEATURES | DDPM_STATS_LOGITS : 0;
    if ((st = ddpm_stats_compute(net, S.n, S.c, S.h, S.w, S.x, NULL, flags, fid_on_progress, &pg, &S.stats)) ||
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
    fid_source_free(&S);
    return rc;
}
