/* conv_choice.c -- which algorithm runs each pass of a convolution shape:
 * decided by measuring every candidate on this machine (ops_conv_measure),
 * once per machine. The choices live in three places, looked up in this
 * order:
 *   - pinned: read from a run folder (ops_conv_choices_pin), so that a
 *     resume computes what the run computed before, on any machine;
 *   - this process's own, so that every plan of a shape agrees;
 *   - the cache file of the user, shared by the processes of the machine: a
 *     line per (CPU model, oneDNN instruction set and ddpm version, shape):
 *     a new version measures again (its kernels' speeds may differ). The first
 *     process to write a key wins (under an exclusive lock the file is read
 *     again before a line is added), so that processes started together, such
 *     as the ranks of an MPI job, make the same choices.
 *
 * Neither the thread count nor the process count is in the key: the weights
 * of a run must not depend on them (docs/determinism.md), so a shape (whose
 * B is a shard's images) gets the same algorithms at any count; the thread
 * count it was measured at is recorded.
 *
 * A line: "cpu|isa ddpm-VERSION|B H W Cin Cout stride pad ld_x ld_y training|fwd bwd_data
 * bwd_w|threads=N and the measured milliseconds", the last field for the
 * reader. */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conv_choice.h"
#include "core/log.h"
#include "ddpm.h" /* DDPM_VERSION, in the cache's key */
#include "exec/executor.h"

static const char *const alg_names[CONV_ALGS] = {"measure", "direct", "winograd", "onednn-winograd"};

int ops_conv_algorithm_parse(const char *name) {
    for (int a = 0; a < CONV_ALGS; a++)
        if (!strcmp(name, alg_names[a])) return a;
    return -1;
}

const char *ops_conv_algorithm_name(int alg) { return alg >= 0 && alg < CONV_ALGS ? alg_names[alg] : NULL; }

/* ---- the machine ------------------------------------------------------------ */

/* "brand string (family F model M)" from CPUID, with '|' kept out. */
static void cpu_name(char *out, size_t n) {
    unsigned r[12] = {0}, a, b, c, d;
    char brand[49] = "";
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        memcpy(brand, r, 48);
    }
    char *s = brand;
    while (*s == ' ') s++;
    for (char *e = s + strlen(s); e > s && e[-1] == ' ';) *--e = 0;
    for (char *q = s; *q; q++)
        if (*q == '|' || *q == '\n') *q = ' ';
    unsigned family = 0, model = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        family = (a >> 8) & 0xf, model = (a >> 4) & 0xf;
        if (family == 0xf) family += (a >> 20) & 0xff;
        if (family >= 6) model |= ((a >> 16) & 0xf) << 4;
    }
    snprintf(out, n, "%s (family %u model %u)", *s ? s : "unknown CPU", family, model);
}


/* ---- the table of this process ---------------------------------------------- */

typedef struct entry {
    char where[256]; /* "cpu|isa|": the machine the choice was made on */
    char shape[96];  /* "B H W Cin Cout stride pad ld_x ld_y training" */
    int alg[CONV_PASSES];
    int pinned;
    char times[160];
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry *table;
static int n_table, cap_table, n_measured;

static void shape_text(char *out, size_t n, const conv_key *k) {
    snprintf(out, n, "%d %d %d %d %d %d %d %d %d %d", k->B, k->H, k->W, k->Cin, k->Cout, k->stride, k->pad,
             k->ld_x, k->ld_y, k->training);
}

static void where_text(char *out, size_t n) {
    char cpu[200];
    cpu_name(cpu, sizeof cpu);
    snprintf(out, n, "%s|%s ddpm-%s|", cpu, exec_dnnl_isa(), DDPM_VERSION);
}

/* The entry for shape made on machine `where` (pinned entries: any machine). */
static entry *find(const char *where, const char *shape) {
    for (int i = 0; i < n_table; i++)
        if (!strcmp(table[i].shape, shape) && (table[i].pinned || !strcmp(table[i].where, where))) return &table[i];
    return NULL;
}

static entry *add(void) {
    if (n_table == cap_table) {
        int cap = cap_table ? 2 * cap_table : 32;
        entry *t = realloc(table, sizeof *t * cap);
        if (!t) return NULL;
        table = t, cap_table = cap;
    }
    memset(&table[n_table], 0, sizeof table[0]);
    return &table[n_table++];
}

/* Parses "fwd bwd_data bwd_w" (names); 0 or -1. */
static int parse_algs(const char *s, int alg[CONV_PASSES]) {
    char a[3][32];
    if (sscanf(s, "%31s %31s %31s", a[0], a[1], a[2]) != 3) return -1;
    for (int i = 0; i < CONV_PASSES; i++)
        if ((alg[i] = ops_conv_algorithm_parse(a[i])) <= CONV_ALG_MEASURE) return -1;
    return 0;
}

/* Splits a line (modified in place) into its fields; returns their count. */
static int split(char *line, char *f[6]) {
    int n = 0;
    f[n++] = line;
    for (char *s = line; *s && n < 6; s++)
        if (*s == '|') *s = 0, f[n++] = s + 1;
    char *nl = strchr(f[n - 1], '\n');
    if (nl) *nl = 0;
    return n;
}

static int line_text(char *out, size_t n, const entry *e) {
    return snprintf(out, n, "%s%s|%s %s %s|%s\n", e->where, e->shape, alg_names[e->alg[0]], alg_names[e->alg[1]],
                    alg_names[e->alg[2]], e->times);
}

char *ops_conv_choices_text(void) {
    pthread_mutex_lock(&lock);
    size_t cap = 1 + (size_t)n_table * 640, len = 0;
    char *out = malloc(cap);
    if (out) {
        out[0] = 0;
        for (int i = 0; i < n_table; i++) len += line_text(out + len, cap - len, &table[i]);
    }
    pthread_mutex_unlock(&lock);
    return out;
}

int ops_conv_choices_pin(const char *text, err_t *err) {
    char *copy = strdup(text);
    if (!copy) return err_oom(err, "out of memory");
    int rc = 0, ln = 0;
    pthread_mutex_lock(&lock);
    for (char *line = copy, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        ln++;
        if (!*line || *line == '#') continue;
        char *f[6];
        entry e = {0};
        int nf = split(line, f);
        if (nf < 4 || parse_algs(f[3], e.alg) || strlen(f[2]) >= sizeof e.shape) {
            rc = err_fail(err, "convolution choices, line %d: not \"cpu|isa|shape|fwd bwd_data bwd_w\"", ln);
            break;
        }
        snprintf(e.where, sizeof e.where, "%.200s|%.40s|", f[0], f[1]);
        snprintf(e.shape, sizeof e.shape, "%s", f[2]);
        if (nf > 4) snprintf(e.times, sizeof e.times, "%s", f[4]);
        e.pinned = 1;
        entry *old = find(e.where, e.shape), *slot = old ? old : add();
        if (!slot) {
            rc = err_oom(err, "out of memory");
            break;
        }
        *slot = e;
    }
    pthread_mutex_unlock(&lock);
    free(copy);
    return rc;
}

void ops_conv_choices_reset(void) {
    pthread_mutex_lock(&lock);
    free(table);
    table = NULL, n_table = cap_table = 0;
    pthread_mutex_unlock(&lock);
}

int ops_conv_measured(void) { return n_measured; }

int ops_conv_pinned(void) {
    int n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_table; i++) n += table[i].pinned;
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- the cache file ----------------------------------------------------------- */

const char *ops_conv_cache_path(void) {
    static char path[4200];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(path, sizeof path, "%s/ddpm/conv-algorithms.txt", xdg);
    else if (home && *home) snprintf(path, sizeof path, "%s/.cache/ddpm/conv-algorithms.txt", home);
    else return NULL;
    return path;
}

/* The cache's line for where + shape in the open file fd, into e; 1 found, 0 not. */
static int cache_find(int fd, const char *where, const char *shape, entry *e) {
    FILE *f = fdopen(dup(fd), "r");
    if (!f) return 0;
    char line[1024], *fl[6];
    int found = 0;
    size_t wl = strlen(where);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, where, wl)) continue;
        int nf = split(line + wl - 1, fl); /* from the '|' before the shape: "", shape, algs, times */
        if (nf < 3 || strcmp(fl[1], shape) || parse_algs(fl[2], e->alg)) continue;
        snprintf(e->times, sizeof e->times, "%s", nf > 3 ? fl[3] : "");
        found = 1;
    }
    fclose(f);
    return found;
}

/* Opens (and makes) the cache file, locked; -1 when it cannot be. */
static int cache_open(void) {
    const char *path = ops_conv_cache_path();
    if (!path) return -1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + 1; *s; s++) /* mkdir -p of its folder */
        if (*s == '/') {
            *s = 0;
            if (mkdir(dir, 0755) && errno != EEXIST) return -1;
            *s = '/';
        }
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the verdicts on whole steps ------------------------------------------------ */

static const char *const verdicts[] = {"per-shape", "direct"};

/* "cpu|isa|net NET|" of this machine. */
static void net_prefix(char *out, size_t n, const char *net) {
    char where[256];
    where_text(where, sizeof where);
    snprintf(out, n, "%snet %s|", where, net);
}

/* The verdict on net in the open cache file fd. */
static int verdict_in(int fd, const char *net) {
    char prefix[512], line[1024];
    net_prefix(prefix, sizeof prefix, net);
    int v = CONV_NET_UNKNOWN;
    FILE *f = fdopen(dup(fd), "r");
    size_t pl = strlen(prefix);
    while (f && v == CONV_NET_UNKNOWN && fgets(line, sizeof line, f))
        for (int i = 0; i < 2 && !strncmp(line, prefix, pl); i++)
            if (!strncmp(line + pl, verdicts[i], strlen(verdicts[i])) && line[pl + strlen(verdicts[i])] == '|') v = i;
    if (f) fclose(f);
    return v;
}

int ops_conv_net_verdict(const char *net) {
    int fd = cache_open();
    if (fd < 0) return CONV_NET_UNKNOWN;
    int v = verdict_in(fd, net);
    close(fd);
    return v;
}

void ops_conv_net_record(const char *net, int verdict, double per_shape_s, double direct_s) {
    char line[1024];
    net_prefix(line, sizeof line, net);
    size_t len = strlen(line);
    len += snprintf(line + len, sizeof line - len, "%s|threads=%d ms per-shape=%.3f direct=%.3f\n", verdicts[verdict],
                    omp_get_max_threads(), 1e3 * per_shape_s, 1e3 * direct_s);
    int fd = cache_open();
    if (fd < 0) return;
    if (verdict_in(fd, net) == CONV_NET_UNKNOWN && write(fd, line, len) != (ssize_t)len) /* the first verdict stays */
        log_note(LOG_WARN, "could not write %s", ops_conv_cache_path());
    close(fd);
}

/* ---- choosing ------------------------------------------------------------------ */

/* The combination of algorithms with the least time in t: each pass's time,
 * and each algorithm's weight preparation when the forward or the input
 * gradient uses it (the weight gradient needs none), once per step for all
 * the shards that share it. */
static void decide(const conv_key *k, const conv_times *t, int alg[CONV_PASSES]) {
    double best = 1e30;
    int passes = k->training ? CONV_PASSES : 1;
    for (int f = CONV_ALG_DIRECT; f < CONV_ALGS; f++)
        for (int d = CONV_ALG_DIRECT; d < (passes > 1 ? CONV_ALGS : CONV_ALG_DIRECT + 1); d++)
            for (int g = CONV_ALG_DIRECT; g < (passes > 2 ? CONV_ALGS : CONV_ALG_DIRECT + 1); g++) {
                const int c[CONV_PASSES] = {f, d, g};
                double sum = 0;
                int ok = 1;
                for (int i = 0; i < passes; i++) ok &= t->s[c[i]][i] >= 0, sum += t->s[c[i]][i];
                if (!ok) continue;
                sum += (t->s[f][CONV_PASSES] + (passes > 1 && d != f ? t->s[d][CONV_PASSES] : 0)) / k->shards;
                if (sum < best) best = sum, alg[0] = f, alg[1] = d, alg[2] = g;
            }
}

static void times_text(char *out, size_t n, const conv_times *t) {
    static const char *const pass[] = {"fwd", "bwd_data", "bwd_w", "prepare"};
    size_t len = snprintf(out, n, "threads=%d ms ", omp_get_max_threads());
    for (int i = 0; i <= CONV_PASSES && len < n; i++) {
        len += snprintf(out + len, n - len, "%s%s", i ? " " : "", pass[i]);
        for (int a = CONV_ALG_DIRECT; a < CONV_ALGS && len < n; a++)
            len += t->s[a][i] >= 0 ? snprintf(out + len, n - len, "%s%.3f", a > 1 ? "," : "=", 1e3 * t->s[a][i])
                                   : snprintf(out + len, n - len, "%s-", a > 1 ? "," : "=");
    }
}

static int probing;

void ops_conv_set_probe(int on) { probing = on; }

void ops_conv_choice_note(const conv_key *k, const int alg[CONV_PASSES]) {
    if (probing) return;
    entry e = {0};
    where_text(e.where, sizeof e.where);
    shape_text(e.shape, sizeof e.shape, k);
    memcpy(e.alg, alg, sizeof e.alg);
    snprintf(e.times, sizeof e.times, "forced");
    pthread_mutex_lock(&lock);
    entry *old = find(e.where, e.shape), *slot = old ? old : add();
    if (slot && !(old && old->pinned)) *slot = e;
    pthread_mutex_unlock(&lock);
}

int ops_conv_choose(const conv_key *k, int alg[CONV_PASSES], err_t *err) {
    entry e = {0};
    where_text(e.where, sizeof e.where);
    shape_text(e.shape, sizeof e.shape, k);
    pthread_mutex_lock(&lock);
    entry *known = find(e.where, e.shape);
    if (known) {
        memcpy(alg, known->alg, sizeof known->alg);
        pthread_mutex_unlock(&lock);
        return 0;
    }
    int fd = cache_open(), rc = 0;
    if (fd < 0 || !cache_find(fd, e.where, e.shape, &e)) {
        static int told;
        if (!told++)
            log_note(LOG_INFO, "choosing the convolution algorithms by measuring them on this CPU (once per "
                     "shape and machine%s%s)", fd >= 0 ? "; remembered in " : ": no cache file could be opened",
                     fd >= 0 ? ops_conv_cache_path() : "");
        err_t prior;
        conv_times t;
        if (exec_take_failure(&prior)) { /* a failure of the build before: keep it, measure nothing */
            exec_fail("%s", prior.msg);
            for (int i = 0; i < CONV_PASSES; i++) e.alg[i] = CONV_ALG_DIRECT;
        } else if (!(rc = ops_conv_measure(k, &t, err))) {
            n_measured++;
            decide(k, &t, e.alg);
            times_text(e.times, sizeof e.times, &t);
            if (fd >= 0) {
                char line[640];
                int len = line_text(line, sizeof line, &e);
                if (write(fd, line, (size_t)len) != len) log_note(LOG_WARN, "could not write %s", ops_conv_cache_path());
            }
        }
    }
    if (fd >= 0) close(fd); /* and unlocked */
    entry *slot = rc ? NULL : add();
    if (slot) *slot = e;
    pthread_mutex_unlock(&lock);
    if (!rc) memcpy(alg, e.alg, sizeof e.alg);
    return rc;
}
