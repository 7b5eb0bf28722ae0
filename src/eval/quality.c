/* quality.c -- FID, IS and precision/recall of an image set against a
 * reference (quality.h), overall and per class: features from a feature
 * network, statistics from stats.c, reference files in pytorch-fid's .npz
 * layout. */
#include "quality.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/npz.h"

void quality_ref_free(quality_ref *r) {
    stats_fid_free(&r->st);
    free(r->feats);
    free(r->looks);
    memset(r, 0, sizeof *r);
}

int quality_ref_from_images(quality_ref *r, featnet *net, const image_set *s, int keep_feats, float **logits_out,
                            quality_progress cb, void *ctx, err_t *err) {
    memset(r, 0, sizeof *r);
    if (logits_out) *logits_out = NULL;
    if (s->n < 2) return err_fail(err, "statistics need at least 2 images, got %d", s->n);
    const int d = featnet_dim(net), k = featnet_classes(net);
    float *f = mem_alloc_floats((size_t)s->n * d, err), *l = NULL;
    if (!f || (logits_out && !(l = mem_alloc_floats((size_t)s->n * k, err)))) goto fail;
    if (featnet_extract(net, s, f, l, cb, ctx, err) || stats_fid_compute(&r->st, f, s->n, d, err)) goto fail;
    if (!(r->looks = mem_alloc_floats((size_t)s->n * BROKEN_LOOKS, err))) goto fail;
    broken_looks(r->looks, s);
    r->n_looks = s->n;
    if (keep_feats) r->feats = f, r->n = s->n;
    else free(f);
    if (logits_out) *logits_out = l;
    return 0;
fail:
    free(f), free(l);
    quality_ref_free(r);
    return -1;
}

int quality_ref_save(const quality_ref *r, const float *logits, int classes, const char *path, err_t *err) {
    const int d = r->st.d;
    npz_entry e[5] = {
        {"mu", NPY_F64, 1, {d}, r->st.mu},
        {"sigma", NPY_F64, 2, {d, d}, r->st.sigma},
    };
    int n = 2;
    if (r->feats) e[n++] = (npz_entry){"features", NPY_F32, 2, {r->n, d}, r->feats};
    if (r->feats && logits) e[n++] = (npz_entry){"logits", NPY_F32, 2, {r->n, classes}, logits};
    if (r->looks) e[n++] = (npz_entry){"looks", NPY_F32, 2, {r->n_looks, BROKEN_LOOKS}, r->looks};
    return npz_write(path, e, n, err);
}

static int all_finite(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* The optional array name of f as rows [n, cols] of finite floats into *out
 * and *n (left NULL and 0 when f has none). what: added to the shape message. */
static int read_rows(npz_file *f, const char *name, int cols, const char *what, float **out, long long *n,
                     const char *path, err_t *err) {
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    if (!npz_find(f, name)) return 0;
    if (npz_read_f32(f, name, out, &ndim, shape, err)) return -1;
    if (ndim != 2 || shape[1] != cols || shape[0] < 1)
        return err_fail(err, "%s: '%s' must be [n, %d]%s", path, name, cols, what);
    *n = shape[0];
    for (size_t i = 0; i < (size_t)*n * cols; i++)
        if (!isfinite((*out)[i])) return err_fail(err, "%s: '%s' holds values that are not finite", path, name);
    return 0;
}

int quality_ref_load(quality_ref *r, const char *path, err_t *err) {
    memset(r, 0, sizeof *r);
    npz_file f;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    if (npz_open(&f, path, err)) return -1;
    if (npz_read_f64(&f, "mu", &r->st.mu, &ndim, shape, err)) goto fail;
    if (ndim != 1 || shape[0] < 1 || shape[0] > 65536) {
        err_fail(err, "%s: 'mu' must be a vector of 1 to 65536 values", path);
        goto fail;
    }
    int d = r->st.d = (int)shape[0];
    if (npz_read_f64(&f, "sigma", &r->st.sigma, &ndim, shape, err)) goto fail;
    if (ndim != 2 || shape[0] != d || shape[1] != d) {
        err_fail(err, "%s: 'sigma' must be [%d, %d] to match 'mu'", path, d, d);
        goto fail;
    }
    if (!all_finite(r->st.mu, (size_t)d) || !all_finite(r->st.sigma, (size_t)d * d)) {
        err_fail(err, "%s: 'mu' or 'sigma' holds values that are not finite", path);
        goto fail;
    }
    long long nf = 0;
    if (read_rows(&f, "features", d, " to match 'mu'", &r->feats, &nf, path, err) ||
        read_rows(&f, "looks", BROKEN_LOOKS, "", &r->looks, &r->n_looks, path, err))
        goto fail;
    if (r->feats) r->n = r->st.n = nf;
    npz_close(&f);
    return 0;
fail:
    npz_close(&f);
    quality_ref_free(r);
    return -1;
}

int quality_measure(quality *q, featnet *net, const image_set *s, const quality_ref *ref, quality_progress cb,
                    void *ctx, err_t *err) {
    memset(q, 0, sizeof *q);
    const int d = featnet_dim(net);
    if (ref->st.d != d)
        return err_fail(err, "the reference statistics are %d-dimensional, but the %s network's features are %d-d "
                              "(was the reference made with other features?)", ref->st.d,
                         featnet_kind_name(featnet_kind_of(net)), d);
    const int want_is = featnet_kind_of(net) == FEATNET_INCEPTION && s->n >= QUALITY_IS_SPLITS;
    quality_ref mine;
    float *logits = NULL;
    if (quality_ref_from_images(&mine, net, s, 1, want_is ? &logits : NULL, cb, ctx, err)) return -1;
    int rc = quality_compare(q, net, &mine, logits, ref, err);
    quality_ref_free(&mine);
    free(logits);
    return rc;
}

/* Precision/recall of mine against ref on m = min(n, ref n) rows of each side:
 * the first m samples, and m reference rows spread evenly over the reference
 * (which may be sorted, e.g. by class). */
static int compare_pr(quality *q, const quality_ref *mine, const quality_ref *ref, int d, err_t *err) {
    long long m = ref->n < mine->n ? ref->n : mine->n;
    if (!ref->feats || !mine->feats || m <= QUALITY_PR_K) return 0;
    const float *real = ref->feats;
    float *picked = NULL;
    if (ref->n > m) {
        if (!(picked = mem_alloc_floats((size_t)m * d, err))) return -1;
        for (long long i = 0; i < m; i++)
            memcpy(picked + (size_t)i * d, ref->feats + (size_t)(i * ref->n / m) * d, sizeof(float) * d);
        real = picked;
    }
    int bad = stats_precision_recall(&q->precision, &q->recall, real, m, mine->feats, m, d, QUALITY_PR_K, err);
    free(picked);
    if (bad) return -1;
    q->has_pr = 1, q->n_pr = m;
    return 0;
}

int quality_compare(quality *q, featnet *net, const quality_ref *mine, const float *logits, const quality_ref *ref,
                    err_t *err) {
    memset(q, 0, sizeof *q);
    const int d = featnet_dim(net);
    if (ref->st.d != d || mine->st.d != d)
        return err_fail(err, "the reference statistics are %d-dimensional, but the %s network's features are %d-d "
                              "(was the reference made with other features?)", ref->st.d,
                         featnet_kind_name(featnet_kind_of(net)), d);
    q->n = mine->st.n, q->n_ref = ref->st.n;
    if (stats_fid_distance(&q->fid, &mine->st, &ref->st, err)) return -1;
    if (logits && featnet_kind_of(net) == FEATNET_INCEPTION && q->n >= QUALITY_IS_SPLITS) {
        if (stats_inception_score(&q->is_mean, &q->is_std, logits, q->n, featnet_classes(net), QUALITY_IS_SPLITS, err))
            return -1;
        q->has_is = 1;
    }
    if (ref->looks && mine->looks) {
        broken_rule rule;
        if (broken_rule_from(&rule, ref->looks, ref->n_looks, err)) return -1;
        q->broken = broken_count(&rule, mine->looks, mine->n_looks, q->broken_by);
        q->has_broken = 1;
    }
    return compare_pr(q, mine, ref, d, err);
}

int quality_class_stats(fid_stats *s, const float *feats, long long n, int d, const int32_t *labels, int k,
                        err_t *err) {
    memset(s, 0, sizeof *s);
    long long m = 0;
    for (long long i = 0; i < n; i++) m += labels[i] == k;
    if (m < 2) return err_fail(err, "statistics of class %d need at least 2 rows, got %lld", k, m);
    float *rows = mem_alloc_floats((size_t)m * d, err);
    if (!rows) return -1;
    for (long long i = 0, j = 0; i < n; i++)
        if (labels[i] == k) memcpy(rows + (size_t)j++ * d, feats + (size_t)i * d, sizeof(float) * d);
    int rc = stats_fid_compute(s, rows, m, d, err);
    free(rows);
    return rc;
}

/* Index of the largest of x[0..k) (the first on ties). */
static int argmax(const float *x, int k) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

/* c->fid: class c->k of mine against class c->ref_k of ref. */
static int class_fid(quality_class *c, const quality_ref *mine, const int32_t *labels, const quality_ref *ref,
                     const int32_t *ref_labels, err_t *err) {
    const int d = mine->st.d;
    fid_stats a, b;
    if (quality_class_stats(&a, mine->feats, mine->n, d, labels, c->k, err)) return -1;
    if (quality_class_stats(&b, ref->feats, ref->n, d, ref_labels, c->ref_k, err)) {
        stats_fid_free(&a);
        return -1;
    }
    int rc = stats_fid_distance(&c->fid, &a, &b, err);
    stats_fid_free(&a);
    stats_fid_free(&b);
    if (rc) return -1;
    c->has_fid = 1;
    return 0;
}

int quality_by_class(quality_class *c, int m, const quality_ref *mine, const int32_t *labels, const float *logits,
                     int nlogits, const quality_ref *ref, const int32_t *ref_labels, err_t *err) {
    for (int j = 0; j < m; j++) {
        quality_class *q = &c[j];
        q->n = q->n_ref = q->correct = 0;
        q->fid = 0, q->has_fid = 0;
        q->has_acc = logits && q->k < nlogits;
        for (long long i = 0; i < mine->n; i++)
            if (labels[i] == q->k) {
                q->n++;
                if (q->has_acc) q->correct += argmax(logits + (size_t)i * nlogits, nlogits) == q->k;
            }
        for (long long i = 0; ref_labels && q->ref_k >= 0 && i < ref->n; i++) q->n_ref += ref_labels[i] == q->ref_k;
        if (ref_labels && ref->feats && mine->feats && q->n >= 2 && q->n_ref >= 2 &&
            class_fid(q, mine, labels, ref, ref_labels, err))
            return err_wrap(err, "class %d", q->k);
    }
    return 0;
}

typedef struct sample_progress {
    quality_progress cb;
    void *ctx;
    int base, total;
} sample_progress;

static void on_sampler_step(void *ctx, int done, int total) {
    sample_progress *p = ctx;
    (void)total;
    if (p->cb) p->cb(p->ctx, p->base + done, p->total);
}

int quality_sample(const denoiser *d, const schedule *s, const sampler_opts *o, int n, float *x, quality_progress cb,
                   void *ctx, err_t *err) {
    return quality_sample_classes(d, NULL, NULL, s, o, n, x, cb, ctx, err);
}

int quality_sample_classes(const denoiser *d, const int32_t **y, const int32_t *labels, const schedule *s,
                           const sampler_opts *o, int n, float *x, quality_progress cb, void *ctx, err_t *err) {
    const size_t D = d->D;
    const int B = d->batch;
    sample_progress p = {cb, ctx, 0, ((n + B - 1) / B) * o->steps};
    for (int first = 0; first < n; first += B) {
        int m = n - first < B ? n - first : B;
        if (y) *y = labels + first; /* the batch's classes */
        if (sampler_run(d, s, o, first, m, x + (size_t)first * D, NULL, on_sampler_step, &p, err)) return -1;
        p.base += o->steps;
    }
    return 0;
}
