/* winograd.h -- the transforms of Winograd F(2x2, 3x3) (Lavin & Gray 2016),
 * on NHWC rows; conv.c builds the convolution's three passes from them and
 * GEMMs. Each 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A over its 4x4
 * input tile d:
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * Tile t of a [B, H, W] batch is image t / (TH TW), tile row t / TW % TH,
 * tile column t % TW, with TH = ceil(H / 2), TW = ceil(W / 2). A chunk is
 * the tiles t0 .. t0 + nt - 1; its transformed arrays are [16][nt][C]
 * ("plane" = nt C floats per position k = 4 i + j of the 4x4 tile).
 *
 * These loops are among the kernels compiled once per instruction-set level
 * (core/cpu.h). */
#ifndef DDPM_WINOGRAD_H
#define DDPM_WINOGRAD_H

#include <stddef.h>

/* Tiles of a [B, H, W] batch. */
size_t ops_wino_tiles(int B, int H, int W);
/* U[k][ci][co] (=) (G g G^T)[k] for each 3x3 kernel g = w[co][ci] of
 * w [Cout, Cin, 3, 3]. */
void ops_wino_weights(float *U, const float *w, int Cin, int Cout);
/* V (=) B^T d B of the chunk's 4x4 input patches d of x [B, H, W, C] (row
 * stride ld); pixels outside the image read zero[0 .. C-1] (all zeros). */
void ops_wino_input(float *V, const float *x, int ld, int C, int H, int W, size_t t0, size_t nt,
                    const float *zero);
/* y tiles (=) A^T m A + bias for the chunk's products M [16][nt][C], into
 * y [B, H, W, C] (row stride ld); outputs past the image go to
 * scraps + scrap_ld * (OpenMP thread number). bias: C floats, zeros for
 * none (a test of NULL in the loop becomes a masked load). */
void ops_wino_output(float *y, int ld, const float *M, int C, int H, int W, size_t t0, size_t nt,
                     const float *bias, float *scraps, size_t scrap_ld);
/* Z (=) A z A^T for the chunk's 2x2 tiles z of dy [B, H, W, C] (row stride
 * ld), A = [1 0; 1 1; 1 -1; 0 -1]: the gradient of ops_wino_output's
 * transform. Tile pixels past the image read zero[0 .. C-1]. */
void ops_wino_output_grad(float *Z, const float *dy, int ld, int C, int H, int W, size_t t0, size_t nt,
                          const float *zero);
/* dw [Cout, Cin, 3, 3] (=) G^T dU[.][co][ci] G for dU [16][Cout][Cin]: the
 * gradient of ops_wino_weights' transform. */
void ops_wino_weights_grad(float *dw, const float *dU, int Cin, int Cout);

#endif
