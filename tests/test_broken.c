/* test_broken.c -- the broken-image measure (src/eval/broken.h): the looks of
 * small images worked out by hand; the rule made from 10,000 Fashion-MNIST
 * test images flags few held-out real images (the training split's first
 * 10,000) and flags a blank, a white blob and noise, each for its reason;
 * quality_compare counts them, and a statistics file keeps the looks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "data/dataset.h"
#include "eval/broken.h"
#include "eval/quality.h"

/* A 2x3 gray image: ink (> -0.5) 3 of 6, white (> 0.9) 1 of 6 (1.5 is
 * clamped to 1). Rough on made-up images: a ramp -1 0 1 (its pairs (-1, 0),
 * (0, 1) correlate fully: 0), a 2x2 checkerboard (pairs (-1, 1), (1, -1)
 * twice: correlation -1, rough 2), and a flat image (0). */
static void test_looks_by_hand(void) {
    const float x[6] = {-1, 0.2f, 1.5f, -1, 0, -0.6f};
    image_set s = {1, 2, 3, 1, NULL, x};
    float l[BROKEN_LOOKS];
    broken_looks(l, &s);
    CHECK(fabsf(l[BROKEN_DARK] - 0.5f) < 1e-6f, "ink %g, want 0.5", l[BROKEN_DARK]);
    CHECK(fabsf(l[BROKEN_WHITE] - 1 / 6.0f) < 1e-6f, "white %g, want 1/6", l[BROKEN_WHITE]);
    const float ramp[3] = {-1, 0, 1}, checker[4] = {-1, 1, 1, -1};
    image_set sr = {1, 1, 3, 1, NULL, ramp}, sc = {1, 2, 2, 1, NULL, checker};
    broken_looks(l, &sr);
    CHECK(fabsf(l[BROKEN_NOISY]) < 1e-6f, "ramp: rough %g, want 0", l[BROKEN_NOISY]);
    broken_looks(l, &sc);
    CHECK(fabsf(l[BROKEN_NOISY] - 2) < 1e-6f, "checkerboard: rough %g, want 2", l[BROKEN_NOISY]);
    /* Colour: the mean of the channels (here a red checkerboard on the bytes:
     * channel 0 alternates 0 / 255, the others stay 0, so the gray values are
     * -1 and -1/3: half the pixels have ink). */
    uint8_t rgb[4 * 3] = {0};
    rgb[3] = rgb[6] = 255;
    image_set c = {1, 2, 2, 3, rgb, NULL};
    broken_looks(l, &c);
    CHECK(l[BROKEN_DARK] == 0.5f && fabsf(l[BROKEN_NOISY] - 2) < 1e-6f, "colour checkerboard: ink %g rough %g",
          l[BROKEN_DARK], l[BROKEN_NOISY]);
    /* An all-dark image: no ink, rough 0 (the ink share floored at one pixel). */
    const float dark[6] = {-1, -1, -1, -1, -1, -1};
    image_set sd = {1, 2, 3, 1, NULL, dark};
    broken_looks(l, &sd);
    CHECK(l[BROKEN_DARK] == 0 && l[BROKEN_WHITE] == 0 && l[BROKEN_NOISY] == 0, "dark: %g %g %g", l[0], l[1], l[2]);
}

/* Three made-up failures of 28x28: a nearly blank image (a faint speck), a
 * white blob over most of the frame, and uniform noise. */
static void make_failures(float *x) {
    const int D = 28 * 28;
    for (int i = 0; i < D; i++) x[i] = -1;
    x[14 * 28 + 14] = -0.2f, x[14 * 28 + 15] = -0.4f;
    for (int y = 0; y < 28; y++)
        for (int c = 0; c < 28; c++) x[D + y * 28 + c] = y >= 2 && y < 26 && c >= 3 && c < 25 ? 1.2f : -1;
    uint32_t s = 12345;
    for (int i = 0; i < D; i++) {
        s = s * 1664525u + 1013904223u;
        x[2 * D + i] = (float)(s >> 8) / 8388608.0f - 1;
    }
}

static void test_rule_on_fashion_mnist(void) {
    dataset test, train;
    err_t err;
    if (dataset_load(&test, NULL, DATASET_TEST, 10000, &err) || dataset_load(&train, NULL, DATASET_TRAIN, 10000, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    float *lt = malloc(sizeof(float) * 10000 * BROKEN_LOOKS), *lh = malloc(sizeof(float) * 10000 * BROKEN_LOOKS);
    image_set st = {10000, 28, 28, 1, test.pixels, NULL}, sh = {10000, 28, 28, 1, train.pixels, NULL};
    broken_looks(lt, &st);
    broken_looks(lh, &sh);
    broken_rule r;
    CHECK(broken_rule_from(&r, lt, 10000, &err) == 0, "%s", err.msg);
    printf("  rule from 10000 test images: ink < %.4f, white > %.4f, rough > %.4f\n", r.ink_min, r.white_max,
           r.rough_max);
    long long by[BROKEN_LOOKS], self = broken_count(&r, lt, 10000, by);
    long long held = broken_count(&r, lh, 10000, by);
    printf("  flagged: %lld of the 10000 reference images, %lld of 10000 held-out training images "
           "(%lld dark, %lld white, %lld noisy)\n", self, held, by[0], by[1], by[2]);
    /* By construction at most 0.1% per look beyond its tail on the reference itself. */
    CHECK(self <= 30, "%lld reference images flagged (at most 3 x 10 by construction)", self);
    CHECK(held <= 100, "%lld of 10000 held-out real images flagged (want under 1%%)", held);

    float x[3 * 28 * 28], lf[3 * BROKEN_LOOKS];
    make_failures(x);
    image_set sf = {3, 28, 28, 1, NULL, x};
    broken_looks(lf, &sf);
    CHECK(broken_why(&r, lf) & 1 << BROKEN_DARK, "the blank image is not flagged dark (ink %g)", lf[BROKEN_DARK]);
    CHECK(broken_why(&r, lf + BROKEN_LOOKS) & 1 << BROKEN_WHITE, "the blob is not flagged white (white %g)",
          lf[BROKEN_LOOKS + BROKEN_WHITE]);
    CHECK(broken_why(&r, lf + 2 * BROKEN_LOOKS) & 1 << BROKEN_NOISY, "the noise is not flagged noisy (rough %g)",
          lf[2 * BROKEN_LOOKS + BROKEN_NOISY]);
    /* Control: the first real training image is not flagged. */
    CHECK(broken_why(&r, lh) == 0, "a real image is flagged (%d)", broken_why(&r, lh));

    /* quality_measure: 100 images, the three failures then 97 held-out ones,
     * against 2000 test images: the broken count is the rule's on the
     * reference's looks, which quality_ref_from_images kept. */
    const int n = 100;
    const size_t D = 28 * 28;
    float *xs = malloc(sizeof(float) * n * D);
    memcpy(xs, x, sizeof x);
    for (size_t i = 3 * D; i < n * D; i++) xs[i] = train.pixels[i] / 127.5f - 1;
    featnet *net = NULL;
    quality_ref ref = {0}, mine = {0};
    image_set real = {2000, 28, 28, 1, test.pixels, NULL}, samples = {n, 28, 28, 1, NULL, xs};
    CHECK(featnet_open(&net, FEATNET_FMNIST, NULL, 100, &err) == 0, "%s", err.msg);
    CHECK(net && quality_ref_from_images(&ref, net, &real, 1, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(ref.n_looks == 2000 && ref.looks, "the reference kept %lld looks", ref.n_looks);
    quality q = {0};
    CHECK(net && quality_measure(&q, net, &samples, &ref, NULL, NULL, &err) == 0, "%s", err.msg);
    broken_rule r2;
    CHECK(broken_rule_from(&r2, ref.looks, ref.n_looks, &err) == 0, "%s", err.msg);
    long long want = 0;
    float ls[BROKEN_LOOKS];
    for (int i = 0; i < n; i++) {
        image_set one = {1, 28, 28, 1, NULL, xs + (size_t)i * D};
        broken_looks(ls, &one);
        want += broken_why(&r2, ls) != 0;
    }
    CHECK(q.has_broken && q.broken == want && want >= 3 && q.broken_by[BROKEN_DARK] >= 1 &&
          q.broken_by[BROKEN_WHITE] >= 1 && q.broken_by[BROKEN_NOISY] >= 1,
          "has %d, broken %lld (want %lld): %lld %lld %lld", q.has_broken, q.broken, want, q.broken_by[0],
          q.broken_by[1], q.broken_by[2]);
    /* Control: a reference without looks (pytorch-fid's statistics) gives no count. */
    float *kept = ref.looks;
    ref.looks = NULL;
    CHECK(net && quality_measure(&q, net, &samples, &ref, NULL, NULL, &err) == 0 && !q.has_broken,
          "a reference without looks: has_broken %d", q.has_broken);
    ref.looks = kept;

    /* A statistics file keeps the looks; one without them loads without. */
    char dir[] = "/tmp/ddpm_test_broken_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/s.npz", dir);
    quality_ref back;
    CHECK(quality_ref_save(&ref, NULL, 0, path, &err) == 0 && quality_ref_load(&back, path, &err) == 0, "%s",
          err.msg);
    CHECK(back.n_looks == ref.n_looks && back.looks &&
          !memcmp(back.looks, ref.looks, sizeof(float) * (size_t)ref.n_looks * BROKEN_LOOKS),
          "looks after a save and load: %lld rows", back.n_looks);
    quality_ref_free(&back);
    free(ref.looks);
    ref.looks = NULL, ref.n_looks = 0;
    CHECK(quality_ref_save(&ref, NULL, 0, path, &err) == 0 && quality_ref_load(&back, path, &err) == 0, "%s", err.msg);
    CHECK(back.looks == NULL && back.n_looks == 0, "a file without looks loaded %lld rows", back.n_looks);
    quality_ref_free(&back);
    unlink(path);
    rmdir(dir);
    quality_ref_free(&ref);
    quality_ref_free(&mine);
    featnet_free(net);
    free(xs), free(lt), free(lh);
    dataset_free(&test);
    dataset_free(&train);
}

TEST_MAIN(test_looks_by_hand, test_rule_on_fashion_mnist)
