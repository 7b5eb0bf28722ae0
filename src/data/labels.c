/* labels.c -- class labels: Fashion-MNIST's class names, looking a class up by
 * name or index, and the helpers the loaders share to name classes and to say
 * in desc how many there are. */
#include "data/labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const dataset_fashion_mnist_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

int dataset_names_init(dataset *d, int nclasses, const char *what, err_t *err) {
    if (nclasses < 1) return err_fail(err, "%s: %d classes, expected at least 1", what, nclasses);
    d->names = mem_calloc((size_t)nclasses, sizeof *d->names, err);
    if (!d->names) return err_wrap(err, "%s", what);
    d->nclasses = nclasses;
    for (int k = 0; k < nclasses; k++) snprintf(d->names[k], DATASET_NAME_LEN, "%d", k);
    return 0;
}

void dataset_name_set(dataset *d, int k, const char *s, size_t len) {
    if (len > DATASET_NAME_LEN - 1) len = DATASET_NAME_LEN - 1;
    memcpy(d->names[k], s, len);
    d->names[k][len] = '\0';
}

void dataset_desc_classes(dataset *d) {
    if (!d->labels) return;
    char suffix[32];
    size_t m = (size_t)snprintf(suffix, sizeof suffix, ", %d classes", d->nclasses);
    size_t n = strnlen(d->desc, sizeof d->desc - 1);
    if (n + m > sizeof d->desc - 1) n = sizeof d->desc - 1 - m;
    memcpy(d->desc + n, suffix, m + 1);
}

/* A decimal index of only digits, below nclasses; else -1. */
static int parse_index(const char *s, int nclasses) {
    long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        if (v >= nclasses) return -1;
    }
    return (int)v;
}

int dataset_class_index(const dataset *d, const char *name) {
    if (!d || !name || !d->names || d->nclasses <= 0) return -1;
    for (int k = 0; k < d->nclasses; k++)
        if (strcmp(d->names[k], name) == 0) return k;
    return parse_index(name, d->nclasses);
}
