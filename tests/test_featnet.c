/* test_featnet.c -- the feature networks' operators and the built-in F-MNIST
 * network: conv2d (oneDNN) against plain loops for every kernel shape
 * Inception uses; pooling and bilinear resizing against values computed by
 * hand and by PyTorch; the F-MNIST network against its PyTorch fixture
 * (tools/train_fmnist_features.py); and FID (F-MNIST features) rising
 * monotonically with Gaussian noise on real test images, as Heusel et al.
 * validated Inception FID; running out of memory for the convolutions'
 * temporaries is an error. (Inception itself is checked against pytorch-fid
 * in tests/py/test_inception.py.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "eval/featnet.h"
#include "eval/quality.h"
#include "fixture.h"
#include "ops/ops.h"

static float *randn(size_t n, uint64_t seed, float scale) {
    float *x = malloc(sizeof(float) * n);
    rng_normal(x, n, seed, 1, 0);
    for (size_t i = 0; i < n; i++) x[i] *= scale;
    return x;
}

/* One shape: fast path vs plain loops, output written into a channel slice. */
static void conv_case(const char *what, conv2d_shape s, int relu) {
    err_t err;
    int Ho, Wo;
    ops_conv2d_out_size(&s, &Ho, &Wo);
    const int ldy = s.Cout + 3; /* a slice of a wider buffer */
    size_t nx = (size_t)s.B * s.H * s.W * s.Cin, ny = (size_t)s.B * Ho * Wo * ldy;
    float *x = randn(nx, 1, 1.0f), *w = randn((size_t)s.Cout * s.Cin * s.kh * s.kw, 2, 0.3f);
    float *b = randn((size_t)s.Cout, 3, 0.5f);
    float *y = calloc(ny, sizeof(float)), *r = calloc(ny, sizeof(float));
    conv2d_plan *p = NULL;
    CHECK(ops_conv2d_plan_create(&p, &s, s.Cin, ldy, relu, w, b, &err) == 0, "%s", err.msg);
    if (p) {
        ops_conv2d_forward(p, y, x);
        ops_set_reference(1);
        ops_conv2d_forward(p, r, x);
        ops_set_reference(0);
        check_close(what, y, r, ny, 1e-5, 1e-4);
        int untouched = 1, negative = 0;
        for (size_t i = 0; i < ny; i++) {
            if (i % ldy >= (size_t)s.Cout && y[i] != 0) untouched = 0;
            if (y[i] < 0) negative = 1;
        }
        CHECK(untouched, "%s: wrote outside its channel slice", what);
        CHECK(!relu || !negative, "%s: ReLU left negative values", what);
    }
    ops_conv2d_plan_free(p);
    free(x), free(w), free(b), free(y), free(r);
}

static void test_conv2d(void) {
    /*                                  B  H   W  Cin Cout kh kw sh sw ph pw */
    conv_case("1x1", (conv2d_shape){2, 7, 9, 16, 24, 1, 1, 1, 1, 0, 0}, 1);
    conv_case("3x3 stride 2, no padding", (conv2d_shape){2, 15, 15, 3, 32, 3, 3, 2, 2, 0, 0}, 1);
    conv_case("3x3 padding 1", (conv2d_shape){2, 9, 9, 8, 16, 3, 3, 1, 1, 1, 1}, 0);
    conv_case("5x5 padding 2", (conv2d_shape){1, 11, 11, 12, 8, 5, 5, 1, 1, 2, 2}, 1);
    conv_case("1x7 padding (0,3)", (conv2d_shape){2, 17, 17, 16, 16, 1, 7, 1, 1, 0, 3}, 1);
    conv_case("7x1 padding (3,0)", (conv2d_shape){2, 17, 17, 16, 16, 7, 1, 1, 1, 3, 0}, 1);
    conv_case("1x3 / 3x1", (conv2d_shape){1, 8, 8, 32, 16, 3, 1, 1, 1, 1, 0}, 1);
    conv_case("1 input channel", (conv2d_shape){3, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1}, 1);
    /* Large enough for Winograd on CPUs without AVX-512 (through conv.c's plan). */
    conv_case("3x3 padding 1, 16x16", (conv2d_shape){2, 16, 16, 8, 16, 3, 3, 1, 1, 1, 1}, 1);
    conv_case("3x3 no padding, 17x15 (cropped)", (conv2d_shape){2, 17, 15, 16, 8, 3, 3, 1, 1, 0, 0}, 1);
}

static void test_pool(void) {
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[9];
    ops_pool2d_forward(y, 1, x, 1, 1, 3, 3, 1, 3, 1, 1, 0);
    float avg[9] = {3, 3.5f, 4, 4.5f, 5, 5.5f, 6, 6.5f, 7}; /* count_include_pad=False */
    check_close("avg pool 3x3/1 pad 1 (count_include_pad=False)", y, avg, 9, 1e-6, 0);
    ops_pool2d_forward(y, 1, x, 1, 1, 3, 3, 1, 3, 1, 1, 1);
    float mx[9] = {5, 6, 6, 8, 9, 9, 8, 9, 9};
    check_close("max pool 3x3/1 pad 1", y, mx, 9, 0, 0);
    ops_pool2d_forward(y, 1, x, 1, 1, 3, 3, 1, 3, 2, 0, 1);
    CHECK(y[0] == 9, "max pool 3x3/2: %g", y[0]);
    float g[2] = {0};
    float two[2 * 3] = {1, 10, 2, 20, 3, 30}; /* 3 pixels x 2 channels */
    ops_global_avgpool(g, two, 2, 1, 3, 2);
    CHECK(g[0] == 2 && g[1] == 20, "global average pool: %g %g", g[0], g[1]);
}

static void test_resize(void) {
    /* torch.nn.functional.interpolate(torch.tensor([[1., 2.], [3., 4.]])[None, None], size=4,
     * mode='bilinear', align_corners=False) */
    float x[4] = {1, 2, 3, 4}, y[16];
    float ref[16] = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                     2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
    ops_resize_bilinear(y, x, 1, 2, 2, 1, 4, 4);
    check_close("bilinear 2x2 -> 4x4 (PyTorch's values)", y, ref, 16, 1e-6, 0);
    /* Downsampling 4 -> 3: source positions 1/6, 3/2, 17/6 - 1/2 ... as PyTorch: s = (o + 0.5) * 4/3 - 0.5. */
    float r[4] = {0, 1, 2, 3}, d[3];
    ops_resize_bilinear(d, r, 1, 1, 4, 1, 1, 3);
    float dref[3] = {1.0f / 6, 1.5f, 17.0f / 6};
    check_close("bilinear 4 -> 3 along a row", d, dref, 3, 1e-6, 0);
}

static void test_fmnist_parity(void) {
    st_file f;
    err_t err;
    if (st_open(&f, "tests/fixtures/fmnist_features_io.safetensors", &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const st_tensor *t = fx_tensor(&f, "x");
    int n = (int)t->shape[0];
    size_t nf, nl;
    float *x = fx_get(&f, "x", NULL), *feats = fx_get(&f, "features", &nf), *logits = fx_get(&f, "logits", &nl);
    featnet *net = NULL;
    CHECK(featnet_open(&net, FEATNET_FMNIST, NULL, 4, &err) == 0, "%s", err.msg); /* batch 4: a partial last batch */
    if (net) {
        CHECK(featnet_dim(net) == 256 && featnet_classes(net) == 10, "dims %d %d", featnet_dim(net),
              featnet_classes(net));
        float *gf = malloc(sizeof(float) * nf), *gl = malloc(sizeof(float) * nl);
        image_set s = {n, 28, 28, 1, NULL, x}; /* one channel: NCHW is NHWC */
        CHECK(featnet_extract(net, &s, gf, gl, NULL, NULL, &err) == 0, "%s", err.msg);
        check_close("F-MNIST features vs PyTorch (float64)", gf, feats, nf, 1e-5, 1e-4);
        check_close("F-MNIST logits vs PyTorch (float64)", gl, logits, nl, 1e-5, 1e-4);
        free(gf), free(gl);
    }
    featnet_free(net);
    free(x), free(feats), free(logits);
    st_close(&f);
}

/* FID (F-MNIST features) of 500 test images with Gaussian noise of rising
 * strength, against the statistics of 1000 other test images. */
static void test_fid_rises_with_noise(void) {
    dataset d;
    err_t err;
    if (dataset_load(&d, NULL, DATASET_TEST, 1500, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    featnet *net = NULL;
    CHECK(featnet_open(&net, FEATNET_FMNIST, NULL, 100, &err) == 0, "%s", err.msg);
    quality_ref ref = {0};
    image_set real = {1000, 28, 28, 1, d.pixels, NULL};
    CHECK(net && quality_ref_from_images(&ref, net, &real, 1, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    const int n = 500;
    const size_t D = 28 * 28;
    float *x = malloc(sizeof(float) * n * D), *z = randn(n * D, 7, 1.0f);
    const float sigma[] = {0, 0.05f, 0.1f, 0.2f, 0.4f};
    double prev = -1;
    for (int k = 0; k < 5 && net; k++) {
        for (size_t i = 0; i < n * D; i++) x[i] = d.pixels[1000 * D + i] / 127.5f - 1 + sigma[k] * z[i];
        image_set s = {n, 28, 28, 1, NULL, x};
        quality q;
        CHECK(quality_measure(&q, net, &s, &ref, NULL, NULL, &err) == 0, "%s", err.msg);
        printf("  Gaussian noise sigma %.2f: FID (F-MNIST features) %.3f, precision %.3f, recall %.3f\n", sigma[k],
               q.fid, q.precision, q.recall);
        CHECK(q.fid > prev, "FID did not rise: sigma %.2f gives %.4f after %.4f", sigma[k], q.fid, prev);
        prev = q.fid;
    }
    CHECK(prev > 10, "sigma 0.4 noise should be far from the data: FID %.3f", prev);
    quality_ref_free(&ref);
    featnet_free(net);
    free(x), free(z);
    dataset_free(&d);
}

static void test_bad_images(void) {
    featnet *net = NULL;
    err_t err;
    CHECK(featnet_open(&net, FEATNET_FMNIST, NULL, 2, &err) == 0, "%s", err.msg);
    if (!net) return;
    float x[2 * 32 * 32] = {0};
    image_set wrong = {2, 32, 32, 1, NULL, x};
    CHECK(featnet_check(net, &wrong, &err) == -1 && strstr(err.msg, "28x28"), "%s", err.msg);
    image_set ok = {2, 28, 28, 1, NULL, x};
    x[100] = NAN;
    CHECK(featnet_check(net, &ok, &err) == -1 && strstr(err.msg, "not finite"), "%s", err.msg);
    featnet_free(net);
    CHECK(featnet_open(&net, FEATNET_INCEPTION, "/nonexistent/inception.safetensors", 2, &err) == -1 &&
              strstr(err.msg, "convert_inception.py"),
          "%s", err.msg);
}

/* Running out of memory for the convolutions' temporaries in the worker's buffers (the
 * test knob; Winograd forced, whose convolutions use them) is an error with
 * err.oom, not an exit; with the limit lifted the same features again. */
static void test_extract_oom(void) {
    err_t err;
    ops_conv_set_algorithm(CONV_ALG_WINOGRAD);
    featnet *net = NULL;
    CHECK(featnet_open(&net, FEATNET_FMNIST, NULL, 4, &err) == 0, "%s", err.msg);
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
    if (!net) return;
    enum { N = 6 };
    float *x = randn((size_t)N * 28 * 28, 3, 0.5f), f[2][N * 256];
    image_set s = {N, 28, 28, 1, NULL, x};
    CHECK(featnet_extract(net, &s, f[0], NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    exec_set_buffer_limit(1);
    int rc = featnet_extract(net, &s, f[1], NULL, NULL, NULL, &err);
    exec_set_buffer_limit(0);
    CHECK(rc == -1 && err.oom && strstr(err.msg, "worker's temporaries"), "rc %d oom %d: %s", rc, err.oom, err.msg);
    printf("  under the limit: %s\n", err.msg);
    CHECK(featnet_extract(net, &s, f[1], NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(!memcmp(f[0], f[1], sizeof f[0]), "features after running out of memory differ");
    featnet_free(net);
    free(x);
}

TEST_MAIN(test_conv2d, test_pool, test_resize, test_fmnist_parity, test_fid_rises_with_noise, test_bad_images,
          test_extract_oom)
