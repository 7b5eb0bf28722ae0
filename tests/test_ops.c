/* test_ops.c -- every operator of src/ops/ops.h, forward and backward, in both
 * kernel tiers (ops_set_reference(1): plain C loops; ops_set_reference(0):
 * oneDNN):
 *
 *  1. against the PyTorch fixtures tests/fixtures/op_*.safetensors (NCHW,
 *     turned into NHWC here; see tools/FIXTURES.md): 3x3 conv stride 1,
 *     stride 2 with TF bottom/right padding and with symmetric padding, 1x1
 *     conv and linear, GroupNorm with and without fused SiLU, SiLU, the
 *     attention block, nearest 2x upsampling, the timestep embedding (both
 *     flip/shift variants) and the MSE loss. Inputs and outputs are given
 *     row strides wider than their channel counts (as the U-Net's concat
 *     buffers do) with NaN in the gaps of inputs and a sentinel in the gaps of
 *     outputs, so reading or writing outside a row's channels fails. The
 *     overwrite (=) or accumulate (+=) contract of every backward output is
 *     checked by running the backward twice.
 *
 *  2. finite differences for every backward (conv in all three paddings,
 *     linear, GroupNorm +- SiLU, SiLU, attention with all ten parameters,
 *     upsampling, per-sample bias, dropout, MSE): on small random shapes, the
 *     loss L = sum(r * f(inputs)) for a fixed random r is differenced
 *     centrally (h = 1e-2, float) element by element (every element of a small
 *     tensor, a spread sample of a larger one) and along random directions v,
 *     against the backward's gradient. test_fd_sensitivity shows that the
 *     checker rejects gradients that are wrong by little.
 *
 *  3. gemm: the oneDNN tier against the reference for every transpose
 *     combination with alpha/beta and leading dimensions; ops_add_rows with strides;
 *     dropout: same (seed, step, layer) gives the same mask whatever the thread
 *     count, scaling 1/(1-p), kept fraction ~ 1-p, masks differ across samples,
 *     steps, layers and seeds, and the backward applies the forward's mask.
 *
 * Runs from the repository root.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "fixture.h"
#include "ops/ops.h"
#include "ops/vmath.h"

#define SENTINEL (-777.0f) /* the gaps between rows of an output must keep this */

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* Uniform in [-1, 1) from a 64-bit LCG (deterministic, independent of src/). */
static float urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / 16777216.0 * 2.0 - 1.0);
}

/* n floats: offset + scale * uniform[-1, 1). */
static float *rnd(size_t n, float offset, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * urand();
    return p;
}

static float *filled(size_t n, float v) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

static float *copy_of(const float *x, size_t n) {
    float *p = malloc(n * sizeof(float));
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* Rows x[M, C] in a new [M, ld] buffer whose gap columns hold fill. */
static float *widen(const float *x, int M, int C, int ld, float fill) {
    float *y = filled((size_t)M * ld, fill);
    for (int i = 0; i < M; i++) memcpy(y + (size_t)i * ld, x + (size_t)i * C, (size_t)C * sizeof(float));
    return y;
}

/* The [M, C] part of a [M, ld] buffer, in a new contiguous buffer. */
static float *narrow(const float *y, int M, int C, int ld) {
    float *x = calloc((size_t)M * C, sizeof(float));
    for (int i = 0; i < M; i++) memcpy(x + (size_t)i * C, y + (size_t)i * ld, (size_t)C * sizeof(float));
    return x;
}

/* Checks that the gap columns of a [M, ld] output still hold SENTINEL. */
static void check_gaps(const char *what, const float *y, int M, int C, int ld) {
    size_t bad = 0;
    for (int i = 0; i < M; i++)
        for (int c = C; c < ld; c++) bad += y[(size_t)i * ld + c] != SENTINEL;
    CHECK(bad == 0, "%s: %zu values written outside the rows' %d channels (row stride %d)", what, bad, C, ld);
}

static float *scaled(const float *x, size_t n, float s) {
    float *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = s * x[i];
    return y;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Fixture tolerance: |got - ref| <= FX_ATOL * max|ref| + FX_RTOL * |ref|. The
 * references are float64 results rounded once; a float32 kernel with K-term sums
 * is off by a few 1e-7 relative to the sums' magnitude. */
#define FX_ATOL 2e-6
#define FX_RTOL 2e-5

static void fx_cmp(const char *what, const float *got, const float *ref, size_t n) {
    check_close(what, got, ref, n, FX_ATOL * fx_maxabs(ref, n), FX_RTOL);
}

static const char *tier_name(int reference) { return reference ? "reference" : "oneDNN"; }

/* ---- finite differences ------------------------------------------------------ */

typedef double (*loss_fn)(void *ctx);

#define FD_H 1e-2f       /* step: inputs and parameters here are O(0.1..1) */
#define FD_TOL 1e-3      /* per element: |g - fd| <= FD_TOL * (max|fd| + |fd|); per direction: see fd_measure */
#define FD_MAX_COORDS 96 /* elements differenced one by one (all of them when the tensor is smaller) */
#define FD_DIRS 3        /* random directions */

/* Central differences of L around p[0..n) against the analytic gradient g. */
typedef struct fd_result {
    size_t m;
    float ana[FD_MAX_COORDS], num[FD_MAX_COORDS]; /* element-wise */
    float dir_err[FD_DIRS], zero[FD_DIRS];        /* per direction: |<g,dv> - dL| / (|<g,dv>| + ||g dv||_2) */
} fd_result;

static void fd_measure(fd_result *res, loss_fn L, void *ctx, float *p, const float *g, size_t n) {
    /* Element-wise: all elements, or FD_MAX_COORDS spread over the tensor. */
    res->m = n < FD_MAX_COORDS ? n : FD_MAX_COORDS;
    for (size_t k = 0; k < res->m; k++) {
        size_t i = n <= FD_MAX_COORDS ? k : (k * n + (size_t)(0.5f * (urand() + 1) * (n / res->m))) / res->m;
        if (i >= n) i = n - 1;
        float save = p[i], up = save + FD_H, dn = save - FD_H;
        p[i] = up;
        double lp = L(ctx);
        p[i] = dn;
        double lm = L(ctx);
        p[i] = save;
        res->num[k] = (float)((lp - lm) / ((double)up - (double)dn)); /* the steps actually taken */
        res->ana[k] = g[i];
    }
    /* Directions: <g, p+ - p-> against L(p+) - L(p-), relative to |<g, dv>| + ||g dv||_2
     * (the size <g, dv> has for a random v: a gradient off by a factor 1+e fails
     * when e >~ 2 FD_TOL). */
    float *save = copy_of(p, n), *pp = malloc(n * sizeof(float)), *pm = malloc(n * sizeof(float));
    for (int d = 0; d < FD_DIRS; d++) {
        for (size_t i = 0; i < n; i++) {
            float v = urand();
            pp[i] = save[i] + FD_H * v;
            pm[i] = save[i] - FD_H * v;
        }
        double a = 0, norm = 0;
        for (size_t i = 0; i < n; i++) {
            double dv = (double)pp[i] - pm[i];
            a += g[i] * dv;
            norm += g[i] * dv * g[i] * dv;
        }
        double scale = fabs(a) + sqrt(norm);
        memcpy(p, pp, n * sizeof(float));
        double lp = L(ctx);
        memcpy(p, pm, n * sizeof(float));
        double lm = L(ctx);
        res->dir_err[d] = scale > 0 ? (float)(fabs(a - (lp - lm)) / scale) : (float)fabs(lp - lm);
        res->zero[d] = 0;
    }
    memcpy(p, save, n * sizeof(float));
    free(save); free(pp); free(pm);
}

/* Silent verdict for fd_sensitivity: 1 if the gradient passes. */
static int fd_passes(const fd_result *r) {
    double mx = fx_maxabs(r->num, r->m);
    for (size_t k = 0; k < r->m; k++)
        if (!(fabs(r->ana[k] - r->num[k]) <= FD_TOL * (mx + fabs(r->num[k])))) return 0;
    for (int d = 0; d < FD_DIRS; d++)
        if (!(r->dir_err[d] <= FD_TOL)) return 0;
    return 1;
}

/* Checks g = dL/dp by element-wise and directional differences, printing the
 * max errors (element-wise ones relative to max|fd|). */
static void fd_check(const char *what, loss_fn L, void *ctx, float *p, const float *g, size_t n) {
    fd_result r;
    fd_measure(&r, L, ctx, p, g, n);
    float mx = fx_maxabs(r.num, r.m);
    if (mx == 0) mx = 1;
    for (size_t k = 0; k < r.m; k++) {
        r.ana[k] /= mx;
        r.num[k] /= mx;
    }
    char name[96];
    snprintf(name, sizeof name, "fd %s (elements/max)", what);
    check_close(name, r.ana, r.num, r.m, FD_TOL, FD_TOL);
    snprintf(name, sizeof name, "fd %s (%d dirs)", what, FD_DIRS);
    check_close(name, r.dir_err, r.zero, FD_DIRS, FD_TOL, 0);
}

/* ---- gemm -------------------------------------------------------------------- */

/* oneDNN's sgemm against the reference loops: every transpose pair, alpha/beta, lds. */
static void test_gemm_tiers(void) {
    const int M = 13, N = 11, K = 17;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int betai = 0; betai < 2; betai++) {
                float alpha = 0.75f, beta = betai ? 0.5f : 0.0f;
                int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
                float *A = rnd((size_t)(ta ? K : M) * lda, 0, 1), *B = rnd((size_t)(tb ? N : K) * ldb, 0, 1);
                float *C0 = rnd((size_t)M * ldc, 0, 1), *C1 = copy_of(C0, (size_t)M * ldc);
                ops_set_reference(1);
                ops_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
                ops_set_reference(0);
                ops_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
                char what[64];
                snprintf(what, sizeof what, "gemm ta=%d tb=%d beta=%g", ta, tb, beta);
                check_close(what, C1, C0, (size_t)M * ldc, 2e-6 * fx_maxabs(C0, (size_t)M * ldc), 1e-5);
                free(A); free(B); free(C0); free(C1);
            }
}

/* ---- 3x3 convolution --------------------------------------------------------- */

/* One fixture (stride, pad) in one tier, with row strides Cin+3 and Cout+2. */
static void conv_fixture(const char *file, int stride, int pad, int reference) {
    printf("  %s, %s kernels\n", file, tier_name(reference));
    ops_set_reference(reference);
    st_file f = fx_open(file);
    int B, Cin, H, W, Co, Ho, Wo, n0, c0, h0, w0;
    float *x = fx_get_nhwc(&f, "x", &B, &Cin, &H, &W);
    float *ref = fx_get_nhwc(&f, "out", &n0, &Co, &Ho, &Wo);
    float *dout = fx_get_nhwc(&f, "dout", &n0, &c0, &h0, &w0);
    float *dx_ref = fx_get_nhwc(&f, "dx", &n0, &c0, &h0, &w0);
    size_t nw, nb;
    float *w = fx_get(&f, "weight", &nw), *b = fx_get(&f, "bias", &nb);
    float *dw_ref = fx_get(&f, "dweight", NULL), *db_ref = fx_get(&f, "dbias", NULL);
    int ho, wo;
    ops_conv_out_size(H, W, stride, &ho, &wo);
    CHECK(ho == Ho && wo == Wo, "conv_out_size %dx%d, PyTorch %dx%d", ho, wo, Ho, Wo);
    CHECK(nw == (size_t)Co * Cin * 9 && nb == (size_t)Co, "fixture shapes");
    int Mx = B * H * W, My = B * Ho * Wo, ldx = Cin + 3, ldy = Co + 2;
    size_t ny = (size_t)My * Co, nx = (size_t)Mx * Cin;

    conv_plan *p;
    err_t err;
    int rc = ops_conv_plan_create(&p, B, H, W, Cin, Co, stride, pad, ldx, ldy, 1, &err);
    CHECK(rc == 0, "conv_plan_create: %s", err.msg);
    if (rc) return;
    float *xw = widen(x, Mx, Cin, ldx, NAN), *yw = filled((size_t)My * ldy, SENTINEL);
    ops_conv_forward(p, yw, xw, w, b);
    float *y = narrow(yw, My, Co, ldy);
    fx_cmp("forward", y, ref, ny);
    check_gaps("forward", yw, My, Co, ldy);

    /* Backward twice: dx (=) must come out the same, dw/db (+=) doubled. */
    float *dyw = widen(dout, My, Co, ldy, NAN), *dxw = widen(x, Mx, Cin, ldx, SENTINEL); /* dx starts as garbage */
    float *dw = filled(nw, 0), *db = filled(nb, 0);
    for (int pass = 1; pass <= 2; pass++) {
        ops_conv_backward(p, dxw, dw, db, dyw, xw, w);
        float *dx = narrow(dxw, Mx, Cin, ldx);
        float *dw2 = scaled(dw_ref, nw, (float)pass), *db2 = scaled(db_ref, nb, (float)pass);
        fx_cmp(pass == 1 ? "dx" : "dx (second call overwrites)", dx, dx_ref, nx);
        fx_cmp(pass == 1 ? "dweight" : "dweight (second call accumulates)", dw, dw2, nw);
        fx_cmp(pass == 1 ? "dbias" : "dbias (second call accumulates)", db, db2, nb);
        check_gaps("dx", dxw, Mx, Cin, ldx);
        free(dx); free(dw2); free(db2);
    }
    /* dx == NULL (the network's input): weights only. */
    memset(dw, 0, nw * sizeof(float));
    memset(db, 0, nb * sizeof(float));
    ops_conv_backward(p, NULL, dw, db, dyw, xw, w);
    fx_cmp("dweight (dx NULL)", dw, dw_ref, nw);
    fx_cmp("dbias (dx NULL)", db, db_ref, nb);

    ops_conv_plan_free(p);
    st_close(&f);
    free(x); free(ref); free(dout); free(dx_ref); free(w); free(b); free(dw_ref); free(db_ref);
    free(xw); free(yw); free(y); free(dyw); free(dxw); free(dw); free(db);
}

/* The fast algorithms for stride-1 convolutions (oneDNN's direct kernels,
 * ddpm's Winograd, oneDNN's Winograd where offered, and two mixes of them per
 * pass, pinned as a run folder pins them) against the plain-loop tier, on
 * non-square images with row-strided input and output: forward, dx (=),
 * dw/db (+=), twice.
 * 3 images of 25x23 are 468 Winograd tiles: more than one chunk, the last
 * one partial. */
static void conv_algorithms(int B, int H, int W) {
    const int Cin = 9, Co = 10, ldx = Cin + 3, ldy = Co + 2, M = B * H * W;
    printf("  %d images %dx%d, %d -> %d channels\n", B, H, W, Cin, Co);
    size_t nx = (size_t)M * Cin, ny = (size_t)M * Co, nw = (size_t)Co * Cin * 9;
    float *x = rnd(nx, 0, 1), *w = rnd(nw, 0, 0.3f), *b = rnd(Co, 0, 0.3f), *dy = rnd(ny, 0, 1);
    float *xw = widen(x, M, Cin, ldx, NAN), *dyw = widen(dy, M, Co, ldy, NAN);
    float *ref[4] = {NULL};           /* y, dx, dw, db of the plain loops */
    const char *alg_name[] = {"plain loops", "oneDNN direct", "Winograd", "oneDNN Winograd (or direct)",
                              "winograd direct winograd", "direct winograd direct"};
    const int forced[] = {CONV_ALG_DIRECT, CONV_ALG_DIRECT, CONV_ALG_WINOGRAD, CONV_ALG_DNNL_WINOGRAD,
                          CONV_ALG_MEASURE, CONV_ALG_MEASURE};
    for (int alg = 0; alg < 6; alg++) {
        ops_set_reference(alg == 0);
        ops_conv_set_algorithm(forced[alg]);
        conv_plan *p;
        err_t err;
        if (alg >= 4) {
            char pin[256];
            snprintf(pin, sizeof pin, "a test|none|%d %d %d %d %d 1 0 %d %d 1|%s\n", B, H, W, Cin, Co, ldx, ldy,
                     alg_name[alg]);
            CHECK(ops_conv_choices_pin(pin, &err) == 0, "%s", err.msg);
        }
        int rc = ops_conv_plan_create(&p, B, H, W, Cin, Co, 1, CONV_PAD_SAME, ldx, ldy, 1, &err);
        ops_conv_choices_reset();
        CHECK(rc == 0, "conv_plan_create: %s", err.msg);
        if (rc) break;
        if (alg >= 4)
            for (int i = 0; i < CONV_PASSES; i++)
                CHECK(ops_conv_plan_algorithm(p, i) == (((alg == 4) ^ (i == 1)) ? CONV_ALG_WINOGRAD : CONV_ALG_DIRECT),
                      "%s: pass %d runs %s", alg_name[alg], i, ops_conv_algorithm_name(ops_conv_plan_algorithm(p, i)));
        float *yw = filled((size_t)M * ldy, SENTINEL), *dxw = filled((size_t)M * ldx, SENTINEL);
        float *dw = filled(nw, 0), *db = filled(Co, 0);
        ops_conv_forward(p, yw, xw, w, b);
        ops_conv_backward(p, dxw, dw, db, dyw, xw, w);
        ops_conv_backward(p, dxw, dw, db, dyw, xw, w);
        float *got[4] = {narrow(yw, M, Co, ldy), narrow(dxw, M, Cin, ldx), scaled(dw, nw, 0.5f), scaled(db, Co, 0.5f)};
        check_gaps("forward", yw, M, Co, ldy);
        check_gaps("dx", dxw, M, Cin, ldx);
        size_t len[4] = {ny, nx, nw, Co};
        const char *what[4] = {"forward", "dx", "dweight (accumulated twice)", "dbias (accumulated twice)"};
        for (int k = 0; k < 4; k++) {
            if (alg == 0) {
                ref[k] = got[k];
                continue;
            }
            char label[96];
            snprintf(label, sizeof label, "%s: %s", alg_name[alg], what[k]);
            fx_cmp(label, got[k], ref[k], len[k]);
            free(got[k]);
        }
        ops_conv_plan_free(p);
        free(yw); free(dxw); free(dw); free(db);
    }
    ops_set_reference(0);
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
    for (int k = 0; k < 4; k++) free(ref[k]);
    free(x); free(w); free(b); free(dy); free(xw); free(dyw);
}

static void test_conv_algorithms(void) {
    conv_algorithms(3, 7, 5);
    conv_algorithms(3, 25, 23);
}

static void test_conv_fixtures(void) {
    for (int reference = 1; reference >= 0; reference--) {
        conv_fixture("tests/fixtures/op_conv3x3.safetensors", 1, CONV_PAD_SAME, reference);
        conv_fixture("tests/fixtures/op_conv3x3_s2_tf.safetensors", 2, CONV_PAD_TF, reference);
        conv_fixture("tests/fixtures/op_conv3x3_s2_sym.safetensors", 2, CONV_PAD_SAME, reference);
    }
}

typedef struct conv_ctx {
    conv_plan *p;
    float *x, *w, *b, *y, *r;
    size_t ny;
} conv_ctx;

static double conv_loss(void *v) {
    conv_ctx *c = v;
    ops_conv_forward(c->p, c->y, c->x, c->w, c->b);
    return dot(c->r, c->y, c->ny);
}

static void conv_fd(int H, int W, int stride, int pad, int reference) {
    const int B = 2, Cin = 3, Co = 4;
    printf("  %dx%d stride %d %s, %s kernels\n", H, W, stride, pad == CONV_PAD_TF ? "TF pad" : "pad 1",
           tier_name(reference));
    ops_set_reference(reference);
    int Ho, Wo;
    ops_conv_out_size(H, W, stride, &Ho, &Wo);
    size_t nx = (size_t)B * H * W * Cin, ny = (size_t)B * Ho * Wo * Co, nw = (size_t)Co * Cin * 9;
    conv_ctx c = {NULL, rnd(nx, 0, 1), rnd(nw, 0, 0.3f), rnd(Co, 0, 0.3f), filled(ny, 0), rnd(ny, 0, 1), ny};
    err_t err;
    int rc = ops_conv_plan_create(&c.p, B, H, W, Cin, Co, stride, pad, Cin, Co, 1, &err);
    CHECK(rc == 0, "conv_plan_create: %s", err.msg);
    if (rc) return;
    float *dx = filled(nx, 0), *dw = filled(nw, 0), *db = filled(Co, 0);
    ops_conv_backward(c.p, dx, dw, db, c.r, c.x, c.w);
    fd_check("conv dx", conv_loss, &c, c.x, dx, nx);
    fd_check("conv dweight", conv_loss, &c, c.w, dw, nw);
    fd_check("conv dbias", conv_loss, &c, c.b, db, Co);
    ops_conv_plan_free(c.p);
    free(c.x); free(c.w); free(c.b); free(c.y); free(c.r); free(dx); free(dw); free(db);
}

static void test_conv_fd(void) {
    for (int reference = 1; reference >= 0; reference--) {
        conv_fd(5, 6, 1, CONV_PAD_SAME, reference);
        conv_fd(6, 4, 2, CONV_PAD_TF, reference);
        conv_fd(5, 6, 2, CONV_PAD_SAME, reference);
    }
}

/* ---- linear and 1x1 convolution ---------------------------------------------- */

/* y = x W^T + b on rows (M, K) -> (M, N), row strides K+3 / N+2, both accumulate modes. */
static void linear_case(const char *what, const float *x, const float *w, const float *b, const float *ref,
                        const float *dout, const float *dx_ref, const float *dw_ref, const float *db_ref,
                        int M, int K, int N) {
    int ldx = K + 3, ldy = N + 2;
    size_t nx = (size_t)M * K, ny = (size_t)M * N, nw = (size_t)N * K;
    char name[96];
    float *xw = widen(x, M, K, ldx, NAN), *yw = filled((size_t)M * ldy, SENTINEL);
    for (int i = 0; i < M; i++) memset(yw + (size_t)i * ldy, 0x7f, (size_t)N * sizeof(float)); /* garbage */
    ops_linear_forward(yw, ldy, xw, ldx, w, b, M, K, N, 0);
    float *y = narrow(yw, M, N, ldy);
    snprintf(name, sizeof name, "%s forward", what);
    fx_cmp(name, y, ref, ny);
    check_gaps(name, yw, M, N, ldy);
    /* accumulate = 1 adds the same on top (bias included). */
    ops_linear_forward(yw, ldy, xw, ldx, w, b, M, K, N, 1);
    float *y2 = narrow(yw, M, N, ldy), *ref2 = scaled(ref, ny, 2);
    snprintf(name, sizeof name, "%s forward (accumulate)", what);
    fx_cmp(name, y2, ref2, ny);
    /* No bias: out - b. */
    ops_linear_forward(yw, ldy, xw, ldx, w, NULL, M, K, N, 0);
    float *y3 = narrow(yw, M, N, ldy);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) y3[(size_t)i * N + j] += b[j];
    snprintf(name, sizeof name, "%s forward (no bias) + bias", what);
    fx_cmp(name, y3, ref, ny);

    /* Backward: everything accumulates; twice gives double. */
    float *dyw = widen(dout, M, N, ldy, NAN), *dxw = widen(dx_ref, M, K, ldx, SENTINEL);
    for (int i = 0; i < M; i++) memset(dxw + (size_t)i * ldx, 0, (size_t)K * sizeof(float));
    float *dw = filled(nw, 0), *db = filled(N, 0);
    for (int pass = 1; pass <= 2; pass++) {
        ops_linear_backward(dxw, ldx, dw, db, dyw, ldy, xw, ldx, w, M, K, N);
        float *dx = narrow(dxw, M, K, ldx), *e1 = scaled(dx_ref, nx, (float)pass), *e2 = scaled(dw_ref, nw, (float)pass),
              *e3 = scaled(db_ref, N, (float)pass);
        snprintf(name, sizeof name, "%s dx (call %d, +=)", what, pass);
        fx_cmp(name, dx, e1, nx);
        snprintf(name, sizeof name, "%s dweight (call %d, +=)", what, pass);
        fx_cmp(name, dw, e2, nw);
        snprintf(name, sizeof name, "%s dbias (call %d, +=)", what, pass);
        fx_cmp(name, db, e3, N);
        check_gaps("linear dx", dxw, M, K, ldx);
        free(dx); free(e1); free(e2); free(e3);
    }
    memset(dw, 0, nw * sizeof(float));
    ops_linear_backward(NULL, 0, dw, NULL, dyw, ldy, xw, ldx, w, M, K, N);
    snprintf(name, sizeof name, "%s dweight (dx, db NULL)", what);
    fx_cmp(name, dw, dw_ref, nw);
    free(xw); free(yw); free(y); free(y2); free(ref2); free(y3); free(dyw); free(dxw); free(dw); free(db);
}

static void test_linear_fixtures(void) {
    for (int reference = 1; reference >= 0; reference--) {
        printf("  %s kernels\n", tier_name(reference));
        ops_set_reference(reference);
        {
            st_file f = fx_open("tests/fixtures/op_linear.safetensors");
            const st_tensor *t = fx_tensor(&f, "weight");
            int N = (int)t->shape[0], K = (int)t->shape[1], M = (int)fx_tensor(&f, "x")->shape[0];
            float *x = fx_get(&f, "x", NULL), *w = fx_get(&f, "weight", NULL), *b = fx_get(&f, "bias", NULL);
            float *out = fx_get(&f, "out", NULL), *dout = fx_get(&f, "dout", NULL), *dx = fx_get(&f, "dx", NULL);
            float *dw = fx_get(&f, "dweight", NULL), *db = fx_get(&f, "dbias", NULL);
            linear_case("linear", x, w, b, out, dout, dx, dw, db, M, K, N);
            free(x); free(w); free(b); free(out); free(dout); free(dx); free(dw); free(db);
            st_close(&f);
        }
        {
            /* The 1x1 convolution is the linear layer on NHWC rows. */
            st_file f = fx_open("tests/fixtures/op_conv1x1.safetensors");
            int B, K, H, W, N, n, h, w_;
            float *x = fx_get_nhwc(&f, "x", &B, &K, &H, &W), *out = fx_get_nhwc(&f, "out", &n, &N, &h, &w_);
            float *dout = fx_get_nhwc(&f, "dout", &n, &N, &h, &w_), *dx = fx_get_nhwc(&f, "dx", &n, &K, &h, &w_);
            float *w = fx_get(&f, "weight", NULL), *b = fx_get(&f, "bias", NULL);
            float *dw = fx_get(&f, "dweight", NULL), *db = fx_get(&f, "dbias", NULL);
            linear_case("conv1x1", x, w, b, out, dout, dx, dw, db, B * H * W, K, N);
            free(x); free(w); free(b); free(out); free(dout); free(dx); free(dw); free(db);
            st_close(&f);
        }
    }
}

typedef struct linear_ctx {
    float *x, *w, *b, *y, *r;
    int M, K, N;
} linear_ctx;

static double linear_loss(void *v) {
    linear_ctx *c = v;
    ops_linear_forward(c->y, c->N, c->x, c->K, c->w, c->b, c->M, c->K, c->N, 0);
    return dot(c->r, c->y, (size_t)c->M * c->N);
}

static void test_linear_fd(void) {
    const int M = 6, K = 7, N = 5;
    for (int reference = 1; reference >= 0; reference--) {
        printf("  %s kernels\n", tier_name(reference));
        ops_set_reference(reference);
        linear_ctx c = {rnd((size_t)M * K, 0, 1), rnd((size_t)N * K, 0, 0.5f), rnd(N, 0, 0.5f),
                        filled((size_t)M * N, 0), rnd((size_t)M * N, 0, 1), M, K, N};
        float *dx = filled((size_t)M * K, 0), *dw = filled((size_t)N * K, 0), *db = filled(N, 0);
        ops_linear_backward(dx, K, dw, db, c.r, N, c.x, K, c.w, M, K, N);
        fd_check("linear dx", linear_loss, &c, c.x, dx, (size_t)M * K);
        fd_check("linear dweight", linear_loss, &c, c.w, dw, (size_t)N * K);
        fd_check("linear dbias", linear_loss, &c, c.b, db, N);
        free(c.x); free(c.w); free(c.b); free(c.y); free(c.r); free(dx); free(dw); free(db);
    }
}

/* ---- GroupNorm (+ SiLU) ------------------------------------------------------- */

static void groupnorm_fixture(const char *file, int silu) {
    const int G = 4;
    const float eps = 1e-6f;
    st_file f = fx_open(file);
    int B, C, H, W, n, c, h, w;
    float *x = fx_get_nhwc(&f, "x", &B, &C, &H, &W), *ref = fx_get_nhwc(&f, "out", &n, &c, &h, &w);
    float *dout = fx_get_nhwc(&f, "dout", &n, &c, &h, &w), *dx_ref = fx_get_nhwc(&f, "dx", &n, &c, &h, &w);
    float *gamma = fx_get(&f, "weight", NULL), *beta = fx_get(&f, "bias", NULL);
    float *dg_ref = fx_get(&f, "dweight", NULL), *db_ref = fx_get(&f, "dbias", NULL);
    int HW = H * W, M = B * HW, ldx = C + 3, ldy = C + 1;
    size_t nx = (size_t)M * C;
    float *mean = filled((size_t)B * G, 0), *rstd = filled((size_t)B * G, 0);
    float *xw = widen(x, M, C, ldx, NAN), *yw = filled((size_t)M * ldy, SENTINEL);
    ops_groupnorm_forward(yw, ldy, mean, rstd, xw, ldx, gamma, beta, B, HW, C, G, eps, silu);
    float *y = narrow(yw, M, C, ldy);
    fx_cmp(silu ? "groupnorm+silu forward" : "groupnorm forward", y, ref, nx);
    check_gaps("groupnorm forward", yw, M, C, ldy);

    float *dyw = widen(dout, M, C, ldy, NAN), *dxw = widen(x, M, C, ldx, SENTINEL); /* garbage dx */
    float *dg = filled(C, 0), *db = filled(C, 0);
    /* accumulate = 0 overwrites dx; dgamma/dbeta accumulate. */
    ops_groupnorm_backward(dxw, ldx, dg, db, dyw, ldy, xw, ldx, mean, rstd, gamma, beta, B, HW, C, G, silu, 0);
    float *dx = narrow(dxw, M, C, ldx);
    fx_cmp("dx (accumulate 0)", dx, dx_ref, nx);
    fx_cmp("dweight", dg, dg_ref, C);
    fx_cmp("dbias", db, db_ref, C);
    check_gaps("groupnorm dx", dxw, M, C, ldx);
    /* accumulate = 1 adds onto dx: now 2 dx; dgamma/dbeta doubled. */
    ops_groupnorm_backward(dxw, ldx, dg, db, dyw, ldy, xw, ldx, mean, rstd, gamma, beta, B, HW, C, G, silu, 1);
    float *dx2 = narrow(dxw, M, C, ldx), *e1 = scaled(dx_ref, nx, 2), *e2 = scaled(dg_ref, C, 2),
          *e3 = scaled(db_ref, C, 2);
    fx_cmp("dx (accumulate 1)", dx2, e1, nx);
    fx_cmp("dweight (second call accumulates)", dg, e2, C);
    fx_cmp("dbias (second call accumulates)", db, e3, C);
    st_close(&f);
    free(x); free(ref); free(dout); free(dx_ref); free(gamma); free(beta); free(dg_ref); free(db_ref);
    free(mean); free(rstd); free(xw); free(yw); free(y); free(dyw); free(dxw); free(dg); free(db); free(dx);
    free(dx2); free(e1); free(e2); free(e3);
}

static void test_groupnorm_fixtures(void) {
    for (int reference = 1; reference >= 0; reference--) {
        printf("  %s kernels\n", tier_name(reference));
        ops_set_reference(reference);
        groupnorm_fixture("tests/fixtures/op_groupnorm.safetensors", 0);
        groupnorm_fixture("tests/fixtures/op_groupnorm_silu.safetensors", 1);
    }
}

typedef struct gn_ctx {
    float *x, *gamma, *beta, *y, *r, *mean, *rstd;
    int B, HW, C, G, silu;
} gn_ctx;

static double gn_loss(void *v) {
    gn_ctx *c = v;
    ops_groupnorm_forward(c->y, c->C, c->mean, c->rstd, c->x, c->C, c->gamma, c->beta, c->B, c->HW, c->C, c->G, 1e-6f,
                      c->silu);
    return dot(c->r, c->y, (size_t)c->B * c->HW * c->C);
}

static void test_groupnorm_fd(void) {
    const int B = 2, HW = 6, C = 6, G = 3;
    size_t n = (size_t)B * HW * C;
    for (int reference = 1; reference >= 0; reference--)
        for (int silu = 0; silu < 2; silu++) {
            printf("  %s, %s kernels\n", silu ? "groupnorm+silu" : "groupnorm", tier_name(reference));
            ops_set_reference(reference);
            gn_ctx c = {rnd(n, 0.3f, 1.5f), rnd(C, 1, 0.5f), rnd(C, 0, 0.5f), filled(n, 0), rnd(n, 0, 1),
                        filled((size_t)B * G, 0), filled((size_t)B * G, 0), B, HW, C, G, silu};
            gn_loss(&c); /* the saved statistics */
            float *dx = filled(n, 0), *dg = filled(C, 0), *db = filled(C, 0);
            ops_groupnorm_backward(dx, C, dg, db, c.r, C, c.x, C, c.mean, c.rstd, c.gamma, c.beta, B, HW, C, G, silu, 0);
            fd_check("groupnorm dx", gn_loss, &c, c.x, dx, n);
            fd_check("groupnorm dgamma", gn_loss, &c, c.gamma, dg, C);
            fd_check("groupnorm dbeta", gn_loss, &c, c.beta, db, C);
            free(c.x); free(c.gamma); free(c.beta); free(c.y); free(c.r); free(c.mean); free(c.rstd);
            free(dx); free(dg); free(db);
        }
}

/* ---- SiLU -------------------------------------------------------------------- */

static void test_silu_fixture(void) {
    st_file f = fx_open("tests/fixtures/op_silu.safetensors");
    size_t n;
    float *x = fx_get(&f, "x", &n), *ref = fx_get(&f, "out", NULL), *dout = fx_get(&f, "dout", NULL);
    float *dx_ref = fx_get(&f, "dx", NULL);
    float *y = filled(n, SENTINEL), *dx = filled(n, SENTINEL), *xi = copy_of(x, n);
    ops_silu_forward(y, x, n);
    fx_cmp("silu forward", y, ref, n);
    ops_silu_forward(xi, xi, n); /* in place */
    fx_cmp("silu forward (in place)", xi, ref, n);
    ops_silu_backward(dx, dout, x, n);
    fx_cmp("silu dx (=)", dx, dx_ref, n);
    st_close(&f);
    free(x); free(ref); free(dout); free(dx_ref); free(y); free(dx); free(xi);
}

typedef struct ew_ctx {
    float *x, *y, *r;
    size_t n;
} ew_ctx;

static double silu_loss(void *v) {
    ew_ctx *c = v;
    ops_silu_forward(c->y, c->x, c->n);
    return dot(c->r, c->y, c->n);
}

static void test_silu_fd(void) {
    const size_t n = 64;
    ew_ctx c = {rnd(n, 0, 4), filled(n, 0), rnd(n, 0, 1), n};
    float *dx = filled(n, 0);
    ops_silu_backward(dx, c.r, c.x, n);
    fd_check("silu dx", silu_loss, &c, c.x, dx, n);
    free(c.x); free(c.y); free(c.r); free(dx);
}

/* ---- attention ----------------------------------------------------------------- */

/* The ten parameter arrays in attn_params order, with their fixture names. */
static const char *const attn_names[10] = {"group_norm.weight", "group_norm.bias", "to_q.weight", "to_q.bias",
                                           "to_k.weight", "to_k.bias", "to_v.weight", "to_v.bias",
                                           "to_out.0.weight", "to_out.0.bias"};

static attn_params attn_pack(float *const a[10]) {
    attn_params p = {a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]};
    return p;
}

static attn_grads attn_gpack(float *const a[10]) {
    attn_grads g = {a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]};
    return g;
}

static size_t attn_numel(int i, int C) { return (i >= 2 && i % 2 == 0) ? (size_t)C * C : (size_t)C; }

static attn_saved attn_alloc_saved(int B, int HW, int C, int G) {
    size_t MC = (size_t)B * HW * C;
    attn_saved s = {filled(MC, 0), filled(MC, 0), filled(MC, 0), filled(MC, 0), filled((size_t)B * HW * HW, 0),
                    filled(MC, 0), filled((size_t)B * G, 0), filled((size_t)B * G, 0)};
    return s;
}

static void attn_free_saved(attn_saved *s) {
    free(s->g); free(s->q); free(s->k); free(s->v); free(s->p); free(s->o); free(s->mean); free(s->rstd);
}

static void attention_fixture(int reference) {
    const int G = 4;
    printf("  %s kernels\n", tier_name(reference));
    ops_set_reference(reference);
    st_file f = fx_open("tests/fixtures/op_attention.safetensors");
    int B, C, H, W, n, c, h, w;
    float *x = fx_get_nhwc(&f, "x", &B, &C, &H, &W), *ref = fx_get_nhwc(&f, "out", &n, &c, &h, &w);
    float *dout = fx_get_nhwc(&f, "dout", &n, &c, &h, &w), *dx_ref = fx_get_nhwc(&f, "dx", &n, &c, &h, &w);
    int HW = H * W, M = B * HW, ld = C + 3;
    size_t nx = (size_t)M * C;
    float *par[10], *grad[10], *gref[10];
    for (int i = 0; i < 10; i++) {
        char key[64];
        snprintf(key, sizeof key, "d%s", attn_names[i]);
        size_t m;
        par[i] = fx_get(&f, attn_names[i], &m);
        CHECK(m == attn_numel(i, C), "%s: %zu elements", attn_names[i], m);
        gref[i] = fx_get(&f, key, NULL);
        grad[i] = filled(m, 0);
    }
    attn_params p = attn_pack(par);
    attn_grads g = attn_gpack(grad);
    attn_saved s = attn_alloc_saved(B, HW, C, G);
    float *xw = widen(x, M, C, ld, NAN), *ow = filled((size_t)M * ld, SENTINEL);
    ops_attn_forward(ow, ld, &s, xw, ld, &p, B, HW, C, G, 1e-6f);
    float *out = narrow(ow, M, C, ld);
    fx_cmp("attention forward", out, ref, nx);
    check_gaps("attention forward", ow, M, C, ld);

    float *dow = widen(dout, M, C, ld, NAN), *dxw = widen(dx_ref, M, C, ld, SENTINEL); /* dx += onto dx_ref */
    float *scratch = filled(ops_attn_scratch_floats(B, HW, C), NAN);
    ops_attn_backward(dxw, ld, &g, dow, ld, &s, xw, ld, &p, B, HW, C, G, scratch);
    float *dx = narrow(dxw, M, C, ld), *dx2 = scaled(dx_ref, nx, 2);
    fx_cmp("attention dx (+= onto dx)", dx, dx2, nx);
    check_gaps("attention dx", dxw, M, C, ld);
    double gmax = 0;
    for (int i = 0; i < 10; i++) gmax = fmax(gmax, fx_maxabs(gref[i], attn_numel(i, C)));
    for (int i = 0; i < 10; i++) {
        char what[64];
        snprintf(what, sizeof what, "d%s", attn_names[i]);
        size_t m = attn_numel(i, C);
        if (i == 5) /* to_k.bias: exactly zero in exact arithmetic */
            check_close(what, grad[i], gref[i], m, 1e-6 * gmax, 0);
        else
            fx_cmp(what, grad[i], gref[i], m);
    }
    for (int i = 0; i < 10; i++) { free(par[i]); free(grad[i]); free(gref[i]); }
    attn_free_saved(&s);
    st_close(&f);
    free(x); free(ref); free(dout); free(dx_ref); free(xw); free(ow); free(out); free(dow); free(dxw);
    free(scratch); free(dx); free(dx2);
}

static void test_attention_fixture(void) {
    attention_fixture(1);
    attention_fixture(0);
}

typedef struct attn_ctx {
    float *x, *par[10], *y, *r;
    attn_saved s;
    int B, HW, C, G;
} attn_ctx;

static double attn_loss(void *v) {
    attn_ctx *c = v;
    attn_params p = attn_pack(c->par);
    ops_attn_forward(c->y, c->C, &c->s, c->x, c->C, &p, c->B, c->HW, c->C, c->G, 1e-6f);
    return dot(c->r, c->y, (size_t)c->B * c->HW * c->C);
}

static void test_attention_fd(void) {
    const int B = 2, HW = 6, C = 4, G = 2;
    size_t n = (size_t)B * HW * C;
    for (int reference = 1; reference >= 0; reference--) {
        printf("  %s kernels\n", tier_name(reference));
        ops_set_reference(reference);
        attn_ctx c = {.x = rnd(n, 0.2f, 1), .y = filled(n, 0), .r = rnd(n, 0, 1), .B = B, .HW = HW, .C = C, .G = G};
        float *grad[10];
        for (int i = 0; i < 10; i++) {
            size_t m = attn_numel(i, C);
            c.par[i] = i == 0 ? rnd(m, 1, 0.3f) : rnd(m, 0, i >= 2 && i % 2 == 0 ? 0.8f : 0.3f);
            grad[i] = filled(m, 0);
        }
        c.s = attn_alloc_saved(B, HW, C, G);
        attn_loss(&c);
        attn_params p = attn_pack(c.par);
        attn_grads g = attn_gpack(grad);
        float *dx = filled(n, 0), *scratch = filled(ops_attn_scratch_floats(B, HW, C), 0);
        ops_attn_backward(dx, C, &g, c.r, C, &c.s, c.x, C, &p, B, HW, C, G, scratch);
        fd_check("attention dx", attn_loss, &c, c.x, dx, n);
        for (int i = 0; i < 10; i++) {
            char what[64];
            snprintf(what, sizeof what, "attention d%s", attn_names[i]);
            if (i == 5) {
                /* d to_k.bias is zero: the loss must not move along it either. */
                float *save = copy_of(c.par[5], C);
                double l0 = attn_loss(&c);
                for (int k = 0; k < C; k++) c.par[5][k] += 0.1f * urand();
                double l1 = attn_loss(&c);
                memcpy(c.par[5], save, C * sizeof(float));
                free(save);
                float zero[1] = {0}, diff[1] = {(float)(l1 - l0)}, gk[1] = {fx_maxabs(grad[5], C)};
                check_close("attention loss change along to_k.bias", diff, zero, 1, 1e-5, 0);
                check_close("attention dto_k.bias (zero)", gk, zero, 1, 1e-5, 0);
                continue;
            }
            fd_check(what, attn_loss, &c, c.par[i], grad[i], attn_numel(i, C));
        }
        for (int i = 0; i < 10; i++) { free(c.par[i]); free(grad[i]); }
        attn_free_saved(&c.s);
        free(c.x); free(c.y); free(c.r); free(dx); free(scratch);
    }
}

/* ---- upsampling, adds ---------------------------------------------------------- */

static void test_upsample_fixture(void) {
    st_file f = fx_open("tests/fixtures/op_upsample.safetensors");
    int B, C, H, W, n, c, h, w;
    float *x = fx_get_nhwc(&f, "x", &B, &C, &H, &W), *ref = fx_get_nhwc(&f, "out", &n, &c, &h, &w);
    CHECK(h == 2 * H && w == 2 * W, "fixture shapes");
    float *dout = fx_get_nhwc(&f, "dout", &n, &c, &h, &w), *dx_ref = fx_get_nhwc(&f, "dx", &n, &c, &h, &w);
    int ld = C + 2, M = B * H * W;
    size_t nx = (size_t)M * C, ny = 4 * nx;
    float *xw = widen(x, M, C, ld, NAN), *y = filled(ny, SENTINEL);
    ops_upsample2x_forward(y, xw, ld, B, H, W, C);
    check_close("upsample forward (exact)", y, ref, ny, 0, 0);
    float *dxw = widen(dx_ref, M, C, ld, SENTINEL); /* += onto dx_ref */
    ops_upsample2x_backward(dxw, ld, dout, B, H, W, C);
    float *dx = narrow(dxw, M, C, ld), *dx2 = scaled(dx_ref, nx, 2);
    fx_cmp("upsample dx (+= onto dx)", dx, dx2, nx);
    check_gaps("upsample dx", dxw, M, C, ld);
    st_close(&f);
    free(x); free(ref); free(dout); free(dx_ref); free(xw); free(y); free(dxw); free(dx); free(dx2);
}

typedef struct up_ctx {
    float *x, *y, *r;
    int B, H, W, C;
} up_ctx;

static double up_loss(void *v) {
    up_ctx *c = v;
    ops_upsample2x_forward(c->y, c->x, c->C, c->B, c->H, c->W, c->C);
    return dot(c->r, c->y, (size_t)4 * c->B * c->H * c->W * c->C);
}

/* y = y0 + v[b] on every pixel: the gradient of v is ops_sum_per_sample(dy). */
typedef struct bias_ctx {
    float *y0, *v, *y, *r;
    int B, HW, C;
} bias_ctx;

static double bias_loss(void *p) {
    bias_ctx *c = p;
    size_t n = (size_t)c->B * c->HW * c->C;
    memcpy(c->y, c->y0, n * sizeof(float));
    ops_add_bias_per_sample(c->y, c->v, c->B, c->HW, c->C);
    return dot(c->r, c->y, n);
}

static void test_upsample_bias_fd(void) {
    {
        const int B = 2, H = 2, W = 3, C = 3;
        size_t nx = (size_t)B * H * W * C;
        up_ctx c = {rnd(nx, 0, 1), filled(4 * nx, 0), rnd(4 * nx, 0, 1), B, H, W, C};
        float *dx = filled(nx, 0);
        ops_upsample2x_backward(dx, C, c.r, B, H, W, C);
        fd_check("upsample dx", up_loss, &c, c.x, dx, nx);
        free(c.x); free(c.y); free(c.r); free(dx);
    }
    {
        const int B = 3, HW = 5, C = 4;
        size_t n = (size_t)B * HW * C;
        bias_ctx c = {rnd(n, 0, 1), rnd((size_t)B * C, 0, 1), filled(n, 0), rnd(n, 0, 1), B, HW, C};
        float *dv = filled((size_t)B * C, SENTINEL); /* ops_sum_per_sample overwrites */
        ops_sum_per_sample(dv, c.r, B, HW, C);
        fd_check("sum_per_sample (bias grad)", bias_loss, &c, c.v, dv, (size_t)B * C);
        free(c.y0); free(c.v); free(c.y); free(c.r); free(dv);
    }
}

/* ops_add_rows: y[M, C] += x[M, C] with both row strides; nothing outside touched. */
static void test_add_rows(void) {
    const int M = 7, C = 5, ldy = 8, ldx = 6;
    float *x0 = rnd((size_t)M * C, 0, 1), *y0 = rnd((size_t)M * C, 0, 1);
    float *xw = widen(x0, M, C, ldx, NAN), *yw = widen(y0, M, C, ldy, SENTINEL);
    ops_add_rows(yw, ldy, xw, ldx, M, C);
    float *y = narrow(yw, M, C, ldy), *ref = malloc((size_t)M * C * sizeof(float));
    for (int i = 0; i < M * C; i++) ref[i] = y0[i] + x0[i];
    check_close("add_rows (exact)", y, ref, (size_t)M * C, 0, 0);
    check_gaps("add_rows", yw, M, C, ldy);
    free(x0); free(y0); free(xw); free(yw); free(y); free(ref);
}

/* ---- timestep embedding, MSE ---------------------------------------------------- */

static void test_timestep_embedding(void) {
    st_file f = fx_open("tests/fixtures/op_temb.safetensors");
    size_t nt;
    float *t = fx_get(&f, "t", &nt);
    const int B = (int)nt, D = 16;
    float out[64 * 16];
    CHECK(B * D <= 64 * 16, "fixture size");
    const struct { const char *name; int flip; float shift; } v[] = {{"out_flip0_shift1", 0, 1}, {"out_flip1_shift0", 1, 0}};
    for (int i = 0; i < 2; i++) {
        size_t n;
        float *ref = fx_get(&f, v[i].name, &n);
        CHECK(n == (size_t)B * D, "%s: %zu elements", v[i].name, n);
        ops_timestep_embedding(out, t, B, D, v[i].flip, v[i].shift);
        /* sin/cos of arguments up to 999 in float: a few ulp of the argument. */
        check_close(v[i].name, out, ref, n, 2e-5, 0);
        free(ref);
    }
    /* Structure: t = 0 gives sin 0 = 0, cos 0 = 1; flip swaps the halves. */
    float t0 = 0, e[16], e2[16];
    ops_timestep_embedding(e, &t0, 1, D, 0, 1);
    for (int k = 0; k < D / 2; k++) CHECK(e[k] == 0 && e[D / 2 + k] == 1, "t=0, k=%d: %g %g", k, e[k], e[D / 2 + k]);
    float t1 = 37;
    ops_timestep_embedding(e, &t1, 1, D, 0, 0);
    ops_timestep_embedding(e2, &t1, 1, D, 1, 0);
    for (int k = 0; k < D / 2; k++) CHECK(e[k] == e2[D / 2 + k] && e[D / 2 + k] == e2[k], "flip, k=%d", k);
    free(t);
    st_close(&f);
}

static void test_mse_fixture(void) {
    st_file f = fx_open("tests/fixtures/op_mse.safetensors");
    size_t n;
    float *pred = fx_get(&f, "pred", &n), *target = fx_get(&f, "target", NULL), *ref = fx_get(&f, "out", NULL);
    float *dref = fx_get(&f, "dpred", NULL), *d = filled(n, SENTINEL);
    float loss = (float)ops_mse_loss(d, pred, target, n), loss2 = (float)ops_mse_loss(NULL, pred, target, n);
    check_close("mse loss", &loss, ref, 1, 0, 1e-6);
    check_close("mse loss (dpred NULL)", &loss2, ref, 1, 0, 1e-6);
    fx_cmp("mse dpred (=)", d, dref, n);
    st_close(&f);
    free(pred); free(target); free(ref); free(dref); free(d);
}

typedef struct mse_ctx {
    float *pred, *target;
    size_t n;
} mse_ctx;

static double mse_ctx_loss(void *v) {
    mse_ctx *c = v;
    return ops_mse_loss(NULL, c->pred, c->target, c->n);
}

static void test_mse_fd(void) {
    const size_t n = 50;
    mse_ctx c = {rnd(n, 0, 1), rnd(n, 0, 1), n};
    float *d = filled(n, 0);
    ops_mse_loss(d, c.pred, c.target, n);
    fd_check("mse dpred", mse_ctx_loss, &c, c.pred, d, n);
    free(c.pred); free(c.target); free(d);
}

/* ---- dropout --------------------------------------------------------------------- */

typedef struct drop_ctx {
    float *x, *y, *r;
    int B;
    size_t n;
    float p;
    uint64_t seed, stream;
} drop_ctx;

static double drop_loss(void *v) {
    drop_ctx *c = v;
    memcpy(c->y, c->x, (size_t)c->B * c->n * sizeof(float));
    ops_dropout_forward(c->y, c->B, c->n, c->p, c->seed, c->stream);
    return dot(c->r, c->y, (size_t)c->B * c->n);
}

/* The mask of dropout(ones) as 0/1, and checks every kept value is exactly 1/(1-p). */
static unsigned char *mask_of(int B, size_t n, float p, uint64_t seed, uint64_t stream, size_t *kept) {
    size_t N = (size_t)B * n;
    float *y = filled(N, 1);
    ops_dropout_forward(y, B, n, p, seed, stream);
    unsigned char *m = malloc(N);
    float scale = 1.0f / (1.0f - p);
    size_t bad = 0;
    *kept = 0;
    for (size_t i = 0; i < N; i++) {
        m[i] = y[i] != 0;
        *kept += m[i];
        bad += y[i] != 0 && y[i] != scale;
    }
    CHECK(bad == 0, "%zu kept values differ from 1/(1-p) = %g", bad, scale);
    free(y);
    return m;
}

static void test_dropout(void) {
    const int B = 4;
    const size_t n = 5003; /* not a multiple of the 256-draw chunks or of 4 */
    const float p = 0.3f;
    const uint64_t seed = 1234, step = 77, layer = 5;
    uint64_t stream = rng_stream(step, layer << 16);
    size_t N = (size_t)B * n, kept, k2;

    unsigned char *m = mask_of(B, n, p, seed, stream, &kept);
    double frac = (double)kept / N, sd = sqrt(p * (1 - p) / N);
    printf("  kept fraction %.4f (expected %.2f, sd %.4f)\n", frac, 1 - p, sd);
    CHECK(fabs(frac - (1 - p)) < 5 * sd, "kept fraction %.4f, expected %.2f", frac, 1 - p);
    for (int b = 0; b < B; b++) {
        size_t kb = 0;
        for (size_t i = 0; i < n; i++) kb += m[(size_t)b * n + i];
        double fb = (double)kb / n, sdb = sqrt(p * (1 - p) / n);
        CHECK(fabs(fb - (1 - p)) < 5 * sdb, "sample %d: kept fraction %.4f", b, fb);
    }

    /* Same (seed, step, layer): the same mask, with 1 thread or all of them. */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    unsigned char *m1 = mask_of(B, n, p, seed, stream, &k2);
    omp_set_num_threads(threads);
    unsigned char *m2 = mask_of(B, n, p, seed, stream, &k2);
    CHECK(!memcmp(m, m1, N) && !memcmp(m, m2, N), "the same (seed, step, layer) gave another mask");
    /* Element i of sample b does not depend on how many elements there are. */
    unsigned char *ms = mask_of(B, 1000, p, seed, stream, &k2);
    int prefix = 1;
    for (int b = 0; b < B; b++) prefix &= !memcmp(ms + (size_t)b * 1000, m + (size_t)b * n, 1000);
    CHECK(prefix, "mask element i depends on n_per_sample");
    free(m1); free(m2); free(ms);

    /* Another sample, step, layer or seed: another mask (about p(1-p)*2 of the elements differ). */
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += m[i] != m[n + i];
    CHECK(diff > n / 4, "samples 0 and 1 share their mask (%zu of %zu differ)", diff, n);
    const struct { const char *what; uint64_t seed, stream; } other[] = {
        {"step", seed, rng_stream(step + 1, layer << 16)},
        {"layer", seed, rng_stream(step, (layer + 1) << 16)},
        {"seed", seed + 1, stream}};
    for (int i = 0; i < 3; i++) {
        unsigned char *mo = mask_of(B, n, p, other[i].seed, other[i].stream, &k2);
        diff = 0;
        for (size_t j = 0; j < N; j++) diff += m[j] != mo[j];
        CHECK(diff > N / 4, "another %s gave nearly the same mask (%zu of %zu differ)", other[i].what, diff, N);
        free(mo);
    }

    /* Backward = dy * mask / (1-p) with the forward's mask, also in place. */
    float *dy = rnd(N, 0, 1), *dx = filled(N, SENTINEL), *ref = malloc(N * sizeof(float));
    for (size_t i = 0; i < N; i++) ref[i] = m[i] ? dy[i] / (1 - p) : 0;
    ops_dropout_backward(dx, dy, B, n, p, seed, stream);
    check_close("dropout backward = dy * mask / (1-p)", dx, ref, N, 0, 1e-6);
    ops_dropout_backward(dy, dy, B, n, p, seed, stream);
    check_close("dropout backward in place", dy, ref, N, 0, 1e-6);

    /* p = 0: identity forward and backward. */
    float *x = rnd(N, 0, 1), *x0 = copy_of(x, N);
    ops_dropout_forward(x, B, n, 0.0f, seed, stream);
    check_close("dropout p=0 forward (identity)", x, x0, N, 0, 0);
    ops_dropout_backward(dx, x0, B, n, 0.0f, seed, stream);
    check_close("dropout p=0 backward (identity)", dx, x0, N, 0, 0);

    /* Finite differences on a small case. */
    drop_ctx c = {rnd(2 * 40, 0, 1), filled(2 * 40, 0), rnd(2 * 40, 0, 1), 2, 40, 0.4f, 99, rng_stream(3, 7 << 16)};
    float *g = filled(2 * 40, 0);
    ops_dropout_backward(g, c.r, c.B, c.n, c.p, c.seed, c.stream);
    fd_check("dropout dx", drop_loss, &c, c.x, g, 2 * 40);
    free(c.x); free(c.y); free(c.r); free(g);
    free(m); free(dy); free(dx); free(ref); free(x); free(x0);
}

/* ---- the checker itself ------------------------------------------------------------ */

/* The finite-difference check must reject gradients that are slightly wrong: one
 * element off by 1% of the largest, the whole gradient 0.5% too large, and the
 * SiLU factor left out of GroupNorm+SiLU's backward. */
static void test_fd_sensitivity(void) {
    ops_set_reference(1);
    const int B = 2, HW = 6, C = 6, G = 3;
    size_t n = (size_t)B * HW * C;
    gn_ctx c = {rnd(n, 0.3f, 1.5f), rnd(C, 1, 0.5f), rnd(C, 0, 0.5f), filled(n, 0), rnd(n, 0, 1),
                filled((size_t)B * G, 0), filled((size_t)B * G, 0), B, HW, C, G, 1};
    gn_loss(&c);
    float *dx = filled(n, 0), *dg = filled(C, 0), *db = filled(C, 0);
    ops_groupnorm_backward(dx, C, dg, db, c.r, C, c.x, C, c.mean, c.rstd, c.gamma, c.beta, B, HW, C, G, 1, 0);
    fd_result r;
    fd_measure(&r, gn_loss, &c, c.x, dx, n);
    CHECK(fd_passes(&r), "the correct gradient is rejected");

    float mx = fx_maxabs(dx, n);
    float *bad = copy_of(dx, n);
    bad[n / 3] += 0.01f * mx;
    fd_measure(&r, gn_loss, &c, c.x, bad, n);
    CHECK(!fd_passes(&r), "one element off by 1%% of max|g| passes");

    for (size_t i = 0; i < n; i++) bad[i] = 1.005f * dx[i];
    fd_measure(&r, gn_loss, &c, c.x, bad, n);
    CHECK(!fd_passes(&r), "a gradient 0.5%% too large passes");

    /* GroupNorm without SiLU backpropagated through GroupNorm+SiLU. */
    memset(dg, 0, C * sizeof(float));
    memset(db, 0, C * sizeof(float));
    ops_groupnorm_backward(bad, C, dg, db, c.r, C, c.x, C, c.mean, c.rstd, c.gamma, c.beta, B, HW, C, G, 0, 0);
    fd_measure(&r, gn_loss, &c, c.x, bad, n);
    CHECK(!fd_passes(&r), "the gradient without the SiLU factor passes");
    fd_measure(&r, gn_loss, &c, c.gamma, dg, C);
    CHECK(!fd_passes(&r), "dgamma without the SiLU factor passes");

    /* A transposed conv weight gradient (wrong kernel flip) must fail too. */
    const int Cin = 3, Co = 4, H = 5, W = 6;
    size_t nx = (size_t)B * H * W * Cin, ny = (size_t)B * H * W * Co, nw = (size_t)Co * Cin * 9;
    conv_ctx cc = {NULL, rnd(nx, 0, 1), rnd(nw, 0, 0.3f), rnd(Co, 0, 0.3f), filled(ny, 0), rnd(ny, 0, 1), ny};
    err_t err;
    CHECK(ops_conv_plan_create(&cc.p, B, H, W, Cin, Co, 1, CONV_PAD_SAME, Cin, Co, 1, &err) == 0, "%s", err.msg);
    float *dw = filled(nw, 0), *flip = filled(nw, 0), *cdb = filled(Co, 0);
    ops_conv_backward(cc.p, NULL, dw, cdb, cc.r, cc.x, cc.w);
    for (size_t i = 0; i < nw; i += 9)
        for (int k = 0; k < 9; k++) flip[i + k] = dw[i + 8 - k];
    fd_measure(&r, conv_loss, &cc, cc.w, dw, nw);
    CHECK(fd_passes(&r), "the correct conv weight gradient is rejected");
    fd_measure(&r, conv_loss, &cc, cc.w, flip, nw);
    CHECK(!fd_passes(&r), "a flipped conv weight gradient passes");
    ops_conv_plan_free(cc.p);
    free(cc.x); free(cc.w); free(cc.b); free(cc.y); free(cc.r); free(dw); free(flip); free(cdb);
    free(c.x); free(c.gamma); free(c.beta); free(c.y); free(c.r); free(c.mean); free(c.rstd);
    free(dx); free(dg); free(db); free(bad);
    ops_set_reference(0);
}

/* The vectorisable exp against libm's double exp over its whole range, every
 * 97th float; sigmoid at the extremes; NaN propagates. */
static void test_vexpf(void) {
    double worst = 0, worst_x = 0;
    size_t n = 0;
    for (float x = -87.0f; x <= 88.0f; x = nextafterf(x, INFINITY)) {
        if (++n % 97) continue;
        double want = exp((double)x), err = fabs((double)vexpf(x) - want) / want;
        if (err > worst) worst = err, worst_x = x;
    }
    printf("  vexpf: worst relative error %.3g at x = %g (%zu points)\n", worst, worst_x, n / 97);
    CHECK(worst < 3e-7, "vexpf relative error %g at %g", worst, worst_x);
    CHECK(vexpf(0.0f) == 1.0f, "vexpf(0) = %g", vexpf(0.0f));
    CHECK(vexpf(-1000.0f) >= 0.0f && vexpf(-1000.0f) < 1e-37f && isfinite(vexpf(1000.0f)), "clamping");
    CHECK(vsigmoidf(-INFINITY) >= 0.0f && vsigmoidf(-INFINITY) < 1e-37f && vsigmoidf(INFINITY) == 1.0f && vsigmoidf(0.0f) == 0.5f, "sigmoid ends");
    CHECK(isnan(vexpf(NAN)) && isnan(vsigmoidf(NAN)), "NaN must propagate");
}

/* Philox-4x32-10 against the known-answer vectors of Random123 (kat_vectors),
 * and the uniform draws against the stream's words from any offset. */
static void test_philox(void) {
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int k = 0; k < 3; k++) {
        uint32_t out[4];
        rng_philox(out, kat[k], kat[k] + 4);
        CHECK(!memcmp(out, kat[k] + 6, sizeof out), "vector %d: %08x %08x %08x %08x", k, out[0], out[1], out[2], out[3]);
    }
    /* Element i of a stream is word i % 4 of block i / 4, however it is asked for. */
    enum { N = 1000 };
    uint32_t w[N];
    float all[N], part[N];
    rng_u32(w, N, 77, RNG_DROPOUT, 5);
    rng_uniform_at(all, N, 77, RNG_DROPOUT, 5, 0);
    size_t bad = 0;
    for (int i = 0; i < N; i++) bad += all[i] != (float)(w[i] >> 8) * (1.0f / 16777216.0f);
    for (size_t at = 0; at < N; at += 4 * (at % 7 + 1)) {
        size_t m = N - at < 300 ? N - at : 300;
        rng_uniform_at(part, m, 77, RNG_DROPOUT, 5, at);
        bad += memcmp(part, all + at, m * sizeof(float)) != 0;
    }
    CHECK(bad == 0, "%zu uniform draws differ from the stream's words", bad);
}

/* GroupNorm statistics stay exact when the mean dwarfs the spread (data
 * around 1000 with spread 0.01, channel means differing by 1): against a
 * two-pass double-precision computation. */
static void test_groupnorm_offset(void) {
    const int B = 2, HW = 300, C = 8, G = 2, cg = C / G;
    size_t n = (size_t)B * HW * C;
    float *x = rnd(n, 0, 0.01f), *y = filled(n, 0), mean[B * G], rstd[B * G];
    float gamma[C], beta[C];
    for (size_t i = 0; i < n; i++) x[i] += 1000.0f + (float)(i % C);
    for (int c = 0; c < C; c++) gamma[c] = 1.0f, beta[c] = 0.0f;
    ops_groupnorm_forward(y, C, mean, rstd, x, C, gamma, beta, B, HW, C, G, 1e-6f, 0);
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            double m = 0, v = 0;
            for (int p = 0; p < HW; p++)
                for (int c = g * cg; c < (g + 1) * cg; c++) m += x[((size_t)b * HW + p) * C + c];
            m /= (double)HW * cg;
            for (int p = 0; p < HW; p++)
                for (int c = g * cg; c < (g + 1) * cg; c++) {
                    double d = x[((size_t)b * HW + p) * C + c] - m;
                    v += d * d;
                }
            v /= (double)HW * cg;
            double want = 1.0 / sqrt(v + 1e-6);
            worst = fmax(worst, fabs(rstd[b * G + g] - want) / want);
            worst = fmax(worst, fabs(mean[b * G + g] - m) / m);
        }
    printf("  large-mean GroupNorm: worst relative error of mean/rstd %.3g\n", worst);
    CHECK(worst < 1e-5, "GroupNorm statistics off by %g", worst);
    free(x); free(y);
}

TEST_MAIN(test_philox, test_groupnorm_offset, test_vexpf, test_gemm_tiers, test_conv_fixtures, test_conv_algorithms, test_conv_fd, test_linear_fixtures, test_linear_fd,
          test_groupnorm_fixtures, test_groupnorm_fd, test_silu_fixture, test_silu_fd, test_attention_fixture,
          test_attention_fd, test_upsample_fixture, test_upsample_bias_fd, test_add_rows, test_timestep_embedding,
          test_mse_fixture, test_mse_fd, test_dropout, test_fd_sensitivity)
