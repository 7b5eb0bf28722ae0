/* test_data.c -- tests for data input and image output: IDX (raw and gzip),
 * CIFAR-10 binary, PNG folders, PNG read/write/grid, the float->uint8
 * conversion and the deterministic loader. Temporary files live under a
 * mkdtemp directory in /tmp that each test removes when it is done. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <png.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "io/png.h"

/* ---- helpers ---- */

static void make_tmpdir(char *dir) {
    strcpy(dir, "/tmp/ddpm-test-data-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static const char *join(char *buf, const char *dir, const char *name) {
    if (snprintf(buf, 4096, "%s/%s", dir, name) >= 4096) {
        fprintf(stderr, "path too long\n");
        exit(2);
    }
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Writes an IDX file: the 4 magic bytes, ndim big-endian dims, then data
 * (len bytes), raw or gzip-compressed. */
static void write_idx(const char *path, int gz, const uint8_t magic[4], const uint32_t *dims, const uint8_t *data,
                      size_t len) {
    uint8_t hdr[4 + 16];
    int ndim = magic[3];
    memcpy(hdr, magic, 4);
    for (int k = 0; k < ndim; k++) {
        hdr[4 + 4 * k] = (uint8_t)(dims[k] >> 24);
        hdr[5 + 4 * k] = (uint8_t)(dims[k] >> 16);
        hdr[6 + 4 * k] = (uint8_t)(dims[k] >> 8);
        hdr[7 + 4 * k] = (uint8_t)dims[k];
    }
    size_t hlen = 4 + 4 * (size_t)ndim;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        if (!g || gzwrite(g, hdr, (unsigned)hlen) != (int)hlen ||
            (len && gzwrite(g, data, (unsigned)len) != (int)len) || gzclose(g) != Z_OK) {
            fprintf(stderr, "cannot write %s\n", path);
            exit(2);
        }
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(hdr, 1, hlen, f) != hlen || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
            perror(path);
            exit(2);
        }
    }
}

static const uint8_t MAGIC3[4] = {0, 0, 8, 3};

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Number of entries in dir other than . and .. */
static int count_entries(const char *dir) {
    int n = 0;
    DIR *dp = opendir(dir);
    for (struct dirent *e; dp && (e = readdir(dp));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (dp) closedir(dp);
    return n;
}

/* ---- IDX ---- */

static void test_idx_roundtrip(void) {
    char dir[64], p[4096];
    make_tmpdir(dir);
    enum { N = 3, H = 4, W = 5 };
    uint8_t data[N * H * W];
    for (int i = 0; i < N * H * W; i++) data[i] = (uint8_t)(i * 7 + 3);
    uint32_t dims[3] = {N, H, W};
    err_t err = {0};
    for (int gz = 0; gz < 2; gz++) {
        join(p, dir, gz ? "x.idx.gz" : "x.idx");
        write_idx(p, gz, MAGIC3, dims, data, sizeof data);
        dataset d;
        int rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
        CHECK(rc == 0, "gz=%d: %s", gz, err.msg);
        if (rc) continue;
        CHECK(d.n == N && d.h == H && d.w == W && d.c == 1, "gz=%d dims %d %d %d %d", gz, d.n, d.h, d.w, d.c);
        CHECK(memcmp(d.pixels, data, sizeof data) == 0, "gz=%d pixels differ", gz);
        CHECK(strstr(d.desc, p) != NULL, "desc '%s'", d.desc);
        dataset_free(&d);
        CHECK(d.pixels == NULL && d.n == 0, "dataset_free zeroes");
        dataset_free(&d); /* twice is safe */
        rc = dataset_load(&d, p, DATASET_TRAIN, 2, &err);
        CHECK(rc == 0 && d.n == 2 && memcmp(d.pixels, data, 2 * H * W) == 0, "limit 2: rc=%d n=%d", rc, d.n);
        dataset_free(&d);
        rc = dataset_load(&d, p, DATASET_TRAIN, 100, &err);
        CHECK(rc == 0 && d.n == N, "limit over n: rc=%d n=%d", rc, d.n);
        dataset_free(&d);
    }
    /* 4-dimensional variant with channels. */
    {
        const uint8_t magic4[4] = {0, 0, 8, 4};
        uint32_t dims4[4] = {2, 2, 2, 3};
        uint8_t rgb[24];
        for (int i = 0; i < 24; i++) rgb[i] = (uint8_t)(200 - i);
        join(p, dir, "rgb.idx.gz");
        write_idx(p, 1, magic4, dims4, rgb, sizeof rgb);
        dataset d;
        int rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
        CHECK(rc == 0 && d.n == 2 && d.h == 2 && d.w == 2 && d.c == 3 && memcmp(d.pixels, rgb, 24) == 0,
              "4-dim IDX: rc=%d %s", rc, err.msg);
        dataset_free(&d);
    }
    /* MNIST-layout directory: split picks the file; raw is preferred over gz. */
    {
        char sub[4096], q[4096];
        join(sub, dir, "mnist");
        mkdir(sub, 0700);
        uint32_t dtr[3] = {3, 4, 5}, dte[3] = {2, 4, 5};
        write_idx(join(q, sub, "train-images-idx3-ubyte.gz"), 1, MAGIC3, dtr, data, 3 * 20);
        write_idx(join(q, sub, "t10k-images-idx3-ubyte"), 0, MAGIC3, dte, data + 20, 2 * 20);
        write_bytes(join(q, sub, "t10k-images-idx3-ubyte.gz"), "junk", 4); /* must not be used */
        dataset d;
        int rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
        CHECK(rc == 0 && d.n == 3 && memcmp(d.pixels, data, 60) == 0, "mnist dir train: %s", err.msg);
        CHECK(rc != 0 || strstr(d.desc, "train") != NULL, "desc '%s'", d.desc);
        dataset_free(&d);
        rc = dataset_load(&d, sub, DATASET_TEST, 0, &err);
        CHECK(rc == 0 && d.n == 2 && memcmp(d.pixels, data + 20, 40) == 0, "mnist dir test: %s", err.msg);
        dataset_free(&d);
        /* Only train present: asking for test is an error naming the missing file. */
        remove(join(q, sub, "t10k-images-idx3-ubyte"));
        remove(join(q, sub, "t10k-images-idx3-ubyte.gz"));
        rc = dataset_load(&d, sub, DATASET_TEST, 0, &err);
        CHECK(rc == -1 && strstr(err.msg, "t10k-images-idx3-ubyte"), "missing split: %s", err.msg);
        CHECK(d.pixels == NULL && d.n == 0, "zeroed on failure");
        rc = dataset_load(&d, sub, 7, 0, &err);
        CHECK(rc == -1 && strstr(err.msg, "split"), "bad split: %s", err.msg);
        rc = dataset_load(&d, sub, DATASET_TRAIN, -1, &err);
        CHECK(rc == -1 && strstr(err.msg, "limit"), "bad limit: %s", err.msg);
    }
    remove_tree(dir);
}

/* Loads path expecting failure; the message must contain the path and want. */
static void expect_idx_error(const char *path, const char *want) {
    err_t err = {0};
    dataset d;
    int rc = dataset_load(&d, path, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1, "%s: loaded although it should fail", path);
    CHECK(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    CHECK(strstr(err.msg, want) != NULL, "message lacks '%s': %s", want, err.msg);
    CHECK(d.pixels == NULL && d.n == 0, "not zeroed on failure");
    printf("  expected error: %s\n", err.msg);
    dataset_free(&d);
}

static void test_idx_errors(void) {
    char dir[64], p[4096];
    make_tmpdir(dir);
    uint8_t data[2 * 3 * 3] = {0};
    uint32_t dims[3] = {2, 3, 3};
    const uint8_t bad_magic[4] = {0x12, 0x34, 0x08, 0x03}, labels[4] = {0, 0, 8, 1}, floats[4] = {0, 0, 0x0d, 3};
    for (int gz = 0; gz < 2; gz++) {
        const char *ext = gz ? ".gz" : "";
        char name[64];
        snprintf(name, sizeof name, "magic%s", ext);
        write_idx(join(p, dir, name), gz, bad_magic, dims, data, sizeof data);
        expect_idx_error(p, "not an IDX file");
        snprintf(name, sizeof name, "labels%s", ext);
        write_idx(join(p, dir, name), gz, labels, dims, data, 2);
        expect_idx_error(p, "labels file");
        snprintf(name, sizeof name, "dtype%s", ext);
        write_idx(join(p, dir, name), gz, floats, dims, data, sizeof data);
        expect_idx_error(p, "data type 0x0d");
        snprintf(name, sizeof name, "trunc%s", ext);
        write_idx(join(p, dir, name), gz, MAGIC3, dims, data, sizeof data - 1);
        expect_idx_error(p, "truncated");
        snprintf(name, sizeof name, "trunchdr%s", ext);
        write_idx(join(p, dir, name), gz, MAGIC3, dims, data, 0);
        if (!gz) truncate(p, 9);
        expect_idx_error(p, gz ? "truncated" : "truncated IDX header");
        snprintf(name, sizeof name, "zero%s", ext);
        uint32_t zdims[3] = {2, 0, 3};
        write_idx(join(p, dir, name), gz, MAGIC3, zdims, data, 0);
        expect_idx_error(p, "is zero");
        snprintf(name, sizeof name, "zeron%s", ext);
        uint32_t zn[3] = {0, 28, 28};
        write_idx(join(p, dir, name), gz, MAGIC3, zn, data, 0);
        expect_idx_error(p, "is zero");
        snprintf(name, sizeof name, "huge%s", ext);
        uint32_t hdims[3] = {70000, 70000, 1};
        write_idx(join(p, dir, name), gz, MAGIC3, hdims, data, sizeof data);
        expect_idx_error(p, "implausibly large");
        snprintf(name, sizeof name, "trailing%s", ext);
        write_idx(join(p, dir, name), gz, MAGIC3, dims, data, sizeof data); /* header says 2 images ... */
        uint32_t one[3] = {1, 3, 3};
        write_idx(p, gz, MAGIC3, one, data, sizeof data); /* ... now 1 image + 9 extra bytes */
        expect_idx_error(p, "trailing");
        snprintf(name, sizeof name, "tiny%s", ext);
        write_idx(join(p, dir, name), gz, MAGIC3, dims, data, 0);
        if (!gz) truncate(p, 2);
        if (!gz) expect_idx_error(p, "not an IDX file");
    }
    /* A gzip stream cut in the middle. */
    {
        uint8_t big[4096];
        for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 2654435761u >> 24);
        uint32_t bd[3] = {4, 32, 32};
        write_idx(join(p, dir, "cut.gz"), 1, MAGIC3, bd, big, sizeof big);
        long sz = file_size(p);
        truncate(p, sz / 2);
        err_t err = {0};
        dataset d;
        CHECK(dataset_load(&d, p, DATASET_TRAIN, 0, &err) == -1 && strstr(err.msg, p), "cut gzip: %s", err.msg);
        printf("  expected error: %s\n", err.msg);
    }
    expect_idx_error(join(p, dir, "does-not-exist"), "No such file");
    remove_tree(dir);
}

/* ---- CIFAR-10 ---- */

/* Record r of a synthetic CIFAR file: label r % 10, then planes with
 * value(r, ch, p) = (r * 31 + ch * 101 + p * 7) & 255. */
static uint8_t cifar_val(int r, int ch, int p) { return (uint8_t)((r * 31 + ch * 101 + p * 7) & 255); }

static void write_cifar(const char *path, int nrec, int first) {
    size_t len = (size_t)nrec * 3073;
    uint8_t *buf = malloc(len);
    for (int r = 0; r < nrec; r++) {
        buf[r * 3073] = (uint8_t)((first + r) % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 1024; p++) buf[r * 3073 + 1 + ch * 1024 + p] = cifar_val(first + r, ch, p);
    }
    write_bytes(path, buf, len);
    free(buf);
}

/* Every pixel of d equals the synthetic record first + i, in NHWC order. */
static int cifar_matches(const dataset *d, int first) {
    for (int i = 0; i < d->n; i++)
        for (int p = 0; p < 1024; p++)
            for (int ch = 0; ch < 3; ch++)
                if (d->pixels[((size_t)i * 1024 + p) * 3 + ch] != cifar_val(first + i, ch, p)) return 0;
    return 1;
}

static void test_cifar(void) {
    char dir[64], p[4096];
    make_tmpdir(dir);
    err_t err = {0};
    dataset d;
    write_cifar(join(p, dir, "two.bin"), 2, 0);
    int rc = dataset_load(&d, p, DATASET_TEST, 0, &err);
    CHECK(rc == 0 && d.n == 2 && d.h == 32 && d.w == 32 && d.c == 3, "2 records: rc=%d %s", rc, err.msg);
    /* The exact CHW -> NHWC mapping, spelled out for one pixel: image 1, (y=2, x=5), green. */
    CHECK(rc != 0 || d.pixels[((1 * 32 + 2) * 32 + 5) * 3 + 1] == cifar_val(1, 1, 2 * 32 + 5), "pixel mapping");
    CHECK(rc != 0 || cifar_matches(&d, 0), "CHW -> NHWC conversion");
    dataset_free(&d);
    rc = dataset_load(&d, p, DATASET_TRAIN, 1, &err);
    CHECK(rc == 0 && d.n == 1 && cifar_matches(&d, 0), "limit 1: %s", err.msg);
    dataset_free(&d);

    /* Bad size. */
    uint8_t junk[3073 * 2 + 1] = {0};
    write_bytes(join(p, dir, "bad.bin"), junk, sizeof junk);
    rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, p) && strstr(err.msg, "3073"), "bad size: %s", err.msg);
    printf("  expected error: %s\n", err.msg);
    write_bytes(join(p, dir, "empty.bin"), junk, 0);
    rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, p), "empty file: %s", err.msg);
    /* A label out of range means it is not CIFAR-10. */
    junk[3073] = 17;
    write_bytes(join(p, dir, "label.bin"), junk, 3073 * 2);
    rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, p) && strstr(err.msg, "label 17"), "bad label: %s", err.msg);
    printf("  expected error: %s\n", err.msg);

    /* Directory layout: five train batches and a test batch. */
    char sub[4096], q[4096];
    join(sub, dir, "cifar");
    mkdir(sub, 0700);
    for (int b = 1; b <= 5; b++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b);
        write_cifar(join(q, sub, name), b, 100 * b); /* batch b holds b records */
    }
    write_cifar(join(q, sub, "test_batch.bin"), 3, 7);
    rc = dataset_load(&d, sub, DATASET_TEST, 0, &err);
    CHECK(rc == 0 && d.n == 3 && cifar_matches(&d, 7), "cifar dir test: %s", err.msg);
    dataset_free(&d);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.n == 15, "cifar dir train: rc=%d n=%d %s", rc, d.n, err.msg);
    if (rc == 0) {
        /* batch 3 (records 300..302) starts at image 1 + 2 = 3 */
        dataset one = d;
        one.n = 3;
        one.pixels = d.pixels + 3 * 3072;
        CHECK(cifar_matches(&one, 300), "batch order");
    }
    dataset_free(&d);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 4, &err);
    CHECK(rc == 0 && d.n == 4, "cifar dir limit 4: n=%d %s", d.n, err.msg);
    dataset_free(&d);
    remove(join(q, sub, "data_batch_4.bin"));
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, "data_batch_4.bin"), "missing batch: %s", err.msg);
    remove_tree(dir);
}

/* ---- PNG ---- */

/* Writes a PNG with libpng directly (for layouts png_write_u8 never makes). */
static void write_png_raw(const char *path, int w, int h, int depth, int color, const uint8_t *data, int rowbytes,
                          const png_color *palette, int npalette, const uint8_t *trns, int ntrns, int interlace) {
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "write_png_raw %s failed\n", path);
        exit(2);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, depth, color, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, npalette);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    png_bytep *rows = malloc(sizeof(png_bytep) * h);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)data + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

static void test_png_roundtrip(void) {
    char dir[64], p[4096];
    make_tmpdir(dir);
    err_t err = {0};
    for (int c = 1; c <= 3; c += 2) {
        int w = 13, h = 7;
        uint8_t img[13 * 7 * 3];
        for (int i = 0; i < w * h * c; i++) img[i] = (uint8_t)(i * 37 + c);
        join(p, dir, c == 1 ? "gray.png" : "rgb.png");
        CHECK(png_write_u8(p, img, w, h, c, &err) == 0, "write c=%d: %s", c, err.msg);
        uint8_t *pix = NULL;
        int rw = 0, rh = 0, rc_ = 0;
        int rc = png_read_u8(p, &pix, &rw, &rh, &rc_, &err);
        CHECK(rc == 0 && rw == w && rh == h && rc_ == c, "read c=%d: rc=%d %dx%dx%d %s", c, rc, rw, rh, rc_, err.msg);
        CHECK(rc != 0 || memcmp(pix, img, (size_t)w * h * c) == 0, "c=%d pixels differ", c);
        free(pix);
        struct stat st;
        mode_t um = umask(0);
        umask(um);
        CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == (0666 & ~um), "mode %o (umask %o)", st.st_mode & 0777, um);
    }
    /* Overwriting keeps only the new file; no temporary files remain. */
    {
        uint8_t one[4] = {1, 2, 3, 4};
        CHECK(png_write_u8(join(p, dir, "gray.png"), one, 2, 2, 1, &err) == 0, "overwrite: %s", err.msg);
        uint8_t *pix = NULL;
        int w, h, c;
        CHECK(png_read_u8(p, &pix, &w, &h, &c, &err) == 0 && w == 2 && h == 2 && c == 1 && pix &&
                  memcmp(pix, one, 4) == 0,
              "overwritten content");
        free(pix);
        CHECK(count_entries(dir) == 2, "temporary files left: %d entries", count_entries(dir));
    }
    /* Conversions on read: 16-bit RGBA, 2-bit gray, palette with tRNS, gray+alpha, interlaced. */
    {
        enum { W = 5, H = 3 };
        uint16_t rgba16[H][W][4];
        uint8_t be[H][W * 8];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int k = 0; k < 4; k++) {
                    rgba16[y][x][k] = (uint16_t)(y * 13000 + x * 3001 + k * 7777 + 17);
                    be[y][x * 8 + 2 * k] = (uint8_t)(rgba16[y][x][k] >> 8);
                    be[y][x * 8 + 2 * k + 1] = (uint8_t)rgba16[y][x][k];
                }
        for (int il = 0; il < 2; il++) {
            write_png_raw(join(p, dir, "rgba16.png"), W, H, 16, PNG_COLOR_TYPE_RGB_ALPHA, &be[0][0], W * 8, NULL, 0,
                          NULL, 0, il);
            uint8_t *pix = NULL;
            int w, h, c, ok = 1;
            int rc = png_read_u8(p, &pix, &w, &h, &c, &err);
            CHECK(rc == 0 && w == W && h == H && c == 3, "rgba16 il=%d: %s", il, err.msg);
            for (int y = 0; rc == 0 && y < H; y++)
                for (int x = 0; x < W; x++)
                    for (int k = 0; k < 3; k++) ok &= pix[(y * W + x) * 3 + k] == rgba16[y][x][k] >> 8;
            CHECK(ok, "rgba16 il=%d values", il);
            free(pix);
        }
        /* 2-bit gray: values 0..3 expand to 0, 85, 170, 255. */
        uint8_t g2[H][2]; /* 5 pixels * 2 bits = 10 bits -> 2 bytes per row */
        int vals[H][W];
        for (int y = 0; y < H; y++) {
            memset(g2[y], 0, 2);
            for (int x = 0; x < W; x++) {
                vals[y][x] = (x + y) % 4;
                g2[y][x / 4] |= (uint8_t)(vals[y][x] << (6 - 2 * (x % 4)));
            }
        }
        write_png_raw(join(p, dir, "g2.png"), W, H, 2, PNG_COLOR_TYPE_GRAY, &g2[0][0], 2, NULL, 0, NULL, 0, 0);
        uint8_t *pix = NULL;
        int w, h, c, ok = 1;
        int rc = png_read_u8(p, &pix, &w, &h, &c, &err);
        CHECK(rc == 0 && w == W && h == H && c == 1, "gray2: %s", err.msg);
        for (int y = 0; rc == 0 && y < H; y++)
            for (int x = 0; x < W; x++) ok &= pix[y * W + x] == vals[y][x] * 85;
        CHECK(ok, "gray2 values");
        free(pix);
        /* Palette with transparency. */
        png_color pal[3] = {{10, 20, 30}, {200, 100, 50}, {1, 2, 3}};
        uint8_t trns[3] = {0, 128, 255}, idx8[H][W];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) idx8[y][x] = (uint8_t)((x * 2 + y) % 3);
        write_png_raw(join(p, dir, "pal.png"), W, H, 8, PNG_COLOR_TYPE_PALETTE, &idx8[0][0], W, pal, 3, trns, 3, 0);
        rc = png_read_u8(p, &pix, &w, &h, &c, &err);
        CHECK(rc == 0 && w == W && h == H && c == 3, "palette: rc=%d c=%d %s", rc, c, err.msg);
        ok = 1;
        for (int y = 0; rc == 0 && y < H; y++)
            for (int x = 0; x < W; x++) {
                const png_color *e = &pal[idx8[y][x]];
                const uint8_t *q = pix + (y * W + x) * 3;
                ok &= q[0] == e->red && q[1] == e->green && q[2] == e->blue;
            }
        CHECK(ok, "palette values");
        free(pix);
        /* Gray + alpha. */
        uint8_t ga[H][W * 2];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                ga[y][2 * x] = (uint8_t)(x * 50 + y);
                ga[y][2 * x + 1] = (uint8_t)(255 - x);
            }
        write_png_raw(join(p, dir, "ga.png"), W, H, 8, PNG_COLOR_TYPE_GRAY_ALPHA, &ga[0][0], W * 2, NULL, 0, NULL,
                      0, 1);
        rc = png_read_u8(p, &pix, &w, &h, &c, &err);
        CHECK(rc == 0 && c == 1, "gray+alpha: c=%d %s", c, err.msg);
        ok = 1;
        for (int y = 0; rc == 0 && y < H; y++)
            for (int x = 0; x < W; x++) ok &= pix[y * W + x] == ga[y][2 * x];
        CHECK(ok, "gray+alpha values");
        free(pix);
    }
    remove_tree(dir);
}

static void expect_png_error(const char *path, const char *want) {
    err_t err = {0};
    uint8_t *pix = (uint8_t *)&err; /* must be reset to NULL */
    int w, h, c;
    int rc = png_read_u8(path, &pix, &w, &h, &c, &err);
    CHECK(rc == -1 && pix == NULL, "%s: read should fail", path);
    CHECK(strstr(err.msg, path) && strstr(err.msg, want), "message lacks path or '%s': %s", want, err.msg);
    printf("  expected error: %s\n", err.msg);
}

static void test_png_corrupt(void) {
    char dir[64], p[4096], q[4096];
    make_tmpdir(dir);
    err_t err = {0};
    write_bytes(join(p, dir, "text.png"), "hello, not a png at all", 23);
    expect_png_error(p, "not a PNG");
    write_bytes(join(p, dir, "short.png"), "\x89PN", 3);
    expect_png_error(p, "not a PNG");
    expect_png_error(join(p, dir, "missing.png"), "No such file");

    enum { W = 64, H = 64 };
    static uint8_t img[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) img[i] = (uint8_t)(i * 2654435761u >> 23);
    CHECK(png_write_u8(join(p, dir, "good.png"), img, W, H, 3, &err) == 0, "%s", err.msg);
    FILE *f = fopen(p, "rb");
    long n = file_size(p);
    uint8_t *bytes = malloc(n);
    CHECK(fread(bytes, 1, n, f) == (size_t)n, "read back");
    fclose(f);
    /* Truncated at several points (in the header, in IDAT, before IEND). */
    long cuts[] = {12, 40, n / 2, n - 6};
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "cut%d.png", i);
        write_bytes(join(q, dir, name), bytes, cuts[i]);
        expect_png_error(q, "corrupt");
    }
    /* A flipped byte inside the image data: CRC error. */
    bytes[n / 2] ^= 0x55;
    write_bytes(join(q, dir, "crc.png"), bytes, n);
    expect_png_error(q, "corrupt");
    /* Corrupt IHDR (width 0) with a fixed-up CRC is still an error. */
    bytes[n / 2] ^= 0x55;
    memset(bytes + 16, 0, 4);
    uint32_t crc = (uint32_t)crc32(0, bytes + 12, 17);
    bytes[29] = (uint8_t)(crc >> 24);
    bytes[30] = (uint8_t)(crc >> 16);
    bytes[31] = (uint8_t)(crc >> 8);
    bytes[32] = (uint8_t)crc;
    write_bytes(join(q, dir, "w0.png"), bytes, n);
    expect_png_error(q, "corrupt");
    free(bytes);
    remove_tree(dir);
}

static void test_png_write_errors(void) {
    char dir[64], p[4096];
    make_tmpdir(dir);
    err_t err = {0};
    uint8_t px[12] = {0};
    CHECK(png_write_u8(join(p, dir, "no/such/dir.png"), px, 2, 2, 3, &err) == -1 && strstr(err.msg, "No such file"),
          "missing dir: %s", err.msg);
    CHECK(png_write_u8(join(p, dir, "c2.png"), px, 2, 2, 2, &err) == -1 && strstr(err.msg, "c2.png"), "c=2: %s",
          err.msg);
    CHECK(png_write_u8(p, px, 0, 2, 1, &err) == -1, "w=0");
    CHECK(count_entries(dir) == 0, "nothing created");

    /* A write that runs out of space (simulated with RLIMIT_FSIZE): the error says
     * so, no temporary file remains and the previous file is untouched. */
    uint8_t old[4] = {9, 8, 7, 6};
    CHECK(png_write_u8(join(p, dir, "keep.png"), old, 2, 2, 1, &err) == 0, "%s", err.msg);
    enum { W = 256, H = 256 };
    uint8_t *noise = malloc(W * H * 3);
    uint32_t st = 2463534242u; /* xorshift32: incompressible noise */
    for (int i = 0; i < W * H * 3; i++) {
        st ^= st << 13;
        st ^= st >> 17;
        st ^= st << 5;
        noise[i] = (uint8_t)(st >> 24);
    }
    struct rlimit saved, lim;
    getrlimit(RLIMIT_FSIZE, &saved);
    lim = saved;
    lim.rlim_cur = 20000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    int rc = png_write_u8(p, noise, W, H, 3, &err);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    CHECK(rc == -1 && strstr(err.msg, strerror(EFBIG)), "full disk: rc=%d %s", rc, err.msg);
    printf("  expected error: %s\n", err.msg);
    CHECK(count_entries(dir) == 1, "temporary file left behind (%d entries)", count_entries(dir));
    uint8_t *pix = NULL;
    int w, h, c;
    CHECK(png_read_u8(p, &pix, &w, &h, &c, &err) == 0 && w == 2 && pix && memcmp(pix, old, 4) == 0,
          "old file damaged");
    free(pix);
    free(noise);
    remove_tree(dir);
}

static void test_image_to_u8(void) {
    float x[] = {-1.0f, 1.0f, 0.0f, -0.5f, 0.5f, -3.0f, 7.0f, NAN, -INFINITY, INFINITY, 1.0f / 255.0f};
    uint8_t want[] = {0, 255, 128, 64, 191, 0, 255, 0, 0, 255, 128};
    uint8_t got[sizeof want];
    png_to_u8(x, got, sizeof want);
    for (size_t i = 0; i < sizeof want; i++) CHECK(got[i] == want[i], "x=%g -> %d, want %d", x[i], got[i], want[i]);
    /* Exact inverse of the loader's mapping p / 127.5 - 1 for every byte. */
    int ok = 1;
    for (int v = 0; v < 256; v++) {
        float f = (float)v / 127.5f - 1.0f;
        uint8_t b;
        png_to_u8(&f, &b, 1);
        ok &= b == v;
    }
    CHECK(ok, "u8 -> float -> u8 round trip");
}

static void test_grid(void) {
    char dir[64], p[4096];
    make_tmpdir(dir);
    err_t err = {0};
    for (int c = 1; c <= 3; c += 2) {
        enum { N = 5, H = 2, W = 3, NC = 2, PAD = 1 };
        float imgs[N * H * W * 3];
        /* Value of image i, pixel (y, x), channel k: byte 10 + 40 i + 10 y + 3 x + k (never 0). */
        for (int i = 0; i < N; i++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++)
                    for (int k = 0; k < c; k++)
                        imgs[((i * H + y) * W + xx) * c + k] = (float)(10 + 40 * i + 10 * y + 3 * xx + k) / 127.5f - 1;
        join(p, dir, "grid.png");
        CHECK(png_write_grid(p, imgs, N, H, W, c, NC, PAD, &err) == 0, "grid c=%d: %s", c, err.msg);
        uint8_t *pix = NULL;
        int gw = 0, gh = 0, gc = 0;
        CHECK(png_read_u8(p, &pix, &gw, &gh, &gc, &err) == 0, "%s", err.msg);
        CHECK(gw == 2 * W + PAD && gh == 3 * H + 2 * PAD && gc == c, "grid size %dx%dx%d", gw, gh, gc);
        int ok = 1;
        for (int Y = 0; pix && Y < gh; Y++)
            for (int X = 0; X < gw; X++)
                for (int k = 0; k < c; k++) {
                    int col = X / (W + PAD), row = Y / (H + PAD), xx = X % (W + PAD), y = Y % (H + PAD);
                    int i = row * NC + col, want = 0;
                    if (xx < W && y < H && i < N) want = 10 + 40 * i + 10 * y + 3 * xx + k;
                    if (pix[(Y * gw + X) * c + k] != want) {
                        if (ok) printf("  grid mismatch at (%d,%d,%d): %d vs %d\n", Y, X, k, pix[(Y * gw + X) * c + k], want);
                        ok = 0;
                    }
                }
        CHECK(ok, "grid pixel placement c=%d", c);
        free(pix);
    }
    /* More columns than images: a single row; pad 0. */
    float two[2 * 4] = {-1, -1, -1, -1, 1, 1, 1, 1};
    CHECK(png_write_grid(p, two, 2, 2, 2, 1, 8, 0, &err) == 0, "%s", err.msg);
    uint8_t *pix = NULL;
    int gw, gh, gc;
    CHECK(png_read_u8(p, &pix, &gw, &gh, &gc, &err) == 0 && gw == 4 && gh == 2 && pix[0] == 0 && pix[3] == 255,
          "single row grid %dx%d", gw, gh);
    free(pix);
    CHECK(png_write_grid(p, two, 0, 2, 2, 1, 8, 0, &err) == -1, "n=0 must fail");
    CHECK(png_write_grid(p, two, 2, 2, 2, 1, 0, 0, &err) == -1, "ncols=0 must fail");
    CHECK(png_write_grid(p, two, 2, 2, 2, 1, 1, -1, &err) == -1, "pad<0 must fail");
    remove_tree(dir);
}

static void test_pngdir(void) {
    char dir[64], p[4096], sub[4096];
    make_tmpdir(dir);
    err_t err = {0};
    dataset d;
    for (int c = 1; c <= 3; c += 2) {
        join(sub, dir, c == 1 ? "gray" : "rgb");
        mkdir(sub, 0700);
        /* Written out of order; C.PNG (upper case) counts, notes.txt and a subdir do not. */
        const char *names[3] = {"b.png", "C.PNG", "a.png"};
        const int order[3] = {1, 2, 0}; /* sorted: C.PNG, a.png, b.png (byte order) */
        uint8_t img[3][4 * 6 * 3];
        for (int f = 0; f < 3; f++) {
            for (int i = 0; i < 4 * 6 * c; i++) img[f][i] = (uint8_t)(f * 80 + i);
            CHECK(png_write_u8(join(p, sub, names[f]), img[f], 6, 4, c, &err) == 0, "%s", err.msg);
        }
        write_bytes(join(p, sub, "notes.txt"), "hi", 2);
        mkdir(join(p, sub, "nested.png"), 0700);
        int rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
        CHECK(rc == 0 && d.n == 3 && d.h == 4 && d.w == 6 && d.c == c, "pngdir c=%d: rc=%d %s", c, rc, err.msg);
        for (int k = 0; rc == 0 && k < 3; k++)
            CHECK(memcmp(d.pixels + (size_t)k * 24 * c, img[order[k]], 24 * c) == 0, "image %d order/content", k);
        dataset_free(&d);
        rc = dataset_load(&d, sub, DATASET_TEST, 2, &err);
        CHECK(rc == 0 && d.n == 2 && memcmp(d.pixels, img[1], 24 * c) == 0, "pngdir limit: %s", err.msg);
        dataset_free(&d);
    }
    /* Mismatched size: the error names the file and both sizes. */
    uint8_t small[4 * 5];
    memset(small, 1, sizeof small);
    CHECK(png_write_u8(join(p, sub, "d.png"), small, 5, 4, 1, &err) == 0, "%s", err.msg);
    int rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, "d.png") && strstr(err.msg, "5x4x1") && strstr(err.msg, "6x4x3") &&
              strstr(err.msg, "C.PNG"),
          "mismatch: %s", err.msg);
    CHECK(d.pixels == NULL && d.n == 0, "zeroed on failure");
    printf("  expected error: %s\n", err.msg);
    /* A corrupt PNG in the folder is reported by name. */
    remove(join(p, sub, "d.png"));
    write_bytes(join(p, sub, "bad.png"), "nope", 4);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, "bad.png"), "corrupt member: %s", err.msg);
    /* A folder without PNGs. */
    join(sub, dir, "empty");
    mkdir(sub, 0700);
    write_bytes(join(p, sub, "readme.txt"), "x", 1);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, sub) && strstr(err.msg, "no .png"), "empty dir: %s", err.msg);
    printf("  expected error: %s\n", err.msg);
    rc = dataset_load(&d, join(p, dir, "nonexistent"), DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, "nonexistent"), "missing path: %s", err.msg);
    remove_tree(dir);
}

/* ---- class labels ---- */

static const uint8_t MAGIC1[4] = {0, 0, 8, 1};

/* Writes an IDX image file of n 2x2 images (image i filled with i) and, unless
 * labels is NULL, an IDX label file holding labels[0..nlab). */
static void write_labelled(const char *images, int gz_images, const char *labels_path, int gz_labels,
                           const uint8_t *labels, uint32_t nlab, uint32_t n) {
    uint8_t pix[64 * 4];
    for (uint32_t i = 0; i < n * 4; i++) pix[i] = (uint8_t)(i / 4);
    uint32_t dims[3] = {n, 2, 2};
    write_idx(images, gz_images, MAGIC3, dims, pix, (size_t)n * 4);
    if (labels) write_idx(labels_path, gz_labels, MAGIC1, &nlab, labels, nlab);
}

/* d has n labels equal to want[0..n) and nclasses classes. */
static int labels_are(const dataset *d, const int32_t *want, int n, int nclasses) {
    if (!d->labels || d->n != n || d->nclasses != nclasses || !d->names) return 0;
    for (int i = 0; i < n; i++)
        if (d->labels[i] != want[i]) return 0;
    return 1;
}

/* Names k of d are "0", "1", ... */
static int names_are_numbers(const dataset *d) {
    char want[16];
    for (int k = 0; k < d->nclasses; k++) {
        snprintf(want, sizeof want, "%d", k);
        if (strcmp(d->names[k], want) != 0) return 0;
    }
    return d->nclasses > 0;
}

static void test_idx_labels(void) {
    char dir[64], sub[4096], p[4096], q[4096];
    make_tmpdir(dir);
    err_t err = {0};
    dataset d;
    /* MNIST layout: raw train labels (preferred over a junk .gz), gzip test labels. */
    join(sub, dir, "mnist");
    mkdir(sub, 0700);
    const uint8_t ltr[6] = {2, 0, 1, 2, 1, 0}, lte[2] = {1, 0};
    write_labelled(join(p, sub, "train-images-idx3-ubyte"), 0, join(q, sub, "train-labels-idx1-ubyte"), 0, ltr, 6, 6);
    write_bytes(join(q, sub, "train-labels-idx1-ubyte.gz"), "junk", 4);
    write_labelled(join(p, sub, "t10k-images-idx3-ubyte.gz"), 1, join(q, sub, "t10k-labels-idx1-ubyte.gz"), 1, lte, 2,
                   2);
    int rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    const int32_t wtr[6] = {2, 0, 1, 2, 1, 0}, wte[2] = {1, 0};
    CHECK(rc == 0 && labels_are(&d, wtr, 6, 3) && names_are_numbers(&d), "raw labels: rc=%d n=%d nclasses=%d %s", rc,
          d.n, d.nclasses, err.msg);
    CHECK(rc != 0 || d.pixels[3 * 4] == 3, "images still loaded");
    CHECK(strstr(d.desc, "IDX train") && strstr(d.desc, ", 3 classes"), "desc '%s'", d.desc);
    dataset_free(&d);
    CHECK(d.labels == NULL && d.names == NULL && d.nclasses == 0, "dataset_free clears labels");
    rc = dataset_load(&d, sub, DATASET_TEST, 0, &err);
    CHECK(rc == 0 && labels_are(&d, wte, 2, 2) && names_are_numbers(&d), "gz labels: rc=%d %s", rc, err.msg);
    dataset_free(&d);
    /* limit keeps the first labels; nclasses comes from the whole file. */
    rc = dataset_load(&d, sub, DATASET_TRAIN, 2, &err);
    CHECK(rc == 0 && labels_are(&d, wtr, 2, 3), "limit 2: rc=%d n=%d nclasses=%d %s", rc, d.n, d.nclasses, err.msg);
    dataset_free(&d);
    /* Without a label file: unlabelled, not an error. */
    remove(join(q, sub, "train-labels-idx1-ubyte"));
    remove(join(q, sub, "train-labels-idx1-ubyte.gz"));
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.n == 6 && !d.labels && d.nclasses == 0 && !d.names && !strstr(d.desc, "classes"),
          "unlabelled: rc=%d nclasses=%d desc '%s' %s", rc, d.nclasses, d.desc, err.msg);
    dataset_free(&d);

    /* Single image files: the label file by name, .gz or not either way. */
    const uint8_t l4[4] = {1, 1, 0, 1};
    const int32_t w4[4] = {1, 1, 0, 1};
    for (int gz = 0; gz < 4; gz++) {
        char iname[64], lname[64];
        snprintf(iname, sizeof iname, "s%d-images-idx3-ubyte%s", gz, gz & 1 ? ".gz" : "");
        snprintf(lname, sizeof lname, "s%d-labels-idx1-ubyte%s", gz, gz & 2 ? ".gz" : "");
        write_labelled(join(p, dir, iname), gz & 1, join(q, dir, lname), gz & 2 ? 1 : 0, l4, 4, 4);
        rc = dataset_load(&d, p, DATASET_TEST, 0, &err);
        CHECK(rc == 0 && labels_are(&d, w4, 4, 2) && strstr(d.desc, ", 2 classes"), "%s + %s: rc=%d %s", iname,
              lname, rc, err.msg);
        dataset_free(&d);
    }
    /* Fashion-MNIST names when the directory says so and there are 10 classes. */
    uint8_t l10[10];
    for (int k = 0; k < 10; k++) l10[k] = (uint8_t)(9 - k);
    join(sub, dir, "My-FASHION-data");
    mkdir(sub, 0700);
    write_labelled(join(p, sub, "train-images-idx3-ubyte"), 0, join(q, sub, "train-labels-idx1-ubyte"), 0, l10, 10,
                   10);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.nclasses == 10 && d.labels && d.labels[0] == 9, "fashion dir: rc=%d %s", rc, err.msg);
    for (int k = 0; rc == 0 && d.names && k < 10; k++)
        CHECK(strcmp(d.names[k], dataset_fashion_mnist_names[k]) == 0, "name %d '%s'", k, d.names[k]);
    dataset_free(&d);
    /* ... but not with another number of classes, nor when only the file name says so. */
    write_labelled(join(p, sub, "train-images-idx3-ubyte"), 0, join(q, sub, "train-labels-idx1-ubyte"), 0, ltr, 6, 6);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.nclasses == 3 && names_are_numbers(&d), "fashion dir, 3 classes: %s", err.msg);
    dataset_free(&d);
    write_labelled(join(p, dir, "fashion-images-idx3-ubyte"), 0, join(q, dir, "fashion-labels-idx1-ubyte"), 0, l10,
                   10, 10);
    rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.nclasses == 10 && names_are_numbers(&d), "fashion file name: %s", err.msg);
    dataset_free(&d);
    remove_tree(dir);
}

/* Loading images must fail with a message naming the label file and want. */
static void expect_label_error(const char *images, const char *labels, const char *want) {
    err_t err = {0};
    dataset d;
    int rc = dataset_load(&d, images, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1, "%s: loaded although %s is bad", images, labels);
    CHECK(strstr(err.msg, labels) != NULL, "message does not name the label file: %s", err.msg);
    CHECK(strstr(err.msg, want) != NULL, "message lacks '%s': %s", want, err.msg);
    CHECK(d.pixels == NULL && d.labels == NULL && d.names == NULL && d.n == 0, "not zeroed on failure");
    printf("  expected error: %s\n", err.msg);
}

static void test_idx_label_errors(void) {
    char dir[64], p[4096], q[4096];
    make_tmpdir(dir);
    const uint8_t lab[6] = {0, 1, 2, 0, 1, 2};
    for (int gz = 0; gz < 2; gz++) {
        join(p, dir, gz ? "e1-images-idx3-ubyte.gz" : "e0-images-idx3-ubyte");
        join(q, dir, gz ? "e1-labels-idx1-ubyte.gz" : "e0-labels-idx1-ubyte");
        write_labelled(p, gz, q, gz, lab, 6, 5); /* 6 labels for 5 images */
        expect_label_error(p, q, "has 6 labels but");
        write_labelled(p, gz, q, gz, lab, 5, 6); /* 5 labels for 6 images */
        expect_label_error(p, q, "has 5 labels but");
        uint32_t six = 6, five = 5;
        write_idx(q, gz, MAGIC1, &six, lab, 5); /* header says 6, 5 bytes follow */
        expect_label_error(p, q, "truncated");
        write_labelled(p, gz, q, gz, lab, 5, 5);
        write_idx(q, gz, MAGIC1, &five, lab, 6); /* header says 5, 6 bytes follow */
        expect_label_error(p, q, "trailing");
        uint32_t five3[3] = {5, 1, 1};
        write_idx(q, gz, MAGIC3, five3, lab, 5); /* an image file in the label file's place */
        expect_label_error(p, q, "not an IDX label file");
        const uint8_t bad[4] = {0, 0, 9, 1};
        write_idx(q, gz, bad, &five, lab, 5);
        expect_label_error(p, q, "expected 00 00 08 01");
        const uint8_t gap[5] = {0, 3, 0, 3, 2}; /* class 1 never occurs */
        write_idx(q, gz, MAGIC1, &five, gap, 5);
        expect_label_error(p, q, "class 1 has no images");
        write_bytes(q, "\0\0\x08", 3);
        expect_label_error(p, q, "not an IDX label file");
    }
    remove_tree(dir);
}

static void test_cifar_labels(void) {
    char dir[64], p[4096], q[4096];
    make_tmpdir(dir);
    err_t err = {0};
    dataset d;
    write_cifar(join(p, dir, "b.bin"), 12, 5); /* labels (5 + r) % 10 */
    int rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
    int32_t want[12];
    for (int r = 0; r < 12; r++) want[r] = (5 + r) % 10;
    CHECK(rc == 0 && labels_are(&d, want, 12, 10) && names_are_numbers(&d), "labels: rc=%d %s", rc, err.msg);
    CHECK(strstr(d.desc, ", 10 classes"), "desc '%s'", d.desc);
    dataset_free(&d);
    rc = dataset_load(&d, p, DATASET_TRAIN, 3, &err);
    CHECK(rc == 0 && labels_are(&d, want, 3, 10), "limit 3: %s", err.msg);
    dataset_free(&d);
    /* A path too long for desc: the class count still ends the line. */
    char deep[4096], part[201];
    memset(part, 'd', 200);
    part[200] = '\0';
    mkdir(join(deep, dir, part), 0700);
    mkdir(join(q, deep, part), 0700);
    write_cifar(join(deep, q, "b.bin"), 1, 0);
    rc = dataset_load(&d, deep, DATASET_TRAIN, 0, &err);
    size_t dl = strlen(d.desc), sl = strlen(", 10 classes");
    CHECK(rc == 0 && dl == sizeof d.desc - 1 && strcmp(d.desc + dl - sl, ", 10 classes") == 0, "long desc: '%s' %s",
          d.desc, err.msg);
    dataset_free(&d);

    /* batches.meta.txt: CR LF, trailing blanks, blank lines, a long name, extra lines. */
    char meta[1024];
    char long_name[101];
    memset(long_name, 'x', 100);
    long_name[100] = '\0';
    snprintf(meta, sizeof meta,
             "airplane\r\nautomobile  \n\n   \nbird\ncat\t\ndeer\ndog\nfrog\nhorse\nship\n%s\nextra\n", long_name);
    write_bytes(join(q, dir, "batches.meta.txt"), meta, strlen(meta));
    rc = dataset_load(&d, p, DATASET_TRAIN, 0, &err);
    const char *names[10] = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", NULL};
    CHECK(rc == 0 && d.nclasses == 10 && d.names, "meta: rc=%d %s", rc, err.msg);
    if (rc == 0 && !d.names) rc = -1;
    for (int k = 0; rc == 0 && k < 9; k++) CHECK(strcmp(d.names[k], names[k]) == 0, "name %d '%s'", k, d.names[k]);
    CHECK(rc != 0 || (strlen(d.names[9]) == DATASET_NAME_LEN - 1 && strncmp(d.names[9], long_name, 63) == 0),
          "long name cut: '%s'", d.names[9]);
    CHECK(rc != 0 || (dataset_class_index(&d, "cat") == 3 && dataset_class_index(&d, "7") == 7), "class lookup");
    dataset_free(&d);
    /* The directory layout reads the meta file next to the batches. */
    char sub[4096];
    join(sub, dir, "cifar");
    mkdir(sub, 0700);
    write_cifar(join(q, sub, "test_batch.bin"), 4, 0);
    const char *ten = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj"; /* no final newline */
    write_bytes(join(q, sub, "batches.meta.txt"), ten, strlen(ten));
    rc = dataset_load(&d, sub, DATASET_TEST, 0, &err);
    CHECK(rc == 0 && d.nclasses == 10 && d.names && d.labels && strcmp(d.names[0], "a") == 0 && strcmp(d.names[9], "j") == 0 &&
              d.labels[3] == 3 && strstr(d.desc, "CIFAR-10 test") && strstr(d.desc, ", 10 classes"),
          "dir meta: rc=%d %s", rc, err.msg);
    dataset_free(&d);
    /* Fewer than 10 names. */
    const char *nine = "a\nb\nc\n\nd\ne\nf\ng\nh\ni\n\n\n";
    write_bytes(q, nine, strlen(nine));
    rc = dataset_load(&d, sub, DATASET_TEST, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, q) && strstr(err.msg, "has 9 class names"), "short meta: %s", err.msg);
    CHECK(d.pixels == NULL && d.labels == NULL && d.names == NULL, "zeroed on failure");
    printf("  expected error: %s\n", err.msg);
    write_bytes(q, "a\nb\0c\n", 6);
    rc = dataset_load(&d, sub, DATASET_TEST, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, q) && strstr(err.msg, "NUL"), "NUL in meta: %s", err.msg);
    remove_tree(dir);
}

/* Writes a w x 2 gray PNG whose pixels all equal v. */
static void write_flat_png(const char *path, int w, uint8_t v) {
    uint8_t px[2 * 16];
    memset(px, v, sizeof px);
    err_t err = {0};
    if (png_write_u8(path, px, w, 2, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
}

static void test_png_classes(void) {
    char dir[64], p[4096], sub[4096];
    make_tmpdir(dir);
    err_t err = {0};
    dataset d;
    join(sub, dir, "classes");
    mkdir(sub, 0700);
    /* Classes "dog" and "cat" (made in that order), a hidden folder with another
     * shape and a stray text file: order cat/z, dog/a, dog/b. */
    mkdir(join(p, sub, "dog"), 0700);
    mkdir(join(p, sub, "cat"), 0700);
    mkdir(join(p, sub, ".hidden"), 0700);
    write_flat_png(join(p, sub, "dog/b.png"), 3, 30);
    write_flat_png(join(p, sub, "dog/a.png"), 3, 20);
    write_flat_png(join(p, sub, "cat/z.png"), 3, 10);
    write_flat_png(join(p, sub, ".hidden/odd.png"), 5, 99);
    write_bytes(join(p, sub, "readme.txt"), "x", 1);
    write_bytes(join(p, sub, "dog/notes.txt"), "x", 1);
    int rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    const int32_t want[3] = {0, 1, 1};
    CHECK(rc == 0 && labels_are(&d, want, 3, 2) && d.w == 3 && d.h == 2 && d.c == 1, "classes: rc=%d n=%d %s", rc,
          d.n, err.msg);
    CHECK(rc != 0 || (d.pixels[0] == 10 && d.pixels[6] == 20 && d.pixels[12] == 30), "image order");
    CHECK(rc != 0 || !d.names || (strcmp(d.names[0], "cat") == 0 && strcmp(d.names[1], "dog") == 0), "names");
    CHECK(strstr(d.desc, "PNG folder: 3 images") && strstr(d.desc, ", 2 classes"), "desc '%s'", d.desc);
    dataset_free(&d);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 2, &err);
    CHECK(rc == 0 && labels_are(&d, want, 2, 2), "limit 2: rc=%d n=%d %s", rc, d.n, err.msg);
    dataset_free(&d);
    /* A class name longer than DATASET_NAME_LEN - 1 is cut. */
    char longdir[128];
    memset(longdir, 'q', 100);
    longdir[100] = '\0';
    mkdir(join(p, sub, longdir), 0700);
    char f[4096];
    join(f, p, "one.png");
    write_flat_png(f, 3, 40);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.nclasses == 3 && d.n == 4 && d.labels && d.names && d.labels[3] == 2 && strlen(d.names[2]) == DATASET_NAME_LEN - 1 &&
              strncmp(d.names[2], longdir, DATASET_NAME_LEN - 1) == 0,
          "long class name: rc=%d %s", rc, err.msg);
    dataset_free(&d);
    /* An empty class folder is an error naming it. */
    mkdir(join(p, sub, "empty"), 0700);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, p) && strstr(err.msg, "no .png"), "empty class: %s", err.msg);
    CHECK(d.pixels == NULL && d.labels == NULL && d.names == NULL, "zeroed on failure");
    printf("  expected error: %s\n", err.msg);
    remove(p);
    /* Shapes must match across classes. */
    write_flat_png(join(p, sub, "dog/c.png"), 4, 50);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, "dog/c.png") && strstr(err.msg, "4x2x1") && strstr(err.msg, "cat/z.png"),
          "shape mismatch: %s", err.msg);
    printf("  expected error: %s\n", err.msg);
    remove(p);
    /* Only empty subdirectories: no PNGs at all. */
    join(sub, dir, "hollow");
    mkdir(sub, 0700);
    mkdir(join(p, sub, "a"), 0700);
    mkdir(join(p, sub, "b"), 0700);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == -1 && strstr(err.msg, sub) && strstr(err.msg, "no .png"), "hollow: %s", err.msg);
    /* PNGs directly in the folder: unlabelled, subfolders ignored. */
    write_flat_png(join(p, sub, "a/in-sub.png"), 3, 1);
    write_flat_png(join(p, sub, "top.png"), 5, 2);
    rc = dataset_load(&d, sub, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.n == 1 && d.w == 5 && !d.labels && !d.names && d.nclasses == 0 && !strstr(d.desc, "classes"),
          "flat folder: rc=%d n=%d %s", rc, d.n, err.msg);
    dataset_free(&d);
    remove_tree(dir);
}

static void test_class_index(void) {
    char names[4][DATASET_NAME_LEN] = {"cat", "10", "dog", "T-shirt/top"};
    int32_t labels[1] = {0};
    dataset d = {0};
    d.labels = labels;
    d.nclasses = 4;
    d.names = names;
    CHECK(dataset_class_index(&d, "cat") == 0, "cat");
    CHECK(dataset_class_index(&d, "dog") == 2, "dog");
    CHECK(dataset_class_index(&d, "T-shirt/top") == 3, "T-shirt/top");
    CHECK(dataset_class_index(&d, "10") == 1, "name before index");
    CHECK(dataset_class_index(&d, "0") == 0 && dataset_class_index(&d, "3") == 3, "indices");
    CHECK(dataset_class_index(&d, "03") == 3, "leading zero");
    const char *bad[] = {"4", "-1", "", "Cat", "cat ", " 1", "1x", "+1", "99999999999999999999", "dog\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(dataset_class_index(&d, bad[i]) == -1, "'%s' -> %d", bad[i], dataset_class_index(&d, bad[i]));
    CHECK(dataset_class_index(&d, NULL) == -1 && dataset_class_index(NULL, "cat") == -1, "NULL");
    dataset none = {0};
    CHECK(dataset_class_index(&none, "0") == -1, "unlabelled dataset");
    CHECK(strcmp(dataset_fashion_mnist_names[0], "T-shirt/top") == 0 &&
              strcmp(dataset_fashion_mnist_names[9], "Ankle boot") == 0,
          "Fashion-MNIST names");
}

/* ---- loader ---- */

enum { LN = 10, LH = 2, LW = 3, LC = 2 };

/* Pixel (y, x, k) of image i is 20 i + 6 y + 2 x + k: every value says where it came from. */
static void make_loader_data(dataset *d, uint8_t *pix) {
    for (int i = 0; i < LN; i++)
        for (int y = 0; y < LH; y++)
            for (int x = 0; x < LW; x++)
                for (int k = 0; k < LC; k++) pix[((i * LH + y) * LW + x) * LC + k] = (uint8_t)(20 * i + 6 * y + 2 * x + k);
    memset(d, 0, sizeof *d);
    d->n = LN;
    d->h = LH;
    d->w = LW;
    d->c = LC;
    d->pixels = pix;
}

/* Decodes which image a loaded float image is and whether it is mirrored;
 * returns -1 if it is neither an exact copy nor an exact mirror. */
static int decode(const float *x, int *mirrored) {
    int i = (int)lrintf((x[0] + 1.0f) * 127.5f) / 20;
    for (int m = 0; m < 2; m++) {
        int ok = 1;
        for (int y = 0; y < LH; y++)
            for (int xx = 0; xx < LW; xx++)
                for (int k = 0; k < LC; k++) {
                    int sx = m ? LW - 1 - xx : xx;
                    float want = (float)(20 * i + 6 * y + 2 * sx + k) / 127.5f - 1.0f;
                    ok &= x[(y * LW + xx) * LC + k] == want;
                }
        if (ok) {
            *mirrored = m;
            return i;
        }
    }
    return -1;
}

static void test_loader(void) {
    uint8_t pix[LN * LH * LW * LC];
    dataset d;
    make_loader_data(&d, pix);
    err_t err = {0};
    enum { B = 4, IMG = LH * LW * LC, STEPS = 10 }; /* 40 positions = 4 epochs */
    loader a, b;
    CHECK(loader_init(&a, &d, 1234, 0, &err) == 0, "%s", err.msg);
    CHECK(loader_init(&b, &d, 1234, 0, &err) == 0, "%s", err.msg);
    float xa[B * IMG], xb[B * IMG], ref[STEPS][B * IMG];

    /* Values: exactly p / 127.5 - 1, no flips. */
    loader_batch(&a, 0, B, 0, B, xa);
    int m = 0, i0 = decode(xa, &m);
    CHECK(i0 >= 0 && i0 < LN && m == 0, "decode %d mirrored %d", i0, m);
    CHECK(xa[1] == (float)(20 * i0 + 1) / 127.5f - 1.0f, "scaling");

    /* In order on a, in reverse on b: the same batches. Same step twice: equal. */
    for (int s = 0; s < STEPS; s++) loader_batch(&a, s, B, 0, B, ref[s]);
    int same = 1;
    for (int s = STEPS - 1; s >= 0; s--) {
        loader_batch(&b, s, B, 0, B, xb);
        same &= memcmp(xb, ref[s], sizeof xb) == 0;
    }
    CHECK(same, "batches depend on call order");
    loader_batch(&a, 3, B, 0, B, xa);
    loader_batch(&a, 3, B, 0, B, xb);
    CHECK(memcmp(xa, xb, sizeof xa) == 0 && memcmp(xa, ref[3], sizeof xa) == 0, "same step twice differs");

    /* Every image exactly once per epoch; the epochs are shuffled differently. */
    int order[STEPS * B], distinct_epochs = 0;
    for (int s = 0; s < STEPS; s++)
        for (int i = 0; i < B; i++) {
            order[s * B + i] = decode(ref[s] + i * IMG, &m);
            CHECK(order[s * B + i] >= 0 && m == 0, "step %d image %d undecodable", s, i);
            CHECK((uint32_t)order[s * B + i] == loader_index(&b, (uint64_t)s * B + i), "loader_index");
        }
    for (int e = 0; e < STEPS * B / LN; e++) {
        int seen[LN] = {0};
        for (int k = 0; k < LN; k++)
            if (order[e * LN + k] >= 0) seen[order[e * LN + k]]++;
        int ok = 1;
        for (int k = 0; k < LN; k++) ok &= seen[k] == 1;
        CHECK(ok, "epoch %d is not a permutation", e);
        if (e > 0 && memcmp(order + e * LN, order + (e - 1) * LN, sizeof(int) * LN) != 0) distinct_epochs++;
    }
    CHECK(distinct_epochs > 0, "every epoch has the same order");
    /* The documented Fisher-Yates recipe, recomputed here for epoch 2. */
    {
        uint32_t perm[LN];
        for (int k = 0; k < LN; k++) perm[k] = (uint32_t)k;
        for (int k = LN - 1; k > 0; k--) {
            uint32_t j = rng_below((uint32_t)k + 1, 1234, RNG_SHUFFLE, 2, (uint64_t)k), t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        int ok = 1;
        for (int k = 0; k < LN; k++) ok &= (uint32_t)order[2 * LN + k] == perm[k];
        CHECK(ok, "epoch 2 order differs from the documented shuffle");
    }

    /* A batch larger than the dataset spans several epochs. */
    float big[25 * IMG];
    loader_batch(&a, 1, 25, 0, 25, big);
    int ok = 1;
    for (int i = 0; i < 25; i++) ok &= decode(big + i * IMG, &m) == (int)loader_index(&b, 25 + (uint64_t)i);
    CHECK(ok, "batch of 25");

    /* A different seed gives a different order. */
    loader c;
    CHECK(loader_init(&c, &d, 99, 0, &err) == 0, "%s", err.msg);
    int differs = 0;
    for (int g = 0; g < LN; g++) differs |= loader_index(&c, g) != loader_index(&b, g);
    CHECK(differs, "seed has no effect");
    loader_free(&c);

    /* Flips: exactly the images rng_below(2, seed, RNG_FLIP, step, i) picks; order unchanged. */
    loader f;
    CHECK(loader_init(&f, &d, 1234, 1, &err) == 0, "%s", err.msg);
    int nflip = 0, nkeep = 0;
    for (int s = 0; s < STEPS; s++) {
        loader_batch(&f, s, B, 0, B, xa);
        for (int i = 0; i < B; i++) {
            int idx = decode(xa + i * IMG, &m);
            int want = rng_below(2, 1234, RNG_FLIP, s, i) == 1;
            CHECK(idx == order[s * B + i] && m == want, "step %d image %d: idx %d mirrored %d want %d", s, i, idx, m,
                  want);
            if (want)
                nflip++;
            else
                nkeep++;
        }
    }
    CHECK(nflip > 0 && nkeep > 0, "flips %d keeps %d", nflip, nkeep);
    loader_free(&f);
    loader_free(&a);
    loader_free(&b);
    CHECK(a.perm == NULL, "loader_free zeroes");
    loader_free(&a);

    dataset empty = {0};
    CHECK(loader_init(&a, &empty, 1, 0, &err) == -1 && strstr(err.msg, "empty"), "empty dataset: %s", err.msg);
}

/* ---- the real Fashion-MNIST, if installed ---- */

/* d is labelled Fashion-MNIST: 10 classes with their names, `each` images
 * per class, and desc says so. */
static int class_sizes_are(const dataset *d, int each) {
    int count[10] = {0}, ok = d->labels && d->names && d->nclasses == 10 && strstr(d->desc, ", 10 classes");
    for (int i = 0; ok && i < d->n; i++) {
        ok &= d->labels[i] >= 0 && d->labels[i] < 10;
        if (ok) count[d->labels[i]]++;
    }
    for (int k = 0; ok && k < 10; k++) {
        if (count[k] != each || strcmp(d->names[k], dataset_fashion_mnist_names[k]) != 0)
            printf("  class %d '%s': %d images, want %d\n", k, d->names[k], count[k], each);
        ok &= count[k] == each && strcmp(d->names[k], dataset_fashion_mnist_names[k]) == 0;
    }
    return ok;
}

static void test_fashion_mnist(void) {
    struct stat st;
    if (stat(DATASET_FASHION_MNIST_DIR, &st) != 0) {
        printf("  note: %s not installed, skipping\n", DATASET_FASHION_MNIST_DIR);
        return;
    }
    err_t err = {0};
    dataset d;
    int rc = dataset_load(&d, NULL, DATASET_TRAIN, 0, &err);
    CHECK(rc == 0 && d.n == 60000 && d.h == 28 && d.w == 28 && d.c == 1, "train: rc=%d n=%d %s", rc, d.n, err.msg);
    if (rc == 0) {
        printf("  %s\n", d.desc);
        long sum = 0;
        for (size_t i = 0; i < (size_t)d.n * 784; i++) sum += d.pixels[i];
        double mean = (double)sum / ((double)d.n * 784);
        printf("  mean pixel %.3f\n", mean);
        CHECK(mean > 60 && mean < 90, "mean pixel %.3f (Fashion-MNIST train is about 72.9)", mean);
    }
    int32_t first[100] = {0};
    CHECK(rc != 0 || class_sizes_are(&d, 6000), "train labels");
    if (rc == 0 && d.labels) memcpy(first, d.labels, sizeof first);
    dataset_free(&d);
    rc = dataset_load(&d, "fashion-mnist", DATASET_TEST, 0, &err);
    CHECK(rc == 0 && d.n == 10000 && d.h == 28 && d.w == 28 && d.c == 1, "test: rc=%d n=%d %s", rc, d.n, err.msg);
    CHECK(rc != 0 || class_sizes_are(&d, 1000), "test labels");
    dataset_free(&d);
    rc = dataset_load(&d, "", DATASET_TRAIN, 100, &err);
    CHECK(rc == 0 && d.n == 100, "limit 100: n=%d %s", d.n, err.msg);
    CHECK(rc != 0 || labels_are(&d, first, 100, 10), "limit 100 keeps the first 100 labels");
    dataset_free(&d);
}

/* Class-conditional training draws labels with its images: over one epoch the
 * labels loader_labels gives are exactly the data set's histogram (a batch's
 * classes follow the data), each one the label of the very image loader_batch
 * gives (its pixels encode its index), and a process's share of the batch gets
 * the same labels as the whole batch's slice. */
static void test_loader_labels(void) {
    enum { N = 35, B = 7, K = 3 };
    uint8_t pix[N];
    int32_t lab[N];
    int want[K] = {0}, got[K] = {0};
    for (int i = 0; i < N; i++) pix[i] = (uint8_t)(i * 7), lab[i] = (i * i) % K, want[lab[i]]++;
    dataset d = {.n = N, .h = 1, .w = 1, .c = 1, .pixels = pix, .labels = lab, .nclasses = K};
    loader l;
    err_t err;
    CHECK(loader_init(&l, &d, 11, 0, &err) == 0, "%s", err.msg);
    int bad = 0;
    for (int step = 0; step < N / B; step++) {
        float x[B];
        int32_t y[B], y2[B];
        loader_batch(&l, step, B, 0, B, x);
        loader_labels(&l, step, B, 0, B, y);
        loader_labels(&l, step, B, 3, 4, y2);
        for (int i = 0; i < B; i++) {
            int img = (int)lrintf((x[i] + 1.0f) * 127.5f) / 7;
            bad += img < 0 || img >= N || lab[img] != y[i];
            got[y[i]]++;
        }
        bad += memcmp(y + 3, y2, 4 * sizeof *y2) != 0;
    }
    CHECK(bad == 0, "%d labels do not belong to their images (or to the share)", bad);
    CHECK(!memcmp(want, got, sizeof want), "one epoch's label histogram %d/%d/%d, the data's %d/%d/%d", got[0], got[1],
          got[2], want[0], want[1], want[2]);
    loader_free(&l);
}

TEST_MAIN(test_idx_roundtrip, test_idx_errors, test_cifar, test_png_roundtrip, test_png_corrupt,
          test_png_write_errors, test_image_to_u8, test_grid, test_pngdir, test_idx_labels, test_idx_label_errors,
          test_cifar_labels, test_png_classes, test_class_index, test_loader, test_loader_labels, test_fashion_mnist)
