/* test_dist.c -- the sum over MPI processes (dist_sum_tree) is the fixed tree
 * ((r0 + r1) + (r2 + r3)) bit for bit, on every rank, for buffer lengths that
 * do not split evenly (including fewer elements than ranks); dist_gather keeps
 * rank order with uneven shares; dist_or is an or; dist_share splits n images
 * into whole batches over the ranks in order, dist_gather_share puts them back
 * in image order, and dist_agree is the lowest failing status of any rank.
 *
 * Run plainly, the test starts itself under `mpirun -np 4` (and -np 2) and
 * checks that those runs pass; it says SKIPPED and exits 77 (check.h) when
 * mpirun or MPI is missing.
 * Under mpirun (DDPM_TEST_DIST_CHILD set), each rank fills its buffer with
 * values known to every rank, so each rank can compute the expected tree sum. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dist/dist.h"

/* Rank r's value i: of varied magnitudes, so that the order of the sum shows in the bits. */
static float value(int r, size_t i) {
    unsigned h = (unsigned)(i * 2654435761u) ^ (unsigned)(r * 40503u + 17u);
    return ldexpf((float)(h % 10007) / 10007.0f - 0.5f, (int)(h % 41) - 20);
}

/* The tree sum over ranks [lo, hi) of value(., i). */
static float tree(int lo, int hi, size_t i) {
    if (hi - lo == 1) return value(lo, i);
    int mid = (lo + hi) / 2;
    return tree(lo, mid, i) + tree(mid, hi, i);
}

static int child(void) {
    err_t err = {0};
    if (dist_init(&err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int N = dist_size(), r = dist_rank(), bad = 0;
    const size_t lens[] = {0, 1, 3, 5, 1000, 1000003};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t n = lens[k];
        float *x = malloc((n + 1) * sizeof *x);
        for (size_t i = 0; i < n; i++) x[i] = value(r, i);
        if (dist_reserve(n, &err)) return 1;
        dist_sum_tree(x, n);
        size_t wrong = 0, left = 0;
        for (size_t i = 0; i < n; i++) {
            float want = tree(0, N, i), fold = value(0, i);
            for (int q = 1; q < N; q++) fold += value(q, i);
            wrong += memcmp(&x[i], &want, sizeof want) != 0;
            left += memcmp(&fold, &want, sizeof want) != 0;
        }
        if (wrong) fprintf(stderr, "rank %d: n = %zu: %zu of the sums differ from the tree\n", r, n, wrong), bad = 1;
        if (n == 1000003 && N > 2 && !left)
            fprintf(stderr, "rank %d: the left fold equals the tree everywhere: the check cannot fail\n", r), bad = 1;
        free(x);
    }
    /* Gather with uneven shares: rank q sends q + 1 ints q*100 + j. */
    size_t *bytes = malloc(sizeof *bytes * (size_t)N), total = 0;
    for (int q = 0; q < N; q++) total += bytes[q] = sizeof(int) * (size_t)(q + 1);
    int mine[64], *all = malloc(total);
    for (int j = 0; j <= r; j++) mine[j] = r * 100 + j;
    dist_gather(mine, all, bytes);
    if (r == 0)
        for (int q = 0, k = 0; q < N; q++)
            for (int j = 0; j <= q; j++, k++)
                if (all[k] != q * 100 + j) fprintf(stderr, "gather: element %d is %d\n", k, all[k]), bad = 1;
    if (dist_or(r == N - 1 ? 4 : 1) != 5) fprintf(stderr, "dist_or is not an or\n"), bad = 1;
    /* Shares: n = 23 images in batches of 4 (6 batches, the last of 3). */
    int first, count, next = 0, img[23];
    for (int q = 0; q < N; q++) {
        dist_share(23, 4, q, &first, &count);
        if (first != next || (count % 4 && first + count != 23))
            fprintf(stderr, "share %d: [%d, +%d)\n", q, first, count), bad = 1;
        next = first + count;
    }
    if (next != 23) fprintf(stderr, "the shares cover %d of 23 images\n", next), bad = 1;
    dist_share(23, 4, r, &first, &count);
    for (int i = 0; i < count; i++) img[i] = first + i;
    if (dist_gather_share(img, img, 23, 4, sizeof *img)) fprintf(stderr, "dist_gather_share failed\n"), bad = 1;
    for (int i = 0; r == 0 && i < 23; i++)
        if (img[i] != i) fprintf(stderr, "gathered image %d is %d\n", i, img[i]), bad = 1;
    /* Agreement: rank q > 0 fails with status 10 - q, rank 0 passes: the lowest, 11 - N, wins. */
    int agreed = dist_agree(r ? 10 - r : 0);
    if (agreed != 11 - N) fprintf(stderr, "rank %d: dist_agree gives %d, not %d\n", r, agreed, 11 - N), bad = 1;
    if (dist_agree(0) != 0) fprintf(stderr, "dist_agree of all-ok is not ok\n"), bad = 1;
    free(bytes), free(all);
    bad = dist_or(bad);
    dist_finalize();
    if (r == 0) printf("%d ranks: %s\n", N, bad ? "FAIL" : "ok");
    return bad;
}

static void test_tree_sum(void) {
    if (!dist_have_mpi()) check_skip(__FILE__, "built without MPI");
    if (system("command -v mpirun >/dev/null 2>&1") != 0) check_skip(__FILE__, "mpirun is not on PATH");
    char self[4096], cmd[4400];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0, "readlink /proc/self/exe");
    if (n <= 0) return;
    self[n] = 0;
    for (int np = 2; np <= 4; np *= 2) {
        snprintf(cmd, sizeof cmd,
                 "DDPM_TEST_DIST_CHILD=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                 "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "
                 "timeout 120 mpirun --oversubscribe -np %d %s", np, self);
        int rc = system(cmd);
        CHECK(rc == 0, "np %d: the tree sum, gather or or failed (status %d)", np, rc);
    }
}

int main(void) {
    if (getenv("DDPM_TEST_DIST_CHILD")) return child();
    printf("%s: test_tree_sum\n", __FILE__);
    fflush(stdout);
    test_tree_sum();
    printf("%s: test_tree_sum %s\n", __FILE__, check_failures ? "FAIL" : "PASS");
    printf("%s: %d check(s) failed\n", __FILE__, check_failures);
    return check_failures != 0;
}
