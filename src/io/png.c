/* png.c -- PNG reading/writing with libpng, grid tiling and float->uint8 conversion.
 *
 * libpng reports errors by longjmp. Each public function keeps everything it
 * must release in a png_job struct in its own frame and calls one helper that
 * does setjmp; the helper only ever touches state through the struct pointer
 * (never automatic variables modified after setjmp), returns -1 when libpng
 * jumps back, and the caller releases everything on one cleanup path.
 */
#include "io/png.h"

#include <png.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest decoded image accepted or written: 2^31 bytes. */
#define PNG_MAX_BYTES ((uint64_t)1 << 31)

typedef struct png_job {
    FILE *f;
    png_structp png;
    png_infop info;
    uint8_t *pix;      /* read: the decoded image (ownership moves to the caller) */
    png_bytep *rows;   /* row pointers into pix */
    int w, h, c;
    int io_errno;      /* errno of a failed fwrite/fflush inside libpng, else 0 */
    char msg[512];     /* libpng's error message, or our own */
} png_job;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_job *job = png_get_error_ptr(png);
    snprintf(job->msg, sizeof job->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (e.g. bad ancillary-chunk CRCs) do not stop reading; stay quiet. */
static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* ---- reading ---- */

static int read_body(png_job *job) {
    if (setjmp(png_jmpbuf(job->png))) return -1;
    png_init_io(job->png, job->f);
    png_set_sig_bytes(job->png, 8);
    png_read_info(job->png, job->info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0;
    png_get_IHDR(job->png, job->info, &w, &h, &depth, &color, NULL, NULL, NULL);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(job->png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(job->png);
    if (depth == 16) png_set_strip_16(job->png);
    png_set_strip_alpha(job->png);
    png_set_interlace_handling(job->png);
    png_read_update_info(job->png, job->info);

    int c = png_get_channels(job->png, job->info);
    size_t rowbytes = png_get_rowbytes(job->png, job->info);
    if ((c != 1 && c != 3) || png_get_bit_depth(job->png, job->info) != 8 || rowbytes != (size_t)w * c) {
        snprintf(job->msg, sizeof job->msg, "unsupported PNG layout (%d channels, %d bits after conversion)", c,
                 png_get_bit_depth(job->png, job->info));
        return -1;
    }
    if ((uint64_t)w * h * c > PNG_MAX_BYTES || w > 0x7fffffff || h > 0x7fffffff) {
        snprintf(job->msg, sizeof job->msg, "image %ux%ux%d is too large (over 2^31 bytes)", (unsigned)w,
                 (unsigned)h, c);
        return -1;
    }
    job->pix = malloc((size_t)w * h * c);
    job->rows = malloc(sizeof(png_bytep) * h);
    if (!job->pix || !job->rows) {
        snprintf(job->msg, sizeof job->msg, "out of memory for a %ux%ux%d image", (unsigned)w, (unsigned)h, c);
        return -1;
    }
    for (png_uint_32 y = 0; y < h; y++) job->rows[y] = job->pix + (size_t)y * rowbytes;
    png_read_image(job->png, job->rows);
    png_read_end(job->png, NULL);
    job->w = (int)w;
    job->h = (int)h;
    job->c = c;
    return 0;
}

int png_read_u8(const char *path, uint8_t **pix, int *w, int *h, int *c, err_t *err) {
    png_job job = {0};
    int rc = -1;
    *pix = NULL;
    job.f = fopen(path, "rb");
    if (!job.f) {
        err_fail(err, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    unsigned char sig[8];
    if (fread(sig, 1, 8, job.f) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        err_fail(err, "%s: not a PNG file (bad signature)", path);
        goto done;
    }
    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, on_png_error, on_png_warning);
    if (job.png) job.info = png_create_info_struct(job.png);
    if (!job.png || !job.info) {
        err_fail(err, "%s: cannot initialise libpng (out of memory)", path);
        goto done;
    }
    if (read_body(&job) != 0) {
        err_fail(err, "%s: corrupt or unreadable PNG: %s", path, job.msg);
        goto done;
    }
    *pix = job.pix;
    job.pix = NULL;
    *w = job.w;
    *h = job.h;
    *c = job.c;
    rc = 0;
done:
    if (job.png) png_destroy_read_struct(&job.png, job.info ? &job.info : NULL, NULL);
    if (job.f) fclose(job.f);
    free(job.rows);
    free(job.pix);
    return rc;
}

/* ---- writing ---- */

static void write_fn(png_structp png, png_bytep data, size_t len) {
    png_job *job = png_get_io_ptr(png);
    if (fwrite(data, 1, len, job->f) != len) {
        job->io_errno = errno ? errno : EIO;
        png_error(png, "write failed");
    }
}

static void flush_fn(png_structp png) {
    png_job *job = png_get_io_ptr(png);
    if (fflush(job->f) != 0) {
        job->io_errno = errno ? errno : EIO;
        png_error(png, "write failed");
    }
}

static int write_body(png_job *job, const uint8_t *pix) {
    if (setjmp(png_jmpbuf(job->png))) return -1;
    png_set_write_fn(job->png, job, write_fn, flush_fn);
    png_set_IHDR(job->png, job->info, (png_uint_32)job->w, (png_uint_32)job->h, 8,
                 job->c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(job->png, job->info);
    for (int y = 0; y < job->h; y++) png_write_row(job->png, pix + (size_t)y * job->w * job->c);
    png_write_end(job->png, NULL);
    return 0;
}

/* Fsyncs the directory holding path so the rename itself is durable
 * (best effort: some file systems refuse fsync on directories). */
static void sync_parent_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir) return;
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int png_write_u8(const char *path, const uint8_t *pix, int w, int h, int c, err_t *err) {
    static unsigned counter; /* distinguishes temp files of concurrent writers in one process */
    png_job job = {0};
    char tmp[4200];
    int rc = -1, fd = -1, have_tmp = 0;
    if (!path || !*path || !pix || w <= 0 || h <= 0 || (c != 1 && c != 3) ||
        (uint64_t)w * h * c > PNG_MAX_BYTES) {
        err_fail(err, "%s: cannot write a %dx%dx%d PNG (need w, h > 0, c = 1 or 3, at most 2^31 bytes)",
                  path ? path : "(null)", w, h, c);
        goto done;
    }
    if (strlen(path) > 4096) {
        err_fail(err, "%.64s...: path too long", path);
        goto done;
    }
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        unsigned k = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), k);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        err_fail(err, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    have_tmp = 1;
    job.f = fdopen(fd, "wb");
    if (!job.f) {
        err_fail(err, "%s: fdopen failed: %s", path, strerror(errno));
        close(fd);
        goto done;
    }
    job.w = w;
    job.h = h;
    job.c = c;
    job.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &job, on_png_error, on_png_warning);
    if (job.png) job.info = png_create_info_struct(job.png);
    if (!job.png || !job.info) {
        err_fail(err, "%s: cannot initialise libpng (out of memory)", path);
        goto done;
    }
    if (write_body(&job, pix) != 0) {
        if (job.io_errno)
            err_fail(err, "%s: writing %s failed: %s", path, tmp, strerror(job.io_errno));
        else
            err_fail(err, "%s: libpng error: %s", path, job.msg);
        goto done;
    }
    if (fflush(job.f) != 0 || fsync(fileno(job.f)) != 0) {
        err_fail(err, "%s: writing %s failed: %s", path, tmp, strerror(errno));
        goto done;
    }
    FILE *f = job.f;
    job.f = NULL;
    if (fclose(f) != 0) {
        err_fail(err, "%s: closing %s failed: %s", path, tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        err_fail(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    have_tmp = 0;
    sync_parent_dir(path);
    rc = 0;
done:
    if (job.png) png_destroy_write_struct(&job.png, job.info ? &job.info : NULL);
    if (job.f) fclose(job.f);
    if (have_tmp) unlink(tmp);
    return rc;
}

/* ---- conversion and grids ---- */

void png_to_u8(const float *x, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / 2.0f + 0.5f;
        if (!(v >= 0.0f)) v = 0.0f; /* also NaN */
        if (v > 1.0f) v = 1.0f;
        out[i] = (uint8_t)nearbyintf(v * 255.0f); /* ties to even, like numpy/torch round */
    }
}

int png_write_grid(const char *path, const float *imgs, int n, int h, int w, int c, int ncols, int pad,
                   err_t *err) {
    uint8_t *canvas = NULL;
    int rc = -1;
    if (!imgs || n <= 0 || h <= 0 || w <= 0 || (c != 1 && c != 3) || ncols <= 0 || pad < 0) {
        err_fail(err, "%s: bad grid arguments (n=%d h=%d w=%d c=%d ncols=%d pad=%d)", path ? path : "(null)", n,
                  h, w, c, ncols, pad);
        goto done;
    }
    int cols = ncols < n ? ncols : n, rows = (n + cols - 1) / cols;
    int64_t gw = (int64_t)cols * w + (int64_t)(cols - 1) * pad;
    int64_t gh = (int64_t)rows * h + (int64_t)(rows - 1) * pad;
    if (gw > 0x7fffffff || gh > 0x7fffffff || (uint64_t)gw * (uint64_t)gh * c > PNG_MAX_BYTES) {
        err_fail(err, "%s: grid of %d images %dx%d is too large", path ? path : "(null)", n, h, w);
        goto done;
    }
    canvas = mem_calloc((size_t)gw * gh * c, 1, err);
    if (!canvas) goto done;
    for (int i = 0; i < n; i++) {
        int64_t x0 = (int64_t)(i % cols) * (w + pad), y0 = (int64_t)(i / cols) * (h + pad);
        for (int y = 0; y < h; y++)
            png_to_u8(imgs + (((size_t)i * h + y) * w) * c, canvas + ((y0 + y) * gw + x0) * c, (size_t)w * c);
    }
    rc = png_write_u8(path, canvas, (int)gw, (int)gh, c, err);
done:
    free(canvas);
    return rc;
}
