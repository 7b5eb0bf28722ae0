/* check.h -- the test harness: checks that count failures, element-wise closeness
 * with the max error printed, a main() that runs the listed tests and
 * returns non-zero if any check failed, and the exit status of a skip.
 *
 * Usage:  static void test_x(void) { CHECK(a == b, "a=%d", a); }
 *         TEST_MAIN(test_x, test_y)
 */
#ifndef DDPM_CHECK_H
#define DDPM_CHECK_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures = 0;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            check_failures++;                                                   \
        }                                                                       \
    } while (0)

/* |got-ref| <= atol + rtol*|ref| for every element; prints the max error either way.
 * Returns 1 if close. NaN anywhere fails. */
static inline int check_close(const char *what, const float *got, const float *ref, size_t n,
                              double atol, double rtol) {
    double max_abs = 0, max_rel = 0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; i++) {
        double a = got[i], b = ref[i], d = fabs(a - b);
        if (d > max_abs || isnan(d)) max_abs = isnan(d) ? INFINITY : d;
        if (fabs(b) > 1e-6 && d / fabs(b) > max_rel) max_rel = d / fabs(b);
        if (!(d <= atol + rtol * fabs(b))) {
            if (!bad) first_bad = i;
            bad++;
        }
    }
    printf("  %-48s n=%-8zu max_abs=%.3e max_rel=%.3e %s\n", what, n, max_abs, max_rel, bad ? "FAIL" : "ok");
    if (bad) {
        fprintf(stderr, "  FAIL %s: %zu of %zu elements outside atol=%g rtol=%g (first at %zu: got %.8g ref %.8g)\n",
                what, bad, n, atol, rtol, first_bad, (double)got[first_bad], (double)ref[first_bad]);
        check_failures++;
    }
    return bad == 0;
}

/* Number of entries in dir whose name contains ".tmp." (left-over atomic-write
 * temporaries), or -1 if dir cannot be read. */
static inline int count_temp_files(const char *dir) {
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* A test that cannot run here (a tool or a build feature it needs is missing)
 * exits with TEST_SKIPPED, the automake convention: scripts/run-tests.sh counts
 * it as skipped, or as failed under DDPM_NO_SKIP=1 (`make test`). check_skip
 * prints why and exits so (with 1 instead if a check already failed). */
#define TEST_SKIPPED 77
static inline void check_skip(const char *file, const char *why) {
    printf("%s: SKIPPED: %s\n", file, why);
    fflush(stdout);
    exit(check_failures ? 1 : TEST_SKIPPED);
}

typedef void (*check_fn)(void);

static inline int check_run(const char *file, const char *names, check_fn *fns, int n) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", names);
    char *save = NULL, *tok = strtok_r(buf, ", ", &save);
    for (int i = 0; i < n; i++, tok = strtok_r(NULL, ", ", &save)) {
        int before = check_failures;
        printf("%s: %s\n", file, tok ? tok : "?");
        fflush(stdout);
        fns[i]();
        printf("%s: %s %s\n", file, tok ? tok : "?", check_failures == before ? "PASS" : "FAIL");
        fflush(stdout);
    }
    printf("%s: %d check(s) failed\n", file, check_failures);
    return check_failures ? 1 : 0;
}

#define TEST_MAIN(...)                                                          \
    int main(void) {                                                            \
        check_fn fns[] = {__VA_ARGS__};                                         \
        return check_run(__FILE__, #__VA_ARGS__, fns, (int)(sizeof fns / sizeof fns[0])); \
    }

#endif
