/* bench_reduce.c -- the time of the gradient sum over MPI processes
 * (dist_sum_tree) for the presets' parameter counts: the median of 5 sums after
 * one warm-up, each started together (a barrier first). Run it under mpirun:
 *
 *   mpirun -np 2 build/bench/bench_reduce [MB ...]
 *
 * Prints one line per size from rank 0: MB, ms, and the bus bandwidth
 * 2 (N-1)/N * bytes / time (what each process sends and receives). */
#include <stdio.h>
#include <stdlib.h>

#include "core/threads.h"
#include "dist/dist.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    err_t err = {0};
    if (dist_init(&err)) {
        fprintf(stderr, "bench_reduce: %s\n", err.msg);
        return 1;
    }
    /* fmnist-small, fmnist and cifar10: 1.11M, 6.6M and 35.7M parameters. */
    double def[] = {4.45, 26.4, 142.9}, *mb = def;
    int nsizes = 3;
    if (argc > 1) {
        nsizes = argc - 1;
        mb = malloc(sizeof *mb * (size_t)nsizes);
        for (int i = 0; i < nsizes; i++) mb[i] = atof(argv[i + 1]);
    }
    int N = dist_size();
    if (dist_rank() == 0) {
        printf("# dist_sum_tree over %d process(es), median of 5\n", N);
        printf("| MB | ms | bus GB/s |\n|---:|---:|---:|\n");
    }
    for (int k = 0; k < nsizes; k++) {
        size_t n = (size_t)(mb[k] * 1e6 / 4);
        float *x = mem_alloc_floats(n, &err);
        if (!x || dist_reserve(n, &err)) {
            fprintf(stderr, "bench_reduce: %s\n", err.msg);
            dist_abort(1);
        }
        for (size_t i = 0; i < n; i++) x[i] = 1e-3f * (float)(i % 1000);
        double t[6];
        for (int r = 0; r < 6; r++) {
            dist_or(0); /* start together */
            double t0 = clock_now();
            dist_sum_tree(x, n);
            t[r] = clock_now() - t0;
        }
        qsort(t + 1, 5, sizeof *t, cmp);
        double med = t[3], bus = N > 1 ? 2.0 * (N - 1) / N * (double)n * 4 / med / 1e9 : 0;
        if (dist_rank() == 0) printf("| %.1f | %.1f | %.2f |\n", (double)n * 4 / 1e6, med * 1e3, bus);
        free(x);
    }
    dist_finalize();
    return 0;
}
