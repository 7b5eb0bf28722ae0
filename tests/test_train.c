/* test_train.c -- the training loop: a tiny model overfits a tiny data set,
 * the weights are the same bits with 1 and 2 threads, a run resumed from a
 * checkpoint equals an uninterrupted one bit for bit, a non-finite loss (or
 * running out of memory for the network's temporaries) stops without touching
 * the weights, and the options survive their JSON form. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/rng.h"
#include "core/threads.h"
#include "exec/executor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "train/trainer.h"

/* Tiny network: 8x8x1, two levels, attention at the 4x4 level. */
static unet_config tiny_config(float dropout) {
    unet_config c;
    err_t err;
    int rc = unet_config_preset(&c, "fmnist-small", &err);
    CHECK(rc == 0, "preset: %s", err.msg);
    c.sample_size = 8;
    c.levels = 2;
    c.block_out[0] = 8, c.block_out[1] = 16;
    c.down_attn[0] = 0, c.down_attn[1] = 1;
    c.up_attn[0] = 1, c.up_attn[1] = 0;
    c.layers_per_block = 1;
    c.norm_groups = 4;
    c.dropout = dropout;
    return c;
}

/* n images of smooth blobs, 8x8x1. */
static dataset tiny_data(int n) {
    dataset d = {.n = n, .h = 8, .w = 8, .c = 1, .pixels = malloc((size_t)n * 64), .desc = "tiny"};
    for (int i = 0; i < n; i++)
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                double cx = 2 + (i * 3) % 5, cy = 2 + (i * 5) % 5;
                double v = exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / 4.0);
                d.pixels[(size_t)i * 64 + y * 8 + x] = (uint8_t)(255 * v);
            }
    return d;
}

static train_opts tiny_opts(int batch) {
    train_opts o = train_opts_default();
    o.batch = batch;
    o.seed = 7;
    o.lr = 2e-3;
    o.warmup = 5;
    o.ema = 0.99;
    o.flip = 1;
    return o;
}

static void make(trainer *tr, dataset *d, int batch, float dropout) {
    unet_config c = tiny_config(dropout);
    schedule s;
    err_t err;
    CHECK(schedule_init(&s, "linear", 100, 1e-4, 0.02 * 10, &err) == 0, "schedule: %s", err.msg);
    train_opts o = tiny_opts(batch);
    int rc = trainer_init(tr, &c, &s, d, &o, &err);
    CHECK(rc == 0, "trainer_init: %s", err.msg);
    schedule_free(&s);
}

/* make() with a prediction type, an lr schedule (horizon total) and a loss weight. */
static void make_with(trainer *tr, dataset *d, int batch, float dropout, int prediction, int lr_schedule,
                      long long total, int weight) {
    unet_config c = tiny_config(dropout);
    schedule s;
    err_t err;
    CHECK(schedule_init(&s, "linear", 100, 1e-4, 0.02 * 10, &err) == 0, "schedule: %s", err.msg);
    s.prediction = prediction;
    train_opts o = tiny_opts(batch);
    o.lr_schedule = lr_schedule, o.lr_total = total, o.loss_weight = weight;
    int rc = trainer_init(tr, &c, &s, d, &o, &err);
    CHECK(rc == 0, "trainer_init: %s", err.msg);
    schedule_free(&s);
}

static void run(trainer *tr, int steps) {
    err_t err;
    for (int i = 0; i < steps; i++) {
        int rc = trainer_step(tr, &err);
        CHECK(rc == 0, "step %d: %s", i, err.msg);
        if (rc) return;
    }
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void check_same_state(const trainer *a, const trainer *b, const char *what) {
    size_t P = a->u->nparams;
    CHECK(a->step == b->step, "%s: step %lld vs %lld", what, (long long)a->step, (long long)b->step);
    CHECK(same_bits(a->u->params, b->u->params, P), "%s: weights differ", what);
    CHECK(same_bits(a->ema, b->ema, P), "%s: EMA weights differ", what);
    CHECK(same_bits(a->m, b->m, P) && same_bits(a->v, b->v, P), "%s: Adam moments differ", what);
    printf("  %s: %zu parameters, bitwise equal after %lld steps: %s\n", what, P, (long long)a->step,
           same_bits(a->u->params, b->u->params, P) ? "yes" : "NO");
}

static void test_overfit(void) {
    dataset d = tiny_data(4);
    trainer tr;
    make(&tr, &d, 4, 0.0f);
    double first = 0, last = 0;
    int steps = 400, win = 40;
    err_t err;
    for (int i = 0; i < steps; i++) {
        int rc = trainer_step(&tr, &err);
        CHECK(rc == 0, "step %d: %s", i, err.msg);
        if (rc) break;
        if (i < win) first += tr.loss / win;
        if (i >= steps - win) last += tr.loss / win;
    }
    printf("  mean loss of the first %d steps %.4f, of the last %d steps %.4f (factor %.1f)\n", win, first, win, last,
           first / last);
    CHECK(first / last >= 4.0, "loss fell only by %.2f (from %.4f to %.4f), expected >= 4", first / last, first, last);
    trainer_free(&tr);
    dataset_free(&d);
}

static void test_threads(void) {
    dataset d = tiny_data(24);
    trainer a, b;
    thread_set_count(1);
    make(&a, &d, 16, 0.1f);
    run(&a, 4);
    thread_set_count(2);
    make(&b, &d, 16, 0.1f);
    run(&b, 4);
    CHECK(a.u->nshards >= 2, "batch 16 should be sharded");
    check_same_state(&a, &b, "1 vs 2 threads");
    CHECK(a.loss == b.loss, "loss %.17g vs %.17g", a.loss, b.loss);
    trainer_free(&a);
    trainer_free(&b);
    thread_set_count(0);
    dataset_free(&d);
}

/* 6 steps against 3, a save, a resume and 3 more, for a run of prediction
 * type, lr schedule (horizon total) and loss weight: the same bits, with the
 * options recorded by the state; then the state truncated: an error, not a
 * crash. */
static void check_resume(dataset *d, int prediction, int lr_schedule, long long total, int weight, const char *what) {
    char dir[] = "/tmp/ddpm_test_train_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    trainer full, half, resumed;
    make_with(&full, d, 8, 0.1f, prediction, lr_schedule, total, weight);
    run(&full, 6);
    make_with(&half, d, 8, 0.1f, prediction, lr_schedule, total, weight);
    run(&half, 3);
    err_t err;
    CHECK(trainer_save(&half, dir, &err) == 0, "save: %s", err.msg);
    trainer_free(&half);

    train_opts o;
    int64_t step;
    char *cj = NULL, *sj = NULL, path[512];
    snprintf(path, sizeof path, "%s/%s", dir, TRAIN_STATE_FILE);
    int rc = trainer_read_run(path, &o, &step, &cj, &sj, &err);
    CHECK(rc == 0, "read run: %s", err.msg);
    if (rc) return;
    unet_config c;
    schedule s;
    CHECK(unet_config_from_json(&c, cj, &err) == 0 && schedule_from_json(&s, sj, &err) == 0, "json: %s", err.msg);
    CHECK(step == 3 && o.batch == 8 && o.seed == 7 && o.lr == 2e-3 && o.flip == 1 && o.lr_schedule == lr_schedule &&
              o.lr_total == total && o.loss_weight == weight && s.prediction == prediction,
          "%s: the options round trip", what);
    CHECK(trainer_init(&resumed, &c, &s, d, &o, &err) == 0, "init: %s", err.msg);
    CHECK(trainer_load(&resumed, path, &err) == 0, "load: %s", err.msg);
    if (total > 0) trainer_set_horizon(&resumed, total); /* ddpm train on a resume with the same --steps: no change */
    run(&resumed, 3);
    check_same_state(&full, &resumed, what);

    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    CHECK(truncate(path, len / 2) == 0, "truncate");
    CHECK(trainer_load(&resumed, path, &err) == -1, "a truncated state should fail to load");
    printf("  truncated state: %s\n", err.msg);

    free(cj), free(sj);
    schedule_free(&s);
    trainer_free(&full);
    trainer_free(&resumed);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

static void test_resume(void) {
    dataset d = tiny_data(10); /* 10 images, batch 8: epochs cross batch boundaries */
    check_resume(&d, SCHED_PRED_EPSILON, TRAIN_LR_CONSTANT, 0, TRAIN_WEIGHT_NONE, "6 steps vs 3 + resume + 3");
    dataset_free(&d);
}

/* Issue 24's options: the lr factor of each schedule, a horizon moved mid-run
 * (the rate stays continuous and reaches zero after the new horizon), the
 * Min-SNR weights of each prediction type, and a v-prediction run with a
 * cosine schedule and Min-SNR weights resumed to the same bits. */
static void test_schedules(void) {
    train_opts o = train_opts_default();
    CHECK(train_lr_factor(&o, 5) == 1.0, "constant: 1");
    o.lr_schedule = TRAIN_LR_LINEAR;
    CHECK(train_lr_factor(&o, 5) == 1.0, "no horizon yet: 1");
    o.lr_total = 9;
    CHECK(fabs(train_lr_factor(&o, 5) - 0.5) < 1e-15 && train_lr_factor(&o, 10) == 0 && train_lr_factor(&o, 0) == 1,
          "linear: 1 - k/(total+1)");
    o.lr_schedule = TRAIN_LR_COSINE;
    CHECK(fabs(train_lr_factor(&o, 5) - 0.5) < 1e-15 && train_lr_factor(&o, 10) == 0 && train_lr_factor(&o, 9) > 0,
          "cosine: (1 + cos(pi k/(total+1)))/2");
    /* --time's horizon, estimated every 100 steps (first the --steps default), 100 steps off either way of the
     * true end at 2000: the rate follows the one-budget cosine to 2000 (a restart of the cosine from each
     * estimate, flat at first, lagged it by up to 0.58 of the peak). */
    trainer est = {0};
    est.o = o, est.o.lr_total = 0;
    trainer_set_horizon(&est, 800000);
    double worst = 0;
    for (long long k = 0; k <= 2000; k++) {
        est.step = k;
        if (k % 100 == 20) trainer_set_horizon(&est, (k / 100) % 2 ? 2100 : 1900);
        double ideal = 0.5 * (1 + cos(M_PI * (double)k / 2001)), d = fabs(train_lr_factor(&est.o, k) - ideal);
        worst = d > worst ? d : worst;
    }
    CHECK(worst < 0.03 && train_lr_factor(&est.o, 2101) == 0, "an estimated horizon: %g of the peak from the cosine "
          "to the true end", worst);

    dataset d = tiny_data(10);
    trainer tr;
    make_with(&tr, &d, 8, 0.0f, SCHED_PRED_V, TRAIN_LR_COSINE, 20, TRAIN_WEIGHT_MIN_SNR);
    run(&tr, 6);
    double before = train_lr_factor(&tr.o, 6), next = train_lr_factor(&tr.o, 7);
    trainer_set_horizon(&tr, 40);
    CHECK(train_lr_factor(&tr.o, 6) == before && tr.o.lr_k0 == 6 && train_lr_factor(&tr.o, 7) > next &&
              train_lr_factor(&tr.o, 41) == 0 && train_lr_factor(&tr.o, 40) > 0,
          "a new horizon: continuous at step 6 (%g), slower after, zero after 40", before);
    run(&tr, 1);
    CHECK(fabs(tr.lr - tr.o.lr * train_lr_factor(&tr.o, 7)) < 1e-12, "the step's lr is the schedule's: %g", tr.lr);
    for (int i = 0; i < tr.local; i++) {
        double ab = tr.sched.alphas_cumprod[tr.ti[i]], snr = ab / (1 - ab), m = snr < 5 ? snr : 5;
        CHECK(fabsf(tr.w[i] - (float)(m / (snr + 1))) < 1e-6f, "v, min-snr: image %d, t %d: weight %g", i, tr.ti[i],
              tr.w[i]);
    }
    trainer_free(&tr);
    for (int p = SCHED_PRED_EPSILON; p <= SCHED_PRED_SAMPLE; p++) {
        make_with(&tr, &d, 8, 0.0f, p, TRAIN_LR_CONSTANT, 0, TRAIN_WEIGHT_MIN_SNR);
        run(&tr, 1);
        for (int i = 0; i < tr.local; i++) {
            double ab = tr.sched.alphas_cumprod[tr.ti[i]], snr = ab / (1 - ab), m = snr < 5 ? snr : 5;
            double w = p == SCHED_PRED_EPSILON ? m / snr : m;
            CHECK(fabsf(tr.w[i] - (float)w) < 1e-6f * (float)(w > 1 ? w : 1), "%s, min-snr: t %d: weight %g, not %g",
                  schedule_prediction_name(p), tr.ti[i], tr.w[i], w);
        }
        trainer_free(&tr);
    }

    check_resume(&d, SCHED_PRED_V, TRAIN_LR_COSINE, 8, TRAIN_WEIGHT_MIN_SNR,
                 "v, cosine, min-snr: 6 steps vs 3 + resume + 3");
    dataset_free(&d);

    /* The options' JSON: round trip, and names that are not valid. */
    o = train_opts_default();
    o.lr_schedule = TRAIN_LR_LINEAR, o.lr_total = 99, o.lr_k0 = 7, o.lr_s0 = 0.25, o.loss_weight = TRAIN_WEIGHT_MIN_SNR;
    o.snr_gamma = 3;
    char *j = train_opts_to_json(&o);
    train_opts back;
    err_t err;
    CHECK(train_opts_from_json(&back, j, &err) == 0 && back.lr_schedule == TRAIN_LR_LINEAR && back.lr_total == 99 &&
              back.lr_k0 == 7 && back.lr_s0 == 0.25 && back.loss_weight == TRAIN_WEIGHT_MIN_SNR && back.snr_gamma == 3,
          "schedule round trip: %s", j);
    char *at = strstr(j, "linear");
    if (at) memcpy(at, "lenear", 6);
    CHECK(train_opts_from_json(&back, j, &err) == -1 && strstr(err.msg, "lr_schedule"), "an unknown schedule: %s",
          err.msg);
    free(j);
}

/* Flips a bit in the middle of tensor name's data in the safetensors file at path. */
static void corrupt_tensor(const char *path, const char *name) {
    st_file f;
    err_t err;
    CHECK(st_open(&f, path, &err) == 0, "%s", err.msg);
    const st_tensor *t = st_find(&f, name);
    long off = t ? (long)(f.data - f.buf) + (long)(t->begin + t->end) / 2 : 0;
    st_close(&f);
    FILE *fp = fopen(path, "r+b");
    int c = fp && fseek(fp, off, SEEK_SET) == 0 ? fgetc(fp) : EOF;
    CHECK(t && c != EOF && fseek(fp, off, SEEK_SET) == 0 && fputc(c ^ 0x04, fp) != EOF, "corrupting %s", path);
    if (fp) fclose(fp);
}

static int64_t state_step(const char *path) {
    train_opts o;
    int64_t step = -1;
    char *cj = NULL, *sj = NULL;
    err_t err;
    CHECK(trainer_read_run(path, &o, &step, &cj, &sj, &err) == 0, "%s", err.msg);
    free(cj), free(sj);
    return step;
}

/* The previous state: each save keeps the one before; a corrupt latest
 * state (checksum) is passed over for it, and the run resumed from it ends
 * the same bits as one never interrupted; with both corrupt, the error names
 * both files. */
static void test_prev_state(void) {
    dataset d = tiny_data(10);
    char dir[] = "/tmp/ddpm_test_train_XXXXXX", latest[512], prev[512], path[512];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(latest, sizeof latest, "%s/%s", dir, TRAIN_STATE_FILE);
    snprintf(prev, sizeof prev, "%s/%s", dir, TRAIN_STATE_PREV_FILE);
    trainer full, tr, resumed;
    err_t err, why;
    make(&full, &d, 8, 0.1f);
    run(&full, 6);
    make(&tr, &d, 8, 0.1f);
    run(&tr, 2);
    CHECK(trainer_save(&tr, dir, &err) == 0, "save: %s", err.msg);
    CHECK(access(prev, F_OK) != 0, "the first save has no previous state");
    run(&tr, 1);
    CHECK(trainer_save(&tr, dir, &err) == 0, "save: %s", err.msg);
    CHECK(state_step(latest) == 3 && state_step(prev) == 2, "latest at step 3, previous at step 2");
    trainer_free(&tr);

    CHECK(trainer_find_state(dir, path, sizeof path, &why, &err) == 0 && !strcmp(path, latest) && !why.msg[0],
          "a whole latest state is used: %s", err.msg);
    corrupt_tensor(latest, "adam.v");
    CHECK(trainer_find_state(dir, path, sizeof path, &why, &err) == 0 && !strcmp(path, prev), "falls back: %s",
          err.msg);
    printf("  latest passed over: %s\n", why.msg);
    CHECK(strstr(why.msg, latest) && strstr(why.msg, "tensor 'adam.v' fails its checksum: the file is corrupt"),
          "why: %s", why.msg);
    train_opts o;
    int64_t step;
    char *cj = NULL, *sj = NULL;
    unet_config c;
    schedule s;
    CHECK(trainer_read_run(path, &o, &step, &cj, &sj, &err) == 0 && step == 2, "read: %s", err.msg);
    CHECK(unet_config_from_json(&c, cj, &err) == 0 && schedule_from_json(&s, sj, &err) == 0, "json: %s", err.msg);
    CHECK(trainer_init(&resumed, &c, &s, &d, &o, &err) == 0 && trainer_load(&resumed, path, &err) == 0, "%s",
          err.msg);
    CHECK(trainer_restore_prev(dir, &err) == 0 && access(prev, F_OK) != 0 && state_step(latest) == 2,
          "the previous state is the latest again: %s", err.msg);
    run(&resumed, 4);
    check_same_state(&full, &resumed, "6 steps vs 3 + corrupt latest + resumed from step 2 + 4");
    CHECK(trainer_save(&resumed, dir, &err) == 0 && state_step(latest) == 6 && state_step(prev) == 2, "%s", err.msg);

    /* Both corrupt, or the latest corrupt and no previous: an error naming both files. */
    corrupt_tensor(latest, "params");
    corrupt_tensor(prev, "ema");
    CHECK(trainer_find_state(dir, path, sizeof path, &why, &err) == -1 && strstr(err.msg, latest) &&
              strstr(err.msg, prev) && strstr(err.msg, "'params' fails") && strstr(err.msg, "'ema' fails"),
          "both corrupt: %s", err.msg);
    printf("  both corrupt: %s\n", err.msg);
    remove(prev);
    CHECK(trainer_find_state(dir, path, sizeof path, &why, &err) == -1 && strstr(err.msg, latest) &&
              strstr(err.msg, prev), "no previous: %s", err.msg);
    /* Unchecked (--no-verify), the corrupt latest is used. */
    st_set_verify(0);
    CHECK(trainer_find_state(dir, path, sizeof path, &why, &err) == 0 && !strcmp(path, latest), "%s", err.msg);
    st_set_verify(1);

    free(cj), free(sj);
    schedule_free(&s);
    trainer_free(&full);
    trainer_free(&resumed);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    dataset_free(&d);
}

static void test_nonfinite(void) {
    dataset d = tiny_data(4);
    trainer tr;
    make(&tr, &d, 4, 0.0f);
    run(&tr, 2);
    size_t P = tr.u->nparams;
    tr.u->params[P / 2] = NAN;
    float *before = malloc(P * sizeof(float));
    memcpy(before, tr.ema, P * sizeof(float));
    err_t err;
    CHECK(trainer_step(&tr, &err) == -1, "a NaN weight should stop the step");
    printf("  %s\n", err.msg);
    CHECK(strstr(err.msg, "not finite") != NULL, "message: %s", err.msg);
    CHECK(tr.step == 2 && same_bits(before, tr.ema, P), "the failed step must change nothing");
    free(before);
    trainer_free(&tr);
    dataset_free(&d);
}

/* Out of memory for the network's temporaries in the workers' buffers (the test knob):
 * the step fails with err.oom and changes nothing; then it can be taken. */
static void test_step_oom(void) {
    dataset d = tiny_data(4);
    trainer tr;
    make(&tr, &d, 4, 0.0f);
    run(&tr, 1);
    size_t P = tr.u->nparams;
    float *before = malloc(P * sizeof(float));
    memcpy(before, tr.u->params, P * sizeof(float));
    err_t err = {0};
    exec_set_buffer_limit(1);
    int rc = trainer_step(&tr, &err);
    exec_set_buffer_limit(0);
    printf("  %s\n", err.msg);
    CHECK(rc == -1 && err.oom && strstr(err.msg, "out of memory"), "rc %d oom %d: %s", rc, err.oom, err.msg);
    CHECK(tr.step == 1 && same_bits(before, tr.u->params, P), "the failed step must change nothing");
    CHECK(trainer_step(&tr, &err) == 0 && tr.step == 2, "%s", err.msg);
    free(before);
    trainer_free(&tr);
    dataset_free(&d);
}

static void test_opts_json(void) {
    train_opts o = tiny_opts(32), back;
    o.seed = 18446744073709551615ull;
    char *j = train_opts_to_json(&o);
    err_t err;
    CHECK(train_opts_from_json(&back, j, &err) == 0, "parse: %s", err.msg);
    CHECK(back.seed == o.seed && back.batch == 32 && back.lr == o.lr && back.ema == o.ema && back.flip == 1 &&
              back.ema_warmup == 1 && back.warmup == 5 && back.clip == 1.0,
          "round trip: %s", j);
    free(j);
    CHECK(train_opts_from_json(&back, "{\"batch\": 3}", &err) == -1 && strstr(err.msg, "lr"), "missing key: %s",
          err.msg);
    CHECK(train_opts_from_json(&back, "[1]", &err) == -1, "not an object");
    /* The run's cadence: round trip; absent (an older state): the defaults; out of range: an error. */
    o.save_every = 7, o.log_every = 3, o.sample_every = 5, o.sample_n = 4, o.eval_every = 9, o.eval_n = 20;
    o.tensorboard = 0;
    j = train_opts_to_json(&o);
    CHECK(train_opts_from_json(&back, j, &err) == 0 && back.save_every == 7 && back.log_every == 3 &&
              back.sample_every == 5 && back.sample_n == 4 && back.eval_every == 9 && back.eval_n == 20 &&
              back.tensorboard == 0,
          "cadence round trip: %s", j);
    free(j);
    const char *old = "{\"seed\":\"0\",\"batch\":4,\"lr\":1,\"warmup\":1,\"beta1\":0.9,\"beta2\":0.9,\"adam_eps\":1,"
                      "\"clip\":1,\"ema\":0.9,\"ema_warmup\":true,\"flip\":false%s}";
    char buf[512];
    snprintf(buf, sizeof buf, old, "");
    train_opts def = train_opts_default();
    CHECK(train_opts_from_json(&back, buf, &err) == 0 && back.save_every == def.save_every &&
              back.log_every == def.log_every && back.sample_n == def.sample_n && back.eval_n == def.eval_n &&
              back.tensorboard == 1,
          "an older state: the default cadence: %s", err.msg);
    snprintf(buf, sizeof buf, old, ",\"log_every\":0");
    CHECK(train_opts_from_json(&back, buf, &err) == -1 && strstr(err.msg, "'log_every'"), "log_every 0: %s", err.msg);
    snprintf(buf, sizeof buf, old, ",\"sample_n\":1.5");
    CHECK(train_opts_from_json(&back, buf, &err) == -1 && strstr(err.msg, "'sample_n'"), "sample_n 1.5: %s", err.msg);
}

/* What a step reports beside its loss (the run logs them): the EMA decay of its update,
 * min(ema, (1+k)/(10+k)) at step k, and the loss by timestep quartile, whose counts
 * are those of the step's timesteps (one process: ti holds the whole batch's) and
 * whose sums add up to the loss. */
static void test_step_stats(void) {
    dataset d = tiny_data(16);
    trainer tr;
    make(&tr, &d, 8, 0.0f);
    for (int k = 1; k <= 12; k++) {
        run(&tr, 1);
        int n[4] = {0}, total = 0;
        double sum = 0;
        for (int i = 0; i < 8; i++) n[4 * tr.ti[i] / tr.sched.T]++;
        for (int q = 0; q < 4; q++) {
            CHECK(tr.q_n[q] == n[q], "step %d quartile %d: %d images, the timesteps say %d", k, q, tr.q_n[q], n[q]);
            CHECK(tr.q_n[q] || tr.q_sum[q] == 0, "step %d quartile %d: a sum without images", k, q);
            total += tr.q_n[q], sum += tr.q_sum[q];
        }
        CHECK(total == 8 && fabs(sum / 8 - tr.loss) <= 1e-12 * tr.loss, "step %d: quartile sums %.17g / 8 vs loss %.17g",
              k, sum, tr.loss);
        double want = fmin(0.99, (1.0 + k) / (10.0 + k));
        CHECK(tr.ema_decay == want, "step %d: EMA decay %.17g, want %.17g", k, tr.ema_decay, want);
    }
    trainer_free(&tr);
    dataset_free(&d);
}

TEST_MAIN(test_overfit, test_threads, test_resume, test_schedules, test_prev_state, test_nonfinite, test_step_oom,
          test_opts_json, test_step_stats)
