/* featnet.c -- opening the feature networks, the layer helpers they are
 * written with (netbuild.h), and feature extraction over an image set in
 * batches (conversion to [-1, 1], gray to RGB, the resize to 299x299). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "exec/executor.h"
#include "netbuild.h"

#define BN_EPS 1e-3 /* Inception's BatchNorm2d(eps=0.001) */
#define INCEPTION_SIZE 299

const char *featnet_kind_name(int kind) { return kind == FEATNET_INCEPTION ? "inception" : "fmnist"; }

int featnet_kind_from_name(const char *name) {
    if (!strcmp(name, "inception")) return FEATNET_INCEPTION;
    if (!strcmp(name, "fmnist")) return FEATNET_FMNIST;
    return -1;
}

void featnet_default_inception(char *buf, size_t len) {
    const char *env = getenv("DDPM_INCEPTION"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (env && *env) snprintf(buf, len, "%s", env);
    else if (xdg && *xdg) snprintf(buf, len, "%s/ddpm/inception-2015-12-05.safetensors", xdg);
    else snprintf(buf, len, "%s/.cache/ddpm/inception-2015-12-05.safetensors", home ? home : ".");
}

int featnet_kind_of(const featnet *n) { return n->kind; }
int featnet_dim(const featnet *n) { return n->dim; }
int featnet_classes(const featnet *n) { return n->classes; }
const char *featnet_fid_label(const featnet *n) { return n->label; }

/* ---- layer helpers --------------------------------------------------------- */

t4 nb_slice(t4 t, int c0, int C) {
    ERR_ASSERT(c0 >= 0 && c0 + C <= t.C);
    t.p += c0, t.C = C;
    return t;
}

t4 nb_tmp(featnet *n, int H, int W, int C) {
    size_t floats = (size_t)n->B * H * W * C;
    t4 t = {NULL, H, W, C, C};
    if (n->scratch) { /* run: bump allocation, sized by the build pass */
        ERR_ASSERT(n->scratch_used + floats <= n->scratch_cap);
        t.p = n->scratch + n->scratch_used;
    } /* build: only measured */
    n->scratch_used += floats;
    if (n->scratch_used > n->scratch_peak) n->scratch_peak = n->scratch_used;
    return t;
}

void nb_reset(featnet *n) { n->scratch_used = 0; }

float *nb_tensor(featnet *n, const char *name, int ndim, const int64_t *shape) {
    float *t = st_load_f32(n->st, name, ndim, shape, NULL, n->err);
    if (!t) n->failed = 1;
    return t;
}

/* Loads layer `full`'s weights and bias, BatchNorm folded in:
 * w' = w g / sqrt(var + eps), b' = beta - mean g / sqrt(var + eps). */
static int load_layer(featnet *n, const char *full, int cout, int cin, kern k, float **w, float **b) {
    char nm[256];
    int64_t ws[4] = {cout, cin, k.kh, k.kw}, bs[1] = {cout};
    *w = *b = NULL;
    if (!n->bn) {
        snprintf(nm, sizeof nm, "%s.weight", full);
        if (!(*w = nb_tensor(n, nm, 4, ws))) return -1;
        snprintf(nm, sizeof nm, "%s.bias", full);
        return (*b = nb_tensor(n, nm, 1, bs)) ? 0 : -1;
    }
    const char *part[4] = {"weight", "bias", "running_mean", "running_var"};
    float *bn[4] = {0};
    snprintf(nm, sizeof nm, "%s.conv.weight", full);
    *w = nb_tensor(n, nm, 4, ws);
    for (int i = 0; i < 4 && *w; i++) {
        snprintf(nm, sizeof nm, "%s.bn.%s", full, part[i]);
        if (!(bn[i] = nb_tensor(n, nm, 1, bs))) break;
    }
    int ok = *w && bn[3];
    if (ok && !(*b = mem_alloc_floats((size_t)cout, n->err))) ok = 0, n->failed = 1;
    if (ok) {
        size_t per = (size_t)cin * k.kh * k.kw;
        for (int o = 0; o < cout; o++) {
            double scale = bn[0][o] / sqrt((double)bn[3][o] + BN_EPS);
            for (size_t j = 0; j < per; j++) (*w)[o * per + j] = (float)((*w)[o * per + j] * scale);
            (*b)[o] = (float)(bn[1][o] - bn[2][o] * scale);
        }
    }
    for (int i = 0; i < 4; i++) free(bn[i]);
    return ok ? 0 : -1;
}

t4 nb_conv(featnet *n, const char *prefix, const char *name, t4 x, kern k, t4 y) {
    if (n->failed) return y;
    conv2d_shape s = {n->B, x.H, x.W, x.C, y.C, k.kh, k.kw, k.s, k.s, k.ph, k.pw};
    int Ho, Wo;
    ops_conv2d_out_size(&s, &Ho, &Wo);
    ERR_ASSERT(Ho == y.H && Wo == y.W && n->cursor < NB_MAX_CONV);
    int i = n->cursor++;
    ERR_ASSERT(n->building == !n->conv[i]);
    if (n->building) {
        char full[200];
        if (prefix) snprintf(full, sizeof full, "%s.%s", prefix, name);
        else snprintf(full, sizeof full, "%s", name);
        float *w, *b;
        if (load_layer(n, full, y.C, x.C, k, &w, &b) ||
            ops_conv2d_plan_create(&n->conv[i], &s, x.ld, y.ld, 1, w, b, n->err)) {
            n->failed = 1;
        } else {
            n->nconv = n->cursor;
        }
        free(w), free(b);
        return y; /* the build pass computes nothing */
    }
    ops_conv2d_forward(n->conv[i], y.p, x.p);
    return y;
}

t4 nb_pool(featnet *n, t4 x, int k, int stride, int pad, int max, t4 y) {
    int Ho, Wo;
    ops_pool2d_out_size(x.H, x.W, k, stride, pad, &Ho, &Wo);
    ERR_ASSERT(Ho == y.H && Wo == y.W && x.C == y.C);
    if (!n->building) ops_pool2d_forward(y.p, y.ld, x.p, x.ld, n->B, x.H, x.W, x.C, k, stride, pad, max);
    return y;
}

/* ---- open / free ----------------------------------------------------------- */

void featnet_free(featnet *n) {
    if (!n) return;
    for (int i = 0; i < NB_MAX_CONV; i++) ops_conv2d_plan_free(n->conv[i]);
    free(n->fc_w), free(n->fc_b), free(n->input), free(n->staged), free(n->act[0]), free(n->act[1]);
    free(n->scratch);
    exec_free(n->exec);
    free(n);
}

static void forward(featnet *n, const float *x, float *feats, float *logits) {
    n->cursor = 0;
    nb_reset(n);
    if (n->kind == FEATNET_INCEPTION) inception_forward(n, x, feats, logits);
    else fmnist_forward(n, x, feats, logits);
    if (n->building) return;
    ops_gemm(0, 1, n->B, n->classes, n->dim, 1.0f, feats, n->dim, n->fc_w, n->dim, 0.0f, logits, n->classes);
    if (n->fc_b)
        for (int i = 0; i < n->B; i++)
            for (int j = 0; j < n->classes; j++) logits[(size_t)i * n->classes + j] += n->fc_b[j];
}

int featnet_open(featnet **out, int kind, const char *weights, int batch, err_t *err) {
    *out = NULL;
    st_file st = {0};
    char path[4096];
    featnet *n = mem_calloc(1, sizeof *n, err);
    if (!n) return -1;
    n->kind = kind, n->B = batch, n->err = err;
    float *feats = NULL, *logits = NULL;
    exec_config ec = {.nshards = 1, .threads = 0, .sharded = 0};
    if (exec_create(&n->exec, &ec, err)) goto fail;
    if (kind == FEATNET_INCEPTION) {
        if (weights) snprintf(path, sizeof path, "%s", weights);
        else featnet_default_inception(path, sizeof path);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            err_fail(err, "cannot read the Inception weights %s (%s). Make them once from pytorch-fid's "
                           "pt_inception-2015-12-05-6726825d.pth with `python3 tools/convert_inception.py "
                           "pt_inception-2015-12-05-6726825d.pth %s` (docs/fid.md), pass --inception FILE, "
                           "or, for 28x28 gray images, the built-in F-MNIST features", path, strerror(errno), path);
            goto fail;
        }
        if (st_open(&st, path, err)) goto fail;
        n->in_h = n->in_w = INCEPTION_SIZE, n->dim = 2048, n->classes = 1008, n->bn = 1, n->label = "FID";
        n->act_cap = (size_t)batch * 147 * 147 * 64; /* the largest activation: Conv2d_2b_3x3's */
    } else {
        size_t len = (size_t)(fmnist_weights_end - fmnist_weights);
        if (st_open_mem(&st, "built-in F-MNIST feature weights", fmnist_weights, len, err)) goto fail;
        n->in_h = n->in_w = 28, n->dim = 256, n->classes = 10, n->bn = 0, n->label = "FID (F-MNIST features)";
        n->act_cap = (size_t)batch * 28 * 28 * 32;
    }
    n->st = &st;
    int cin = kind == FEATNET_INCEPTION ? 3 : 1;
    int64_t fcs[2] = {n->classes, n->dim}, fbs[1] = {n->classes};
    if (!(n->fc_w = nb_tensor(n, "fc.weight", 2, fcs))) goto fail;
    if (kind == FEATNET_FMNIST && !(n->fc_b = nb_tensor(n, "fc.bias", 1, fbs))) goto fail;
    if (!(n->input = mem_alloc_floats((size_t)batch * n->in_h * n->in_w * cin, err)) ||
        !(n->act[0] = mem_alloc_floats(n->act_cap, err)) || !(n->act[1] = mem_alloc_floats(n->act_cap, err)) ||
        !(feats = mem_alloc_floats((size_t)batch * n->dim, err)) ||
        !(logits = mem_alloc_floats((size_t)batch * n->classes, err)))
        goto fail;
    n->building = 1;
    exec_build_begin(n->exec);
    forward(n, n->input, feats, logits); /* the build pass: plans and scratch size, no arithmetic */
    n->building = 0;
    if (exec_build_end(n->exec, n->failed ? NULL : err) || n->failed) goto fail;
    nb_reset(n);
    n->scratch_cap = n->scratch_peak;
    if (n->scratch_cap && !(n->scratch = mem_alloc_floats(n->scratch_cap, err))) goto fail;
    n->st = NULL, n->err = NULL;
    st_close(&st);
    free(feats), free(logits);
    *out = n;
    return 0;
fail:
    if (kind == FEATNET_INCEPTION && n->failed) err_wrap(err, "Inception weights");
    st_close(&st);
    free(feats), free(logits);
    featnet_free(n);
    return -1;
}

/* ---- extraction ------------------------------------------------------------ */

int featnet_check(const featnet *n, const image_set *s, err_t *err) {
    if (s->n < 1) return err_fail(err, "no images");
    if (s->c != 1 && s->c != 3)
        return err_fail(err, "images have %d channels; the feature networks take gray (1) or RGB (3)", s->c);
    if (n->kind == FEATNET_FMNIST && (s->h != 28 || s->w != 28 || s->c != 1))
        return err_fail(err, "the F-MNIST feature network takes 28x28 gray images, not %dx%dx%d (use "
                              "--features inception for other images)", s->h, s->w, s->c);
    if (s->f32) {
        size_t D = (size_t)s->h * s->w * s->c;
        for (size_t i = 0; i < (size_t)s->n * D; i++)
            if (!isfinite(s->f32[i]))
                return err_fail(err, "image %zu has a value that is not finite (%g)", i / D, s->f32[i]);
    }
    return 0;
}

/* Image i of s as floats in [-1, 1] with c_out channels (gray repeated). */
static void load_image(float *dst, const image_set *s, size_t i, int c_out) {
    size_t P = (size_t)s->h * s->w;
    for (size_t p = 0; p < P; p++)
        for (int k = 0; k < c_out; k++) {
            size_t src = (i * P + p) * s->c + (s->c == 1 ? 0 : k);
            float v = s->u8 ? s->u8[src] / 127.5f - 1.0f : s->f32[src];
            dst[p * c_out + k] = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
        }
}

/* One batch's forward, on the executor's worker. */
typedef struct batch_run {
    featnet *n;
    float *feats, *logits;
} batch_run;

static void run_batch(void *ctx, int shard, float *grads) {
    batch_run *r = ctx;
    forward(r->n, r->n->input, r->feats, r->logits);
}

int featnet_extract(featnet *n, const image_set *s, float *feats, float *logits,
                    void (*progress)(void *ctx, int done, int total), void *ctx, err_t *err) {
    if (featnet_check(n, s, err)) return -1;
    const int B = n->B, cin = n->kind == FEATNET_INCEPTION ? 3 : 1;
    const int resize = s->h != n->in_h || s->w != n->in_w;
    size_t in_img = (size_t)n->in_h * n->in_w * cin, src_img = (size_t)s->h * s->w * cin;
    float *fb = mem_alloc_floats((size_t)B * n->dim, err), *lb = mem_alloc_floats((size_t)B * n->classes, err);
    if (!fb || !lb) goto fail;
    if (resize && n->staged_cap < (size_t)B * src_img) {
        free(n->staged);
        n->staged_cap = 0;
        if (!(n->staged = mem_alloc_floats((size_t)B * src_img, err))) goto fail;
        n->staged_cap = (size_t)B * src_img;
    }
    float *dst = resize ? n->staged : n->input;
    size_t dst_img = resize ? src_img : in_img;
    for (int i0 = 0; i0 < s->n; i0 += B) {
        int m = s->n - i0 < B ? s->n - i0 : B;
        #pragma omp parallel for schedule(static)
        for (int j = 0; j < m; j++) load_image(dst + j * dst_img, s, (size_t)i0 + j, cin);
        if (m < B) memset(dst + m * dst_img, 0, sizeof(float) * (B - m) * dst_img);
        if (resize) ops_resize_bilinear(n->input, n->staged, B, s->h, s->w, cin, n->in_h, n->in_w);
        batch_run r = {n, fb, lb};
        if (exec_run(n->exec, run_batch, &r, NULL, err)) {
            err_wrap(err, "the %s feature network", featnet_kind_name(n->kind));
            goto fail;
        }
        if (feats) memcpy(feats + (size_t)i0 * n->dim, fb, sizeof(float) * m * n->dim);
        if (logits) memcpy(logits + (size_t)i0 * n->classes, lb, sizeof(float) * m * n->classes);
        if (progress) progress(ctx, i0 + m, s->n);
    }
    free(fb), free(lb);
    return 0;
fail:
    free(fb), free(lb);
    return -1;
}
