/* npy.h -- NumPy .npy arrays: read float32/float64/uint8 arrays as float, write
 * float32 and uint8 arrays (used for test fixtures, sample dumps and data sets).
 */
#ifndef DDPM_NPY_H
#define DDPM_NPY_H

#include <stdint.h>

#include "core/status.h"

#define NPY_MAX_DIMS 8

/* Reads a .npy file (format version 1.0, 2.0 or 3.0) holding a C-order array of
 * dtype '<f4', '<f8' (converted to float; beyond float range -> +-inf) or
 * '|u1' (values 0..255 as float). On success *data is a new 64-byte aligned
 * buffer (free() it; non-NULL even for 0 elements), *ndim (0..8) and shape[]
 * describe it. On failure *data is NULL and err names the file and problem:
 * bad magic, unsupported version, malformed header, fortran_order True,
 * big-endian or other dtypes, too many dimensions, truncated data, or bytes
 * after the data.
 */
int npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS], ddpm_err *err);

/* Writes data (C order, product of shape elements; ndim 0..8, dims >= 0) as a
 * version 1.0 .npy with dtype '<f4'. The header is padded with spaces so the
 * data starts at a multiple of 64 bytes. Written atomically (file_write_atomic).
 */
int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, ddpm_err *err);

/* As npy_write_f32, for uint8 data with dtype '|u1'. */
int npy_write_u8(const char *path, const uint8_t *data, int ndim, const int64_t *shape, ddpm_err *err);

#endif
