/* fuzz_util.h -- what the libFuzzer harnesses in fuzz/ share: a per-process
 * scratch directory (/dev/shm/ddpm-fuzz-NAME-PID, else under /tmp) that is
 * removed at exit, writing an input to a file in it, splitting an input into
 * parts at a separator, the checks every harness makes on a failure (a
 * message that names the input), and muting stdout/stderr for code that
 * prints by design (the flag parser).
 *
 * A harness that crashes, times out or is interrupted leaves its directory
 * behind (libFuzzer leaves through _Exit); scripts/fuzz.sh removes those whose
 * process is gone.
 */
#ifndef DDPM_FUZZ_UTIL_H
#define DDPM_FUZZ_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

static char fz_dir[256];

/* A harness bug (not a finding in the code under test): say so and stop.
 * Diagnostics go to file descriptor 2, which fz_mute leaves alone. */
static inline void fz_die(const char *what, const char *path) {
    dprintf(2, "fuzz harness: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static inline int fz_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static inline void fz_rm_tree(const char *dir) { nftw(dir, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static inline void fz_cleanup(void) {
    if (fz_dir[0]) fz_rm_tree(fz_dir);
}

/* The scratch directory, made (empty) on first use; name says whose it is. */
static inline const char *fz_tmpdir(const char *name) {
    if (fz_dir[0]) return fz_dir;
    const char *roots[2] = {"/dev/shm", "/tmp"};
    for (int i = 0; i < 2; i++) {
        snprintf(fz_dir, sizeof fz_dir, "%s/ddpm-fuzz-%s-%ld", roots[i], name, (long)getpid());
        fz_rm_tree(fz_dir); /* a stale one from an earlier process with this pid */
        if (mkdir(fz_dir, 0700) == 0) {
            atexit(fz_cleanup);
            return fz_dir;
        }
    }
    fz_die("cannot create", fz_dir);
    return NULL;
}

/* dir/rel in a new malloc'd string (the harnesses build each path once). */
static inline char *fz_path(const char *dir, const char *rel) {
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

/* Writes data[0..n) to path (created or truncated). */
static inline void fz_write(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fz_die("cannot create", path);
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) fz_die("cannot write", path);
        p += w;
        n -= (size_t)w;
    }
    if (close(fd) != 0) fz_die("cannot close", path);
}

/* Splits data[0..size) at each occurrence of sep (seplen bytes) into at most
 * max parts (the last part keeps any further separators). Returns the number
 * of parts (>= 1); part[i], len[i] point into data. */
static inline int fz_split(const uint8_t *data, size_t size, const char *sep, size_t seplen, const uint8_t **part,
                    size_t *len, int max) {
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; n + 1 < max && i + seplen <= size;) {
        if (memcmp(data + i, sep, seplen) == 0) {
            part[n] = data + start;
            len[n++] = i - start;
            i += seplen;
            start = i;
        } else {
            i++;
        }
    }
    part[n] = data + start;
    len[n++] = size - start;
    return n;
}

/* A failure must come with a message, and the message must contain `name`
 * (the file, directory or "config:" prefix the contract promises). With
 * FUZZ_VERBOSE=1 in the environment the message is printed (to see why a
 * seed is refused: build-fuzz/fuzz_NAME FILE...). */
static inline void fz_check_msg(const err_t *err, const char *name) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose) dprintf(2, "refused: %s\n", err->msg);
    if (!err->msg[0] || !strstr(err->msg, name)) {
        dprintf(2, "fuzz harness: failure message '%s' does not name '%s'\n", err->msg, name);
        abort();
    }
}

/* Sends stdout and stderr (the FILE streams: sanitizer and libFuzzer reports
 * keep going to file descriptor 2) to /dev/null. */
static inline void fz_mute(void) {
    FILE *null = fopen("/dev/null", "w");
    if (!null) fz_die("cannot open", "/dev/null");
    stdout = null;
    stderr = null;
}

#endif
