/* dataset.h -- training images held in memory as uint8 NHWC, with their class
 * labels where the source has them, loaded from Fashion-MNIST/MNIST IDX files,
 * CIFAR-10 binary batches or a folder of PNGs (flat, or one subfolder per class).
 */
#ifndef DDPM_DATA_DATASET_H
#define DDPM_DATA_DATASET_H

#include <stdint.h>

#include "core/status.h"

enum { DATASET_TRAIN = 0, DATASET_TEST = 1 };

/* Where Debian's dataset-fashion-mnist package installs the data. */
#define DATASET_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Longest class name kept (longer ones are cut). */
#define DATASET_NAME_LEN 64

typedef struct dataset {
    int n, h, w, c;    /* n images of h x w pixels with c (1 or 3) channels */
    uint8_t *pixels;   /* n*h*w*c bytes, NHWC: image i, pixel (y,x), channel k at ((i*h+y)*w+x)*c+k */
    /* Class labels, when the source has them (else labels == NULL, nclasses == 0):
     * labels[i] in [0, nclasses) is image i's class, names[k] class k's name
     * (never empty: "0", "1", ... when the source names none). */
    int32_t *labels;
    int nclasses;
    char (*names)[DATASET_NAME_LEN];
    char desc[256];    /* one line saying what was loaded and from where */
} dataset;

/* Fashion-MNIST's class names, in label order. */
extern const char *const dataset_fashion_mnist_names[10];

/* The class index of `name` (a class name, or a decimal index < nclasses) in
 * d, or -1. */
int dataset_class_index(const dataset *d, const char *name);

/* Loads a dataset, with its labels where the source has them (see the loaders
 * below), into *d (which need not be initialised). src may be:
 *   NULL, "" or "fashion-mnist": DATASET_FASHION_MNIST_DIR;
 *   a directory holding train-images-idx3-ubyte[.gz] / t10k-images-idx3-ubyte[.gz]
 *     (MNIST layout; the raw file is preferred when both exist);
 *   a directory holding data_batch_1.bin..data_batch_5.bin / test_batch.bin
 *     (CIFAR-10 binary; all five train batches must be present);
 *   any other directory: a PNG folder (dataset_load_pngdir);
 *   a file ending in ".bin": one CIFAR-10 binary batch;
 *   any other file: an IDX image file, gzip-compressed or raw.
 * split (DATASET_TRAIN or DATASET_TEST) picks the files in the MNIST and CIFAR
 * directory layouts and is ignored for single files and PNG folders. limit = 0
 * keeps every image, limit > 0 keeps the first min(limit, available) images.
 * IDX files are always read and validated completely; CIFAR records and PNG
 * files beyond the limit are not read. desc ends in ", N classes" when d is
 * labelled. Returns 0, or -1 with a message naming the offending file; on
 * failure *d is zeroed (dataset_free is still safe). */
int dataset_load(dataset *d, const char *src, int split, int limit, err_t *err);

/* Loads one IDX image file (raw or gzip): magic 00 00 08 03 with big-endian
 * dims n, h, w (c = 1), or 00 00 08 04 with n, h, w, c (c = 1 or 3). Rejects a
 * wrong magic or data type, zero dims, more than 2^31 pixel bytes, truncated
 * data and trailing bytes. limit as for dataset_load.
 * Labels come from the IDX label file named like path with "images-idx3"
 * replaced by "labels-idx1" (raw preferred over .gz, whichever path has); with
 * none, d is unlabelled. That file must have magic 00 00 08 01, a big-endian
 * count equal to path's full image count, and exactly count label bytes;
 * nclasses = max label + 1 over the whole file, and every class must occur in
 * it. Classes get Fashion-MNIST's names when path's directory part contains
 * "fashion" (any case) and there are 10, else "0", "1", ... Returns 0 or -1. */
int dataset_load_idx(dataset *d, const char *path, int limit, err_t *err);

/* Loads CIFAR-10 binary batch files in the given order: records of 1 label
 * byte (0..9) + 3072 bytes (32x32 R, G and B planes), converted to NHWC
 * 32x32x3. Each file's size must be a non-zero multiple of 3073. limit as for
 * dataset_load. Labels are the records' label bytes, nclasses 10; the names
 * are the first 10 non-empty lines of batches.meta.txt (trailing whitespace
 * dropped, cut to DATASET_NAME_LEN - 1 bytes) in paths[0]'s directory when it
 * exists (fewer than 10 names is an error), else "0".."9". Returns 0 or -1. */
int dataset_load_cifar(dataset *d, const char *const *paths, int npaths, int limit, err_t *err);

/* Loads a PNG folder with png_read_u8 (*.png: case-insensitive suffix):
 *   dir holds PNGs: every *.png in it, sorted by name (byte order), unlabelled
 *     (other files and subdirectories ignored);
 *   else, when its subdirectories hold PNGs: one class per subdirectory not
 *     starting with '.', sorted by name (byte order), named after it (cut to
 *     DATASET_NAME_LEN - 1 bytes); images in class order, then by file name.
 *     A subdirectory without PNGs is an error naming it.
 * All images must share width, height and channel count (the error names the
 * first file that differs and both shapes); a directory without PNGs in it or
 * its subdirectories is an error. limit as for dataset_load (the first images
 * in the order above; nclasses still counts every class). Returns 0 or -1. */
int dataset_load_pngdir(dataset *d, const char *dir, int limit, err_t *err);

/* Frees d's pixels, labels and names and zeroes *d. Safe on a zeroed or already freed dataset. */
void dataset_free(dataset *d);

#endif
