/* npy.c -- NumPy .npy reader (v1/v2/v3 headers; '<f4', '<f8', '|u1' to float)
 * and writer (v1.0, 64-byte aligned data, atomic).
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

static int parse_header(const char *path, const char *s, size_t n, npy_header *h, ddpm_err *err) {
    cursor c = {s, n, 0};
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;

    if (eat(&c, '{') != 0) return ddpm_fail(err, "%s: malformed .npy header (does not start with '{')", path);
    for (;;) {
        char key[32];
        if (eat(&c, '}') == 0) break;
        if (scan_str(&c, key, sizeof key) != 0 || eat(&c, ':') != 0)
            return ddpm_fail(err, "%s: malformed .npy header near byte %zu", path, c.i);
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            seen_descr = 1;
            skip_ws(&c);
            if (c.i < c.n && c.s[c.i] == '[')
                return ddpm_fail(err, "%s: structured dtype is not supported (need '<f4', '<f8' or '|u1')", path);
            if (scan_str(&c, h->descr, sizeof h->descr) != 0)
                return ddpm_fail(err, "%s: malformed .npy header: bad 'descr'", path);
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
            seen_fortran = 1;
            if (eat_word(&c, "True") == 0) h->fortran = 1;
            else if (eat_word(&c, "False") == 0) h->fortran = 0;
            else return ddpm_fail(err, "%s: malformed .npy header: bad 'fortran_order'", path);
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            int too_many = 0;
            seen_shape = 1;
            if (scan_shape(&c, &h->ndim, h->shape, &too_many) != 0) {
                if (too_many) return ddpm_fail(err, "%s: array has more than %d dimensions", path, NPY_MAX_DIMS);
                return ddpm_fail(err, "%s: malformed .npy header: bad 'shape'", path);
            }
        } else {
            return ddpm_fail(err, "%s: malformed .npy header: unexpected or repeated key '%s'", path, key);
        }
        if (eat(&c, ',') != 0) {
            if (eat(&c, '}') != 0) return ddpm_fail(err, "%s: malformed .npy header near byte %zu", path, c.i);
            break;
        }
    }
    skip_ws(&c);
    if (c.i != c.n) return ddpm_fail(err, "%s: malformed .npy header: trailing characters", path);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return ddpm_fail(err, "%s: malformed .npy header: missing '%s'", path,
                         !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    return 0;
}

/* ---------------------------------------------------------------- reader */

static uint64_t load_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

enum { NPY_F4, NPY_F8, NPY_U1 };

int npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS], ddpm_err *err) {
    int rc = -1, kind, elsize;
    unsigned char *buf = NULL;
    size_t len, hstart, hlen, numel = 1, need, have;
    const unsigned char *p;
    float *out = NULL;
    npy_header h;

    *data = NULL;
    *ndim = 0;
    memset(&h, 0, sizeof h);
    if (file_read_all(path, &buf, &len, err) != 0) goto done;
    if (len < 10 || memcmp(buf, npy_magic, sizeof npy_magic) != 0) {
        ddpm_fail(err, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    if (buf[6] == 1) {
        hstart = 10;
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
    } else if (buf[6] == 2 || buf[6] == 3) {
        if (len < 12) {
            ddpm_fail(err, "%s: truncated .npy header", path);
            goto done;
        }
        hstart = 12;
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    } else {
        ddpm_fail(err, "%s: unsupported .npy format version %d.%d", path, buf[6], buf[7]);
        goto done;
    }
    if (hlen > len - hstart) {
        ddpm_fail(err, "%s: truncated .npy header (%zu header bytes declared, file has %zu bytes)", path, hlen, len);
        goto done;
    }
    if (parse_header(path, (const char *)buf + hstart, hlen, &h, err) != 0) goto done;
    if (strcmp(h.descr, "<f4") == 0) {
        kind = NPY_F4;
        elsize = 4;
    } else if (strcmp(h.descr, "<f8") == 0) {
        kind = NPY_F8;
        elsize = 8;
    } else if (strcmp(h.descr, "|u1") == 0 || strcmp(h.descr, "<u1") == 0) {
        kind = NPY_U1;
        elsize = 1;
    } else if (h.descr[0] == '>') {
        ddpm_fail(err, "%s: big-endian dtype '%s' is not supported (need '<f4', '<f8' or '|u1')", path, h.descr);
        goto done;
    } else {
        ddpm_fail(err, "%s: unsupported dtype '%s' (need '<f4', '<f8' or '|u1')", path, h.descr);
        goto done;
    }
    if (h.fortran) {
        ddpm_fail(err, "%s: fortran_order True (column-major) arrays are not supported; save a C-order array", path);
        goto done;
    }
    for (int i = 0; i < h.ndim; i++) {
        size_t d = (size_t)h.shape[i];
        if ((uint64_t)h.shape[i] > SIZE_MAX || (d != 0 && numel > SIZE_MAX / 8 / d)) {
            ddpm_fail(err, "%s: array shape is too large", path);
            goto done;
        }
        numel *= d;
    }
    need = numel * (size_t)elsize;
    have = len - hstart - hlen;
    if (have < need) {
        ddpm_fail(err, "%s: truncated data: %zu elements need %zu bytes but only %zu are present", path, numel, need,
                  have);
        goto done;
    }
    if (have > need) {
        ddpm_fail(err, "%s: %zu unexpected bytes after the array data", path, have - need);
        goto done;
    }
    out = ddpm_alloc_floats(numel, err);
    if (!out) {
        ddpm_wrap(err, "%s", path);
        goto done;
    }
    p = buf + hstart + hlen;
    for (size_t i = 0; i < numel; i++) {
        if (kind == NPY_U1) {
            out[i] = (float)p[i];
        } else if (kind == NPY_F4) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                         (uint32_t)p[4 * i + 3] << 24;
            memcpy(&out[i], &u, sizeof u);
        } else {
            uint64_t u = load_le64(p + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            /* 2^128 - 2^103: the smallest magnitude that rounds to infinity */
            out[i] = d >= 3.4028235677973366e38 ? INFINITY : d <= -3.4028235677973366e38 ? -INFINITY : (float)d;
        }
    }
    *data = out;
    out = NULL;
    *ndim = h.ndim;
    for (int i = 0; i < h.ndim; i++) shape[i] = h.shape[i];
    rc = 0;
done:
    free(out);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- writer */

static int npy_write(const char *path, const void *data, int elsize, const char *descr, int ndim,
                     const int64_t *shape, ddpm_err *err) {
    char hdr[512];
    size_t hl, numel = 1;
    const void *chunks[2];
    size_t lens[2];

    if (ndim < 0 || ndim > NPY_MAX_DIMS)
        return ddpm_fail(err, "cannot write %s: %d dimensions (0..%d allowed)", path, ndim, NPY_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX ||
            (shape[i] != 0 && numel > SIZE_MAX / (size_t)elsize / (size_t)shape[i]))
            return ddpm_fail(err, "cannot write %s: invalid shape (dimension %d is %lld)", path, i,
                             (long long)shape[i]);
        numel *= (size_t)shape[i];
    }
    if (numel > 0 && !data) return ddpm_fail(err, "cannot write %s: no data", path);

    memcpy(hdr, npy_magic, sizeof npy_magic);
    hdr[6] = 1;
    hdr[7] = 0;
    hl = 10;
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s%lld", i ? ", " : "", (long long)shape[i]);
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s), }", ndim == 1 ? "," : "");
    while ((hl + 1) % 64 != 0) hdr[hl++] = ' ';
    hdr[hl++] = '\n';
    DDPM_ASSERT(hl < sizeof hdr);
    hdr[8] = (char)((hl - 10) & 0xff);
    hdr[9] = (char)((hl - 10) >> 8);

    chunks[0] = hdr;
    lens[0] = hl;
    chunks[1] = data;
    lens[1] = numel * (size_t)elsize;
    return file_write_atomic(path, chunks, lens, 2, err);
}

int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, ddpm_err *err) {
    return npy_write(path, data, 4, "<f4", ndim, shape, err);
}

int npy_write_u8(const char *path, const uint8_t *data, int ndim, const int64_t *shape, ddpm_err *err) {
    return npy_write(path, data, 1, "|u1", ndim, shape, err);
}
