/* fuzz_idx.c -- libFuzzer harness for the IDX (MNIST layout) loader, raw and
 * gzip (src/data/idx.c through dataset_load in src/data/dataset.c, with the
 * label file and the class names of src/data/labels.c).
 *
 * Input: one flags byte, then the image file, then optionally "#IDXSEP#" and
 * the label file. The image file is written as train-images-idx3-ubyte (with
 * ".gz" when flags bit 0 is set; zlib reads plain files through gzread, so
 * either name takes raw or gzip bytes), the label file as
 * train-labels-idx1-ubyte (".gz" with bit 1), into the per-process scratch
 * directory, or into its subdirectory "fashion" with bit 2 (which names 10
 * classes after Fashion-MNIST's). Bits 3-4 are the image limit (0 = all);
 * bit 5 loads the directory (MNIST layout: train split) instead of the file.
 * A failure must name the directory the files are in. A dataset that loads
 * must be consistent: its size within the limit, every label below nclasses.
 *
 * Inputs whose header announces more than 16 MiB of pixels are skipped: the
 * loader allocates what the header announces (up to its 2 GiB bound) before
 * it finds the data missing, and ASan poisoning a freed 1 GiB block takes
 * 0.25 s, which would slow the whole run 100-fold. Only the size of that
 * allocation differs from the small truncated inputs, which are fuzzed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "data/dataset.h"
#include "fuzz_util.h"

#define SEP "#IDXSEP#"

static char *dirs[2], *images[2][2], *labels[2][2]; /* [fashion][gz] */

static void setup(void) {
    const char *top = fz_tmpdir("idx");
    dirs[0] = strdup(top);
    dirs[1] = fz_path(top, "fashion");
    if (mkdir(dirs[1], 0700) != 0) fz_die("cannot create", dirs[1]);
    for (int f = 0; f < 2; f++)
        for (int gz = 0; gz < 2; gz++) {
            images[f][gz] = fz_path(dirs[f], gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte");
            labels[f][gz] = fz_path(dirs[f], gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte");
        }
}

/* The pixel bytes the IDX header at the start of p[0..n) (gzip or raw)
 * announces, or 0 when it has no complete 3- or 4-dimension header. */
static uint64_t announced(const uint8_t *p, size_t n) {
    uint8_t h[20];
    size_t got = n < sizeof h ? n : sizeof h;
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        z_stream z = {0};
        if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return 0;
        z.next_in = (uint8_t *)p;
        z.avail_in = (uInt)n;
        z.next_out = h;
        z.avail_out = sizeof h;
        inflate(&z, Z_SYNC_FLUSH);
        got = sizeof h - z.avail_out;
        inflateEnd(&z);
    } else {
        memcpy(h, p, got);
    }
    if (got < 4 || (h[3] != 3 && h[3] != 4) || got < 4 + 4 * (size_t)h[3]) return 0;
    uint64_t total = 1;
    for (int k = 0; k < h[3]; k++) {
        const uint8_t *b = h + 4 + 4 * k;
        total *= (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
        if (total > ((uint64_t)1 << 32)) return total;
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!dirs[0]) setup();
    const int flags = data[0], gz = flags & 1, lgz = (flags >> 1) & 1, f = (flags >> 2) & 1;
    const int limit = (flags >> 3) & 3, use_dir = (flags >> 5) & 1;
    const uint8_t *part[2];
    size_t len[2];
    int np = fz_split(data + 1, size - 1, SEP, strlen(SEP), part, len, 2);
    uint64_t pixels = announced(part[0], len[0]);
    if (pixels > (1u << 24) && pixels <= ((uint64_t)1 << 31)) return 0; /* see the top */

    fz_write(images[f][gz], part[0], len[0]);
    if (np > 1) fz_write(labels[f][lgz], part[1], len[1]);

    dataset d;
    err_t err = {0};
    if (dataset_load(&d, use_dir ? dirs[f] : images[f][gz], DATASET_TRAIN, limit, &err) != 0) {
        fz_check_msg(&err, dirs[f]);
        if (d.pixels || d.labels || d.names || d.n) abort(); /* zeroed on failure */
    } else {
        if (d.n < 1 || (limit && d.n > limit) || d.h < 1 || d.w < 1 || (d.c != 1 && d.c != 3) || !d.pixels) abort();
        if (d.labels) {
            if (d.nclasses < 1 || !d.names) abort();
            for (int i = 0; i < d.n; i++)
                if (d.labels[i] < 0 || d.labels[i] >= d.nclasses) abort();
            for (int k = 0; k < d.nclasses; k++)
                if (!d.names[k][0] || dataset_class_index(&d, d.names[k]) < 0) abort();
        }
        dataset_free(&d);
    }
    unlink(images[f][gz]);
    if (np > 1) unlink(labels[f][lgz]);
    return 0;
}
