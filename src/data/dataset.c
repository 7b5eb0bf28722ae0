/* dataset.c -- dataset_load: decides from a path what kind of dataset it is
 * (IDX directory or file, CIFAR-10 directory or file, PNG folder) and hands it
 * to the matching loader in idx.c, cifar.c or imagefolder.c, which also load
 * the class labels where the source has them. */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/labels.h"

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Writes dir/name into out (size PATH_BUF); returns 0, or -1 if it is too long. */
#define PATH_BUF 4096
static int join(char *out, const char *dir, const char *name, err_t *err) {
    if (snprintf(out, PATH_BUF, "%s/%s", dir, name) >= PATH_BUF) return err_fail(err, "%s: path too long", dir);
    return 0;
}

/* dir holds train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz]:
 * sets *is_idx and, when the split's file exists, path (raw preferred). */
static int find_idx(const char *dir, int split, int *is_idx, char *path, err_t *err) {
    static const char *names[2] = {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"};
    char p[PATH_BUF + 8];
    int found[2][2] = {{0}}; /* [split][gz] */
    for (int s = 0; s < 2; s++) {
        if (join(p, dir, names[s], err)) return -1;
        found[s][0] = is_file(p);
        strcat(p, ".gz");
        found[s][1] = is_file(p);
    }
    *is_idx = found[0][0] || found[0][1] || found[1][0] || found[1][1];
    if (!*is_idx) return 0;
    if (!found[split][0] && !found[split][1])
        return err_fail(err, "%s: MNIST-layout directory has no %s[.gz] for the %s split", dir, names[split],
                         split == DATASET_TRAIN ? "train" : "test");
    if (join(path, dir, names[split], err)) return -1;
    if (!found[split][0]) strcat(path, ".gz");
    return 0;
}

static int load_cifar_dir(dataset *d, const char *dir, int split, int limit, err_t *err) {
    char paths[5][PATH_BUF];
    const char *ptrs[5];
    int np = split == DATASET_TRAIN ? 5 : 1;
    for (int i = 0; i < np; i++) {
        char name[32];
        if (split == DATASET_TRAIN)
            snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
        else
            snprintf(name, sizeof name, "test_batch.bin");
        if (join(paths[i], dir, name, err)) return -1;
        if (!is_file(paths[i]))
            return err_fail(err, "%s: CIFAR-10 directory is missing %s (%s split)", dir, name,
                             split == DATASET_TRAIN ? "train" : "test");
        ptrs[i] = paths[i];
    }
    return dataset_load_cifar(d, ptrs, np, limit, err);
}

int dataset_load(dataset *d, const char *src, int split, int limit, err_t *err) {
    char idx_path[PATH_BUF + 8];
    int rc = -1, is_default = 0;
    memset(d, 0, sizeof *d);
    if (!src || !*src || strcmp(src, "fashion-mnist") == 0) {
        src = DATASET_FASHION_MNIST_DIR;
        is_default = 1;
    }
    if (split != DATASET_TRAIN && split != DATASET_TEST) {
        err_fail(err, "dataset split must be DATASET_TRAIN (0) or DATASET_TEST (1), got %d", split);
        goto done;
    }
    if (limit < 0) {
        err_fail(err, "dataset limit must be >= 0, got %d", limit);
        goto done;
    }
    struct stat st;
    if (stat(src, &st) != 0) {
        err_fail(err, "%s: %s%s", src, strerror(errno),
                  is_default ? " (install Debian's dataset-fashion-mnist package or give a data path)" : "");
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        char p[PATH_BUF];
        int is_idx = 0;
        if (find_idx(src, split, &is_idx, idx_path, err)) goto done;
        const char *kind = NULL; /* set for the layouts where split matters */
        if (is_idx) {
            kind = is_default ? "fashion-mnist" : "IDX";
            rc = dataset_load_idx(d, idx_path, limit, err);
        } else if ((!join(p, src, "data_batch_1.bin", NULL) && is_file(p)) ||
                   (!join(p, src, "test_batch.bin", NULL) && is_file(p))) {
            kind = "CIFAR-10";
            rc = load_cifar_dir(d, src, split, limit, err);
        } else {
            rc = dataset_load_pngdir(d, src, limit, err);
        }
        if (rc == 0 && kind) {
            snprintf(d->desc, sizeof d->desc, "%s %s: %d images %dx%dx%d from %s", kind,
                     split == DATASET_TRAIN ? "train" : "test", d->n, d->h, d->w, d->c, src);
            dataset_desc_classes(d);
        }
    } else if (ends_with(src, ".bin")) {
        rc = dataset_load_cifar(d, &src, 1, limit, err);
    } else {
        rc = dataset_load_idx(d, src, limit, err);
    }
done:
    if (rc != 0) dataset_free(d);
    return rc;
}

void dataset_free(dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    free(d->names);
    memset(d, 0, sizeof *d);
}
