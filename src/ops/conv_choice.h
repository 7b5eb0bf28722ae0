/* conv_choice.h -- internal to src/ops: how a convolution's algorithms are
 * chosen by measurement (conv.c measures, conv_choice.c decides and
 * remembers). */
#ifndef DDPM_CONV_CHOICE_H
#define DDPM_CONV_CHOICE_H

#include "ops.h"

/* A plan's shape: what its algorithms are chosen for. */
typedef struct conv_key {
    int B, H, W, Cin, Cout, stride, pad, ld_x, ld_y, training;
    /* Not in the key: how the plan runs, which the measurement copies. */
    int shards;      /* plans sharing one weight preparation per step (a U-Net's shards) */
    int concurrency; /* copies running at once on as many threads (shards on the workers) */
} conv_key;

/* Seconds per run of each pass (and, at [CONV_PASSES], of preparing the
 * weights once per step) by each algorithm; -1: not offered. */
typedef struct conv_times {
    double s[CONV_ALGS][CONV_PASSES + 1];
} conv_times;

/* Times every algorithm offered for k (conv.c): each pass, k->concurrency
 * copies at once, and the weight preparation.
 * Returns 0, or -1 with err set when even the direct kernels fail. */
int ops_conv_measure(const conv_key *k, conv_times *t, err_t *err);

/* The passes' algorithms for k: pinned or decided before in this process,
 * else from the machine's cache, else measured now (and cached). Returns 0,
 * or -1 with err set. */
int ops_conv_choose(const conv_key *k, int alg[CONV_PASSES], err_t *err);

/* Records alg, forced by the flag, as this process's choice for k (not in
 * the cache): what a run folder then keeps. */
void ops_conv_choice_note(const conv_key *k, const int alg[CONV_PASSES]);

#endif
