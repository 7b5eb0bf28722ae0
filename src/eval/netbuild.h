/* netbuild.h -- internal to src/eval: how the feature networks are written.
 *
 * A network is one forward function (inception.c, fmnist_net.c) that calls
 * nb_conv for each convolution in order. The first call of the forward is the
 * build pass: each nb_conv reads its layer's weights from the open
 * safetensors file, checks their shapes and makes its convolution plan, and
 * nothing is computed; every later call only runs the plans. So the
 * architecture is written once, and a bad weights file fails when the network
 * is opened. Temporaries come from a scratch arena (nb_tmp) that nb_reset
 * empties; the build pass measures how big it must be.
 */
#ifndef DDPM_NETBUILD_H
#define DDPM_NETBUILD_H

#include "featnet.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#define NB_MAX_CONV 128

/* A [B, H, W, C] activation whose rows are ld floats apart (a channel slice
 * of a concatenation when ld > C). */
typedef struct t4 {
    float *p;
    int H, W, C, ld;
} t4;

/* A kernel: kh x kw, stride s, zero padding ph (rows) and pw (columns). */
typedef struct kern {
    int kh, kw, s, ph, pw;
} kern;

struct featnet {
    int kind, B, in_h, in_w, dim, classes;
    struct executor *exec;      /* one worker with every thread: the plans are built and run for it */
    const char *label;
    /* layers */
    conv2d_plan *conv[NB_MAX_CONV];
    int nconv, cursor;
    int bn;                     /* weights are NAME.conv.weight + NAME.bn.* (folded), else NAME.weight/.bias */
    float *fc_w, *fc_b;         /* logits = feats fc_w^T (+ fc_b) */
    /* memory */
    float *input;               /* [B, in_h, in_w, 3 or 1]: the batch as the network takes it */
    float *staged;              /* [B, h, w, 3]: a batch before resizing (Inception) */
    size_t staged_cap;
    float *act[2];              /* ping-pong activations */
    size_t act_cap;
    float *scratch;
    size_t scratch_cap, scratch_used, scratch_peak;
    /* build pass */
    int building, failed;
    const st_file *st;
    err_t *err;
};

t4 nb_slice(t4 t, int c0, int C);
/* A dense [B, H, W, C] temporary from the scratch arena. */
t4 nb_tmp(featnet *n, int H, int W, int C);
void nb_reset(featnet *n);
/* y = ReLU(conv(x) + b) with layer `name` (prefix.name when prefix is set);
 * y.C is the output channel count, y.H/y.W must match the kernel's output. */
t4 nb_conv(featnet *n, const char *prefix, const char *name, t4 x, kern k, t4 y);
/* y = k x k max (max != 0) or average pool (count_include_pad=False) of x. */
t4 nb_pool(featnet *n, t4 x, int k, int stride, int pad, int max, t4 y);
/* Reads tensor `name` of exactly the given shape into a new buffer (build pass). */
float *nb_tensor(featnet *n, const char *name, int ndim, const int64_t *shape);

/* The forward passes: x [B, in_h, in_w, C] -> feats [B, dim], logits [B, classes]. */
void inception_forward(featnet *n, const float *x, float *feats, float *logits);
void fmnist_forward(featnet *n, const float *x, float *feats, float *logits);
/* The built-in F-MNIST weights (safetensors bytes). */
extern const unsigned char fmnist_weights[];
extern const unsigned char fmnist_weights_end[];

#endif
