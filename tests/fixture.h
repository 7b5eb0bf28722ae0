/* fixture.h -- reading PyTorch fixtures (safetensors, NCHW) for the tests. */
#ifndef DDPM_FIXTURE_H
#define DDPM_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/safetensors.h"

/* Tensor `name` of f as floats (exits the test on a missing tensor). */
static inline float *fx_get(const st_file *f, const char *name, size_t *n) {
    err_t err;
    float *p = st_load_f32(f, name, -1, NULL, n, &err);
    if (!p) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        exit(1);
    }
    return p;
}

static inline const st_tensor *fx_tensor(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t) {
        fprintf(stderr, "fixture: missing tensor '%s'\n", name);
        exit(1);
    }
    return t;
}

/* [N,C,H,W] -> [N,H,W,C] (new buffer). */
static inline float *fx_nhwc(const float *x, int N, int C, int H, int W) {
    float *y = malloc(sizeof(float) * (size_t)N * C * H * W);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < H * W; i++) y[((size_t)n * H * W + i) * C + c] = x[((size_t)n * C + c) * H * W + i];
    return y;
}

/* Tensor `name` (4-d NCHW in the file) as a new NHWC buffer; dims out. */
static inline float *fx_get_nhwc(const st_file *f, const char *name, int *N, int *C, int *H, int *W) {
    const st_tensor *t = fx_tensor(f, name);
    *N = (int)t->shape[0]; *C = (int)t->shape[1]; *H = (int)t->shape[2]; *W = (int)t->shape[3];
    float *x = fx_get(f, name, NULL), *y = fx_nhwc(x, *N, *C, *H, *W);
    free(x);
    return y;
}

static inline float fx_maxabs(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static inline st_file fx_open(const char *path) {
    st_file f;
    err_t err;
    if (st_open(&f, path, &err)) {
        fprintf(stderr, "fixture: %s (run from the repository root; regenerate with make fixtures)\n", err.msg);
        exit(1);
    }
    return f;
}

#endif
