/* fileio.c -- whole-file reads, atomic writes (temp file + fsync + rename +
 * directory fsync), mkdir -p and path joining, with errno turned into messages.
 */
#include "io/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

int file_read_all(const char *path, unsigned char **buf, size_t *len, err_t *err) {
    int rc = -1, fd = -1;
    unsigned char *b = NULL;
    size_t cap = 4096, n = 0;
    struct stat st;

    *buf = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_fail(err, "cannot open %s: %s", path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) != 0) {
        err_fail(err, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        err_fail(err, "cannot read %s: %s", path, strerror(EISDIR));
        goto done;
    }
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((uintmax_t)st.st_size >= SIZE_MAX) {
            err_fail(err, "cannot read %s: file too large (%jd bytes)", path, (intmax_t)st.st_size);
            goto done;
        }
        cap = (size_t)st.st_size + 1; /* +1: EOF is seen without growing the buffer */
    }
    b = malloc(cap);
    if (!b) {
        err_fail(err, "cannot read %s: out of memory allocating %zu bytes", path, cap);
        goto done;
    }
    for (;;) {
        if (n == cap) {
            unsigned char *nb = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
            if (!nb) {
                err_fail(err, "cannot read %s: out of memory after %zu bytes", path, n);
                goto done;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            err_fail(err, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *buf = b;
    *len = n;
    b = NULL;
    rc = 0;
done:
    free(b);
    if (fd >= 0) close(fd);
    return rc;
}

/* Writes all n bytes or returns -1 with errno set. */
static int write_full(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int is_no_space(int e) {
#ifdef EDQUOT
    if (e == EDQUOT) return 1;
#endif
    return e == ENOSPC;
}

/* fsyncs the directory containing path so the rename is durable. Opening the
 * directory may legitimately fail (no read permission) and some file systems
 * refuse fsync on directories; only a real I/O error is reported. */
static int sync_parent_dir(const char *path, err_t *err) {
    int rc = -1, fd = -1;
    char *dir = NULL;
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 0;

    dir = malloc(dl + 2);
    if (!dir) {
        err_oom(err, "out of memory syncing the directory of %s", path);
        goto done;
    }
    if (!slash) {
        strcpy(dir, ".");
    } else if (dl == 0) {
        strcpy(dir, "/");
    } else {
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && fsync(fd) != 0 && errno == EIO) {
        err_fail(err, "cannot sync directory %s after writing %s: %s", dir, path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

int file_write_atomic(const char *path, const void *const *chunks, const size_t *lens, int nchunks,
                      err_t *err) {
    int rc = -1, fd = -1, created = 0;
    char *tmp = NULL;
    size_t tl;

    if (!path || !*path) {
        err_fail(err, "cannot write file: empty path");
        goto done;
    }
    if (nchunks < 0 || (nchunks > 0 && (!chunks || !lens))) {
        err_fail(err, "cannot write %s: invalid chunk list", path);
        goto done;
    }
    tl = strlen(path) + 32;
    tmp = malloc(tl);
    if (!tmp) {
        err_fail(err, "cannot write %s: out of memory", path);
        goto done;
    }
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) { /* stale temp file left by a crashed process with our pid */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) {
        err_fail(err, "cannot write %s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    created = 1;
    for (int i = 0; i < nchunks; i++) {
        if (lens[i] == 0) continue;
        if (!chunks[i]) {
            err_fail(err, "cannot write %s: chunk %d is NULL", path, i);
            goto done;
        }
        if (write_full(fd, chunks[i], lens[i]) != 0) {
            if (is_no_space(errno))
                err_fail(err, "no space left on device writing %s", path);
            else
                err_fail(err, "cannot write %s: %s", path, strerror(errno));
            goto done;
        }
    }
    if (fsync(fd) != 0) {
        if (is_no_space(errno))
            err_fail(err, "no space left on device writing %s", path);
        else
            err_fail(err, "cannot sync %s: %s", path, strerror(errno));
        goto done;
    }
    {
        int cfd = fd;
        fd = -1;
        if (close(cfd) != 0) {
            err_fail(err, "cannot close %s: %s", path, strerror(errno));
            goto done;
        }
    }
    if (rename(tmp, path) != 0) {
        err_fail(err, "cannot write %s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    created = 0;
    if (sync_parent_dir(path, err) != 0) goto done;
    rc = 0;
done:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(tmp);
    return rc;
}

int file_keep_previous(const char *path, const char *prev, err_t *err) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        return err_fail(err, "cannot keep %s as %s: %s", path, prev, strerror(errno));
    }
    if (unlink(prev) != 0 && errno != ENOENT)
        return err_fail(err, "cannot replace %s: %s", prev, strerror(errno));
    if (link(path, prev) == 0) return sync_parent_dir(prev, err);
    if (errno != EPERM && errno != EXDEV && errno != EMLINK && errno != ENOSYS && errno != EOPNOTSUPP)
        return err_fail(err, "cannot keep %s as %s: %s", path, prev, strerror(errno));
    /* no hard links on this file system: a copy */
    unsigned char *buf;
    size_t len;
    if (file_read_all(path, &buf, &len, err) != 0) return -1;
    const void *chunks[1] = {buf};
    int rc = file_write_atomic(prev, chunks, &len, 1, err);
    free(buf);
    return rc;
}

/* mkdir of one path component; an existing directory is fine. */
static int mkdir_one(const char *p, err_t *err) {
    struct stat st;
    if (mkdir(p, 0777) == 0) return 0;
    if (errno == EEXIST) {
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
        return err_fail(err, "cannot create directory %s: it exists and is not a directory", p);
    }
    return err_fail(err, "cannot create directory %s: %s", p, strerror(errno));
}

int file_make_dirs(const char *path, err_t *err) {
    int rc = -1;
    char *p = NULL;
    size_t n;

    if (!path || !*path) {
        err_fail(err, "cannot create directory: empty path");
        goto done;
    }
    n = strlen(path);
    p = malloc(n + 1);
    if (!p) {
        err_fail(err, "cannot create directory %s: out of memory", path);
        goto done;
    }
    memcpy(p, path, n + 1);
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    for (size_t i = 1; i < n; i++) {
        if (p[i] != '/' || p[i - 1] == '/') continue;
        p[i] = '\0';
        int r = mkdir_one(p, err);
        p[i] = '/';
        if (r != 0) goto done;
    }
    if (mkdir_one(p, err) != 0) goto done;
    rc = 0;
done:
    free(p);
    return rc;
}

int file_path_join(char *out, size_t outsz, const char *dir, const char *name, err_t *err) {
    size_t dl = strlen(dir), nl = strlen(name);
    size_t sep = (dl > 0 && dir[dl - 1] != '/') ? 1 : 0;

    if (dl + sep + nl + 1 > outsz) {
        if (outsz > 0) out[0] = '\0';
        return err_fail(err, "path too long (%zu bytes, limit %zu): %s%s%s", dl + sep + nl, outsz ? outsz - 1 : 0,
                         dir, sep ? "/" : "", name);
    }
    memmove(out, dir, dl); /* memmove: out may alias dir */
    if (sep) out[dl] = '/';
    memcpy(out + dl + sep, name, nl + 1);
    return 0;
}
