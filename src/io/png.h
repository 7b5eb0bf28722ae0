/* png.h -- reading and writing 8-bit PNG images (libpng), tiling sample grids,
 * and the float [-1,1] -> uint8 conversion used for every saved image.
 *
 * Pixels are row-major and interleaved (HWC): pixel (y, x) channel k is at
 * pix[(y * w + x) * c + k]. Only c = 1 (gray) and c = 3 (RGB) are used.
 */
#ifndef DDPM_IO_PNG_H
#define DDPM_IO_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Reads the PNG at path into a newly malloc'ed buffer *pix (HWC, 8 bits per
 * channel; the caller frees it with free()) and sets *w, *h and *c. Palette
 * images become RGB, 16-bit samples are reduced to 8 bits, 1/2/4-bit gray is
 * expanded to 8 bits, and any alpha channel (including palette/tRNS
 * transparency) is dropped without compositing, so *c is 1 (gray, gray+alpha)
 * or 3 (RGB, RGBA, palette). Images over 2^31 bytes are refused.
 * Returns 0, or -1 with a message naming the file (missing, not a PNG, corrupt
 * or truncated); on failure *pix is NULL and nothing is leaked. */
int png_read_u8(const char *path, uint8_t **pix, int *w, int *h, int *c, err_t *err);

/* Writes the w x h image pix (HWC, c = 1 or 3) to path as an 8-bit PNG,
 * atomically: the data goes to a temporary file in the same directory, which
 * is flushed, fsync'ed and then renamed over path, so path never holds a
 * partial image. Returns 0, or -1 with a message (bad arguments, cannot create
 * the file, write errors such as a full disk); on failure the temporary file
 * is removed and an existing file at path is untouched. */
int png_write_u8(const char *path, const uint8_t *pix, int w, int h, int c, err_t *err);

/* Converts n floats in [-1, 1] to bytes exactly as diffusers does:
 * out = round(clamp(x / 2 + 0.5, 0, 1) * 255), computed in float with
 * round-half-to-even (numpy/torch round). Values outside [-1, 1] are clamped;
 * NaN becomes 0. */
void png_to_u8(const float *x, uint8_t *out, size_t n);

/* Tiles n images imgs [n, h, w, c] (NHWC floats in [-1, 1], converted with
 * png_to_u8) into one PNG at path: images go left to right in rows of
 * min(ncols, n) columns, top to bottom, with pad >= 0 pixels of value 0 between
 * neighbouring images (no outer border). The grid is therefore
 * cols*w + (cols-1)*pad wide and rows*h + (rows-1)*pad high, rows =
 * ceil(n / cols); unused cells of the last row stay 0. c = 1 or 3. Written
 * atomically with png_write_u8. Returns 0, or -1 with a message. */
int png_write_grid(const char *path, const float *imgs, int n, int h, int w, int c, int ncols, int pad,
                   err_t *err);

#endif
