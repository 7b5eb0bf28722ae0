/* linear.c -- GEMM (dnnl_sgemm or plain loops; on bf16-rounded operands in
 * the bf16 precisions) and the linear layer built on it. */
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

#include "ops.h"

static int use_reference = 0;

void ops_set_reference(int on) { use_reference = on; }
int ops_reference(void) { return use_reference; }

int ops_team_size(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

static void gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

void ops_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    if (use_reference) {
        gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                                  beta, C, ldc);
    if (st != dnnl_success) exec_fail("oneDNN: sgemm %dx%dx%d failed (status %d)", M, N, K, (int)st);
}

const float *ops_bf16_operand(int slot, const float *x, int ld, size_t rows, int C) {
    float *r = exec_buffer(slot, sizeof(float) * ((rows - 1) * ld + C));
    if (r) ops_round_bf16(r, ld, x, ld, rows, C);
    return r;
}

void ops_gemm_prec(int precision, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    if (precision != EXEC_FP32 && M > 0 && N > 0 && K > 0) {
        A = ops_bf16_operand(OPS_SLOT_BF16_A, A, lda, ta ? K : M, ta ? M : K);
        B = ops_bf16_operand(OPS_SLOT_BF16_B, B, ldb, tb ? N : K, tb ? K : N);
        if (!A || !B) return;
    }
    ops_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ops_linear_forward(float *y, int ldy, const float *x, int ldx, const float *W, const float *b,
                    int M, int K, int N, int accumulate) {
    int prec = exec_precision();
    if (b && !accumulate) {
        /* Start from the bias, then accumulate the product on top of it. */
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < M; i++) memcpy(y + (size_t)i * ldy, b, (size_t)N * sizeof(float));
        ops_gemm_prec(prec, 0, 1, M, N, K, 1.0f, x, ldx, W, K, 1.0f, y, ldy);
        return;
    }
    ops_gemm_prec(prec, 0, 1, M, N, K, 1.0f, x, ldx, W, K, accumulate ? 1.0f : 0.0f, y, ldy);
    if (b) {
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) y[(size_t)i * ldy + j] += b[j];
    }
}

void ops_linear_backward(float *dx, int lddx, float *dW, float *db, const float *dy, int lddy,
                     const float *x, int ldx, const float *W, int M, int K, int N) {
    int prec = exec_precision();
    if (dx) ops_gemm_prec(prec, 0, 0, M, K, N, 1.0f, dy, lddy, W, K, 1.0f, dx, lddx);
    /* Each parameter gradient is computed whole, then added once (see ops.h). */
    float *t = dW || db ? exec_buffer(OPS_SLOT_LINEAR_DW, sizeof(float) * ((size_t)N * K + N)) : NULL;
    if (!t) return; /* no parameter gradients, or out of memory: see exec_buffer */
    if (dW) {
        ops_gemm_prec(prec, 1, 0, N, K, M, 1.0f, dy, lddy, x, ldx, 0.0f, t, K);
        for (size_t i = 0; i < (size_t)N * K; i++) dW[i] += t[i];
    }
    if (db) {
        float *s = t + (size_t)N * K;
        memset(s, 0, sizeof(float) * N);
        for (int i = 0; i < M; i++) {
            const float *r = dy + (size_t)i * lddy;
            for (int j = 0; j < N; j++) s[j] += r[j];
        }
        for (int j = 0; j < N; j++) db[j] += s[j];
    }
}
