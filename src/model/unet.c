/* unet.c -- the U-Net as its users see it (unet.h): the networks of its
 * shards (net.h), built for and run by its executor (exec/executor.h), one
 * parameter table and buffer shared by all, gradients summed in the
 * executor's tree; and the official initialisation. */
#include "unet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "exec/executor.h"
#include "net.h"

_Static_assert((int)NET_SLOTS <= (int)EXEC_SLOTS, "the executor has too few buffer slots");

int unet_shard_count(int batch) {
    int s = 1;
    while (2 * s <= 8 && 2 * s <= batch / 4) s *= 2;
    return s;
}

/* The network for `batch` images as S networks of consecutive images;
 * sharded: each on one thread (a worker each), else the one network on every
 * thread. */
static int create(unet **out, const unet_config *cfg, int batch, int S, int sharded, int precision, int training,
                  err_t *err) {
    *out = NULL;
    if (unet_config_check(cfg, err)) return -1;
    if (batch < 1 || batch > 65536) return err_fail(err, "batch size must be in 1..65536, is %d", batch);
    if (S < 1 || S > batch) return err_fail(err, "%d shards for a batch of %d images", S, batch);
    unet *u = mem_calloc(1, sizeof *u, err);
    if (!u) return -1;
    u->cfg = *cfg;
    u->batch = batch;
    u->training = training;
    u->precision = precision;
    u->shards = mem_calloc(S, sizeof *u->shards, err);
    exec_config ec = {.nshards = S, .threads = 0, .sharded = sharded, .precision = precision};
    if (!u->shards || exec_create(&u->exec, &ec, err)) goto fail;
    u->nshards = S;
    exec_build_begin(u->exec);
    int rc = 0;
    for (int s = 0; s < S && rc == 0; s++) {
        int b0 = (int)((long long)s * batch / S), b1 = (int)((long long)(s + 1) * batch / S);
        rc = net_create(&u->shards[s], cfg, b1 - b0, training, b0, err);
    }
    net *s0 = u->shards[0];
    if (rc == 0 && training) exec_reserve_grads(u->exec, s0->nparams);
    if (exec_build_end(u->exec, rc ? NULL : err) || rc) goto fail;
    /* One copy of each convolution's weights in oneDNN's layout, for all shards. */
    for (int s = 0; s < S; s++)
        for (int i = 0; i < s0->nunits; i++) {
            if (s0->units[i].c1) ops_conv_plan_share(u->shards[s]->units[i].c1, s0->units[i].c1);
            if (s0->units[i].c2) ops_conv_plan_share(u->shards[s]->units[i].c2, s0->units[i].c2);
        }
    u->ntensors = s0->ntensors;
    u->nparams = s0->nparams;
    u->table = mem_alloc(sizeof *u->table * u->ntensors, err);
    u->params = mem_alloc_floats(u->nparams, err);
    if (!u->table || !u->params || (training && !(u->grads = mem_alloc_floats(u->nparams, err)))) goto fail;
    memcpy(u->table, s0->table, sizeof *u->table * u->ntensors);
    for (int s = 0; s < S; s++) u->shards[s]->params = u->params;
    *out = u;
    return 0;
fail:
    unet_free(u);
    return -1;
}

int unet_create_exec(unet **out, const unet_config *cfg, int batch, const unet_exec *x, int training, err_t *err) {
    int S = x->shards > 0 ? x->shards : batch >= 1 ? unet_shard_count(batch) : 1;
    return create(out, cfg, batch, S, x->shards > 0 || S > 1, x->precision, training, err);
}

int unet_create(unet **out, const unet_config *cfg, int batch, int training, err_t *err) {
    return unet_create_exec(out, cfg, batch, &(unet_exec){0, EXEC_FP32}, training, err);
}

int unet_create_sharded(unet **out, const unet_config *cfg, int batch, int S, int training, err_t *err) {
    if (S < 1) return err_fail(err, "%d shards for a batch of %d images", S, batch);
    return unet_create_exec(out, cfg, batch, &(unet_exec){S, EXEC_FP32}, training, err);
}

void unet_free(unet *u) {
    if (!u) return;
    for (int s = 0; u->shards && s < u->nshards; s++) net_free(u->shards[s]);
    free(u->shards);
    exec_free(u->exec);
    free(u->table);
    free(u->params);
    free(u->grads);
    free(u);
}

int unet_param_index(const unet *u, const char *name) {
    for (int i = 0; i < u->ntensors; i++)
        if (!strcmp(u->table[i].name, name)) return i;
    return -1;
}

size_t unet_arena_bytes(const unet *u) { return exec_bytes(u->exec); }

double unet_forward_flops(const unet *u) { return net_flops(u->shards[0]); }

/* ---- initialisation ------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void unet_init_official(unet *u, uint64_t seed) {
    for (int i = 0; i < u->ntensors; i++) {
        const param_info *p = &u->table[i];
        float *w = u->params + p->offset;
        if (p->ndim == 1) {
            /* Biases 0; GroupNorm scales 1. */
            int is_norm_scale = ends_with(p->name, ".weight");
            for (size_t k = 0; k < p->numel; k++) w[k] = is_norm_scale ? 1.0f : 0.0f;
            continue;
        }
        int rf = p->ndim == 4 ? p->shape[2] * p->shape[3] : 1;
        double fan_in = (double)p->shape[1] * rf, fan_out = (double)p->shape[0] * rf;
        double scale = (strstr(p->name, ".conv2.") || strstr(p->name, ".to_out.0.") ||
                        !strncmp(p->name, "conv_out.", 9)) ? 1e-10 : 1.0;
        double limit = sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0));
        rng_uniform(w, p->numel, seed, RNG_INIT, (uint64_t)i);
        for (size_t k = 0; k < p->numel; k++) w[k] = (float)((2.0 * w[k] - 1.0) * limit);
    }
}

/* ---- passes ------------------------------------------------------------------ */

typedef struct pass {
    net_pass_args a;
    unet *u;
} pass;

static void shard_pass(void *ctx, int shard, float *grads) {
    const pass *p = ctx;
    net *sh = p->u->shards[shard];
    sh->grads = grads;
    net_pass(sh, &p->a);
}

/* A pass over the shards on the executor: the weights in oneDNN's layout
 * made once, then the shards, their gradients (+=) u->grads in the
 * executor's fixed tree. */
static int run_pass(unet *u, const net_pass_args *a, const char *what, err_t *err) {
    net *s0 = u->shards[0];
    exec_take_failure(NULL); /* the calling thread's: none of this pass's yet */
    for (int i = 0; i < s0->nunits; i++) {
        net_unit *r = &s0->units[i];
        if (r->c1) ops_conv_prepare(r->c1, u->params + net_conv_weights(r, 0));
        if (r->c2) ops_conv_prepare(r->c2, u->params + net_conv_weights(r, 1));
    }
    pass p = {*a, u};
    if (exec_take_failure(err) || exec_run(u->exec, shard_pass, &p, a->loss ? u->grads : NULL, err))
        return err_wrap(err, "the U-Net's %s", what);
    return 0;
}

int unet_forward(unet *u, float *out, const float *x, const float *t, const int32_t *y, const unet_dropout *dropout,
                 err_t *err) {
    net_pass_args a = {.out = out, .x = x, .t = t, .y = y, .dropout = dropout};
    return run_pass(u, &a, "forward pass", err);
}

int unet_train_pass(unet *u, float *out, float *dx, const float *x, const float *t, const int32_t *y,
                    const unet_dropout *dropout, unet_loss_grad loss, void *ctx, err_t *err) {
    ERR_ASSERT(u->training && loss != NULL);
    net_pass_args a = {out, dx, x, t, y, dropout, loss, ctx};
    return run_pass(u, &a, "training pass", err);
}
