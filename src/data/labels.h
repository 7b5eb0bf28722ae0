/* labels.h -- internal to src/data: the class-label pieces the loaders share
 * (class names, the ", N classes" note in desc). Every loader that finds
 * labels sets d->labels, d->nclasses and d->names through these. */
#ifndef DDPM_DATA_LABELS_H
#define DDPM_DATA_LABELS_H

#include <stddef.h>

#include "data/dataset.h"

/* Sets d->nclasses = nclasses (>= 1) and allocates d->names, naming class k
 * "k". Returns 0, or -1 with a message naming what (a file or directory). */
int dataset_names_init(dataset *d, int nclasses, const char *what, err_t *err);

/* Names class k with the first min(len, DATASET_NAME_LEN - 1) bytes of s. */
void dataset_name_set(dataset *d, int k, const char *s, size_t len);

/* Appends ", N classes" to d->desc when d is labelled, cutting the text before
 * it if needed so the whole line fits. Call once, after desc is written. */
void dataset_desc_classes(dataset *d);

#endif
