/* test_npz.c -- tests for src/io/npz (and the float64 additions to npy):
 * numpy-written fixtures (tests/fixtures/npz_*.npz, tools/fixtures_npz.py) read
 * exactly; C round trips; multi-chunk inflate; one test per kind of corrupt
 * archive; a byte-flip sweep that must never crash (run it under SAN=1 too).
 *
 * Hand-off to tests/py/test_npz.py: test_handoff writes npz_roundtrip.npz next
 * to this binary (BUILD/tests/, found through /proc/self/exe), with the arrays
 * of rt_fill below; the Python test, run later by scripts/run-tests.sh, checks
 * that np.load reads exactly those values. Other files live in a mkdtemp
 * directory under /tmp that the last test removes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "io/fileio.h"
#include "io/npy.h"
#include "io/npz.h"

static char tmpdir[256];

/* Path of name inside the test directory (created on first use); one of four
 * static buffers used in turn. */
static const char *tp(const char *name) {
    static char bufs[4][512];
    static int turn;
    char *buf = bufs[turn++ % 4];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/ddpm_test_npz_XXXXXX");
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "mkdtemp failed: %s\n", strerror(errno));
            exit(1);
        }
    }
    snprintf(buf, sizeof bufs[0], "%s/%s", tmpdir, name);
    return buf;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(p, 1, n, fp) != n)) {
        fprintf(stderr, "cannot write test file %s\n", path);
        exit(1);
    }
    fclose(fp);
}

/* Overwrites one byte of an existing file in place (rewriting whole files is
 * slow on file systems that discard freed blocks). */
static void poke(const char *path, size_t off, unsigned char v) {
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, &v, 1, (off_t)off) != 1) {
        fprintf(stderr, "cannot patch test file %s\n", path);
        exit(1);
    }
    close(fd);
}

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *b;
    err_t err;
    if (file_read_all(path, &b, n, &err) != 0) {
        fprintf(stderr, "%s (run from the repository root; regenerate with tools/fixtures_npz.py)\n", err.msg);
        exit(1);
    }
    return b;
}

static uint32_t ld32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld64(const unsigned char *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }
static void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Offset of the k-th (0-based) occurrence of the 4-byte signature, or exits. */
static size_t find_sig(const unsigned char *b, size_t n, uint32_t sig, int k) {
    for (size_t i = 0; i + 4 <= n; i++)
        if (ld32(b + i) == sig && k-- == 0) return i;
    fprintf(stderr, "test bug: signature %08x #%d not found\n", (unsigned)sig, k);
    exit(1);
}
#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u

/* 1 if rc == -1 and the message contains want and the path; prints the message. */
#define EXPECT_FAIL(rc, err, path, want)                                                                   \
    do {                                                                                                   \
        int rc_ = (rc);                                                                                    \
        printf("    -> %s\n", (err).msg);                                                              \
        CHECK(rc_ == -1 && strstr((err).msg, (want)) != NULL && strstr((err).msg, (path)) != NULL,         \
              "rc=%d msg='%s' want '%s'", rc_, (err).msg, (want));                                         \
    } while (0)

/* Opens path and reads every array as double then as float: 0 if all worked,
 * else -1 with err set. Frees everything. */
static int read_everything(const char *path, err_t *err) {
    npz_file f;
    int rc = -1;
    if (npz_open(&f, path, err) != 0) return -1;
    for (int i = 0; i < f.n; i++) {
        double *d = NULL;
        float *s = NULL;
        int nd;
        int64_t sh[NPY_MAX_DIMS];
        if (npz_read_f64(&f, f.members[i].name, &d, &nd, sh, err) != 0) goto done;
        free(d);
        if (npz_read_f32(&f, f.members[i].name, &s, &nd, sh, err) != 0) goto done;
        free(s);
    }
    rc = 0;
done:
    npz_close(&f);
    return rc;
}

/* Writes the n bytes at b to a file, reads it, expects failure with a message naming the file and want. */
static void expect_corrupt(const char *what, const unsigned char *b, size_t n, const char *want) {
    err_t err = {0};
    const char *p = tp("corrupt.npz");
    printf("  %s\n", what);
    write_bytes(p, b, n);
    EXPECT_FAIL(read_everything(p, &err), err, p, want);
}

/* ---------------------------------------------------------------- numpy fixtures */

static double bits_f64(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static int same_f64(double a, double b) { return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b)); }

/* The arrays of tools/fixtures_npz.py, checked exactly, read as double and as float. */
static void check_fixture(const char *path, int method, int descriptor) {
    npz_file f;
    err_t err;
    double *d = NULL;
    float *s = NULL;
    int nd = -1;
    int64_t sh[NPY_MAX_DIMS];
    const char *names[] = {"mu", "sigma", "features", "img", "scalar", "special", "empty"};

    printf("  %s\n", path);
    if (npz_open(&f, path, &err) != 0) {
        CHECK(0, "%s", err.msg);
        return;
    }
    CHECK(f.n == 7, "7 entries, got %d", f.n);
    for (int i = 0; i < 7; i++) {
        const npz_member *m = npz_find(&f, names[i]);
        CHECK(m && m->method == method && !!(m->flags & 8) == descriptor, "member %s", names[i]);
        if (m) CHECK(strlen(m->entry) == strlen(names[i]) + 4 && strstr(m->entry, ".npy"), "entry %s", m->entry);
    }
    CHECK(npz_find(&f, "mu.npy") == NULL && npz_find(&f, "nope") == NULL, "find by array name only");

    CHECK(npz_read_f64(&f, "mu", &d, &nd, sh, &err) == 0 && nd == 1 && sh[0] == 5, "mu: %s", err.msg);
    for (int i = 0; d && i < 5; i++) CHECK(d[i] == (i + 1) / 3.0, "mu[%d] = %.17g", i, d[i]);
    free(d);
    CHECK(npz_read_f64(&f, "sigma", &d, &nd, sh, &err) == 0 && nd == 2 && sh[0] == 4 && sh[1] == 4, "sigma: %s",
          err.msg);
    for (int i = 0; d && i < 16; i++) CHECK(d[i] == 1.0 / (i / 4 + i % 4 + 1), "sigma[%d] = %.17g", i, d[i]);
    free(d);
    CHECK(npz_read_f32(&f, "sigma", &s, &nd, sh, &err) == 0 && nd == 2, "sigma as f32: %s", err.msg);
    for (int i = 0; s && i < 16; i++) CHECK(s[i] == (float)(1.0 / (i / 4 + i % 4 + 1)), "sigma f32[%d]", i);
    free(s);

    CHECK(npz_read_f32(&f, "features", &s, &nd, sh, &err) == 0 && nd == 2 && sh[0] == 3 && sh[1] == 4,
          "features: %s", err.msg);
    for (int k = 0; s && k < 12; k++) CHECK(s[k] == ((float)k - 5.5f) / 7.0f, "features[%d] = %.9g", k, s[k]);
    free(s);
    CHECK(npz_read_f64(&f, "features", &d, &nd, sh, &err) == 0 && nd == 2, "features as f64: %s", err.msg);
    for (int k = 0; d && k < 12; k++) CHECK(d[k] == (double)(((float)k - 5.5f) / 7.0f), "features f64[%d]", k);
    free(d);

    CHECK(npz_read_f32(&f, "img", &s, &nd, sh, &err) == 0 && nd == 2 && sh[0] == 2 && sh[1] == 3, "img: %s",
          err.msg);
    for (int k = 0; s && k < 6; k++) CHECK(s[k] == (float)((37 * k + 5) % 256), "img[%d] = %g", k, s[k]);
    free(s);
    CHECK(npz_read_f64(&f, "img", &d, &nd, sh, &err) == 0, "img as f64: %s", err.msg);
    for (int k = 0; d && k < 6; k++) CHECK(d[k] == (double)((37 * k + 5) % 256), "img f64[%d]", k);
    free(d);

    CHECK(npz_read_f64(&f, "scalar", &d, &nd, sh, &err) == 0 && nd == 0 && d && d[0] == M_PI, "scalar: %s",
          err.msg);
    free(d);

    {
        const double want[7] = {0.0, -0.0, INFINITY, -INFINITY, NAN, bits_f64(1), DBL_MAX};
        const float want32[7] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0.0f, INFINITY};
        CHECK(npz_read_f64(&f, "special", &d, &nd, sh, &err) == 0 && nd == 1 && sh[0] == 7, "special: %s", err.msg);
        for (int i = 0; d && i < 7; i++) CHECK(same_f64(d[i], want[i]), "special[%d] = %g", i, d[i]);
        free(d);
        CHECK(npz_read_f32(&f, "special", &s, &nd, sh, &err) == 0, "special as f32: %s", err.msg);
        for (int i = 0; s && i < 7; i++)
            CHECK((isnan(want32[i]) && isnan(s[i])) || memcmp(&s[i], &want32[i], 4) == 0, "special f32[%d] = %g", i,
                  s[i]);
        free(s);
    }
    CHECK(npz_read_f32(&f, "empty", &s, &nd, sh, &err) == 0 && nd == 2 && sh[0] == 0 && sh[1] == 3 && s,
          "empty: %s", err.msg);
    free(s);

    s = (float *)1;
    EXPECT_FAIL(npz_read_f32(&f, "nope", &s, &nd, sh, &err), err, path,
                "no array 'nope' (the archive has: mu, sigma, features, img, scalar, special, empty)");
    CHECK(s == NULL, "data cleared on failure");
    npz_close(&f);
    npz_close(&f); /* twice is fine */
}

static void test_numpy_fixtures(void) {
    check_fixture("tests/fixtures/npz_stored.npz", 0, 0);
    check_fixture("tests/fixtures/npz_deflated.npz", 8, 0);
    check_fixture("tests/fixtures/npz_stream.npz", 8, 1);
}

/* ---------------------------------------------------------------- round trip */

/* The hand-off arrays (the same formulas are in tests/py/test_npz.py). */
enum { RT_D = 400, RT_N = 50, RT_K = 10, RT_COUNT = 8 };
typedef struct rt_arrays {
    double mu[RT_D], *sigma, scalar, special[5];
    float *features, logits[RT_N * RT_K], empty[1];
    uint8_t img[24];
    npz_entry e[RT_COUNT];
} rt_arrays;

static void rt_fill(rt_arrays *a) {
    a->sigma = malloc(sizeof(double) * RT_D * RT_D);
    a->features = malloc(sizeof(float) * RT_N * RT_D);
    for (int i = 0; i < RT_D; i++) a->mu[i] = (i + 1) / 7.0 - 20.0;
    for (int i = 0; i < RT_D; i++)
        for (int j = 0; j < RT_D; j++) a->sigma[i * RT_D + j] = 1.0 / (i + j + 1) + (i == j ? 1.0 : 0.0);
    for (int k = 0; k < RT_N * RT_D; k++) a->features[k] = (float)(k % 1000) / 3.0f;
    for (int i = 0; i < RT_N; i++)
        for (int j = 0; j < RT_K; j++) a->logits[i * RT_K + j] = (float)(i - j) * 0.25f;
    for (int k = 0; k < 24; k++) a->img[k] = (uint8_t)((k * 37 + 5) % 256);
    a->scalar = 1.0 / 3.0;
    a->special[0] = -0.0;
    a->special[1] = INFINITY;
    a->special[2] = -INFINITY;
    a->special[3] = NAN;
    a->special[4] = bits_f64(1);
    npz_entry e[RT_COUNT] = {
        {"mu", NPY_F64, 1, {RT_D}, a->mu},
        {"sigma", NPY_F64, 2, {RT_D, RT_D}, a->sigma},
        {"features", NPY_F32, 2, {RT_N, RT_D}, a->features},
        {"logits", NPY_F32, 2, {RT_N, RT_K}, a->logits},
        {"img", NPY_U8, 3, {2, 3, 4}, a->img},
        {"scalar", NPY_F64, 0, {0}, &a->scalar},
        {"special", NPY_F64, 1, {5}, a->special},
        {"empty", NPY_F32, 2, {0, 3}, NULL},
    };
    memcpy(a->e, e, sizeof e);
}

static void rt_free(rt_arrays *a) {
    free(a->sigma);
    free(a->features);
}

static size_t numel_of(const npz_entry *e) {
    size_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= (size_t)e->shape[i];
    return n;
}

/* Reads every entry of e back from path (as its own type's reader) and compares bits. */
static void check_roundtrip(const char *path, const npz_entry *e, int n) {
    npz_file f;
    err_t err;
    if (npz_open(&f, path, &err) != 0) {
        CHECK(0, "%s", err.msg);
        return;
    }
    CHECK(f.n == n, "%d entries, got %d", n, f.n);
    for (int i = 0; i < n && i < f.n; i++) {
        const npz_member *m = &f.members[i];
        size_t ne = numel_of(&e[i]), bad = 0;
        void *got = NULL;
        int nd = -1, rc;
        int64_t sh[NPY_MAX_DIMS];
        CHECK(strcmp(m->name, e[i].name) == 0 && m->method == 0 && m->csize == m->usize, "member %d %s", i, m->name);
        if (e[i].type == NPY_F32) rc = npz_read_f32(&f, e[i].name, (float **)&got, &nd, sh, &err);
        else rc = npz_read_f64(&f, e[i].name, (double **)&got, &nd, sh, &err);
        CHECK(rc == 0 && got && nd == e[i].ndim, "%s: %s", e[i].name, rc ? err.msg : "ndim");
        if (rc != 0) continue;
        for (int k = 0; k < nd; k++) CHECK(sh[k] == e[i].shape[k], "%s shape[%d]", e[i].name, k);
        for (size_t k = 0; k < ne; k++) {
            if (e[i].type == NPY_F32) bad += memcmp((float *)got + k, (const float *)e[i].data + k, 4) != 0;
            else if (e[i].type == NPY_F64) bad += memcmp((double *)got + k, (const double *)e[i].data + k, 8) != 0;
            else bad += ((double *)got)[k] != (double)((const uint8_t *)e[i].data)[k];
        }
        CHECK(bad == 0, "%s: %zu of %zu elements differ", e[i].name, bad, ne);
        printf("    %-10s %zu elements, %llu bytes: %s\n", e[i].name, ne, (unsigned long long)m->usize,
               bad ? "DIFFER" : "exact");
        free(got);
    }
    npz_close(&f);
}

static void test_roundtrip(void) {
    rt_arrays a;
    err_t err;
    char path[512];
    size_t n;
    unsigned char *b;

    rt_fill(&a);
    snprintf(path, sizeof path, "%s", tp("rt.npz"));
    CHECK(npz_write(path, a.e, RT_COUNT, &err) == 0, "%s", err.msg);
    check_roundtrip(path, a.e, RT_COUNT);
    CHECK(count_temp_files(tmpdir) == 0, "no temp files left");

    /* layout: ZIP64 everywhere, data right after each local header, deterministic bytes */
    b = slurp(path, &n);
    {
        const unsigned char *eocd = b + n - 22, *z64 = b + n - 22 - 20 - 56;
        uint64_t cd_off = ld64(z64 + 48), cd_size = ld64(z64 + 40);
        CHECK(ld32(eocd) == SIG_EOCD && ld32(eocd + 12) == 0xffffffffu && ld32(eocd + 16) == 0xffffffffu,
              "classic end record points to ZIP64");
        CHECK(ld32(z64) == SIG_EOCD64 && ld64(z64 + 32) == RT_COUNT && cd_off + cd_size == n - 22 - 20 - 56,
              "ZIP64 end record");
        CHECK(ld32(b) == SIG_LOCAL && ld32(b + 18) == 0xffffffffu && memcmp(b + 30, "mu.npy", 6) == 0 &&
                  ld64(b + 30 + 6 + 4) == 128 + 8 * RT_D && memcmp(b + 30 + 6 + 20, "\x93NUMPY", 6) == 0,
              "first local header");
        CHECK(ld32(b + cd_off) == SIG_CENTRAL && ld32(b + cd_off + 42) == 0xffffffffu, "central header");
    }
    {
        size_t n2;
        unsigned char *b2;
        CHECK(npz_write(path, a.e, RT_COUNT, &err) == 0, "%s", err.msg);
        b2 = slurp(path, &n2);
        CHECK(n2 == n && memcmp(b, b2, n) == 0, "same arrays, same bytes");
        free(b2);
    }
    free(b);

    /* an empty archive */
    CHECK(npz_write(path, NULL, 0, &err) == 0, "%s", err.msg);
    {
        npz_file f;
        float *s = NULL;
        int nd;
        int64_t sh[NPY_MAX_DIMS];
        CHECK(npz_open(&f, path, &err) == 0 && f.n == 0, "empty archive: %s", err.msg);
        EXPECT_FAIL(npz_read_f32(&f, "mu", &s, &nd, sh, &err), err, path, "(the archive has: no entries)");
        npz_close(&f);
    }

    /* npy_read_f64 / npy_write_f64 */
    {
        double *d = NULL;
        float *s = NULL;
        int nd;
        int64_t sh[NPY_MAX_DIMS], sh5[1] = {5};
        snprintf(path, sizeof path, "%s", tp("s.npy"));
        CHECK(npy_write_f64(path, a.special, 1, sh5, &err) == 0, "%s", err.msg);
        CHECK(npy_read_f64(path, &d, &nd, sh, &err) == 0 && nd == 1 && sh[0] == 5, "%s", err.msg);
        for (int i = 0; d && i < 5; i++) CHECK(same_f64(d[i], a.special[i]), "npy f64 [%d]", i);
        free(d);
        CHECK(npy_write_f32(path, a.logits, 2, (int64_t[]){RT_N, RT_K}, &err) == 0, "%s", err.msg);
        CHECK(npy_read_f64(path, &d, &nd, sh, &err) == 0 && nd == 2, "%s", err.msg);
        for (int i = 0; d && i < RT_N * RT_K; i++) CHECK(d[i] == (double)a.logits[i], "f4 -> f64 [%d]", i);
        free(d);
        CHECK(npy_read_f32(path, &s, &nd, sh, &err) == 0 && s && memcmp(s, a.logits, sizeof a.logits) == 0,
              "npy f32: %s", err.msg);
        free(s);
        write_bytes(path, "\x93NUMPY\x01\x00\x02\x00{}", 12);
        d = (double *)1;
        EXPECT_FAIL(npy_read_f64(path, &d, &nd, sh, &err), err, path, "malformed .npy header: missing 'descr'");
        CHECK(d == NULL, "cleared");
    }
    rt_free(&a);
}

/* The file tests/py/test_npz.py checks with numpy. */
static void test_handoff(void) {
    char exe[PATH_MAX], path[PATH_MAX + 32];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    rt_arrays a;
    err_t err;
    char *slash;

    if (l <= 0) {
        CHECK(0, "readlink /proc/self/exe: %s", strerror(errno));
        return;
    }
    exe[l] = '\0';
    slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(path, sizeof path, "%s/npz_roundtrip.npz", exe);
    rt_fill(&a);
    CHECK(npz_write(path, a.e, RT_COUNT, &err) == 0, "%s", err.msg);
    check_roundtrip(path, a.e, RT_COUNT);
    printf("  wrote %s for tests/py/test_npz.py\n", path);
    rt_free(&a);
}

/* ---------------------------------------------------------------- hand-built zips */

/* One entry of a hand-built archive: the bytes, stored or deflated by zlib. */
typedef struct zent {
    const char *name;
    const unsigned char *data;
    size_t len;
    int method;
} zent;

/* A classic (no ZIP64) archive of the entries into a new buffer. */
static unsigned char *build_zip(const zent *z, int n, size_t *out_len) {
    size_t cap = 1024, pos = 0, cd_start;
    unsigned char *b, *comp[8];
    size_t clen[8];
    uint32_t crc[8], off[8];

    for (int i = 0; i < n; i++) {
        crc[i] = (uint32_t)crc32_z(0, z[i].data, z[i].len);
        if (z[i].method == 8) {
            z_stream zs;
            memset(&zs, 0, sizeof zs);
            deflateInit2(&zs, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
            clen[i] = deflateBound(&zs, z[i].len);
            comp[i] = malloc(clen[i]);
            zs.next_in = (unsigned char *)z[i].data;
            zs.avail_in = (uInt)z[i].len;
            zs.next_out = comp[i];
            zs.avail_out = (uInt)clen[i];
            CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END, "deflate");
            clen[i] = zs.total_out;
            deflateEnd(&zs);
        } else {
            comp[i] = malloc(z[i].len + 1);
            memcpy(comp[i], z[i].data, z[i].len);
            clen[i] = z[i].len;
        }
        cap += 30 + 46 + 2 * strlen(z[i].name) + clen[i];
    }
    b = calloc(cap, 1);
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(z[i].name);
        off[i] = (uint32_t)pos;
        put32(b + pos, SIG_LOCAL);
        put16(b + pos + 4, 20);
        put16(b + pos + 8, (unsigned)z[i].method);
        put32(b + pos + 14, crc[i]);
        put32(b + pos + 18, (uint32_t)clen[i]);
        put32(b + pos + 22, (uint32_t)z[i].len);
        put16(b + pos + 26, (unsigned)nl);
        memcpy(b + pos + 30, z[i].name, nl);
        memcpy(b + pos + 30 + nl, comp[i], clen[i]);
        pos += 30 + nl + clen[i];
        free(comp[i]);
    }
    cd_start = pos;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(z[i].name);
        unsigned char *c = b + pos;
        put32(c, SIG_CENTRAL);
        put16(c + 4, 20);
        put16(c + 6, 20);
        put16(c + 10, (unsigned)z[i].method);
        put32(c + 16, crc[i]);
        put32(c + 20, ld32(b + off[i] + 18));
        put32(c + 24, (uint32_t)z[i].len);
        put16(c + 28, (unsigned)nl);
        put32(c + 42, off[i]);
        memcpy(c + 46, z[i].name, nl);
        pos += 46 + nl;
    }
    put32(b + pos, SIG_EOCD);
    put16(b + pos + 8, (unsigned)n);
    put16(b + pos + 10, (unsigned)n);
    put32(b + pos + 12, (uint32_t)(pos - cd_start));
    put32(b + pos + 16, (uint32_t)cd_start);
    pos += 22;
    *out_len = pos;
    return b;
}

/* A .npy image (header + data) in a new buffer. */
static unsigned char *npy_image(npy_type t, int ndim, const int64_t *shape, const void *data, size_t *len) {
    unsigned char hdr[NPY_HEADER_MAX], *b;
    size_t hl, nb;
    err_t err;
    if (npy_encode_header("image", hdr, &hl, t, ndim, shape, &nb, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    b = malloc(hl + nb);
    memcpy(b, hdr, hl);
    memcpy(b + hl, data, nb);
    *len = hl + nb;
    return b;
}

/* Deflated entries big enough for many read and inflate steps whose outputs end
 * mid-element: 3 MB of pseudo-random float32 (poorly compressible) and 1.6 MB of
 * float64, read as both types. */
static void test_deflate_chunks(void) {
    enum { NF = 3 << 18, ND = 200000 };
    float *x = malloc(sizeof(float) * NF), *s = NULL;
    double *y = malloc(sizeof(double) * ND), *d = NULL;
    uint64_t st = 12345;
    size_t l1, l2, zl;
    int64_t s1[2] = {NF / 1024, 1024}, s2[1] = {ND}, sh[NPY_MAX_DIMS];
    int nd;
    err_t err;
    npz_file f;
    const char *p = tp("big.npz");

    for (int i = 0; i < NF; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(int32_t)(st >> 32) * 0x1p-20f;
    }
    for (int i = 0; i < ND; i++) y[i] = (i % 977) * 0.125 + (i % 3 ? 1e-300 : 0);
    unsigned char *a = npy_image(NPY_F32, 2, s1, x, &l1), *b = npy_image(NPY_F64, 1, s2, y, &l2);
    zent z[2] = {{"x.npy", a, l1, 8}, {"y.npy", b, l2, 8}};
    unsigned char *zip = build_zip(z, 2, &zl);
    write_bytes(p, zip, zl);
    printf("  %zu + %zu bytes deflated to a %zu-byte archive\n", l1, l2, zl);
    CHECK(npz_open(&f, p, &err) == 0, "%s", err.msg);
    if (f.n == 2) {
        CHECK(npz_read_f32(&f, "x", &s, &nd, sh, &err) == 0 && nd == 2 && sh[0] == NF / 1024, "x: %s", err.msg);
        CHECK(s && memcmp(s, x, sizeof(float) * NF) == 0, "x exact");
        free(s);
        CHECK(npz_read_f64(&f, "x", &d, &nd, sh, &err) == 0, "x as f64: %s", err.msg);
        size_t bad = 0;
        for (int i = 0; d && i < NF; i++) bad += d[i] != (double)x[i];
        CHECK(d && bad == 0, "x as f64 exact (%zu differ)", bad);
        free(d);
        CHECK(npz_read_f64(&f, "y", &d, &nd, sh, &err) == 0 && nd == 1 && sh[0] == ND, "y: %s", err.msg);
        CHECK(d && memcmp(d, y, sizeof(double) * ND) == 0, "y exact");
        free(d);
        CHECK(npz_read_f32(&f, "y", &s, &nd, sh, &err) == 0, "y as f32: %s", err.msg);
        bad = 0;
        for (int i = 0; s && i < ND; i++) bad += s[i] != (float)y[i];
        CHECK(s && bad == 0, "y as f32 (%zu differ)", bad);
        free(s);
    }
    npz_close(&f);
    free(zip);
    free(a);
    free(b);
    free(x);
    free(y);
}

/* Entries that are zip-valid but bad .npy images: the npy messages, prefixed by file and entry. */
static void test_bad_npy_entries(void) {
    const char *p = tp("npy.npz");
    float v[4] = {1, 2, 3, 4};
    int64_t sh4[1] = {4};
    size_t l, zl;
    unsigned char *img = npy_image(NPY_F32, 1, sh4, v, &l), *big, *zip;
    err_t err;
    struct {
        const char *what;
        const unsigned char *data;
        size_t len;
        const char *want;
    } cases[] = {
        {"empty entry", img, 0, "entry 'a.npy': not a .npy file (bad magic)"},
        {"text entry", (const unsigned char *)"hello, world", 12, "entry 'a.npy': not a .npy file (bad magic)"},
        {"truncated data", img, l - 1, "entry 'a.npy': truncated data"},
        {"header only", img, 20, "entry 'a.npy': truncated .npy header"},
    };
    for (int method = 0; method <= 8; method += 8) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            zent z = {"a.npy", cases[i].data, cases[i].len, method};
            zip = build_zip(&z, 1, &zl);
            printf("  %s (method %d)\n", cases[i].what, method);
            write_bytes(p, zip, zl);
            EXPECT_FAIL(read_everything(p, &err), err, p, cases[i].want);
            free(zip);
        }
    }
    /* '<i4' data; a v2 header declaring 2 MiB */
    memcpy(img + 10, "{'descr': '<i4',", 16);
    {
        zent z = {"a.npy", img, l, 8};
        zip = build_zip(&z, 1, &zl);
        write_bytes(p, zip, zl);
        EXPECT_FAIL(read_everything(p, &err), err, p, "entry 'a.npy': unsupported dtype '<i4'");
        free(zip);
    }
    big = calloc(3u << 20, 1);
    memcpy(big, "\x93NUMPY\x02\x00", 8);
    put32(big + 8, 2u << 20);
    {
        zent z = {"a.npy", big, 3u << 20, 8};
        zip = build_zip(&z, 1, &zl);
        write_bytes(p, zip, zl);
        EXPECT_FAIL(read_everything(p, &err), err, p, "header of 2097164 bytes exceeds the limit");
        free(zip);
    }
    free(big);
    free(img);
}

/* ---------------------------------------------------------------- corrupt archives */

static void test_not_zip(void) {
    err_t err;
    npz_file f;
    const char *p = tp("notzip.npz");
    float x[3] = {1, 2, 3};
    int64_t sh[1] = {3};

    write_bytes(p, "", 0);
    EXPECT_FAIL(npz_open(&f, p, &err), err, p, "not a zip archive (0 bytes");
    CHECK(f.members == NULL && f.n == 0 && f.path == NULL, "failed open leaves f closed");
    npz_close(&f);
    write_bytes(p, "this is a text file, long enough to hold an end record but it has none\n", 71);
    EXPECT_FAIL(npz_open(&f, p, &err), err, p, "no end-of-central-directory record");
    CHECK(npy_write_f32(p, x, 1, sh, &err) == 0, "%s", err.msg);
    EXPECT_FAIL(npz_open(&f, p, &err), err, p, "not a zip archive");
    EXPECT_FAIL(npz_open(&f, tp("missing.npz"), &err), err, "missing.npz", "cannot open");
    EXPECT_FAIL(npz_open(&f, tmpdir, &err), err, tmpdir, "Is a directory");
}

/* Every prefix of a valid archive is rejected, at open or at a read. */
static void test_truncated(void) {
    const char *files[] = {"tests/fixtures/npz_stored.npz", "tests/fixtures/npz_deflated.npz",
                           "tests/fixtures/npz_stream.npz"};
    const char *p = tp("trunc.npz");
    for (int k = 0; k < 3; k++) {
        size_t n, fails = 0, named = 0;
        unsigned char *b = slurp(files[k], &n);
        write_bytes(p, b, n);
        for (size_t len = n; len-- > 0;) { /* shrinking in place is cheap */
            err_t err = {0};
            if (truncate(p, (off_t)len) != 0) {
                CHECK(0, "truncate %s: %s", p, strerror(errno));
                break;
            }
            if (read_everything(p, &err) == -1) {
                fails++;
                named += strstr(err.msg, p) != NULL;
            }
        }
        printf("  %s: %zu of %zu truncations rejected, %zu messages name the file\n", files[k], fails, n, named);
        CHECK(fails == n && named == n, "every truncation rejected with the path");
        free(b);
    }
}

static void test_corrupt_fixture(void) {
    size_t n;
    unsigned char *b = slurp("tests/fixtures/npz_stored.npz", &n), *c = malloc(n);
    size_t cd = find_sig(b, n, SIG_CENTRAL, 0), eocd = find_sig(b, n, SIG_EOCD, 0);
#define FRESH() memcpy(c, b, n)

    FRESH();
    c[0] = 'X';
    expect_corrupt("local signature", c, n, "entry 'mu.npy': bad local header at offset 0");
    FRESH();
    c[30 + 1] = 'x'; /* "mu.npy" -> "mx.npy" in the local header */
    expect_corrupt("local name", c, n, "local header names a different entry ('mx.npy')");
    FRESH();
    c[14] ^= 1; /* local CRC only */
    expect_corrupt("local crc", c, n, "disagrees with the central directory");
    FRESH();
    put16(c + 8, 8); /* local method */
    expect_corrupt("local method", c, n, "local header says compression method 8, the central directory 0");
    FRESH();
    c[14] ^= 1; /* both CRCs: the data no longer matches */
    c[cd + 16] ^= 1;
    expect_corrupt("both crcs", c, n, "entry 'mu.npy': CRC-32 mismatch");
    FRESH();
    c[ld32(b + cd + 42) + 30 + 6 + 20 + 130] ^= 0x40; /* a data byte of mu */
    expect_corrupt("data byte", c, n, "entry 'mu.npy': CRC-32 mismatch");
    FRESH();
    c[30 + 6 + 20 + 20] = 'x'; /* inside the .npy dict: CRC reported first */
    expect_corrupt("npy header byte", c, n, "CRC-32 mismatch");
    FRESH();
    put16(c + cd + 8, 1);
    expect_corrupt("encrypted", c, n, "entry 'mu.npy' is encrypted");
    FRESH();
    put16(c + cd + 10, 12);
    expect_corrupt("bzip2", c, n, "entry 'mu.npy' uses compression method 12");
    FRESH();
    put32(c + cd + 20, 0x7fffffff);
    expect_corrupt("stored sizes differ", c, n, "compressed size 2147483647 at offset 0 runs past");
    FRESH();
    put32(c + cd + 20, 100);
    put32(c + cd + 24, 100);
    expect_corrupt("stored sizes shrunk", c, n, "disagrees with the central directory");
    FRESH();
    put32(c + cd + 42, (uint32_t)n);
    expect_corrupt("local offset", c, n, "local header offset");
    FRESH();
    put16(c + cd + 34, 1);
    expect_corrupt("disk start", c, n, "multi-disk");
    FRESH();
    put16(c + eocd + 4, 1);
    expect_corrupt("eocd disk", c, n, "multi-disk");
    FRESH();
    put16(c + eocd + 8, 6);
    expect_corrupt("eocd entries on disk", c, n, "multi-disk");
    FRESH();
    put32(c + eocd + 16, (uint32_t)n);
    expect_corrupt("cd offset", c, n, "central directory (offset");
    FRESH();
    put32(c + eocd + 12, (uint32_t)(n - cd + 1));
    expect_corrupt("cd size", c, n, "lies outside the file");
    FRESH();
    put16(c + eocd + 8, 1000);
    put16(c + eocd + 10, 1000);
    expect_corrupt("entry count", c, n, "1000 entries cannot fit");
    FRESH();
    put16(c + eocd + 8, 8);
    put16(c + eocd + 10, 8);
    expect_corrupt("one entry too many", c, n, "central directory entry 7 is malformed");
    FRESH();
    put16(c + cd + 28, 0x4000);
    expect_corrupt("name length", c, n, "central directory entry 0 runs past the end");
    FRESH();
    c[cd + 46 + 1] = 0;
    expect_corrupt("NUL in name", c, n, "central directory entry 0 has a NUL in its name");
    FRESH();
    put32(c + cd + 24, 0xffffffffu);
    expect_corrupt("zip64 sentinel without field", c, n, "ZIP64 sizes are missing");
    free(c);
    free(b);
#undef FRESH
}

/* ZIP64 fields of a C-written archive, and deflated size lies. */
static void test_corrupt_zip64(void) {
    float v[6] = {1, 2, 3, 4, 5, 6};
    double w[2] = {0.5, 0.25};
    npz_entry e[2] = {{"aa", NPY_F32, 2, {2, 3}, v}, {"ab", NPY_F64, 1, {2}, w}};
    const char *p = tp("z64.npz");
    err_t err;
    size_t n;
    unsigned char *b, *c;

    CHECK(npz_write(p, e, 2, &err) == 0, "%s", err.msg);
    b = slurp(p, &n);
    c = malloc(n);
    size_t cd0 = find_sig(b, n, SIG_CENTRAL, 0), cd1 = find_sig(b, n, SIG_CENTRAL, 1);
    size_t z64 = find_sig(b, n, SIG_EOCD64, 0), x0 = cd0 + 46 + 6; /* central ZIP64 extra of aa.npy */
    CHECK(ld32(b + x0) == (24u << 16 | 1), "central ZIP64 extra");
#define FRESH() memcpy(c, b, n)

    FRESH();
    put64(c + x0 + 4, 17ull << 30); /* usize */
    put16(c + cd0 + 10, 8);
    expect_corrupt("usize over the cap", c, n, "entry 'aa.npy': uncompressed size 18253611008 exceeds the limit");
    FRESH();
    put64(c + x0 + 4, 2000 * ld64(b + x0 + 12));
    put16(c + cd0 + 10, 8);
    expect_corrupt("usize over the ratio", c, n, "cannot inflate to the");
    FRESH();
    put64(c + x0 + 4, 1ull << 40);
    put64(c + x0 + 12, 1ull << 40);
    expect_corrupt("huge stored entry", c, n, "compressed size 1099511627776 at offset 0 runs past");
    FRESH();
    put64(c + x0 + 20, 1ull << 62);
    expect_corrupt("huge offset", c, n, "local header offset 4611686018427387904 lies outside");
    FRESH();
    put16(c + x0 + 2, 16); /* the offset no longer fits in the field */
    expect_corrupt("short ZIP64 field", c, n, "ZIP64 extra field is too short");
    FRESH();
    put16(c + x0 + 2, 200);
    expect_corrupt("extra field past its end", c, n, "runs past the end of the extra data");
    FRESH();
    put64(c + 30 + 6 + 4, 999); /* local ZIP64 usize */
    expect_corrupt("local ZIP64 size", c, n, "disagrees with the central directory");
    FRESH();
    put64(c + z64 + 48, n);
    expect_corrupt("ZIP64 cd offset", c, n, "central directory (offset");
    FRESH();
    put64(c + z64 + 32, 1ull << 40);
    put64(c + z64 + 24, 1ull << 40);
    expect_corrupt("ZIP64 entry count", c, n, "1099511627776 entries cannot fit");
    FRESH();
    put32(c + z64 + 16, 2);
    expect_corrupt("ZIP64 disk", c, n, "multi-disk");
    FRESH();
    put64(c + n - 22 - 20 + 8, n); /* locator -> beyond the file */
    expect_corrupt("ZIP64 locator", c, n, "ZIP64 end record offset");
    FRESH();
    c[z64] = 'X';
    expect_corrupt("ZIP64 record signature", c, n, "no ZIP64 end record at offset");
    FRESH();
    c[cd1 + 46 + 1] = 'a'; /* "ab.npy" -> "aa.npy" in the central directory */
    expect_corrupt("duplicate names", c, n, "duplicate entries 'aa.npy' and 'aa.npy'");
    free(b);

    /* deflated size lies (the deflated fixture: classic central fields, real sizes in the local header) */
    b = slurp("tests/fixtures/npz_deflated.npz", &n);
    c = realloc(c, n);
    cd0 = find_sig(b, n, SIG_CENTRAL, 0);
    FRESH();
    put32(c + 22, 100);
    put32(c + cd0 + 24, 100);
    expect_corrupt("usize too small", c, n, "entry 'mu.npy': the data inflates to more than the 100 bytes");
    FRESH();
    put32(c + 22, 300);
    put32(c + cd0 + 24, 300);
    expect_corrupt("usize too large", c, n, "entry 'mu.npy': the data inflates to 168 bytes, not the 300 stated");
    FRESH();
    put32(c + 18, ld32(b + 18) - 10);
    put32(c + cd0 + 20, ld32(b + 18) - 10);
    expect_corrupt("csize too small", c, n, "deflated data is truncated");
    FRESH();
    put32(c + 18, ld32(b + 18) + 4);
    put32(c + cd0 + 20, ld32(b + 18) + 4);
    expect_corrupt("csize too large", c, n, "bytes after the end of the deflate stream");
    FRESH();
    c[30 + 6 + 20 + 3] ^= 0xff;
    expect_corrupt("deflate bits", c, n, "entry 'mu.npy'");
    free(c);
    free(b);
#undef FRESH
}

/* Every single-byte change of a small archive: never a crash, and every
 * failure names the file. */
static void test_byte_flips(void) {
    const char *files[] = {"tests/fixtures/npz_deflated.npz", NULL};
    const char *p = tp("flip.npz"), *w = tp("flipsrc.npz");
    float v[3] = {1, 2, 3};
    npz_entry e[2] = {{"a", NPY_F32, 1, {3}, v}, {"b", NPY_U8, 1, {0}, NULL}};
    err_t err;

    CHECK(npz_write(w, e, 2, &err) == 0, "%s", err.msg);
    files[1] = w;
    for (int k = 0; k < 2; k++) {
        char src[512];
        size_t n, fails = 0, named = 0;
        snprintf(src, sizeof src, "%s", files[k]);
        unsigned char *b = slurp(src, &n);
        write_bytes(p, b, n);
        for (size_t i = 0; i < n; i++) {
            poke(p, i, b[i] ^ 0xa5);
            err.msg[0] = 0;
            if (read_everything(p, &err) == -1) {
                fails++;
                named += strstr(err.msg, p) != NULL;
            }
            poke(p, i, b[i]);
        }
        printf("  %s: %zu of %zu byte flips rejected\n", src, fails, n);
        CHECK(named == fails && fails > n / 2, "failures name the file (%zu of %zu)", named, fails);
        free(b);
    }
}

/* ---------------------------------------------------------------- writer errors */

static void test_write_errors(void) {
    float v[2] = {1, 2};
    const char *p = tp("werr.npz");
    err_t err;
    npz_entry e[2] = {{"a", NPY_F32, 1, {2}, v}, {"b", NPY_F32, 1, {2}, v}};
    char missing[600];

    e[1].name = "a";
    EXPECT_FAIL(npz_write(p, e, 2, &err), err, p, "two arrays named 'a'");
    e[1].name = "";
    EXPECT_FAIL(npz_write(p, e, 2, &err), err, p, "array 1 has no name");
    e[1].name = "x/y";
    EXPECT_FAIL(npz_write(p, e, 2, &err), err, p, "invalid array name 'x/y'");
    e[1].name = "b";
    e[1].ndim = 9;
    EXPECT_FAIL(npz_write(p, e, 2, &err), err, p, "(array 'b'): 9 dimensions");
    e[1].ndim = 1;
    e[1].shape[0] = -2;
    EXPECT_FAIL(npz_write(p, e, 2, &err), err, p, "(array 'b'): invalid shape");
    e[1].shape[0] = 2;
    e[1].data = NULL;
    EXPECT_FAIL(npz_write(p, e, 2, &err), err, p, "array 'b' has no data");
    e[1].data = v;
    e[1].type = (npy_type)7;
    EXPECT_FAIL(npz_write(p, e, 2, &err), err, p, "invalid type");
    e[1].type = NPY_F32;
    EXPECT_FAIL(npz_write(p, e, -1, &err), err, p, "invalid number of arrays");
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.npz", tmpdir);
    EXPECT_FAIL(npz_write(missing, e, 2, &err), err, missing, "cannot create temporary file");
    CHECK(access(p, F_OK) != 0, "nothing written");
    CHECK(count_temp_files(tmpdir) == 0, "no temp files left");
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

static void test_cleanup(void) {
    if (tmpdir[0]) CHECK(nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0, "remove %s", tmpdir);
}

TEST_MAIN(test_numpy_fixtures, test_roundtrip, test_handoff, test_deflate_chunks, test_bad_npy_entries, test_not_zip,
          test_truncated, test_corrupt_fixture, test_corrupt_zip64, test_byte_flips, test_write_errors, test_cleanup)
