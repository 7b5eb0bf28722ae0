/* fuzz_npz.c -- libFuzzer harness for the .npz reader (src/io/npz.c: the zip
 * central directory, local headers, stored and deflated entries, ZIP64, data
 * descriptors, CRC-32; each entry's .npy through src/io/npy.c), the format of
 * the FID reference statistics (--ref FILE.npz).
 *
 * Each input is the whole file: it is written to in.npz in the per-process
 * scratch directory and opened with npz_open. When the directory checks out,
 * every member is read with npz_read_f64 and npz_read_f32, which must reach
 * the same verdict and shape, and npz_find must find it. Every failure must
 * name the file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/npz.h"

static char *path;

static void read_member(const npz_file *f, const npz_member *m) {
    double *d = NULL;
    float *x = NULL;
    int nd = -1, nx = -1;
    int64_t sd[NPY_MAX_DIMS], sx[NPY_MAX_DIMS];
    err_t err = {0}, err2 = {0};
    if (!npz_find(f, m->name)) abort();
    int rd = npz_read_f64(f, m->name, &d, &nd, sd, &err);
    if (rd != 0) fz_check_msg(&err, path);
    int rx = npz_read_f32(f, m->name, &x, &nx, sx, &err2);
    if (rx != 0) fz_check_msg(&err2, path);
    if ((rd == 0) != (rx == 0) || (rd == 0 && (!d || !x || nd != nx || memcmp(sd, sx, sizeof *sd * nd))) ||
        (rd != 0 && (d || x)))
        abort();
    free(d);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    npz_file f;
    err_t err = {0};
    if (!path) path = fz_path(fz_tmpdir("npz"), "in.npz");
    fz_write(path, data, size);
    if (npz_open(&f, path, &err) != 0) {
        fz_check_msg(&err, path);
    } else {
        for (int i = 0; i < f.n; i++) read_member(&f, &f.members[i]);
        if (npz_find(&f, "fuzz: no such array")) abort();
    }
    npz_close(&f);
    return 0;
}
