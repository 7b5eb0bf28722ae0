/* tfevents.h -- TensorBoard event files: a writer of scalar and image summaries in
 * TensorBoard's record format, read by TensorBoard itself (and by what imports such
 * files: the Hugging Face Hub's Metrics tab, W&B's sync_tensorboard).
 *
 * The file is a sequence of records, each
 *     u64 length n (little-endian) | u32 masked CRC32C of those 8 bytes |
 *     n bytes of data              | u32 masked CRC32C of the data
 * with masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32). The data is a
 * protobuf tensorboard.Event (src/io/tfevents.proto, encoded by protobuf-c): the first
 * record carries file_version "brain.Event:2", the later ones wall_time, step and a
 * Summary (or a SessionLog).
 *
 * Appends are crash-safe enough: each record goes to the file with one write(2) of
 * the whole record (no user-space buffer, so a kill -9 loses nothing written), and a
 * write that fails part-way (a full disk) is cut back off the file, so the file is
 * always whole records, at worst followed by one torn record after a power loss or a
 * crash of the machine; TensorBoard reads such a file up to its last whole record.
 * tfevents_close fsyncs. One writer is used by one thread at a time.
 */
#ifndef DDPM_IO_TFEVENTS_H
#define DDPM_IO_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The bytes a record adds around its data: 8 (length) + 4 + 4 (the two CRCs). */
#define TFEVENTS_FRAME_BYTES 16

typedef struct tfevents tfevents;

/* One scalar of a summary: TensorBoard's tag (e.g. "train/loss") and its value
 * (stored as a float: simple_value). */
typedef struct tfevents_scalar {
    const char *tag;
    double value;
} tfevents_scalar;

/* Creates the directory dir (and its parents) if missing, and in it a new event file
 * events.out.tfevents.<seconds since the epoch, 10 digits>.<host name> (a file of that
 * name already there, e.g. from a restart in the same second, is never touched:
 * ".1", ".2", ... is appended), and writes its first record (file_version
 * "brain.Event:2"). Returns the writer, or NULL with a message naming the path. */
tfevents *tfevents_open(const char *dir, err_t *err);

/* The path of the writer's file. */
const char *tfevents_path(const tfevents *w);

/* Appends one Event at step with the current wall time and a Summary of the n scalars
 * v[0..n-1] (n >= 1, every tag non-empty). Returns 0, or -1 with a message (bad
 * arguments, a failed write: the file then ends at the record before). */
int tfevents_scalars(tfevents *w, int64_t step, const tfevents_scalar *v, int n, err_t *err);

/* Appends one Event at step with an image summary under tag: png (len bytes) is a
 * whole PNG file of width x height pixels with channels 1 (gray), 2 (gray + alpha),
 * 3 (RGB) or 4 (RGBA) -- TensorBoard's colorspace. The bytes are stored as they are
 * (TensorBoard's browser decodes them). Returns 0 or -1 as tfevents_scalars. */
int tfevents_image(tfevents *w, int64_t step, const char *tag, const void *png, size_t len, int width,
                   int height, int channels, err_t *err);

/* tfevents_image of a PNG file's bytes, its width, height and colorspace read from
 * its IHDR chunk (gray, gray + alpha, RGB, RGBA; a palette image counts as RGB).
 * Fails with a message when png is not a PNG. */
int tfevents_png(tfevents *w, int64_t step, const char *tag, const void *png, size_t len, err_t *err);

/* Appends a SessionLog START at step: TensorBoard then forgets every value it read
 * before this record with a step >= step (its purge of orphaned data, for a run that
 * resumed from an earlier state than the last one it logged). */
int tfevents_session_start(tfevents *w, int64_t step, err_t *err);

/* fsyncs and closes the file and frees the writer (NULL: nothing). Returns 0, or -1
 * with a message if the fsync or close failed; the writer is freed either way. */
int tfevents_close(tfevents *w, err_t *err);

/* The CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of n bytes at p, continued
 * from crc (0 to start): tfevents_crc32c(0, "123456789", 9) = 0xE3069283. */
uint32_t tfevents_crc32c(uint32_t crc, const void *p, size_t n);

/* The masked CRC32C of n bytes at p, as the records store it. */
uint32_t tfevents_masked_crc(const void *p, size_t n);

#endif
