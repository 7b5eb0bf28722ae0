/* imagefolder.c -- a dataset made of every *.png file in one directory,
 * sorted by name, all of the same size and channel count. */
#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "io/png.h"

#define PATH_BUF 4096

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_png_name(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

int dataset_load_pngdir(dataset *d, const char *dir, int limit, ddpm_err *err) {
    DIR *dp = NULL;
    char **names = NULL, path[PATH_BUF], first[PATH_BUF];
    size_t nnames = 0, cap = 0;
    uint8_t *img = NULL;
    int rc = -1;
    memset(d, 0, sizeof *d);
    if (limit < 0) {
        ddpm_fail(err, "%s: limit must be >= 0, got %d", dir, limit);
        goto done;
    }
    dp = opendir(dir);
    if (!dp) {
        ddpm_fail(err, "%s: cannot open directory: %s", dir, strerror(errno));
        goto done;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dp);
        if (!e) {
            if (errno) {
                ddpm_fail(err, "%s: cannot list directory: %s", dir, strerror(errno));
                goto done;
            }
            break;
        }
        if (!is_png_name(e->d_name)) continue;
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            ddpm_fail(err, "%s: path too long", dir);
            goto done;
        }
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (nnames == cap) {
            cap = cap ? 2 * cap : 256;
            char **bigger = realloc(names, cap * sizeof *names);
            if (!bigger) {
                ddpm_fail(err, "%s: out of memory listing files", dir);
                goto done;
            }
            names = bigger;
        }
        names[nnames] = strdup(e->d_name);
        if (!names[nnames]) {
            ddpm_fail(err, "%s: out of memory listing files", dir);
            goto done;
        }
        nnames++;
    }
    if (nnames == 0) {
        ddpm_fail(err, "%s: no .png files (and no IDX or CIFAR-10 files) in this directory", dir);
        goto done;
    }
    if (nnames > 0x7fffffff) {
        ddpm_fail(err, "%s: too many files", dir);
        goto done;
    }
    qsort(names, nnames, sizeof *names, cmp_names);
    size_t keep = limit > 0 && (size_t)limit < nnames ? (size_t)limit : nnames;
    size_t img_bytes = 0;
    for (size_t i = 0; i < keep; i++) {
        int w, h, c;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (png_read_u8(path, &img, &w, &h, &c, err)) goto done;
        if (i == 0) {
            img_bytes = (size_t)w * h * c;
            if ((uint64_t)img_bytes * keep > ((uint64_t)1 << 31)) {
                ddpm_fail(err, "%s: %zu images of %dx%dx%d are too many (over 2^31 bytes)", dir, keep, w, h, c);
                goto done;
            }
            d->pixels = ddpm_malloc(img_bytes * keep, err);
            if (!d->pixels) goto done;
            d->h = h;
            d->w = w;
            d->c = c;
            snprintf(first, sizeof first, "%s", path);
        } else if (w != d->w || h != d->h || c != d->c) {
            ddpm_fail(err, "%s is %dx%dx%d (w x h x channels) but %s is %dx%dx%d; all images must match", path, w,
                      h, c, first, d->w, d->h, d->c);
            goto done;
        }
        memcpy(d->pixels + i * img_bytes, img, img_bytes);
        free(img);
        img = NULL;
    }
    d->n = (int)keep;
    snprintf(d->desc, sizeof d->desc, "PNG folder: %d images %dx%dx%d from %s", d->n, d->h, d->w, d->c, dir);
    rc = 0;
done:
    if (dp) closedir(dp);
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    free(img);
    if (rc != 0) dataset_free(d);
    return rc;
}
