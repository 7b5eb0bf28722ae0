/* safetensors.h -- reader and writer for the safetensors weight format
 * (Hugging Face; see docs/diffusers.md, "safetensors"): an 8-byte little-endian header length
 * N, N bytes of JSON describing each tensor (dtype, shape, byte range), then
 * the raw little-endian tensor bytes.
 *
 * The reader loads the whole file, validates it as strictly as the reference
 * implementation, and converts F32/F16/BF16/F64 tensors to float. The writer
 * produces spec-conformant files (padded compact header, tensors sorted by
 * descending element size then name) and writes them atomically.
 */
#ifndef DDPM_SAFETENSORS_H
#define DDPM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER 100000000ull /* the reference reader's limit on N */

/* Every dtype string of the format. Only F32, F16, BF16 and F64 convert to float;
 * any dtype can be read raw with st_read_raw. The sub-byte F4/F6 types are
 * recognised (so files containing them validate) but cannot be read or written. */
enum st_dtype {
    ST_F32 = 0,
    ST_F16,
    ST_BF16,
    ST_F64,
    ST_I64,
    ST_I32,
    ST_U8,
    ST_BOOL,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_U32,
    ST_U64,
    ST_C64,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_F8_E8M0,
    ST_F8_E4M3FNUZ,
    ST_F8_E5M2FNUZ,
    ST_F4,
    ST_F6_E2M3,
    ST_F6_E3M2,
    ST_NUM_DTYPES
};

/* The format's name of a dtype ("F32"), or "?" for an invalid value. */
const char *st_dtype_name(int dtype);

/* The dtype with this exact (case-sensitive) name, or -1 if unknown. */
int st_dtype_from_name(const char *name);

/* Bits per element (32 for F32, 4 for F4), or 0 for an invalid value. */
int st_dtype_bits(int dtype);

/* One tensor of an open file. Its bytes are data[begin, end) of the st_file. */
typedef struct st_tensor {
    char *name;
    int dtype;                     /* enum st_dtype */
    int ndim;                      /* 0 = scalar */
    int64_t shape[ST_MAX_DIMS];    /* outermost first */
    size_t numel;                  /* product of shape (1 for a scalar) */
    size_t begin, end;             /* byte offsets into the data buffer, end exclusive */
    int has_sum;                   /* the file stores its checksum (and verification is on) */
    uint64_t sum;                  /* XXH64 (seed 0) of its bytes, when has_sum */
} st_tensor;

/* An open safetensors file: the whole file in memory plus the parsed header. */
typedef struct st_file {
    char *path;                 /* copy of the path, for messages */
    st_tensor *tensors;         /* n tensors, in data-offset order */
    int n;
    unsigned char *buf;         /* the whole file */
    size_t buf_len;
    const unsigned char *data;  /* the data buffer: buf + 8 + N (not necessarily aligned) */
    size_t data_len;
    char **meta_keys, **meta_vals; /* __metadata__ entries, n_meta of each */
    int n_meta;
} st_file;

/* Checksums. st_write stores the XXH64 (seed 0, libxxhash) of every tensor's
 * bytes in the metadata key ST_SUM_KEY: one compact JSON object, as a string
 * (safetensors metadata is str -> str, so the file stays a plain safetensors
 * file), mapping each tensor name to 16 hex digits, and "__metadata__" (never
 * a tensor name) to the checksum of the other metadata pairs (XXH64 of
 * key NUL value NUL for each, in bytewise key order):
 *     "ddpm.xxh64": "{\"__metadata__\":\"0123456789abcdef\",\"w\":\"...\",...}"
 * (about 24 bytes of header per tensor beside its name). With verification on
 * (the default), st_open requires that object, when the key is present, to
 * hold a 16-hex-digit string for every tensor of the file and for nothing
 * else but "__metadata__" (optional; checked there: "<file>: the metadata
 * fails its checksum: the file is corrupt"), and st_read_f32, st_read_raw and
 * st_load_f32 check a tensor's bytes
 * before reading them: "<file>: tensor 'x' fails its checksum: the file is
 * corrupt". Files without the key (diffusers, older ddpm files) read as
 * before. st_set_verify(0) (the CLI's --no-verify) makes the files opened
 * after it ignore the key: nothing is hashed. Set it once, before loading. */
#define ST_SUM_KEY "ddpm.xxh64"
void st_set_verify(int on);
int st_verify_enabled(void);

/* Checks every tensor of f that has a checksum (a whole-file check, e.g.
 * before trusting a checkpoint); 0 when all match or there are none. */
int st_verify(const st_file *f, err_t *err);

/* Reads and validates the file at path. On success f owns everything (release
 * with st_close). On failure f is left closed (st_close is harmless) and err
 * names the file and the problem, e.g. "m.safetensors: tensor 'w': data_offsets
 * [0, 400] outside the 300-byte data buffer". Checks: header length fits in the
 * file and is <= 100,000,000; header is valid UTF-8 without NUL bytes, starts
 * with '{' and is one JSON object (trailing whitespace allowed); every tensor
 * entry is an object with a known "dtype" string, a "shape" array of at most 8
 * non-negative integers and a "data_offsets" array of two non-negative integers
 * [begin, end] with begin <= end <= data length and end - begin ==
 * numel * element size (overflow-checked); tensors cover the data buffer
 * exactly (no gaps, no overlaps, no trailing bytes); no duplicate names;
 * "__metadata__", if present, is an object of string values; its ST_SUM_KEY,
 * if present and verification is on, as described above. Unknown extra keys
 * inside a tensor entry are ignored (as the reference reader does).
 */
int st_open(st_file *f, const char *path, err_t *err);

/* As st_open, on a copy of the len bytes at bytes (e.g. weights built into the
 * program); name stands for the file in messages. */
int st_open_mem(st_file *f, const char *name, const void *bytes, size_t len, err_t *err);

/* Frees everything f owns and zeroes it. Safe on a zeroed or already closed f. */
void st_close(st_file *f);

/* The tensor called name, or NULL. The pointer lives until st_close. */
const st_tensor *st_find(const st_file *f, const char *name);

/* The value of metadata key, or NULL if absent. Lives until st_close. */
const char *st_meta(const st_file *f, const char *key);

/* Converts tensor t (dtype F32, F16, BF16 or F64) into out[0..numel), after
 * checking its checksum (if it has one). numel must equal t->numel. F16 handles subnormals, infinities and NaN; F64 values beyond
 * the float range become +-inf. Other dtypes are an error naming the dtype.
 */
int st_read_f32(const st_file *f, const st_tensor *t, float *out, size_t numel, err_t *err);

/* Copies tensor t's raw little-endian bytes (checksum checked) into out. nbytes must equal
 * t->end - t->begin. The caller checks t->dtype; sub-byte dtypes are refused.
 */
int st_read_raw(const st_file *f, const st_tensor *t, void *out, size_t nbytes, err_t *err);

/* Finds tensor name, checks it has ndim_expected dimensions (-1 = any) and,
 * if shape_expected is not NULL, exactly that shape (ndim_expected entries;
 * ndim_expected must then be >= 0), converts it to float and returns a new
 * 64-byte aligned buffer (free() it), storing the element count in *numel_out
 * if not NULL. Returns NULL with err "<file>: missing tensor 'x'" or
 * "<file>: tensor 'x' has shape [a, b], expected [c, d]" etc.
 */
float *st_load_f32(const st_file *f, const char *name, int ndim_expected, const int64_t *shape_expected,
                   size_t *numel_out, err_t *err);

/* One tensor to write; data holds numel * element-size little-endian bytes
 * (may be NULL when that is 0). */
typedef struct st_entry {
    const char *name;
    int dtype; /* any enum st_dtype with a whole number of bytes per element */
    int ndim;  /* 0..8 */
    int64_t shape[ST_MAX_DIMS];
    const void *data;
} st_entry;

/* Writes n tensors to path atomically (see file_write_atomic). The header is
 * compact JSON padded with spaces to a multiple of 8 bytes; tensors are laid
 * out contiguously sorted by descending element size, then by name (bytewise);
 * "__metadata__" holds {"format": "pt"} plus the pairs of meta_kv, a
 * NULL-terminated list key, value, key, value, ..., NULL (or NULL for none; a
 * "format" key there replaces "pt"), then ST_SUM_KEY with every tensor's
 * checksum (see above). Names and metadata must be valid UTF-8; duplicate or
 * empty tensor names, "__metadata__" as a name, duplicate metadata keys,
 * ST_SUM_KEY in meta_kv, bad shapes and sub-byte dtypes are errors.
 */
int st_write(const char *path, const st_entry *e, int n, const char *const *meta_kv, err_t *err);

#endif
