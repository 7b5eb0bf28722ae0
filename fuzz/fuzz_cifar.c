/* fuzz_cifar.c -- libFuzzer harness for the CIFAR-10 binary loader
 * (src/data/cifar.c through dataset_load in src/data/dataset.c: records,
 * labels and the class names of batches.meta.txt).
 *
 * Input: one flags byte, then the batch file, then optionally "#CIFSEP#" and
 * batches.meta.txt. The batch is written as test_batch.bin in the per-process
 * scratch directory, zero-padded to a whole number of 3073-byte records when
 * flags bit 0 is set (so mutated inputs reach the record reader, not only the
 * size check); the names file beside it when present. Bits 1-2 are the image
 * limit (0 = all); bit 3 loads the directory (CIFAR layout, test split)
 * instead of the file. A failure must name the scratch directory. A dataset
 * that loads must be consistent: 32x32x3, its size within the limit, labels
 * in 0..9, ten non-empty names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "fuzz_util.h"

#define SEP "#CIFSEP#"
#define RECORD 3073

static char *dir, *batch, *meta;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!dir) {
        dir = strdup(fz_tmpdir("cifar"));
        batch = fz_path(dir, "test_batch.bin");
        meta = fz_path(dir, "batches.meta.txt");
    }
    const int flags = data[0], pad = flags & 1, limit = (flags >> 1) & 3, use_dir = (flags >> 3) & 1;
    const uint8_t *part[2];
    size_t len[2];
    int np = fz_split(data + 1, size - 1, SEP, strlen(SEP), part, len, 2);

    if (pad && len[0] % RECORD) {
        size_t n = (len[0] / RECORD + 1) * RECORD;
        uint8_t *b = calloc(n, 1);
        if (!b) return 0;
        memcpy(b, part[0], len[0]);
        fz_write(batch, b, n);
        free(b);
    } else {
        fz_write(batch, part[0], len[0]);
    }
    if (np > 1) fz_write(meta, part[1], len[1]);

    dataset d;
    err_t err = {0};
    if (dataset_load(&d, use_dir ? dir : batch, DATASET_TEST, limit, &err) != 0) {
        fz_check_msg(&err, dir);
        if (d.pixels || d.labels || d.names || d.n) abort();
    } else {
        if (d.n < 1 || (limit && d.n > limit) || d.h != 32 || d.w != 32 || d.c != 3 || !d.pixels || !d.labels ||
            d.nclasses != 10 || !d.names)
            abort();
        for (int i = 0; i < d.n; i++)
            if (d.labels[i] < 0 || d.labels[i] > 9) abort();
        for (int k = 0; k < 10; k++)
            if (!d.names[k][0] || memchr(d.names[k], '\0', DATASET_NAME_LEN) == NULL) abort();
        dataset_free(&d);
    }
    if (np > 1) unlink(meta);
    return 0;
}
