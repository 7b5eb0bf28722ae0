/* fuzz_npy.c -- libFuzzer harness for the .npy reader (src/io/npy.c:
 * npy_read_f32, npy_read_f64, npy_parse, npy_parse_header).
 *
 * Each input is the whole file: it is written to in.npy in the per-process
 * scratch directory and read with npy_read_f32 (the path every --x/--noise
 * input takes); the same bytes are parsed in memory to doubles (npy_parse)
 * and their header alone (npy_parse_header, as npz.c uses it), which must all
 * reach the same verdict and the same shape. A failure must name the file.
 * An array that reads is checked against the header's element count.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/npy.h"

static char *path;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float *x = NULL;
    void *d = NULL;
    int nd = -1, nd2 = -1;
    int64_t shape[NPY_MAX_DIMS], shape2[NPY_MAX_DIMS];
    npy_info info;
    err_t err = {0}, err2 = {0}, err3 = {0};

    if (!path) path = fz_path(fz_tmpdir("npy"), "in.npy");
    fz_write(path, data, size);
    int rc = npy_read_f32(path, &x, &nd, shape, &err);
    if (rc != 0) fz_check_msg(&err, path);
    int rc2 = npy_parse("mem.npy", data, size, NPY_F64, &d, &nd2, shape2, &err2);
    if (rc2 != 0) fz_check_msg(&err2, "mem.npy");
    int rc3 = npy_parse_header("hdr.npy", data, size, size, &info, &err3);
    if (rc3 != 0) fz_check_msg(&err3, "hdr.npy");
    if ((rc == 0) != (rc2 == 0) || (rc == 0) != (rc3 == 0)) abort();
    if (rc == 0) {
        if (!x || !d || nd != nd2 || nd != info.ndim || nd < 0 || nd > NPY_MAX_DIMS) abort();
        size_t numel = 1;
        for (int i = 0; i < nd; i++) {
            if (shape[i] != shape2[i] || shape[i] != info.shape[i] || shape[i] < 0) abort();
            numel *= (size_t)shape[i];
        }
        if (numel != info.numel || info.data_offset + info.data_bytes != size) abort();
        /* the f32 and f64 conversions agree wherever a value fits in a float */
        const double *dd = d;
        for (size_t i = 0; i < numel; i++) {
            double v = dd[i];
            if (v != v || v > 3.4e38 || v < -3.4e38) continue; /* NaN, or the float conversion saturates */
            if (x[i] != (float)v) abort();
        }
    } else if (x || d) {
        abort();
    }
    free(x);
    free(d);
    return 0;
}
