/* test_tfevents.c -- tests for src/io/tfevents (TensorBoard event files): CRC32C against
 * published vectors, the record framing and the Event messages read back by a reader
 * written here (protobuf-c's unpacker on each record's data), file naming, bad
 * arguments, and a write cut short by a file size limit, which must leave the file
 * ending on a whole record.
 *
 * With arguments it is the writer that tests/py/test_tfevents.py reads with the real
 * TensorBoard:  test_tfevents --write DIR  writes DIR/grid.png (a 12x7 RGB PNG) and two
 * event files in DIR/tb (see write_fixture), then exits 0.
 * All other files live in a mkdtemp directory under /tmp, removed at the end.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "io/fileio.h"
#include "io/le.h"
#include "io/png.h"
#include "io/tfevents.h"
#include "io/tfevents.pb-c.h"

static char tmpdir[256];

static const char *tp(const char *name) {
    static char buf[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/ddpm_test_tfevents_XXXXXX");
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "mkdtemp failed: %s\n", strerror(errno));
            exit(1);
        }
    }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

/* ------------------------------------------------------------ the reader */

/* The events of the file at path, read record by record: the framing and both CRCs
 * are checked, and reading stops at the first record that is not whole or not
 * intact. *n gets the count; *bytes_ok the bytes of whole intact records. */
#define MAX_EVENTS 64
static int read_events(const char *path, Tfevents__Event **ev, int *n, size_t *bytes_ok) {
    unsigned char *b;
    size_t len, off = 0;
    err_t err;
    *n = 0;
    *bytes_ok = 0;
    if (file_read_all(path, &b, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    while (*n < MAX_EVENTS && len - off >= TFEVENTS_FRAME_BYTES) {
        uint64_t m = le_get64(b + off);
        if (le_get32(b + off + 8) != tfevents_masked_crc(b + off, 8)) break;
        if (m > len - off - TFEVENTS_FRAME_BYTES) break;
        if (le_get32(b + off + 12 + m) != tfevents_masked_crc(b + off + 12, m)) break;
        ev[*n] = tfevents__event__unpack(NULL, m, b + off + 12);
        if (!ev[*n]) break;
        (*n)++;
        off += m + TFEVENTS_FRAME_BYTES;
    }
    *bytes_ok = off;
    free(b);
    return 0;
}

static void free_events(Tfevents__Event **ev, int n) {
    for (int i = 0; i < n; i++) tfevents__event__free_unpacked(ev[i], NULL);
}

static off_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ------------------------------------------------------------------ tests */

static void test_crc32c_vectors(void) {
    /* RFC 3720 (iSCSI) appendix B.4, and the customary check value of "123456789". */
    unsigned char zeros[32] = {0}, ones[32], inc[32], dec[32];
    static const unsigned char pdu[48] = {
        0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0x14, 0, 0, 0, 0, 0, 0x04, 0,
        0, 0, 0, 0x14, 0, 0, 0, 0x18, 0x28, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 32; i++) ones[i] = 0xff, inc[i] = (unsigned char)i, dec[i] = (unsigned char)(31 - i);
    CHECK(tfevents_crc32c(0, "123456789", 9) == 0xE3069283u, "check value %08x", tfevents_crc32c(0, "123456789", 9));
    CHECK(tfevents_crc32c(0, zeros, 32) == 0x8A9136AAu, "32 zeros: %08x", tfevents_crc32c(0, zeros, 32));
    CHECK(tfevents_crc32c(0, ones, 32) == 0x62A8AB43u, "32 0xff: %08x", tfevents_crc32c(0, ones, 32));
    CHECK(tfevents_crc32c(0, inc, 32) == 0x46DD794Eu, "0..31: %08x", tfevents_crc32c(0, inc, 32));
    CHECK(tfevents_crc32c(0, dec, 32) == 0x113FDB5Cu, "31..0: %08x", tfevents_crc32c(0, dec, 32));
    CHECK(tfevents_crc32c(0, pdu, 48) == 0xD9963A56u, "iSCSI read PDU: %08x", tfevents_crc32c(0, pdu, 48));
    CHECK(tfevents_crc32c(0, "", 0) == 0, "empty");
    /* Continued in pieces = at once. */
    CHECK(tfevents_crc32c(tfevents_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "continued");
    /* The mask: ((c >> 15) | (c << 17)) + 0xa282ead8 of c = 0xE3069283. */
    uint32_t c = 0xE3069283u, masked = ((c >> 15) | (c << 17)) + 0xa282ead8u;
    CHECK(tfevents_masked_crc("123456789", 9) == masked && masked == 0xc78ab0e5u, "masked %08x",
          tfevents_masked_crc("123456789", 9));
}

/* One scalar event and its value of tag (NAN when absent). */
static double scalar_of(const Tfevents__Event *e, const char *tag) {
    if (e->what_case != TFEVENTS__EVENT__WHAT_SUMMARY) return NAN;
    for (size_t i = 0; i < e->summary->n_value; i++) {
        const Tfevents__Summary__Value *v = e->summary->value[i];
        if (!strcmp(v->tag, tag) && v->value_case == TFEVENTS__SUMMARY__VALUE__VALUE_SIMPLE_VALUE)
            return v->simple_value;
    }
    return NAN;
}

static void test_write_read(void) {
    err_t err;
    const char *dir = tp("run/tb"); /* two levels created */
    char dirc[512];
    snprintf(dirc, sizeof dirc, "%s", dir);
    tfevents *w = tfevents_open(dirc, &err);
    CHECK(w != NULL, "open: %s", err.msg);
    if (!w) return;
    char path[4200];
    snprintf(path, sizeof path, "%s", tfevents_path(w));
    /* The name: DIR/events.out.tfevents.<10 digits>.<host>, the time within a minute of now. */
    const char *base = strrchr(path, '/') + 1;
    long long t = 0;
    char host[300] = "";
    CHECK(sscanf(base, "events.out.tfevents.%10lld.%299s", &t, host) == 2 && host[0], "file name %s", base);
    CHECK(llabs(t - (long long)time(NULL)) < 60, "time in the name %lld", t);
    CHECK(strlen(base) == strlen("events.out.tfevents.") + 10 + 1 + strlen(host), "no suffix: %s", base);

    tfevents_scalar s[3] = {{"train/loss", 0.25}, {"train/lr", 1e-4}, {"train/grad_norm", 3.5}};
    CHECK(tfevents_scalars(w, 10, s, 3, &err) == 0, "scalars: %s", err.msg);
    s[0].value = NAN;
    CHECK(tfevents_scalars(w, 20, s, 1, &err) == 0, "scalar NaN: %s", err.msg);
    unsigned char png[100];
    for (int i = 0; i < 100; i++) png[i] = (unsigned char)(i * 37);
    CHECK(tfevents_image(w, 20, "samples", png, sizeof png, 9, 5, 3, &err) == 0, "image: %s", err.msg);
    CHECK(tfevents_session_start(w, 21, &err) == 0, "start: %s", err.msg);
    CHECK(tfevents_scalars(w, (int64_t)1 << 40, s + 2, 1, &err) == 0, "large step: %s", err.msg);
    CHECK(tfevents_close(w, &err) == 0, "close: %s", err.msg);

    Tfevents__Event *ev[MAX_EVENTS];
    int n;
    size_t ok;
    if (read_events(path, ev, &n, &ok)) return;
    CHECK(n == 6 && ok == (size_t)file_size(path), "6 whole records, %zu of %lld bytes: %d", ok,
          (long long)file_size(path), n);
    if (n != 6) return free_events(ev, n);
    CHECK(ev[0]->what_case == TFEVENTS__EVENT__WHAT_FILE_VERSION && !strcmp(ev[0]->file_version, "brain.Event:2"),
          "first record: file_version");
    CHECK(ev[0]->step == 0 && fabs(ev[0]->wall_time - (double)time(NULL)) < 60, "its wall time %f",
          ev[0]->wall_time);
    CHECK(ev[1]->step == 10 && ev[1]->summary->n_value == 3, "step 10: 3 values");
    CHECK(scalar_of(ev[1], "train/loss") == 0.25f && scalar_of(ev[1], "train/lr") == 1e-4f &&
              scalar_of(ev[1], "train/grad_norm") == 3.5f,
          "values as floats");
    CHECK(ev[1]->wall_time >= ev[0]->wall_time && ev[5]->wall_time >= ev[1]->wall_time, "wall times in order");
    CHECK(ev[2]->step == 20 && isnan(scalar_of(ev[2], "train/loss")), "NaN kept");
    const Tfevents__Summary__Value *iv = ev[3]->summary->value[0];
    CHECK(ev[3]->step == 20 && iv->value_case == TFEVENTS__SUMMARY__VALUE__VALUE_IMAGE && !strcmp(iv->tag, "samples"),
          "image value");
    if (iv->value_case == TFEVENTS__SUMMARY__VALUE__VALUE_IMAGE)
        CHECK(iv->image->width == 9 && iv->image->height == 5 && iv->image->colorspace == 3 &&
                  iv->image->encoded_image_string.len == sizeof png &&
                  !memcmp(iv->image->encoded_image_string.data, png, sizeof png),
              "image fields and bytes");
    CHECK(ev[4]->what_case == TFEVENTS__EVENT__WHAT_SESSION_LOG && ev[4]->step == 21 &&
              ev[4]->session_log->status == TFEVENTS__SESSION_LOG__SESSION_STATUS__START,
          "SessionLog START at 21");
    CHECK(ev[5]->step == (int64_t)1 << 40 && scalar_of(ev[5], "train/grad_norm") == 3.5f, "64-bit step");
    free_events(ev, n);

    /* A second writer in the same second gets a new file; the first is untouched. */
    off_t before = file_size(path);
    tfevents *w2 = tfevents_open(dirc, &err), *w3 = tfevents_open(dirc, &err);
    CHECK(w2 && w3 && strcmp(tfevents_path(w2), path) && strcmp(tfevents_path(w3), tfevents_path(w2)),
          "new names: %s %s", w2 ? tfevents_path(w2) : "-", w3 ? tfevents_path(w3) : "-");
    if (w2 && w3 && !strncmp(tfevents_path(w2), path, strlen(path)))
        CHECK(!strcmp(tfevents_path(w2) + strlen(path), ".1") && strcmp(tfevents_path(w2), tfevents_path(w3)) < 0,
              "same second: .1 appended and names sort in opening order (%s, %s)", tfevents_path(w2),
              tfevents_path(w3));
    CHECK(file_size(path) == before, "first file untouched");
    tfevents_close(w2, &err);
    tfevents_close(w3, &err);
}

#define EXPECT_FAIL(call, err, needle)                                                        \
    do {                                                                                      \
        (err).msg[0] = 0;                                                                     \
        int rc_ = (call);                                                                     \
        CHECK(rc_ != 0, "%s succeeded", #call);                                               \
        CHECK(strstr((err).msg, needle) != NULL, "message '%s' lacks '%s'", (err).msg, needle); \
    } while (0)

static void test_bad_arguments(void) {
    err_t err;
    /* A directory that cannot be made: a file is in the way. */
    FILE *f = fopen(tp("afile"), "w");
    if (f) fclose(f);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/tb", tp("afile"));
    EXPECT_FAIL(tfevents_open(bad, &err) != NULL ? 0 : -1, err, "afile");
    /* A directory without write permission (root may write anyway: then skipped). */
    char ro[512];
    snprintf(ro, sizeof ro, "%s", tp("readonly"));
    mkdir(ro, 0555);
    if (access(ro, W_OK) != 0) EXPECT_FAIL(tfevents_open(ro, &err) != NULL ? 0 : -1, err, "readonly");

    tfevents *w = tfevents_open(tp("args"), &err);
    CHECK(w != NULL, "open: %s", err.msg);
    if (!w) return;
    tfevents_scalar s = {"", 1.0};
    EXPECT_FAIL(tfevents_scalars(w, 1, &s, 1, &err), err, "no tag");
    EXPECT_FAIL(tfevents_scalars(w, 1, &s, 0, &err), err, "0 scalars");
    EXPECT_FAIL(tfevents_image(w, 1, "img", "x", 1, 0, 4, 3, &err), err, "bad image");
    EXPECT_FAIL(tfevents_image(w, 1, "img", "x", 1, 4, 4, 5, &err), err, "5 channels");
    EXPECT_FAIL(tfevents_image(w, 1, "img", NULL, 0, 4, 4, 3, &err), err, "bad image");
    EXPECT_FAIL(tfevents_image(w, 1, "", "x", 1, 4, 4, 3, &err), err, "without a tag");
    char path[4200];
    snprintf(path, sizeof path, "%s", tfevents_path(w));
    CHECK(tfevents_close(w, &err) == 0, "close: %s", err.msg);
    Tfevents__Event *ev[MAX_EVENTS];
    int n;
    size_t ok;
    if (read_events(path, ev, &n, &ok) == 0) {
        CHECK(n == 1, "nothing written by the refused calls: %d records", n);
        free_events(ev, n);
    }
}

/* tfevents_png reads the size and colorspace from real PNG files (libpng's, io/png.c),
 * and refuses what is not a PNG. */
static void test_png(void) {
    err_t err;
    tfevents *w = tfevents_open(tp("png"), &err);
    CHECK(w != NULL, "open: %s", err.msg);
    if (!w) return;
    char path[4200];
    snprintf(path, sizeof path, "%s", tfevents_path(w));
    uint8_t pix[5 * 11 * 3] = {0};
    int ok = 1;
    for (int c = 1; c <= 3; c += 2) {
        unsigned char *png;
        size_t len;
        if (png_write_u8(tp("x.png"), pix, 11, 5, c, &err) || file_read_all(tp("x.png"), &png, &len, &err)) {
            CHECK(0, "%s", err.msg);
            ok = 0;
            break;
        }
        CHECK(tfevents_png(w, c, "grid", png, len, &err) == 0, "png: %s", err.msg);
        png[1] = 'X';
        EXPECT_FAIL(tfevents_png(w, 9, "grid", png, len, &err), err, "not a PNG");
        free(png);
    }
    EXPECT_FAIL(tfevents_png(w, 9, "grid", "\x89PNG", 4, &err), err, "not a PNG");
    tfevents_close(w, &err);
    Tfevents__Event *ev[MAX_EVENTS];
    int n;
    size_t bytes;
    if (!ok || read_events(path, ev, &n, &bytes)) return;
    CHECK(n == 3, "version + 2 images: %d", n);
    for (int i = 1; i < n && n == 3; i++) {
        const Tfevents__Summary__Image *im = ev[i]->summary->value[0]->image;
        CHECK(im->width == 11 && im->height == 5 && im->colorspace == (i == 1 ? 1 : 3), "image %d: %dx%d, colorspace %d",
              i, im->width, im->height, im->colorspace);
    }
    free_events(ev, n);
}

/* A write cut short (RLIMIT_FSIZE: write(2) writes part of the record, then fails with
 * EFBIG) is cut back off: the file keeps its whole records, the next small record fits
 * again, and the error names the file. */
static void test_short_write(void) {
    err_t err;
    tfevents *w = tfevents_open(tp("short"), &err);
    CHECK(w != NULL, "open: %s", err.msg);
    if (!w) return;
    char path[4200];
    snprintf(path, sizeof path, "%s", tfevents_path(w));
    tfevents_scalar s = {"loss", 1.5};
    CHECK(tfevents_scalars(w, 1, &s, 1, &err) == 0, "scalar: %s", err.msg);
    off_t whole = file_size(path);

    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)whole + 200;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
    static unsigned char big[1000];
    int rc = tfevents_image(w, 2, "img", big, sizeof big, 10, 10, 1, &err);
    off_t after = file_size(path);
    CHECK(rc != 0 && strstr(err.msg, path), "a cut write fails naming the file: rc %d, '%s'", rc, err.msg);
    CHECK(after == whole, "the partial record is cut off: %lld bytes, %lld before", (long long)after,
          (long long)whole);
    s.value = 2.5;
    CHECK(tfevents_scalars(w, 3, &s, 1, &err) == 0, "a small record still fits: %s", err.msg);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(tfevents_close(w, &err) == 0, "close: %s", err.msg);

    Tfevents__Event *ev[MAX_EVENTS];
    int n;
    size_t ok;
    if (read_events(path, ev, &n, &ok) == 0) {
        CHECK(n == 3 && ok == (size_t)file_size(path) && ev[2]->step == 3 && scalar_of(ev[2], "loss") == 2.5f,
              "file_version, step 1, step 3: %d records, %zu of %lld bytes whole", n, ok,
              (long long)file_size(path));
        free_events(ev, n);
    }
}

/* The control: the reader (and so the checks above) notices one flipped bit. */
static void test_reader_catches_damage(void) {
    err_t err;
    tfevents *w = tfevents_open(tp("damage"), &err);
    CHECK(w != NULL, "open: %s", err.msg);
    if (!w) return;
    char path[4200];
    snprintf(path, sizeof path, "%s", tfevents_path(w));
    tfevents_scalar s = {"loss", 1.5};
    tfevents_scalars(w, 1, &s, 1, &err);
    tfevents_scalars(w, 2, &s, 1, &err);
    tfevents_close(w, &err);
    unsigned char *b;
    size_t len;
    if (file_read_all(path, &b, &len, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    b[len - 6] ^= 1; /* in the last record's data */
    const void *chunk = b;
    file_write_atomic(path, &chunk, &len, 1, &err);
    free(b);
    Tfevents__Event *ev[MAX_EVENTS];
    int n;
    size_t ok;
    if (read_events(path, ev, &n, &ok) == 0) {
        CHECK(n == 2 && ok < len, "the damaged record is refused: %d records", n);
        free_events(ev, n);
    }
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static void test_cleanup(void) {
    if (tmpdir[0]) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --write DIR: the files tests/py/test_tfevents.py reads with TensorBoard.
 *   DIR/grid.png   a 12x7 RGB PNG (pixel (y,x) = (20x, 30y, 7x+11y) mod 256)
 *   DIR/tb/A       file_version; steps 0, 5, ..., 50 with train/loss = 1/(1+step) and
 *                  train/lr = 1e-4 * step; the PNG as "samples" at step 20
 *   DIR/tb/B       (opened after A, so its name sorts after A's) file_version; a
 *                  SessionLog START at 21; steps 25, 30, 35 with train/loss = 1000 + step
 * and prints the two paths. */
static int write_fixture(const char *dir) {
    err_t err;
    char path[4200], tb[4200];
    uint8_t pix[7 * 12 * 3];
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 12; x++) {
            uint8_t *p = pix + (y * 12 + x) * 3;
            p[0] = (uint8_t)(20 * x), p[1] = (uint8_t)(30 * y), p[2] = (uint8_t)(7 * x + 11 * y);
        }
    unsigned char *png = NULL;
    size_t len = 0;
    if (file_path_join(path, sizeof path, dir, "grid.png", &err) || file_path_join(tb, sizeof tb, dir, "tb", &err) ||
        file_make_dirs(dir, &err) || png_write_u8(path, pix, 12, 7, 3, &err) || file_read_all(path, &png, &len, &err))
        goto fail;
    tfevents *w = tfevents_open(tb, &err);
    if (!w) goto fail;
    for (int step = 0; step <= 50; step += 5) {
        tfevents_scalar s[2] = {{"train/loss", 1.0 / (1 + step)}, {"train/lr", 1e-4 * step}};
        if (tfevents_scalars(w, step, s, 2, &err)) goto fail;
        if (step == 20 && tfevents_png(w, step, "samples", png, len, &err)) goto fail;
    }
    printf("%s\n", tfevents_path(w));
    if (tfevents_close(w, &err) || !(w = tfevents_open(tb, &err)) || tfevents_session_start(w, 21, &err)) goto fail;
    for (int step = 25; step <= 35; step += 5) {
        tfevents_scalar s = {"train/loss", 1000.0 + step};
        if (tfevents_scalars(w, step, &s, 1, &err)) goto fail;
    }
    printf("%s\n", tfevents_path(w));
    if (tfevents_close(w, &err)) goto fail;
    free(png);
    return 0;
fail:
    free(png);
    fprintf(stderr, "test_tfevents --write: %s\n", err.msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write")) return write_fixture(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_tfevents [--write DIR]\n");
        return 2;
    }
    check_fn fns[] = {test_crc32c_vectors, test_write_read, test_bad_arguments, test_png, test_short_write,
                      test_reader_catches_damage, test_cleanup};
    return check_run(__FILE__,
                     "test_crc32c_vectors, test_write_read, test_bad_arguments, test_png, test_short_write, "
                     "test_reader_catches_damage, test_cleanup",
                     fns, (int)(sizeof fns / sizeof fns[0]));
}
