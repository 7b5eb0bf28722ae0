/* test_io.c -- tests for src/io: fileio (atomic writes, mkdir -p, file_path_join),
 * safetensors (round trips, F16/BF16/F64 conversion, one test per kind of
 * corrupt file) and npy (round trips and corrupt files). All files live in a
 * mkdtemp directory under /tmp that the last test removes.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "check.h"
#include "io/fileio.h"
#include "io/npy.h"
#include "io/safetensors.h"

static char tmpdir[256];

/* Path of name inside the test directory (created on first use). Returns a
 * static buffer; copy it if two are needed at once. */
static const char *tp(const char *name) {
    static char buf[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/ddpm_test_io_XXXXXX");
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "mkdtemp failed: %s\n", strerror(errno));
            exit(1);
        }
    }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
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

/* A safetensors file with the given header text (length N = strlen unless
 * hlen_override >= 0) followed by data_len bytes of data (0x11 filler if data is
 * NULL). */
static void write_st_raw(const char *path, const char *header, long long hlen_override, const void *data,
                         size_t data_len) {
    size_t hl = strlen(header), total = 8 + hl + data_len;
    unsigned char *b = calloc(total, 1);
    uint64_t n = hlen_override >= 0 ? (uint64_t)hlen_override : hl;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, header, hl);
    if (data) memcpy(b + 8 + hl, data, data_len);
    else memset(b + 8 + hl, 0x11, data_len);
    write_bytes(path, b, total);
    free(b);
}

/* 1 if rc == -1 and the message contains want; prints the message either way. */
#define EXPECT_FAIL(rc, err, want)                                                               \
    do {                                                                                         \
        int rc_ = (rc);                                                                          \
        printf("    -> %s\n", (err).msg);                                                        \
        CHECK(rc_ == -1 && strstr((err).msg, (want)) != NULL, "rc=%d msg='%s' want '%s'", rc_, (err).msg, (want)); \
    } while (0)

static int st_open_expect_fail(const char *header, long long hlen, const void *data, size_t dlen, const char *want) {
    st_file f;
    err_t err = {0};
    const char *p = tp("bad.safetensors");
    write_st_raw(p, header, hlen, data, dlen);
    int rc = st_open(&f, p, &err);
    EXPECT_FAIL(rc, err, want);
    CHECK(f.buf == NULL && f.tensors == NULL && f.n == 0, "failed st_open leaves f closed");
    st_close(&f);
    return rc;
}

static int file_equals(const char *path, const char *content) {
    unsigned char *b = NULL;
    size_t n = 0;
    err_t err;
    if (file_read_all(path, &b, &n, &err) != 0) return 0;
    int eq = n == strlen(content) && memcmp(b, content, n) == 0;
    free(b);
    return eq;
}

/* ---------------------------------------------------------------- fileio */

static void test_path_join(void) {
    char out[16];
    err_t err;
    CHECK(file_path_join(out, sizeof out, "a/b", "c.txt", &err) == 0 && strcmp(out, "a/b/c.txt") == 0, "%s", out);
    CHECK(file_path_join(out, sizeof out, "a/", "c", &err) == 0 && strcmp(out, "a/c") == 0, "%s", out);
    CHECK(file_path_join(out, sizeof out, "", "c", &err) == 0 && strcmp(out, "c") == 0, "%s", out);
    CHECK(file_path_join(out, sizeof out, "/", "c", &err) == 0 && strcmp(out, "/c") == 0, "%s", out);
    CHECK(file_path_join(out, 6, "ab", "cd", &err) == 0 && strcmp(out, "ab/cd") == 0, "exact fit: %s", out);
    EXPECT_FAIL(file_path_join(out, 5, "ab", "cd", &err), err, "path too long");
    CHECK(out[0] == '\0', "out cleared on failure");
    EXPECT_FAIL(file_path_join(out, sizeof out, "some/long/directory", "name.bin", &err), err, "too long");
    snprintf(out, sizeof out, "dir");
    CHECK(file_path_join(out, sizeof out, out, "x", &err) == 0 && strcmp(out, "dir/x") == 0, "in place: %s", out);
}

static void test_make_dirs(void) {
    err_t err;
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s", tp("d1/d2//d3/"));
    CHECK(file_make_dirs(p, &err) == 0, "%s", err.msg);
    CHECK(stat(tp("d1/d2/d3"), &st) == 0 && S_ISDIR(st.st_mode), "d1/d2/d3 created");
    CHECK(file_make_dirs(p, &err) == 0, "existing: %s", err.msg);
    write_bytes(tp("d1/file"), "x", 1);
    snprintf(p, sizeof p, "%s", tp("d1/file/sub"));
    EXPECT_FAIL(file_make_dirs(p, &err), err, "not a directory");
    snprintf(p, sizeof p, "%s", tp("d1/file"));
    EXPECT_FAIL(file_make_dirs(p, &err), err, "exists and is not a directory");
    EXPECT_FAIL(file_make_dirs("", &err), err, "empty path");
}

static void test_read_all(void) {
    err_t err;
    unsigned char *b = (unsigned char *)"sentinel";
    size_t n = 99;
    char p[512];
    tp("");
    EXPECT_FAIL(file_read_all(tp("does_not_exist"), &b, &n, &err), err, "No such file");
    CHECK(strstr(err.msg, "cannot open") && strstr(err.msg, "does_not_exist"), "%s", err.msg);
    CHECK(b == NULL && n == 0, "outputs cleared");
    EXPECT_FAIL(file_read_all(tmpdir, &b, &n, &err), err, "Is a directory");

    /* chunks, including a NULL zero-length one, concatenate */
    const void *chunks[4] = {"hello ", NULL, "world", "!"};
    size_t lens[4] = {6, 0, 5, 1};
    snprintf(p, sizeof p, "%s", tp("chunks.txt"));
    CHECK(file_write_atomic(p, chunks, lens, 4, &err) == 0, "%s", err.msg);
    CHECK(file_equals(p, "hello world!"), "content");
    CHECK(file_write_atomic(p, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    CHECK(file_read_all(p, &b, &n, &err) == 0 && b != NULL && n == 0, "empty file reads as 0 bytes");
    free(b);

    /* a large file (several read() calls' worth) */
    size_t big = 5u << 20;
    unsigned char *src = malloc(big);
    for (size_t i = 0; i < big; i++) src[i] = (unsigned char)(i * 2654435761u >> 13);
    const void *c1[1] = {src};
    size_t l1[1] = {big};
    CHECK(file_write_atomic(p, c1, l1, 1, &err) == 0, "%s", err.msg);
    CHECK(file_read_all(p, &b, &n, &err) == 0 && n == big && memcmp(b, src, big) == 0, "5 MiB round trip");
    free(b);
    free(src);
    CHECK(count_temp_files(tmpdir) == 0, "no temp files left");
}

static void test_atomic_keeps_old(void) {
    err_t err;
    char target[600], sub[512], dirpath[600];
    const void *chunks[1] = {"new content"};
    size_t lens[1] = {11};

    snprintf(sub, sizeof sub, "%s", tp("atomic"));
    CHECK(file_make_dirs(sub, &err) == 0, "%s", err.msg);
    snprintf(target, sizeof target, "%s/keep.txt", sub);
    write_bytes(target, "old content", 11);

    /* bad path: the directory does not exist */
    EXPECT_FAIL(file_write_atomic(tp("no_such_dir/keep.txt"), chunks, lens, 1, &err), err, "No such file");
    EXPECT_FAIL(file_write_atomic("", chunks, lens, 1, &err), err, "empty path");

    /* the target is a directory: the rename fails after the data was written */
    snprintf(dirpath, sizeof dirpath, "%s/isdir", sub);
    CHECK(file_make_dirs(dirpath, &err) == 0, "%s", err.msg);
    EXPECT_FAIL(file_write_atomic(dirpath, chunks, lens, 1, &err), err, "cannot rename");
    CHECK(count_temp_files(sub) == 0, "temp file removed after failed rename");

    /* a write that fails midway (file size limit -> EFBIG, like a full disk) */
    {
        struct rlimit old, lim;
        size_t big = 1u << 20;
        unsigned char *junk = calloc(big, 1);
        const void *c2[2] = {"header", junk};
        size_t l2[2] = {6, big};
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = 4096;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
        int rc = file_write_atomic(target, c2, l2, 2, &err);
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, prev);
        EXPECT_FAIL(rc, err, "File too large");
        CHECK(strstr(err.msg, "keep.txt") != NULL, "message names the file: %s", err.msg);
        CHECK(file_equals(target, "old content"), "old file intact after failed write");
        CHECK(count_temp_files(sub) == 0, "temp file removed after failed write");
        free(junk);
    }

    /* a directory we may not write into (meaningless for root, who bypasses modes) */
    if (geteuid() != 0) {
        chmod(sub, 0555);
        EXPECT_FAIL(file_write_atomic(target, chunks, lens, 1, &err), err, "Permission denied");
        chmod(sub, 0755);
        CHECK(file_equals(target, "old content"), "old file intact in read-only dir");
    } else {
        printf("    (running as root: read-only directory case skipped)\n");
    }

    CHECK(file_write_atomic(target, chunks, lens, 1, &err) == 0, "%s", err.msg);
    CHECK(file_equals(target, "new content"), "replaced");
    CHECK(count_temp_files(sub) == 0, "no temp files left");
}

/* ---------------------------------------------------------------- safetensors */

/* file_keep_previous: the old contents stay at prev after path is replaced;
 * nothing to do without a file at path. */
static void test_keep_previous(void) {
    char a[512], prev[512];
    err_t err;
    snprintf(a, sizeof a, "%s", tp("keep"));
    snprintf(prev, sizeof prev, "%s", tp("keep.prev"));
    const void *c1[1] = {"one"}, *c2[1] = {"two"}, *c3[1] = {"three"};
    size_t l3 = 3, l5 = 5;
    CHECK(file_keep_previous(a, prev, &err) == 0 && access(prev, F_OK) != 0, "no file yet: %s", err.msg);
    CHECK(file_write_atomic(a, c1, &l3, 1, &err) == 0, "%s", err.msg);
    CHECK(file_keep_previous(a, prev, &err) == 0 && file_equals(prev, "one"), "prev holds one: %s", err.msg);
    CHECK(file_write_atomic(a, c2, &l3, 1, &err) == 0, "%s", err.msg);
    CHECK(file_equals(a, "two") && file_equals(prev, "one"), "latest two, previous one");
    CHECK(file_keep_previous(a, prev, &err) == 0 && file_write_atomic(a, c3, &l5, 1, &err) == 0, "%s", err.msg);
    CHECK(file_equals(a, "three") && file_equals(prev, "two"), "latest three, previous two");
}

static void test_st_dtypes(void) {
    CHECK(st_dtype_from_name("F32") == ST_F32 && st_dtype_from_name("BF16") == ST_BF16, "lookup");
    CHECK(st_dtype_from_name("F8_E4M3FNUZ") == ST_F8_E4M3FNUZ && st_dtype_from_name("f32") == -1, "case");
    CHECK(st_dtype_bits(ST_F64) == 64 && st_dtype_bits(ST_F4) == 4 && st_dtype_bits(99) == 0, "bits");
    for (int i = 0; i < ST_NUM_DTYPES; i++)
        CHECK(st_dtype_from_name(st_dtype_name(i)) == i && st_dtype_bits(i) > 0, "dtype %d", i);
}

static void test_st_roundtrip(void) {
    err_t err;
    st_file f;
    char path[512];
    float w[6] = {1.5f, -2.25f, 3e-38f, 1e30f, -0.0f, 0.1f};
    float s = 42.0f;
    int64_t steps[4] = {0, -1, INT64_MAX, INT64_MIN};
    uint8_t bytes[5] = {0, 1, 127, 128, 255};
    st_entry e[] = {
        {"w", ST_F32, 2, {2, 3}, w},
        {"steps", ST_I64, 1, {4}, steps},
        {"bytes", ST_U8, 1, {5}, bytes},
        {"scalar", ST_F32, 0, {0}, &s},
        {"empty", ST_F32, 2, {0, 3}, NULL},
        {"a \"quoted\" name/with\\slash", ST_F32, 1, {1}, &s},
    };
    const char *meta[] = {"step", "100", "note", "tab\there \"q\" \xc3\xa9", NULL};

    snprintf(path, sizeof path, "%s", tp("rt.safetensors"));
    CHECK(st_write(path, e, 6, meta, &err) == 0, "%s", err.msg);
    CHECK(count_temp_files(tmpdir) == 0, "no temp files");

    /* layout: padded header; I64 first, then F32 by name, then U8 */
    {
        unsigned char *b;
        size_t n;
        CHECK(file_read_all(path, &b, &n, &err) == 0, "%s", err.msg);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
        CHECK(hl % 8 == 0 && b[8] == '{' && b[8 + hl - 1] != '\n', "header length %llu", (unsigned long long)hl);
        CHECK(n == 8 + hl + 32 + 4 * 6 + 4 + 4 + 5, "file size %zu", n);
        char *h = strndup((char *)b + 8, hl);
        printf("    header: %s\n", h);
        const char *lit = "{\"__metadata__\":{\"format\":\"pt\",\"step\":\"100\",\"note\":\"tab\\there \\\"q\\\" \xc3\xa9\","
                          "\"ddpm.xxh64\":\"{\\\"__metadata__\\\":\\\"";
        CHECK(strncmp(h, lit, strlen(lit)) == 0, "metadata first, escaped, then the checksums");
        char *ps = strstr(h, "\"steps\""), *pa = strstr(h, "\"a \\\"quoted"), *pe = strstr(h, "\"empty\""),
             *pw = strstr(h, "\"w\""), *pb = strstr(h, "\"bytes\"");
        CHECK(ps && pa && pe && pw && pb && ps < pa && pa < pe && pe < pw && pw < pb, "tensor order");
        CHECK(strstr(h, "\"steps\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[0,32]}") != NULL, "steps entry");
        CHECK(strstr(h, "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[36,40]}") != NULL, "scalar");
        free(h);
        free(b);
    }

    CHECK(st_open(&f, path, &err) == 0, "%s", err.msg);
    CHECK(f.n == 6, "n=%d", f.n);
    CHECK(st_meta(&f, "format") && strcmp(st_meta(&f, "format"), "pt") == 0, "format");
    CHECK(st_meta(&f, "step") && strcmp(st_meta(&f, "step"), "100") == 0, "step");
    CHECK(st_meta(&f, "note") && strcmp(st_meta(&f, "note"), "tab\there \"q\" \xc3\xa9") == 0, "note");
    CHECK(st_meta(&f, "absent") == NULL, "absent meta");

    size_t numel = 0;
    int64_t sh[2] = {2, 3};
    float *got = st_load_f32(&f, "w", 2, sh, &numel, &err);
    CHECK(got && numel == 6, "%s", err.msg);
    if (got) {
        CHECK(memcmp(got, w, sizeof w) == 0, "w bit-exact");
        free(got);
    }
    got = st_load_f32(&f, "scalar", 0, NULL, &numel, &err);
    CHECK(got && numel == 1 && got[0] == 42.0f, "scalar: %s", err.msg);
    free(got);
    got = st_load_f32(&f, "empty", -1, NULL, &numel, &err);
    CHECK(got && numel == 0, "empty: %s", err.msg);
    free(got);
    got = st_load_f32(&f, "a \"quoted\" name/with\\slash", 1, NULL, &numel, &err);
    CHECK(got && numel == 1 && got[0] == 42.0f, "escaped name: %s", err.msg);
    free(got);

    const st_tensor *t = st_find(&f, "steps");
    int64_t st_back[4] = {0};
    CHECK(t && t->dtype == ST_I64 && t->ndim == 1 && t->shape[0] == 4 && t->numel == 4, "steps tensor");
    CHECK(t && st_read_raw(&f, t, st_back, sizeof st_back, &err) == 0 && memcmp(st_back, steps, sizeof steps) == 0,
          "steps raw: %s", err.msg);
    if (t) {
        EXPECT_FAIL(st_read_raw(&f, t, st_back, 8, &err), err, "expected 8");
        float tmp[4];
        EXPECT_FAIL(st_read_f32(&f, t, tmp, 4, &err), err, "dtype I64");
    }
    t = st_find(&f, "bytes");
    uint8_t b_back[5] = {0};
    CHECK(t && t->dtype == ST_U8 && st_read_raw(&f, t, b_back, 5, &err) == 0 && memcmp(b_back, bytes, 5) == 0,
          "bytes raw");
    t = st_find(&f, "w");
    if (t) {
        float tmp[5];
        EXPECT_FAIL(st_read_f32(&f, t, tmp, 5, &err), err, "has 6 elements");
    }
    st_close(&f);
    st_close(&f); /* idempotent */

    /* metadata overriding "format", no tensors */
    const char *meta2[] = {"format", "ddpm", NULL};
    CHECK(st_write(path, NULL, 0, meta2, &err) == 0, "%s", err.msg);
    CHECK(st_open(&f, path, &err) == 0 && f.n == 0 && strcmp(st_meta(&f, "format"), "ddpm") == 0, "%s", err.msg);
    st_close(&f);
}

static void test_st_write_errors(void) {
    err_t err;
    float x[2] = {1, 2};
    char path[512];
    snprintf(path, sizeof path, "%s", tp("werr.safetensors"));
    st_entry dup[] = {{"a", ST_F32, 1, {2}, x}, {"a", ST_U8, 1, {2}, x}};
    EXPECT_FAIL(st_write(path, dup, 2, NULL, &err), err, "duplicate tensor name 'a'");
    st_entry neg[] = {{"a", ST_F32, 1, {-2}, x}};
    EXPECT_FAIL(st_write(path, neg, 1, NULL, &err), err, "invalid shape");
    st_entry sub[] = {{"a", ST_F4, 1, {2}, x}};
    EXPECT_FAIL(st_write(path, sub, 1, NULL, &err), err, "unsupported dtype F4");
    st_entry meta_name[] = {{"__metadata__", ST_F32, 1, {2}, x}};
    EXPECT_FAIL(st_write(path, meta_name, 1, NULL, &err), err, "invalid name");
    st_entry nodata[] = {{"a", ST_F32, 1, {2}, NULL}};
    EXPECT_FAIL(st_write(path, nodata, 1, NULL, &err), err, "no data");
    const char *badmeta[] = {"k", NULL};
    EXPECT_FAIL(st_write(path, NULL, 0, badmeta, &err), err, "has no value");
    const char *dupmeta[] = {"k", "1", "k", "2", NULL};
    EXPECT_FAIL(st_write(path, NULL, 0, dupmeta, &err), err, "duplicate metadata key");
    st_entry ok[] = {{"a", ST_F32, 1, {2}, x}};
    EXPECT_FAIL(st_write(tp("missing_dir/x.safetensors"), ok, 1, NULL, &err), err, "No such file");
    CHECK(access(path, F_OK) != 0, "nothing written on errors");
}

static void test_st_convert(void) {
    err_t err;
    st_file f;
    /* F16 values and their exact float equivalents */
    static const uint16_t h[] = {0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400,
                                 0x8001, 0x3555, 0x7c00, 0xfc00, 0x7e00, 0x7c01};
    const float href[] = {0.0f, -0.0f, 1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f,
                          6.0975551605224609e-05f, 6.103515625e-05f, -5.9604644775390625e-08f,
                          0.333251953125f};
    static const uint16_t bf[] = {0x3f80, 0xc040, 0x4049, 0x0001, 0x7f80, 0xff80, 0x7fc0};
    const float bfref[] = {1.0f, -3.0f, 3.140625f, 9.18354961579912e-41f};
    const double d[] = {1.5, -1e300, 1e-50, 3.4028234663852886e38, -0.1};
    const float dref[] = {1.5f, -INFINITY, 0.0f, 3.4028234663852886e38f, -0.1f};
    unsigned char data[28 + 14 + 40];
    size_t nh = sizeof h / 2, nb = sizeof bf / 2, nd = sizeof d / 8;
    for (size_t i = 0; i < nh; i++) data[2 * i] = h[i] & 0xff, data[2 * i + 1] = h[i] >> 8;
    for (size_t i = 0; i < nb; i++) data[28 + 2 * i] = bf[i] & 0xff, data[28 + 2 * i + 1] = bf[i] >> 8;
    memcpy(data + 42, d, sizeof d);
    /* odd header length: data not aligned in the file (old writers) */
    const char *hdr = "{\"half\":{\"dtype\":\"F16\",\"shape\":[14],\"data_offsets\":[0,28]},"
                      "\"bf\":{\"dtype\":\"BF16\",\"shape\":[7],\"data_offsets\":[28,42]},"
                      "\"dbl\":{\"dtype\":\"F64\",\"shape\":[5],\"data_offsets\":[42,82]}, \"__metadata__\":{}}  ";
    write_st_raw(tp("conv.safetensors"), hdr, -1, data, sizeof data);
    CHECK(st_open(&f, tp("conv.safetensors"), &err) == 0, "%s", err.msg);
    CHECK(f.n_meta == 0, "empty metadata");

    float out[14];
    const st_tensor *t = st_find(&f, "half");
    CHECK(t && st_read_f32(&f, t, out, nh, &err) == 0, "%s", err.msg);
    check_close("F16 finite values", out, href, 10, 0, 0);
    CHECK(signbit(out[1]) && !signbit(out[0]), "signed zero");
    CHECK(isinf(out[10]) && out[10] > 0 && isinf(out[11]) && out[11] < 0, "F16 inf: %g %g", out[10], out[11]);
    CHECK(isnan(out[12]) && isnan(out[13]), "F16 NaN: %g %g", out[12], out[13]);

    t = st_find(&f, "bf");
    CHECK(t && st_read_f32(&f, t, out, nb, &err) == 0, "%s", err.msg);
    check_close("BF16 finite values", out, bfref, 4, 0, 0);
    CHECK(isinf(out[4]) && out[4] > 0 && isinf(out[5]) && out[5] < 0 && isnan(out[6]), "BF16 inf/nan");

    t = st_find(&f, "dbl");
    CHECK(t && st_read_f32(&f, t, out, nd, &err) == 0, "%s", err.msg);
    CHECK(out[1] == -INFINITY, "F64 overflow -> -inf: %g", out[1]);
    out[1] = 0;
    float dref2[5];
    memcpy(dref2, dref, sizeof dref2);
    dref2[1] = 0;
    check_close("F64 values", out, dref2, nd, 0, 0);
    st_close(&f);
}

/* Corrupt files: one test each, checking the message. */
static void test_st_corrupt(void) {
    const char *ok_entry = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    st_file f;
    err_t err;

    write_bytes(tp("empty.safetensors"), "", 0);
    EXPECT_FAIL(st_open(&f, tp("empty.safetensors"), &err), err, "file is empty");
    CHECK(strstr(err.msg, "empty.safetensors:") != NULL, "names the file: %s", err.msg);
    write_bytes(tp("short.safetensors"), "\x10\0\0\0\0", 5);
    EXPECT_FAIL(st_open(&f, tp("short.safetensors"), &err), err, "too short (5 bytes)");
    EXPECT_FAIL(st_open(&f, tp("absent.safetensors"), &err), err, "cannot open");

    st_open_expect_fail(ok_entry, 1000, NULL, 8, "runs past the end of the file");
    st_open_expect_fail(ok_entry, 200000000, NULL, 8, "exceeds the limit");
    st_open_expect_fail("[\"a\"]", -1, NULL, 0, "does not start with '{'");
    st_open_expect_fail("", -1, NULL, 0, "does not start with '{'");
    st_open_expect_fail("{\"a\":{\"dtype\":", -1, NULL, 0, "not valid JSON");
    st_open_expect_fail("{} {}", -1, NULL, 0, "not valid JSON");
    st_open_expect_fail("{\"a\":\xff}", -1, NULL, 0, "not valid UTF-8");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, NULL, 8,
                        "tensor 'a': unknown dtype 'F33'");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", -1, NULL, 8, "missing \"data_offsets\"");
    st_open_expect_fail("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", -1, NULL, 8, "missing \"dtype\"");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", -1, NULL, 8, "missing \"shape\"");
    st_open_expect_fail("{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", -1, NULL, 8,
                        "\"dtype\" is not a string");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, NULL, 8,
                        "shape[0] is not a non-negative integer");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", -1, NULL, 8,
                        "shape[0]");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", -1,
                        NULL, 8, "9 dimensions");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", -1, NULL, 8,
                        "\"data_offsets\" is not [begin, end]");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", -1, NULL, 8,
                        "end before they begin");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, NULL, 8,
                        "size mismatch");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}",
                        -1, NULL, 8, "too large");
    st_open_expect_fail("{\"conv_in.weight\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", -1,
                        NULL, 300, "tensor 'conv_in.weight': data_offsets [0, 400] outside the 300-byte data buffer");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                        -1, NULL, 12, "overlap");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                        -1, NULL, 12, "gap of 4 unused bytes");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, NULL, 8,
                        "gap of 4 unused bytes in the data buffer at offset 0");
    st_open_expect_fail(ok_entry, -1, NULL, 12, "4 unused bytes at the end");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                        -1, NULL, 8, "duplicate tensor name 'a'");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1,
                        NULL, 8, "duplicate key \"dtype\"");
    st_open_expect_fail("{\"__metadata__\":{\"format\":1}}", -1, NULL, 0, "\"__metadata__\" value of key 'format'");
    st_open_expect_fail("{\"__metadata__\":[]}", -1, NULL, 0, "\"__metadata__\" is not a JSON object");
    st_open_expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", -1, NULL, 0, "duplicate \"__metadata__\"");
    st_open_expect_fail("{\"a\":[1]}", -1, NULL, 0, "entry is not a JSON object");
    st_open_expect_fail("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", -1, NULL, 1,
                        "not a whole number of bytes");

    /* zero-size tensors anywhere, unknown keys ignored, trailing spaces allowed */
    write_st_raw(tp("zero.safetensors"),
                 "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1},"
                 "\"y\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[0,0]}}    ",
                 -1, NULL, 8);
    CHECK(st_open(&f, tp("zero.safetensors"), &err) == 0 && f.n == 3, "zero-size tensors: %s", err.msg);
    st_close(&f);
}

/* A valid file truncated at every length and with every header byte
 * corrupted: st_open must fail cleanly (or succeed) and never crash. */
static void test_st_truncated(void) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t idx[2] = {7, 8};
    st_entry e[] = {{"w", ST_F32, 2, {2, 3}, w}, {"idx", ST_I64, 1, {2}, idx}};
    err_t err;
    st_file f;
    unsigned char *b;
    size_t n;
    char path[512], cut[512];
    int fails = 0, opened = 0;

    snprintf(path, sizeof path, "%s", tp("full.safetensors"));
    snprintf(cut, sizeof cut, "%s", tp("cut.safetensors"));
    CHECK(st_write(path, e, 2, NULL, &err) == 0, "%s", err.msg);
    CHECK(file_read_all(path, &b, &n, &err) == 0, "%s", err.msg);

    /* truncated data: the last tensor runs past the data buffer */
    write_bytes(cut, b, n - 3);
    EXPECT_FAIL(st_open(&f, cut, &err), err, "outside the 37-byte data buffer");

    for (size_t len = 0; len < n; len++) {
        write_bytes(cut, b, len);
        memset(&err, 0, sizeof err);
        if (st_open(&f, cut, &err) == -1 && err.msg[0]) fails++;
        st_close(&f);
    }
    CHECK(fails == (int)n, "every truncation rejected with a message (%d of %zu)", fails, n);

    for (size_t i = 0; i < n - 40; i++) {
        unsigned char saved = b[i];
        static const unsigned char repl[] = {0x00, '{', '}', '"', '[', '9', 0xff, ' '};
        for (size_t r = 0; r < sizeof repl; r++) {
            b[i] = repl[r];
            write_bytes(cut, b, n);
            memset(&err, 0, sizeof err);
            int rc = st_open(&f, cut, &err);
            if (rc == 0) opened++;
            else CHECK(err.msg[0] != 0, "message for corruption at %zu", i);
            st_close(&f);
        }
        b[i] = saved;
    }
    printf("    byte corruptions: %d of %zu still valid files\n", opened, (n - 40) * 8);
    free(b);
}

static void test_st_load_errors(void) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t idx[2] = {7, 8};
    st_entry e[] = {{"w", ST_F32, 2, {2, 3}, w}, {"idx", ST_I64, 1, {2}, idx}};
    err_t err;
    st_file f;
    size_t numel = 99;
    char path[512];

    snprintf(path, sizeof path, "%s", tp("load.safetensors"));
    CHECK(st_write(path, e, 2, NULL, &err) == 0, "%s", err.msg);
    CHECK(st_open(&f, path, &err) == 0, "%s", err.msg);
    int64_t want[2] = {3, 2};
    float *p = st_load_f32(&f, "w", 2, want, &numel, &err);
    EXPECT_FAIL(p ? 0 : -1, err, "tensor 'w' has shape [2, 3], expected [3, 2]");
    CHECK(strstr(err.msg, "load.safetensors") != NULL && numel == 0, "%s", err.msg);
    int64_t want3[3] = {2, 3, 1};
    p = st_load_f32(&f, "w", 3, want3, &numel, &err);
    EXPECT_FAIL(p ? 0 : -1, err, "expected [2, 3, 1]");
    p = st_load_f32(&f, "w", 1, NULL, &numel, &err);
    EXPECT_FAIL(p ? 0 : -1, err, "expected 1 dimension");
    p = st_load_f32(&f, "nope", -1, NULL, &numel, &err);
    EXPECT_FAIL(p ? 0 : -1, err, "missing tensor 'nope'");
    p = st_load_f32(&f, "idx", 1, NULL, &numel, &err);
    EXPECT_FAIL(p ? 0 : -1, err, "dtype I64");
    CHECK(st_find(&f, "nope") == NULL, "st_find missing");
    st_close(&f);
}

/* The file offset of the first byte of tensor name in the file at path. */
static size_t tensor_offset(const char *path, const char *name) {
    st_file f;
    err_t err;
    CHECK(st_open(&f, path, &err) == 0, "%s", err.msg);
    const st_tensor *t = st_find(&f, name);
    size_t off = t ? (size_t)(f.data - f.buf) + t->begin : 0;
    CHECK(t != NULL, "tensor %s", name);
    st_close(&f);
    return off;
}

static void flip_byte(const char *path, size_t off) {
    unsigned char *b;
    size_t n;
    err_t err;
    CHECK(file_read_all(path, &b, &n, &err) == 0 && off < n, "%s", err.msg);
    b[off] ^= 0x10;
    write_bytes(path, b, n);
    free(b);
}

/* The XXH64 checksums st_write stores: each tensor's, and the metadata's;
 * verified when read, ignored with verification off, and a header whose
 * checksum list is malformed is refused naming the file. */
static void test_st_checksums(void) {
    float w[6] = {1, 2, 3, 4, 5, 6}, v[3] = {7, 8, 9};
    st_entry e[] = {{"w", ST_F32, 2, {2, 3}, w}, {"v", ST_F32, 1, {3}, v}, {"none", ST_F32, 1, {0}, NULL}};
    const char *meta[] = {"step", "100", NULL};
    err_t err;
    st_file f;
    char path[512];
    size_t numel;
    snprintf(path, sizeof path, "%s", tp("sums.safetensors"));
    CHECK(st_write(path, e, 3, meta, &err) == 0, "%s", err.msg);
    CHECK(st_open(&f, path, &err) == 0, "%s", err.msg);
    const st_tensor *t = st_find(&f, "w");
    CHECK(t && t->has_sum && t->sum == XXH64(w, sizeof w, 0), "the checksum of 'w' is XXH64 of its bytes");
    t = st_find(&f, "none");
    CHECK(t && t->has_sum && t->sum == XXH64("", 0, 0), "an empty tensor has the checksum of no bytes");
    CHECK(st_meta(&f, ST_SUM_KEY) && strstr(st_meta(&f, ST_SUM_KEY), "\"__metadata__\":\""), "%s",
          st_meta(&f, ST_SUM_KEY));
    CHECK(st_verify(&f, &err) == 0, "%s", err.msg);
    st_close(&f);
    const char *reserved[] = {ST_SUM_KEY, "x", NULL};
    EXPECT_FAIL(st_write(tp("res.safetensors"), e, 1, reserved, &err), err, "reserved for the checksums");

    /* A flipped bit in the data of 'v': 'v' fails, 'w' still reads. */
    flip_byte(path, tensor_offset(path, "v") + 5);
    CHECK(st_open(&f, path, &err) == 0, "the header is intact: %s", err.msg);
    float *p = st_load_f32(&f, "w", 2, NULL, &numel, &err);
    CHECK(p && memcmp(p, w, sizeof w) == 0, "w: %s", err.msg);
    free(p);
    p = st_load_f32(&f, "v", 1, NULL, &numel, &err);
    EXPECT_FAIL(p ? 0 : -1, err, "sums.safetensors: tensor 'v' fails its checksum: the file is corrupt");
    float out[3];
    EXPECT_FAIL(st_read_f32(&f, st_find(&f, "v"), out, 3, &err), err, "tensor 'v' fails its checksum");
    EXPECT_FAIL(st_read_raw(&f, st_find(&f, "v"), out, sizeof out, &err), err, "tensor 'v' fails its checksum");
    EXPECT_FAIL(st_verify(&f, &err), err, "tensor 'v' fails its checksum");
    st_close(&f);
    /* Verification off: the same file reads, unchecked. */
    st_set_verify(0);
    CHECK(!st_verify_enabled(), "switch");
    CHECK(st_open(&f, path, &err) == 0 && !st_find(&f, "v")->has_sum, "%s", err.msg);
    p = st_load_f32(&f, "v", 1, NULL, &numel, &err);
    CHECK(p && numel == 3 && p[0] == v[0] && p[1] != v[1], "--no-verify reads the corrupt tensor: %s", err.msg);
    free(p);
    st_close(&f);
    st_set_verify(1);

    /* The metadata: a changed value of the same length fails the metadata's checksum. */
    CHECK(st_write(path, e, 3, meta, &err) == 0, "%s", err.msg);
    {
        unsigned char *b;
        size_t n;
        CHECK(file_read_all(path, &b, &n, &err) == 0, "%s", err.msg);
        char *at = memmem(b, n, "\"100\"", 5);
        CHECK(at != NULL, "step in the header");
        if (at) at[3] = '1';
        write_bytes(path, b, n);
        free(b);
    }
    EXPECT_FAIL(st_open(&f, path, &err), err, "sums.safetensors: the metadata fails its checksum: the file is corrupt");
    st_set_verify(0);
    CHECK(st_open(&f, path, &err) == 0 && strcmp(st_meta(&f, "step"), "101") == 0, "unchecked: %s", err.msg);
    st_close(&f);
    st_set_verify(1);

    /* Malformed checksum lists: refused naming the file (read as before when unchecked). */
    static const struct {
        const char *sums, *want;
    } bad[] = {
        {"[1]", "'ddpm.xxh64' is not a JSON object"},
        {"{\\\"y\\\":\\\"0123456789abcdef\\\"}", "names tensor 'y', which the file does not hold"},
        {"{}", "tensor 'x' has no checksum"},
        {"{\\\"x\\\":\\\"0123456789abcde\\\"}", "the checksum of tensor 'x' is not 16 hex digits"},
        {"{\\\"x\\\":\\\"0123456789abcdeg\\\"}", "is not 16 hex digits"},
        {"{\\\"x\\\":12}", "is not 16 hex digits"},
        {"{\\\"x\\\":\\\"0123456789abcdef\\\",\\\"x\\\":\\\"0123456789abcdef\\\"}", "two checksums of tensor 'x'"},
        {"{\\\"__metadata__\\\":\\\"zz\\\"}", "the metadata's checksum is repeated or not 16 hex digits"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hdr[512];
        snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"ddpm.xxh64\":\"%s\"},\"x\":{\"dtype\":\"U8\",\"shape\":[2],"
                 "\"data_offsets\":[0,2]}}", bad[i].sums);
        st_open_expect_fail(hdr, -1, NULL, 2, bad[i].want);
        st_set_verify(0);
        CHECK(st_open(&f, tp("bad.safetensors"), &err) == 0, "unchecked, the file opens: %s", err.msg);
        st_close(&f);
        st_set_verify(1);
    }
    /* Without checksums (diffusers, older ddpm): read as before. */
    write_st_raw(tp("plain.safetensors"), "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, w, 4);
    CHECK(st_open(&f, tp("plain.safetensors"), &err) == 0 && !f.tensors[0].has_sum && st_verify(&f, &err) == 0,
          "%s", err.msg);
    p = st_load_f32(&f, "x", 1, NULL, &numel, &err);
    CHECK(p && p[0] == 1, "%s", err.msg);
    free(p);
    st_close(&f);
}

/* ---------------------------------------------------------------- npy */

/* An .npy v1 file with header dict text (padded) and data bytes. */
static void write_npy_raw(const char *path, int major, const char *dict, const void *data, size_t dlen) {
    unsigned char b[1024];
    size_t pre = major == 1 ? 10 : 12, hl = strlen(dict), total;
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    memcpy(b + pre, dict, hl);
    while ((pre + hl + 1) % 64) b[pre + hl++] = ' ';
    b[pre + hl++] = '\n';
    b[8] = hl & 0xff;
    b[9] = (hl >> 8) & 0xff;
    if (major != 1) b[10] = b[11] = 0;
    memcpy(b + pre + hl, data, dlen);
    total = pre + hl + dlen;
    write_bytes(path, b, total);
}

static void test_npy_roundtrip(void) {
    err_t err;
    char path[512];
    float x[6] = {0.5f, -1, 2, 3e-30f, 1e30f, -0.0f}, *got = NULL;
    int64_t shape[8] = {0}, sh23[2] = {2, 3}, sh0[1] = {0}, sh6[1] = {6};
    int nd = -1;

    snprintf(path, sizeof path, "%s", tp("a.npy"));
    CHECK(npy_write_f32(path, x, 2, sh23, &err) == 0, "%s", err.msg);
    {
        unsigned char *b;
        size_t n;
        CHECK(file_read_all(path, &b, &n, &err) == 0, "%s", err.msg);
        CHECK(n == 128 + 24 && b[127] == '\n' && b[8] == 118 && b[9] == 0, "64-byte aligned data (n=%zu)", n);
        CHECK(memcmp(b + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 59) == 0, "header");
        free(b);
    }
    CHECK(npy_read_f32(path, &got, &nd, shape, &err) == 0, "%s", err.msg);
    CHECK(nd == 2 && shape[0] == 2 && shape[1] == 3 && got && memcmp(got, x, sizeof x) == 0, "f32 round trip");
    free(got);

    CHECK(npy_write_f32(path, x, 1, sh6, &err) == 0, "%s", err.msg);
    CHECK(npy_read_f32(path, &got, &nd, shape, &err) == 0 && nd == 1 && shape[0] == 6, "1-d: %s", err.msg);
    free(got);
    CHECK(npy_write_f32(path, x, 0, NULL, &err) == 0, "%s", err.msg);
    CHECK(npy_read_f32(path, &got, &nd, shape, &err) == 0 && nd == 0 && got[0] == 0.5f, "0-d: %s", err.msg);
    free(got);
    CHECK(npy_write_f32(path, NULL, 1, sh0, &err) == 0, "%s", err.msg);
    CHECK(npy_read_f32(path, &got, &nd, shape, &err) == 0 && nd == 1 && shape[0] == 0 && got, "empty: %s",
          err.msg);
    free(got);

    uint8_t u[6] = {0, 1, 2, 127, 128, 255};
    float uref[6] = {0, 1, 2, 127, 128, 255};
    snprintf(path, sizeof path, "%s", tp("u.npy"));
    CHECK(npy_write_u8(path, u, 2, sh23, &err) == 0, "%s", err.msg);
    CHECK(npy_read_f32(path, &got, &nd, shape, &err) == 0 && nd == 2, "%s", err.msg);
    if (got) check_close("u8 round trip", got, uref, 6, 0, 0);
    free(got);

    /* '<f8' converted; v2.0 and v3.0 headers; double-quoted strings and no trailing comma */
    double dd[3] = {0.1, -1e40, 7};
    float dref[3] = {0.1f, -INFINITY, 7};
    write_npy_raw(path, 2, "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3,)}", dd, sizeof dd);
    CHECK(npy_read_f32(path, &got, &nd, shape, &err) == 0 && nd == 1 && shape[0] == 3, "%s", err.msg);
    if (got) CHECK(got[0] == dref[0] && got[1] == dref[1] && got[2] == dref[2], "f8 values %g %g %g", got[0], got[1], got[2]);
    free(got);
    write_npy_raw(path, 3, "{'shape': (1, 1, 3), 'fortran_order': False, 'descr': '<f8', }", dd, sizeof dd);
    CHECK(npy_read_f32(path, &got, &nd, shape, &err) == 0 && nd == 3 && shape[2] == 3, "v3: %s", err.msg);
    free(got);
    /* fortran_order True is fine to reject even for 1-d, as documented */
    CHECK(count_temp_files(tmpdir) == 0, "no temp files");
}

static void test_npy_corrupt(void) {
    err_t err;
    char path[512];
    float *got = (float *)1;
    int nd;
    int64_t shape[8];
    float x[4] = {1, 2, 3, 4};

    snprintf(path, sizeof path, "%s", tp("bad.npy"));
    write_bytes(path, "\x93NUMPX\x01\x00\x10\x00{}", 12);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "bad magic");
    CHECK(got == NULL, "data cleared");
    write_bytes(path, "", 0);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "bad magic");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", x, 15);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "truncated data");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "4 unexpected bytes after");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "fortran_order True");
    write_npy_raw(path, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "unsupported dtype '<i4'");
    write_npy_raw(path, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "big-endian");
    write_npy_raw(path, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "structured dtype");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,4), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "more than 8 dimensions");
    write_npy_raw(path, 1, "{'descr': '<f4', 'shape': (4,), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "missing 'fortran_order'");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "unexpected or repeated key 'x'");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "bad 'shape'");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "bad 'shape'");
    write_npy_raw(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", x, 16);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "too large");
    write_bytes(path, "\x93NUMPY\x04\x00\x10\x00", 10);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "unsupported .npy format version 4.0");
    write_bytes(path, "\x93NUMPY\x01\x00\xff\x00{", 11);
    EXPECT_FAIL(npy_read_f32(path, &got, &nd, shape, &err), err, "truncated .npy header");
    EXPECT_FAIL(npy_read_f32(tp("nope.npy"), &got, &nd, shape, &err), err, "cannot open");
    int64_t neg[1] = {-1};
    EXPECT_FAIL(npy_write_f32(path, x, 1, neg, &err), err, "invalid shape");
    EXPECT_FAIL(npy_write_f32(path, x, 9, neg, &err), err, "9 dimensions");

    /* every truncation of a valid file fails */
    {
        int64_t sh[2] = {2, 2};
        unsigned char *b;
        size_t n;
        int fails = 0;
        CHECK(npy_write_f32(path, x, 2, sh, &err) == 0, "%s", err.msg);
        CHECK(file_read_all(path, &b, &n, &err) == 0, "%s", err.msg);
        for (size_t len = 0; len < n; len++) {
            write_bytes(path, b, len);
            err.msg[0] = 0;
            if (npy_read_f32(path, &got, &nd, shape, &err) == -1 && err.msg[0]) fails++;
            else free(got);
        }
        CHECK(fails == (int)n, "every truncation rejected (%d of %zu)", fails, n);
        free(b);
    }
}

/* ---------------------------------------------------------------- cleanup */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void test_cleanup(void) {
    if (!tmpdir[0]) return;
    CHECK(nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0, "removing %s: %s", tmpdir, strerror(errno));
}

TEST_MAIN(test_path_join, test_make_dirs, test_read_all, test_atomic_keeps_old, test_keep_previous, test_st_dtypes, test_st_roundtrip,
          test_st_write_errors, test_st_convert, test_st_corrupt, test_st_truncated, test_st_load_errors,
          test_st_checksums, test_npy_roundtrip, test_npy_corrupt, test_cleanup)
