/* net.h -- internal to src/model: one network over a block of a batch's
 * images (a shard of a unet, unet.h). It is a flat list of units (conv_in,
 * resnet, attention, downsample, upsample, output head) run in order forward
 * and in reverse backward; each unit names its parameters (offsets into the
 * unet's flat parameter and gradient buffers) and the tensors its backward
 * needs (offsets into the saved arena). net_build.c makes a net from a
 * config; net_run.c runs it on the calling worker (exec/executor.h).
 *
 * Skip connections cost no copy: each up-block resnet reads one concat
 * buffer, and the two producers of its halves (the running activation and
 * the popped skip) write straight into their channel slices. */
#ifndef DDPM_MODEL_NET_H
#define DDPM_MODEL_NET_H

#include <stddef.h>
#include <stdint.h>

#include "model/unet.h"
#include "ops/ops.h"

/* A tensor in the activation arena: the offset of its first row and its row stride. */
typedef struct view {
    size_t off;
    int ld;
} view;

/* A layer's weight and bias: offsets into the parameter (and gradient) buffers. */
typedef struct wb {
    size_t w, b;
} wb;

enum unit_kind { U_CONV_IN, U_RESNET, U_ATTN, U_DOWN, U_UP, U_OUT };

/* diffusers ResnetBlock2D: x + conv2(dropout(SiLU(GN2(conv1(SiLU(GN1(x))) + temb_proj(SiLU(temb)))))),
 * x through a 1x1 conv_shortcut when the channel counts differ. */
typedef struct resnet_unit {
    wb norm1, conv1, temb_proj, norm2, conv2, shortcut; /* shortcut: cin != cout only */
    int layer;                                          /* dropout layer id */
    struct {
        size_t h1;            /* SiLU(GN1(x)) */
        size_t c1;            /* conv1(h1) + the time embedding's projection */
        size_t h2;            /* dropout(SiLU(GN2(c1))) */
        size_t temb;          /* the time embedding's projection [B, cout] */
        size_t mean1, rstd1, mean2, rstd2;
    } saved;
} resnet_unit;

/* diffusers Attention (one head) over the pixels. */
typedef struct attn_unit {
    wb norm, q, k, v, out;
    struct {
        size_t g, q, k, v, p, o, mean, rstd; /* as attn_saved (ops.h) */
    } saved;
} attn_unit;

/* conv_in, a downsampler (stride 2) or an upsampler (nearest 2x, then the conv). */
typedef struct conv_unit {
    wb conv;
    struct {
        size_t up; /* the upsampled input (upsamplers) */
    } saved;
} conv_unit;

/* conv_out(SiLU(conv_norm_out(x))). */
typedef struct out_unit {
    wb norm, conv;
    struct {
        size_t h; /* SiLU(conv_norm_out(x)) */
        size_t mean, rstd;
    } saved;
} out_unit;

typedef struct net_unit {
    int kind;
    int H, W;           /* input resolution */
    int cin, cout;
    view in, out;
    conv_plan *c1, *c2; /* the unit's convolutions (c2: a resnet's second) */
    union {
        resnet_unit res;
        attn_unit attn;
        conv_unit conv;
        out_unit head;
    };
} net_unit;

/* The time embedding: sinusoidal, linear_1, SiLU, linear_2 (+ the class
 * embedding), SiLU; every resnet projects the last. */
typedef struct temb_unit {
    wb linear_1, linear_2;
    size_t class_emb; /* class_embedding.weight (conditional models) */
    struct {
        size_t emb, a1, s1, out, act;
    } saved;
} temb_unit;

/* A worker's buffers for a network's pass (exec/executor.h), after the operators' slots. */
enum net_slot {
    NET_SLOT_ACT = OPS_SLOTS, /* unit inputs and outputs */
    NET_SLOT_SAVED,           /* what the backward needs from the forward */
    NET_SLOT_DACT,            /* the activations' gradients (same offsets as act) */
    NET_SLOT_SCRATCH,         /* backward temporaries */
    NET_SLOT_DOUT,            /* the loss gradient of the output */
    NET_SLOTS
};

typedef struct net {
    unet_config cfg;
    int batch, training;
    int image0;           /* index of this network's first image in the whole batch (dropout streams) */
    int ntensors, cap_tensors;
    param_info *table;    /* ntensors entries, diffusers registration order */
    size_t nparams;
    int nunits, cap_units;
    net_unit *units;
    temb_unit temb;
    size_t x_in;          /* saved: a copy of the input */
    size_t act_len, saved_len, scratch_len; /* floats of NET_SLOT_ACT, _SAVED, _SCRATCH */
    int32_t *labels;      /* [batch] the last forward's class labels (conditional models) */
    float *dtemb_act;     /* [batch, temb_dim]: the time embedding's gradient */
    unet_dropout last_dropout; /* the masks the last forward used */
    int last_had_dropout;
    /* during a pass: the unet's parameters, this shard's gradients (+=), and
     * the running worker's buffers */
    float *params, *grads;
    float *act, *saved, *dact, *scratch;
} net;

/* ---- net_build.c ---------------------------------------------------------- */

/* The network for `batch` images from image0 of the whole batch. Made between
 * exec_build_begin and _end of the executor that runs it: its plans are for
 * that executor's threads, and what it needs of a worker's buffers is
 * reserved there. Returns 0, or -1 with err set. */
int net_create(net **n, const unet_config *cfg, int batch, int training, int image0, err_t *err);
void net_free(net *n);

/* Floating-point operations of one image's forward (multiply-add = 2). */
double net_flops(const net *n);

/* The offset of the weights of a unit's first or second convolution. */
size_t net_conv_weights(const net_unit *r, int second);

/* ---- net_run.c ------------------------------------------------------------ */

/* One pass over the whole batch's arrays; the net takes its images' part. */
typedef struct net_pass_args {
    float *out, *dx;
    const float *x, *t;
    const int32_t *y;           /* class labels, NULL: the null class (conditional models) */
    const unet_dropout *dropout;
    unet_loss_grad loss;        /* NULL: forward only */
    void *ctx;
} net_pass_args;

/* On the calling worker: the forward of the net's images, then (with a loss)
 * their loss gradient and the backward, gradients (+=) n->grads. A failure
 * is recorded on the worker (exec_run reports it). */
void net_pass(net *n, const net_pass_args *a);

#endif
