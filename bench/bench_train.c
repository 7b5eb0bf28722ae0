/* bench_train.c -- throughput of one full training step and of one sampling
 * step of a preset, for the comparison with PyTorch (make bench-torch).
 *
 *   build/bench/bench_train PRESET[@SIZE] BATCH MODE [steps=10] [threads=all] [warmup=2] [precision=fp32]
 *
 * PRESET@SIZE: the preset's network on SIZE x SIZE images (the scaling table).
 * precision: fp32, bf16 (oneDNN's bf16 kernels; refused with a message on a
 * CPU without AVX512_BF16 or AMX-BF16) or bf16-emulated.
 *
 * MODE train:  trainer_step (x0 from the loader, t and eps drawn, q_sample,
 *              forward with dropout, MSE, backward, global-norm clip, Adam, EMA)
 *              on a synthetic dataset of random uint8 images of the preset's size.
 * MODE sample: unet_forward of BATCH images (inference network, no dropout).
 * MODE info:   no timing: the preset's config.json, parameter count and forward
 *              FLOPs per image (what bench/bench_torch.py builds its model from).
 *
 * Prints one JSON line: median img/s over `steps` timed steps after `warmup`
 * untimed ones, GFLOP/s (forward F per image, a training step 3F), and the
 * peak RSS of the process (getrusage ru_maxrss) in MB. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cjson/cJSON.h>

#include "core/cpu.h"
#include "core/rng.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "diffusion/schedule.h"
#include "exec/executor.h"
#include "model/config.h"
#include "model/unet.h"
#include "train/trainer.h"

#define DATASET_N 2048 /* synthetic images (bench_torch.py uses the same count) */

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

static void die(const err_t *err) {
    fprintf(stderr, "bench_train: %s\n", err->msg);
    exit(1);
}

static int usage(void) {
    fprintf(stderr, "usage: bench_train PRESET[@SIZE] BATCH train|sample|info [steps=10] [threads=all] [warmup=2] "
                    "[fp32|bf16|bf16-emulated]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 4) return usage();
    const char *preset = argv[1], *mode = argv[3];
    int B = atoi(argv[2]);
    int steps = argc > 4 ? atoi(argv[4]) : 10;
    int threads = argc > 5 ? atoi(argv[5]) : 0;
    int warmup = argc > 6 ? atoi(argv[6]) : 2;
    int precision = exec_precision_parse(argc > 7 ? argv[7] : "fp32");
    int train = !strcmp(mode, "train"), sample = !strcmp(mode, "sample"), info = !strcmp(mode, "info");
    if (B < 1 || steps < 1 || warmup < 0 || precision < 0 || !(train || sample || info)) return usage();

    err_t err;
    unet_config cfg;
    char name[64];
    snprintf(name, sizeof name, "%s", preset);
    char *at = strchr(name, '@');
    if (at) *at = 0;
    if (unet_config_preset(&cfg, name, &err)) die(&err);
    if (at) {
        cfg.sample_size = atoi(at + 1);
        if (unet_config_check(&cfg, &err)) die(&err);
    }
    int th = thread_set_count(threads);

    if (info) {
        unet *u;
        if (unet_create(&u, &cfg, 1, 0, &err)) die(&err);
        char *pretty = unet_config_to_json(&cfg, NULL);
        cJSON *cj = pretty ? cJSON_Parse(pretty) : NULL;
        char *j = cj ? cJSON_PrintUnformatted(cj) : NULL; /* one line */
        free(pretty);
        cJSON_Delete(cj);
        if (!j) return 1;
        printf("{\"preset\":\"%s\",\"nparams\":%zu,\"flops_per_image\":%.0f,\"dataset_n\":%d,\"config\":%s}\n",
               preset, u->nparams, unet_forward_flops(u), DATASET_N, j);
        free(j);
        unet_free(u);
        return 0;
    }

    double *dt = malloc((size_t)steps * sizeof *dt);
    size_t nparams = 0;
    double flops = 0;
    if (!dt) return 1;

    if (train) {
        size_t img = (size_t)cfg.sample_size * cfg.sample_size * cfg.in_channels;
        dataset d = {.n = DATASET_N, .h = cfg.sample_size, .w = cfg.sample_size, .c = cfg.in_channels};
        snprintf(d.desc, sizeof d.desc, "%d synthetic random images", DATASET_N);
        d.pixels = malloc(img * DATASET_N);
        if (!d.pixels) return 1;
        uint32_t *r = malloc(img * DATASET_N * sizeof *r);
        if (!r) return 1;
        rng_u32(r, img * DATASET_N, 7, RNG_INIT, 0);
        for (size_t i = 0; i < img * DATASET_N; i++) d.pixels[i] = (uint8_t)(r[i] >> 24);
        free(r);

        schedule sched;
        if (schedule_init(&sched, "linear", 1000, 1e-4, 0.02, &err)) die(&err);
        train_opts o = train_opts_default();
        o.seed = 1;
        o.batch = B;
        o.precision = precision;
        trainer tr;
        if (trainer_init(&tr, &cfg, &sched, &d, &o, &err)) die(&err);
        nparams = tr.u->nparams;
        flops = unet_forward_flops(tr.u);
        for (int s = -warmup; s < steps; s++) {
            double t0 = clock_now();
            if (trainer_step(&tr, &err)) die(&err);
            double t1 = clock_now();
            if (s >= 0) dt[s] = t1 - t0;
        }
        trainer_free(&tr);
        schedule_free(&sched);
        dataset_free(&d);
    } else {
        unet *u;
        if (unet_create_exec(&u, &cfg, B, &(unet_exec){0, precision}, 0, &err)) die(&err);
        unet_init_official(u, 1);
        nparams = u->nparams;
        flops = unet_forward_flops(u);
        size_t n = (size_t)B * cfg.sample_size * cfg.sample_size * cfg.in_channels;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *t = malloc((size_t)B * sizeof *t);
        if (!x || !y || !t) return 1;
        rng_normal(x, n, 3, RNG_SAMPLE, 0);
        for (int i = 0; i < B; i++) t[i] = (float)((i * 37 + 500) % 1000);
        for (int s = -warmup; s < steps; s++) {
            double t0 = clock_now();
            if (unet_forward(u, y, x, t, NULL, NULL, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
            double t1 = clock_now();
            if (s >= 0) dt[s] = t1 - t0;
        }
        free(x), free(y), free(t);
        unet_free(u);
    }

    double lo = dt[0], hi = dt[0];
    for (int s = 1; s < steps; s++) {
        if (dt[s] < lo) lo = dt[s];
        if (dt[s] > hi) hi = dt[s];
    }
    double med = median(dt, steps);
    double gf = (train ? 3.0 : 1.0) * flops * B / 1e9;
    printf("{\"impl\":\"ddpm\",\"preset\":\"%s\",\"size\":%d,\"batch\":%d,\"mode\":\"%s\",\"threads\":%d,\"warmup\":%d,"
           "\"steps\":%d,\"nparams\":%zu,\"flops_per_image\":%.0f,\"step_s\":%.6f,\"img_s\":%.3f,"
           "\"img_s_min\":%.3f,\"img_s_max\":%.3f,\"gflops\":%.3f,\"peak_rss_mb\":%.1f,\"format\":\"nhwc\","
           "\"kernels\":\"%s\",\"precision\":\"%s\"}\n",
           preset, cfg.sample_size, B, mode, th, warmup, steps, nparams, flops, med, B / med, B / hi, B / lo, gf / med,
           peak_rss_mb(), cpu_level_name(cpu_level()), exec_precision_name(precision));
    free(dt);
    return 0;
}
