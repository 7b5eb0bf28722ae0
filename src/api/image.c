/* image.c -- the public image and file calls (include/ddpm.h, "image files"):
 * PNGs (io/png.h, HWC bytes), .npy arrays (io/npy.h) and .npz arrays
 * (io/npz.h) for NCHW floats in [-1, 1], crash-safe file writes and mkdir -p
 * (io/fileio.h). */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "io/npy.h"
#include "io/npz.h"
#include "io/png.h"
#include "ops/ops.h"

_Static_assert(DDPM_NPY_MAX_DIMS == NPY_MAX_DIMS, "ddpm.h's DDPM_NPY_MAX_DIMS is npy.h's NPY_MAX_DIMS");

/* Checks the shape of an image argument; DDPM_ERR_ARG naming fn otherwise. */
static int check_shape(const char *fn, int n, int c, int h, int w)
{
    if (n < 1 || (c != 1 && c != 3) || h < 1 || w < 1 || (double)n * c * h * w > 1e12)
        return api_fail(NULL, DDPM_ERR_ARG, "%s: cannot write %d images of %dx%dx%d (1 or 3 channels)", fn, n, h, w,
                        c);
    return DDPM_OK;
}

int ddpm_png_write_grid(const char *path, const float *x, int n, int c, int h, int w, int cols, int gap)
{
    API_REQUIRE(NULL, path);
    API_REQUIRE(NULL, x);
    int st = check_shape(__func__, n, c, h, w);
    if (st) return st;
    if (gap < 0) return api_fail(NULL, DDPM_ERR_ARG, "%s: gap %d is negative", __func__, gap);
    if (cols <= 0) {
        cols = 1;
        while ((long long)cols * cols < n) cols++;
    }
    err_t err = {0};
    float *hwc = mem_alloc(sizeof(float) * (size_t)n * c * h * w, &err);
    if (!hwc) return api_status(NULL, DDPM_ERR_NOMEM, &err);
    ops_nchw_to_nhwc(hwc, x, n, c, h * w);
    st = png_write_grid(path, hwc, n, h, w, c, cols, gap, &err) ? api_status(NULL, DDPM_ERR_IO, &err) : DDPM_OK;
    free(hwc);
    return st;
}

int ddpm_png_write(const char *path, const float *x, int c, int h, int w)
{
    API_REQUIRE(NULL, path);
    API_REQUIRE(NULL, x);
    int st = check_shape(__func__, 1, c, h, w);
    if (st) return st;
    const size_t D = (size_t)c * h * w;
    err_t err = {0};
    float *hwc = mem_alloc(sizeof(float) * D, &err);
    uint8_t *pix = mem_alloc(D, &err);
    if (!hwc || !pix) {
        st = api_status(NULL, DDPM_ERR_NOMEM, &err);
    } else {
        ops_nchw_to_nhwc(hwc, x, 1, c, h * w);
        png_to_u8(hwc, pix, D);
        st = png_write_u8(path, pix, w, h, c, &err) ? api_status(NULL, DDPM_ERR_IO, &err) : DDPM_OK;
    }
    free(hwc), free(pix);
    return st;
}

int ddpm_png_read(const char *path, float **x, int *c, int *h, int *w)
{
    API_REQUIRE(NULL, path);
    API_REQUIRE(NULL, x);
    API_REQUIRE(NULL, c);
    API_REQUIRE(NULL, h);
    API_REQUIRE(NULL, w);
    *x = NULL;
    err_t err = {0};
    uint8_t *pix = NULL;
    if (png_read_u8(path, &pix, w, h, c, &err)) return api_status(NULL, DDPM_ERR_INPUT, &err);
    const size_t HW = (size_t)*h * *w, C = (size_t)*c;
    float *o = mem_alloc(sizeof(float) * (HW * C > 0 ? HW * C : 1), &err);
    if (!o) {
        free(pix);
        return api_status(NULL, DDPM_ERR_NOMEM, &err);
    }
    api_bytes_to_nchw(o, pix, 1, (int)C, HW);
    free(pix);
    *x = o;
    return DDPM_OK;
}

void api_bytes_to_nchw(float *o, const uint8_t *p, int n, int C, size_t HW)
{
    for (int i = 0; i < n; i++, p += HW * C, o += HW * C)
        for (int k = 0; k < C; k++)
            for (size_t j = 0; j < HW; j++) o[k * HW + j] = p[j * C + k] / 127.5f - 1.0f;
}

int ddpm_npy_read(const char *path, float **data, int *ndim, int64_t shape[DDPM_NPY_MAX_DIMS], ddpm_dtype *dtype)
{
    API_REQUIRE(NULL, path);
    API_REQUIRE(NULL, data);
    API_REQUIRE(NULL, ndim);
    API_REQUIRE(NULL, shape);
    err_t err = {0};
    unsigned char *buf = NULL;
    size_t len;
    npy_info info;
    void *p = NULL;
    *data = NULL;
    int rc = file_read_all(path, &buf, &len, &err) || npy_parse_header(path, buf, len, len, &info, &err) ||
             npy_parse(path, buf, len, NPY_F32, &p, ndim, shape, &err);
    free(buf);
    if (rc) return api_status(NULL, DDPM_ERR_INPUT, &err);
    static const ddpm_dtype types[] = {[NPY_F32] = DDPM_DTYPE_F32, [NPY_F64] = DDPM_DTYPE_F64, [NPY_U8] = DDPM_DTYPE_U8};
    if (dtype) *dtype = types[info.type];
    *data = p;
    return DDPM_OK;
}

int ddpm_npz_read(const char *path, const char *name, float **data, int *ndim, int64_t shape[DDPM_NPY_MAX_DIMS],
                  ddpm_dtype *dtype)
{
    API_REQUIRE(NULL, path);
    API_REQUIRE(NULL, name);
    API_REQUIRE(NULL, data);
    API_REQUIRE(NULL, ndim);
    API_REQUIRE(NULL, shape);
    static const ddpm_dtype types[] = {[NPY_F32] = DDPM_DTYPE_F32, [NPY_F64] = DDPM_DTYPE_F64, [NPY_U8] = DDPM_DTYPE_U8};
    err_t err = {0};
    npz_file f;
    npy_type type = NPY_F32;
    *data = NULL, *ndim = 0;
    if (npz_open(&f, path, &err)) return api_status(NULL, DDPM_ERR_INPUT, &err);
    int found = npz_find(&f, name) != NULL;
    int rc = npz_read_f32_stored(&f, name, data, ndim, shape, &type, &err);
    npz_close(&f);
    if (rc) {
        *ndim = found ? 0 : -1;
        return api_status(NULL, DDPM_ERR_INPUT, &err);
    }
    if (dtype) *dtype = types[type];
    return DDPM_OK;
}

int ddpm_npy_write(const char *path, const float *data, int ndim, const int64_t *shape)
{
    API_REQUIRE(NULL, path);
    if (ndim < 0 || ndim > DDPM_NPY_MAX_DIMS || (ndim && !shape))
        return api_fail(NULL, DDPM_ERR_ARG, "%s: cannot write %s: %d dimensions", __func__, path, ndim);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return api_fail(NULL, DDPM_ERR_ARG, "%s: cannot write %s: negative dimension", __func__, path);
        numel *= (size_t)shape[i];
    }
    if (numel && !data) return api_fail(NULL, DDPM_ERR_ARG, "%s: data is NULL", __func__);
    err_t err = {0};
    return npy_write_f32(path, data, ndim, shape, &err) ? api_status(NULL, DDPM_ERR_IO, &err) : DDPM_OK;
}

int ddpm_file_write(const char *path, const void *data, size_t len)
{
    API_REQUIRE(NULL, path);
    if (len && !data) return api_fail(NULL, DDPM_ERR_ARG, "%s: data is NULL", __func__);
    err_t err = {0};
    const void *chunks[1] = {data};
    return file_write_atomic(path, chunks, &len, 1, &err) ? api_status(NULL, DDPM_ERR_IO, &err) : DDPM_OK;
}

int ddpm_make_dirs(const char *path)
{
    API_REQUIRE(NULL, path);
    err_t err = {0};
    return file_make_dirs(path, &err) ? api_status(NULL, DDPM_ERR_IO, &err) : DDPM_OK;
}
