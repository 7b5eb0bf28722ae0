/* winograd.c -- the transforms of Winograd F(2x2, 3x3) (see winograd.h): the
 * weights', the input tiles', the output tiles' and their gradients. Plain
 * loops over channels that GCC vectorises, parallel over the tiles of a chunk
 * (serial inside a shard, whose team is one thread). */
#include "winograd.h"

#include <omp.h>

size_t ops_wino_tiles(int B, int H, int W) { return (size_t)B * ((H + 1) / 2) * ((W + 1) / 2); }

/* Tile t: image n, tile row ty, tile column tx. */
static void tile(size_t t, int H, int W, int *n, int *ty, int *tx) {
    int TH = (H + 1) / 2, TW = (W + 1) / 2;
    *n = (int)(t / ((size_t)TH * TW));
    *ty = (int)(t / TW % TH);
    *tx = (int)(t % TW);
}

/* The 2x2 output pixels of tile t as row pointers into y (row stride ld);
 * those past the image point at past. */
static void tile_outputs(float *o[4], size_t t, float *y, int ld, int H, int W, float *past) {
    int n, ty, tx;
    tile(t, H, W, &n, &ty, &tx);
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < 2; s++) {
            int oy = 2 * ty + r, ox = 2 * tx + s;
            o[2 * r + s] = oy < H && ox < W ? y + ((size_t)(n * H + oy) * W + ox) * ld : past;
        }
}

void ops_wino_weights(float *U, const float *w, int Cin, int Cout) {
    size_t plane = (size_t)Cin * Cout;
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++) {
            const float *g = w + ((size_t)co * Cin + ci) * 9;
            float a[4][3], u[4][4];
            for (int j = 0; j < 3; j++) {
                a[0][j] = g[j];
                a[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                a[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                a[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) {
                u[i][0] = a[i][0];
                u[i][1] = 0.5f * (a[i][0] + a[i][1] + a[i][2]);
                u[i][2] = 0.5f * (a[i][0] - a[i][1] + a[i][2]);
                u[i][3] = a[i][2];
            }
            for (int k = 0; k < 16; k++) U[k * plane + (size_t)ci * Cout + co] = u[k / 4][k % 4];
        }
}

void ops_wino_input(float *V, const float *x, int ld, int C, int H, int W, size_t t0, size_t nt,
                    const float *zero) {
    size_t plane = nt * C;
    #pragma omp parallel for schedule(static) /* one network of a few images; inside a shard: serial */
    for (size_t t = 0; t < nt; t++) {
        int n, ty, tx;
        tile(t0 + t, H, W, &n, &ty, &tx);
        const float *d[16];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                int iy = 2 * ty - 1 + i, ix = 2 * tx - 1 + j;
                d[4 * i + j] = iy >= 0 && iy < H && ix >= 0 && ix < W ? x + ((size_t)(n * H + iy) * W + ix) * ld : zero;
            }
        float *v = V + t * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) {
            float r[4][4];
            for (int j = 0; j < 4; j++) {
                r[0][j] = d[j][c] - d[8 + j][c];
                r[1][j] = d[4 + j][c] + d[8 + j][c];
                r[2][j] = d[8 + j][c] - d[4 + j][c];
                r[3][j] = d[4 + j][c] - d[12 + j][c];
            }
            for (int i = 0; i < 4; i++) {
                v[(4 * i) * plane + c] = r[i][0] - r[i][2];
                v[(4 * i + 1) * plane + c] = r[i][1] + r[i][2];
                v[(4 * i + 2) * plane + c] = r[i][2] - r[i][1];
                v[(4 * i + 3) * plane + c] = r[i][1] - r[i][3];
            }
        }
    }
}

void ops_wino_output(float *y, int ld, const float *M, int C, int H, int W, size_t t0, size_t nt,
                     const float *bias, float *scraps, size_t scrap_ld) {
    size_t plane = nt * C;
    #pragma omp parallel for schedule(static) /* one network of a few images; inside a shard: serial */
    for (size_t t = 0; t < nt; t++) {
        float *o[4];
        tile_outputs(o, t0 + t, y, ld, H, W, scraps + scrap_ld * omp_get_thread_num());
        const float *m = M + t * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) {
            float s[2][4];
            for (int j = 0; j < 4; j++) {
                s[0][j] = m[j * plane + c] + m[(4 + j) * plane + c] + m[(8 + j) * plane + c];
                s[1][j] = m[(4 + j) * plane + c] - m[(8 + j) * plane + c] - m[(12 + j) * plane + c];
            }
            float b = bias[c];
            o[0][c] = s[0][0] + s[0][1] + s[0][2] + b;
            o[1][c] = s[0][1] - s[0][2] - s[0][3] + b;
            o[2][c] = s[1][0] + s[1][1] + s[1][2] + b;
            o[3][c] = s[1][1] - s[1][2] - s[1][3] + b;
        }
    }
}

void ops_wino_output_grad(float *Z, const float *dy, int ld, int C, int H, int W, size_t t0, size_t nt,
                          const float *zero) {
    size_t plane = nt * C;
    #pragma omp parallel for schedule(static) /* one network of a few images; inside a shard: serial */
    for (size_t t = 0; t < nt; t++) {
        float *o[4];
        tile_outputs(o, t0 + t, (float *)dy, ld, H, W, (float *)zero); /* only read here */
        float *z = Z + t * C;
        #pragma omp simd
        for (int c = 0; c < C; c++) {
            float a[4][2];
            for (int s = 0; s < 2; s++) {
                a[0][s] = o[s][c];
                a[1][s] = o[s][c] + o[2 + s][c];
                a[2][s] = o[s][c] - o[2 + s][c];
                a[3][s] = -o[2 + s][c];
            }
            for (int i = 0; i < 4; i++) {
                z[(4 * i) * plane + c] = a[i][0];
                z[(4 * i + 1) * plane + c] = a[i][0] + a[i][1];
                z[(4 * i + 2) * plane + c] = a[i][0] - a[i][1];
                z[(4 * i + 3) * plane + c] = -a[i][1];
            }
        }
    }
}

void ops_wino_weights_grad(float *dw, const float *dU, int Cin, int Cout) {
    size_t plane = (size_t)Cout * Cin;
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++) {
            const float *u = dU + (size_t)co * Cin + ci;
            float b[3][4], *g = dw + ((size_t)co * Cin + ci) * 9;
            for (int j = 0; j < 4; j++) {
                float u0 = u[j * plane], u1 = u[(4 + j) * plane], u2 = u[(8 + j) * plane], u3 = u[(12 + j) * plane];
                b[0][j] = u0 + 0.5f * (u1 + u2);
                b[1][j] = 0.5f * (u1 - u2);
                b[2][j] = 0.5f * (u1 + u2) + u3;
            }
            for (int r = 0; r < 3; r++) {
                g[3 * r] = b[r][0] + 0.5f * (b[r][1] + b[r][2]);
                g[3 * r + 1] = 0.5f * (b[r][1] - b[r][2]);
                g[3 * r + 2] = 0.5f * (b[r][1] + b[r][2]) + b[r][3];
            }
        }
}
