/* bench_stats.c -- wall time of the sample-quality statistics (src/eval/stats.c)
 * at evaluation sizes, on random features (not part of the tests).
 *
 *   build/bench/bench_stats [n=10000] [d=2048] [pr_n=0] [is_n=50000]
 *
 * Times stats_fid_compute on n rows of d features (twice, two sets),
 * stats_fid_distance between them, stats_inception_score on is_n rows of 1008 logits
 * (10 splits) and, if pr_n > 0, stats_precision_recall (k = 3) on pr_n real and
 * pr_n fake rows of d features. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/threads.h"
#include "eval/stats.h"

static float *random_rows(long long n, int d, uint64_t seed, float shift) {
    float *x = malloc(sizeof(float) * (size_t)n * d);
    if (!x) {
        fprintf(stderr, "bench_stats: out of memory\n");
        exit(1);
    }
    uint64_t z = seed;
    for (size_t i = 0; i < (size_t)n * d; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(z >> 40) * 0x1.0p-24f + (float)(i % d) * 1e-3f + shift;
    }
    return x;
}

static void die(const err_t *err) {
    fprintf(stderr, "bench_stats: %s\n", err->msg);
    exit(1);
}

int main(int argc, char **argv) {
    long long n = argc > 1 ? atoll(argv[1]) : 10000, pr_n = argc > 3 ? atoll(argv[3]) : 0;
    long long is_n = argc > 4 ? atoll(argv[4]) : 50000;
    int d = argc > 2 ? atoi(argv[2]) : 2048;
    err_t err;
    fid_stats a, b;
    double fid, t;
    printf("bench_stats: %d threads\n", thread_set_count(0));

    float *x1 = random_rows(n, d, 1, 0.0f), *x2 = random_rows(n, d, 2, 0.05f);
    t = clock_now();
    if (stats_fid_compute(&a, x1, n, d, &err)) die(&err);
    printf("fid_stats_compute  n=%lld d=%d: %.3f s\n", n, d, clock_now() - t);
    t = clock_now();
    if (stats_fid_compute(&b, x2, n, d, &err)) die(&err);
    printf("fid_stats_compute  n=%lld d=%d: %.3f s\n", n, d, clock_now() - t);
    t = clock_now();
    if (stats_fid_distance(&fid, &a, &b, &err)) die(&err);
    printf("fid_distance       d=%d: %.3f s (FID %.6g)\n", d, clock_now() - t, fid);
    stats_fid_free(&a), stats_fid_free(&b);
    free(x1), free(x2);

    if (is_n > 0) {
        float *z = random_rows(is_n, 1008, 3, 0.0f);
        for (size_t i = 0; i < (size_t)is_n * 1008; i++) z[i] *= 8.0f;
        double m, s;
        t = clock_now();
        if (stats_inception_score(&m, &s, z, is_n, 1008, 10, &err)) die(&err);
        printf("inception_score    n=%lld k=1008: %.3f s (IS %.4f +- %.4f)\n", is_n, clock_now() - t, m, s);
        free(z);
    }
    if (pr_n > 0) {
        float *r = random_rows(pr_n, d, 4, 0.0f), *f = random_rows(pr_n, d, 5, 0.02f);
        double p, rc;
        t = clock_now();
        if (stats_precision_recall(&p, &rc, r, pr_n, f, pr_n, d, 3, &err)) die(&err);
        printf("precision_recall   n=%lld d=%d k=3: %.3f s (P %.4f R %.4f)\n", pr_n, d, clock_now() - t, p, rc);
        free(r), free(f);
    }
    return 0;
}
