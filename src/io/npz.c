/* npz.c -- NumPy .npz archives (zip of .npy entries): a reader that checks the
 * central directory, then streams one entry at a time (pread, raw inflate,
 * CRC-32) through npy.h's header parser and converter; and an atomic writer of
 * stored entries with ZIP64 fields everywhere. See npz.h.
 *
 * Zip layout (APPNOTE 6.3), little-endian throughout:
 *   [local header 30 + name + extra][entry bytes]...   one per entry
 *   [central header 46 + name + extra + comment]...    the central directory
 *   [ZIP64 end record 56][ZIP64 locator 20]            when the archive is ZIP64
 *   [end record 22 + comment]
 * A ZIP64 extra field (id 1) holds, in this order, the 8-byte uncompressed
 * size, compressed size and local header offset (and a 4-byte disk number) for
 * each of those whose classic field reads 0xFFFFFFFF (0xFFFF for the disk).
 */
#include "io/npz.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/fileio.h"
#include "io/le.h"

_Static_assert(sizeof(size_t) >= 8, "npz needs a 64-bit size_t");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npz writer assumes a little-endian host");

enum {
    SIG_LOCAL = 0x04034b50,
    SIG_CENTRAL = 0x02014b50,
    SIG_EOCD = 0x06054b50,
    SIG_EOCD64 = 0x06064b50,
    SIG_LOC64 = 0x07064b50,
    LOCAL_LEN = 30,
    CENTRAL_LEN = 46,
    EOCD_LEN = 22,
    EOCD64_LEN = 56,
    LOC64_LEN = 20,
    MAX_COMMENT = 0xffff,
    FLAG_ENCRYPTED = 1 << 0,
    FLAG_DESCRIPTOR = 1 << 3,
    FLAG_STRONG = 1 << 6,
    FLAG_UTF8 = 1 << 11,
    METHOD_STORED = 0,
    METHOD_DEFLATED = 8,
    VERSION_ZIP64 = 45,           /* "version needed to extract" for ZIP64 */
    MADE_BY = 3 << 8 | 45,        /* Unix, 4.5 */
    DOS_DATE_1980 = 1 << 5 | 1,   /* 1980-01-01; time 00:00 */
    MAX_WRITE_ENTRIES = 1 << 20,
    MAX_NAME = 250,
};
#define U32_MAX_FIELD 0xffffffffu
#define NPZ_CHUNK ((size_t)1 << 20)          /* bytes read or inflated per step */
#define NPZ_MAX_NPY_HEADER ((size_t)1 << 20) /* numpy itself refuses headers over 10000 bytes */

/* ---------------------------------------------------------------- bytes */

static unsigned long long ull(uint64_t v) { return (unsigned long long)v; }

/* Reads exactly n bytes at off (bounded by the caller against f->size). */
static int read_at(const npz_file *f, uint64_t off, void *buf, size_t n, err_t *err) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = pread(f->fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return err_fail(err, "cannot read %s: %s", f->path, strerror(errno));
        }
        if (r == 0)
            return err_fail(err, "cannot read %s: unexpected end of file at offset %llu (file changed?)", f->path,
                             ull(off));
        p += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return 0;
}

/* Applies the ZIP64 extra field of ex[0..len) (see the top of this file) to
 * those of *usize, *csize, *offset (32-bit sentinel) and *disk (16-bit
 * sentinel) that are given and hold their sentinel. Returns NULL or why not. */
static const char *apply_zip64(const unsigned char *ex, size_t len, uint64_t *usize, uint64_t *csize,
                               uint64_t *offset, uint64_t *disk) {
    uint64_t *const field[4] = {usize, csize, offset, disk};
    const uint64_t sentinel[4] = {U32_MAX_FIELD, U32_MAX_FIELD, U32_MAX_FIELD, 0xffff};
    const size_t width[4] = {8, 8, 8, 4};
    size_t pos = 0;
    int found = 0;

    while (len - pos >= 4) {
        unsigned id = le_get16(ex + pos), sz = le_get16(ex + pos + 2);
        if (sz > len - pos - 4) return "an extra field runs past the end of the extra data";
        if (id == 1 && !found) {
            const unsigned char *p = ex + pos + 4;
            size_t left = sz;
            found = 1;
            for (int i = 0; i < 4; i++) {
                if (!field[i] || *field[i] != sentinel[i]) continue;
                if (left < width[i]) return "ZIP64 extra field is too short for the sizes it must hold";
                *field[i] = width[i] == 8 ? le_get64(p) : le_get32(p);
                p += width[i];
                left -= width[i];
            }
        }
        pos += 4 + (size_t)sz;
    }
    for (int i = 0; i < 3; i++)
        if (field[i] && *field[i] == sentinel[i] && !found) return "ZIP64 sizes are missing (no ZIP64 extra field)";
    return NULL;
}

/* ---------------------------------------------------------------- open */

void npz_close(npz_file *f) {
    if (!f) return;
    if (f->path && f->fd >= 0) close(f->fd);
    for (int i = 0; f->members && i < f->n; i++) {
        free(f->members[i].name);
        free(f->members[i].entry);
    }
    free(f->members);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

static int cmp_member_name(const void *a, const void *b) {
    return strcmp((*(const npz_member *const *)a)->name, (*(const npz_member *const *)b)->name);
}

/* Finds the end record in the last bytes of the file and reads the directory
 * position from it (or from the ZIP64 end record it points to). */
static int read_end(const npz_file *f, uint64_t *n_entries, uint64_t *cd_size, uint64_t *cd_off, err_t *err) {
    int rc = -1;
    size_t tail_len = f->size < EOCD_LEN + MAX_COMMENT ? (size_t)f->size : EOCD_LEN + MAX_COMMENT;
    uint64_t tail_off = f->size - tail_len, eocd_pos, end_pos, disk, cd_disk, n_disk;
    unsigned char *tail = mem_alloc(tail_len, err), loc[LOC64_LEN], rec[EOCD64_LEN];
    const unsigned char *e = NULL;

    if (!tail) return err_wrap(err, "%s", f->path);
    if (read_at(f, tail_off, tail, tail_len, err) != 0) goto done;
    /* the last record whose comment fits in the file */
    for (size_t i = tail_len - EOCD_LEN + 1; i-- > 0;) {
        if (le_get32(tail + i) == SIG_EOCD && le_get16(tail + i + 20) <= tail_len - i - EOCD_LEN) {
            e = tail + i;
            break;
        }
    }
    if (!e) {
        err_fail(err, "%s: not a zip archive (no end-of-central-directory record; not an .npz file?)", f->path);
        goto done;
    }
    eocd_pos = tail_off + (uint64_t)(e - tail);
    end_pos = eocd_pos;
    disk = le_get16(e + 4);
    cd_disk = le_get16(e + 6);
    n_disk = le_get16(e + 8);
    *n_entries = le_get16(e + 10);
    *cd_size = le_get32(e + 12);
    *cd_off = le_get32(e + 16);
    if (eocd_pos >= LOC64_LEN) {
        if (read_at(f, eocd_pos - LOC64_LEN, loc, LOC64_LEN, err) != 0) goto done;
        if (le_get32(loc) == SIG_LOC64) {
            uint64_t rec_off = le_get64(loc + 8);
            if (le_get32(loc + 4) != 0 || le_get32(loc + 16) > 1) {
                err_fail(err, "%s: multi-disk (split or spanned) zip archives are not supported", f->path);
                goto done;
            }
            if (eocd_pos - LOC64_LEN < EOCD64_LEN || rec_off > eocd_pos - LOC64_LEN - EOCD64_LEN) {
                err_fail(err, "%s: ZIP64 end record offset %llu lies outside the file (truncated?)", f->path,
                          ull(rec_off));
                goto done;
            }
            if (read_at(f, rec_off, rec, EOCD64_LEN, err) != 0) goto done;
            if (le_get32(rec) != SIG_EOCD64) {
                err_fail(err, "%s: no ZIP64 end record at offset %llu (bad signature)", f->path, ull(rec_off));
                goto done;
            }
            end_pos = rec_off;
            disk = le_get32(rec + 16);
            cd_disk = le_get32(rec + 20);
            n_disk = le_get64(rec + 24);
            *n_entries = le_get64(rec + 32);
            *cd_size = le_get64(rec + 40);
            *cd_off = le_get64(rec + 48);
        }
    }
    if (disk != 0 || cd_disk != 0 || n_disk != *n_entries) {
        err_fail(err, "%s: multi-disk (split or spanned) zip archives are not supported", f->path);
        goto done;
    }
    if (*cd_off > end_pos || *cd_size > end_pos - *cd_off) {
        err_fail(err, "%s: central directory (offset %llu, %llu bytes) lies outside the file of %llu bytes (truncated?)",
                  f->path, ull(*cd_off), ull(*cd_size), ull(f->size));
        goto done;
    }
    if (*n_entries > *cd_size / CENTRAL_LEN || *n_entries > INT_MAX) {
        err_fail(err, "%s: %llu entries cannot fit in a central directory of %llu bytes", f->path, ull(*n_entries),
                  ull(*cd_size));
        goto done;
    }
    rc = 0;
done:
    free(tail);
    return rc;
}

/* Parses central header number k at cd[*pos..cd_size) into m and checks it. */
static int parse_central(const npz_file *f, int k, const unsigned char *cd, size_t cd_size, size_t *pos,
                         npz_member *m, err_t *err) {
    const unsigned char *c = cd + *pos, *name;
    size_t nlen, elen, clen;
    uint64_t disk;
    const char *why;

    if (cd_size - *pos < CENTRAL_LEN || le_get32(c) != SIG_CENTRAL)
        return err_fail(err, "%s: central directory entry %d is malformed (bad signature or truncated)", f->path, k);
    nlen = le_get16(c + 28);
    elen = le_get16(c + 30);
    clen = le_get16(c + 32);
    if (CENTRAL_LEN + nlen + elen + clen > cd_size - *pos)
        return err_fail(err, "%s: central directory entry %d runs past the end of the directory", f->path, k);
    name = c + CENTRAL_LEN;
    if (nlen == 0) return err_fail(err, "%s: central directory entry %d has an empty name", f->path, k);
    if (memchr(name, 0, nlen)) return err_fail(err, "%s: central directory entry %d has a NUL in its name", f->path, k);
    m->entry = strndup((const char *)name, nlen);
    m->name = strndup((const char *)name, nlen > 4 && memcmp(name + nlen - 4, ".npy", 4) == 0 ? nlen - 4 : nlen);
    if (!m->entry || !m->name) return err_fail(err, "%s: out of memory", f->path);
    m->flags = le_get16(c + 8);
    m->method = le_get16(c + 10);
    m->crc = le_get32(c + 16);
    m->csize = le_get32(c + 20);
    m->usize = le_get32(c + 24);
    disk = le_get16(c + 34);
    m->offset = le_get32(c + 42);
    why = apply_zip64(name + nlen, elen, &m->usize, &m->csize, &m->offset, &disk);
    if (why) return err_fail(err, "%s: entry '%s': %s", f->path, m->entry, why);
    if (m->flags & (FLAG_ENCRYPTED | FLAG_STRONG))
        return err_fail(err, "%s: entry '%s' is encrypted (not supported)", f->path, m->entry);
    if (m->method != METHOD_STORED && m->method != METHOD_DEFLATED)
        return err_fail(err, "%s: entry '%s' uses compression method %d (only 0 stored and 8 deflated are supported)",
                         f->path, m->entry, m->method);
    if (disk != 0) return err_fail(err, "%s: multi-disk (split or spanned) zip archives are not supported", f->path);
    if (m->offset > f->cd_offset || f->cd_offset - m->offset < LOCAL_LEN + nlen)
        return err_fail(err, "%s: entry '%s': local header offset %llu lies outside the data before the central "
                         "directory at %llu",
                         f->path, m->entry, ull(m->offset), ull(f->cd_offset));
    if (m->csize > f->cd_offset - m->offset - LOCAL_LEN - nlen)
        return err_fail(err, "%s: entry '%s': compressed size %llu at offset %llu runs past the central directory "
                         "at %llu (truncated?)",
                         f->path, m->entry, ull(m->csize), ull(m->offset), ull(f->cd_offset));
    if (m->usize > NPZ_MAX_ENTRY)
        return err_fail(err, "%s: entry '%s': uncompressed size %llu exceeds the limit of %llu bytes", f->path,
                         m->entry, ull(m->usize), ull(NPZ_MAX_ENTRY));
    if (m->method == METHOD_STORED && m->csize != m->usize)
        return err_fail(err, "%s: entry '%s': stored, but compressed size %llu != uncompressed size %llu", f->path,
                         m->entry, ull(m->csize), ull(m->usize));
    if (m->method == METHOD_DEFLATED && m->usize / NPZ_MAX_RATIO > m->csize)
        return err_fail(err, "%s: entry '%s': %llu compressed bytes cannot inflate to the %llu bytes claimed", f->path,
                         m->entry, ull(m->csize), ull(m->usize));
    *pos += CENTRAL_LEN + nlen + elen + clen;
    return 0;
}

int npz_open(npz_file *f, const char *path, err_t *err) {
    int rc = -1;
    unsigned char *cd = NULL;
    npz_member **sorted = NULL;
    uint64_t n_entries = 0, cd_size = 0, cd_off = 0;
    size_t pos = 0;
    struct stat st;

    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) {
        err_fail(err, "%s: out of memory", path);
        goto done;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        err_fail(err, "cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    if (fstat(f->fd, &st) != 0) {
        err_fail(err, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        err_fail(err, "cannot read %s: %s", path, S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
        goto done;
    }
    f->size = (uint64_t)st.st_size;
    if (f->size < EOCD_LEN) {
        err_fail(err, "%s: not a zip archive (%llu bytes, too short for an end-of-central-directory record)", path,
                  ull(f->size));
        goto done;
    }
    if (read_end(f, &n_entries, &cd_size, &cd_off, err) != 0) goto done;
    f->cd_offset = cd_off;
    cd = mem_alloc((size_t)cd_size, err); /* at most the file size */
    f->members = mem_calloc((size_t)n_entries, sizeof *f->members, err);
    sorted = mem_calloc((size_t)n_entries, sizeof *sorted, err);
    if (!cd || !f->members || !sorted) {
        err_wrap(err, "%s", path);
        goto done;
    }
    if (read_at(f, cd_off, cd, (size_t)cd_size, err) != 0) goto done;
    for (int k = 0; k < (int)n_entries; k++) {
        f->n = k + 1; /* so that npz_close frees a half-parsed member */
        if (parse_central(f, k, cd, (size_t)cd_size, &pos, &f->members[k], err) != 0) goto done;
        sorted[k] = &f->members[k];
    }
    qsort(sorted, (size_t)f->n, sizeof *sorted, cmp_member_name);
    for (int k = 1; k < f->n; k++) {
        if (strcmp(sorted[k - 1]->name, sorted[k]->name) == 0) {
            err_fail(err, "%s: duplicate entries '%s' and '%s'", path, sorted[k - 1]->entry, sorted[k]->entry);
            goto done;
        }
    }
    rc = 0;
done:
    free(sorted);
    free(cd);
    if (rc != 0) npz_close(f);
    return rc;
}

const npz_member *npz_find(const npz_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->members[i].name, name) == 0) return &f->members[i];
    return NULL;
}

/* ---------------------------------------------------------------- read */

/* Where the bytes of one entry go: CRC-32, then the .npy header (collected in
 * hdr and parsed once complete), then the data, converted into out (a partial
 * element waits in carry). A parse error is kept in perr so that a CRC
 * mismatch, if there is one, is what gets reported. */
typedef struct npz_sink {
    const char *what; /* "file: entry 'x.npy'" */
    npy_type as;
    size_t total, got; /* bytes stated, bytes seen */
    uint32_t crc;
    unsigned char *hdr;
    size_t hdr_len, hdr_need;
    int sized, parsed, failed;
    err_t perr;
    npy_info info;
    void *out;
    size_t idx; /* elements written to out */
    unsigned char carry[8];
    size_t carry_n;
} npz_sink;

/* Header size (magic through dict) from the first bytes, or len when they do
 * not say (bad magic or version: npy_parse_header will say why). */
static size_t npy_header_size(const unsigned char *b, size_t len) {
    if (len >= 10 && memcmp(b, "\x93NUMPY", 6) == 0) {
        if (b[6] == 1) return 10 + (size_t)le_get16(b + 8);
        if ((b[6] == 2 || b[6] == 3) && len >= 12) return 12 + (size_t)le_get32(b + 8);
    }
    return len;
}

/* Parses the collected header and allocates the output. */
static int sink_parse(npz_sink *s) {
    s->parsed = 1;
    if (npy_parse_header(s->what, s->hdr, s->hdr_len, s->total, &s->info, &s->perr) != 0) return -1;
    /* numel * 8 fits in size_t (npy_parse_header) */
    s->out = mem_alloc_floats(s->as == NPY_F64 ? 2 * s->info.numel : s->info.numel, &s->perr);
    if (!s->out) return err_wrap(&s->perr, "%s", s->what);
    return 0;
}

static void sink_data(npz_sink *s, const unsigned char *p, size_t n) {
    size_t es = npy_type_size(s->info.type), eo = npy_type_size(s->as);
    while (n > 0) {
        if (s->carry_n > 0 || n < es) {
            size_t t = es - s->carry_n < n ? es - s->carry_n : n;
            memcpy(s->carry + s->carry_n, p, t);
            s->carry_n += t;
            p += t;
            n -= t;
            if (s->carry_n == es) {
                ERR_ASSERT(s->idx < s->info.numel);
                npy_convert((char *)s->out + s->idx * eo, s->as, s->carry, s->info.type, 1);
                s->idx++;
                s->carry_n = 0;
            }
        } else {
            size_t k = n / es;
            ERR_ASSERT(k <= s->info.numel - s->idx);
            npy_convert((char *)s->out + s->idx * eo, s->as, p, s->info.type, k);
            s->idx += k;
            p += k * es;
            n -= k * es;
        }
    }
}

/* Takes the next n bytes of the entry; -1 only if there are more than stated. */
static int sink_put(npz_sink *s, const unsigned char *p, size_t n, err_t *err) {
    if (n > s->total - s->got)
        return err_fail(err, "%s: the data inflates to more than the %zu bytes stated in the central directory",
                         s->what, s->total);
    s->crc = (uint32_t)crc32_z(s->crc, p, n);
    s->got += n;
    while (!s->failed && !s->parsed && n > 0) {
        size_t t = s->hdr_need - s->hdr_len < n ? s->hdr_need - s->hdr_len : n;
        memcpy(s->hdr + s->hdr_len, p, t);
        s->hdr_len += t;
        p += t;
        n -= t;
        if (s->hdr_len < s->hdr_need) return 0;
        if (!s->sized) {
            size_t hs = npy_header_size(s->hdr, s->hdr_len);
            s->sized = 1;
            if (hs > NPZ_MAX_NPY_HEADER) {
                err_fail(&s->perr, "%s: .npy header of %zu bytes exceeds the limit of %zu", s->what, hs,
                          NPZ_MAX_NPY_HEADER);
                s->failed = 1;
                break;
            }
            s->hdr_need = hs < s->total ? hs : s->total;
            if (s->hdr_need > s->hdr_len) continue;
        }
        if (sink_parse(s) != 0) s->failed = 1;
    }
    if (!s->failed && s->parsed && n > 0) sink_data(s, p, n);
    return 0;
}

/* Checks the local header of m against the central one; *data_off gets where
 * the entry's bytes start. */
static int check_local(const npz_file *f, const npz_member *m, const char *what, uint64_t *data_off, err_t *err) {
    unsigned char h[LOCAL_LEN], *ne = NULL;
    size_t nlen, elen, mlen = strlen(m->entry);
    uint64_t lcsize, lusize, start;
    uint32_t lcrc;
    int rc = -1, lflags, lmethod;
    const char *why;

    if (read_at(f, m->offset, h, LOCAL_LEN, err) != 0) return -1;
    if (le_get32(h) != SIG_LOCAL)
        return err_fail(err, "%s: bad local header at offset %llu (signature %08x)", what, ull(m->offset),
                         (unsigned)le_get32(h));
    lflags = le_get16(h + 6);
    lmethod = le_get16(h + 8);
    lcrc = le_get32(h + 14);
    lcsize = le_get32(h + 18);
    lusize = le_get32(h + 22);
    nlen = le_get16(h + 26);
    elen = le_get16(h + 28);
    if (f->cd_offset - m->offset - LOCAL_LEN < nlen + elen) /* offset + 30 + name <= cd_offset: parse_central */
        return err_fail(err, "%s: local header at offset %llu runs into the central directory", what, ull(m->offset));
    start = m->offset + LOCAL_LEN + nlen + elen;
    ne = mem_alloc(nlen + elen, err);
    if (!ne) return err_wrap(err, "%s", what);
    if (read_at(f, m->offset + LOCAL_LEN, ne, nlen + elen, err) != 0) goto done;
    if (nlen != mlen || memcmp(ne, m->entry, nlen) != 0) {
        err_fail(err, "%s: local header names a different entry ('%.*s')", what, (int)(nlen < 200 ? nlen : 200),
                  (const char *)ne);
        goto done;
    }
    if (lmethod != m->method) {
        err_fail(err, "%s: local header says compression method %d, the central directory %d", what, lmethod,
                  m->method);
        goto done;
    }
    if (lflags & (FLAG_ENCRYPTED | FLAG_STRONG)) {
        err_fail(err, "%s: entry is encrypted (not supported)", what);
        goto done;
    }
    why = apply_zip64(ne + nlen, elen, &lusize, &lcsize, NULL, NULL);
    if (why) {
        err_fail(err, "%s: local header: %s", what, why);
        goto done;
    }
    /* with a data descriptor (bit 3) the local fields may be zero; the central ones count */
    if (!(lflags & FLAG_DESCRIPTOR) && (lcrc != m->crc || lcsize != m->csize || lusize != m->usize)) {
        err_fail(err,
                  "%s: local header (crc %08x, %llu -> %llu bytes) disagrees with the central directory "
                  "(crc %08x, %llu -> %llu bytes)",
                  what, (unsigned)lcrc, ull(lcsize), ull(lusize), (unsigned)m->crc, ull(m->csize), ull(m->usize));
        goto done;
    }
    if (m->csize > f->cd_offset - start) {
        err_fail(err, "%s: %llu bytes of data at offset %llu run into the central directory (truncated?)", what,
                  ull(m->csize), ull(start));
        goto done;
    }
    *data_off = start;
    rc = 0;
done:
    free(ne);
    return rc;
}

static int read_stored(const npz_file *f, const npz_member *m, uint64_t off, unsigned char *buf, npz_sink *s,
                       err_t *err) {
    for (uint64_t left = m->csize; left > 0;) {
        size_t k = left < NPZ_CHUNK ? (size_t)left : NPZ_CHUNK;
        if (read_at(f, off, buf, k, err) != 0 || sink_put(s, buf, k, err) != 0) return -1;
        off += k;
        left -= k;
    }
    return 0;
}

static int read_deflated(const npz_file *f, const npz_member *m, uint64_t off, unsigned char *in,
                         unsigned char *out, npz_sink *s, err_t *err) {
    z_stream zs;
    int zr = Z_OK, rc = -1;
    uint64_t left = m->csize;

    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) return err_fail(err, "%s: cannot start inflating (out of memory)", s->what);
    while (zr != Z_STREAM_END) {
        if (zs.avail_in == 0) {
            size_t k = left < NPZ_CHUNK ? (size_t)left : NPZ_CHUNK;
            if (k == 0) {
                err_fail(err, "%s: deflated data is truncated (the stream does not end within its %llu bytes)",
                          s->what, ull(m->csize));
                goto done;
            }
            if (read_at(f, off, in, k, err) != 0) goto done;
            off += k;
            left -= k;
            zs.next_in = in;
            zs.avail_in = (uInt)k;
        }
        zs.next_out = out;
        zs.avail_out = (uInt)NPZ_CHUNK;
        zr = inflate(&zs, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END) {
            err_fail(err, "%s: corrupt deflate data (%s)", s->what, zs.msg ? zs.msg : zError(zr));
            goto done;
        }
        if (sink_put(s, out, NPZ_CHUNK - zs.avail_out, err) != 0) goto done;
    }
    if (left != 0 || zs.avail_in != 0) {
        err_fail(err, "%s: %llu bytes after the end of the deflate stream", s->what, ull(left + zs.avail_in));
        goto done;
    }
    rc = 0;
done:
    inflateEnd(&zs);
    return rc;
}

/* "X: no array 'name' (the archive has: a, b, c)", the list cut short with "...". */
static int missing_array(const npz_file *f, const char *name, err_t *err) {
    char list[600] = "no entries";
    size_t used = 0;
    for (int i = 0; i < f->n; i++) {
        size_t l = strlen(f->members[i].name);
        if (used + l + 2 > sizeof list - 6) {
            snprintf(list + used, sizeof list - used, "%s", used ? ", ..." : "...");
            break;
        }
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", f->members[i].name);
    }
    return err_fail(err, "%s: no array '%s' (the archive has: %s)", f->path, name, list);
}

static int npz_read(const npz_file *f, const char *name, npy_type as, void **data, int *ndim,
                    int64_t shape[NPY_MAX_DIMS], npy_type *stored, err_t *err) {
    int rc = -1;
    const npz_member *m;
    char what[1024];
    unsigned char *in = NULL, *out = NULL;
    uint64_t off = 0;
    npz_sink s;

    *data = NULL;
    *ndim = 0;
    memset(&s, 0, sizeof s);
    m = npz_find(f, name);
    if (!m) return missing_array(f, name, err);
    snprintf(what, sizeof what, "%s: entry '%s'", f->path, m->entry);
    s.what = what;
    s.as = as;
    s.total = (size_t)m->usize; /* <= NPZ_MAX_ENTRY */
    s.hdr_need = s.total < 12 ? s.total : 12;
    s.hdr = mem_alloc(s.total < NPZ_MAX_NPY_HEADER ? s.total : NPZ_MAX_NPY_HEADER, err);
    in = mem_alloc(NPZ_CHUNK, err);
    if (m->method == METHOD_DEFLATED) out = mem_alloc(NPZ_CHUNK, err);
    if (!s.hdr || !in || (m->method == METHOD_DEFLATED && !out)) {
        err_wrap(err, "%s", what);
        goto done;
    }
    if (check_local(f, m, what, &off, err) != 0) goto done;
    if (m->method == METHOD_STORED ? read_stored(f, m, off, in, &s, err) : read_deflated(f, m, off, in, out, &s, err))
        goto done;
    if (s.got != s.total) {
        err_fail(err, "%s: the data inflates to %zu bytes, not the %zu stated in the central directory", what, s.got,
                  s.total);
        goto done;
    }
    if (s.crc != m->crc) {
        err_fail(err, "%s: CRC-32 mismatch (stored %08x, computed %08x): the entry is corrupt", what,
                  (unsigned)m->crc, (unsigned)s.crc);
        goto done;
    }
    if (!s.failed && !s.parsed && sink_parse(&s) != 0) s.failed = 1; /* an empty entry */
    if (s.failed) {
        if (err) *err = s.perr;
        goto done;
    }
    ERR_ASSERT(s.idx == s.info.numel && s.carry_n == 0);
    *data = s.out;
    s.out = NULL;
    *ndim = s.info.ndim;
    for (int i = 0; i < s.info.ndim; i++) shape[i] = s.info.shape[i];
    if (stored) *stored = s.info.type;
    rc = 0;
done:
    free(s.out);
    free(s.hdr);
    free(in);
    free(out);
    return rc;
}

int npz_read_f64(const npz_file *f, const char *name, double **data, int *ndim, int64_t shape[NPY_MAX_DIMS],
                 err_t *err) {
    void *p = NULL;
    int rc = npz_read(f, name, NPY_F64, &p, ndim, shape, NULL, err);
    *data = p;
    return rc;
}

int npz_read_f32(const npz_file *f, const char *name, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS],
                 err_t *err) {
    return npz_read_f32_stored(f, name, data, ndim, shape, NULL, err);
}

int npz_read_f32_stored(const npz_file *f, const char *name, float **data, int *ndim, int64_t shape[NPY_MAX_DIMS],
                        npy_type *stored, err_t *err) {
    void *p = NULL;
    int rc = npz_read(f, name, NPY_F32, &p, ndim, shape, stored, err);
    *data = p;
    return rc;
}

/* ---------------------------------------------------------------- write */

/* Local header with a ZIP64 extra field holding both sizes. */
static size_t put_local(unsigned char *p, const char *name, size_t nlen, int flags, uint32_t crc, uint64_t size) {
    unsigned char *q = p;
    q = le_put32(q, SIG_LOCAL);
    q = le_put16(q, VERSION_ZIP64);
    q = le_put16(q, (unsigned)flags);
    q = le_put16(q, METHOD_STORED);
    q = le_put16(q, 0); /* time */
    q = le_put16(q, DOS_DATE_1980);
    q = le_put32(q, crc);
    q = le_put32(q, U32_MAX_FIELD); /* compressed size: in the ZIP64 field */
    q = le_put32(q, U32_MAX_FIELD); /* uncompressed size: likewise */
    q = le_put16(q, (unsigned)nlen);
    q = le_put16(q, 4 + 16);
    memcpy(q, name, nlen);
    q += nlen;
    q = le_put16(q, 1);
    q = le_put16(q, 16);
    q = le_put64(q, size); /* uncompressed */
    q = le_put64(q, size); /* compressed */
    return (size_t)(q - p);
}

/* Central header with a ZIP64 extra field holding both sizes and the offset. */
static size_t put_central(unsigned char *p, const char *name, size_t nlen, int flags, uint32_t crc, uint64_t size,
                          uint64_t offset) {
    unsigned char *q = p;
    q = le_put32(q, SIG_CENTRAL);
    q = le_put16(q, MADE_BY);
    q = le_put16(q, VERSION_ZIP64);
    q = le_put16(q, (unsigned)flags);
    q = le_put16(q, METHOD_STORED);
    q = le_put16(q, 0);
    q = le_put16(q, DOS_DATE_1980);
    q = le_put32(q, crc);
    q = le_put32(q, U32_MAX_FIELD);
    q = le_put32(q, U32_MAX_FIELD);
    q = le_put16(q, (unsigned)nlen);
    q = le_put16(q, 4 + 24);
    q = le_put16(q, 0);                   /* comment length */
    q = le_put16(q, 0);                   /* disk number start */
    q = le_put16(q, 0);                   /* internal attributes */
    q = le_put32(q, 0100644u << 16);      /* external: a regular file, rw-r--r-- */
    q = le_put32(q, U32_MAX_FIELD);       /* local header offset: in the ZIP64 field */
    memcpy(q, name, nlen);
    q += nlen;
    q = le_put16(q, 1);
    q = le_put16(q, 24);
    q = le_put64(q, size);
    q = le_put64(q, size);
    q = le_put64(q, offset);
    return (size_t)(q - p);
}

/* ZIP64 end record, its locator and the classic end record pointing at them. */
static size_t put_end(unsigned char *p, uint64_t n, uint64_t cd_size, uint64_t cd_off) {
    unsigned char *q = p;
    q = le_put32(q, SIG_EOCD64);
    q = le_put64(q, EOCD64_LEN - 12);
    q = le_put16(q, MADE_BY);
    q = le_put16(q, VERSION_ZIP64);
    q = le_put32(q, 0);
    q = le_put32(q, 0);
    q = le_put64(q, n);
    q = le_put64(q, n);
    q = le_put64(q, cd_size);
    q = le_put64(q, cd_off);
    q = le_put32(q, SIG_LOC64);
    q = le_put32(q, 0);
    q = le_put64(q, cd_off + cd_size); /* where the ZIP64 end record starts */
    q = le_put32(q, 1);
    q = le_put32(q, SIG_EOCD);
    q = le_put16(q, 0);
    q = le_put16(q, 0);
    q = le_put16(q, 0xffff);
    q = le_put16(q, 0xffff);
    q = le_put32(q, U32_MAX_FIELD);
    q = le_put32(q, U32_MAX_FIELD);
    q = le_put16(q, 0);
    return (size_t)(q - p);
}

/* Checks an array name: non-empty, at most MAX_NAME bytes, no '/', '\\' or
 * control bytes. Sets *flags to FLAG_UTF8 if it has non-ASCII bytes. */
static int check_name(const char *path, int i, const char *name, int *flags, err_t *err) {
    size_t l;
    if (!name || !*name) return err_fail(err, "cannot write %s: array %d has no name", path, i);
    l = strlen(name);
    if (l > MAX_NAME) return err_fail(err, "cannot write %s: array name of %zu bytes is too long", path, l);
    *flags = 0;
    for (size_t k = 0; k < l; k++) {
        unsigned char c = (unsigned char)name[k];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
            return err_fail(err, "cannot write %s: invalid array name '%s' (no '/', '\\' or control characters)",
                             path, name);
        if (c >= 0x80) *flags = FLAG_UTF8;
    }
    return 0;
}

int npz_write(const char *path, const npz_entry *e, int n, err_t *err) {
    int rc = -1, *flags = NULL;
    unsigned char(*npyh)[NPY_HEADER_MAX] = NULL, *loc = NULL, *cen = NULL;
    const void **chunks = NULL;
    size_t *lens = NULL, loc_len = 0, cen_len = 0, lpos = 0, cpos = 0;
    uint32_t *crcs = NULL;
    uint64_t off = 0;

    if (n < 0 || n > MAX_WRITE_ENTRIES || (n > 0 && !e))
        return err_fail(err, "cannot write %s: invalid number of arrays (%d)", path, n);
    flags = mem_calloc((size_t)n, sizeof *flags, err);
    crcs = mem_calloc((size_t)n, sizeof *crcs, err);
    npyh = mem_calloc((size_t)n, sizeof *npyh, err);
    chunks = mem_calloc(3 * (size_t)n + 1, sizeof *chunks, err);
    lens = mem_calloc(3 * (size_t)n + 1, sizeof *lens, err);
    if (!flags || !crcs || !npyh || !chunks || !lens) {
        err_wrap(err, "cannot write %s", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char what[512];
        size_t nlen;
        if (check_name(path, i, e[i].name, &flags[i], err) != 0) goto done;
        for (int j = 0; j < i; j++) {
            if (strcmp(e[j].name, e[i].name) == 0) {
                err_fail(err, "cannot write %s: two arrays named '%s'", path, e[i].name);
                goto done;
            }
        }
        if (e[i].type != NPY_F32 && e[i].type != NPY_F64 && e[i].type != NPY_U8) {
            err_fail(err, "cannot write %s: array '%s' has an invalid type (%d)", path, e[i].name, (int)e[i].type);
            goto done;
        }
        snprintf(what, sizeof what, "%s (array '%s')", path, e[i].name);
        if (npy_encode_header(what, npyh[i], &lens[3 * i + 1], e[i].type, e[i].ndim, e[i].shape, &lens[3 * i + 2],
                              err) != 0)
            goto done;
        if (lens[3 * i + 2] > 0 && !e[i].data) {
            err_fail(err, "cannot write %s: array '%s' has no data", path, e[i].name);
            goto done;
        }
        crcs[i] = (uint32_t)crc32_z(0, npyh[i], lens[3 * i + 1]);
        if (lens[3 * i + 2] > 0) crcs[i] = (uint32_t)crc32_z(crcs[i], e[i].data, lens[3 * i + 2]);
        nlen = strlen(e[i].name) + 4;
        loc_len += LOCAL_LEN + nlen + 20;
        cen_len += CENTRAL_LEN + nlen + 28;
    }
    loc = mem_alloc(loc_len, err);
    cen = mem_alloc(cen_len + EOCD64_LEN + LOC64_LEN + EOCD_LEN, err);
    if (!loc || !cen) {
        err_wrap(err, "cannot write %s", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char entry[MAX_NAME + 5];
        size_t nlen = (size_t)snprintf(entry, sizeof entry, "%s.npy", e[i].name), l;
        uint64_t size = lens[3 * i + 1] + lens[3 * i + 2];
        l = put_local(loc + lpos, entry, nlen, flags[i], crcs[i], size);
        chunks[3 * i] = loc + lpos;
        lens[3 * i] = l;
        chunks[3 * i + 1] = npyh[i];
        chunks[3 * i + 2] = e[i].data;
        lpos += l;
        cpos += put_central(cen + cpos, entry, nlen, flags[i], crcs[i], size, off);
        off += l + size;
    }
    ERR_ASSERT(lpos == loc_len && cpos == cen_len);
    cpos += put_end(cen + cpos, (uint64_t)n, cen_len, off);
    chunks[3 * n] = cen;
    lens[3 * n] = cpos;
    rc = file_write_atomic(path, chunks, lens, 3 * n + 1, err);
done:
    free(flags);
    free(crcs);
    free(npyh);
    free(chunks);
    free(lens);
    free(loc);
    free(cen);
    return rc;
}
