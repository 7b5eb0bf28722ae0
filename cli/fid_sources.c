/* fid_sources.c -- the image sources of `ddpm eval fid` and `ddpm eval stats`
 * (see fid_sources.h). Written on the public API (ddpm.h) alone. */
#include "fid_sources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define DEFAULT_MODEL_N 1000     /* images sampled from a model when --n is not given */
#define ARRAY_MAX_PIXELS (1 << 26) /* H W of one image in an image array */

fid_layout fid_layout_of(const char *word) {
    return !strcmp(word, "nchw") ? FID_LAYOUT_NCHW : !strcmp(word, "nhwc") ? FID_LAYOUT_NHWC : FID_LAYOUT_AUTO;
}

void fid_source_free(fid_source *s) {
    ddpm_stats_free(s->stats);
    free(s->x);
    free(s->labels);
    free(s->names);
    free(s->pick);
    memset(s, 0, sizeof *s);
}

int fid_on_progress(void *ctx, long long done, long long total) {
    fid_progress *p = ctx;
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

/* The layout of an image array of shape sh[ndim]: into *nhwc, and its images'
 * C, H, W. Returns 0 or EXIT_USAGE after a message. */
static int array_layout(const arg_cmd *cmd, const fid_source_spec *sp, int ndim, const int64_t *sh, int *nhwc,
                        int *c, int64_t *h, int64_t *w) {
    char shape[160] = "";
    for (int i = 0, k = 0; i < ndim && k < (int)sizeof shape; i++)
        k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", i ? ", " : "", (long long)sh[i]);
    if (ndim == 3) { /* [n, H, W]: gray */
        *nhwc = 0, *c = 1, *h = sh[1], *w = sh[2];
    } else if (ndim == 4) {
        const int chw = sh[1] == 1 || sh[1] == 3, hwc = sh[3] == 1 || sh[3] == 3;
        if (sp->layout == FID_LAYOUT_AUTO && chw && hwc) {
            args_error(cmd, "%s: %s: images [%s] could be NCHW or NHWC (dimensions 1 and 3 are both 1 or 3): say "
                            "which with --layout nchw|nhwc", sp->flag, sp->spec, shape);
            return EXIT_USAGE;
        }
        *nhwc = sp->layout == FID_LAYOUT_NHWC || (sp->layout == FID_LAYOUT_AUTO && hwc);
        if (!(*nhwc ? hwc : chw)) {
            args_error(cmd, "%s: %s: images [%s] are not %s with C = 1 or 3", sp->flag, sp->spec, shape,
                       sp->layout == FID_LAYOUT_NCHW ? "NCHW [n, C, H, W]"
                       : sp->layout == FID_LAYOUT_NHWC ? "NHWC [n, H, W, C]"
                                                       : "NCHW [n, C, H, W] or NHWC [n, H, W, C]");
            return EXIT_USAGE;
        }
        *c = (int)(*nhwc ? sh[3] : sh[1]), *h = *nhwc ? sh[1] : sh[2], *w = *nhwc ? sh[2] : sh[3];
    } else {
        args_error(cmd, "%s: %s: expected images [n, C, H, W] (NCHW, as `ddpm sample` writes), [n, H, W, C] (NHWC) "
                        "with C = 1 or 3, or [n, H, W] (gray); got [%s]", sp->flag, sp->spec, shape);
        return EXIT_USAGE;
    }
    if (sh[0] < 1 || sh[0] > INT32_MAX || *h < 1 || *w < 1 || *h * *w > ARRAY_MAX_PIXELS) {
        args_error(cmd, "%s: %s: images [%s]: need at least one image of at most %d pixels", sp->flag, sp->spec,
                   shape, ARRAY_MAX_PIXELS);
        return EXIT_USAGE;
    }
    return 0;
}

/* An image array raw[ndim: sh] of type `type`, read from the source's file,
 * into s: the first limit images (> 0) as NCHW floats, uint8 scaled from
 * 0..255 to [-1, 1]. Takes raw (freed here). Returns 0 or an exit status
 * after a message. */
static int load_array(const arg_cmd *cmd, const fid_source_spec *sp, fid_source *s, float *raw, int ndim,
                      const int64_t *sh, ddpm_dtype type) {
    int nhwc, c, rc;
    int64_t h, w;
    if ((rc = array_layout(cmd, sp, ndim, sh, &nhwc, &c, &h, &w))) {
        ddpm_free(raw);
        return rc;
    }
    int n = (int)sh[0];
    if (sp->limit > 0 && sp->limit < n) n = (int)sp->limit;
    s->n = n, s->c = c, s->h = (int)h, s->w = (int)w;
    const size_t HW = (size_t)h * w, D = (size_t)c * HW;
    if (!(s->x = malloc(sizeof(float) * (size_t)n * D))) {
        ddpm_free(raw);
        args_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    const int u8 = type == DDPM_DTYPE_U8;
    if (!nhwc) {
        for (size_t i = 0; i < (size_t)n * D; i++) s->x[i] = u8 ? raw[i] / 127.5f - 1.0f : raw[i];
    } else {
        for (size_t i = 0; i < (size_t)n; i++) {
            const float *p = raw + i * D;
            float *o = s->x + i * D;
            for (int k = 0; k < c; k++)
                for (size_t j = 0; j < HW; j++) o[k * HW + j] = u8 ? p[j * c + k] / 127.5f - 1.0f : p[j * c + k];
        }
    }
    ddpm_free(raw);
    if (!u8) ddpm_sample_report_add(&s->range, n, D, s->x);
    snprintf(s->desc, sizeof s->desc, "%d images %dx%dx%d from %s%s", n, s->h, s->w, s->c, sp->spec,
             ndim == 3 ? " ([n, H, W])" : nhwc ? " (NHWC)" : "");
    return 0;
}

/* A .npy of images. */
static int load_npy(const arg_cmd *cmd, const fid_source_spec *sp, fid_source *s) {
    float *raw = NULL;
    int ndim, st;
    int64_t sh[DDPM_NPY_MAX_DIMS];
    ddpm_dtype type;
    if ((st = ddpm_npy_read(sp->spec, &raw, &ndim, sh, &type))) {
        if (st == DDPM_ERR_NOMEM) return cli_status(cmd, st);
        args_error(cmd, "%s: %s", sp->flag, ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    return load_array(cmd, sp, s, raw, ndim, sh, type);
}

/* An .npz: images when it holds arr_0 (np.savez's first array, as
 * guided-diffusion's batches), statistics otherwise. */
static int load_npz(const arg_cmd *cmd, const fid_source_spec *sp, fid_source *s) {
    float *raw = NULL;
    int ndim, st;
    int64_t sh[DDPM_NPY_MAX_DIMS];
    ddpm_dtype type;
    if (!(st = ddpm_npz_read(sp->spec, "arr_0", &raw, &ndim, sh, &type)))
        return load_array(cmd, sp, s, raw, ndim, sh, type);
    if (ndim != -1) {
        if (st == DDPM_ERR_NOMEM) return cli_status(cmd, st);
        args_error(cmd, "%s: %s", sp->flag, ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    ddpm_stats_info si;
    if ((st = ddpm_stats_load(sp->spec, &s->stats)) || (st = ddpm_stats_get_info(s->stats, &si))) {
        if (st != DDPM_ERR_INPUT) return cli_status(cmd, st);
        args_error(cmd, "%s: %s (an .npz holds images as arr_0, or FID statistics as mu and sigma)", sp->flag,
                   ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    s->is_stats = 1;
    snprintf(s->desc, sizeof s->desc, "statistics of %lld-d features from %s%s", (long long)si.dim, sp->spec,
             si.features ? " (with features)" : "");
    return 0;
}

/* Room for the class names of K classes, and (n > 0) labels for n images. */
static int alloc_classes(const arg_cmd *cmd, fid_source *s, int K, int n) {
    s->nclasses = K;
    if (!(s->names = calloc((size_t)K, sizeof *s->names)) || (n > 0 && !(s->labels = malloc(sizeof *s->labels * n)))) {
        args_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    return 0;
}

/* A data set as --data takes it (split, up to limit images). */
static int load_dataset(const arg_cmd *cmd, const fid_source_spec *sp, fid_source *s) {
    ddpm_dataset *d = NULL;
    ddpm_dataset_info di;
    int st = ddpm_dataset_load(sp->spec, sp->test_split, (int)sp->limit, &d), rc = 0;
    if (st) {
        if (st == DDPM_ERR_NOMEM) return cli_status(cmd, st);
        args_error(cmd, "%s: %s", sp->flag, ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    if ((st = ddpm_dataset_get_info(d, &di))) {
        rc = cli_status(cmd, st);
        goto done;
    }
    s->n = di.n, s->c = di.channels, s->h = di.height, s->w = di.width;
    if (di.num_classes > 0 && (rc = alloc_classes(cmd, s, di.num_classes, di.n))) goto done;
    for (int k = 0; k < s->nclasses; k++) snprintf(s->names[k], FID_NAME_LEN, "%s", ddpm_dataset_class_name(d, k));
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

/* A conditional model m's classes: those drawn (--class, else all) into
 * s->pick, every class's name into s->names, and each of the n images' class
 * into s->labels (image i: pick[i mod npick]), the guidance weight into
 * s->guidance. An unconditional model: refuses --class and --guidance. */
static int model_classes(const arg_cmd *cmd, const ddpm_model *m, const ddpm_model_info *mi, const fid_sample_args *a,
                         int n, fid_source *s) {
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
    double w = a->guidance_seen ? a->guidance : mi->null_class >= 0 ? DDPM_GUIDANCE_DEFAULT : 1.0;
    if (mi->null_class < 0 && w != 1) {
        args_error(cmd, "%s has no null class (not trained by ddpm --classes): only --guidance 1", mi->dir);
        return EXIT_USAGE;
    }
    if ((r = alloc_classes(cmd, s, K, n))) return r;
    for (int k = 0; k < K; k++) snprintf(s->names[k], FID_NAME_LEN, "%s", ddpm_model_class_name(m, k));
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
 * sample` draws them. */
static int sample_model(const arg_cmd *cmd, fid_source *s, const char *path, int n, const fid_sample_args *a) {
    ddpm_model *m = NULL;
    ddpm_model_info mi;
    ddpm_sample_options o;
    int rc, st = ddpm_model_load(path, &m);
    if (st) return cli_status(cmd, st);
    if ((st = ddpm_model_get_info(m, &mi))) {
        rc = cli_status(cmd, st);
        goto done;
    }
    if (mi.in_channels != 1 && mi.in_channels != 3) {
        args_error(cmd, "%s: only models of 1 or 3 channels can be measured", mi.dir);
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
    if (s->labels) snprintf(classes, sizeof classes, "; %d class(es) in turn", s->npick);
    fprintf(stderr, "ddpm %s: sampling %d images from %s (%s, seed %llu%s)\n", cmd->name, n, mi.dir, desc,
            (unsigned long long)o.seed, classes);
    fid_progress pg = FID_PROGRESS("sampling (network calls)");
    o.progress = fid_on_progress, o.progress_ctx = &pg;
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

int fid_source_open(const arg_cmd *cmd, const fid_source_spec *sp, fid_source *s) {
    const fid_sample_args *sa = sp->sample;
    const char *spec = sp->spec;
    int r;
    memset(s, 0, sizeof *s);
    if (sa && (sa->classes || sa->guidance_seen) && !is_model_dir(spec)) {
        args_error(cmd, "--class and --guidance apply to sampling a class-conditional model (--samples MODEL_DIR); "
                        "%s is not a model folder", spec);
        return EXIT_USAGE;
    }
    if (ends_with(spec, ".npz")) r = load_npz(cmd, sp, s);
    else if (ends_with(spec, ".npy")) r = load_npy(cmd, sp, s);
    else if (!is_model_dir(spec)) r = load_dataset(cmd, sp, s);
    else if (sa) r = sample_model(cmd, s, spec, sp->limit > 0 ? (int)sp->limit : DEFAULT_MODEL_N, sa);
    else {
        args_error(cmd, "%s %s is a model folder: only --samples can be sampled from a model", sp->flag, spec);
        r = EXIT_USAGE;
    }
    if (r) fid_source_free(s);
    return r;
}

ddpm_features_kind fid_pick_features(const char *name, const fid_source *samples, const fid_source *ref) {
    ddpm_features_kind k;
    if (strcmp(name, "auto") && !ddpm_features_kind_parse(name, &k)) return k;
    return ddpm_features_auto(samples->c, samples->h, samples->w, ref && ref->is_stats ? ref->stats : NULL);
}

int fid_source_stats(const arg_cmd *cmd, ddpm_features *net, fid_source *s, const char *what) {
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
    fid_progress pg = FID_PROGRESS(label);
    int st = ddpm_stats_compute(net, s->n, s->c, s->h, s->w, s->x, s->labels, DDPM_STATS_FEATURES, fid_on_progress,
                                &pg, &s->stats);
    return st ? cli_status(cmd, st) : 0;
}
