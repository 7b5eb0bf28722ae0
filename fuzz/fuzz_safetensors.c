/* fuzz_safetensors.c -- libFuzzer harness for the safetensors reader
 * (src/io/safetensors.c: st_open, st_open_mem, st_load_f32, st_read_raw).
 *
 * Each input is the whole file: it is written to in.safetensors in the
 * per-process scratch directory and opened with st_open, the call every model
 * load makes (checksums verified, the default). A file that validates is read
 * back completely: each F32, F16, BF16 or F64 tensor through st_load_f32 with
 * its own shape, each other whole-byte dtype through st_read_raw (each must
 * succeed unless the tensor fails its checksum, which st_verify must then
 * report too), and the metadata looked up. A file that fails must say why
 * and name the path. The same bytes then go through st_open_mem, which must
 * reach the same verdict.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/safetensors.h"

static char *path;

/* A read of tensor t failed: only its checksum may be why. */
static void read_failed(const st_file *f, const st_tensor *t, const err_t *err) {
    if (!t->has_sum || !strstr(err->msg, "fails its checksum")) abort();
    fz_check_msg(err, f->path);
}

static void read_back(const st_file *f) {
    err_t err = {0};
    int bad = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64) {
            size_t n = 0;
            float *x = st_load_f32(f, t->name, t->ndim, t->shape, &n, &err);
            if (x && n != t->numel) abort();
            if (!x) read_failed(f, t, &err), bad = 1;
            free(x);
        } else if (st_dtype_bits(t->dtype) % 8 == 0) {
            size_t nbytes = t->end - t->begin;
            unsigned char *b = malloc(nbytes ? nbytes : 1);
            if (!b) abort();
            if (st_read_raw(f, t, b, nbytes, &err) != 0) read_failed(f, t, &err), bad = 1;
            free(b);
        }
    }
    if (bad && st_verify(f, &err) == 0) abort();
    (void)st_meta(f, "format");
    if (st_find(f, "fuzz: no such tensor")) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f, g;
    err_t err = {0}, err2 = {0};
    if (!path) path = fz_path(fz_tmpdir("safetensors"), "in.safetensors");
    fz_write(path, data, size);
    int rc = st_open(&f, path, &err);
    if (rc == 0) read_back(&f);
    else fz_check_msg(&err, path);
    int rc2 = st_open_mem(&g, "mem.safetensors", data, size, &err2);
    if ((rc == 0) != (rc2 == 0)) abort();
    if (rc2 != 0) fz_check_msg(&err2, "mem.safetensors");
    st_close(&f);
    st_close(&g);
    return 0;
}
