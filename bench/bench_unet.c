/* bench_unet.c -- forward and forward+backward throughput of the presets.
 *
 *   build/bench/bench_unet [batch=64] [threads=all] [preset ...]
 *
 * Prints img/s and GFLOP/s (backward counted as 2x forward) per preset,
 * median of several timed runs after one warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "model/unet.h"
#include "ops/ops.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

/* A loss whose output gradient is the output itself (L = |out|^2 / 2);
 * ctx: floats per image. */
static void dout_is_out(void *ctx, int image0, int n, const float *out, float *dout) {
    (void)image0;
    memcpy(dout, out, sizeof(float) * *(const size_t *)ctx * (size_t)n);
}

static void bench(const char *preset, int B) {
    unet_config cfg;
    err_t err;
    unet *u;
    if (unet_config_preset(&cfg, preset, &err) || unet_create(&u, &cfg, B, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    unet_init_official(u, 1);
    size_t per = (size_t)cfg.sample_size * cfg.sample_size * cfg.in_channels, n = per * B;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *t = malloc(B * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    for (int i = 0; i < B; i++) t[i] = (float)(i * 37 % 1000);
    unet_dropout dp = {1, 0, 0};
    double gf = unet_forward_flops(u) * B / 1e9, tf[7], tb[7];
    int reps = 5;
    for (int r = -1; r < reps; r++) {
        double t0 = clock_now();
        int rc = unet_forward(u, y, x, t, NULL, NULL, &err);
        double t1 = clock_now();
        rc = rc || unet_train_pass(u, y, NULL, x, t, NULL, &dp, dout_is_out, &per, &err);
        double t2 = clock_now();
        if (rc) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        if (r >= 0) { tf[r] = t1 - t0; tb[r] = t2 - t1; }
    }
    double mf = median(tf, reps), mb = median(tb, reps);
    printf("%-13s B=%-4d params=%-9zu fwd %8.1f img/s %6.1f GFLOP/s | fwd+bwd %7.1f img/s %6.1f GFLOP/s | arena %.0f MB\n",
           preset, B, u->nparams, B / mf, gf / mf, B / mb, 3 * gf / mb, unet_arena_bytes(u) / 1e6);
    free(x); free(y); free(t);
    unet_free(u);
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64;
    int th = thread_set_count(argc > 2 ? atoi(argv[2]) : 0);
    printf("threads %d\n", th);
    if (argc > 3)
        for (int i = 3; i < argc; i++) bench(argv[i], B);
    else
        for (int i = 0; unet_preset_names[i]; i++) bench(unet_preset_names[i], B);
    return 0;
}
