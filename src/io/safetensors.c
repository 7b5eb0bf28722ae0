/* safetensors.c -- safetensors reader (whole-file load, strict header
 * validation, conversion of F32/F16/BF16/F64 to float) and atomic writer.
 * See safetensors.h and docs/diffusers.md ("safetensors") for the format.
 */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "io/fileio.h"
#include "io/le.h"

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    int bits;
} dtype_info[ST_NUM_DTYPES] = {
    [ST_F32] = {"F32", 32},         [ST_F16] = {"F16", 16},
    [ST_BF16] = {"BF16", 16},       [ST_F64] = {"F64", 64},
    [ST_I64] = {"I64", 64},         [ST_I32] = {"I32", 32},
    [ST_U8] = {"U8", 8},            [ST_BOOL] = {"BOOL", 8},
    [ST_I8] = {"I8", 8},            [ST_I16] = {"I16", 16},
    [ST_U16] = {"U16", 16},         [ST_U32] = {"U32", 32},
    [ST_U64] = {"U64", 64},         [ST_C64] = {"C64", 64},
    [ST_F8_E5M2] = {"F8_E5M2", 8},  [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_F8_E8M0] = {"F8_E8M0", 8},  [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ST_F4] = {"F4", 4},            [ST_F6_E2M3] = {"F6_E2M3", 6},
    [ST_F6_E3M2] = {"F6_E3M2", 6},
};

const char *st_dtype_name(int dtype) {
    return (dtype >= 0 && dtype < ST_NUM_DTYPES) ? dtype_info[dtype].name : "?";
}

int st_dtype_from_name(const char *name) {
    for (int i = 0; i < ST_NUM_DTYPES; i++)
        if (strcmp(name, dtype_info[i].name) == 0) return i;
    return -1;
}

int st_dtype_bits(int dtype) { return (dtype >= 0 && dtype < ST_NUM_DTYPES) ? dtype_info[dtype].bits : 0; }

/* ---------------------------------------------------------------- helpers */

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact (every half is representable as a float). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            uint32_t e = 127 - 15 + 1;
            while (!(mant & 0x400u)) {
                mant <<= 1;
                e--;
            }
            bits = sign | e << 23 | (mant & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13; /* inf, or NaN keeping its payload */
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    return bits_to_float(bits);
}

/* double -> float without undefined behaviour for out-of-range values. */
static float double_to_float(double d) {
    /* 2^128 - 2^103: the smallest magnitude that rounds to infinity */
    const double lim = 3.4028235677973366e38;
    if (d >= lim) return INFINITY;
    if (d <= -lim) return -INFINITY;
    return (float)d;
}

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i <= k) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        i += k + 1;
    }
    return 1;
}

/* "[a, b, c]" into buf. */
static const char *fmt_shape(char *buf, size_t sz, const int64_t *shape, int ndim) {
    size_t used = 0;
    used += (size_t)snprintf(buf, sz, "[");
    for (int i = 0; i < ndim && used < sz; i++)
        used += (size_t)snprintf(buf + used, sz - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < sz) snprintf(buf + used, sz - used, "]");
    return buf;
}

/* Product of dims and the byte count for dtype, overflow-checked. Returns -1 on
 * overflow; *frac set if the bit count is not a whole number of bytes. */
static int tensor_size(int dtype, const int64_t *shape, int ndim, size_t *numel, size_t *nbytes, int *frac) {
    size_t n = 1, bits = (size_t)st_dtype_bits(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        size_t d = (size_t)shape[i];
        if (d != 0 && n > SIZE_MAX / d) return -1;
        n *= d;
    }
    if (n != 0 && n > SIZE_MAX / bits) return -1;
    *numel = n;
    *nbytes = n * bits / 8;
    *frac = (n * bits) % 8 != 0;
    return 0;
}

/* A JSON number that is a non-negative integer exactly representable (< 2^53). */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > 9007199254740992.0) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* ---------------------------------------------------------------- reader */

static int open_file_or_mem(st_file *f, const char *path, const void *mem, size_t len, err_t *err);

int st_open(st_file *f, const char *path, err_t *err) { return open_file_or_mem(f, path, NULL, 0, err); }

int st_open_mem(st_file *f, const char *name, const void *bytes, size_t len, err_t *err) {
    return open_file_or_mem(f, name, bytes, len, err);
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys ? f->meta_keys[i] : NULL);
        free(f->meta_vals ? f->meta_vals[i] : NULL);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->buf);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* Fills t (whose name is set) from its JSON entry. */
static int parse_tensor(const char *path, const cJSON *j, st_tensor *t, size_t data_len, err_t *err) {
    const cJSON *jd = NULL, *js = NULL, *jo = NULL, *c;
    uint64_t off[2];
    size_t nbytes;
    int frac, nd;
    char sh[256];

    if (!cJSON_IsObject(j)) return err_fail(err, "%s: tensor '%s': entry is not a JSON object", path, t->name);
    cJSON_ArrayForEach(c, j) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &jd
                             : strcmp(c->string, "shape") == 0        ? &js
                             : strcmp(c->string, "data_offsets") == 0 ? &jo
                                                                      : NULL;
        if (!slot) continue; /* unknown keys are ignored, as by the reference reader */
        if (*slot) return err_fail(err, "%s: tensor '%s': duplicate key \"%s\"", path, t->name, c->string);
        *slot = c;
    }
    if (!jd) return err_fail(err, "%s: tensor '%s': missing \"dtype\"", path, t->name);
    if (!js) return err_fail(err, "%s: tensor '%s': missing \"shape\"", path, t->name);
    if (!jo) return err_fail(err, "%s: tensor '%s': missing \"data_offsets\"", path, t->name);
    if (!cJSON_IsString(jd)) return err_fail(err, "%s: tensor '%s': \"dtype\" is not a string", path, t->name);
    t->dtype = st_dtype_from_name(jd->valuestring);
    if (t->dtype < 0) return err_fail(err, "%s: tensor '%s': unknown dtype '%s'", path, t->name, jd->valuestring);
    if (!cJSON_IsArray(js)) return err_fail(err, "%s: tensor '%s': \"shape\" is not an array", path, t->name);
    nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS)
        return err_fail(err, "%s: tensor '%s': shape has %d dimensions (at most %d supported)", path, t->name, nd,
                         ST_MAX_DIMS);
    t->ndim = 0;
    cJSON_ArrayForEach(c, js) {
        uint64_t d;
        if (json_uint(c, &d) != 0)
            return err_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, t->name, t->ndim);
        t->shape[t->ndim++] = (int64_t)d;
    }
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || json_uint(jo->child, &off[0]) != 0 ||
        json_uint(jo->child->next, &off[1]) != 0)
        return err_fail(err, "%s: tensor '%s': \"data_offsets\" is not [begin, end] with non-negative integers",
                         path, t->name);
    if (off[0] > off[1])
        return err_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, t->name,
                         (unsigned long long)off[0], (unsigned long long)off[1]);
    if (off[1] > data_len)
        return err_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] outside the %zu-byte data buffer", path,
                         t->name, (unsigned long long)off[0], (unsigned long long)off[1], data_len);
    t->begin = (size_t)off[0];
    t->end = (size_t)off[1];
    fmt_shape(sh, sizeof sh, t->shape, t->ndim);
    if (tensor_size(t->dtype, t->shape, t->ndim, &t->numel, &nbytes, &frac) != 0)
        return err_fail(err, "%s: tensor '%s': shape %s is too large", path, t->name, sh);
    if (frac)
        return err_fail(err, "%s: tensor '%s': shape %s of %s is not a whole number of bytes", path, t->name, sh,
                         st_dtype_name(t->dtype));
    if (nbytes != t->end - t->begin)
        return err_fail(err,
                         "%s: tensor '%s': shape %s of %s needs %zu bytes but data_offsets [%zu, %zu] span %zu "
                         "bytes (size mismatch)",
                         path, t->name, sh, st_dtype_name(t->dtype), nbytes, t->begin, t->end, t->end - t->begin);
    return 0;
}

static int parse_metadata(const char *path, const cJSON *j, st_file *f, err_t *err) {
    const cJSON *c;
    int n = cJSON_GetArraySize(j), i = 0;

    if (!cJSON_IsObject(j)) return err_fail(err, "%s: \"__metadata__\" is not a JSON object", path);
    f->meta_keys = mem_calloc((size_t)n, sizeof(char *), err);
    f->meta_vals = mem_calloc((size_t)n, sizeof(char *), err);
    if (!f->meta_keys || !f->meta_vals) return err_wrap(err, "%s", path);
    cJSON_ArrayForEach(c, j) {
        if (!cJSON_IsString(c))
            return err_fail(err, "%s: \"__metadata__\" value of key '%s' is not a string", path, c->string);
        for (int k = 0; k < i; k++)
            if (strcmp(f->meta_keys[k], c->string) == 0)
                return err_fail(err, "%s: duplicate \"__metadata__\" key '%s'", path, c->string);
        f->meta_keys[i] = strdup(c->string);
        f->meta_vals[i] = strdup(c->valuestring);
        f->n_meta = ++i;
        if (!f->meta_keys[i - 1] || !f->meta_vals[i - 1]) return err_fail(err, "%s: out of memory", path);
    }
    return 0;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* ---------------------------------------------------------------- checksums */

static int verify_on = 1;

void st_set_verify(int on) { verify_on = on != 0; }

int st_verify_enabled(void) { return verify_on; }

static uint64_t tensor_sum(const unsigned char *p, size_t n) { return XXH64(n ? (const void *)p : "", n, 0); }

/* 16 hex digits, exactly. */
static int parse_hex64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        int c = (unsigned char)s[i], d = c >= '0' && c <= '9' ? c - '0'
                                         : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    if (s[16]) return -1;
    *out = v;
    return 0;
}

typedef struct kv {
    const char *k, *v;
} kv;

static int cmp_kv(const void *a, const void *b) { return strcmp(((const kv *)a)->k, ((const kv *)b)->k); }

/* The checksum of the metadata: XXH64 of its pairs but ST_SUM_KEY, in bytewise
 * key order, each as key NUL value NUL. -1 when out of memory. */
static int meta_sum(const char *const *keys, const char *const *vals, int n, uint64_t *out) {
    kv *p = malloc(sizeof *p * (size_t)(n ? n : 1));
    XXH64_state_t *h = XXH64_createState();
    int m = 0, rc = -1;
    if (!p || !h || XXH64_reset(h, 0) != XXH_OK) goto done;
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i], ST_SUM_KEY) != 0) p[m++] = (kv){keys[i], vals[i]};
    qsort(p, (size_t)m, sizeof *p, cmp_kv);
    for (int i = 0; i < m; i++)
        if (XXH64_update(h, p[i].k, strlen(p[i].k) + 1) != XXH_OK || XXH64_update(h, p[i].v, strlen(p[i].v) + 1) != XXH_OK)
            goto done;
    *out = XXH64_digest(h);
    rc = 0;
done:
    free(p);
    XXH64_freeState(h);
    return rc;
}

/* Reads the ST_SUM_KEY metadata, if present, into the tensors (sorted by name,
 * names unique): one 16-hex-digit checksum for each tensor, nothing else but
 * the metadata's own (key "__metadata__", checked here). */
static int parse_sums(const char *path, st_file *f, err_t *err) {
    const char *s = st_meta(f, ST_SUM_KEY);
    cJSON *root;
    const cJSON *c;
    int rc = -1, have_meta = 0;

    if (!s) return 0;
    root = cJSON_ParseWithOpts(s, NULL, 1);
    if (!cJSON_IsObject(root)) {
        err_fail(err, "%s: metadata '%s' is not a JSON object: the file is corrupt", path, ST_SUM_KEY);
        goto done;
    }
    cJSON_ArrayForEach(c, root) {
        st_tensor key = {.name = c->string};
        st_tensor *t = f->n ? bsearch(&key, f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_by_name) : NULL;
        uint64_t v, m;
        if (strcmp(c->string, "__metadata__") == 0) {
            if (have_meta++ || !cJSON_IsString(c) || parse_hex64(c->valuestring, &v) != 0) {
                err_fail(err, "%s: metadata '%s': the metadata's checksum is repeated or not 16 hex digits: the "
                               "file is corrupt", path, ST_SUM_KEY);
                goto done;
            }
            if (meta_sum((const char *const *)f->meta_keys, (const char *const *)f->meta_vals, f->n_meta, &m) != 0) {
                err_oom(err, "%s: out of memory", path);
                goto done;
            }
            if (m != v) {
                err_fail(err, "%s: the metadata fails its checksum: the file is corrupt", path);
                goto done;
            }
            continue;
        }
        if (!t) {
            err_fail(err, "%s: metadata '%s' names tensor '%s', which the file does not hold: the file is corrupt",
                      path, ST_SUM_KEY, c->string);
            goto done;
        }
        if (t->has_sum) {
            err_fail(err, "%s: metadata '%s' holds two checksums of tensor '%s': the file is corrupt", path,
                      ST_SUM_KEY, t->name);
            goto done;
        }
        if (!cJSON_IsString(c) || parse_hex64(c->valuestring, &v) != 0) {
            err_fail(err, "%s: metadata '%s': the checksum of tensor '%s' is not 16 hex digits: the file is corrupt",
                      path, ST_SUM_KEY, t->name);
            goto done;
        }
        t->has_sum = 1;
        t->sum = v;
    }
    for (int i = 0; i < f->n; i++) {
        if (!f->tensors[i].has_sum) {
            err_fail(err, "%s: tensor '%s' has no checksum in metadata '%s': the file is corrupt", path,
                      f->tensors[i].name, ST_SUM_KEY);
            goto done;
        }
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

static int check_sum(const st_file *f, const st_tensor *t, err_t *err) {
    if (t->has_sum && tensor_sum(f->data + t->begin, t->end - t->begin) != t->sum)
        return err_fail(err, "%s: tensor '%s' fails its checksum: the file is corrupt", f->path, t->name);
    return 0;
}

int st_verify(const st_file *f, err_t *err) {
    for (int i = 0; i < f->n; i++)
        if (check_sum(f, &f->tensors[i], err) != 0) return -1;
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Opens the file at path, or (mem != NULL) a copy of the len bytes at mem
 * with path as its name in messages. */
static int open_file_or_mem(st_file *f, const char *path, const void *mem, size_t len, err_t *err) {
    int rc = -1, n_entries = 0, have_meta = 0;
    cJSON *root = NULL;
    const cJSON *c;
    char *hdr = NULL;
    uint64_t hlen;
    size_t pos;

    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) {
        err_fail(err, "%s: out of memory", path);
        goto done;
    }
    if (mem) {
        if (!(f->buf = malloc(len ? len : 1))) {
            err_fail(err, "%s: out of memory", path);
            goto done;
        }
        memcpy(f->buf, mem, len);
        f->buf_len = len;
    } else if (file_read_all(path, &f->buf, &f->buf_len, err) != 0) {
        goto done;
    }
    if (f->buf_len == 0) {
        err_fail(err, "%s: file is empty (0 bytes), not a safetensors file", path);
        goto done;
    }
    if (f->buf_len < 8) {
        err_fail(err, "%s: file is too short (%zu bytes) to hold the 8-byte safetensors header length", path,
                  f->buf_len);
        goto done;
    }
    hlen = le_get64(f->buf);
    if (hlen > ST_MAX_HEADER) {
        err_fail(err, "%s: header length %llu exceeds the limit of %llu bytes (not a safetensors file?)", path,
                  (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto done;
    }
    if (hlen > f->buf_len - 8) {
        err_fail(err, "%s: header length %llu runs past the end of the file (%zu bytes; truncated?)", path,
                  (unsigned long long)hlen, f->buf_len);
        goto done;
    }
    if (hlen == 0 || f->buf[8] != '{') {
        err_fail(err, "%s: header does not start with '{' (not a safetensors file?)", path);
        goto done;
    }
    if (memchr(f->buf + 8, 0, (size_t)hlen)) {
        err_fail(err, "%s: header contains a NUL byte", path);
        goto done;
    }
    if (!utf8_valid(f->buf + 8, (size_t)hlen)) {
        err_fail(err, "%s: header is not valid UTF-8", path);
        goto done;
    }
    f->data = f->buf + 8 + hlen;
    f->data_len = f->buf_len - 8 - (size_t)hlen;

    hdr = mem_alloc((size_t)hlen + 1, err);
    if (!hdr) {
        err_wrap(err, "%s", path);
        goto done;
    }
    memcpy(hdr, f->buf + 8, (size_t)hlen);
    hdr[hlen] = '\0';
    {
        const char *end = NULL;
        root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen + 1, &end, 1);
        if (!root || end != hdr + hlen) {
            err_fail(err, "%s: header is not valid JSON (error near byte %zu of %llu)", path,
                      end ? (size_t)(end - hdr) : (size_t)0, (unsigned long long)hlen);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        err_fail(err, "%s: header is not a JSON object", path);
        goto done;
    }
    cJSON_ArrayForEach(c, root) {
        if (strcmp(c->string, "__metadata__") != 0) n_entries++;
    }
    f->tensors = mem_calloc((size_t)n_entries, sizeof *f->tensors, err);
    if (!f->tensors) {
        err_wrap(err, "%s", path);
        goto done;
    }
    cJSON_ArrayForEach(c, root) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (have_meta++) {
                err_fail(err, "%s: duplicate \"__metadata__\" entry", path);
                goto done;
            }
            if (parse_metadata(path, c, f, err) != 0) goto done;
            continue;
        }
        st_tensor *t = &f->tensors[f->n];
        t->name = strdup(c->string);
        if (!t->name) {
            err_fail(err, "%s: out of memory", path);
            goto done;
        }
        f->n++;
        if (parse_tensor(path, c, t, f->data_len, err) != 0) goto done;
    }

    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_by_name);
    for (int i = 1; i < f->n; i++) {
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            err_fail(err, "%s: duplicate tensor name '%s'", path, f->tensors[i].name);
            goto done;
        }
    }
    if (verify_on && parse_sums(path, f, err) != 0) goto done;
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_by_offset);
    pos = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->begin > pos) {
            err_fail(err, "%s: gap of %zu unused bytes in the data buffer at offset %zu, before tensor '%s'", path,
                      t->begin - pos, pos, t->name);
            goto done;
        }
        if (t->begin < pos) {
            const st_tensor *p = &f->tensors[i - 1];
            err_fail(err, "%s: tensor '%s' data_offsets [%zu, %zu] overlap tensor '%s' data_offsets [%zu, %zu]", path,
                      t->name, t->begin, t->end, p->name, p->begin, p->end);
            goto done;
        }
        pos = t->end;
    }
    if (pos != f->data_len) {
        err_fail(err, "%s: %zu unused bytes at the end of the %zu-byte data buffer (tensors end at offset %zu)", path,
                  f->data_len - pos, f->data_len, pos);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    free(hdr);
    if (rc != 0) st_close(f);
    return rc;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int st_read_f32(const st_file *f, const st_tensor *t, float *out, size_t numel, err_t *err) {
    const unsigned char *p = f->data + t->begin;

    if (numel != t->numel)
        return err_fail(err, "%s: tensor '%s' has %zu elements, caller expected %zu", f->path, t->name, t->numel,
                         numel);
    if (check_sum(f, t, err) != 0) return -1;
    switch (t->dtype) {
    case ST_F32:
        for (size_t i = 0; i < numel; i++) out[i] = le_getf32(p + 4 * i);
        return 0;
    case ST_F16:
        for (size_t i = 0; i < numel; i++) out[i] = half_to_float(le_get16(p + 2 * i));
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < numel; i++) out[i] = bits_to_float((uint32_t)le_get16(p + 2 * i) << 16);
        return 0;
    case ST_F64:
        for (size_t i = 0; i < numel; i++) {
            out[i] = double_to_float(le_getf64(p + 8 * i));
        }
        return 0;
    default:
        return err_fail(err, "%s: tensor '%s' has dtype %s, which cannot be converted to float (need F32, F16, BF16 or F64)",
                         f->path, t->name, st_dtype_name(t->dtype));
    }
}

int st_read_raw(const st_file *f, const st_tensor *t, void *out, size_t nbytes, err_t *err) {
    if (st_dtype_bits(t->dtype) % 8 != 0)
        return err_fail(err, "%s: tensor '%s' has sub-byte dtype %s, which is not supported", f->path, t->name,
                         st_dtype_name(t->dtype));
    if (nbytes != t->end - t->begin)
        return err_fail(err, "%s: tensor '%s' has %zu bytes, caller expected %zu", f->path, t->name,
                         t->end - t->begin, nbytes);
    if (check_sum(f, t, err) != 0) return -1;
    if (nbytes) memcpy(out, f->data + t->begin, nbytes);
    return 0;
}

float *st_load_f32(const st_file *f, const char *name, int ndim_expected, const int64_t *shape_expected,
                   size_t *numel_out, err_t *err) {
    const st_tensor *t = st_find(f, name);
    float *out = NULL;
    char got[256], want[256];

    if (numel_out) *numel_out = 0;
    if (!t) {
        err_fail(err, "%s: missing tensor '%s'", f->path, name);
        goto done;
    }
    fmt_shape(got, sizeof got, t->shape, t->ndim);
    if (ndim_expected >= 0 && t->ndim != ndim_expected) {
        if (shape_expected)
            err_fail(err, "%s: tensor '%s' has shape %s, expected %s", f->path, name, got,
                      fmt_shape(want, sizeof want, shape_expected, ndim_expected));
        else
            err_fail(err, "%s: tensor '%s' has shape %s, expected %d dimension(s)", f->path, name, got,
                      ndim_expected);
        goto done;
    }
    if (shape_expected) {
        ERR_ASSERT(ndim_expected >= 0);
        if (memcmp(t->shape, shape_expected, (size_t)ndim_expected * sizeof *shape_expected) != 0) {
            err_fail(err, "%s: tensor '%s' has shape %s, expected %s", f->path, name, got,
                      fmt_shape(want, sizeof want, shape_expected, ndim_expected));
            goto done;
        }
    }
    out = mem_alloc_floats(t->numel, err);
    if (!out) {
        err_wrap(err, "%s: tensor '%s'", f->path, name);
        goto done;
    }
    if (st_read_f32(f, t, out, t->numel, err) != 0) {
        free(out);
        out = NULL;
        goto done;
    }
    if (numel_out) *numel_out = t->numel;
done:
    return out;
}

/* ---------------------------------------------------------------- writer */

/* A growable string; oom latches so callers check once at the end. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    ERR_ASSERT(n >= 0 && (size_t)n < sizeof tmp);
    sb_put(b, tmp, (size_t)n);
}

/* A JSON string literal, escaped like serde_json (UTF-8 passed through). */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') sb_puts(b, "\\\"");
        else if (c == '\\') sb_puts(b, "\\\\");
        else if (c == '\n') sb_puts(b, "\\n");
        else if (c == '\r') sb_puts(b, "\\r");
        else if (c == '\t') sb_puts(b, "\\t");
        else if (c == '\b') sb_puts(b, "\\b");
        else if (c == '\f') sb_puts(b, "\\f");
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

typedef struct wentry {
    const st_entry *e;
    size_t nbytes;
    int esize; /* bytes per element, the primary sort key */
} wentry;

static int cmp_went_name(const void *a, const void *b) {
    return strcmp(((const wentry *)a)->e->name, ((const wentry *)b)->e->name);
}

static int cmp_went_layout(const void *a, const void *b) {
    const wentry *x = a, *y = b;
    if (x->esize != y->esize) return x->esize > y->esize ? -1 : 1;
    return strcmp(x->e->name, y->e->name);
}

static int utf8_str_valid(const char *s) { return utf8_valid((const unsigned char *)s, strlen(s)); }

int st_write(const char *path, const st_entry *e, int n, const char *const *meta_kv, err_t *err) {
    int rc = -1, nmeta = 0, user_format = 0;
    wentry *w = NULL;
    const void **chunks = NULL;
    size_t *lens = NULL, off = 0;
    sbuf hb = {0}, sums = {0};
    unsigned char lenbuf[8];

    if (n < 0 || (n > 0 && !e)) {
        err_fail(err, "cannot write %s: invalid tensor list", path);
        goto done;
    }
    /* metadata pairs */
    if (meta_kv) {
        for (; meta_kv[2 * nmeta]; nmeta++) {
            const char *k = meta_kv[2 * nmeta], *v = meta_kv[2 * nmeta + 1];
            if (!v) {
                err_fail(err, "cannot write %s: metadata key '%s' has no value", path, k);
                goto done;
            }
            if (!utf8_str_valid(k) || !utf8_str_valid(v)) {
                err_fail(err, "cannot write %s: metadata key '%s' or its value is not valid UTF-8", path, k);
                goto done;
            }
            for (int j = 0; j < nmeta; j++) {
                if (strcmp(meta_kv[2 * j], k) == 0) {
                    err_fail(err, "cannot write %s: duplicate metadata key '%s'", path, k);
                    goto done;
                }
            }
            if (strcmp(k, ST_SUM_KEY) == 0) {
                err_fail(err, "cannot write %s: metadata key '%s' is reserved for the checksums", path, k);
                goto done;
            }
            if (strcmp(k, "format") == 0) user_format = 1;
        }
    }
    /* tensors */
    w = mem_calloc((size_t)n, sizeof *w, err);
    chunks = mem_calloc((size_t)n + 2, sizeof *chunks, err);
    lens = mem_calloc((size_t)n + 2, sizeof *lens, err);
    if (!w || !chunks || !lens) {
        err_wrap(err, "cannot write %s", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const st_entry *x = &e[i];
        size_t numel;
        int frac;
        if (!x->name || !*x->name || strcmp(x->name, "__metadata__") == 0 || !utf8_str_valid(x->name)) {
            err_fail(err, "cannot write %s: tensor %d has an invalid name '%s'", path, i, x->name ? x->name : "(null)");
            goto done;
        }
        if (x->dtype < 0 || x->dtype >= ST_NUM_DTYPES || st_dtype_bits(x->dtype) % 8 != 0) {
            err_fail(err, "cannot write %s: tensor '%s' has unsupported dtype %s", path, x->name,
                      st_dtype_name(x->dtype));
            goto done;
        }
        if (x->ndim < 0 || x->ndim > ST_MAX_DIMS) {
            err_fail(err, "cannot write %s: tensor '%s' has %d dimensions (0..%d allowed)", path, x->name, x->ndim,
                      ST_MAX_DIMS);
            goto done;
        }
        w[i].e = x;
        w[i].esize = st_dtype_bits(x->dtype) / 8;
        if (tensor_size(x->dtype, x->shape, x->ndim, &numel, &w[i].nbytes, &frac) != 0) {
            char sh[256];
            err_fail(err, "cannot write %s: tensor '%s' has invalid shape %s", path, x->name,
                      fmt_shape(sh, sizeof sh, x->shape, x->ndim));
            goto done;
        }
        if (w[i].nbytes > 0 && !x->data) {
            err_fail(err, "cannot write %s: tensor '%s' has no data", path, x->name);
            goto done;
        }
    }
    qsort(w, (size_t)n, sizeof *w, cmp_went_name);
    for (int i = 1; i < n; i++) {
        if (strcmp(w[i - 1].e->name, w[i].e->name) == 0) {
            err_fail(err, "cannot write %s: duplicate tensor name '%s'", path, w[i].e->name);
            goto done;
        }
    }
    qsort(w, (size_t)n, sizeof *w, cmp_went_layout);

    /* checksums: {"__metadata__":"<XXH64 as 16 hex digits>","name":"...",...}, tensors in layout order */
    {
        const char **keys = mem_calloc((size_t)nmeta + 1, 2 * sizeof *keys, err), **vals;
        uint64_t m = 0;
        int k = 0, bad = !keys;
        if (keys) {
            vals = keys + nmeta + 1;
            if (!user_format) keys[k] = "format", vals[k++] = "pt";
            for (int j = 0; j < nmeta; j++) keys[k] = meta_kv[2 * j], vals[k++] = meta_kv[2 * j + 1];
            bad = meta_sum(keys, vals, k, &m) != 0;
        }
        free(keys);
        if (bad) {
            err_oom(err, "cannot write %s: out of memory", path);
            goto done;
        }
        sb_printf(&sums, "{\"__metadata__\":\"%016llx\"", (unsigned long long)m);
    }
    for (int i = 0; i < n; i++) {
        sb_puts(&sums, ",");
        sb_json_str(&sums, w[i].e->name);
        sb_printf(&sums, ":\"%016llx\"", (unsigned long long)tensor_sum(w[i].e->data, w[i].nbytes));
    }
    sb_puts(&sums, "}");

    /* header */
    sb_puts(&hb, "{\"__metadata__\":{");
    if (!user_format) sb_puts(&hb, "\"format\":\"pt\"");
    for (int j = 0; j < nmeta; j++) {
        if (j > 0 || !user_format) sb_puts(&hb, ",");
        sb_json_str(&hb, meta_kv[2 * j]);
        sb_puts(&hb, ":");
        sb_json_str(&hb, meta_kv[2 * j + 1]);
    }
    sb_puts(&hb, ",\"" ST_SUM_KEY "\":");
    if (!sums.oom) sb_json_str(&hb, sums.p);
    sb_puts(&hb, "}");
    for (int i = 0; i < n; i++) {
        const st_entry *x = w[i].e;
        sb_puts(&hb, ",");
        sb_json_str(&hb, x->name);
        sb_printf(&hb, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(x->dtype));
        for (int d = 0; d < x->ndim; d++) sb_printf(&hb, "%s%lld", d ? "," : "", (long long)x->shape[d]);
        sb_printf(&hb, "],\"data_offsets\":[%zu,%zu]}", off, off + w[i].nbytes);
        chunks[2 + i] = x->data;
        lens[2 + i] = w[i].nbytes;
        off += w[i].nbytes;
    }
    sb_puts(&hb, "}");
    while (hb.len % 8 != 0) sb_puts(&hb, " ");
    if (hb.oom || sums.oom) {
        err_fail(err, "cannot write %s: out of memory building the header", path);
        goto done;
    }
    if (hb.len > ST_MAX_HEADER) {
        err_fail(err, "cannot write %s: header would be %zu bytes (limit %llu)", path, hb.len,
                  (unsigned long long)ST_MAX_HEADER);
        goto done;
    }
    le_put64(lenbuf, hb.len);
    chunks[0] = lenbuf;
    lens[0] = 8;
    chunks[1] = hb.p;
    lens[1] = hb.len;
    if (file_write_atomic(path, chunks, lens, n + 2, err) != 0) goto done;
    rc = 0;
done:
    free(w);
    free(chunks);
    free(lens);
    free(hb.p);
    free(sums.p);
    return rc;
}
