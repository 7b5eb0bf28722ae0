/* npy.c -- NumPy .npy reader (v1/v2/v3 headers; '<f4', '<f8', '|u1' to float
 * or double) and writer (v1.0, 64-byte aligned data, atomic). The parser works
 * on bytes in memory (a whole file, or the start of an npz entry), so npz.c
 * shares it.
 *
 * The header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * parsed here by a tiny scanner that accepts exactly those three keys.
 */
#include "io/npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "io/le.h"

/* The writers emit the host's bytes as little-endian data. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy writer assumes a little-endian host");

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* ---------------------------------------------------------------- header scanner */

typedef struct cursor {
    const char *s;
    size_t n, i;
} cursor;

static void skip_ws(cursor *c) {
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r'))
        c->i++;
}

/* Consumes ch (after whitespace); 0 if it was there. */
static int eat(cursor *c, char ch) {
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return 0;
    }
    return -1;
}

/* Consumes the word w (after whitespace); 0 if it was there. */
static int eat_word(cursor *c, const char *w) {
    size_t l = strlen(w);
    skip_ws(c);
    if (c->n - c->i >= l && memcmp(c->s + c->i, w, l) == 0) {
        c->i += l;
        return 0;
    }
    return -1;
}

/* A quoted string without escapes into out (truncation is an error). */
static int scan_str(cursor *c, char *out, size_t outsz) {
    char q;
    size_t k = 0;
    skip_ws(c);
    if (c->i >= c->n || (c->s[c->i] != '\'' && c->s[c->i] != '"')) return -1;
    q = c->s[c->i++];
    while (c->i < c->n && c->s[c->i] != q) {
        if (c->s[c->i] == '\\' || k + 1 >= outsz) return -1;
        out[k++] = c->s[c->i++];
    }
    if (c->i >= c->n) return -1;
    c->i++;
    out[k] = '\0';
    return 0;
}

/* A non-negative decimal integer (Python 2 files may append 'L'). */
static int scan_int(cursor *c, int64_t *v) {
    int64_t x = 0;
    size_t start;
    skip_ws(c);
    start = c->i;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
        int d = c->s[c->i++] - '0';
        if (x > (INT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    if (c->i == start) return -1;
    if (c->i < c->n && c->s[c->i] == 'L') c->i++;
    *v = x;
    return 0;
}

/* "(a, b, ...)" with optional trailing comma. */
static int scan_shape(cursor *c, int *ndim, int64_t *shape, int *too_many) {
    int nd = 0;
    if (eat(c, '(') != 0) return -1;
    for (;;) {
        int64_t v;
        if (eat(c, ')') == 0) break;
        if (scan_int(c, &v) != 0) return -1;
        if (nd == NPY_MAX_DIMS) {
            *too_many = 1;
            return -1;
        }
        shape[nd++] = v;
        if (eat(c, ',') != 0) {
            if (eat(c, ')') != 0) return -1;
            break;
        }
    }
    *ndim = nd;
    return 0;
}

typedef struct npy_header {
    char descr[64];
    int fortran;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
} npy_header;

static int parse_header(const char *path, const char *s, size_t n, npy_header *h, err_t *err) {
    cursor c = {s, n, 0};
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;

    if (eat(&c, '{') != 0) return err_fail(err, "%s: malformed .npy header (does not start with '{')", path);
    for (;;) {
        char key[32];
        if (eat(&c, '}') == 0) break;
        if (scan_str(&c, key, sizeof key) != 0 || eat(&c, ':') != 0)
            return err_fail(err, "%s: malformed .npy header near byte %zu", path, c.i);
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            seen_descr = 1;
            skip_ws(&c);
            if (c.i < c.n && c.s[c.i] == '[')
                return err_fail(err, "%s: structured dtype is not supported (need '<f4', '<f8' or '|u1')", path);
            if (scan_str(&c, h->descr, sizeof h->descr) != 0)
                return err_fail(err, "%s: malformed .npy header: bad 'descr'", path);
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
            seen_fortran = 1;
            if (eat_word(&c, "True") == 0) h->fortran = 1;
            else if (eat_word(&c, "False") == 0) h->fortran = 0;
            else return err_fail(err, "%s: malformed .npy header: bad 'fortran_order'", path);
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            int too_many = 0;
            seen_shape = 1;
            if (scan_shape(&c, &h->ndim, h->shape, &too_many) != 0) {
                if (too_many) return err_fail(err, "%s: array has more than %d dimensions", path, NPY_MAX_DIMS);
                return err_fail(err, "%s: malformed .npy header: bad 'shape'", path);
            }
        } else {
            return err_fail(err, "%s: malformed .npy header: unexpected or repeated key '%s'", path, key);
        }
        if (eat(&c, ',') != 0) {
            if (eat(&c, '}') != 0) return err_fail(err, "%s: malformed .npy header near byte %zu", path, c.i);
            break;
        }
    }
    skip_ws(&c);
    if (c.i != c.n) return err_fail(err, "%s: malformed .npy header: trailing characters", path);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return err_fail(err, "%s: malformed .npy header: missing '%s'", path,
                         !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    return 0;
}

/* ---------------------------------------------------------------- reader */

size_t npy_type_size(npy_type t) { return t == NPY_F64 ? 8 : t == NPY_F32 ? 4 : 1; }

int npy_parse_header(const char *name, const unsigned char *buf, size_t len, size_t total, npy_info *info,
                     err_t *err) {
    size_t hstart, hlen, numel = 1, need, have;
    npy_header h;

    memset(info, 0, sizeof *info);
    memset(&h, 0, sizeof h);
    ERR_ASSERT(len <= total);
    if (total < 10 || memcmp(buf, npy_magic, sizeof npy_magic) != 0)
        return err_fail(err, "%s: not a .npy file (bad magic)", name);
    ERR_ASSERT(len >= 10);
    if (buf[6] == 1) {
        hstart = 10;
        hlen = le_get16(buf + 8);
    } else if (buf[6] == 2 || buf[6] == 3) {
        if (total < 12) return err_fail(err, "%s: truncated .npy header", name);
        ERR_ASSERT(len >= 12);
        hstart = 12;
        hlen = le_get32(buf + 8);
    } else {
        return err_fail(err, "%s: unsupported .npy format version %d.%d", name, buf[6], buf[7]);
    }
    if (hlen > total - hstart)
        return err_fail(err, "%s: truncated .npy header (%zu header bytes declared, file has %zu bytes)", name, hlen,
                         total);
    ERR_ASSERT(len >= hstart + hlen);
    if (parse_header(name, (const char *)buf + hstart, hlen, &h, err) != 0) return -1;
    if (strcmp(h.descr, "<f4") == 0) {
        info->type = NPY_F32;
    } else if (strcmp(h.descr, "<f8") == 0) {
        info->type = NPY_F64;
    } else if (strcmp(h.descr, "|u1") == 0 || strcmp(h.descr, "<u1") == 0) {
        info->type = NPY_U8;
    } else if (h.descr[0] == '>') {
        return err_fail(err, "%s: big-endian dtype '%s' is not supported (need '<f4', '<f8' or '|u1')", name,
                         h.descr);
    } else {
        return err_fail(err, "%s: unsupported dtype '%s' (need '<f4', '<f8' or '|u1')", name, h.descr);
    }
    if (h.fortran)
        return err_fail(err, "%s: fortran_order True (column-major) arrays are not supported; save a C-order array",
                         name);
    for (int i = 0; i < h.ndim; i++) {
        size_t d = (size_t)h.shape[i];
        if ((uint64_t)h.shape[i] > SIZE_MAX || (d != 0 && numel > SIZE_MAX / 8 / d))
            return err_fail(err, "%s: array shape is too large", name);
        numel *= d;
    }
    need = numel * npy_type_size(info->type);
    have = total - hstart - hlen;
    if (have < need)
        return err_fail(err, "%s: truncated data: %zu elements need %zu bytes but only %zu are present", name, numel,
                         need, have);
    if (have > need) return err_fail(err, "%s: %zu unexpected bytes after the array data", name, have - need);
    info->ndim = h.ndim;
    for (int i = 0; i < h.ndim; i++) info->shape[i] = h.shape[i];
    info->numel = numel;
    info->data_offset = hstart + hlen;
    info->data_bytes = need;
    return 0;
}

void npy_convert(void *dst, npy_type to, const unsigned char *src, npy_type from, size_t n) {
    if (to == from) { /* little-endian host: the bytes are the values */
        memcpy(dst, src, n * npy_type_size(to));
    } else if (to == NPY_F32) {
        float *out = dst;
        for (size_t i = 0; i < n; i++) {
            if (from == NPY_U8) {
                out[i] = (float)src[i];
            } else {
                double d = le_getf64(src + 8 * i);
                /* 2^128 - 2^103: the smallest magnitude that rounds to infinity */
                out[i] = d >= 3.4028235677973366e38 ? INFINITY : d <= -3.4028235677973366e38 ? -INFINITY : (float)d;
            }
        }
    } else {
        ERR_ASSERT(to == NPY_F64);
        double *out = dst;
        for (size_t i = 0; i < n; i++) {
            if (from == NPY_U8) {
                out[i] = (double)src[i];
            } else {
                out[i] = (double)le_getf32(src + 4 * i);
            }
        }
    }
}

int npy_parse(const char *name, const unsigned char *buf, size_t len, npy_type as, void **data, int *ndim,
              int64_t shape[NPY_MAX_DIMS], err_t *err) {
    npy_info info;
    void *out;

    ERR_ASSERT(as == NPY_F32 || as == NPY_F64);
    *data = NULL;
    *ndim = 0;
    if (npy_parse_header(name, buf, len, len, &info, err) != 0) return -1;
    /* numel * 8 fits in size_t (npy_parse_header), so the float count does too */
    out = mem_alloc_floats(as == NPY_F64 ? 2 * info.numel : info.numel, err);
    if (!out) return err_wrap(err, "%s", name);
    npy_convert(out, as, buf + info.data_offset, info.type, info.numel);
    *data = out;
    *ndim = info.ndim;
    for (int i = 0; i < info.ndim; i++) shape[i] = info.shape[i];
    return 0;
}

static int npy_read(const char *path, npy_type as, void **data, int *ndim, int64_t shape[NPY_MAX_DIMS],
                    err_t *err) {
    unsigned char *buf = NULL;
    size_t len;
    int rc;

    *data = NULL;
    *ndim = 0;
    if (file_read_all(path, &buf, &len, err) != 0) return -1;
    rc = npy_parse(path, buf, len, as, data, ndim, shape, err);
    free(buf);
    return rc;
}

int npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS], err_t *err) {
    void *p = NULL;
    int rc = npy_read(path, NPY_F32, &p, ndim, shape, err);
    *data = p;
    return rc;
}

int npy_read_f64(const char *path, double **data, int *ndim, int64_t shape[NPY_MAX_DIMS], err_t *err) {
    void *p = NULL;
    int rc = npy_read(path, NPY_F64, &p, ndim, shape, err);
    *data = p;
    return rc;
}

/* ---------------------------------------------------------------- writer */

int npy_encode_header(const char *path, unsigned char hdr[NPY_HEADER_MAX], size_t *hlen, npy_type type, int ndim,
                      const int64_t *shape, size_t *nbytes, err_t *err) {
    static const char *const descr[] = {[NPY_F32] = "<f4", [NPY_F64] = "<f8", [NPY_U8] = "|u1"};
    size_t elsize = npy_type_size(type), hl, numel = 1;
    char *h = (char *)hdr;

    ERR_ASSERT(type == NPY_F32 || type == NPY_F64 || type == NPY_U8);
    if (ndim < 0 || ndim > NPY_MAX_DIMS)
        return err_fail(err, "cannot write %s: %d dimensions (0..%d allowed)", path, ndim, NPY_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX ||
            (shape[i] != 0 && numel > SIZE_MAX / elsize / (size_t)shape[i]))
            return err_fail(err, "cannot write %s: invalid shape (dimension %d is %lld)", path, i,
                             (long long)shape[i]);
        numel *= (size_t)shape[i];
    }

    memcpy(h, npy_magic, sizeof npy_magic);
    h[6] = 1;
    h[7] = 0;
    hl = 10;
    hl += (size_t)snprintf(h + hl, NPY_HEADER_MAX - hl, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                           descr[type]);
    for (int i = 0; i < ndim; i++)
        hl += (size_t)snprintf(h + hl, NPY_HEADER_MAX - hl, "%s%lld", i ? ", " : "", (long long)shape[i]);
    hl += (size_t)snprintf(h + hl, NPY_HEADER_MAX - hl, "%s), }", ndim == 1 ? "," : "");
    while ((hl + 1) % 64 != 0) h[hl++] = ' ';
    h[hl++] = '\n';
    ERR_ASSERT(hl <= NPY_HEADER_MAX);
    le_put16((unsigned char *)h + 8, (uint16_t)(hl - 10));
    *hlen = hl;
    *nbytes = numel * elsize;
    return 0;
}

static int npy_write(const char *path, const void *data, npy_type type, int ndim, const int64_t *shape,
                     err_t *err) {
    unsigned char hdr[NPY_HEADER_MAX];
    const void *chunks[2];
    size_t lens[2];

    if (npy_encode_header(path, hdr, &lens[0], type, ndim, shape, &lens[1], err) != 0) return -1;
    if (lens[1] > 0 && !data) return err_fail(err, "cannot write %s: no data", path);
    chunks[0] = hdr;
    chunks[1] = data;
    return file_write_atomic(path, chunks, lens, 2, err);
}

int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, err_t *err) {
    return npy_write(path, data, NPY_F32, ndim, shape, err);
}

int npy_write_f64(const char *path, const double *data, int ndim, const int64_t *shape, err_t *err) {
    return npy_write(path, data, NPY_F64, ndim, shape, err);
}

int npy_write_u8(const char *path, const uint8_t *data, int ndim, const int64_t *shape, err_t *err) {
    return npy_write(path, data, NPY_U8, ndim, shape, err);
}
