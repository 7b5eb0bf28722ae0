/* test_api.c -- the public API's models, sampling, likelihood, data-set and
 * image-file sections (include/ddpm.h), through ddpm.h alone: loading the
 * fixture model folder tests/fixtures/unet_b (8x8x1), eps of a batch against
 * eps image by image (and DDPM_ERR_NOMEM when the network's temporaries run
 * out), sampling with a cancelling progress callback, the
 * statuses and messages of bad options and a missing folder, and .npy/.png
 * round trips. Run from the repository root. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ddpm.h"

#define FIXTURE "tests/fixtures/unet_b"

/* The internal test knob of src/exec/executor.h (tests link the internal
 * archive): the workers' buffers fail above `bytes` (0: no limit). */
void exec_set_buffer_limit(size_t bytes);

static char tmp[64]; /* this run's scratch folder */

static void scratch(void) {
    if (tmp[0]) return;
    snprintf(tmp, sizeof tmp, "/tmp/ddpm_test_api_XXXXXX");
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
}

static void test_load(void) {
    ddpm_model *m = NULL;
    int st = ddpm_model_load("/nonexistent/model", &m);
    CHECK(st == DDPM_ERR_INPUT && m == NULL, "missing folder: status %d (%s)", st, ddpm_status_name(st));
    CHECK(strstr(ddpm_errmsg(NULL), "/nonexistent/model") != NULL, "message: %s", ddpm_errmsg(NULL));
    st = ddpm_model_load(NULL, &m);
    CHECK(st == DDPM_ERR_ARG, "NULL folder: status %d", st);

    CHECK((st = ddpm_model_load(FIXTURE, &m)) == DDPM_OK, "%s", ddpm_errmsg(NULL));
    if (st) return;
    ddpm_model_info mi;
    CHECK(ddpm_model_get_info(m, &mi) == DDPM_OK, "get_info");
    CHECK(mi.sample_size == 8 && mi.in_channels == 1 && mi.out_channels == 1 && mi.num_class_embeds == 0 &&
              mi.null_class == -1 && mi.num_train_timesteps == 1000 && mi.has_scheduler == 1 &&
              mi.num_parameters > 0 && mi.flops_per_image > 0,
          "info: %d %d %d %d %d %d %d %zu", mi.sample_size, mi.in_channels, mi.out_channels, mi.num_class_embeds,
          mi.null_class, mi.num_train_timesteps, mi.has_scheduler, mi.num_parameters);
    CHECK(strstr(ddpm_model_config_json(m), "\"sample_size\"") && strstr(ddpm_model_scheduler_json(m),
                                                                           "num_train_timesteps"),
          "config texts");
    CHECK(ddpm_model_class_name(m, 0) == NULL && ddpm_model_find_class(m, "0") == -1, "no classes");
    const char *step = "x", *opts = "x";
    CHECK(ddpm_model_run_state(m, &step, &opts) == DDPM_OK && !step && !opts, "not a run folder");
    ddpm_model_free(m);
    ddpm_model_free(NULL);
}

/* eps of 3 images in one call equals each image alone (up to the network's rounding). */
static void test_eps(void) {
    ddpm_model *m = NULL;
    if (ddpm_model_load(FIXTURE, &m)) {
        CHECK(0, "%s", ddpm_errmsg(NULL));
        return;
    }
    enum { N = 3, D = 64 };
    float x[N * D], e[N * D], one[D];
    int32_t t[N] = {10, 500, 999};
    for (int i = 0; i < N * D; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    CHECK(ddpm_model_eps(m, N, x, t, NULL, e) == DDPM_OK, "%s", ddpm_errmsg(m));
    for (int i = 0; i < N; i++) {
        CHECK(ddpm_model_eps(m, 1, x + i * D, t + i, NULL, one) == DDPM_OK, "%s", ddpm_errmsg(m));
        char what[64];
        snprintf(what, sizeof what, "eps of image %d alone vs in the batch", i);
        check_close(what, one, e + i * D, D, 1e-4, 1e-4);
    }
    int32_t bad_t = 1000;
    int st = ddpm_model_eps(m, 1, x, &bad_t, NULL, one);
    CHECK(st == DDPM_ERR_ARG && strstr(ddpm_errmsg(m), "outside the model's schedule"), "t = 1000: %d %s", st,
          ddpm_errmsg(m));
    /* Out of memory for the network's temporaries: a status, not an exit; then the same bits again. */
    float again[N * D];
    exec_set_buffer_limit(1);
    st = ddpm_model_eps(m, N, x, t, NULL, again);
    exec_set_buffer_limit(0);
    CHECK(st == DDPM_ERR_NOMEM && strstr(ddpm_errmsg(m), "out of memory"), "no temporaries: %d %s", st,
          ddpm_errmsg(m));
    CHECK(ddpm_model_eps(m, N, x, t, NULL, again) == DDPM_OK, "%s", ddpm_errmsg(m));
    CHECK(!memcmp(again, e, sizeof e), "eps after running out of memory differs");
    ddpm_model_free(m);
}

static int cancel_at_3(void *ctx, long long done, long long total) {
    long long *calls = ctx;
    (*calls)++;
    return done >= 3 && total > 0;
}

static void test_sample(void) {
    ddpm_model *m = NULL;
    if (ddpm_model_load(FIXTURE, &m)) {
        CHECK(0, "%s", ddpm_errmsg(NULL));
        return;
    }
    float x[4 * 64];
    ddpm_sample_options o;
    ddpm_sample_options_init(&o);
    o.steps = 4;
    o.seed = 5;
    ddpm_sample_report rep;
    CHECK(ddpm_sample(m, &o, 4, x, &rep) == DDPM_OK, "%s", ddpm_errmsg(m));
    float lo = 0, hi = 0;
    for (int i = 0; i < 4 * 64; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    CHECK(lo >= -1 && hi <= 1 && hi > lo && rep.images == 4 && rep.pixels == 256, "samples in [%g, %g], %lld images",
          lo, hi, rep.images);
    /* the same images in batches of 1 (the same noise; equal up to the network's rounding) */
    float y[4 * 64];
    o.batch = 1;
    CHECK(ddpm_sample(m, &o, 4, y, NULL) == DDPM_OK, "%s", ddpm_errmsg(m));
    check_close("batch 1 vs batch 4", y, x, 4 * 64, 1e-3, 1e-3);

    /* a progress callback that cancels */
    long long calls = 0;
    o.progress = cancel_at_3, o.progress_ctx = &calls;
    int st = ddpm_sample(m, &o, 4, x, NULL);
    CHECK(st == DDPM_ERR_CANCELLED && calls == 3, "cancel: status %d after %lld calls", st, calls);

    /* bad options: DDPM_ERR_ARG with a message naming the option */
    ddpm_sample_options_init(&o);
    o.steps = 5000;
    st = ddpm_sample(m, &o, 1, x, NULL);
    CHECK(st == DDPM_ERR_ARG && strstr(ddpm_errmsg(NULL), "steps 5000 is out of range"), "steps: %d %s", st,
          ddpm_errmsg(NULL));
    ddpm_sample_options_init(&o);
    o.eta = 0.5f;
    st = ddpm_sample_check(m, &o);
    CHECK(st == DDPM_ERR_ARG && strstr(ddpm_errmsg(NULL), "eta"), "eta: %d %s", st, ddpm_errmsg(NULL));
    ddpm_sample_options_init(&o);
    static const int32_t cls[1] = {0};
    o.classes = cls;
    st = ddpm_sample_check(m, &o);
    CHECK(st == DDPM_ERR_ARG && strstr(ddpm_errmsg(m), "unconditional"), "classes: %d %s", st, ddpm_errmsg(m));
    ddpm_sample_options_init(&o);
    CHECK(o.guidance_interval[0] == DDPM_GUIDANCE_INTERVAL_LO && o.guidance_interval[1] == DDPM_GUIDANCE_INTERVAL_HI,
          "the default guidance interval");
    o.guidance_interval[0] = o.guidance_interval[1] = 0; /* a zeroed struct's: empty */
    st = ddpm_sample_check(m, &o);
    CHECK(st == DDPM_ERR_ARG && strstr(ddpm_errmsg(m), "guidance_interval (0, 0]"), "guidance_interval: %d %s", st,
          ddpm_errmsg(m));
    ddpm_sample_options_init(&o);
    CHECK(ddpm_sample(m, &o, 0, x, NULL) == DDPM_ERR_ARG, "n = 0");
    char desc[128];
    ddpm_sample_options_init(&o);
    o.sampler = DDPM_SAMPLER_DDIM;
    ddpm_sample_describe(m, &o, desc, sizeof desc);
    CHECK(!strncmp(desc, "ddim, 20 steps", 14), "describe: %s", desc);
    ddpm_sampler s;
    CHECK(ddpm_sampler_parse("dpm++2m", &s) == DDPM_OK && s == DDPM_SAMPLER_DPMPP_2M &&
              !strcmp(ddpm_sampler_name(s), "dpm++2m") && ddpm_sampler_parse("foo", &s) == DDPM_ERR_ARG,
          "sampler names");
    ddpm_model_free(m);
}

static void test_nll(void) {
    ddpm_model *m = NULL;
    if (ddpm_model_load(FIXTURE, &m)) {
        CHECK(0, "%s", ddpm_errmsg(NULL));
        return;
    }
    float x[2 * 64];
    for (int i = 0; i < 2 * 64; i++) x[i] = (float)((i * 91) % 256) / 127.5f - 1.0f;
    double bpd[2], bpd1;
    double *terms = malloc(sizeof(double) * 2 * 1001);
    CHECK(ddpm_nll(m, 2, x, NULL, 2, 0, bpd, terms, NULL, NULL, NULL) == DDPM_OK, "%s", ddpm_errmsg(m));
    double sum = 0;
    for (int t = 0; t <= 1000; t++) sum += terms[t];
    CHECK(bpd[0] > 0 && fabs(sum / (64 * log(2.0)) - bpd[0]) < 1e-9, "bpd %g, terms give %g", bpd[0],
          sum / (64 * log(2.0)));
    /* image 1 in a batch of its own (noise keyed by its index 0 now, so only sanity) */
    CHECK(ddpm_nll(m, 1, x, NULL, 1, 0, &bpd1, NULL, NULL, NULL, NULL) == DDPM_OK && fabs(bpd1 - bpd[0]) < 1e-3,
          "image 0 alone: %g vs %g", bpd1, bpd[0]);
    free(terms);
    ddpm_model_free(m);
}

static void test_files(void) {
    scratch();
    char p[256];
    /* npy: the bits back */
    float a[2 * 3 * 4], *b = NULL;
    for (int i = 0; i < 24; i++) a[i] = (float)i * 0.25f - 3.0f;
    int64_t shape[3] = {2, 3, 4}, sh[DDPM_NPY_MAX_DIMS];
    int nd = 0;
    snprintf(p, sizeof p, "%s/a.npy", tmp);
    CHECK(ddpm_npy_write(p, a, 3, shape) == DDPM_OK, "%s", ddpm_errmsg(NULL));
    ddpm_dtype dt = DDPM_DTYPE_U8;
    CHECK(ddpm_npy_read(p, &b, &nd, sh, &dt) == DDPM_OK && dt == DDPM_DTYPE_F32 && nd == 3 && sh[0] == 2 && sh[1] == 3 && sh[2] == 4 && b &&
              !memcmp(a, b, sizeof a),
          "npy round trip");
    ddpm_free(b);
    snprintf(p, sizeof p, "%s/missing.npy", tmp);
    b = NULL;
    int st = ddpm_npy_read(p, &b, &nd, sh, NULL);
    CHECK(st == DDPM_ERR_INPUT && strstr(ddpm_errmsg(NULL), "missing.npy"), "missing npy: %d %s", st,
          ddpm_errmsg(NULL));
    /* png: an RGB image of pixel values comes back exactly */
    float img[3 * 5 * 7], *r = NULL;
    for (int i = 0; i < 105; i++) img[i] = (float)((i * 53) % 256) / 127.5f - 1.0f;
    snprintf(p, sizeof p, "%s/a.png", tmp);
    CHECK(ddpm_png_write(p, img, 3, 5, 7) == DDPM_OK, "%s", ddpm_errmsg(NULL));
    int c = 0, h = 0, w = 0;
    CHECK(ddpm_png_read(p, &r, &c, &h, &w) == DDPM_OK && c == 3 && h == 5 && w == 7 && r &&
              !memcmp(r, img, sizeof img),
          "png round trip: %dx%dx%d", h, w, c);
    ddpm_free(r);
    /* a grid of 5 gray 4x4 images: 3 columns, 1-pixel gaps */
    float g[5 * 16];
    for (int i = 0; i < 80; i++) g[i] = (float)((i * 29) % 256) / 127.5f - 1.0f; /* pixel values */
    snprintf(p, sizeof p, "%s/grid.png", tmp);
    r = NULL;
    CHECK(ddpm_png_write_grid(p, g, 5, 1, 4, 4, 0, 1) == DDPM_OK && ddpm_png_read(p, &r, &c, &h, &w) == DDPM_OK &&
              c == 1 && w == 3 * 4 + 2 && h == 2 * 4 + 1,
          "grid: %dx%dx%d", h, w, c);
    ddpm_free(r);
    snprintf(p, sizeof p, "%s/d/e/f", tmp);
    CHECK(ddpm_make_dirs(p) == DDPM_OK && access(p, F_OK) == 0, "make_dirs");
    snprintf(p, sizeof p, "%s/a.npy/x", tmp);
    CHECK(ddpm_make_dirs(p) == DDPM_ERR_IO, "make_dirs over a file");

    /* a data set: a folder of the PNGs written above */
    snprintf(p, sizeof p, "%s/imgs", tmp);
    CHECK(ddpm_make_dirs(p) == DDPM_OK, "make_dirs");
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/imgs/%d.png", tmp, i);
        CHECK(ddpm_png_write(p, g + i * 16, 1, 4, 4) == DDPM_OK, "%s", ddpm_errmsg(NULL));
    }
    snprintf(p, sizeof p, "%s/imgs", tmp);
    ddpm_dataset *d = NULL;
    CHECK(ddpm_dataset_load(p, DDPM_SPLIT_TEST, 0, &d) == DDPM_OK, "%s", ddpm_errmsg(NULL));
    if (d) {
        ddpm_dataset_info di;
        float x[3 * 16];
        int32_t lab[3];
        CHECK(ddpm_dataset_get_info(d, &di) == DDPM_OK && di.n == 3 && di.channels == 1 && di.height == 4 &&
                  di.width == 4 && di.num_classes == 0,
              "dataset info");
        CHECK(ddpm_dataset_images(d, 0, 3, x, lab) == DDPM_OK && lab[0] == -1, "images");
        CHECK(!memcmp(x, g, sizeof x), "data set images differ from the PNGs written");
        CHECK(ddpm_dataset_images(d, 2, 2, x, NULL) == DDPM_ERR_ARG, "out of range");
        ddpm_dataset_free(d);
    }
    snprintf(p, sizeof p, "%s/none", tmp);
    CHECK(ddpm_dataset_load(p, DDPM_SPLIT_TEST, 0, &d) == DDPM_ERR_INPUT && d == NULL, "missing data");
}

static void test_cleanup(void) {
    if (!tmp[0]) return;
    char a[128];
    snprintf(a, sizeof a, "rm -rf '%s'", tmp);
    CHECK(system(a) == 0, "%s", a);
}

TEST_MAIN(test_load, test_eps, test_sample, test_nll, test_files, test_cleanup)
