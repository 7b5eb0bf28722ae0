/* fileio.h -- whole-file reads, crash-safe (atomic) writes, mkdir -p and path
 * joining. Every function returns 0 on success, -1 on failure with a message
 * naming the path and the reason in err.
 */
#ifndef DDPM_FILEIO_H
#define DDPM_FILEIO_H

#include <stddef.h>

#include "core/status.h"

/* Reads the whole file at path into a newly malloc'd buffer.
 * On success *buf owns the bytes (free() it; never NULL, even for an empty
 * file) and *len is their count. On failure *buf is NULL, *len is 0 and err says
 * why ("cannot open X: No such file or directory", "cannot read X: ...").
 */
int file_read_all(const char *path, unsigned char **buf, size_t *len, err_t *err);

/* Replaces (or creates) the file at path with the concatenation of nchunks
 * chunks (chunk i is lens[i] bytes at chunks[i]; a chunk with lens[i] == 0 may be
 * NULL). The bytes go to "<path>.tmp.<pid>" in the same directory, every write
 * is checked, the temp file is fsync'ed and closed, renamed over path, and the
 * directory is fsync'ed. On any failure the temp file is removed and the old
 * file at path (if any) is left untouched; a full disk is reported as
 * "no space left on device writing X".
 */
int file_write_atomic(const char *path, const void *const *chunks, const size_t *lens, int nchunks,
                      err_t *err);

/* Keeps the file at path as prev before path is replaced: makes prev a second
 * name (hard link) of it, replacing any file at prev, and fsyncs the
 * directory; where the file system has no hard links, prev gets an atomic
 * copy. Does nothing when there is no file at path. The file at path is not
 * touched; prev is absent for a moment. A file_write_atomic of path after it
 * leaves the old contents at prev: at no moment is neither a complete old nor
 * a complete new file on disk. */
int file_keep_previous(const char *path, const char *prev, err_t *err);

/* Creates the directory path and any missing parents (like mkdir -p, mode 0777
 * before umask). Succeeds if path already is a directory; fails if path or a
 * parent exists and is not a directory.
 */
int file_make_dirs(const char *path, err_t *err);

/* Writes "dir/name" into out (outsz bytes including the NUL). No extra '/' is
 * added when dir is empty or already ends in '/'. out may be the same buffer as
 * dir (appending in place) but must not overlap name. Fails (out set to "") if
 * the result would not fit.
 */
int file_path_join(char *out, size_t outsz, const char *dir, const char *name, err_t *err);

#endif
