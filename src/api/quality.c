/* quality.c -- the public API's sample quality (include/ddpm.h, "sample
 * quality (FID)"): feature networks (eval/featnet.h), statistics of image
 * sets with their features, logits and labels, and FID, Inception Score,
 * precision/recall overall and per class (eval/quality.h, eval/stats.h).
 * Public images are NCHW; the feature networks take NHWC, converted one
 * batch at a time so that results are those of one featnet_extract call. */
#include "api.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/featnet.h"
#include "eval/quality.h"
#include "eval/stats.h"
#include "ops/ops.h"

#define FMNIST_DIM 256 /* the F-MNIST network's feature length: how a statistics file says it is of that network */

struct ddpm_features {
    api_obj head;
    featnet *net;
    ddpm_features_kind kind;
    int batch;
};

struct ddpm_stats {
    api_obj head;
    quality_ref r;   /* mu, sigma (r.st) and the features [r.n, d] when kept */
    float *logits;   /* [r.st.n, nlogits] or NULL */
    int nlogits;
    int32_t *labels; /* [r.st.n] or NULL */
};

/* ---- feature networks -------------------------------------------------------- */

static int to_featnet(ddpm_features_kind kind) {
    return kind == DDPM_FEATURES_INCEPTION ? FEATNET_INCEPTION : FEATNET_FMNIST;
}

const char *ddpm_features_kind_name(ddpm_features_kind kind) {
    return kind == DDPM_FEATURES_FMNIST || kind == DDPM_FEATURES_INCEPTION ? featnet_kind_name(to_featnet(kind)) : NULL;
}

int ddpm_features_kind_parse(const char *name, ddpm_features_kind *kind) {
    API_REQUIRE(NULL, name);
    API_REQUIRE(NULL, kind);
    int k = featnet_kind_from_name(name);
    if (k < 0) return api_fail(NULL, DDPM_ERR_ARG, "unknown feature network '%s' (fmnist, inception)", name);
    *kind = k == FEATNET_INCEPTION ? DDPM_FEATURES_INCEPTION : DDPM_FEATURES_FMNIST;
    return DDPM_OK;
}

ddpm_features_kind ddpm_features_auto(int c, int h, int w, const ddpm_stats *ref) {
    if (ref) return ref->r.st.d == FMNIST_DIM ? DDPM_FEATURES_FMNIST : DDPM_FEATURES_INCEPTION;
    return c == 1 && h == 28 && w == 28 ? DDPM_FEATURES_FMNIST : DDPM_FEATURES_INCEPTION;
}

void ddpm_features_default_inception(char *buf, size_t len) {
    if (buf && len) featnet_default_inception(buf, len);
}

/* A failed featnet_open: a missing or malformed weights file is bad input;
 * running out of memory or the CPU backend failing is not. */
static int open_status(const err_t *e) {
    if (e->oom || strstr(e->msg, "out of memory")) return DDPM_ERR_NOMEM;
    return strstr(e->msg, "oneDNN") ? DDPM_ERR_RUNTIME : DDPM_ERR_INPUT;
}

int ddpm_features_open(ddpm_features_kind kind, const char *inception, int batch, ddpm_features **out) {
    API_REQUIRE(NULL, out);
    *out = NULL;
    if (!ddpm_features_kind_name(kind))
        return api_fail(NULL, DDPM_ERR_ARG, "ddpm_features_open: unknown kind %d", kind);
    if (batch < 1) return api_fail(NULL, DDPM_ERR_ARG, "ddpm_features_open: batch %d is not positive", batch);
    ddpm_features *f = calloc(1, sizeof *f);
    if (!f) return api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
    api_obj_init(&f->head);
    err_t e = {0};
    if (featnet_open(&f->net, to_featnet(kind), inception, batch, &e)) {
        free(f);
        return api_status(NULL, open_status(&e), &e);
    }
    f->kind = kind, f->batch = batch;
    *out = f;
    return DDPM_OK;
}

void ddpm_features_free(ddpm_features *f) {
    if (!f) return;
    featnet_free(f->net);
    free(f);
}

int ddpm_features_get_info(const ddpm_features *f, ddpm_features_info *info) {
    API_REQUIRE(NULL, f);
    API_REQUIRE(NULL, info);
    info->kind = f->kind;
    info->dim = featnet_dim(f->net);
    info->classes = featnet_classes(f->net);
    info->batch = f->batch;
    info->name = ddpm_features_kind_name(f->kind);
    info->label = featnet_fid_label(f->net);
    return DDPM_OK;
}

const char *ddpm_features_label(const ddpm_features *f) { return f ? featnet_fid_label(f->net) : NULL; }

int ddpm_features_check(ddpm_features *f, int n, int c, int h, int w, const float *x) {
    API_REQUIRE(NULL, f);
    err_t e = {0};
    image_set s = {n, h, w, c, NULL, NULL}; /* shape only: the values are checked below, in NCHW */
    if (h < 1 || w < 1) return api_fail(&f->head, DDPM_ERR_ARG, "images of %dx%d pixels", h, w);
    if (featnet_check(f->net, &s, &e)) return api_status(&f->head, DDPM_ERR_ARG, &e);
    if (!x) return DDPM_OK;
    size_t D = (size_t)c * h * w;
    for (size_t i = 0; i < (size_t)n * D; i++)
        if (!isfinite(x[i]))
            return api_fail(&f->head, DDPM_ERR_ARG, "image %zu has a value that is not finite (%g)", i / D, x[i]);
    return DDPM_OK;
}

/* ---- statistics ---------------------------------------------------------------- */

void ddpm_stats_free(ddpm_stats *s) {
    if (!s) return;
    quality_ref_free(&s->r);
    free(s->logits);
    free(s->labels);
    free(s);
}

static ddpm_stats *stats_new(void) {
    ddpm_stats *s = calloc(1, sizeof *s);
    if (s) api_obj_init(&s->head);
    return s;
}

/* The features feats [n, d], (if logits) logits [n, classes] and the looks
 * [n, BROKEN_LOOKS] (broken.h) of x [n, c, h, w], a batch at a time (each batch
 * as NHWC in the network's batch). Returns DDPM_OK or a status recorded on f. */
static int extract(ddpm_features *f, int n, int c, int h, int w, const float *x, float *feats, float *logits,
                   float *looks, ddpm_progress_fn progress, void *ctx) {
    const int B = f->batch, d = featnet_dim(f->net), k = featnet_classes(f->net), HW = h * w;
    const size_t D = (size_t)c * HW;
    err_t e = {0};
    float *buf = mem_alloc_floats((size_t)(B < n ? B : n) * D, &e);
    if (!buf) return api_status(&f->head, DDPM_ERR_NOMEM, &e);
    int rc = DDPM_OK;
    for (int i0 = 0; i0 < n; i0 += B) {
        int m = n - i0 < B ? n - i0 : B;
        ops_nchw_to_nhwc(buf, x + (size_t)i0 * D, m, c, HW);
        image_set s = {m, h, w, c, NULL, buf};
        broken_looks(looks + (size_t)i0 * BROKEN_LOOKS, &s);
        if (featnet_extract(f->net, &s, feats + (size_t)i0 * d, logits ? logits + (size_t)i0 * k : NULL, NULL, NULL,
                            &e)) {
            rc = api_status(&f->head, DDPM_ERR_RUNTIME, &e);
            break;
        }
        if (progress && progress(ctx, i0 + m, n)) {
            rc = api_fail(&f->head, DDPM_ERR_CANCELLED, "ddpm_stats_compute: cancelled");
            break;
        }
    }
    free(buf);
    return rc;
}

int ddpm_stats_compute(ddpm_features *f, int n, int c, int h, int w, const float *x, const int32_t *labels, int flags,
                       ddpm_progress_fn progress, void *progress_ctx, ddpm_stats **out) {
    API_REQUIRE(NULL, f);
    API_REQUIRE(&f->head, out);
    *out = NULL;
    API_REQUIRE(&f->head, x);
    if (n < 2) return api_fail(&f->head, DDPM_ERR_ARG, "statistics need at least 2 images, got %d", n);
    int rc = ddpm_features_check(f, n, c, h, w, x);
    if (rc) return rc;
    const int d = featnet_dim(f->net), k = featnet_classes(f->net);
    err_t e = {0};
    ddpm_stats *s = stats_new();
    float *feats = mem_alloc_floats((size_t)n * d, &e);
    if (!s || !feats || !(s->r.looks = mem_alloc_floats((size_t)n * BROKEN_LOOKS, &e)) || ((flags & DDPM_STATS_LOGITS) && !(s->logits = mem_alloc_floats((size_t)n * k, &e))) ||
        (labels && !(s->labels = mem_alloc(sizeof *labels * (size_t)n, &e)))) {
        rc = s ? api_status(&f->head, DDPM_ERR_NOMEM, &e) : api_fail(&f->head, DDPM_ERR_NOMEM, "out of memory");
        goto done;
    }
    s->r.n_looks = n;
    if ((rc = extract(f, n, c, h, w, x, feats, s->logits, s->r.looks, progress, progress_ctx))) goto done;
    if (stats_fid_compute(&s->r.st, feats, n, d, &e)) {
        rc = api_status(&f->head, DDPM_ERR_NONFINITE, &e);
        goto done;
    }
    if (labels) memcpy(s->labels, labels, sizeof *labels * (size_t)n);
    if (s->logits) s->nlogits = k;
    if (flags & DDPM_STATS_FEATURES) s->r.feats = feats, s->r.n = n, feats = NULL;
    *out = s, s = NULL;
done:
    free(feats);
    ddpm_stats_free(s);
    return rc;
}

int ddpm_stats_load(const char *path, ddpm_stats **out) {
    API_REQUIRE(NULL, out);
    *out = NULL;
    API_REQUIRE(NULL, path);
    ddpm_stats *s = stats_new();
    if (!s) return api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
    err_t e = {0};
    if (quality_ref_load(&s->r, path, &e)) {
        free(s);
        return api_status(NULL, DDPM_ERR_INPUT, &e);
    }
    *out = s;
    return DDPM_OK;
}

int ddpm_stats_save(const ddpm_stats *s, const char *path) {
    API_REQUIRE(NULL, s);
    API_REQUIRE(NULL, path);
    err_t e = {0};
    if (quality_ref_save(&s->r, s->logits, s->nlogits, path, &e)) return api_status(NULL, DDPM_ERR_IO, &e);
    return DDPM_OK;
}

int ddpm_stats_get_info(const ddpm_stats *s, ddpm_stats_info *info) {
    API_REQUIRE(NULL, s);
    API_REQUIRE(NULL, info);
    info->dim = s->r.st.d;
    info->n = s->r.st.n;
    info->features = s->r.feats ? s->r.n : 0;
    info->logits = s->logits ? s->nlogits : 0;
    info->labelled = s->labels != NULL;
    return DDPM_OK;
}

/* ---- measures ------------------------------------------------------------------ */

int ddpm_quality_compare(ddpm_features *f, const ddpm_stats *samples, const ddpm_stats *ref, ddpm_quality *q) {
    API_REQUIRE(NULL, f);
    API_REQUIRE(&f->head, samples);
    API_REQUIRE(&f->head, ref);
    API_REQUIRE(&f->head, q);
    const int d = featnet_dim(f->net);
    if (samples->r.st.d != d || ref->r.st.d != d)
        return api_fail(&f->head, DDPM_ERR_ARG, "the statistics are %d- and %d-dimensional, but the %s network's "
                        "features are %d-d (made with other features?)", samples->r.st.d, ref->r.st.d,
                        ddpm_features_kind_name(f->kind), d);
    if (samples->logits && samples->nlogits != featnet_classes(f->net))
        return api_fail(&f->head, DDPM_ERR_ARG, "the samples' logits are %d per image, but the %s network has %d",
                        samples->nlogits, ddpm_features_kind_name(f->kind), featnet_classes(f->net));
    quality iq;
    err_t e = {0};
    if (quality_compare(&iq, f->net, &samples->r, samples->logits, &ref->r, &e))
        return api_status(&f->head, DDPM_ERR_RUNTIME, &e);
    *q = (ddpm_quality){iq.fid, iq.is_mean, iq.is_std, iq.precision, iq.recall, iq.has_is, iq.has_pr, iq.n,
                        iq.n_ref, iq.n_pr, iq.has_broken, iq.broken, {iq.broken_by[BROKEN_DARK],
                        iq.broken_by[BROKEN_WHITE], iq.broken_by[BROKEN_NOISY]}};
    return DDPM_OK;
}

int ddpm_quality_by_class(const ddpm_stats *samples, const ddpm_stats *ref, int accuracy, ddpm_quality_class *c,
                          int m) {
    API_REQUIRE(NULL, samples);
    API_REQUIRE(NULL, ref);
    if (m < 0 || (m > 0 && !c)) return api_fail(NULL, DDPM_ERR_ARG, "ddpm_quality_by_class: %d classes at %p", m,
                                                (const void *)c);
    if (!samples->r.feats || !samples->labels)
        return api_fail(NULL, DDPM_ERR_ARG, "ddpm_quality_by_class: the samples' statistics keep no %s",
                        samples->r.feats ? "labels" : "features");
    if (accuracy && !samples->logits)
        return api_fail(NULL, DDPM_ERR_ARG, "ddpm_quality_by_class: accuracy needs the samples' logits");
    if (samples->r.st.d != ref->r.st.d)
        return api_fail(NULL, DDPM_ERR_ARG, "ddpm_quality_by_class: the statistics are %d- and %d-dimensional",
                        samples->r.st.d, ref->r.st.d);
    if (m == 0) return DDPM_OK;
    err_t e = {0};
    quality_class *qc = mem_calloc((size_t)m, sizeof *qc, &e);
    if (!qc) return api_status(NULL, DDPM_ERR_NOMEM, &e);
    for (int j = 0; j < m; j++) qc[j].k = c[j].k, qc[j].ref_k = c[j].ref_k;
    int rc = DDPM_OK;
    if (quality_by_class(qc, m, &samples->r, samples->labels, accuracy ? samples->logits : NULL, samples->nlogits,
                         &ref->r, ref->labels, &e))
        rc = api_status(NULL, DDPM_ERR_RUNTIME, &e);
    else
        for (int j = 0; j < m; j++)
            c[j] = (ddpm_quality_class){qc[j].k,       qc[j].ref_k, qc[j].n,       qc[j].n_ref,
                                        qc[j].correct, qc[j].fid,   qc[j].has_fid, qc[j].has_acc};
    free(qc);
    return rc;
}
