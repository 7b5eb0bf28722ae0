/* idx.c -- IDX image files (the MNIST / Fashion-MNIST format), raw or gzip,
 * and the IDX label file next to them, read through zlib's gzread, which
 * passes non-gzip files through unchanged. */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/labels.h"

#define IDX_MAX_BYTES ((uint64_t)1 << 31)
#define PATH_BUF 4096

/* Reads up to len bytes; returns how many were read, or -1 on a zlib/IO error
 * (message in err, naming path). */
static int64_t gz_read_all(gzFile g, uint8_t *buf, uint64_t len, const char *path, err_t *err) {
    uint64_t got = 0;
    while (got < len) {
        uint64_t want = len - got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(g, buf + got, (unsigned)want);
        if (r < 0) {
            int zerr = 0;
            const char *m = gzerror(g, &zerr);
            return err_fail(err, "%s: read error: %s", path, zerr == Z_ERRNO ? strerror(errno) : m);
        }
        if (r == 0) break;
        got += (uint64_t)r;
    }
    return (int64_t)got;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The label file for the image file `images`: its name with "images-idx3"
 * replaced by "labels-idx1", raw preferred over .gz. Returns 1 and fills out
 * (PATH_BUF + 8 bytes) when one exists, 0 when none does, -1 on error. */
static int find_label_file(const char *images, char *out, err_t *err) {
    const char *slash = strrchr(images, '/'), *name = slash ? slash + 1 : images;
    const char *at = strstr(name, "images-idx3");
    if (!at) return 0;
    int n = snprintf(out, PATH_BUF, "%.*slabels-idx1%s", (int)(at - images), images, at + strlen("images-idx3"));
    if (n >= PATH_BUF) return err_fail(err, "%s: path too long", images);
    if (n >= 3 && strcmp(out + n - 3, ".gz") == 0) out[n -= 3] = '\0';
    if (is_file(out)) return 1;
    strcpy(out + n, ".gz");
    return is_file(out);
}

/* Reads the IDX label file path (magic 00 00 08 01, a big-endian count, then
 * count bytes), which must hold exactly n labels, into a new buffer *out. */
static int read_label_file(const char *path, uint64_t n, const char *images, uint8_t **out, err_t *err) {
    gzFile g = gzopen(path, "rb");
    uint8_t hdr[8], *lab = NULL, extra[1];
    int rc = -1;
    if (!g) {
        err_fail(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        goto done;
    }
    int64_t got = gz_read_all(g, hdr, sizeof hdr, path, err);
    if (got < 0) goto done;
    if (got < (int64_t)sizeof hdr) {
        err_fail(err, "%s: not an IDX label file (only %lld bytes)", path, (long long)got);
        goto done;
    }
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != 0x01) {
        err_fail(err, "%s: not an IDX label file (magic %02x %02x %02x %02x, expected 00 00 08 01)", path, hdr[0],
                  hdr[1], hdr[2], hdr[3]);
        goto done;
    }
    uint64_t count = (uint64_t)hdr[4] << 24 | (uint64_t)hdr[5] << 16 | (uint64_t)hdr[6] << 8 | hdr[7];
    if (count != n) {
        err_fail(err, "%s: has %llu labels but %s has %llu images", path, (unsigned long long)count, images,
                  (unsigned long long)n);
        goto done;
    }
    lab = mem_alloc(n, err);
    if (!lab) goto done;
    got = gz_read_all(g, lab, n, path, err);
    if (got < 0) goto done;
    if ((uint64_t)got < n) {
        err_fail(err, "%s: truncated: header says %llu labels, file has %lld", path, (unsigned long long)n,
                  (long long)got);
        goto done;
    }
    got = gz_read_all(g, extra, 1, path, err);
    if (got < 0) goto done;
    if (got > 0) {
        err_fail(err, "%s: trailing bytes after the %llu labels the header announces", path, (unsigned long long)n);
        goto done;
    }
    *out = lab;
    lab = NULL;
    rc = 0;
done:
    if (g) gzclose(g);
    free(lab);
    return rc;
}

/* The number of classes, max label + 1; every class must have an image. */
static int count_classes(const uint8_t *lab, uint64_t n, const char *path, err_t *err) {
    uint64_t per[256] = {0};
    int nclasses = 0;
    for (uint64_t i = 0; i < n; i++) per[lab[i]]++;
    for (int k = 0; k < 256; k++)
        if (per[k]) nclasses = k + 1;
    for (int k = 0; k < nclasses; k++)
        if (!per[k]) return err_fail(err, "%s: class %d has no images (labels run 0..%d)", path, k, nclasses - 1);
    return nclasses;
}

/* Loads the labels of the image file `images` (nfile images, of which d keeps
 * the first d->n) when its label file exists; names the classes after
 * Fashion-MNIST's when the directory path says "fashion" and there are 10. */
static int load_labels(dataset *d, const char *images, uint64_t nfile, err_t *err) {
    char path[PATH_BUF + 8];
    uint8_t *lab = NULL;
    int rc = -1, found = find_label_file(images, path, err);
    if (found <= 0) return found;
    if (read_label_file(path, nfile, images, &lab, err)) goto done;
    int nclasses = count_classes(lab, nfile, path, err);
    if (nclasses < 0) goto done;
    d->labels = mem_alloc((size_t)d->n * sizeof *d->labels, err);
    if (!d->labels || dataset_names_init(d, nclasses, path, err)) goto done;
    for (int i = 0; i < d->n; i++) d->labels[i] = lab[i];
    const char *fashion = strcasestr(images, "fashion"), *slash = strrchr(images, '/');
    if (fashion && slash && fashion < slash && nclasses == 10)
        for (int k = 0; k < 10; k++)
            dataset_name_set(d, k, dataset_fashion_mnist_names[k], strlen(dataset_fashion_mnist_names[k]));
    rc = 0;
done:
    free(lab);
    return rc;
}

int dataset_load_idx(dataset *d, const char *path, int limit, err_t *err) {
    gzFile g = NULL;
    uint8_t *pix = NULL;
    int rc = -1;
    memset(d, 0, sizeof *d);
    struct stat st;
    if (stat(path, &st) != 0) {
        err_fail(err, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        err_fail(err, "%s: not a regular file", path);
        goto done;
    }
    if (limit < 0) {
        err_fail(err, "%s: limit must be >= 0, got %d", path, limit);
        goto done;
    }
    g = gzopen(path, "rb");
    if (!g) {
        err_fail(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        goto done;
    }
    gzbuffer(g, 1 << 18);

    uint8_t hdr[4 + 4 * 4];
    int64_t got = gz_read_all(g, hdr, 4, path, err);
    if (got < 0) goto done;
    if (got < 4) {
        err_fail(err, "%s: not an IDX file (only %lld bytes)", path, (long long)got);
        goto done;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        err_fail(err, "%s: not an IDX file (magic %02x %02x %02x %02x, expected 00 00 08 03)", path, hdr[0], hdr[1],
                  hdr[2], hdr[3]);
        goto done;
    }
    if (hdr[2] != 0x08) {
        err_fail(err, "%s: IDX data type 0x%02x is not unsigned byte (0x08)", path, hdr[2]);
        goto done;
    }
    int ndim = hdr[3];
    if (ndim != 3 && ndim != 4) {
        err_fail(err, "%s: IDX file has %d dimension(s), expected 3 (n, h, w) or 4 (n, h, w, c)%s", path, ndim,
                  ndim == 1 ? " -- is this a labels file?" : "");
        goto done;
    }
    got = gz_read_all(g, hdr + 4, (uint64_t)4 * ndim, path, err);
    if (got < 0) goto done;
    if (got < 4 * ndim) {
        err_fail(err, "%s: truncated IDX header", path);
        goto done;
    }
    uint64_t dims[4] = {0, 0, 0, 1}, total = 1;
    for (int k = 0; k < ndim; k++) {
        const uint8_t *b = hdr + 4 + 4 * k;
        dims[k] = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
    }
    for (int k = 0; k < 4; k++) {
        if (dims[k] == 0) {
            err_fail(err, "%s: IDX dimension %d is zero (dims %llu x %llu x %llu x %llu)", path, k,
                      (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
                      (unsigned long long)dims[3]);
            goto done;
        }
        total *= dims[k]; /* each dim < 2^32 and we stop once past 2^31, so no overflow */
        if (total > IDX_MAX_BYTES) {
            err_fail(err, "%s: IDX dims %llu x %llu x %llu x %llu are implausibly large (over 2^31 bytes)", path,
                      (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
                      (unsigned long long)dims[3]);
            goto done;
        }
    }
    if (dims[3] != 1 && dims[3] != 3) {
        err_fail(err, "%s: IDX images have %llu channels, expected 1 or 3", path, (unsigned long long)dims[3]);
        goto done;
    }
    pix = mem_alloc(total, err);
    if (!pix) goto done;
    got = gz_read_all(g, pix, total, path, err);
    if (got < 0) goto done;
    if ((uint64_t)got < total) {
        err_fail(err, "%s: truncated: header says %llu x %llu x %llu x %llu = %llu bytes of pixels, file has %lld",
                  path, (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2],
                  (unsigned long long)dims[3], (unsigned long long)total, (long long)got);
        goto done;
    }
    uint8_t extra[1];
    got = gz_read_all(g, extra, 1, path, err);
    if (got < 0) goto done;
    if (got > 0) {
        err_fail(err, "%s: trailing bytes after the %llu images the header announces", path,
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
    if (load_labels(d, path, dims[0], err)) goto done;
    snprintf(d->desc, sizeof d->desc, "IDX: %d images %dx%dx%d from %s", d->n, d->h, d->w, d->c, path);
    dataset_desc_classes(d);
    rc = 0;
done:
    if (g) gzclose(g);
    free(pix);
    if (rc != 0) dataset_free(d);
    return rc;
}
