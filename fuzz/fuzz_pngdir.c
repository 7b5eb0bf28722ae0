/* fuzz_pngdir.c -- libFuzzer harness for PNG folders (src/data/imagefolder.c
 * through dataset_load in src/data/dataset.c, and the PNG reader png_read_u8
 * in src/io/png.c on top of libpng).
 *
 * Input: one flags byte, then up to three PNG files separated by "#PNGSEP#".
 * The files are written as a.png, b.png and C.PNG into a fresh folder "data"
 * in the per-process scratch directory, or, with flags bit 0, each into its
 * own class folder data/c0, data/c1, data/c2 (all into data/c0 with bit 1 as
 * well), and the folder is loaded with dataset_load. Bits 2-3 are the image
 * limit (0 = all). A failure must name the folder. A dataset that loads must
 * be consistent: its size within the limit, c = 1 or 3, every label below
 * nclasses and one class per class folder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "fuzz_util.h"

#define SEP "#PNGSEP#"

static char *top, *data_dir;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[3] = {"a.png", "b.png", "C.PNG"};
    if (size < 1) return 0;
    if (!top) {
        top = strdup(fz_tmpdir("pngdir"));
        data_dir = fz_path(top, "data");
    }
    const int flags = data[0], classes = flags & 1, one_class = (flags >> 1) & 1, limit = (flags >> 2) & 3;
    const uint8_t *part[3];
    size_t len[3];
    int np = fz_split(data + 1, size - 1, SEP, strlen(SEP), part, len, 3);

    fz_rm_tree(data_dir);
    if (mkdir(data_dir, 0700) != 0) fz_die("cannot create", data_dir);
    int nclass_dirs = 0;
    for (int i = 0; i < np; i++) {
        char rel[64];
        if (classes) {
            int k = one_class ? 0 : i;
            snprintf(rel, sizeof rel, "c%d", k);
            char *sub = fz_path(data_dir, rel);
            if (k == nclass_dirs) {
                if (mkdir(sub, 0700) != 0) fz_die("cannot create", sub);
                nclass_dirs++;
            }
            free(sub);
            snprintf(rel, sizeof rel, "c%d/%s", k, names[i]);
        } else {
            snprintf(rel, sizeof rel, "%s", names[i]);
        }
        char *p = fz_path(data_dir, rel);
        fz_write(p, part[i], len[i]);
        free(p);
    }

    dataset d;
    err_t err = {0};
    if (dataset_load(&d, data_dir, DATASET_TRAIN, limit, &err) != 0) {
        fz_check_msg(&err, data_dir);
        if (d.pixels || d.labels || d.names || d.n) abort();
    } else {
        if (d.n < 1 || d.n > np || (limit && d.n > limit) || d.h < 1 || d.w < 1 || (d.c != 1 && d.c != 3) ||
            !d.pixels)
            abort();
        if (classes != (d.labels != NULL)) abort();
        if (d.labels) {
            if (d.nclasses != nclass_dirs || !d.names) abort();
            for (int i = 0; i < d.n; i++)
                if (d.labels[i] < 0 || d.labels[i] >= d.nclasses) abort();
        }
        dataset_free(&d);
    }
    return 0;
}
