/* test_bound.c -- the variational bound (bits/dim): every term is finite and
 * non-negative for an untrained model, the terms of an image do not depend on
 * the batch it is evaluated in, and a trained model scores lower than the
 * untrained one it started from. (The individual terms -- diffusion_normal_kl, the
 * discretized decoder, the prior -- are checked against PyTorch in test_diffusion.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "diffusion/bound.h"
#include "model/denoiser.h"
#include "train/trainer.h"

enum { T = 40, N = 6 };

static unet_config tiny_config(void) {
    unet_config c;
    err_t err;
    CHECK(unet_config_preset(&c, "fmnist-small", &err) == 0, "preset");
    c.sample_size = 8, c.levels = 2, c.block_out[0] = 8, c.block_out[1] = 16;
    c.down_attn[0] = 0, c.down_attn[1] = 1, c.up_attn[0] = 1, c.up_attn[1] = 0;
    c.layers_per_block = 1, c.norm_groups = 4, c.dropout = 0;
    return c;
}

static dataset blobs(int n) {
    dataset d = {.n = n, .h = 8, .w = 8, .c = 1, .pixels = malloc((size_t)n * 64), .desc = "blobs"};
    for (int i = 0; i < n; i++)
        for (int p = 0; p < 64; p++) {
            double cx = 2 + (i * 3) % 5, cy = 2 + (i * 5) % 5, x = p % 8, y = p / 8;
            d.pixels[(size_t)i * 64 + p] = (uint8_t)(255 * exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / 4.0));
        }
    return d;
}

/* Mean bound in bits/dim of the n images of d under network u. */
static double mean_bpd(unet *u, const schedule *s, const dataset *d, int n, double *terms) {
    float *x = malloc(sizeof(float) * (size_t)n * 64);
    for (int k = 0; k < n * 64; k++) x[k] = d->pixels[k] / 127.5f - 1.0f;
    err_t err;
    denoiser dn;
    CHECK(unet_denoiser(&dn, u, &err) == 0, "denoiser: %s", err.msg);
    int rc = bound_terms(&dn, s, x, n, 0, 3, terms, NULL, NULL, NULL, &err);
    CHECK(rc == 0, "bound: %s", err.msg);
    double tot = 0;
    for (int i = 0; i < n * (T + 1); i++) tot += terms[i];
    free(x);
    return tot / (n * 64 * log(2.0));
}

static void test_bound(void) {
    unet_config c = tiny_config();
    schedule s;
    err_t err;
    CHECK(schedule_init(&s, "linear", T, 1e-4, 0.2, &err) == 0, "schedule: %s", err.msg);
    dataset d = blobs(N);
    double *terms = malloc(sizeof(double) * N * (T + 1)), *one = malloc(sizeof(double) * (T + 1));

    /* Untrained (the official initialisation predicts eps ~ 0). */
    unet *u;
    CHECK(unet_create(&u, &c, N, 0, &err) == 0, "create: %s", err.msg);
    unet_init_official(u, 1);
    double before = mean_bpd(u, &s, &d, N, terms);
    int finite = 1, nonneg = 1;
    for (int i = 0; i < N * (T + 1); i++) finite &= isfinite(terms[i]), nonneg &= terms[i] >= -1e-9;
    CHECK(finite && nonneg, "every term finite (%d) and >= 0 (%d)", finite, nonneg);
    printf("  untrained: %.4f bits/dim\n", before);

    /* Image 4 alone in a batch of 1 (first_index 4: the same noise) gives the same terms. */
    unet *u1;
    CHECK(unet_create(&u1, &c, 1, 0, &err) == 0, "create: %s", err.msg);
    memcpy(u1->params, u->params, sizeof(float) * u->nparams);
    float x4[64];
    for (int k = 0; k < 64; k++) x4[k] = d.pixels[4 * 64 + k] / 127.5f - 1.0f;
    denoiser d1;
    CHECK(unet_denoiser(&d1, u1, &err) == 0, "denoiser: %s", err.msg);
    CHECK(bound_terms(&d1, &s, x4, 1, 4, 3, one, NULL, NULL, NULL, &err) == 0, "bound: %s", err.msg);
    double maxrel = 0;
    for (int t = 0; t <= T; t++) {
        double a = one[t], b = terms[4 * (T + 1) + t];
        double r = fabs(a - b) / (fabs(b) + 1e-3);
        if (r > maxrel) maxrel = r;
    }
    printf("  image 4 alone vs in a batch of %d: max relative difference %.2e\n", N, maxrel);
    CHECK(maxrel < 1e-4, "batch dependence %.3e", maxrel);

    /* Train from the same start: the bound must fall. */
    train_opts o = train_opts_default();
    o.batch = N, o.seed = 1, o.lr = 2e-3, o.warmup = 10, o.ema = 0.9;
    trainer tr;
    CHECK(trainer_init(&tr, &c, &s, &d, &o, &err) == 0, "trainer: %s", err.msg);
    for (int k = 0; k < 300; k++) CHECK(trainer_step(&tr, &err) == 0, "step: %s", err.msg);
    memcpy(u->params, tr.ema, sizeof(float) * u->nparams);
    double after = mean_bpd(u, &s, &d, N, terms);
    printf("  after 300 training steps: %.4f bits/dim\n", after);
    CHECK(after < 0.8 * before, "the trained model should score lower: %.4f vs %.4f", after, before);

    trainer_free(&tr);
    unet_free(u);
    unet_free(u1);
    free(terms), free(one);
    dataset_free(&d);
    schedule_free(&s);
}

TEST_MAIN(test_bound)
