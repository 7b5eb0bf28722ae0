/* cifar.c -- CIFAR-10 binary batches: records of one label byte and a 32x32
 * RGB image stored as three 1024-byte planes (CHW), converted here to NHWC,
 * and the class names in batches.meta.txt next to them. */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/labels.h"

#define CIFAR_SIDE 32
#define CIFAR_PLANE (CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_IMAGE (3 * CIFAR_PLANE)
#define CIFAR_RECORD (1 + CIFAR_IMAGE)
#define CIFAR_CLASSES 10
#define PATH_BUF 4096

/* Number of records in a CIFAR file from its size, or -1 with a message. */
static int64_t cifar_count(const char *path, err_t *err) {
    struct stat st;
    if (stat(path, &st) != 0) return err_fail(err, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return err_fail(err, "%s: not a regular file", path);
    if (st.st_size == 0 || st.st_size % CIFAR_RECORD != 0)
        return err_fail(err, "%s: size %lld is not a non-zero multiple of the CIFAR-10 record size %d", path,
                         (long long)st.st_size, CIFAR_RECORD);
    return st.st_size / CIFAR_RECORD;
}

/* Reads the first n records of path into out (n*32*32*3 bytes, NHWC) and
 * their labels into labels (n values). */
static int cifar_read(const char *path, int64_t n, uint8_t *out, int32_t *labels, err_t *err) {
    uint8_t rec[CIFAR_RECORD];
    int rc = -1;
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_fail(err, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    for (int64_t r = 0; r < n; r++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            err_fail(err, "%s: read error in record %lld: %s", path, (long long)r,
                      ferror(f) ? strerror(errno) : "unexpected end of file");
            goto done;
        }
        if (rec[0] > 9) {
            err_fail(err, "%s: record %lld has label %d, expected 0..9 (not a CIFAR-10 binary file?)", path,
                      (long long)r, rec[0]);
            goto done;
        }
        labels[r] = rec[0];
        uint8_t *img = out + r * CIFAR_IMAGE;
        for (int p = 0; p < CIFAR_PLANE; p++)
            for (int ch = 0; ch < 3; ch++) img[p * 3 + ch] = rec[1 + ch * CIFAR_PLANE + p];
    }
    rc = 0;
done:
    if (f) fclose(f);
    return rc;
}

/* Reads the next line of f into name (up to DATASET_NAME_LEN - 1 bytes kept,
 * trailing whitespace dropped). Returns the kept length, or -1 at the end of
 * the file with nothing read, or -2 for a NUL byte (not a text file). */
static int meta_line(FILE *f, char *name) {
    int64_t len = 0, end = 0; /* bytes in the line; length without trailing whitespace */
    int ch;
    while ((ch = getc(f)) != EOF && ch != '\n') {
        if (ch == '\0') return -2;
        if (len < DATASET_NAME_LEN - 1) name[len] = (char)ch;
        len++;
        if (!strchr(" \t\r\v\f", ch)) end = len;
    }
    if (ch == EOF && len == 0) return -1;
    return (int)(end < DATASET_NAME_LEN - 1 ? end : DATASET_NAME_LEN - 1);
}

/* Names d's classes from batches.meta.txt in the directory of `batch`, when
 * that file exists: the first CIFAR_CLASSES non-empty lines. */
static int cifar_names(dataset *d, const char *batch, err_t *err) {
    char path[PATH_BUF], name[DATASET_NAME_LEN];
    const char *slash = strrchr(batch, '/');
    int dirlen = slash ? (int)(slash - batch + 1) : 0, found = 0, rc = -1;
    FILE *f = NULL;
    if (snprintf(path, sizeof path, "%.*sbatches.meta.txt", dirlen, batch) >= (int)sizeof path)
        return err_fail(err, "%s: path too long", batch);
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? 0 : err_fail(err, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return err_fail(err, "%s: not a regular file", path);
    f = fopen(path, "rb");
    if (!f) {
        err_fail(err, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    while (found < CIFAR_CLASSES) {
        int len = meta_line(f, name);
        if (len == -1) break;
        if (len == -2) {
            err_fail(err, "%s: contains a NUL byte (expected one class name per line)", path);
            goto done;
        }
        if (len > 0) dataset_name_set(d, found++, name, (size_t)len);
    }
    if (ferror(f)) {
        err_fail(err, "%s: read error: %s", path, strerror(errno));
        goto done;
    }
    if (found < CIFAR_CLASSES) {
        err_fail(err, "%s: has %d class names, expected %d (one per line)", path, found, CIFAR_CLASSES);
        goto done;
    }
    rc = 0;
done:
    if (f) fclose(f);
    return rc;
}

int dataset_load_cifar(dataset *d, const char *const *paths, int npaths, int limit, err_t *err) {
    int64_t *counts = NULL, total = 0;
    int rc = -1;
    memset(d, 0, sizeof *d);
    if (npaths <= 0 || limit < 0) {
        err_fail(err, "CIFAR-10: need at least one file and limit >= 0 (got %d files, limit %d)", npaths, limit);
        goto done;
    }
    counts = mem_calloc((size_t)npaths, sizeof *counts, err);
    if (!counts) goto done;
    for (int i = 0; i < npaths; i++) {
        counts[i] = cifar_count(paths[i], err);
        if (counts[i] < 0) goto done;
        total += counts[i];
    }
    if (total > 0x7fffffff / CIFAR_IMAGE) {
        err_fail(err, "%s: %lld CIFAR-10 records are too many (over 2^31 bytes)", paths[0], (long long)total);
        goto done;
    }
    if (limit > 0 && limit < total) total = limit;
    d->pixels = mem_alloc((size_t)total * CIFAR_IMAGE, err);
    d->labels = mem_alloc((size_t)total * sizeof *d->labels, err);
    if (!d->pixels || !d->labels) goto done;
    int64_t at = 0;
    for (int i = 0; i < npaths && at < total; i++) {
        int64_t take = counts[i] < total - at ? counts[i] : total - at;
        if (cifar_read(paths[i], take, d->pixels + at * CIFAR_IMAGE, d->labels + at, err)) goto done;
        at += take;
    }
    if (dataset_names_init(d, CIFAR_CLASSES, paths[0], err) || cifar_names(d, paths[0], err)) goto done;
    d->n = (int)total;
    d->h = d->w = CIFAR_SIDE;
    d->c = 3;
    snprintf(d->desc, sizeof d->desc, "CIFAR-10: %d images 32x32x3 from %s%s", d->n, paths[0],
             npaths > 1 ? " and more" : "");
    dataset_desc_classes(d);
    rc = 0;
done:
    free(counts);
    if (rc != 0) dataset_free(d);
    return rc;
}
