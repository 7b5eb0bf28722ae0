/* fmnist_net.c -- ddpm's F-MNIST feature network, forward only, on 28x28x1
 * inputs in [-1, 1] (tools/train_fmnist_features.py trains it; its weights,
 * fmnist_features.safetensors beside this file, are built into the program):
 *   conv1 1->32, conv2 32->32, max pool 2 (14x14), conv3 32->64, conv4 64->64,
 *   max pool 2 (7x7), conv5 64->128, conv6 128->256, global average pool
 *   -> 256 features; fc 256->10 -> class logits.
 * Every convolution is 3x3, padding 1, with bias and ReLU. */
#include "netbuild.h"

__asm__(".section .rodata\n"
        ".balign 64\n"
        ".globl fmnist_weights\n"
        ".hidden fmnist_weights\n"
        "fmnist_weights:\n"
        ".incbin \"src/eval/fmnist_features.safetensors\"\n"
        ".globl fmnist_weights_end\n"
        ".hidden fmnist_weights_end\n"
        "fmnist_weights_end:\n"
        ".previous\n");

static const kern K3 = {3, 3, 1, 1, 1};

void fmnist_forward(featnet *n, const float *x, float *feats, float *logits) {
    (void)logits;
    float *a = n->act[0], *b = n->act[1];
    t4 t = {(float *)x, 28, 28, 1, 1};
    t = nb_conv(n, NULL, "conv1", t, K3, (t4){a, 28, 28, 32, 32});
    t = nb_conv(n, NULL, "conv2", t, K3, (t4){b, 28, 28, 32, 32});
    t = nb_pool(n, t, 2, 2, 0, 1, (t4){a, 14, 14, 32, 32});
    t = nb_conv(n, NULL, "conv3", t, K3, (t4){b, 14, 14, 64, 64});
    t = nb_conv(n, NULL, "conv4", t, K3, (t4){a, 14, 14, 64, 64});
    t = nb_pool(n, t, 2, 2, 0, 1, (t4){b, 7, 7, 64, 64});
    t = nb_conv(n, NULL, "conv5", t, K3, (t4){a, 7, 7, 128, 128});
    t = nb_conv(n, NULL, "conv6", t, K3, (t4){b, 7, 7, 256, 256});
    if (!n->building) ops_global_avgpool(feats, t.p, 256, n->B, 49, 256);
}
