/* test_sampler.c -- the DDPM / DDIM / DPM-Solver++ 2M sampling loops
 * (src/diffusion/sampler.c) over a denoiser.
 *
 * On the tiny random U-Net of tests/fixtures/unet_b (8x8x1, T = 1000,
 * fixed_small, clip_sample) as a denoiser (unet_denoiser): the timesteps, that
 * the loop equals a hand-written one over unet_forward + diffusion_x0_from_eps / diffusion_dpm_x0
 * + diffusion_x0_clip + diffusion_ddpm_step / diffusion_ddim_step / diffusion_dpm_step with the documented noise
 * streams, clipping, determinism, independence of the batch size, x_T
 * injection, progress reports and errors.
 *
 * On replayed denoisers: DPM-Solver++ step by step against diffusers' own
 * DPMSolverMultistepScheduler (tests/fixtures/dpmsolver.safetensors, written
 * by tools/fixtures_dpmsolver.py), the samples contract (the result clamped
 * to [-1, 1] unless raw), the out-of-range statistics (sample_range) and the
 * sampler names. The single-step DDPM / DDIM math is held against PyTorch in
 * test_diffusion.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "fixture.h"
#include "diffusion/diffusion.h"
#include "diffusion/sampler.h"
#include "io/modelfolder.h"
#include "model/denoiser.h"
#include "ops/ops.h"

#define MODEL "tests/fixtures/unet_b"

static schedule sched;
static size_t D; /* floats per image */

static unet *load(int batch) {
    unet *u = NULL;
    err_t err;
    if (folder_load(&u, MODEL, batch, 0, &err)) {
        fprintf(stderr, "cannot load %s: %s (run from the repository root)\n", MODEL, err.msg);
        exit(1);
    }
    D = (size_t)u->cfg.sample_size * u->cfg.sample_size * u->cfg.in_channels;
    if (!sched.T) {
        char *js = NULL;
        if (folder_read_scheduler(MODEL, &js, &err) || !js || schedule_from_json(&sched, js, &err)) {
            fprintf(stderr, "cannot read the scheduler of %s: %s\n", MODEL, err.msg);
            exit(1);
        }
        free(js);
    }
    return u;
}

static float *fbuf(size_t n) {
    float *p = calloc(n, sizeof(float));
    if (!p) exit(1);
    return p;
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* The U-Net as a denoiser (exits if unet_denoiser refuses it). */
static denoiser den(unet *u) {
    denoiser d;
    err_t err;
    if (unet_denoiser(&d, u, &err)) {
        fprintf(stderr, "unet_denoiser: %s\n", err.msg);
        exit(1);
    }
    return d;
}

/* Runs the sampler over n images in batches of u->batch; returns 0 on success. */
static int run_batches(unet *u, const sampler_opts *o, int n, float *x, const float *x_T) {
    err_t err;
    denoiser d = den(u);
    for (int first = 0; first < n; first += u->batch) {
        int m = n - first < u->batch ? n - first : u->batch;
        if (sampler_run(&d, &sched, o, first, m, x + (size_t)first * D, x_T ? x_T + (size_t)first * D : NULL, NULL,
                        NULL, &err)) {
            fprintf(stderr, "  sampler_run: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static void test_timesteps(void) {
    unet *u = load(1);
    err_t err;
    int ts[1000], prev[1000];
    sampler_opts o = {.kind = SAMPLER_DDPM, .steps = 10, .eta = 0, .seed = 0};
    CHECK(!sampler_timesteps(&sched, &o, ts, prev, &err), "%s", err.msg);
    for (int k = 0; k < 10; k++) {
        CHECK(ts[k] == 900 - 100 * k, "ddpm K=10: ts[%d] = %d", k, ts[k]);
        CHECK(prev[k] == (k < 9 ? ts[k + 1] : -1), "ddpm K=10: prev[%d] = %d", k, prev[k]);
    }
    o.steps = 1000;
    CHECK(!sampler_timesteps(&sched, &o, ts, prev, &err), "%s", err.msg);
    int ok = 1;
    for (int k = 0; k < 1000; k++) ok &= ts[k] == 999 - k && prev[k] == 998 - k;
    CHECK(ok, "ddpm K=T is T-1..0 stepping to t-1");
    sampler_opts d = {.kind = SAMPLER_DDIM, .steps = 50, .eta = 0, .seed = 0};
    CHECK(!sampler_timesteps(&sched, &d, ts, prev, &err), "%s", err.msg);
    CHECK(ts[0] == 980 && ts[49] == 0 && prev[0] == 960 && prev[49] == -20, "ddim K=50: %d %d %d %d", ts[0], ts[49],
          prev[0], prev[49]);
    /* "trailing" spacing: DDPM follows the list, DDIM the fixed stride T/K. */
    schedule tr = sched;
    snprintf(tr.timestep_spacing, sizeof tr.timestep_spacing, "trailing");
    o.steps = 3;
    CHECK(!sampler_timesteps(&tr, &o, ts, prev, &err) && ts[0] == 999 && ts[1] == 666 && ts[2] == 332 &&
              prev[0] == 666 && prev[1] == 332 && prev[2] == -1, "trailing ddpm: %d %d %d", ts[0], ts[1], ts[2]);
    d.steps = 3;
    CHECK(!sampler_timesteps(&tr, &d, ts, prev, &err) && prev[0] == 666 && prev[1] == 333 && prev[2] == -1, "trailing ddim: %d %d",
          prev[0], prev[2]);
    /* o.spacing overrides the schedule's timestep_spacing */
    o.spacing = "trailing";
    CHECK(!sampler_timesteps(&sched, &o, ts, prev, &err) && ts[0] == 999 && ts[1] == 666 && ts[2] == 332 &&
              prev[2] == -1, "spacing option: %d %d %d", ts[0], ts[1], ts[2]);
    /* DPM++ has its own lists (diffusion_dpm_timesteps) and steps to the next listed
     * timestep: "leading" is k (T / (K+1)) for k = K..1, "linspace" drops
     * round(linspace(0, T-1, K+1))'s 0. */
    sampler_opts p = {.kind = SAMPLER_DPMPP, .steps = 4};
    CHECK(!sampler_timesteps(&sched, &p, ts, prev, &err), "%s", err.msg);
    CHECK(ts[0] == 800 && ts[1] == 600 && ts[2] == 400 && ts[3] == 200 && prev[0] == 600 && prev[2] == 200 &&
              prev[3] == -1, "dpm++ leading K=4: %d %d %d %d -> %d", ts[0], ts[1], ts[2], ts[3], prev[3]);
    p.steps = 10, p.spacing = "linspace";
    const int lin[10] = {999, 899, 799, 699, 599, 500, 400, 300, 200, 100};
    CHECK(!sampler_timesteps(&sched, &p, ts, prev, &err), "%s", err.msg);
    for (int k = 0; k < 10; k++)
        CHECK(ts[k] == lin[k] && prev[k] == (k < 9 ? lin[k + 1] : -1), "dpm++ linspace K=10: ts[%d] = %d -> %d", k,
              ts[k], prev[k]);
    unet_free(u);
}

static int failing_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    return err_fail(err, "denoiser broke");
}

static void test_errors(void) {
    unet *u = load(2);
    err_t err;
    float *x = fbuf(3 * D);
    denoiser d = den(u);
    sampler_opts o = {.kind = SAMPLER_DDPM, .steps = 0, .eta = 0, .seed = 0};
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "steps"), "steps 0: %s", err.msg);
    o.steps = 1001;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "1..1000"), "steps > T: %s", err.msg);
    o.steps = 5, o.eta = 0.5f;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "DDIM"), "eta for ddpm: %s", err.msg);
    o.kind = SAMPLER_DPMPP;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "DDIM"), "eta for dpm++: %s", err.msg);
    o.kind = SAMPLER_DDIM, o.eta = 1.5f;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "eta"), "eta > 1: %s", err.msg);
    o.eta = NAN;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "eta"), "eta NaN: %s", err.msg);
    o.eta = 0;
    CHECK(sampler_check(&sched, &o, &err) == 0, "ddim ok: %s", err.msg);
    CHECK(sampler_run(&d, &sched, &o, 0, 3, x, NULL, NULL, NULL, &err) == -1 && strstr(err.msg, "batch 2"),
          "n > batch: %s", err.msg);
    CHECK(sampler_run(&d, &sched, &o, 0, 0, x, NULL, NULL, NULL, &err) == -1, "n = 0");
    CHECK(sampler_run(&d, &sched, &o, -1, 1, x, NULL, NULL, NULL, &err) == -1 && strstr(err.msg, "index"),
          "first_index < 0: %s", err.msg);
    schedule off = sched;
    off.steps_offset = 200; /* "leading" 900 + 200 >= T */
    o.steps = 10;
    CHECK(sampler_check(&off, &o, &err) == -1 && strstr(err.msg, "timesteps"), "steps_offset: %s", err.msg);
    o.spacing = "middle";
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "unknown spacing"), "spacing: %s", err.msg);
    o.spacing = NULL;

    /* the kind, the x0 mode and the thresholding parameters */
    o.kind = (sampler_kind)7;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "kind"), "kind 7: %s", err.msg);
    o.kind = SAMPLER_DPMPP, o.steps = 1000; /* DPM++ "leading" needs K < T; "trailing" allows K = T */
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "timesteps"), "dpm++ K = T: %s", err.msg);
    o.spacing = "trailing";
    CHECK(sampler_check(&sched, &o, &err) == 0, "dpm++ trailing K = T: %s", err.msg);
    o.spacing = NULL, o.steps = 10;
    o.x0 = (x0_mode)9;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "x0 mode"), "x0 mode 9: %s", err.msg);
    o.x0 = X0_THRESHOLD;
    CHECK(sampler_check(&sched, &o, &err) == 0, "threshold with the schedule's parameters: %s", err.msg);
    o.threshold_ratio = 1.5f;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "ratio"), "ratio 1.5: %s", err.msg);
    o.threshold_ratio = NAN;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "ratio"), "ratio NaN: %s", err.msg);
    o.threshold_ratio = 0.9f, o.threshold_max = 0.5f;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "sample_max_value"), "max 0.5: %s", err.msg);
    o.threshold_max = 1.5f;
    CHECK(sampler_check(&sched, &o, &err) == 0, "threshold 0.9 / 1.5: %s", err.msg);
    o = (sampler_opts){.kind = SAMPLER_DDIM, .steps = 10};

    /* Three times the input channels: refused by unet_denoiser; twice (a learned variance): refused by a
     * sampler whose schedule has a fixed variance. */
    denoiser d2;
    int keep_out = u->cfg.out_channels;
    u->cfg.out_channels = 3 * u->cfg.in_channels;
    CHECK(unet_denoiser(&d2, u, &err) == -1 && strstr(err.msg, "twice"), "3x channels: %s", err.msg);
    u->cfg.out_channels = 2 * u->cfg.in_channels;
    CHECK(unet_denoiser(&d2, u, &err) == 0 && d2.out_mult == 2, "2x channels: %s", err.msg);
    CHECK(sampler_run(&d2, &sched, &o, 0, 1, x, NULL, NULL, NULL, &err) == -1 && strstr(err.msg, "fixed_small"),
          "a variance output with fixed_small: %s", err.msg);
    u->cfg.out_channels = keep_out;

    /* Non-finite values are errors, not crashes: in x_T, and from the network. */
    float *xT = fbuf(2 * D);
    xT[D + 5] = NAN;
    CHECK(sampler_run(&d, &sched, &o, 10, 2, x, xT, NULL, NULL, &err) == -1 && strstr(err.msg, "non-finite") &&
              strstr(err.msg, "image 11") && strstr(err.msg, "element 5"), "NaN x_T: %s", err.msg);
    float keep = u->params[u->nparams - 1];
    u->params[u->nparams - 1] = INFINITY; /* conv_out's last bias: every output pixel */
    CHECK(sampler_run(&d, &sched, &o, 0, 2, x, NULL, NULL, NULL, &err) == -1 && strstr(err.msg, "non-finite") &&
              strstr(err.msg, "network output at timestep 900"), "Inf weights: %s", err.msg);
    u->params[u->nparams - 1] = keep;
    /* the denoiser's own errors come back as they are */
    denoiser bad = {.eps = failing_eps, .ctx = NULL, .batch = 2, .D = D};
    CHECK(sampler_run(&bad, &sched, &o, 0, 2, x, NULL, NULL, NULL, &err) == -1 && strstr(err.msg, "denoiser broke"),
          "denoiser error: %s", err.msg);
    float v[4] = {0, 1, -INFINITY, NAN};
    CHECK(sampler_check_finite("thing", v, 2, 2, 7, &err) == -1 && strstr(err.msg, "thing: 2 non-finite") &&
              strstr(err.msg, "image 8 at element 0"), "%s", err.msg);
    CHECK(sampler_check_finite("thing", v, 1, 2, 0, &err) == 0, "finite");
    free(x), free(xT);
    unet_free(u);
}

/* The sampler as a hand-written loop with the noise streams of sampler.h:
 * x0 from eps (diffusion_x0_from_eps, or diffusion_dpm_x0 in DPM++'s parametrisation), clipped
 * (unet_b's scheduler has clip_sample), then the step; DPM++ is first order
 * at its first and last step and second order (with the previous x0) in
 * between; the result is clamped to [-1, 1] (the samples contract). */
static void manual(unet *u, const sampler_opts *o, int first, int n, float *x) {
    err_t err;
    int ts[64], prev[64];
    float sig[65];
    const int K = o->steps;
    ERR_ASSERT(K <= 64 && n <= u->batch);
    CHECK(sched.clip_sample && !sched.thresholding && sched.clip_range == 1.0f, "unet_b's scheduler must clip x0");
    CHECK(!sampler_timesteps(&sched, o, ts, prev, &err), "%s", err.msg);
    for (int k = 0; k < K; k++) sig[k] = diffusion_dpm_sigma(&sched, ts[k]);
    sig[K] = 0;
    size_t B = (size_t)u->batch;
    float *xb = fbuf(B * D), *eb = fbuf(B * D), *x0 = fbuf(n * D), *m1 = fbuf(n * D), *z = fbuf(D), tt[64];
    for (int i = 0; i < n; i++) rng_normal(xb + i * D, D, o->seed, RNG_PRIOR, (uint64_t)(first + i));
    for (int k = 0; k < K; k++) {
        for (size_t i = 0; i < B; i++) tt[i] = (float)ts[k];
        CHECK(unet_forward(u, eb, xb, tt, NULL, NULL, &err) == 0, "%s", err.msg);
        for (int i = 0; i < n; i++) {
            float *xi = xb + i * D, *ei = eb + i * D, *x0i = x0 + i * D, *m1i = m1 + i * D;
            /* drawn at every step: DDPM ignores it at t = 0, DDIM at eta = 0, DPM++ always */
            rng_normal(z, D, o->seed, RNG_SAMPLE, rng_stream((uint64_t)ts[k], (uint64_t)(first + i)));
            if (o->kind == SAMPLER_DPMPP)
                diffusion_dpm_x0(sig[k], SCHED_PRED_EPSILON, ei, xi, x0i, D);
            else
                diffusion_x0_from_eps(&sched, ts[k], ei, xi, x0i, D);
            diffusion_x0_clip(x0i, D, sched.clip_range);
            if (o->kind == SAMPLER_DDIM)
                diffusion_ddim_step(&sched, ts[k], prev[k], o->eta, x0i, ei, xi, z, xi, D);
            else if (o->kind == SAMPLER_DDPM)
                diffusion_ddpm_step(&sched, ts[k], prev[k], x0i, xi, z, xi, D);
            else {
                diffusion_dpm_step(sig[k + 1], sig[k], k > 0 ? sig[k - 1] : 0.0f, x0i, k > 0 && k < K - 1 ? m1i : NULL, xi, xi,
                         D);
                memcpy(m1i, x0i, D * sizeof(float));
            }
        }
    }
    diffusion_x0_clip(xb, (size_t)n * D, 1.0f);
    memcpy(x, xb, (size_t)n * D * sizeof(float));
    free(xb), free(eb), free(x0), free(m1), free(z);
}

typedef struct { int calls, last, total, ordered; } prog;
static void on_progress(void *ctx, int done, int total) {
    prog *p = ctx;
    p->ordered &= done == p->last + 1;
    p->calls++, p->last = done, p->total = total;
}

static void test_matches_manual_loop(void) {
    unet *u = load(3);
    err_t err;
    denoiser d = den(u);
    float *a = fbuf(3 * D), *b = fbuf(3 * D);
    sampler_opts opts[5] = {{.kind = SAMPLER_DDPM, .steps = 8, .eta = 0, .seed = 5},
                            {.kind = SAMPLER_DDIM, .steps = 6, .eta = 0, .seed = 5},
                            {.kind = SAMPLER_DDIM, .steps = 6, .eta = 0.7f, .seed = 5},
                            {.kind = SAMPLER_DPMPP, .steps = 6, .seed = 5},
                            {.kind = SAMPLER_DPMPP, .steps = 2, .seed = 5, .spacing = "trailing"}};
    const char *names[5] = {"ddpm K=8", "ddim K=6 eta=0", "ddim K=6 eta=0.7", "dpm++ K=6", "dpm++ K=2 trailing"};
    for (int c = 0; c < 5; c++) {
        prog p = {0, 0, 0, 1};
        /* images 4..6 of a larger run */
        CHECK(!sampler_run(&d, &sched, &opts[c], 4, 3, a, NULL, on_progress, &p, &err), "%s", err.msg);
        manual(u, &opts[c], 4, 3, b);
        CHECK(same(a, b, 3 * D), "%s: sampler != hand-written loop", names[c]);
        CHECK(p.calls == opts[c].steps && p.total == opts[c].steps && p.ordered, "%s: progress %d calls of %d",
              names[c], p.calls, p.total);
        /* clip_sample with range 1: the last step returns the clipped x0 prediction, so x is in [-1, 1]
         * even before the final clamp. */
        float lo = 0, hi = 0;
        int finite = 1;
        for (size_t j = 0; j < 3 * D; j++) {
            finite &= isfinite(a[j]) != 0;
            lo = a[j] < lo ? a[j] : lo, hi = a[j] > hi ? a[j] : hi;
        }
        CHECK(finite && lo >= -1 && hi <= 1 && hi - lo > 0.5f, "%s: range [%g, %g]", names[c], lo, hi);
    }
    free(a), free(b);
    unet_free(u);
}

static void test_determinism(void) {
    unet *u = load(4);
    err_t err;
    denoiser dn = den(u);
    float *a = fbuf(4 * D), *b = fbuf(4 * D), *xT = fbuf(4 * D);
    sampler_opts o = {.kind = SAMPLER_DDPM, .steps = 6, .eta = 0, .seed = 42};
    CHECK(!sampler_run(&dn, &sched, &o, 0, 4, a, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!sampler_run(&dn, &sched, &o, 0, 4, b, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, b, 4 * D), "ddpm: same seed, different result");
    o.seed = 43;
    CHECK(!sampler_run(&dn, &sched, &o, 0, 4, b, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!same(a, b, 4 * D), "ddpm: a different seed gave the same images");

    /* An explicit x_T equal to the drawn one gives the same result; x may alias x_T. */
    o.seed = 42;
    sampler_prior(42, 0, 4, D, xT);
    CHECK(!sampler_run(&dn, &sched, &o, 0, 4, xT, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, xT, 4 * D), "ddpm: x_T = prior differs from drawing it");

    /* DDIM with eta = 0 is a deterministic function of x_T: the seed does not matter. */
    sampler_opts d = {.kind = SAMPLER_DDIM, .steps = 5, .eta = 0, .seed = 1};
    sampler_prior(99, 0, 4, D, xT);
    CHECK(!sampler_run(&dn, &sched, &d, 0, 4, a, xT, NULL, NULL, &err), "%s", err.msg);
    d.seed = 2;
    CHECK(!sampler_run(&dn, &sched, &d, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, b, 4 * D), "ddim eta=0 depends on the seed");
    /* ... but with eta > 0 it does. */
    d.eta = 1;
    CHECK(!sampler_run(&dn, &sched, &d, 0, 4, a, xT, NULL, NULL, &err), "%s", err.msg);
    d.seed = 1;
    CHECK(!sampler_run(&dn, &sched, &d, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(!same(a, b, 4 * D), "ddim eta=1 ignores the seed");
    /* DDPM (stochastic) from the same x_T with different seeds differs. */
    o.seed = 7;
    CHECK(!sampler_run(&dn, &sched, &o, 0, 4, a, xT, NULL, NULL, &err), "%s", err.msg);
    o.seed = 8;
    CHECK(!sampler_run(&dn, &sched, &o, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(!same(a, b, 4 * D), "ddpm from a fixed x_T ignores the seed");
    /* DPM++ is deterministic given x_T: the seed only draws x_T. */
    sampler_opts m = {.kind = SAMPLER_DPMPP, .steps = 5, .seed = 1};
    CHECK(!sampler_run(&dn, &sched, &m, 0, 4, a, xT, NULL, NULL, &err), "%s", err.msg);
    m.seed = 2;
    CHECK(!sampler_run(&dn, &sched, &m, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, b, 4 * D), "dpm++ from a fixed x_T depends on the seed");
    CHECK(!sampler_run(&dn, &sched, &m, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, b, 4 * D), "dpm++: the same run twice differs");
    CHECK(!sampler_run(&dn, &sched, &m, 0, 4, a, NULL, NULL, NULL, &err), "%s", err.msg);
    m.seed = 1;
    CHECK(!sampler_run(&dn, &sched, &m, 0, 4, b, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!same(a, b, 4 * D), "dpm++: a different seed (so x_T) gave the same images");
    free(a), free(b), free(xT);
    unet_free(u);
}

/* Six images in one batch of 6, in batches of 2, and padded (3 + 3 on a batch-4
 * network). The sampler's randomness is per image, so with the reference
 * operators (whose per-image arithmetic does not depend on the batch) the
 * results are bitwise equal. The oneDNN tier's dnnl_sgemm rounds a row
 * differently depending on the row count M (its 6-row kernel blocks), so
 * there the results are only close. */
static void test_batch_independence(void) {
    const int N = 6;
    float *a = fbuf(N * D), *b = fbuf(N * D), *c = fbuf(N * D);
    sampler_opts opts[3] = {{.kind = SAMPLER_DDPM, .steps = 6, .eta = 0, .seed = 3},
                            {.kind = SAMPLER_DDIM, .steps = 5, .eta = 0.5f, .seed = 3},
                            {.kind = SAMPLER_DPMPP, .steps = 5, .seed = 3}};
    for (int ref = 1; ref >= 0; ref--) {
        ops_set_reference(ref);
        unet *u6 = load(6), *u2 = load(2), *u4 = load(4);
        denoiser d4 = den(u4);
        for (int k = 0; k < 3; k++) {
            const char *kn = sampler_name(opts[k].kind);
            CHECK(!run_batches(u6, &opts[k], N, a, NULL), "batch 6");
            CHECK(!run_batches(u2, &opts[k], N, b, NULL), "batch 2");
            /* batch-4 network, two calls of 3 images (one padding row each) */
            err_t err;
            CHECK(!sampler_run(&d4, &sched, &opts[k], 0, 3, c, NULL, NULL, NULL, &err), "%s", err.msg);
            CHECK(!sampler_run(&d4, &sched, &opts[k], 3, 3, c + 3 * D, NULL, NULL, NULL, &err), "%s", err.msg);
            char what[96];
            if (ref) {
                CHECK(same(a, b, N * D), "%s reference ops: batch 6 != batch 2", kn);
                CHECK(same(a, c, N * D), "%s reference ops: batch 6 != 3+3 padded", kn);
            }
            snprintf(what, sizeof what, "%s %s: batch 6 vs 2", kn, ref ? "reference" : "oneDNN");
            check_close(what, b, a, N * D, 1e-4, 0);
            snprintf(what, sizeof what, "%s %s: batch 6 vs 3+3 padded", kn, ref ? "reference" : "oneDNN");
            check_close(what, c, a, N * D, 1e-4, 0);
        }
        unet_free(u6), unet_free(u2), unet_free(u4);
    }
    free(a), free(b), free(c);
}

/* Progressive generation: the tracked x0 predictions at visited timesteps; at
 * t = 0 the DDPM step returns its x0 prediction, so that column is the result. */
static void test_track_x0(void) {
    unet *u = load(2);
    denoiser d = den(u);
    err_t err;
    int all[8], ts[3];
    sampler_opts plain = {.kind = SAMPLER_DDPM, .steps = 8, .eta = 0, .seed = 9};
    CHECK(!sampler_timesteps(&sched, &plain, all, NULL, &err), "%s", err.msg);
    ts[0] = all[0], ts[1] = all[4], ts[2] = all[7]; /* the last visited timestep is 0 */
    CHECK(ts[2] == 0, "last timestep %d", ts[2]);
    float *x = fbuf(2 * D), *tr = fbuf(3 * 2 * D);
    for (size_t k = 0; k < 3 * 2 * D; k++) tr[k] = NAN;
    sampler_opts o = {.kind = SAMPLER_DDPM, .steps = 8, .eta = 0, .seed = 9,
                      .ntrack = 3, .track_t = ts, .track_x0 = tr};
    CHECK(!sampler_run(&d, &sched, &o, 0, 2, x, NULL, NULL, NULL, &err), "%s", err.msg);
    int finite = 1;
    for (size_t k = 0; k < 3 * 2 * D; k++) finite &= isfinite(tr[k]) && fabsf(tr[k]) <= 1.0f;
    CHECK(finite, "every tracked x0 written, finite and clipped to [-1, 1]");
    CHECK(!memcmp(tr + 2 * 2 * D, x, sizeof(float) * 2 * D), "x0 tracked at t = 0 equals the sample");
    CHECK(memcmp(tr, tr + 2 * 2 * D, sizeof(float) * 2 * D) != 0, "x0 at the first timestep differs from the result");
    /* start_from = T runs every step: the same result. */
    float *y = fbuf(2 * D);
    sampler_opts full = plain;
    full.start_from = sched.T;
    CHECK(!sampler_run(&d, &sched, &plain, 0, 2, x, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!sampler_run(&d, &sched, &full, 0, 2, y, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!memcmp(x, y, sizeof(float) * 2 * D), "start_from = T changes the result");
    /* DPM++'s last step also returns its (clipped) x0 prediction */
    sampler_opts p = {.kind = SAMPLER_DPMPP, .steps = 8, .seed = 9, .ntrack = 1, .track_t = ts, .track_x0 = tr};
    CHECK(!sampler_timesteps(&sched, &p, all, NULL, &err), "%s", err.msg);
    ts[0] = all[7];
    CHECK(!sampler_run(&d, &sched, &p, 0, 2, x, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!memcmp(tr, x, sizeof(float) * 2 * D), "dpm++: x0 tracked at the last timestep (%d) differs from the sample",
          ts[0]);
    free(x), free(y), free(tr);
    unet_free(u);
}


/* ---- DPM-Solver++ against diffusers (tests/fixtures/dpmsolver.safetensors) ---- */

#define DPM_FIXTURE "tests/fixtures/dpmsolver.safetensors"
enum { DPM_N = 3, DPM_D = 48, DPM_MAXK = 32 };
#define DPM_TOL 1e-5 /* max |x - x_ref| / max |x_ref| at every step */

/* A denoiser replaying a fixture: call k checks it is handed the timestep
 * ts[k] and the x of diffusers' step k (x[k]: the error is recorded), and
 * returns the model output diffusers' step k got (eps[k]). */
typedef struct replay {
    const float *x, *eps, *ts; /* [K+1, N, D], [K, N, D], [K] */
    int K, calls, bad_t;
    double err[DPM_MAXK];
} replay;

static double rel_err(const float *got, const float *ref, size_t n) {
    double e = 0, m = fx_maxabs(ref, n);
    for (size_t j = 0; j < n; j++) {
        double d = fabs((double)got[j] - (double)ref[j]);
        e = d > e || isnan(d) ? (isnan(d) ? INFINITY : d) : e;
    }
    return e / (m > 0 ? m : 1);
}

static int replay_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    replay *r = ctx;
    const int k = r->calls++;
    const size_t nd = (size_t)DPM_N * DPM_D;
    if (k >= r->K || n != DPM_N) return err_fail(err, "replay: call %d with %d images (K = %d)", k + 1, n, r->K);
    r->err[k] = rel_err(x, r->x + (size_t)k * nd, nd);
    for (int i = 0; i < n; i++) r->bad_t += t[i] != r->ts[k];
    memcpy(eps, r->eps + (size_t)k * nd, nd * sizeof(float));
    return 0;
}

static const struct dpm_case {
    const char *name, *kind, *spacing;
    int K, offset;
    float ratio, smax; /* ratio 0: no thresholding */
} dpm_cases[] = {
    {"lin10", "linear", "linspace", 10, 0, 0, 1},     {"lin20", "linear", "linspace", 20, 0, 0, 1},
    {"lead7", "linear", "leading", 7, 1, 0, 1},       {"trail12", "linear", "trailing", 12, 0, 0, 1},
    {"thr10", "linear", "linspace", 10, 0, 0.9f, 1.5f}, {"cos10", "squaredcos_cap_v2", "linspace", 10, 0, 0, 1},
    {"lin1", "linear", "linspace", 1, 0, 0, 1},       {"lin2", "linear", "linspace", 2, 0, 0, 1},
};

static float *dpm_get(const st_file *f, const char *c, const char *key, size_t want) {
    char name[64];
    size_t n = 0;
    snprintf(name, sizeof name, "%s.%s", c, key);
    float *p = fx_get(f, name, &n);
    if (n != want) {
        CHECK(n == want, "%s has %zu values, expected %zu", name, n, want);
        free(p);
        return NULL;
    }
    return p;
}

/* Runs sampler_run over the case's replay denoiser from x_T = x[0]; returns
 * the max error over the steps and writes the result to out. */
static double dpm_run(const struct dpm_case *c, const schedule *s, const sampler_opts *o, const float *cx,
                      const float *ce, const float *cts, float *out, replay *r) {
    err_t err;
    *r = (replay){.x = cx, .eps = ce, .ts = cts, .K = c->K};
    denoiser d = {.eps = replay_eps, .ctx = r, .batch = DPM_N, .D = DPM_D};
    int rc = sampler_run(&d, s, o, 0, DPM_N, out, cx, NULL, NULL, &err);
    CHECK(rc == 0, "%s: %s", c->name, err.msg);
    CHECK(r->calls == c->K && r->bad_t == 0, "%s: %d denoiser calls for K = %d, %d wrong timesteps", c->name,
          r->calls, c->K, r->bad_t);
    double mx = 0;
    for (int k = 0; k < r->calls && k < c->K; k++) mx = r->err[k] > mx ? r->err[k] : mx;
    return rc ? INFINITY : mx;
}

/* DPM-Solver++ 2M step by step against diffusers' DPMSolverMultistepScheduler
 * (dpmsolver++, midpoint, lower_order_final, final sigma 0): its timesteps
 * exactly, its sigmas to an ulp, and the x handed to every step and the
 * result to DPM_TOL, for linspace / leading (+ steps_offset) / trailing
 * spacing, the cosine schedule, dynamic thresholding, and K = 1, 2. The
 * thresholded case also runs from the schedule's thresholding config
 * (X0_CONFIG), and the others with X0_CONFIG and clip_sample off: the same
 * bits. */
static void test_dpm_parity(void) {
    st_file f = fx_open(DPM_FIXTURE);
    const size_t nd = (size_t)DPM_N * DPM_D;
    for (size_t ci = 0; ci < sizeof dpm_cases / sizeof dpm_cases[0]; ci++) {
        const struct dpm_case *c = &dpm_cases[ci];
        const int K = c->K;
        ERR_ASSERT(K <= DPM_MAXK);
        float *cts = dpm_get(&f, c->name, "timesteps", (size_t)K);
        float *csig = dpm_get(&f, c->name, "sigmas", (size_t)K + 1);
        float *cx = dpm_get(&f, c->name, "x", (size_t)(K + 1) * nd), *ce = dpm_get(&f, c->name, "eps", (size_t)K * nd);
        schedule s;
        err_t err;
        int rc = schedule_init(&s, c->kind, 1000, 1e-4, 0.02, &err);
        CHECK(rc == 0, "%s: %s", c->name, err.msg);
        if (rc || !cts || !csig || !cx || !ce) {
            free(cts), free(csig), free(cx), free(ce);
            continue;
        }
        s.steps_offset = c->offset;
        sampler_opts o = {.kind = SAMPLER_DPMPP, .steps = K, .spacing = c->spacing,
                          .x0 = c->ratio > 0 ? X0_THRESHOLD : X0_NONE, .threshold_ratio = c->ratio,
                          .threshold_max = c->ratio > 0 ? c->smax : 0, .raw = 1};
        /* timesteps: exact; sigmas: float32 sqrt((1 - ab) / ab), an ulp */
        int ts[DPM_MAXK];
        CHECK(!sampler_timesteps(&s, &o, ts, NULL, &err), "%s: %s", c->name, err.msg);
        int bad_ts = 0, bad_sig = 0;
        double sig_err = 0;
        for (int k = 0; k < K; k++) {
            bad_ts += ts[k] != (int)cts[k] || (float)ts[k] != cts[k];
            double e = fabs((double)diffusion_dpm_sigma(&s, ts[k]) - csig[k]) / csig[k];
            sig_err = e > sig_err ? e : sig_err;
            bad_sig += !(e <= 2.4e-7);
        }
        CHECK(bad_ts == 0, "%s: %d timesteps differ from diffusers' (first %d vs %g)", c->name, bad_ts, ts[0],
              (double)cts[0]);
        CHECK(bad_sig == 0 && csig[K] == 0 && diffusion_dpm_sigma(&s, -1) == 0,
              "%s: %d sigmas off by more than an ulp (max rel %.3g)", c->name, bad_sig, sig_err);

        float out[DPM_N * DPM_D], out2[DPM_N * DPM_D];
        replay r;
        double mx = dpm_run(c, &s, &o, cx, ce, cts, out, &r);
        double fin = rel_err(out, cx + (size_t)K * nd, nd);
        printf("  dpm++ %-8s K=%-2d sigma max rel %.2e, x max rel err over steps %.3e, result %.3e %s\n", c->name, K,
               sig_err, mx, fin, mx <= DPM_TOL && fin <= DPM_TOL ? "ok" : "FAIL");
        CHECK(mx <= DPM_TOL && fin <= DPM_TOL,
              "%s: x differs from diffusers by %.3g over the steps, %.3g at the result", c->name, mx, fin);
        if (mx > DPM_TOL)
            for (int k = 0; k < K; k++)
                printf("    %s step %d (t = %d): x rel err %.3e\n", c->name, k, ts[k], r.err[k]);

        /* X0_CONFIG follows the schedule: thresholding when set (wins over
         * clip_sample, which is on), else clip_sample (off here) */
        sampler_opts oc = o;
        oc.x0 = X0_CONFIG, oc.threshold_ratio = 0, oc.threshold_max = 0;
        if (c->ratio > 0)
            s.thresholding = 1, s.threshold_ratio = c->ratio, s.sample_max = c->smax;
        else
            s.clip_sample = 0;
        dpm_run(c, &s, &oc, cx, ce, cts, out2, &r);
        CHECK(same(out, out2, nd), "%s: X0_CONFIG from the schedule differs from the explicit options", c->name);
        schedule_free(&s);
        free(cts), free(csig), free(cx), free(ce);
    }
    st_close(&f);
}

/* ---- the samples contract and the out-of-range statistics ---- */

typedef struct { float c; size_t D; } scale_ctx;

/* eps = c x (n rows of D). */
static int scale_eps(void *ctx, int n, const float *x, const float *t, float *eps, err_t *err) {
    const scale_ctx *sc = ctx;
    for (size_t j = 0; j < (size_t)n * sc->D; j++) eps[j] = sc->c * x[j];
    return 0;
}

/* sampler_range_add: a pixel is out when |x| > SAMPLE_RANGE_TOL (1.05 itself
 * is not), an image out of range when more than SAMPLE_OUT_IMAGE_FRAC (1%) of its
 * pixels are; counts accumulate over calls. */
static void test_sample_range(void) {
    enum { RD = 200, RN = 4 }; /* 1% of 200 = 2 pixels */
    float *v = fbuf((size_t)RN * RD);
    v[0] = SAMPLE_RANGE_TOL, v[1] = -SAMPLE_RANGE_TOL, v[2] = -1.0f; /* image 0: none out */
    v[RD + 0] = nextafterf(SAMPLE_RANGE_TOL, 2.0f);                  /* image 1: 1 out */
    v[2 * RD + 5] = 3.0f, v[2 * RD + 6] = -2.0f;                      /* image 2: 2 out, exactly 1%: not out */
    v[3 * RD + 7] = -4.5f, v[3 * RD + 8] = 1.5f, v[3 * RD + 9] = 1.1f; /* image 3: 3 out: out of range */
    sample_range r = {0};
    sampler_range_add(&r, v, RN, RD);
    CHECK(r.images == RN && r.pixels == RN * RD && r.out_pixels == 6 && r.out_images == 1 && r.max_abs == 4.5,
          "range: %lld images %lld pixels %lld out %lld out-images max %g", r.images, r.pixels, r.out_pixels, r.out_images,
          r.max_abs);
    sampler_range_add(&r, v + RD, 1, RD);
    CHECK(r.images == RN + 1 && r.pixels == (RN + 1) * RD && r.out_pixels == 7 && r.out_images == 1,
          "range accumulates: %lld images %lld out", r.images, r.out_pixels);
    free(v);
}

/* The result is clamped to [-1, 1] unless raw, and opts.range sees it before
 * the clamp. DDIM with K = 1 from t = 0 to alphabar 1 and eps = 0 returns
 * x_T / sqrt(alphabar_0) exactly as predicted (X0_NONE), so x_T places pixels
 * in and out of range; DPM++ with eps = -2 x (x0 = x (1 + 2 sigma) / alpha)
 * overshoots [-1, 1] on its own. */
static void test_raw_and_range(void) {
    enum { RD = 200, RN = 4 };
    err_t err;
    schedule s;
    CHECK(!schedule_init(&s, "linear", 1000, 1e-4, 0.02, &err), "%s", err.msg);
    float *xT = fbuf((size_t)RN * RD), *a = fbuf((size_t)RN * RD), *b = fbuf((size_t)RN * RD);
    for (int j = 0; j < RD; j++)
        xT[j] = 0.5f, xT[RD + j] = 0.9f, xT[2 * RD + j] = 0.1f, xT[3 * RD + j] = -0.2f;
    xT[RD + 3] = 1.2f, xT[RD + 7] = -1.04f; /* image 1: 1.20006 out; -1.04005 in (< 1.05) but clamped */
    xT[2 * RD] = 3.0f, xT[2 * RD + 1] = -3.0f; /* image 2: 2 out, not out */
    xT[3 * RD + 10] = xT[3 * RD + 11] = xT[3 * RD + 12] = -2.5f; /* image 3: 3 out, counted */
    scale_ctx zero = {0.0f, RD};
    denoiser d = {.eps = scale_eps, .ctx = &zero, .batch = RN, .D = RD};
    sample_range r1 = {0}, r0 = {0};
    sampler_opts o = {.kind = SAMPLER_DDIM, .steps = 1, .x0 = X0_NONE, .raw = 1, .range = &r1};
    CHECK(!sampler_run(&d, &s, &o, 0, RN, a, xT, NULL, NULL, &err), "%s", err.msg);
    o.raw = 0, o.range = &r0;
    CHECK(!sampler_run(&d, &s, &o, 0, RN, b, xT, NULL, NULL, &err), "%s", err.msg);
    const double inv = 1.0 / sqrt((double)s.alphas_cumprod[0]);
    int raw_ok = 1, clamp_ok = 1;
    double mx = 0;
    for (int j = 0; j < RN * RD; j++) {
        raw_ok &= fabs(a[j] - xT[j] * inv) <= 1e-6 * fabs(xT[j] * inv);
        clamp_ok &= b[j] == (a[j] < -1 ? -1.0f : a[j] > 1 ? 1.0f : a[j]);
        mx = fabs(a[j]) > mx ? fabs(a[j]) : mx;
    }
    CHECK(raw_ok && a[RD + 3] > 1.2f && a[RD + 7] < -1.04f, "raw: x_T / sqrt(alphabar_0) unclamped (%g, %g)",
          (double)a[RD + 3], (double)a[RD + 7]);
    CHECK(clamp_ok && b[RD + 3] == 1.0f && b[RD + 7] == -1.0f && b[2 * RD] == 1.0f, "not raw: clamp of the raw result");
    CHECK(r1.images == RN && r1.pixels == RN * RD && r1.out_pixels == 6 && r1.out_images == 1 && r1.max_abs == mx,
          "range (raw): %lld images %lld out %lld out-images max %g", r1.images, r1.out_pixels, r1.out_images, r1.max_abs);
    CHECK(!memcmp(&r0, &r1, sizeof r0), "range without raw: %lld out %lld out-images max %g (counted before the clamp)",
          r0.out_pixels, r0.out_images, r0.max_abs);

    /* DPM++ overshooting: raw leaves it, otherwise the clamp; x0 clipping
     * (X0_CLIP) keeps even the raw result in range (its last step returns x0) */
    scale_ctx push = {-2.0f, RD};
    d.ctx = &push;
    sample_range r2 = {0};
    sampler_opts p = {.kind = SAMPLER_DPMPP, .steps = 5, .x0 = X0_NONE, .raw = 1, .range = &r2};
    sampler_prior(11, 0, RN, RD, xT);
    CHECK(!sampler_run(&d, &s, &p, 0, RN, a, xT, NULL, NULL, &err), "%s", err.msg);
    p.raw = 0, p.range = NULL;
    CHECK(!sampler_run(&d, &s, &p, 0, RN, b, xT, NULL, NULL, &err), "%s", err.msg);
    clamp_ok = 1;
    for (int j = 0; j < RN * RD; j++) clamp_ok &= b[j] == (a[j] < -1 ? -1.0f : a[j] > 1 ? 1.0f : a[j]);
    CHECK(fx_maxabs(a, (size_t)RN * RD) > 1.5f && r2.out_pixels > 0 && r2.max_abs == fx_maxabs(a, (size_t)RN * RD),
          "dpm++ eps = -2x: raw max %g, %lld out", (double)fx_maxabs(a, (size_t)RN * RD), r2.out_pixels);
    CHECK(clamp_ok && fx_maxabs(b, (size_t)RN * RD) == 1.0f, "dpm++ not raw: the clamp of the raw result");
    p.raw = 1, p.x0 = X0_CLIP;
    CHECK(!sampler_run(&d, &s, &p, 0, RN, a, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(fx_maxabs(a, (size_t)RN * RD) <= 1.0f, "dpm++ X0_CLIP raw: max %g", (double)fx_maxabs(a, (size_t)RN * RD));
    free(xT), free(a), free(b);
    schedule_free(&s);
}

/* sampler_name / sampler_parse round-trip; unknown names are errors listing the known ones. */
static void test_names(void) {
    err_t err;
    const char *want[SAMPLER_KINDS] = {"ddpm", "ddim", "dpm++2m"};
    for (int k = 0; k < SAMPLER_KINDS; k++) {
        sampler_kind got = (sampler_kind)-1;
        CHECK(!strcmp(sampler_name((sampler_kind)k), want[k]), "sampler_name(%d) = %s", k,
              sampler_name((sampler_kind)k));
        CHECK(!sampler_parse(want[k], &got, &err) && got == (sampler_kind)k, "sampler_parse(%s) = %d", want[k],
              (int)got);
    }
    sampler_kind k = SAMPLER_DDIM;
    const char *badn[3] = {"dpm", "DDPM", ""};
    for (int i = 0; i < 3; i++)
        CHECK(sampler_parse(badn[i], &k, &err) == -1 && strstr(err.msg, "unknown sampler") &&
                  strstr(err.msg, "dpm++2m") && k == SAMPLER_DDIM,
              "sampler_parse(\"%s\"): %s", badn[i], err.msg);
    CHECK(sampler_parse(NULL, &k, &err) == -1, "sampler_parse(NULL)");
    CHECK(!strcmp(sampler_name(SAMPLER_KINDS), "?"), "sampler_name(out of range)");
}

/* Classifier-free guidance as a denoiser, on the diffusers-made conditional
 * fixture (5 class embeddings; class 4 taken as the null class): w = 0 is the
 * null class alone and w = 1 the labels alone, bit for bit (the same B-row
 * network); w = 3 is eps_u + 3 (eps_c - eps_u) from separate B-row
 * evaluations, to rounding (the one 2B-row pass rounds as its batch size says);
 * with a guidance interval, only the rows of timesteps inside are guided. */
static void test_guidance(void) {
    enum { B = 3 };
    err_t err;
    const size_t D = 64;
    float x[B * 64], t[B] = {999, 500, 3}, out[B * 64], ec[B * 64], eu[B * 64], want[B * 64];
    int32_t y[B] = {0, 2, 3}, nul[B] = {4, 4, 4};
    for (size_t i = 0; i < B * D; i++) x[i] = (float)sin(0.37 * (double)i);
    unet *u1;
    CHECK(folder_load(&u1, "tests/fixtures/unet_c", B, 0, &err) == 0, "%s", err.msg);
    CHECK(unet_forward(u1, ec, x, t, y, NULL, &err) == 0, "%s", err.msg);
    CHECK(unet_forward(u1, eu, x, t, nul, NULL, &err) == 0, "%s", err.msg);
    CHECK(memcmp(ec, eu, sizeof ec) != 0, "the labels do not change eps: the checks below could not fail");
    const float ws[3] = {0.0f, 1.0f, 3.0f};
    for (int k = 0; k < 3; k++) {
        unet *u;
        denoiser d;
        unet_guided g;
        CHECK(folder_load(&u, "tests/fixtures/unet_c", unet_guided_rows(ws[k], B), 0, &err) == 0, "%s", err.msg);
        CHECK(unet_guided_denoiser(&d, &g, u, B, 4, ws[k], &err) == 0, "%s", err.msg);
        g.y = y;
        CHECK(d.eps(d.ctx, B, x, t, out, &err) == 0, "%s", err.msg);
        for (size_t i = 0; i < B * D; i++) want[i] = k == 0 ? eu[i] : k == 1 ? ec[i] : eu[i] + ws[k] * (ec[i] - eu[i]);
        if (k < 2)
            CHECK(!memcmp(out, want, sizeof out), "guidance %g: not eps_u + w (eps_c - eps_u) bit for bit", (double)ws[k]);
        else
            check_close("guidance 3 against eps_u + 3 (eps_c - eps_u)", out, want, B * D, 1e-5f, 1e-4f);
        if (k == 2) { /* A guidance interval of t in [400, 600]: the row at t = 500 guided as before, the others
                       * the conditional output of the same pass, as it is. */
            float lim[B * 64];
            g.t_from = 400, g.t_to = 600, g.rescale = 0.5f;
            CHECK(d.eps(d.ctx, B, x, t, lim, &err) == 0, "%s", err.msg);
            CHECK(!memcmp(lim, g.out, D * sizeof *lim) && !memcmp(lim + 2 * D, g.out + 2 * D, D * sizeof *lim),
                  "outside the guidance interval: not the conditional output bit for bit");
            check_close("outside the guidance interval against eps_c", lim, ec, D, 1e-5f, 1e-4f);
            CHECK(memcmp(lim + D, out + D, D * sizeof *lim) != 0, "inside: the rescale changed nothing");
            g.rescale = 0;
            CHECK(d.eps(d.ctx, B, x, t, lim, &err) == 0, "%s", err.msg);
            CHECK(!memcmp(lim + D, out + D, D * sizeof *lim), "inside the guidance interval: not guided as before");
            /* With a B-row network for the calls entirely outside: those are plain conditioning bit for bit. */
            CHECK(unet_guided_plain(&g, u, &err) != 0, "a plain network of 2B rows: accepted");
            CHECK(unet_guided_plain(&g, u1, &err) == 0, "%s", err.msg); /* u1: B rows, the same weights */
            const float t_out[B] = {999, 700, 3};
            CHECK(d.eps(d.ctx, B, x, t_out, lim, &err) == 0, "%s", err.msg);
            float ec_out[B * 64];
            CHECK(unet_forward(u1, ec_out, x, t_out, y, NULL, &err) == 0, "%s", err.msg);
            CHECK(!memcmp(lim, ec_out, sizeof lim), "a call outside the interval: not the B-row conditional output");
            CHECK(d.eps(d.ctx, B, x, t, lim, &err) == 0, "%s", err.msg); /* one row inside: the 2B-row pass */
            CHECK(!memcmp(lim + D, out + D, D * sizeof *lim), "a call with a row inside: not guided as before");
        }
        unet_guided_free(&g);
        unet_free(u);
    }
    /* Guidance other than 1 needs a null class. */
    unet *u;
    denoiser d;
    unet_guided g;
    CHECK(folder_load(&u, "tests/fixtures/unet_c", 2 * B, 0, &err) == 0, "%s", err.msg);
    CHECK(unet_guided_denoiser(&d, &g, u, B, -1, 2.0f, &err) != 0 && strstr(err.msg, "null class"),
          "no null class: '%s'", err.msg);
    unet_free(u);
    unet_free(u1);
}

TEST_MAIN(test_timesteps, test_guidance, test_errors, test_matches_manual_loop, test_determinism, test_batch_independence,
          test_track_x0, test_dpm_parity, test_sample_range, test_raw_and_range, test_names)
