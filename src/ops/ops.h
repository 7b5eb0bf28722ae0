/* ops.h -- the U-Net's operators, forward and backward, on raw NHWC buffers.
 *
 * Layout: activations are NHWC float32, seen as rows of channels: a tensor
 * [B,H,W,C] is M = B*H*W rows of C floats, row r at x + r*ld (ld >= C, so a
 * tensor can be a channel slice of a wider concat buffer). Weights keep
 * PyTorch's layout: conv [Cout,Cin,kh,kw], linear [out,in].
 *
 * Argument order follows one rule: outputs first, then saved state, then inputs,
 * then parameters, then sizes. Backward functions say for every output whether
 * it is overwritten (=) or accumulated (+=); parameter gradients always
 * accumulate, in the fast tier each element exactly once per call (g += v,
 * with v computed whole first): the U-Net's shards rely on it for
 * thread-count independence.
 *
 * Two tiers: ops_set_reference(1) routes gemm and conv to plain C loops (the
 * oracle the tests hold the fast path against; in the bf16 precisions, on
 * operands rounded to bf16); the default is the fast
 * tier: dnnl_sgemm, and for convolutions oneDNN's NHWC primitives or ddpm's
 * Winograd F(2x2, 3x3), chosen per shape and pass by measurement (see
 * enum conv_alg below). GroupNorm, SiLU, upsample,
 * dropout and the rest are plain loops parallelised with OpenMP in both tiers.
 */
#ifndef DDPM_OPS_H
#define DDPM_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "exec/executor.h"

/* ---- where operators run ---------------------------------------------------
 * On the calling worker (exec/executor.h): its oneDNN stream and scratchpad,
 * and its buffers in the slots below for what lives only during one call.
 * Operators are void: a failure (memory, a oneDNN status) is recorded on the
 * worker, the operator skips its work (outputs unspecified) and returns; the
 * executor's run, or exec_take_failure, reports it. Plans are made between
 * exec_build_begin and exec_build_end of the executor that runs them. */
enum ops_slot {
    OPS_SLOT_GN_PARTIAL = EXEC_SLOT_USER, OPS_SLOT_GN_DZ,    /* GroupNorm backward */
    OPS_SLOT_LINEAR_DW,                                     /* linear backward: weight and bias gradients */
    OPS_SLOT_CONV_X, OPS_SLOT_CONV_Y, OPS_SLOT_CONV_DW,      /* convolution staging and weight gradient */
    OPS_SLOT_CONV_ACC,                                      /* convolution weight gradient by direct loops */
    OPS_SLOT_WINO_V, OPS_SLOT_WINO_M, OPS_SLOT_WINO_DU, OPS_SLOT_WINO_ZERO, OPS_SLOT_WINO_SCRAP, /* Winograd */
    OPS_SLOT_BF16_A, OPS_SLOT_BF16_B,                       /* bf16 operands: GEMM's A and B, a convolution's */
    OPS_SLOT_BF16_W,                                        /* input (or gradient) and its weights */
    OPS_SLOTS /* the first slot the operators' callers may use */
};

/* Threads of the team an operator's parallel loops get: 1 inside a worker of
 * a team (nested regions are inactive), else the OpenMP thread count. */
int ops_team_size(void);

/* ---- tier switch ---------------------------------------------------------- */
void ops_set_reference(int on);
int ops_reference(void);

/* ---- GEMM (row-major) ------------------------------------------------------
 * C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or X^T (ta/tb non-zero). */
void ops_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

/* The GEMM of a network's matrix products (linear layers, attention), in
 * `precision` (exec/executor.h; the caller passes exec_precision(), asked on
 * the worker before any thread of its own starts): ops_gemm, with A and B
 * rounded to bf16 first (ops_round_bf16, into the calling thread's worker
 * buffers) in the bf16 precisions. (oneDNN 2.6's C API offers no bf16 GEMM
 * call: these products run on the fp32 GEMM in EXEC_BF16 too, with the same
 * numbers; the convolutions, most of a U-Net's work, run on bf16 kernels.) */
void ops_gemm_prec(int precision, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);

/* x [rows, C] (row stride ld) rounded to bf16 (ops_round_bf16), with the same
 * strides, in the calling thread's worker slot `slot`: the operand of a bf16
 * product computed on fp32 kernels. NULL when out of memory (recorded). */
const float *ops_bf16_operand(int slot, const float *x, int ld, size_t rows, int C);

/* ---- linear (also every 1x1 convolution, on NHWC rows) ----------------------
 * In the precision of the executor they run on (exec_precision).
 * y[M,N] (= or += by accumulate) x[M,K] W[N,K]^T + b[N] (b may be NULL). */
void ops_linear_forward(float *y, int ldy, const float *x, int ldx, const float *W, const float *b,
                    int M, int K, int N, int accumulate);
/* dx[M,K] += dy W (dx may be NULL); dW[N,K] += dy^T x; db[N] += colsum(dy). */
void ops_linear_backward(float *dx, int lddx, float *dW, float *db, const float *dy, int lddy,
                     const float *x, int ldx, const float *W, int M, int K, int N);

/* ---- 3x3 convolution ------------------------------------------------------ */
enum conv_pad {
    CONV_PAD_SAME = 0, /* stride 1 or 2, zero padding 1 on every side */
    CONV_PAD_TF = 1    /* stride 2 only: zero padding 1 at the bottom and right (TF "SAME") */
};

/* Each pass of a convolution (forward, input gradient, weight gradient) runs
 * one of these algorithms: oneDNN's direct kernels, ddpm's Winograd
 * F(2x2, 3x3) (GEMMs on transformed tiles; stride 1 with at least 8 channels
 * in and out), or oneDNN's Winograd (where oneDNN offers it for the shape and
 * the CPU). MEASURE, the default, picks per plan shape and pass the
 * combination whose measured time (with the weights' preparation once per
 * step) is least, remembered per machine: a line per shape in
 * $XDG_CACHE_HOME/ddpm/conv-algorithms.txt (~/.cache/ddpm/ without it),
 * keyed by CPU model, oneDNN's instruction set, ddpm's version and shape. The
 * others force that algorithm on every pass (ddpm's Winograd where it does
 * not apply and oneDNN's Winograd where it is not offered: direct). */
enum conv_alg { CONV_ALG_MEASURE, CONV_ALG_DIRECT, CONV_ALG_WINOGRAD, CONV_ALG_DNNL_WINOGRAD, CONV_ALGS };
enum conv_pass { CONV_PASS_FWD, CONV_PASS_BWD_DATA, CONV_PASS_BWD_W, CONV_PASSES };
/* For plans made from now on. */
void ops_conv_set_algorithm(int alg);
int ops_conv_get_algorithm(void);
/* "measure", "direct", "winograd", "onednn-winograd" and back; -1 / NULL when unknown. */
int ops_conv_algorithm_parse(const char *name);
const char *ops_conv_algorithm_name(int alg);

/* The choices of this process (measured, read from the cache, or pinned), as
 * text: a line per shape, the cache's format. Malloc'd; NULL when out of
 * memory. A run folder keeps it, so that a resume makes the same choices. */
char *ops_conv_choices_text(void);
/* Pins the choices of such a text: plans of those shapes use them from now
 * on, on any CPU and thread count, before the cache. Returns 0, or -1 with
 * err set (a line that does not parse). */
int ops_conv_choices_pin(const char *text, err_t *err);
/* The choice checked on a whole training step: a network's per-shape choices
 * can win convolution by convolution and still lose the step (the
 * transforms' memory traffic, docs/perf.md), so a trainer times a pass of
 * both its networks, per-shape choices against all-direct, the first time it
 * meets a network on a machine, and records the verdict in the cache under
 * `net` (its own key, no '|' or newline): CONV_NET_PER_SHAPE or
 * CONV_NET_DIRECT, and the two times. ops_conv_net_verdict returns it, or
 * CONV_NET_UNKNOWN. */
enum conv_net_verdict { CONV_NET_UNKNOWN = -1, CONV_NET_PER_SHAPE = 0, CONV_NET_DIRECT = 1 };
int ops_conv_net_verdict(const char *net);
void ops_conv_net_record(const char *net, int verdict, double per_shape_s, double direct_s);
/* While on, plans made with a forced algorithm are not recorded as this
 * process's choices (a network built only to be timed against). */
void ops_conv_set_probe(int on);
/* Choices pinned so far (ops_conv_choices_pin). */
int ops_conv_pinned(void);

/* Forgets every choice of this process (pinned or not); the cache stays. */
void ops_conv_choices_reset(void);
/* Shapes measured by this process so far. */
int ops_conv_measured(void);
/* The cache file's path (NULL when neither XDG_CACHE_HOME nor HOME is set). */
const char *ops_conv_cache_path(void);

/* One convolution shape: its oneDNN primitives and reorder buffers, made once. */
typedef struct conv_plan conv_plan;

/* Plans y[B,Ho,Wo,Cout] = conv(x[B,H,W,Cin]) for a 3x3 kernel; ld_x/ld_y are the
 * row strides of x and y (>= Cin / Cout). training != 0 also makes the backward
 * primitives. */
int ops_conv_plan_create(conv_plan **p, int B, int H, int W, int Cin, int Cout, int stride, int pad,
                     int ld_x, int ld_y, int training, err_t *err);
void ops_conv_plan_free(conv_plan *p);
void ops_conv_out_size(int H, int W, int stride, int *Ho, int *Wo);

/* Plans running concurrently on the same weights (U-Net shards) can hold one
 * copy of them in the primitives' layout: ops_conv_plan_share(p, owner) makes p use
 * owner's (where the layouts agree; both then skip the per-call weight reorder),
 * and ops_conv_prepare(owner, w) must then fill it from w before the plans run. */
void ops_conv_plan_share(conv_plan *p, conv_plan *owner);
void ops_conv_prepare(conv_plan *owner, const float *w);
/* (A plan shared with itself, then prepared, makes its weights once: fixed
 * weights for inference, as conv2d.c uses it.) */
/* The algorithm of pass (enum conv_pass) in the plan. */
int ops_conv_plan_algorithm(const conv_plan *p, int pass);

/* y (=) conv(x, w) + b, in the precision of the executor that built the plan. */
void ops_conv_forward(conv_plan *p, float *y, const float *x, const float *w, const float *b);
/* dx (=) (may be NULL, row stride ld_x), dw (+=), db (+=). */
void ops_conv_backward(conv_plan *p, float *dx, float *dw, float *db, const float *dy,
                   const float *x, const float *w);

/* ---- convolution of any kernel, inference only (feature networks) ---------
 * y[B,Ho,Wo,Cout] (=) act(conv(x[B,H,W,Cin], w) + b), kernel kh x kw, strides
 * sh, sw, zero padding ph (top and bottom), pw (left and right), act = ReLU if
 * relu else identity; Ho = (H + 2 ph - kh) / sh + 1 (floor, as PyTorch). The
 * plan copies w [Cout,Cin,kh,kw] and b [Cout] (NULL = zero) when it is made. */
typedef struct conv2d_shape {
    int B, H, W, Cin, Cout, kh, kw, sh, sw, ph, pw;
} conv2d_shape;
typedef struct conv2d_plan conv2d_plan;
void ops_conv2d_out_size(const conv2d_shape *s, int *Ho, int *Wo);
int ops_conv2d_plan_create(conv2d_plan **p, const conv2d_shape *s, int ld_x, int ld_y, int relu, const float *w,
                       const float *b, err_t *err);
void ops_conv2d_plan_free(conv2d_plan *p);
void ops_conv2d_forward(conv2d_plan *p, float *y, const float *x);

/* ---- pooling and resizing (feature networks) ------------------------------
 * k x k max (max != 0) or average pooling, PyTorch's floor mode; padding pad
 * on every side is ignored (the average divides by the pixels inside the
 * image: count_include_pad=False). y (=) [B,Ho,Wo,C] with row stride ldy. */
void ops_pool2d_out_size(int H, int W, int k, int stride, int pad, int *Ho, int *Wo);
void ops_pool2d_forward(float *y, int ldy, const float *x, int ldx, int B, int H, int W, int C, int k, int stride,
                    int pad, int max);
/* y[B, C] (=) the mean over the HW pixels of each image. */
void ops_global_avgpool(float *y, const float *x, int ldx, int B, int HW, int C);
/* y[B,Ho,Wo,C] (=) bilinear resize of x[B,H,W,C] (both dense), as PyTorch's
 * F.interpolate(mode='bilinear', align_corners=False, antialias=False). */
void ops_resize_bilinear(float *y, const float *x, int B, int H, int W, int C, int Ho, int Wo);

/* ---- GroupNorm, optionally fused with SiLU --------------------------------
 * y = act(gamma * (x - mean_g) * rstd_g + beta), act = SiLU if silu else identity.
 * mean/rstd [B*G] are saved for the backward. */
void ops_groupnorm_forward(float *y, int ldy, float *mean, float *rstd, const float *x, int ldx,
                       const float *gamma, const float *beta, int B, int HW, int C, int G,
                       float eps, int silu);
/* dx (= or += by accumulate), dgamma (+=), dbeta (+=). */
void ops_groupnorm_backward(float *dx, int lddx, float *dgamma, float *dbeta, const float *dy, int lddy,
                        const float *x, int ldx, const float *mean, const float *rstd,
                        const float *gamma, const float *beta, int B, int HW, int C, int G,
                        int silu, int accumulate);

/* ---- bf16 (exec/executor.h, precisions) ----------------------------------
 * y[rows, C] (=, row stride ldy; may be x when the strides agree) the value
 * of x[rows, C] (row stride ldx) rounded to bf16: to nearest, ties to even,
 * every NaN to the quiet NaN 0x7FC0 (PyTorch's .bfloat16() and oneDNN's
 * conversion). ops_round_bf16 keeps it as a float (the low 16 bits zero),
 * ops_to_bf16 stores its 16 bits (oneDNN's bf16 memory). */
void ops_round_bf16(float *y, int ldy, const float *x, int ldx, size_t rows, int C);
void ops_to_bf16(uint16_t *y, int ldy, const float *x, int ldx, size_t rows, int C);

/* ---- layout: PyTorch's NCHW <-> our NHWC, for files and interop ------------ */
void ops_nchw_to_nhwc(float *dst, const float *src, int B, int C, int HW);
void ops_nhwc_to_nchw(float *dst, const float *src, int B, int C, int HW);

/* ---- element-wise --------------------------------------------------------- */
/* y = x * sigmoid(x) (y may equal x). */
void ops_silu_forward(float *y, const float *x, size_t n);
/* dx (=) dy * silu'(x). */
void ops_silu_backward(float *dx, const float *dy, const float *x, size_t n);
/* y[M, C] (row stride ldy) += x[M, C] (row stride ldx). */
void ops_add_rows(float *y, int ldy, const float *x, int ldx, int M, int C);
/* y[b, p, c] += v[b, c] for every pixel p < HW (contiguous rows of C). */
void ops_add_bias_per_sample(float *y, const float *v, int B, int HW, int C);
/* v[b, c] (=) sum over pixels p of dy[b, p, c]. */
void ops_sum_per_sample(float *v, const float *dy, int B, int HW, int C);
/* s[C] (=) the sum of x's rows [rows, C] (row stride ld), in row order. */
void ops_sum_rows(float *s, const float *x, int ld, size_t rows, int C);

/* Nearest 2x upsampling: y[B,2H,2W,C] (contiguous) from x[B,H,W,C] (row stride ldx). */
void ops_upsample2x_forward(float *y, const float *x, int ldx, int B, int H, int W, int C);
/* dx (+=, row stride lddx) = the sum of each 2x2 block of dy. */
void ops_upsample2x_backward(float *dx, int lddx, const float *dy, int B, int H, int W, int C);

/* Dropout with probability p on x[B, n_per_sample] in place: keep with
 * probability 1-p and scale by 1/(1-p). The mask of sample b is a pure function
 * of (seed, stream, b), so the backward regenerates it instead of storing it.
 * stream = rng_stream(step, layer << 16): its low 16 bits must be zero, the
 * sample index (B <= 65536) goes there. */
void ops_dropout_forward(float *x, int B, size_t n_per_sample, float p, uint64_t seed, uint64_t stream);
/* dx (=, in place allowed) = dy * mask / (1-p). */
void ops_dropout_backward(float *dx, const float *dy, int B, size_t n_per_sample, float p,
                      uint64_t seed, uint64_t stream);

/* The sampler steps' arithmetic over a whole batch (element-wise; threads over
 * the elements, so the bits do not depend on their number):
 * out[i] (=) a u[i] + b w[i], then + c z[i] when z is not NULL (out may alias
 * u, w or z). The DDPM and DDIM updates (diffusion.h) are this with their
 * coefficients. */
void ops_lincomb(float *out, float a, const float *u, float b, const float *w, float c, const float *z, size_t n);
/* out[i] (=) (x[i] - b e[i]) / a (out may alias x or e): x0 from x_t and the
 * predicted noise. */
void ops_unmix(float *out, const float *x, float b, const float *e, float a, size_t n);

/* Classifier-free guidance: out[i] (=) u[i] + w (c[i] - u[i]) (diffusers'
 * order of operations; out may alias u or c). */
void ops_guidance_mix(float *out, const float *c, const float *u, float w, size_t n);

/* Embedding lookup added to rows (class conditioning): y[b, :] += W[idx[b], :]
 * for b < B, rows of D (contiguous). */
void ops_embedding_forward(float *y, const float *W, const int32_t *idx, int B, int D);
/* dW[idx[b], :] += dy[b, :], b in increasing order (a row used by several
 * images gets their sum added in that order). */
void ops_embedding_backward(float *dW, const float *dy, const int32_t *idx, int B, int D);

/* Sinusoidal timestep embedding as diffusers' Timesteps: out[B, D] from t[B]. */
void ops_timestep_embedding(float *out, const float *t, int B, int D, int flip_sin_to_cos, float freq_shift);

/* ---- single-head self-attention block (diffusers Attention, one head) -----
 * out = x + Wo softmax(q k^T / sqrt(C)) v + bo with q,k,v = W{q,k,v} GN(x) + b;
 * its products in the precision of the executor it runs on (exec_precision).
 * Parameters: the 10 arrays of group_norm, to_q, to_k, to_v, to_out.0 (weight, bias). */
typedef struct attn_params {
    const float *gn_w, *gn_b, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
} attn_params;
typedef struct attn_grads {
    float *gn_w, *gn_b, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
} attn_grads;
/* What the forward saves for the backward: g,q,k,v,o [B*HW, C], p [B, HW, HW], mean/rstd [B*G]. */
typedef struct attn_saved {
    float *g, *q, *k, *v, *p, *o, *mean, *rstd;
} attn_saved;
/* Floats of scratch ops_attn_backward needs. */
size_t ops_attn_scratch_floats(int B, int HW, int C);
/* out (= , row stride ldo) from x (row stride ldx). */
void ops_attn_forward(float *out, int ldo, attn_saved *s, const float *x, int ldx, const attn_params *p,
                  int B, int HW, int C, int G, float eps);
/* dx (+=, row stride lddx), parameter grads (+=); scratch of ops_attn_scratch_floats. */
void ops_attn_backward(float *dx, int lddx, attn_grads *g, const float *dout, int lddo, const attn_saved *s,
                   const float *x, int ldx, const attn_params *p, int B, int HW, int C, int G,
                   float *scratch);

/* ---- training arithmetic (src/ops/optim.c) --------------------------------
 * Whole-buffer loops of the training step. Results do not depend on the thread
 * count: sums run over fixed chunks added in order. */

/* Squared error: returns sum((pred - target)^2) over n, each difference taken
 * in float and squared and summed in double; dpred (=, may be NULL, may be
 * pred) = gscale * (pred - target). The MSE over N values and its gradient are
 * the sum / N with gscale = 2 / N. */
double ops_sq_error(float *dpred, const float *pred, const float *target, size_t n, float gscale);
/* Mean squared error: returns mean((pred-target)^2) over n; dpred (=, may be
 * NULL) = its gradient 2 (pred-target) / n. */
double ops_mse_loss(float *dpred, const float *pred, const float *target, size_t n);

/* The sum of x[i]^2 in double (the global gradient norm's square). */
double ops_sum_squares(const float *x, size_t n);

/* x_t of the forward process for `rows` images of `per` values:
 * xt[i] (=) a[i] x0[i] + b[i] eps[i] (xt may be x0 or eps). */
void ops_q_sample_rows(float *xt, const float *x0, const float *eps, const float *a, const float *b, int rows,
                   size_t per);

/* One step of Adam (torch.optim.Adam, bias corrections folded into c1, c2)
 * with the gradient scaled first (global-norm clipping), then the EMA of the
 * new weights, fused in one pass over the parameters:
 *   g = scale grad;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= c1 m / (c2 sqrt(v) + eps);  ema = decay ema + (1-decay) p
 * with c1 = lr / (1 - beta1^k), c2 = 1 / sqrt(1 - beta2^k) at step k. */
typedef struct adam_ema_coef {
    float scale, b1, b2, c1, c2, eps, decay;
} adam_ema_coef;
void ops_adam_ema_update(float *p, float *m, float *v, float *ema, const float *grad, size_t n, const adam_ema_coef *c);

#endif
