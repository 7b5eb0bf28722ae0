/* imagefolder.c -- a dataset made of PNG files, all of the same size and
 * channel count: every *.png in one directory, sorted by name (unlabelled),
 * or, for a directory with no PNGs of its own, every *.png in each of its
 * subdirectories, one class per subdirectory (class-labelled). */
#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/labels.h"
#include "io/png.h"

#define PATH_BUF 4096

/* A growing list of strings. */
typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Appends a copy of s; dir names the directory in the out-of-memory message. */
static int strlist_add(strlist *l, const char *s, const char *dir, err_t *err) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        char **bigger = realloc(l->v, cap * sizeof *bigger);
        if (!bigger) return err_fail(err, "%s: out of memory listing files", dir);
        l->v = bigger;
        l->cap = cap;
    }
    l->v[l->n] = strdup(s);
    if (!l->v[l->n]) return err_fail(err, "%s: out of memory listing files", dir);
    l->n++;
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_png_name(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

/* Lists dir: its *.png regular files into pngs and, when subdirs is not NULL,
 * its subdirectories not starting with '.' into subdirs; both sorted by name. */
static int list_dir(const char *dir, strlist *pngs, strlist *subdirs, err_t *err) {
    char path[PATH_BUF];
    int rc = -1;
    DIR *dp = opendir(dir);
    if (!dp) {
        err_fail(err, "%s: cannot open directory: %s", dir, strerror(errno));
        goto done;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dp);
        if (!e) {
            if (errno) {
                err_fail(err, "%s: cannot list directory: %s", dir, strerror(errno));
                goto done;
            }
            break;
        }
        int png = is_png_name(e->d_name), sub = subdirs && e->d_name[0] != '.';
        if (!png && !sub) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            err_fail(err, "%s: path too long", dir);
            goto done;
        }
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (png && S_ISREG(st.st_mode) && strlist_add(pngs, e->d_name, dir, err)) goto done;
        if (sub && S_ISDIR(st.st_mode) && strlist_add(subdirs, e->d_name, dir, err)) goto done;
    }
    if (pngs->n) qsort(pngs->v, pngs->n, sizeof *pngs->v, cmp_names);
    if (subdirs && subdirs->n) qsort(subdirs->v, subdirs->n, sizeof *subdirs->v, cmp_names);
    rc = 0;
done:
    if (dp) closedir(dp);
    return rc;
}

/* The class layout: every subdirectory in classes must hold PNGs; appends
 * "class/file.png" to files in class-then-name order, with the class index
 * of each in *labels. */
static int list_classes(const char *dir, const strlist *classes, strlist *per, strlist *files, int32_t **labels,
                        err_t *err) {
    char path[PATH_BUF];
    size_t total = 0;
    for (size_t k = 0; k < classes->n; k++) {
        if (per[k].n == 0)
            return err_fail(err, "%s/%s: class folder has no .png files (in %s every subdirectory is a class)", dir,
                             classes->v[k], dir);
        total += per[k].n;
    }
    if (total > 0x7fffffff) return err_fail(err, "%s: too many files", dir);
    *labels = mem_alloc(total * sizeof **labels, err);
    if (!*labels) return -1;
    for (size_t k = 0; k < classes->n; k++)
        for (size_t j = 0; j < per[k].n; j++) {
            if (snprintf(path, sizeof path, "%s/%s", classes->v[k], per[k].v[j]) >= (int)sizeof path)
                return err_fail(err, "%s/%s: path too long", dir, classes->v[k]);
            (*labels)[files->n] = (int32_t)k;
            if (strlist_add(files, path, dir, err)) return -1;
        }
    return 0;
}

/* The PNGs to load, relative to dir, in order: dir's own, or (when it has
 * none) those of its subdirectories, named in classes, with *labels set. */
static int list_images(const char *dir, strlist *files, strlist *classes, int32_t **labels, err_t *err) {
    char path[PATH_BUF];
    strlist *per = NULL;
    size_t nonempty = 0;
    int rc = -1;
    if (list_dir(dir, files, classes, err)) goto done;
    if (files->n > 0) {
        strlist_free(classes);
        rc = 0;
        goto done;
    }
    per = mem_calloc(classes->n, sizeof *per, err);
    if (!per) goto done;
    for (size_t k = 0; k < classes->n; k++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, classes->v[k]) >= (int)sizeof path) {
            err_fail(err, "%s: path too long", dir);
            goto done;
        }
        if (list_dir(path, &per[k], NULL, err)) goto done;
        nonempty += per[k].n > 0;
    }
    if (nonempty == 0) {
        err_fail(err, "%s: no .png files (and no IDX or CIFAR-10 files) in this directory or its subdirectories",
                  dir);
        goto done;
    }
    rc = list_classes(dir, classes, per, files, labels, err);
done:
    for (size_t k = 0; per && k < classes->n; k++) strlist_free(&per[k]);
    free(per);
    return rc;
}

/* Reads dir/files[0..keep) into d->pixels, checking they share one shape. */
static int load_images(dataset *d, const char *dir, const strlist *files, size_t keep, err_t *err) {
    char path[PATH_BUF], first[PATH_BUF];
    uint8_t *img = NULL;
    size_t img_bytes = 0;
    int rc = -1;
    for (size_t i = 0; i < keep; i++) {
        int w, h, c;
        snprintf(path, sizeof path, "%s/%s", dir, files->v[i]); /* fits: listing checked it */
        if (png_read_u8(path, &img, &w, &h, &c, err)) goto done;
        if (i == 0) {
            img_bytes = (size_t)w * h * c;
            if ((uint64_t)img_bytes * keep > ((uint64_t)1 << 31)) {
                err_fail(err, "%s: %zu images of %dx%dx%d are too many (over 2^31 bytes)", dir, keep, w, h, c);
                goto done;
            }
            d->pixels = mem_alloc(img_bytes * keep, err);
            if (!d->pixels) goto done;
            d->h = h;
            d->w = w;
            d->c = c;
            snprintf(first, sizeof first, "%s", path);
        } else if (w != d->w || h != d->h || c != d->c) {
            err_fail(err, "%s is %dx%dx%d (w x h x channels) but %s is %dx%dx%d; all images must match", path, w,
                      h, c, first, d->w, d->h, d->c);
            goto done;
        }
        memcpy(d->pixels + i * img_bytes, img, img_bytes);
        free(img);
        img = NULL;
    }
    rc = 0;
done:
    free(img);
    return rc;
}

int dataset_load_pngdir(dataset *d, const char *dir, int limit, err_t *err) {
    strlist files = {0}, classes = {0};
    int32_t *labels = NULL;
    int rc = -1;
    memset(d, 0, sizeof *d);
    if (limit < 0) {
        err_fail(err, "%s: limit must be >= 0, got %d", dir, limit);
        goto done;
    }
    if (list_images(dir, &files, &classes, &labels, err)) goto done;
    if (files.n > 0x7fffffff) {
        err_fail(err, "%s: too many files", dir);
        goto done;
    }
    size_t keep = limit > 0 && (size_t)limit < files.n ? (size_t)limit : files.n;
    if (load_images(d, dir, &files, keep, err)) goto done;
    d->n = (int)keep;
    if (labels) {
        d->labels = labels;
        labels = NULL;
        if (dataset_names_init(d, (int)classes.n, dir, err)) goto done;
        for (size_t k = 0; k < classes.n; k++) dataset_name_set(d, (int)k, classes.v[k], strlen(classes.v[k]));
    }
    snprintf(d->desc, sizeof d->desc, "PNG folder: %d images %dx%dx%d from %s", d->n, d->h, d->w, d->c, dir);
    dataset_desc_classes(d);
    rc = 0;
done:
    strlist_free(&files);
    strlist_free(&classes);
    free(labels);
    if (rc != 0) dataset_free(d);
    return rc;
}
