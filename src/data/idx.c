/* idx.c -- IDX image files (the MNIST / Fashion-MNIST format), raw or gzip,
 * read through zlib's gzread, which passes non-gzip files through unchanged. */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAX_BYTES ((uint64_t)1 << 31)

/* Reads up to len bytes; returns how many were read, or -1 on a zlib/IO error
 * (message in err, naming path). */
static int64_t gz_read_all(gzFile g, uint8_t *buf, uint64_t len, const char *path, ddpm_err *err) {
    uint64_t got = 0;
    while (got < len) {
        uint64_t want = len - got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(g, buf + got, (unsigned)want);
        if (r < 0) {
            int zerr = 0;
            const char *m = gzerror(g, &zerr);
            return ddpm_fail(err, "%s: read error: %s", path, zerr == Z_ERRNO ? strerror(errno) : m);
        }
        if (r == 0) break;
        got += (uint64_t)r;
    }
    return (int64_t)got;
}

int dataset_load_idx(dataset *d, const char *path, int limit, ddpm_err *err) {
    gzFile g = NULL;
    uint8_t *pix = NULL;
    int rc = -1;
    memset(d, 0, sizeof *d);
    struct stat st;
    if (stat(path, &st) != 0) {
        ddpm_fail(err, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        ddpm_fail(err, "%s: not a regular file", path);
        goto done;
    }
    if (limit < 0) {
        ddpm_fail(err, "%s: limit must be >= 0, got %d", path, limit);
        goto done;
    }
    g = gzopen(path, "rb");
    if (!g) {
        ddpm_fail(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        goto done;
    }
    gzbuffer(g, 1 << 18);

    uint8_t hdr[4 + 4 * 4];
    int64_t got = gz_read_all(g, hdr, 4, path, err);
    if (got < 0) goto done;
    if (got < 4) {
        ddpm_fail(err, "%s: not an IDX file (only %lld bytes)", path, (long long)got);
        goto done;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        ddpm_fail(err, "%s: not an IDX file (magic %02x %02x %02x %02x, expected 00 00 08 03)", path, hdr[0], hdr[1],
                  hdr[2], hdr[3]);
        goto done;
    }
    if (hdr[2] != 0x08) {
        ddpm_fail(err, "%s: IDX data type 0x%02x is not unsigned byte (0x08)", path, hdr[2]);
        goto done;
    }
    int ndim = hdr[3];
    if (ndim != 3 && ndim != 4) {
        ddpm_fail(err, "%s: IDX file has %d dimension(s), expected 3 (n, h, w) or 4 (n, h, w, c)%s", path, ndim,
                  ndim == 1 ? " -- is this a labels file?" : "");
        goto done;
    }
    got = gz_read_all(g, hdr + 4, (uint64_t)4 * ndim, path, err);
    if (got < 0) goto done;
    if (got < 4 * ndim) {
        ddpm_fail(err, "%s: truncated IDX header", path);
        goto done;
    }
    uint64_t dims[4] = {0, 0, 0, 1}, total = 1;
    for (int k = 0; k < ndim; k++) {
        const uint8_t *b = hdr + 4 + 4 * k;
        dims[k] = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
    }
    for (int k = 0; k < 4; k++) {
        if (dims[k] == 0) {
            ddpm_fail(err, "%s: IDX dimension %d is zero (dims %llu x %llu x %llu x %llu)", path, k,
                      (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
                      (unsigned long long)dims[3]);
            goto done;
        }
        total *= dims[k]; /* each dim < 2^32 and we stop once past 2^31, so no overflow */
        if (total > IDX_MAX_BYTES) {
            ddpm_fail(err, "%s: IDX dims %llu x %llu x %llu x %llu are implausibly large (over 2^31 bytes)", path,
                      (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
                      (unsigned long long)dims[3]);
            goto done;
        }
    }
    if (dims[3] != 1 && dims[3] != 3) {
        ddpm_fail(err, "%s: IDX images have %llu channels, expected 1 or 3", path, (unsigned long long)dims[3]);
        goto done;
    }
    pix = ddpm_malloc(total, err);
    if (!pix) goto done;
    got = gz_read_all(g, pix, total, path, err);
    if (got < 0) goto done;
    if ((uint64_t)got < total) {
        ddpm_fail(err, "%s: truncated: header says %llu x %llu x %llu x %llu = %llu bytes of pixels, file has %lld",
                  path, (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
                  (unsigned long long)dims[3], (unsigned long long)total, (long long)got);
        goto done;
    }
    uint8_t extra[1];
    got = gz_read_all(g, extra, 1, path, err);
    if (got < 0) goto done;
    if (got > 0) {
        ddpm_fail(err, "%s: trailing bytes after the %llu images the header announces", path,
                  (unsigned long long)dims[0]);
        goto done;
    }
    d->n = (int)dims[0];
    d->h = (int)dims[1];
    d->w = (int)dims[2];
    d->c = (int)dims[3];
    if (limit > 0 && limit < d->n) {
        d->n = limit;
        uint8_t *small = realloc(pix, (size_t)d->n * d->h * d->w * d->c);
        if (small) pix = small;
    }
    d->pixels = pix;
    pix = NULL;
    snprintf(d->desc, sizeof d->desc, "IDX: %d images %dx%dx%d from %s", d->n, d->h, d->w, d->c, path);
    rc = 0;
done:
    if (g) gzclose(g);
    free(pix);
    if (rc != 0) memset(d, 0, sizeof *d);
    return rc;
}
