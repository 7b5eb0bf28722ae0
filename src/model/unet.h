/* unet.h -- the DDPM noise-prediction U-Net (diffusers UNet2DModel semantics):
 * one parameter table with the diffusers state-dict names, forward and
 * backward over NHWC batches, every buffer sized when it is built.
 *
 * Its work is done by networks of units (conv_in, resnet, attention,
 * downsample, upsample, output head; src/model/net.h), one per shard.
 *
 * Shards: a batch is split into shards (unet_shard_count(B) of them by
 * default, or as many as unet_create_sharded asks), each a complete network
 * over its images that shares the parameters and runs on one thread; the
 * executor (exec/executor.h) runs them on a team of workers and sums their
 * gradients in a fixed tree, so the arithmetic of every image and the
 * gradient sum do not depend on the thread count, and a process that runs an
 * aligned block of a batch's shards computes a subtree of the same sum
 * (data-parallel training over MPI, see train/trainer.h). A default-built
 * network of fewer than 8 images is one network run by one worker with
 * multi-threaded operators (faster at tiny batches; its bits may depend on
 * the thread count). What is bit-identical across what: docs/determinism.md. */
#ifndef DDPM_UNET_H
#define DDPM_UNET_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/config.h"

/* One parameter tensor: its diffusers name, PyTorch shape, and place in the flat buffers. */
typedef struct param_info {
    char name[96];
    int ndim;
    int shape[4];
    size_t offset, numel;
} param_info;

/* Dropout randomness for one forward: masks are a function of (seed, step, layer). */
typedef struct unet_dropout {
    uint64_t seed, step;
    uint64_t image0; /* index of the pass's first image in the global batch (the masks are keyed by it) */
} unet_dropout;

typedef struct unet {
    unet_config cfg;
    int batch;            /* every forward/backward runs exactly this many images */
    int training;         /* backward available (gradient buffers exist) */
    int precision;        /* of its convolutions and matrix products: EXEC_FP32, EXEC_BF16 or EXEC_BF16_EMULATED */
    int ntensors;
    param_info *table;    /* ntensors entries, diffusers registration order */
    size_t nparams;
    float *params;        /* [nparams] */
    float *grads;         /* [nparams] when training, else NULL: passes add (+=) to it */

    /* private: the networks that do the work, one per shard (unet.c), and the
     * executor that runs them (exec/executor.h) */
    int nshards;
    struct net **shards;
    struct executor *exec;
} unet;

/* Shards a batch of `batch` images is split into by default: the largest
 * power of two <= min(8, batch / 4), at least 1. */
int unet_shard_count(int batch);

/* Builds the network for `batch` images: every primitive, and the workers'
 * buffers (activations, saved tensors, backward temporaries, oneDNN
 * scratchpads) sized for them, are made here, for the thread count of now
 * (thread_set_count). Parameters start at zero: load them or call
 * unet_init_official. training != 0 adds what the backward needs. */
int unet_create(unet **u, const unet_config *cfg, int batch, int training, err_t *err);

/* As unet_create, with the batch split into exactly `shards` shards (1..batch;
 * shard s holds images [s*batch/shards, (s+1)*batch/shards)), each on one
 * thread, even when there is one: bitwise the same with any thread count. */
int unet_create_sharded(unet **u, const unet_config *cfg, int batch, int shards, int training, err_t *err);

/* How a network runs: its shards (0: unet_create's default; else as
 * unet_create_sharded), and the precision of its convolutions and matrix
 * products (exec/executor.h: EXEC_FP32, EXEC_BF16 -- which fails with a
 * message on a CPU without bf16 arithmetic -- or EXEC_BF16_EMULATED). */
typedef struct unet_exec {
    int shards;
    int precision;
} unet_exec;
int unet_create_exec(unet **u, const unet_config *cfg, int batch, const unet_exec *x, int training, err_t *err);
void unet_free(unet *u);

/* The official DDPM initialisation (variance scaling, fan_avg, uniform; the
 * second conv of each resnet, each attention's output projection and conv_out
 * at scale 1e-10; biases 0; GroupNorm 1/0), from seed. */
void unet_init_official(unet *u, uint64_t seed);

/* out[B,H,W,out_channels] = eps_theta(x[B,H,W,in_channels], t[B], y[B]) (NHWC).
 * t holds 0-based timesteps as floats. y: the class labels of a conditional
 * model (cfg.num_class_embeds > 0), each in [0, num_class_embeds); NULL means
 * the last class (ddpm's null class); unconditional models ignore y.
 * dropout == NULL (or cfg.dropout == 0) means no dropout (inference).
 * Returns 0, or -1 with err set (err->oom for memory) when an operator
 * failed (out is then unspecified). */
int unet_forward(unet *u, float *out, const float *x, const float *t, const int32_t *y, const unet_dropout *dropout,
                 err_t *err);

/* The gradient of a loss of the network's output, asked for group by group:
 * dout[n,H,W,out_channels] (=) d loss / d out for the n images from image0 of
 * the batch, whose output is out[n,H,W,out_channels]. Called from several
 * threads at once (for distinct groups). */
typedef void (*unet_loss_grad)(void *ctx, int image0, int n, const float *out, float *dout);

/* One training pass on a training network: out (=) forward(x, t) as
 * unet_forward, then grads (+=) d loss / d params and dx (=, may be NULL)
 * d loss / d x, with the loss's gradient from loss(ctx, ...). A shard's
 * backward runs right after its forward, so shards can share arenas.
 * Returns 0, or -1 with err set as unet_forward (out, dx and the
 * gradients are then unspecified). */
int unet_train_pass(unet *u, float *out, float *dx, const float *x, const float *t, const int32_t *y,
                    const unet_dropout *dropout, unet_loss_grad loss, void *ctx, err_t *err);

/* Index of the parameter named `name` in u->table, or -1. */
int unet_param_index(const unet *u, const char *name);

/* Bytes of activation memory the network holds (for reports). */
size_t unet_arena_bytes(const unet *u);

/* Floating-point operations of one forward pass of one image (multiply-add = 2). */
double unet_forward_flops(const unet *u);

#endif
