/* test_sampler.c -- the DDPM / DDIM sampling loops (src/diffusion/sampler.c) on
 * the tiny random U-Net of tests/fixtures/unet_b (8x8x1, T = 1000, fixed_small,
 * clip_sample). The single-step math is held against PyTorch in
 * test_diffusion.c; here the loop: its timesteps, that it equals a hand-written
 * loop over unet_forward + ddpm_step / ddim_step with the documented noise
 * streams, clipping, determinism, independence of the batch size, x_T
 * injection, progress reports and errors. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "diffusion/diffusion.h"
#include "diffusion/sampler.h"
#include "io/modelfolder.h"
#include "ops/ops.h"

#define MODEL "tests/fixtures/unet_b"

static schedule sched;
static size_t D; /* floats per image */

static unet *load(int batch) {
    unet *u = NULL;
    ddpm_err err;
    if (model_load(&u, MODEL, batch, 0, &err)) {
        fprintf(stderr, "cannot load %s: %s (run from the repository root)\n", MODEL, err.msg);
        exit(1);
    }
    D = (size_t)u->cfg.sample_size * u->cfg.sample_size * u->cfg.in_channels;
    if (!sched.T) {
        char *js = NULL;
        if (model_read_scheduler(MODEL, &js, &err) || !js || schedule_from_json(&sched, js, &err)) {
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

/* Runs the sampler over n images in batches of u->batch; returns 0 on success. */
static int run_batches(unet *u, const sampler_opts *o, int n, float *x, const float *x_T) {
    ddpm_err err;
    for (int first = 0; first < n; first += u->batch) {
        int m = n - first < u->batch ? n - first : u->batch;
        if (sampler_run(u, &sched, o, first, m, x + (size_t)first * D, x_T ? x_T + (size_t)first * D : NULL, NULL,
                        NULL, &err)) {
            fprintf(stderr, "  sampler_run: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static void test_timesteps(void) {
    unet *u = load(1);
    ddpm_err err;
    int ts[1000], prev[1000];
    sampler_opts o = {.ddim = 0, .steps = 10, .eta = 0, .seed = 0};
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
    sampler_opts d = {.ddim = 1, .steps = 50, .eta = 0, .seed = 0};
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
    unet_free(u);
}

static void test_errors(void) {
    unet *u = load(2);
    ddpm_err err;
    float *x = fbuf(3 * D);
    sampler_opts o = {.ddim = 0, .steps = 0, .eta = 0, .seed = 0};
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "steps"), "steps 0: %s", err.msg);
    o.steps = 1001;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "1..1000"), "steps > T: %s", err.msg);
    o.steps = 5, o.eta = 0.5f;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "DDIM"), "eta for ddpm: %s", err.msg);
    o.ddim = 1, o.eta = 1.5f;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "eta"), "eta > 1: %s", err.msg);
    o.eta = NAN;
    CHECK(sampler_check(&sched, &o, &err) == -1 && strstr(err.msg, "eta"), "eta NaN: %s", err.msg);
    o.eta = 0;
    CHECK(sampler_check(&sched, &o, &err) == 0, "ddim ok: %s", err.msg);
    CHECK(sampler_run(u, &sched, &o, 0, 3, x, NULL, NULL, NULL, &err) == -1 && strstr(err.msg, "batch 2"),
          "n > batch: %s", err.msg);
    CHECK(sampler_run(u, &sched, &o, 0, 0, x, NULL, NULL, NULL, &err) == -1, "n = 0");
    schedule off = sched;
    off.steps_offset = 200; /* "leading" 900 + 200 >= T */
    o.steps = 10;
    CHECK(sampler_check(&off, &o, &err) == -1 && strstr(err.msg, "timesteps"), "steps_offset: %s", err.msg);

    /* Non-finite values are errors, not crashes: in x_T, and from the network. */
    float *xT = fbuf(2 * D);
    xT[D + 5] = NAN;
    CHECK(sampler_run(u, &sched, &o, 10, 2, x, xT, NULL, NULL, &err) == -1 && strstr(err.msg, "non-finite") &&
              strstr(err.msg, "image 11") && strstr(err.msg, "element 5"), "NaN x_T: %s", err.msg);
    float keep = u->params[u->nparams - 1];
    u->params[u->nparams - 1] = INFINITY; /* conv_out's last bias: every output pixel */
    CHECK(sampler_run(u, &sched, &o, 0, 2, x, NULL, NULL, NULL, &err) == -1 && strstr(err.msg, "non-finite") &&
              strstr(err.msg, "network output at timestep 900"), "Inf weights: %s", err.msg);
    u->params[u->nparams - 1] = keep;
    float v[4] = {0, 1, -INFINITY, NAN};
    CHECK(sampler_check_finite("thing", v, 2, 2, 7, &err) == -1 && strstr(err.msg, "thing: 2 non-finite") &&
              strstr(err.msg, "image 8 at element 0"), "%s", err.msg);
    CHECK(sampler_check_finite("thing", v, 1, 2, 0, &err) == 0, "finite");
    free(x), free(xT);
    unet_free(u);
}

/* The sampler equals a hand-written loop with the noise streams of sampler.h. */
static void manual(unet *u, const sampler_opts *o, int first, int n, float *x) {
    ddpm_err err;
    int ts[64], prev[64];
    DDPM_ASSERT(o->steps <= 64 && n <= u->batch);
    CHECK(!sampler_timesteps(&sched, o, ts, prev, &err), "%s", err.msg);
    size_t B = (size_t)u->batch;
    float *xb = fbuf(B * D), *eb = fbuf(B * D), *z = fbuf(D), tt[64];
    for (int i = 0; i < n; i++) rng_normal(xb + i * D, D, o->seed, RNG_PRIOR, (uint64_t)(first + i));
    for (int k = 0; k < o->steps; k++) {
        for (size_t i = 0; i < B; i++) tt[i] = (float)ts[k];
        unet_forward(u, eb, xb, tt, NULL);
        for (int i = 0; i < n; i++) {
            rng_normal(z, D, o->seed, RNG_SAMPLE, rng_stream((uint64_t)ts[k], (uint64_t)(first + i)));
            if (o->ddim)
                ddim_step(&sched, ts[k], prev[k], o->eta, eb + i * D, xb + i * D, z, xb + i * D, NULL, D);
            else
                ddpm_step(&sched, ts[k], prev[k], eb + i * D, xb + i * D, z, xb + i * D, NULL, D);
        }
    }
    memcpy(x, xb, (size_t)n * D * sizeof(float));
    free(xb), free(eb), free(z);
}

typedef struct { int calls, last, total, ordered; } prog;
static void on_progress(void *ctx, int done, int total) {
    prog *p = ctx;
    p->ordered &= done == p->last + 1;
    p->calls++, p->last = done, p->total = total;
}

static void test_matches_manual_loop(void) {
    unet *u = load(3);
    ddpm_err err;
    float *a = fbuf(3 * D), *b = fbuf(3 * D);
    sampler_opts opts[3] = {{.ddim = 0, .steps = 8, .eta = 0, .seed = 5}, {.ddim = 1, .steps = 6, .eta = 0, .seed = 5}, {.ddim = 1, .steps = 6, .eta = 0.7f, .seed = 5}};
    const char *names[3] = {"ddpm K=8", "ddim K=6 eta=0", "ddim K=6 eta=0.7"};
    for (int c = 0; c < 3; c++) {
        prog p = {0, 0, 0, 1};
        /* images 4..6 of a larger run */
        CHECK(!sampler_run(u, &sched, &opts[c], 4, 3, a, NULL, on_progress, &p, &err), "%s", err.msg);
        manual(u, &opts[c], 4, 3, b);
        CHECK(same(a, b, 3 * D), "%s: sampler != hand-written loop", names[c]);
        CHECK(p.calls == opts[c].steps && p.total == opts[c].steps && p.ordered, "%s: progress %d calls of %d",
              names[c], p.calls, p.total);
        /* clip_sample with range 1: the last step returns the clipped x0 prediction, so x is in [-1, 1]. */
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
    ddpm_err err;
    float *a = fbuf(4 * D), *b = fbuf(4 * D), *xT = fbuf(4 * D);
    sampler_opts o = {.ddim = 0, .steps = 6, .eta = 0, .seed = 42};
    CHECK(!sampler_run(u, &sched, &o, 0, 4, a, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!sampler_run(u, &sched, &o, 0, 4, b, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, b, 4 * D), "ddpm: same seed, different result");
    o.seed = 43;
    CHECK(!sampler_run(u, &sched, &o, 0, 4, b, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!same(a, b, 4 * D), "ddpm: a different seed gave the same images");

    /* An explicit x_T equal to the drawn one gives the same result; x may alias x_T. */
    o.seed = 42;
    sampler_prior(42, 0, 4, D, xT);
    CHECK(!sampler_run(u, &sched, &o, 0, 4, xT, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, xT, 4 * D), "ddpm: x_T = prior differs from drawing it");

    /* DDIM with eta = 0 is a deterministic function of x_T: the seed does not matter. */
    sampler_opts d = {.ddim = 1, .steps = 5, .eta = 0, .seed = 1};
    sampler_prior(99, 0, 4, D, xT);
    CHECK(!sampler_run(u, &sched, &d, 0, 4, a, xT, NULL, NULL, &err), "%s", err.msg);
    d.seed = 2;
    CHECK(!sampler_run(u, &sched, &d, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(same(a, b, 4 * D), "ddim eta=0 depends on the seed");
    /* ... but with eta > 0 it does. */
    d.eta = 1;
    CHECK(!sampler_run(u, &sched, &d, 0, 4, a, xT, NULL, NULL, &err), "%s", err.msg);
    d.seed = 1;
    CHECK(!sampler_run(u, &sched, &d, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(!same(a, b, 4 * D), "ddim eta=1 ignores the seed");
    /* DDPM (stochastic) from the same x_T with different seeds differs. */
    o.seed = 7;
    CHECK(!sampler_run(u, &sched, &o, 0, 4, a, xT, NULL, NULL, &err), "%s", err.msg);
    o.seed = 8;
    CHECK(!sampler_run(u, &sched, &o, 0, 4, b, xT, NULL, NULL, &err), "%s", err.msg);
    CHECK(!same(a, b, 4 * D), "ddpm from a fixed x_T ignores the seed");
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
    sampler_opts opts[2] = {{.ddim = 0, .steps = 6, .eta = 0, .seed = 3}, {.ddim = 1, .steps = 5, .eta = 0.5f, .seed = 3}};
    for (int ref = 1; ref >= 0; ref--) {
        ops_set_reference(ref);
        unet *u6 = load(6), *u2 = load(2), *u4 = load(4);
        for (int k = 0; k < 2; k++) {
            CHECK(!run_batches(u6, &opts[k], N, a, NULL), "batch 6");
            CHECK(!run_batches(u2, &opts[k], N, b, NULL), "batch 2");
            /* batch-4 network, two calls of 3 images (one padding row each) */
            ddpm_err err;
            CHECK(!sampler_run(u4, &sched, &opts[k], 0, 3, c, NULL, NULL, NULL, &err), "%s", err.msg);
            CHECK(!sampler_run(u4, &sched, &opts[k], 3, 3, c + 3 * D, NULL, NULL, NULL, &err), "%s", err.msg);
            char what[96];
            if (ref) {
                CHECK(same(a, b, N * D), "%s reference ops: batch 6 != batch 2", k ? "ddim" : "ddpm");
                CHECK(same(a, c, N * D), "%s reference ops: batch 6 != 3+3 padded", k ? "ddim" : "ddpm");
            }
            snprintf(what, sizeof what, "%s %s: batch 6 vs 2", k ? "ddim" : "ddpm", ref ? "reference" : "oneDNN");
            check_close(what, b, a, N * D, 1e-4, 0);
            snprintf(what, sizeof what, "%s %s: batch 6 vs 3+3 padded", k ? "ddim" : "ddpm", ref ? "reference" : "oneDNN");
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
    ddpm_err err;
    int all[8], ts[3];
    sampler_opts plain = {.ddim = 0, .steps = 8, .eta = 0, .seed = 9};
    CHECK(!sampler_timesteps(&sched, &plain, all, NULL, &err), "%s", err.msg);
    ts[0] = all[0], ts[1] = all[4], ts[2] = all[7]; /* the last visited timestep is 0 */
    CHECK(ts[2] == 0, "last timestep %d", ts[2]);
    float *x = fbuf(2 * D), *tr = fbuf(3 * 2 * D);
    for (size_t k = 0; k < 3 * 2 * D; k++) tr[k] = NAN;
    sampler_opts o = {.ddim = 0, .steps = 8, .eta = 0, .seed = 9, .ntrack = 3, .track_t = ts, .track_x0 = tr};
    CHECK(!sampler_run(u, &sched, &o, 0, 2, x, NULL, NULL, NULL, &err), "%s", err.msg);
    int finite = 1;
    for (size_t k = 0; k < 3 * 2 * D; k++) finite &= isfinite(tr[k]) && fabsf(tr[k]) <= 1.0f;
    CHECK(finite, "every tracked x0 written, finite and clipped to [-1, 1]");
    CHECK(!memcmp(tr + 2 * 2 * D, x, sizeof(float) * 2 * D), "x0 tracked at t = 0 equals the sample");
    CHECK(memcmp(tr, tr + 2 * 2 * D, sizeof(float) * 2 * D) != 0, "x0 at the first timestep differs from the result");
    /* start_from = T runs every step: the same result. */
    float *y = fbuf(2 * D);
    sampler_opts full = plain;
    full.start_from = sched.T;
    CHECK(!sampler_run(u, &sched, &plain, 0, 2, x, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!sampler_run(u, &sched, &full, 0, 2, y, NULL, NULL, NULL, &err), "%s", err.msg);
    CHECK(!memcmp(x, y, sizeof(float) * 2 * D), "start_from = T changes the result");
    free(x), free(y), free(tr);
    unet_free(u);
}

TEST_MAIN(test_timesteps, test_errors, test_matches_manual_loop, test_determinism, test_batch_independence,
          test_track_x0)
