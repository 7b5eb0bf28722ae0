/* test_conv_choice.c -- the convolution algorithms chosen by measurement
 * (src/ops/conv_choice.c): a measured shape's choice is the least total time
 * of the times it recorded, made once per shape and machine; the cache file
 * is read by a process that has not measured, and the first writer of a
 * shape wins when processes measure at once; pinned choices (a run folder's)
 * come before the cache; forced algorithms fall back where they do not
 * apply; no cache directory still works. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ops/ops.h"

static char cache_dir[64];

static conv_plan *plan(int B, int H, int Cin, int Cout, int stride, int training) {
    conv_plan *p = NULL;
    err_t err = {0};
    CHECK(ops_conv_plan_create(&p, B, H, H, Cin, Cout, stride, CONV_PAD_SAME, Cin, Cout, training, &err) == 0,
          "plan %dx%d %d->%d: %s", H, H, Cin, Cout, err.msg);
    return p;
}

/* The cache file's text (malloc'd; "" when absent). */
static char *cache_text(void) {
    FILE *f = fopen(ops_conv_cache_path(), "r");
    char *s = calloc(1, 1 << 16);
    if (f) {
        size_t n = fread(s, 1, (1 << 16) - 1, f);
        s[n] = 0;
        fclose(f);
    }
    return s;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Reads "name=a,b,c" (ms per algorithm: direct, winograd, onednn-winograd; "-" not offered) after `name=`. */
static void read_times(const char *line, const char *name, double t[3]) {
    char key[32];
    snprintf(key, sizeof key, " %s=", name);
    const char *s = strstr(line, key);
    CHECK(s != NULL, "no %s in '%s'", name, line);
    if (!s) return;
    s += strlen(key);
    for (int a = 0; a < 3; a++) {
        if (*s == '-') t[a] = -1, s++;
        else t[a] = strtod(s, (char **)&s);
        if (*s == ',') s++;
    }
}

static void test_measured_choice_is_the_fastest(void) {
    ops_conv_choices_reset();
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
    int before = ops_conv_measured();
    conv_plan *p = plan(4, 14, 16, 16, 1, 1);
    CHECK(ops_conv_measured() == before + 1, "measured %d shapes", ops_conv_measured() - before);
    conv_plan *q = plan(4, 14, 16, 16, 1, 1);
    CHECK(ops_conv_measured() == before + 1, "the same shape measured again");
    char *text = cache_text();
    CHECK(count_lines(text) == 1, "cache:\n%s", text);
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
    if (cap && !strcmp(cap, "AVX2")) CHECK(strstr(text, "|avx2 ddpm-") != NULL, "capped at AVX2, the key: %s", text);
    CHECK(strstr(text, "|4 14 14 16 16 1 0 16 16 1|") != NULL, "the shape in '%s'", text);
    /* The chosen combination costs no more than any other, by the times the line records. */
    double t[4][3];
    const char *names[] = {"fwd", "bwd_data", "bwd_w", "prepare"};
    for (int i = 0; i < 4; i++) read_times(text, names[i], t[i]);
    CHECK(t[0][0] > 0 && t[1][0] > 0 && t[2][0] > 0, "the direct kernels were timed: %s", text);
    int c[3];
    for (int i = 0; i < 3; i++) c[i] = ops_conv_plan_algorithm(p, i) - CONV_ALG_DIRECT;
    for (int i = 0; i < 3; i++) CHECK(ops_conv_plan_algorithm(q, i) == ops_conv_plan_algorithm(p, i), "pass %d", i);
    double chosen = t[0][c[0]] + t[1][c[1]] + t[2][c[2]] + t[3][c[0]] + (c[1] != c[0] ? t[3][c[1]] : 0);
    for (int f = 0; f < 3; f++)
        for (int d = 0; d < 3; d++)
            for (int g = 0; g < 3; g++) {
                if (t[0][f] < 0 || t[1][d] < 0 || t[2][g] < 0) continue;
                double other = t[0][f] + t[1][d] + t[2][g] + t[3][f] + (d != f ? t[3][d] : 0);
                CHECK(chosen <= other + 3e-3, "chose %d %d %d (%.3f ms), %d %d %d takes %.3f", c[0], c[1], c[2],
                      chosen, f, d, g, other);
            }
    /* An inference plan of the same shape is another choice (forward only). */
    conv_plan *r = plan(4, 14, 16, 16, 1, 0);
    CHECK(ops_conv_measured() == before + 2, "inference measured: %d", ops_conv_measured() - before);
    free(text);
    text = cache_text();
    CHECK(count_lines(text) == 2, "cache:\n%s", text);
    char *mine = ops_conv_choices_text();
    CHECK(mine && count_lines(mine) == 2, "this process's choices:\n%s", mine ? mine : "");
    free(mine);
    free(text);
    ops_conv_plan_free(p), ops_conv_plan_free(q), ops_conv_plan_free(r);
}

/* A process that has not measured reads the cache: an edited line is obeyed. */
static void test_cache_is_read(void) {
    ops_conv_choices_reset();
    char *text = cache_text(), *s = strstr(text, "|4 14 14 16 16 1 0 16 16 1|");
    CHECK(s != NULL, "no line to edit");
    if (!s) return free(text);
    s += strlen("|4 14 14 16 16 1 0 16 16 1|");
    char *end = strchr(s, '|');
    char edited[1 << 16];
    snprintf(edited, sizeof edited, "%.*sdirect winograd direct%s", (int)(s - text), text, end);
    FILE *f = fopen(ops_conv_cache_path(), "w");
    fputs(edited, f);
    fclose(f);
    int before = ops_conv_measured();
    conv_plan *p = plan(4, 14, 16, 16, 1, 1);
    CHECK(ops_conv_measured() == before, "measured although cached");
    CHECK(ops_conv_plan_algorithm(p, CONV_PASS_FWD) == CONV_ALG_DIRECT &&
              ops_conv_plan_algorithm(p, CONV_PASS_BWD_DATA) == CONV_ALG_WINOGRAD &&
              ops_conv_plan_algorithm(p, CONV_PASS_BWD_W) == CONV_ALG_DIRECT,
          "the cache's edited line not followed");
    ops_conv_plan_free(p);
    free(text);
}

/* Pinned choices come first, from any machine; a bad text is refused with its line. */
static void test_pin(void) {
    ops_conv_choices_reset();
    err_t err = {0};
    CHECK(ops_conv_choices_pin("# a run's choices\nelsewhere (family 1 model 2)|avx512_core|4 14 14 16 16 1 0 16 16 1|"
                               "winograd winograd direct|threads=8\n", &err) == 0, "%s", err.msg);
    conv_plan *p = plan(4, 14, 16, 16, 1, 1);
    CHECK(ops_conv_plan_algorithm(p, CONV_PASS_FWD) == CONV_ALG_WINOGRAD &&
              ops_conv_plan_algorithm(p, CONV_PASS_BWD_DATA) == CONV_ALG_WINOGRAD &&
              ops_conv_plan_algorithm(p, CONV_PASS_BWD_W) == CONV_ALG_DIRECT, "the pinned choice not followed");
    char *mine = ops_conv_choices_text();
    CHECK(mine && strstr(mine, "elsewhere (family 1 model 2)|avx512_core|4 14 14 16 16 1 0 16 16 1|winograd winograd "
                         "direct|threads=8\n"), "kept as pinned: %s", mine ? mine : "");
    free(mine);
    ops_conv_plan_free(p);
    const char *bad[] = {"no bars at all\n", "a|b|1 2 3|direct direct\n", "a|b|1 2 3|direct fast direct\n",
                         "a|b|1 2 3|measure direct direct\n"};
    for (int i = 0; i < 4; i++) {
        err.msg[0] = 0;
        CHECK(ops_conv_choices_pin(bad[i], &err) == -1 && strstr(err.msg, "line 1"), "'%s': %s", bad[i], err.msg);
    }
    ops_conv_choices_reset();
}

/* A network's verdict on the whole pass: unknown, then the first one recorded. */
static void test_net_verdict(void) {
    CHECK(ops_conv_net_verdict("a test net") == CONV_NET_UNKNOWN, "a verdict before any");
    ops_conv_net_record("a test net", CONV_NET_DIRECT, 0.5, 0.25);
    ops_conv_net_record("a test net", CONV_NET_PER_SHAPE, 0.25, 0.5);
    CHECK(ops_conv_net_verdict("a test net") == CONV_NET_DIRECT, "the first verdict: %d", ops_conv_net_verdict("a test net"));
    CHECK(ops_conv_net_verdict("a test ne") == CONV_NET_UNKNOWN, "a prefix of the key matched");
    char *text = cache_text();
    CHECK(strstr(text, "|net a test net|direct|threads=") != NULL, "%s", text);
    free(text);
}

/* Forced algorithms: Winograd only where it applies; oneDNN's Winograd or direct. */
static void test_forced(void) {
    ops_conv_set_algorithm(CONV_ALG_WINOGRAD);
    conv_plan *a = plan(2, 8, 16, 16, 2, 1), *b = plan(2, 8, 1, 16, 1, 1), *c = plan(2, 8, 16, 16, 1, 1);
    for (int i = 0; i < CONV_PASSES; i++) {
        CHECK(ops_conv_plan_algorithm(a, i) == CONV_ALG_DIRECT, "stride 2, pass %d", i);
        CHECK(ops_conv_plan_algorithm(b, i) == CONV_ALG_DIRECT, "1 channel in, pass %d", i);
        CHECK(ops_conv_plan_algorithm(c, i) == CONV_ALG_WINOGRAD, "forced, pass %d", i);
    }
    ops_conv_set_algorithm(CONV_ALG_DNNL_WINOGRAD);
    conv_plan *d = plan(2, 8, 16, 16, 1, 1);
    for (int i = 0; d && i < CONV_PASSES; i++)
        CHECK(ops_conv_plan_algorithm(d, i) == CONV_ALG_DNNL_WINOGRAD || ops_conv_plan_algorithm(d, i) == CONV_ALG_DIRECT,
              "pass %d", i);
    printf("  oneDNN's Winograd for 8x8 16->16: %s\n", d ? ops_conv_algorithm_name(ops_conv_plan_algorithm(d, 0)) : "-");
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
    ops_conv_plan_free(a), ops_conv_plan_free(b), ops_conv_plan_free(c), ops_conv_plan_free(d);
    CHECK(ops_conv_algorithm_parse("onednn-winograd") == CONV_ALG_DNNL_WINOGRAD && ops_conv_algorithm_parse("fast") == -1,
          "names");
}

/* Processes measuring a new shape at once end up with the same choice: the
 * cache's only line for it. (Processes started anew: a fork of a process that
 * has run OpenMP may hang.) */
static void child(const char *out) {
    conv_plan *p = plan(2, 12, 24, 24, 1, 1);
    FILE *f = fopen(out, "w");
    for (int i = 0; f && p && i < CONV_PASSES; i++) fprintf(f, "%d", ops_conv_plan_algorithm(p, i));
    exit(f && !fclose(f) ? 0 : 1);
}

static void test_processes_agree(void) {
    char self[1024], cmd[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0, "readlink");
    if (n <= 0) return;
    self[n] = 0;
    snprintf(cmd, sizeof cmd, "cd %s && (DDPM_CONV_CHILD=a %s > /dev/null & DDPM_CONV_CHILD=b %s > /dev/null & wait)", cache_dir,
             self, self);
    CHECK(system(cmd) == 0, "%s", cmd);
    char got[2][16] = {{0}};
    for (int k = 0; k < 2; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%c", cache_dir, 'a' + k);
        FILE *f = fopen(path, "r");
        CHECK(f && fscanf(f, "%15s", got[k]) == 1, "%s", path);
        if (f) fclose(f);
    }
    CHECK(strlen(got[0]) == 3 && !strcmp(got[0], got[1]), "two processes chose %s and %s", got[0], got[1]);
    char *text = cache_text();
    int lines = 0;
    for (char *s = text; (s = strstr(s, "|2 12 12 24 24 1 0 24 24 1|")); s++) lines++;
    CHECK(lines == 1, "the shape's lines in the cache: %d", lines);
    free(text);
}

/* Without a cache directory the choice is measured and kept in memory. */
static void test_no_cache(void) {
    ops_conv_choices_reset();
    setenv("XDG_CACHE_HOME", "/proc/no-such-dir", 1);
    int before = ops_conv_measured();
    conv_plan *p = plan(2, 6, 8, 8, 1, 0), *q = plan(2, 6, 8, 8, 1, 0);
    CHECK(p && q && ops_conv_measured() == before + 1, "measured %d times", ops_conv_measured() - before);
    ops_conv_plan_free(p), ops_conv_plan_free(q);
    setenv("XDG_CACHE_HOME", cache_dir, 1);
}

static void setup(void) {
    if (getenv("DDPM_CONV_CHILD")) child(getenv("DDPM_CONV_CHILD"));
    snprintf(cache_dir, sizeof cache_dir, "/tmp/ddpm-conv-choice-XXXXXX");
    CHECK(mkdtemp(cache_dir) != NULL, "mkdtemp");
    setenv("XDG_CACHE_HOME", cache_dir, 1);
    printf("  cache: %s\n", ops_conv_cache_path());
}

static void cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache_dir);
    CHECK(system(cmd) == 0, "%s", cmd);
}

TEST_MAIN(setup, test_measured_choice_is_the_fastest, test_cache_is_read, test_pin, test_net_verdict, test_forced,
          test_processes_agree, test_no_cache, cleanup)
