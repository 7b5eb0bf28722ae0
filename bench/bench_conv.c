/* bench_conv.c -- the two fast algorithms for stride-1 3x3 convolutions
 * (oneDNN's kernels and the nine-tap GEMMs, src/ops/conv.c) side by side, the
 * way U-Net shards run them: T threads at once, each on its own plan.
 *
 *   build/bench/bench_conv [T=2] [B H Cin Cout]...
 *
 * Without shapes it runs the stride-1 convolutions of the presets' shards.
 * Prints GFLOP/s per thread of the forward, the weight gradient and the input
 * gradient (always oneDNN's: a check on the noise between two runs). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/threads.h"
#include "ops/ops.h"

static void run(int alg, int T, int B, int H, int Cin, int Cout) {
    ops_conv_set_algorithm(alg);
    enum { R = 12 };
    double tf = 0, tw = 0, td = 0, flops = 2.0 * 9 * Cin * Cout * H * H * B * R;
    conv_plan *plans[64];
    err_t err;
    omp_set_num_threads(1); /* plans for one thread each, as shards */
    for (int i = 0; i < T; i++)
        if (ops_conv_plan_create(&plans[i], B, H, H, Cin, Cout, 1, CONV_PAD_SAME, Cin, Cout, 1, &err)) {
            fprintf(stderr, "bench_conv: %s\n", err.msg);
            exit(1);
        }
    #pragma omp parallel num_threads(T) reduction(max : tf, tw, td)
    {
        conv_plan *p = plans[omp_get_thread_num()];
        size_t nx = (size_t)B * H * H * Cin, ny = (size_t)B * H * H * Cout, nw = (size_t)9 * Cin * Cout;
        float *x = malloc(nx * 4), *y = malloc(ny * 4), *w = malloc(nw * 4), *b = calloc(Cout, 4);
        float *dw = calloc(nw, 4), *db = calloc(Cout, 4), *dx = malloc(nx * 4);
        for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 13) * 0.1f;
        for (size_t i = 0; i < nw; i++) w[i] = (float)(i % 7) * 0.01f;
        for (size_t i = 0; i < ny; i++) y[i] = (float)(i % 5) * 0.1f;
        ops_conv_forward(p, y, x, w, b); /* warm-up */
        ops_conv_backward(p, dx, dw, db, y, x, w);
        double t[4];
        #pragma omp barrier
        t[0] = clock_now();
        for (int r = 0; r < R; r++) ops_conv_forward(p, y, x, w, b);
        #pragma omp barrier
        t[1] = clock_now();
        for (int r = 0; r < R; r++) ops_conv_backward(p, NULL, dw, db, y, x, w);
        #pragma omp barrier
        t[2] = clock_now();
        for (int r = 0; r < R; r++) ops_conv_backward(p, dx, NULL, NULL, y, x, w);
        t[3] = clock_now();
        tf = t[1] - t[0], tw = t[2] - t[1], td = t[3] - t[2];
        free(x); free(y); free(w); free(b); free(dw); free(db); free(dx);
    }
    printf("%-14s T=%d B=%-2d %2dx%-2d %3d->%-3d  forward %6.1f  weight grad %6.1f  input grad %6.1f GFLOP/s/thread\n",
           alg == CONV_ALG_WINOGRAD ? "Winograd" : "oneDNN", T, B, H, H, Cin, Cout, flops / tf / 1e9,
           flops / tw / 1e9, flops / td / 1e9);
    for (int i = 0; i < T; i++) ops_conv_plan_free(plans[i]);
}

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 2, nargs = argc > 2 ? argc - 2 : 0; /* shape numbers given */
    if (T < 1 || T > 64 || nargs % 4) {
        fprintf(stderr, "usage: bench_conv [threads] [B H Cin Cout]...\n");
        return 2;
    }
    /* Shard shapes (batch 64 in 8 shards, cifar10 at 32 in 8): fmnist-small, fmnist, cifar10. */
    int presets[][4] = {{8, 28, 32, 32},   {8, 28, 96, 32},   {8, 14, 64, 64},   {8, 28, 64, 64},
                        {8, 28, 192, 64},  {8, 14, 128, 128}, {8, 7, 256, 128},  {4, 32, 128, 128},
                        {4, 32, 256, 128}, {4, 16, 256, 256}, {4, 8, 512, 256},  {4, 4, 256, 256}};
    int n = nargs / 4, (*shapes)[4] = presets;
    if (n == 0) n = sizeof presets / sizeof presets[0];
    else {
        shapes = calloc((size_t)n, sizeof *shapes);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < 4; j++) shapes[i][j] = atoi(argv[2 + 4 * i + j]);
    }
    for (int i = 0; i < n; i++) {
        int *s = shapes[i];
        run(CONV_ALG_DIRECT, T, s[0], s[1], s[2], s[3]);
        run(CONV_ALG_WINOGRAD, T, s[0], s[1], s[2], s[3]);
    }
    return 0;
}
