/* inception.c -- pytorch-fid's FID Inception-v3 (torchvision's Inception3
 * with FIDInceptionA/C/E_1/E_2, num_classes 1008, no aux head), forward only,
 * on 299x299x3 inputs in [-1, 1]. Every convolution is a BasicConv2d: conv
 * without bias, BatchNorm (eps 1e-3, folded into the weights), ReLU. Block
 * outputs are concatenations: each branch writes its channel slice directly.
 * Parameter names are the state_dict's ("Mixed_5b.branch1x1.conv.weight"). */
#include "netbuild.h"

static const kern K1 = {1, 1, 1, 0, 0}, K3 = {3, 3, 1, 1, 1}, K3V = {3, 3, 1, 0, 0}, K3S2 = {3, 3, 2, 0, 0},
                  K5 = {5, 5, 1, 2, 2}, K1x7 = {1, 7, 1, 0, 3}, K7x1 = {7, 1, 1, 3, 0}, K1x3 = {1, 3, 1, 0, 1},
                  K3x1 = {3, 1, 1, 1, 0};

static t4 act(featnet *n, int i, int H, int W, int C) { return (t4){n->act[i], H, W, C, C}; }

/* FIDInceptionA: 1x1 | 1x1, 5x5 | 1x1, 3x3, 3x3 | avg pool, 1x1 -> 64 + 64 + 96 + pf. */
static void block_a(featnet *n, const char *m, t4 x, t4 y, int pf) {
    int H = x.H, W = x.W;
    nb_reset(n);
    nb_conv(n, m, "branch1x1", x, K1, nb_slice(y, 0, 64));
    t4 t = nb_conv(n, m, "branch5x5_1", x, K1, nb_tmp(n, H, W, 48));
    nb_conv(n, m, "branch5x5_2", t, K5, nb_slice(y, 64, 64));
    t = nb_conv(n, m, "branch3x3dbl_1", x, K1, nb_tmp(n, H, W, 64));
    t = nb_conv(n, m, "branch3x3dbl_2", t, K3, nb_tmp(n, H, W, 96));
    nb_conv(n, m, "branch3x3dbl_3", t, K3, nb_slice(y, 128, 96));
    t = nb_pool(n, x, 3, 1, 1, 0, nb_tmp(n, H, W, x.C));
    nb_conv(n, m, "branch_pool", t, K1, nb_slice(y, 224, pf));
}

/* InceptionB (Mixed_6a): 3x3/2 | 1x1, 3x3, 3x3/2 | max pool/2 -> 384 + 96 + C. */
static void block_b(featnet *n, const char *m, t4 x, t4 y) {
    nb_reset(n);
    nb_conv(n, m, "branch3x3", x, K3S2, nb_slice(y, 0, 384));
    t4 t = nb_conv(n, m, "branch3x3dbl_1", x, K1, nb_tmp(n, x.H, x.W, 64));
    t = nb_conv(n, m, "branch3x3dbl_2", t, K3, nb_tmp(n, x.H, x.W, 96));
    nb_conv(n, m, "branch3x3dbl_3", t, K3S2, nb_slice(y, 384, 96));
    nb_pool(n, x, 3, 2, 0, 1, nb_slice(y, 480, x.C));
}

/* FIDInceptionC: 1x1 | 1x1, 1x7, 7x1 | 1x1, 7x1, 1x7, 7x1, 1x7 | avg pool, 1x1 -> 4 x 192. */
static void block_c(featnet *n, const char *m, t4 x, t4 y, int c7) {
    int H = x.H, W = x.W;
    nb_reset(n);
    nb_conv(n, m, "branch1x1", x, K1, nb_slice(y, 0, 192));
    t4 t = nb_conv(n, m, "branch7x7_1", x, K1, nb_tmp(n, H, W, c7));
    t = nb_conv(n, m, "branch7x7_2", t, K1x7, nb_tmp(n, H, W, c7));
    nb_conv(n, m, "branch7x7_3", t, K7x1, nb_slice(y, 192, 192));
    t = nb_conv(n, m, "branch7x7dbl_1", x, K1, nb_tmp(n, H, W, c7));
    t = nb_conv(n, m, "branch7x7dbl_2", t, K7x1, nb_tmp(n, H, W, c7));
    t = nb_conv(n, m, "branch7x7dbl_3", t, K1x7, nb_tmp(n, H, W, c7));
    t = nb_conv(n, m, "branch7x7dbl_4", t, K7x1, nb_tmp(n, H, W, c7));
    nb_conv(n, m, "branch7x7dbl_5", t, K1x7, nb_slice(y, 384, 192));
    t = nb_pool(n, x, 3, 1, 1, 0, nb_tmp(n, H, W, x.C));
    nb_conv(n, m, "branch_pool", t, K1, nb_slice(y, 576, 192));
}

/* InceptionD (Mixed_7a): 1x1, 3x3/2 | 1x1, 1x7, 7x1, 3x3/2 | max pool/2 -> 320 + 192 + C. */
static void block_d(featnet *n, const char *m, t4 x, t4 y) {
    nb_reset(n);
    t4 t = nb_conv(n, m, "branch3x3_1", x, K1, nb_tmp(n, x.H, x.W, 192));
    nb_conv(n, m, "branch3x3_2", t, K3S2, nb_slice(y, 0, 320));
    t = nb_conv(n, m, "branch7x7x3_1", x, K1, nb_tmp(n, x.H, x.W, 192));
    t = nb_conv(n, m, "branch7x7x3_2", t, K1x7, nb_tmp(n, x.H, x.W, 192));
    t = nb_conv(n, m, "branch7x7x3_3", t, K7x1, nb_tmp(n, x.H, x.W, 192));
    nb_conv(n, m, "branch7x7x3_4", t, K3S2, nb_slice(y, 320, 192));
    nb_pool(n, x, 3, 2, 0, 1, nb_slice(y, 512, x.C));
}

/* FIDInceptionE_1 / _2: 1x1 | 1x1, (1x3 | 3x1) | 1x1, 3x3, (1x3 | 3x1) |
 * pool (E_1 average, E_2 max: pytorch-fid's quirk of the TF graph), 1x1
 * -> 320 + 768 + 768 + 192. */
static void block_e(featnet *n, const char *m, t4 x, t4 y, int max_pool) {
    int H = x.H, W = x.W;
    nb_reset(n);
    nb_conv(n, m, "branch1x1", x, K1, nb_slice(y, 0, 320));
    t4 t = nb_conv(n, m, "branch3x3_1", x, K1, nb_tmp(n, H, W, 384));
    nb_conv(n, m, "branch3x3_2a", t, K1x3, nb_slice(y, 320, 384));
    nb_conv(n, m, "branch3x3_2b", t, K3x1, nb_slice(y, 704, 384));
    t = nb_conv(n, m, "branch3x3dbl_1", x, K1, nb_tmp(n, H, W, 448));
    t = nb_conv(n, m, "branch3x3dbl_2", t, K3, nb_tmp(n, H, W, 384));
    nb_conv(n, m, "branch3x3dbl_3a", t, K1x3, nb_slice(y, 1088, 384));
    nb_conv(n, m, "branch3x3dbl_3b", t, K3x1, nb_slice(y, 1472, 384));
    t = nb_pool(n, x, 3, 1, 1, max_pool, nb_tmp(n, H, W, x.C));
    nb_conv(n, m, "branch_pool", t, K1, nb_slice(y, 1856, 192));
}

void inception_forward(featnet *n, const float *x, float *feats, float *logits) {
    (void)logits;
    t4 in = {(float *)x, 299, 299, 3, 3};
    /* Stem: 299 -> 149 -> 147 -> 147 -> pool 73 -> 73 -> 71 -> pool 35. */
    t4 a = nb_conv(n, NULL, "Conv2d_1a_3x3", in, K3S2, act(n, 0, 149, 149, 32));
    a = nb_conv(n, NULL, "Conv2d_2a_3x3", a, K3V, act(n, 1, 147, 147, 32));
    a = nb_conv(n, NULL, "Conv2d_2b_3x3", a, K3, act(n, 0, 147, 147, 64));
    a = nb_pool(n, a, 3, 2, 0, 1, act(n, 1, 73, 73, 64));
    a = nb_conv(n, NULL, "Conv2d_3b_1x1", a, K1, act(n, 0, 73, 73, 80));
    a = nb_conv(n, NULL, "Conv2d_4a_3x3", a, K3V, act(n, 1, 71, 71, 192));
    a = nb_pool(n, a, 3, 2, 0, 1, act(n, 0, 35, 35, 192));
    /* 35x35: Mixed_5b..5d; 17x17: Mixed_6a..6e; 8x8: Mixed_7a..7c. */
    block_a(n, "Mixed_5b", act(n, 0, 35, 35, 192), act(n, 1, 35, 35, 256), 32);
    block_a(n, "Mixed_5c", act(n, 1, 35, 35, 256), act(n, 0, 35, 35, 288), 64);
    block_a(n, "Mixed_5d", act(n, 0, 35, 35, 288), act(n, 1, 35, 35, 288), 64);
    block_b(n, "Mixed_6a", act(n, 1, 35, 35, 288), act(n, 0, 17, 17, 768));
    block_c(n, "Mixed_6b", act(n, 0, 17, 17, 768), act(n, 1, 17, 17, 768), 128);
    block_c(n, "Mixed_6c", act(n, 1, 17, 17, 768), act(n, 0, 17, 17, 768), 160);
    block_c(n, "Mixed_6d", act(n, 0, 17, 17, 768), act(n, 1, 17, 17, 768), 160);
    block_c(n, "Mixed_6e", act(n, 1, 17, 17, 768), act(n, 0, 17, 17, 768), 192);
    block_d(n, "Mixed_7a", act(n, 0, 17, 17, 768), act(n, 1, 8, 8, 1280));
    block_e(n, "Mixed_7b", act(n, 1, 8, 8, 1280), act(n, 0, 8, 8, 2048), 0);
    block_e(n, "Mixed_7c", act(n, 0, 8, 8, 2048), act(n, 1, 8, 8, 2048), 1);
    /* pool3: the 2048-d features. */
    if (!n->building) ops_global_avgpool(feats, n->act[1], 2048, n->B, 64, 2048);
}
