/* tfevents.c -- TensorBoard event files (tfevents.h): CRC32C, the record framing, and
 * Event messages encoded by protobuf-c from tfevents.proto.
 */
#include "io/tfevents.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/fileio.h"
#include "io/le.h"
#include "io/tfevents.pb-c.h"

struct tfevents {
    int fd;
    off_t size;   /* bytes of whole records in the file */
    int broken;   /* a failed write could not be cut back off: the file takes nothing more */
    char path[4200];
};

/* ------------------------------------------------------------------ CRC32C */

/* Byte-at-a-time table of the reflected Castagnoli polynomial. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        crc_table[i] = c;
    }
}

uint32_t tfevents_crc32c(uint32_t crc, const void *p, size_t n) {
    const unsigned char *b = p;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t tfevents_masked_crc(const void *p, size_t n) {
    uint32_t c = tfevents_crc32c(0, p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ----------------------------------------------------------------- records */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Encodes ev as one record and appends it with one write. A write that fails or
 * comes up short is cut back off (ftruncate to the previous size; O_APPEND puts the
 * next write at the new end, not after a hole), so the file keeps ending on a whole
 * record. */
static int append_event(tfevents *w, const Tfevents__Event *ev, err_t *err) {
    if (w->broken)
        return err_fail(err, "%s: an earlier failed write could not be undone; no more events are written",
                         w->path);
    size_t n = tfevents__event__get_packed_size(ev);
    if (n > SIZE_MAX - TFEVENTS_FRAME_BYTES) return err_fail(err, "%s: event too large", w->path);
    unsigned char *rec = mem_alloc(n + TFEVENTS_FRAME_BYTES, err);
    if (!rec) return err_wrap(err, "%s", w->path);
    le_put64(rec, (uint64_t)n);
    le_put32(rec + 8, tfevents_masked_crc(rec, 8));
    size_t packed = tfevents__event__pack(ev, rec + 12);
    ERR_ASSERT(packed == n);
    le_put32(rec + 12 + n, tfevents_masked_crc(rec + 12, n));

    size_t total = n + TFEVENTS_FRAME_BYTES, done = 0;
    int rc = 0;
    while (done < total) {
        ssize_t r = write(w->fd, rec + done, total - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : ENOSPC;
            rc = e == ENOSPC ? err_fail(err, "no space left on device writing %s", w->path)
                             : err_fail(err, "cannot write %s: %s", w->path, strerror(e));
            break;
        }
        done += (size_t)r;
    }
    free(rec);
    if (rc == 0) {
        w->size += (off_t)total;
        return 0;
    }
    if (done > 0 && ftruncate(w->fd, w->size) != 0) w->broken = 1;
    return -1;
}

static int scalars_or_image(tfevents *w, int64_t step, Tfevents__Summary__Value **vals, size_t n,
                            err_t *err) {
    Tfevents__Summary sum = TFEVENTS__SUMMARY__INIT;
    Tfevents__Event ev = TFEVENTS__EVENT__INIT;
    sum.n_value = n;
    sum.value = vals;
    ev.wall_time = wall_now();
    ev.step = step;
    ev.what_case = TFEVENTS__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return append_event(w, &ev, err);
}

int tfevents_scalars(tfevents *w, int64_t step, const tfevents_scalar *v, int n, err_t *err) {
    if (n < 1) return err_fail(err, "%s: a summary of %d scalars", w->path, n);
    Tfevents__Summary__Value *vals = mem_calloc((size_t)n, sizeof *vals, err);
    Tfevents__Summary__Value **ptrs = vals ? mem_calloc((size_t)n, sizeof *ptrs, err) : NULL;
    int rc = -1;
    if (!ptrs) goto done;
    for (int i = 0; i < n; i++) {
        if (!v[i].tag || !v[i].tag[0]) {
            err_fail(err, "%s: scalar %d has no tag", w->path, i);
            goto done;
        }
        vals[i] = (Tfevents__Summary__Value)TFEVENTS__SUMMARY__VALUE__INIT;
        vals[i].tag = (char *)v[i].tag;
        vals[i].value_case = TFEVENTS__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
        vals[i].simple_value = (float)v[i].value;
        ptrs[i] = &vals[i];
    }
    rc = scalars_or_image(w, step, ptrs, (size_t)n, err);
done:
    free(ptrs);
    free(vals);
    return rc;
}

int tfevents_image(tfevents *w, int64_t step, const char *tag, const void *png, size_t len, int width,
                   int height, int channels, err_t *err) {
    if (!tag || !tag[0]) return err_fail(err, "%s: image without a tag", w->path);
    if (!png || len == 0 || width < 1 || height < 1 || channels < 1 || channels > 4)
        return err_fail(err, "%s: image %s: bad image (%zu bytes, %dx%d, %d channels)", w->path, tag, len,
                         width, height, channels);
    Tfevents__Summary__Image im = TFEVENTS__SUMMARY__IMAGE__INIT;
    Tfevents__Summary__Value val = TFEVENTS__SUMMARY__VALUE__INIT, *ptr = &val;
    im.width = width;
    im.height = height;
    im.colorspace = channels;
    im.encoded_image_string.data = (uint8_t *)png;
    im.encoded_image_string.len = len;
    val.tag = (char *)tag;
    val.value_case = TFEVENTS__SUMMARY__VALUE__VALUE_IMAGE;
    val.image = &im;
    return scalars_or_image(w, step, &ptr, 1, err);
}

int tfevents_png(tfevents *w, int64_t step, const char *tag, const void *png, size_t len, err_t *err) {
    /* The 8-byte signature, then the IHDR chunk: length 13, "IHDR", width, height (big-endian
     * u32), bit depth, colour type (0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA). */
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const unsigned char *b = png;
    if (!b || len < 33 || memcmp(b, sig, 8) || memcmp(b + 12, "IHDR", 4))
        return err_fail(err, "%s: image %s: not a PNG (%zu bytes)", w->path, tag ? tag : "", len);
    uint32_t width = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
    uint32_t height = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
    static const int colorspace[7] = {1, 0, 3, 3, 2, 0, 4};
    int cs = b[25] < 7 ? colorspace[b[25]] : 0;
    if (!cs || width > INT32_MAX || height > INT32_MAX)
        return err_fail(err, "%s: image %s: a PNG of colour type %d, %ux%u", w->path, tag ? tag : "", b[25],
                         (unsigned)width, (unsigned)height);
    return tfevents_image(w, step, tag, png, len, (int)width, (int)height, cs, err);
}

int tfevents_session_start(tfevents *w, int64_t step, err_t *err) {
    Tfevents__SessionLog log = TFEVENTS__SESSION_LOG__INIT;
    Tfevents__Event ev = TFEVENTS__EVENT__INIT;
    log.status = TFEVENTS__SESSION_LOG__SESSION_STATUS__START;
    ev.wall_time = wall_now();
    ev.step = step;
    ev.what_case = TFEVENTS__EVENT__WHAT_SESSION_LOG;
    ev.session_log = &log;
    return append_event(w, &ev, err);
}

/* ------------------------------------------------------------ open, close */

/* The host name with anything but [A-Za-z0-9._-] made '_' (it goes into a file name). */
static void host_name(char *out, size_t n) {
    if (gethostname(out, n) != 0 || !out[0]) snprintf(out, n, "localhost");
    out[n - 1] = 0;
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '-' || *p == '_'))
            *p = '_';
}

tfevents *tfevents_open(const char *dir, err_t *err) {
    char host[256], name[400];
    if (file_make_dirs(dir, err)) return NULL;
    tfevents *w = mem_calloc(1, sizeof *w, err);
    if (!w) return NULL;
    w->fd = -1;
    host_name(host, sizeof host);
    long long t = (long long)time(NULL);
    for (int k = 0; w->fd < 0; k++) {
        if (k == 0)
            snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s", t, host);
        else
            snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d", t, host, k);
        if (file_path_join(w->path, sizeof w->path, dir, name, err)) goto fail;
        w->fd = open(w->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (w->fd < 0 && (errno != EEXIST || k == 999)) {
            err_fail(err, "cannot create %s: %s", w->path, strerror(errno));
            goto fail;
        }
    }
    Tfevents__Event ev = TFEVENTS__EVENT__INIT;
    ev.wall_time = wall_now();
    ev.what_case = TFEVENTS__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    if (append_event(w, &ev, err)) goto fail;
    return w;
fail:
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->path);
    }
    free(w);
    return NULL;
}

const char *tfevents_path(const tfevents *w) {
    return w->path;
}

int tfevents_close(tfevents *w, err_t *err) {
    int rc = 0;
    if (!w) return 0;
    if (fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = err_fail(err, "cannot sync %s: %s", w->path, strerror(errno));
    if (close(w->fd) != 0 && rc == 0) rc = err_fail(err, "cannot close %s: %s", w->path, strerror(errno));
    free(w);
    return rc;
}
