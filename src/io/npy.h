/* npy.h -- NumPy .npy arrays: read float32/float64/uint8 arrays as float or
 * double, write float32, float64 and uint8 arrays (used for test fixtures,
 * sample dumps, data sets and, through npz.h, FID statistics).
 *
 * The file functions sit on two in-memory pieces that npz.c shares: a header
 * parser/converter (npy_parse_header + npy_convert, or npy_parse for a whole
 * .npy image in memory) and a header encoder (npy_encode_header).
 */
#ifndef DDPM_NPY_H
#define DDPM_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define NPY_MAX_DIMS 8
#define NPY_HEADER_MAX 512 /* bytes npy_encode_header may write (magic through '\n') */

/* Element types: the dtypes '<f4', '<f8' and '|u1' ('<u1' is accepted too). */
typedef enum npy_type { NPY_F32, NPY_F64, NPY_U8 } npy_type;

/* Reads a .npy file (format version 1.0, 2.0 or 3.0) holding a C-order array of
 * dtype '<f4', '<f8' (converted to float; beyond float range -> +-inf) or
 * '|u1' (values 0..255 as float). On success *data is a new 64-byte aligned
 * buffer (free() it; non-NULL even for 0 elements), *ndim (0..8) and shape[]
 * describe it. On failure *data is NULL and err names the file and problem:
 * bad magic, unsupported version, malformed header, fortran_order True,
 * big-endian or other dtypes, too many dimensions, truncated data, or bytes
 * after the data.
 */
int npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS], err_t *err);

/* As npy_read_f32, into doubles: '<f8' exactly, '<f4' and '|u1' converted
 * (exactly: every float and byte value is a double). */
int npy_read_f64(const char *path, double **data, int *ndim, int64_t shape[NPY_MAX_DIMS], err_t *err);

/* Writes data (C order, product of shape elements; ndim 0..8, dims >= 0) as a
 * version 1.0 .npy with dtype '<f4'. The header is padded with spaces so the
 * data starts at a multiple of 64 bytes. Written atomically (file_write_atomic).
 */
int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, err_t *err);

/* As npy_write_f32, for uint8 data with dtype '|u1'. */
int npy_write_u8(const char *path, const uint8_t *data, int ndim, const int64_t *shape, err_t *err);

/* As npy_write_f32, for double data with dtype '<f8'. */
int npy_write_f64(const char *path, const double *data, int ndim, const int64_t *shape, err_t *err);

/* ---------------------------------------------------------------- in memory */

/* Bytes per element of a type (4, 8 or 1). */
size_t npy_type_size(npy_type t);

/* A parsed header: the stored dtype, the shape, where the data starts and how
 * many bytes it has. */
typedef struct npy_info {
    npy_type type;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t numel;       /* product of shape (1 for 0-d); numel * 8 fits in size_t */
    size_t data_offset; /* magic + version + length field + header dict */
    size_t data_bytes;  /* numel * npy_type_size(type) */
} npy_info;

/* Parses the header of a .npy image of `total` bytes whose first len bytes are
 * at buf. The caller passes at least min(total, header size) bytes (all of
 * them, or at least the magic, the length field and the whole dict; passing
 * fewer is a programming error). Checks everything npy_read_f32 checks except
 * the conversion: on success total == info->data_offset + info->data_bytes.
 * Messages start with `name` (a path, or "x.npz: entry 'mu.npy'") and use the
 * wording listed at npy_read_f32.
 */
int npy_parse_header(const char *name, const unsigned char *buf, size_t len, size_t total, npy_info *info,
                     err_t *err);

/* Converts n little-endian elements of type `from` at src (any alignment) to
 * type `to` at dst. to == NPY_F32: from any type (f8 beyond float range ->
 * +-inf); to == NPY_F64: from any type (exact); to == NPY_U8: from NPY_U8 only.
 */
void npy_convert(void *dst, npy_type to, const unsigned char *src, npy_type from, size_t n);

/* Parses a whole .npy image buf[0..len) into a new 64-byte aligned buffer of
 * type `as` (NPY_F32 or NPY_F64); the rest as npy_read_f32 (which is this
 * function applied to the file's bytes, name = path).
 */
int npy_parse(const char *name, const unsigned char *buf, size_t len, npy_type as, void **data, int *ndim,
              int64_t shape[NPY_MAX_DIMS], err_t *err);

/* Encodes the version 1.0 header of a C-order array of `type` and shape
 * (ndim 0..8, dims >= 0) into hdr: magic, version, length, the dict padded with
 * spaces and '\n' so *hlen is a multiple of 64. *nbytes gets the data size.
 * Errors name `path` ("cannot write X: invalid shape ...").
 */
int npy_encode_header(const char *path, unsigned char hdr[NPY_HEADER_MAX], size_t *hlen, npy_type type, int ndim,
                      const int64_t *shape, size_t *nbytes, err_t *err);

#endif
