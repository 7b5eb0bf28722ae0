/* npz.h -- NumPy .npz archives: a zip file whose entries "<name>.npy" each hold
 * one .npy array (np.savez, np.savez_compressed, np.load). Used for FID
 * statistics in pytorch-fid's layout: float64 `mu` [d] and `sigma` [d, d],
 * optionally float32 `features` [n, d] and `logits` [n, k].
 *
 * Reading: npz_open reads and checks the central directory only; each
 * npz_read_* then reads one entry with pread, inflating it if it is deflated,
 * streaming it through the .npy parser of npy.h into the output array (memory:
 * the array plus a few MiB), and checks its CRC-32 before returning it.
 * Accepted: stored (method 0) and deflated (method 8) entries, ZIP64 end
 * records and extra fields, data descriptors (flag bit 3). Refused, with a
 * message naming the file (and the entry): encrypted entries, other methods,
 * multi-disk archives, sizes or offsets outside the file, an entry over
 * NPZ_MAX_ENTRY bytes or inflating more than NPZ_MAX_RATIO times its
 * compressed size, a local header that disagrees with the central directory,
 * a CRC mismatch, duplicate names, and everything npy_read_f32 refuses.
 *
 * Writing: npz_write writes stored (uncompressed) entries with correct CRC-32s,
 * every size and offset in ZIP64 fields (local and central extra fields, ZIP64
 * end record and locator; the classic fields hold 0xFFFFFFFF / 0xFFFF), so
 * there is one layout for every size; fixed timestamps (1980-01-01) make the
 * bytes a function of the arrays. Written atomically (file_write_atomic), the
 * array data going straight from the caller's buffers.
 */
#ifndef DDPM_NPZ_H
#define DDPM_NPZ_H

#include <stdint.h>

#include "core/status.h"
#include "io/npy.h"

#define NPZ_MAX_ENTRY (16ull << 30) /* largest uncompressed entry read: 16 GiB */
#define NPZ_MAX_RATIO 1032u         /* deflate's largest possible expansion ratio */

/* One entry of an open archive. */
typedef struct npz_member {
    char *name;        /* array name: the entry name without ".npy" (other names kept whole) */
    char *entry;       /* the entry name as stored ("mu.npy") */
    int method;        /* 0 stored, 8 deflated */
    int flags;         /* general purpose bit flags */
    uint32_t crc;      /* CRC-32 of the uncompressed bytes */
    uint64_t csize;    /* compressed bytes (== usize when stored) */
    uint64_t usize;    /* uncompressed bytes: the .npy image */
    uint64_t offset;   /* of the local header */
} npz_member;

/* An open archive: the file descriptor and the checked central directory. */
typedef struct npz_file {
    char *path;           /* copy of the path, for messages */
    int fd;
    uint64_t size;        /* file size */
    uint64_t cd_offset;   /* start of the central directory: entries' data ends before it */
    npz_member *members;  /* n entries, in central-directory order */
    int n;
} npz_file;

/* Opens path and reads its central directory. On failure f is left closed
 * (npz_close on it is a no-op) and err names the file and the problem.
 */
int npz_open(npz_file *f, const char *path, err_t *err);

/* Closes the file and frees everything; safe on a zeroed or closed npz_file. */
void npz_close(npz_file *f);

/* The member holding array `name` ("mu" finds "mu.npy"), or NULL. */
const npz_member *npz_find(const npz_file *f, const char *name);

/* Reads array `name` converted to double: '<f8' exactly, '<f4' and '|u1'
 * converted exactly. On success *data is a new 64-byte aligned buffer (free()
 * it; non-NULL even for 0 elements), *ndim (0..8) and shape[] describe it. On
 * failure *data is NULL and err names the file, the entry and the problem; a
 * missing array gives "X: no array 'name' (the archive has: mu, sigma)".
 * Reads of one npz_file may run concurrently (pread only).
 */
int npz_read_f64(const npz_file *f, const char *name, double **data, int *ndim, int64_t shape[NPY_MAX_DIMS],
                 err_t *err);

/* As npz_read_f64, converted to float as npy_read_f32 does ('<f8' beyond float
 * range -> +-inf). */
int npz_read_f32(const npz_file *f, const char *name, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS],
                 err_t *err);
/* The same, also giving the type the array is stored as (stored may be NULL). */
int npz_read_f32_stored(const npz_file *f, const char *name, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS],
                        npy_type *stored, err_t *err);

/* One array to write: C-order data of `type` with the given shape. */
typedef struct npz_entry {
    const char *name;              /* array name (stored as "<name>.npy"); non-empty, no '/' or control bytes */
    npy_type type;                 /* NPY_F32 ('<f4'), NPY_F64 ('<f8') or NPY_U8 ('|u1') */
    int ndim;                      /* 0..8 */
    int64_t shape[NPY_MAX_DIMS];   /* dims >= 0 */
    const void *data;              /* product of shape elements; may be NULL when that is 0 */
} npz_entry;

/* Replaces (or creates) path with an archive of the n entries (n >= 0, names
 * distinct), in order, as np.savez would write them but with ZIP64 fields
 * everywhere (see the top of this file); np.load reads it back exactly.
 */
int npz_write(const char *path, const npz_entry *entries, int n, err_t *err);

#endif
