/* unet.c -- building the U-Net from its config (parameter table, units, arenas,
 * convolution plans) and running it forward and backward. */
#include "unet.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "exec/executor.h"
#include "ops/ops.h"

/* A tensor in the activation arena: offset of its first row and its row stride. */
typedef struct view {
    size_t off;
    int ld;
} view;

enum unit_kind { U_CONV_IN, U_RESNET, U_ATTN, U_DOWN, U_UP, U_OUT };

typedef struct unet_unit {
    int kind;
    int H, W;           /* input resolution */
    int cin, cout;
    view in, out;
    size_t p[12];       /* parameter offsets, in registration order */
    int layer;          /* dropout layer id (resnets) */
    conv_plan *c1, *c2; /* the unit's convolutions */
    size_t s[8];        /* saved-arena offsets */
} unet_unit;

/* A worker's buffers for a network's pass (exec/executor.h), after the operators' slots. */
enum net_slot {
    NET_SLOT_ACT = OPS_SLOTS, /* unit inputs and outputs */
    NET_SLOT_SAVED,           /* what the backward needs from the forward */
    NET_SLOT_DACT,            /* the activations' gradients (same offsets as act) */
    NET_SLOT_SCRATCH,         /* backward temporaries */
    NET_SLOT_DOUT,            /* the loss gradient of the output */
    NET_SLOTS
};
_Static_assert((int)NET_SLOTS <= (int)EXEC_SLOTS, "the executor has too few buffer slots");

/* One network over `batch` consecutive images of the whole batch (a shard):
 * units, their plans, and the sizes of what it uses in a worker's buffers. */
typedef struct net {
    unet_config cfg;
    int batch, training;
    int image0;           /* index of this network's first image in the whole batch (dropout streams) */
    int ntensors, cap_tensors;
    param_info *table;    /* ntensors entries, diffusers registration order */
    size_t nparams;
    int nunits, cap_units;
    unet_unit *units;
    size_t act_len, saved_len, scratch_len;
    size_t temb[6];       /* saved offsets: e, a1, s1, out, act; dact (in scratch-free region) */
    int temb_index;       /* table index of time_embedding.linear_1.weight (then its bias, linear_2's) */
    size_t x_in;          /* saved copy of the input */
    size_t class_emb;     /* offset of class_embedding.weight (conditional models) */
    int32_t *labels;      /* [batch] the last forward's class labels (conditional models) */
    float *dtemb_act;     /* [batch, temb_dim] */
    unet_dropout last_dropout; /* the masks the last forward used */
    int last_had_dropout;
    /* during a pass: the unet's parameters and gradients (this shard's, +=), and
     * the running worker's buffers */
    float *params, *grads;
    float *act, *saved, *dact, *scratch;
} net;

/* ---- building ------------------------------------------------------------- */

typedef struct builder {
    net *u;
    size_t act, saved, scratch; /* running arena sizes (floats) */
    size_t saved_base, saved_max; /* inference: where every unit's saved tensors start, and their end */
    int layers;                 /* dropout layer ids handed out */
    ddpm_err *err;
} builder;

static size_t take(size_t *top, size_t n) {
    size_t off = *top;
    *top += (n + 15) / 16 * 16;
    return off;
}

static size_t add_param(builder *b, int ndim, const int *shape, const char *fmt, ...) {
    net *u = b->u;
    DDPM_ASSERT(u->ntensors < u->cap_tensors); /* net_capacity counts them */
    param_info *p = &u->table[u->ntensors++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < 4; i++) p->shape[i] = i < ndim ? shape[i] : 0;
    for (int i = 0; i < ndim; i++) p->numel *= (size_t)shape[i];
    p->offset = u->nparams;
    u->nparams += p->numel;
    return p->offset;
}

static void add_conv(builder *b, size_t *w, size_t *bias, int cout, int cin, int k, const char *prefix) {
    int ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    *w = add_param(b, 4, ws, "%s.weight", prefix);
    *bias = add_param(b, 1, bs, "%s.bias", prefix);
}

static void add_linear(builder *b, size_t *w, size_t *bias, int out, int in, const char *prefix) {
    int ws[2] = {out, in}, bs[1] = {out};
    *w = add_param(b, 2, ws, "%s.weight", prefix);
    *bias = add_param(b, 1, bs, "%s.bias", prefix);
}

static void add_norm(builder *b, size_t *w, size_t *bias, int c, const char *prefix) {
    int s[1] = {c};
    *w = add_param(b, 1, s, "%s.weight", prefix);
    *bias = add_param(b, 1, s, "%s.bias", prefix);
}

static unet_unit *new_unit(builder *b, int kind, int H, int W, int cin, int cout, view in, view out) {
    net *u = b->u;
    DDPM_ASSERT(u->nunits < u->cap_units); /* net_capacity counts them */
    unet_unit *x = &u->units[u->nunits++];
    memset(x, 0, sizeof *x);
    if (!u->training) {
        /* Without a backward, what a unit saves is needed only while it runs:
         * every unit's saved tensors share one region. */
        if (b->saved > b->saved_max) b->saved_max = b->saved;
        b->saved = b->saved_base;
    }
    x->kind = kind; x->H = H; x->W = W; x->cin = cin; x->cout = cout; x->in = in; x->out = out;
    return x;
}

static view plain(builder *b, int H, int W, int C) {
    view v = {take(&b->act, (size_t)b->u->batch * H * W * C), C};
    return v;
}

static void need_scratch(builder *b, size_t n) {
    if (n > b->scratch) b->scratch = n;
}

/* Resnet unit (diffusers ResnetBlock2D): params in registration order
 * norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut. */
static void build_resnet(builder *b, const char *prefix, int H, int W, int cin, int cout, view in, view out) {
    net *u = b->u;
    int B = u->batch, Dt = 4 * u->cfg.block_out[0], G = u->cfg.norm_groups;
    size_t M = (size_t)B * H * W;
    unet_unit *r = new_unit(b, U_RESNET, H, W, cin, cout, in, out);
    char name[96];
    snprintf(name, sizeof name, "%s.norm1", prefix); add_norm(b, &r->p[0], &r->p[1], cin, name);
    snprintf(name, sizeof name, "%s.conv1", prefix); add_conv(b, &r->p[2], &r->p[3], cout, cin, 3, name);
    snprintf(name, sizeof name, "%s.time_emb_proj", prefix); add_linear(b, &r->p[4], &r->p[5], cout, Dt, name);
    snprintf(name, sizeof name, "%s.norm2", prefix); add_norm(b, &r->p[6], &r->p[7], cout, name);
    snprintf(name, sizeof name, "%s.conv2", prefix); add_conv(b, &r->p[8], &r->p[9], cout, cout, 3, name);
    if (cin != cout) {
        int ws[4] = {cout, cin, 1, 1}, bs[1] = {cout};
        r->p[10] = add_param(b, 4, ws, "%s.conv_shortcut.weight", prefix);
        r->p[11] = add_param(b, 1, bs, "%s.conv_shortcut.bias", prefix);
    }
    r->layer = b->layers++ & 0xffff;
    r->s[0] = take(&b->saved, M * cin);       /* h1 = silu(gn1(x)) */
    r->s[1] = take(&b->saved, M * cout);      /* c1 = conv1(h1) + temb */
    r->s[2] = take(&b->saved, M * cout);      /* h2 = dropout(silu(gn2(c1))) */
    r->s[3] = take(&b->saved, (size_t)B * cout); /* temb projection */
    r->s[4] = take(&b->saved, (size_t)B * G); /* mean1 */
    r->s[5] = take(&b->saved, (size_t)B * G); /* rstd1 */
    r->s[6] = take(&b->saved, (size_t)B * G); /* mean2 */
    r->s[7] = take(&b->saved, (size_t)B * G); /* rstd2 */
    need_scratch(b, 2 * M * cout + M * cin + (size_t)B * cout + 64);
}

static void build_attn(builder *b, const char *prefix, int H, int W, int C, view in, view out) {
    net *u = b->u;
    int B = u->batch, HW = H * W, G = u->cfg.norm_groups;
    size_t M = (size_t)B * HW;
    unet_unit *a = new_unit(b, U_ATTN, H, W, C, C, in, out);
    char name[96];
    snprintf(name, sizeof name, "%s.group_norm", prefix); add_norm(b, &a->p[0], &a->p[1], C, name);
    snprintf(name, sizeof name, "%s.to_q", prefix); add_linear(b, &a->p[2], &a->p[3], C, C, name);
    snprintf(name, sizeof name, "%s.to_k", prefix); add_linear(b, &a->p[4], &a->p[5], C, C, name);
    snprintf(name, sizeof name, "%s.to_v", prefix); add_linear(b, &a->p[6], &a->p[7], C, C, name);
    snprintf(name, sizeof name, "%s.to_out.0", prefix); add_linear(b, &a->p[8], &a->p[9], C, C, name);
    for (int i = 0; i < 4; i++) a->s[i] = take(&b->saved, M * C); /* g q k v */
    a->s[4] = take(&b->saved, (size_t)B * HW * HW);                 /* softmax */
    a->s[5] = take(&b->saved, M * C);                               /* o */
    a->s[6] = take(&b->saved, (size_t)B * G);
    a->s[7] = take(&b->saved, (size_t)B * G);
    need_scratch(b, attn_scratch_floats(B, HW, C));
}

static int make_plan(builder *b, conv_plan **p, int H, int W, int cin, int cout, int stride, int pad,
                     int ldx, int ldy) {
    return conv_plan_create(p, b->u->batch, H, W, cin, cout, stride, pad, ldx, ldy, b->u->training, b->err);
}

/* Skip tensors pushed by the down path, in push order. */
typedef struct skip {
    int C, H;
    view v; /* its slice of the concat buffer that consumes it */
} skip;

static int build(builder *b) {
    net *u = b->u;
    const unet_config *c = &u->cfg;
    int L = c->levels, n = c->layers_per_block, B = u->batch, S = c->sample_size;
    int D0 = c->block_out[0], Dt = 4 * D0;
    skip skips[UNET_MAX_LEVELS * 18];
    int nskip = 0;

    /* 1. Which tensors the down path pushes (channels, resolution). */
    skips[nskip++] = (skip){D0, S, {0, 0}};
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < n; j++) skips[nskip++] = (skip){c->block_out[i], S >> i, {0, 0}};
        if (i < L - 1) skips[nskip++] = (skip){c->block_out[i], S >> (i + 1), {0, 0}};
    }
    /* 2. One concat buffer per up-block resnet; the popped skip owns its right part. */
    view cat[UNET_MAX_LEVELS][17];
    int cat_h[UNET_MAX_LEVELS][17];
    int top = nskip;
    for (int i = 0; i < L; i++) {
        int res = S >> (L - 1 - i), outc = c->block_out[L - 1 - i], prev = i == 0 ? c->block_out[L - 1] : c->block_out[L - i];
        for (int j = 0; j <= n; j++) {
            skip *s = &skips[--top];
            int hc = j == 0 ? prev : outc, w = hc + s->C;
            DDPM_ASSERT(s->H == res);
            cat[i][j] = plain(b, res, res, w);
            cat_h[i][j] = hc;
            s->v = (view){cat[i][j].off + (size_t)hc, w};
        }
    }
    DDPM_ASSERT(top == 0);

    /* 3. Parameters and units in forward order. */
    size_t w, bias;
    char name[96];
    unet_unit *x = new_unit(b, U_CONV_IN, S, S, c->in_channels, D0, (view){0, c->in_channels}, skips[0].v);
    add_conv(b, &x->p[0], &x->p[1], D0, c->in_channels, 3, "conv_in");
    if (make_plan(b, &x->c1, S, S, c->in_channels, D0, 1, CONV_PAD_SAME, c->in_channels, skips[0].v.ld)) return -1;
    u->temb_index = u->ntensors;
    add_linear(b, &w, &bias, Dt, D0, "time_embedding.linear_1");
    add_linear(b, &w, &bias, Dt, Dt, "time_embedding.linear_2");
    if (c->num_class_embeds > 0) {
        int cs[2] = {c->num_class_embeds, Dt};
        u->class_emb = add_param(b, 2, cs, "class_embedding.weight");
    }
    for (int i = 0; i < 6; i++) u->temb[i] = take(&b->saved, (size_t)B * Dt);
    u->x_in = take(&b->saved, (size_t)B * S * S * c->in_channels);
    b->saved_base = b->saved_max = b->saved;
    need_scratch(b, 3 * (size_t)B * Dt);

    int k = 1, C = D0;
    view h = skips[0].v;
    for (int i = 0; i < L; i++) {
        int res = S >> i, co = c->block_out[i];
        for (int j = 0; j < n; j++, k++) {
            view out = c->down_attn[i] ? plain(b, res, res, co) : skips[k].v;
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            build_resnet(b, name, res, res, C, co, h, out);
            if (c->down_attn[i]) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                build_attn(b, name, res, res, co, out, skips[k].v);
            }
            h = skips[k].v;
            C = co;
        }
        if (i < L - 1) {
            unet_unit *d = new_unit(b, U_DOWN, res, res, C, C, h, skips[k].v);
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            add_conv(b, &d->p[0], &d->p[1], C, C, 3, name);
            if (make_plan(b, &d->c1, res, res, C, C, 2, c->downsample_padding ? CONV_PAD_SAME : CONV_PAD_TF,
                          h.ld, skips[k].v.ld))
                return -1;
            need_scratch(b, (size_t)B * res * res * h.ld);
            h = skips[k++].v;
        }
    }
    int res = S >> (L - 1);
    view m1 = plain(b, res, res, C), m2 = plain(b, res, res, C);
    build_resnet(b, "mid_block.resnets.0", res, res, C, C, h, m1);
    build_attn(b, "mid_block.attentions.0", res, res, C, m1, m2);
    view m3 = {cat[0][0].off, cat[0][0].ld};
    build_resnet(b, "mid_block.resnets.1", res, res, C, C, m2, m3);

    for (int i = 0; i < L; i++) {
        res = S >> (L - 1 - i);
        int co = c->block_out[L - 1 - i];
        for (int j = 0; j <= n; j++) {
            view in = cat[i][j];
            /* Where this unit's result goes: the next concat's left part, or a plain buffer. */
            view next;
            if (j < n) next = (view){cat[i][j + 1].off, cat[i][j + 1].ld};
            else next = plain(b, res, res, co);
            view out = c->up_attn[i] ? plain(b, res, res, co) : next;
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            build_resnet(b, name, res, res, in.ld, co, in, out);
            if (c->up_attn[i]) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                build_attn(b, name, res, res, co, out, next);
            }
            h = next;
            (void)cat_h;
        }
        if (i < L - 1) {
            view out = {cat[i + 1][0].off, cat[i + 1][0].ld};
            unet_unit *up = new_unit(b, U_UP, res, res, co, co, h, out);
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
            add_conv(b, &up->p[0], &up->p[1], co, co, 3, name);
            up->s[0] = take(&b->saved, (size_t)B * 4 * res * res * co);
            if (make_plan(b, &up->c1, 2 * res, 2 * res, co, co, 1, CONV_PAD_SAME, co, out.ld)) return -1;
            need_scratch(b, (size_t)B * 4 * res * res * co);
            h = out;
        }
        C = co;
    }
    unet_unit *o = new_unit(b, U_OUT, S, S, D0, c->out_channels, h, (view){0, c->out_channels});
    add_norm(b, &o->p[0], &o->p[1], D0, "conv_norm_out");
    add_conv(b, &o->p[2], &o->p[3], c->out_channels, D0, 3, "conv_out");
    o->s[0] = take(&b->saved, (size_t)B * S * S * D0);
    o->s[1] = take(&b->saved, (size_t)B * c->norm_groups);
    o->s[2] = take(&b->saved, (size_t)B * c->norm_groups);
    if (make_plan(b, &o->c1, S, S, D0, c->out_channels, 1, CONV_PAD_SAME, D0, c->out_channels)) return -1;
    need_scratch(b, (size_t)B * S * S * D0);
    if (b->saved_max > b->saved) b->saved = b->saved_max;

    /* Resnet conv plans (need the final views, made last). */
    for (int i = 0; i < u->nunits; i++) {
        unet_unit *r = &u->units[i];
        if (r->kind != U_RESNET) continue;
        if (make_plan(b, &r->c1, r->H, r->W, r->cin, r->cout, 1, CONV_PAD_SAME, r->cin, r->cout) ||
            make_plan(b, &r->c2, r->H, r->W, r->cout, r->cout, 1, CONV_PAD_SAME, r->cout, r->out.ld))
            return -1;
    }
    return 0;
}

/* Units and parameter tensors a network of this config has, at most. */
static void net_capacity(const unet_config *c, int *units, int *tensors) {
    int L = c->levels, n = c->layers_per_block;
    *units = 2 + L * (2 * n + 1) + 3 + L * (2 * (n + 1) + 1);
    *tensors = 12 * *units + 8;
}

static void net_free(net *u) {
    if (!u) return;
    for (int i = 0; i < u->nunits; i++) {
        conv_plan_free(u->units[i].c1);
        conv_plan_free(u->units[i].c2);
    }
    free(u->units);
    free(u->table);
    free(u->dtemb_act);
    free(u->labels);
    free(u);
}

/* One network computing `batch` images (image0.. of the whole batch). Made
 * between exec_build_begin and _end: its plans are for the executor's
 * threads, and what it needs of a worker's buffers is reserved there. */
static int net_create(net **out, const unet_config *cfg, int batch, int training, int image0, ddpm_err *err) {
    *out = NULL;
    net *u = ddpm_calloc(1, sizeof *u, err);
    if (!u) return -1;
    u->cfg = *cfg;
    u->batch = batch;
    u->training = training;
    u->image0 = image0;
    net_capacity(cfg, &u->cap_units, &u->cap_tensors);
    u->units = ddpm_calloc((size_t)u->cap_units, sizeof *u->units, err);
    u->table = ddpm_calloc((size_t)u->cap_tensors, sizeof *u->table, err);
    if (!u->units || !u->table) goto fail;
    builder b = {.u = u, .err = err};
    if (build(&b)) goto fail;
    u->act_len = b.act;
    u->saved_len = b.saved;
    u->scratch_len = training ? b.scratch : 0;
    if (cfg->num_class_embeds > 0 && !(u->labels = ddpm_calloc((size_t)batch, sizeof *u->labels, err))) goto fail;
    if (training && !(u->dtemb_act = ddpm_alloc_floats((size_t)batch * 4 * cfg->block_out[0], err))) goto fail;
    size_t hw = (size_t)cfg->sample_size * cfg->sample_size;
    exec_reserve(NET_SLOT_ACT, sizeof(float) * u->act_len);
    exec_reserve(NET_SLOT_SAVED, sizeof(float) * u->saved_len);
    if (training) {
        exec_reserve(NET_SLOT_DACT, sizeof(float) * u->act_len);
        exec_reserve(NET_SLOT_SCRATCH, sizeof(float) * u->scratch_len);
        exec_reserve(NET_SLOT_DOUT, sizeof(float) * batch * hw * cfg->out_channels);
    }
    *out = u;
    return 0;
fail:
    net_free(u);
    return -1;
}

int unet_shard_count(int batch) {
    int s = 1;
    while (2 * s <= 8 && 2 * s <= batch / 4) s *= 2;
    return s;
}

/* The network for `batch` images as S networks of consecutive images;
 * sharded: each on one thread (a worker each), else the one network on every
 * thread. */
static int create(unet **out, const unet_config *cfg, int batch, int S, int sharded, int training, ddpm_err *err) {
    *out = NULL;
    if (unet_config_check(cfg, err)) return -1;
    if (batch < 1 || batch > 65536) return ddpm_fail(err, "batch size must be in 1..65536, is %d", batch);
    if (S < 1 || S > batch) return ddpm_fail(err, "%d shards for a batch of %d images", S, batch);
    unet *u = ddpm_calloc(1, sizeof *u, err);
    if (!u) return -1;
    u->cfg = *cfg;
    u->batch = batch;
    u->training = training;
    u->shards = ddpm_calloc(S, sizeof *u->shards, err);
    exec_config ec = {.nshards = S, .threads = 0, .sharded = sharded};
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
            if (s0->units[i].c1) conv_plan_share(u->shards[s]->units[i].c1, s0->units[i].c1);
            if (s0->units[i].c2) conv_plan_share(u->shards[s]->units[i].c2, s0->units[i].c2);
        }
    u->ntensors = s0->ntensors;
    u->nparams = s0->nparams;
    u->table = ddpm_malloc(sizeof *u->table * u->ntensors, err);
    u->params = ddpm_alloc_floats(u->nparams, err);
    if (!u->table || !u->params || (training && !(u->grads = ddpm_alloc_floats(u->nparams, err)))) goto fail;
    memcpy(u->table, s0->table, sizeof *u->table * u->ntensors);
    for (int s = 0; s < S; s++) u->shards[s]->params = u->params;
    *out = u;
    return 0;
fail:
    unet_free(u);
    return -1;
}

int unet_create(unet **out, const unet_config *cfg, int batch, int training, ddpm_err *err) {
    int S = batch >= 1 ? unet_shard_count(batch) : 1;
    return create(out, cfg, batch, S, S > 1, training, err);
}

int unet_create_sharded(unet **out, const unet_config *cfg, int batch, int S, int training, ddpm_err *err) {
    return create(out, cfg, batch, S, 1, training, err);
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

/* ---- forward ---------------------------------------------------------------- */

#define P(o) (u->params + (o))
#define GR(o) (u->grads + (o))
#define A(v) (u->act + (v).off)
#define D(v) (u->dact + (v).off)
#define SV(o) (u->saved + (o))

static void resnet_forward(net *u, unet_unit *r, const unet_dropout *dp) {
    int B = u->batch, HW = r->H * r->W, G = u->cfg.norm_groups, Dt = 4 * u->cfg.block_out[0];
    float eps = u->cfg.norm_eps;
    groupnorm_forward(SV(r->s[0]), r->cin, SV(r->s[4]), SV(r->s[5]), A(r->in), r->in.ld, P(r->p[0]), P(r->p[1]),
                      B, HW, r->cin, G, eps, 1);
    conv_forward(r->c1, SV(r->s[1]), SV(r->s[0]), P(r->p[2]), P(r->p[3]));
    linear_forward(SV(r->s[3]), r->cout, SV(u->temb[4]), Dt, P(r->p[4]), P(r->p[5]), B, Dt, r->cout, 0);
    add_bias_per_sample(SV(r->s[1]), SV(r->s[3]), B, HW, r->cout);
    groupnorm_forward(SV(r->s[2]), r->cout, SV(r->s[6]), SV(r->s[7]), SV(r->s[1]), r->cout, P(r->p[6]),
                      P(r->p[7]), B, HW, r->cout, G, eps, 1);
    if (dp) dropout_forward(SV(r->s[2]), B, (size_t)HW * r->cout, u->cfg.dropout, dp->seed,
                            rng_stream(dp->step, (uint64_t)r->layer << 16) + dp->image0 + (uint64_t)u->image0);
    conv_forward(r->c2, A(r->out), SV(r->s[2]), P(r->p[8]), P(r->p[9]));
    if (r->cin != r->cout)
        linear_forward(A(r->out), r->out.ld, A(r->in), r->in.ld, P(r->p[10]), P(r->p[11]), B * HW, r->cin, r->cout, 1);
    else
        add_rows(A(r->out), r->out.ld, A(r->in), r->in.ld, B * HW, r->cout);
}

static attn_params attn_p(net *u, unet_unit *a) {
    attn_params p = {P(a->p[0]), P(a->p[1]), P(a->p[2]), P(a->p[3]), P(a->p[4]),
                     P(a->p[5]), P(a->p[6]), P(a->p[7]), P(a->p[8]), P(a->p[9])};
    return p;
}

static attn_saved attn_s(net *u, unet_unit *a) {
    attn_saved s = {SV(a->s[0]), SV(a->s[1]), SV(a->s[2]), SV(a->s[3]), SV(a->s[4]), SV(a->s[5]),
                    SV(a->s[6]), SV(a->s[7])};
    return s;
}

/* Offset of the weights of a unit's first or second convolution. */
static size_t conv_weights(const unet_unit *r, int second) {
    if (r->kind == U_RESNET) return r->p[second ? 8 : 2];
    return r->p[r->kind == U_OUT ? 2 : 0];
}

/* The forward of one network (no shards). */
static void net_forward(net *u, float *out, const float *x, const float *t, const int32_t *y,
                        const unet_dropout *dropout) {
    const unet_config *c = &u->cfg;
    int B = u->batch, D0 = c->block_out[0], Dt = 4 * D0, G = c->norm_groups;
    const unet_dropout *dp = c->dropout > 0 ? dropout : NULL;
    memcpy(SV(u->x_in), x, sizeof(float) * (size_t)B * c->sample_size * c->sample_size * c->in_channels);
    if (c->num_class_embeds > 0) /* the backward needs them too; no labels: the null class */
        for (int b = 0; b < B; b++) {
            u->labels[b] = y ? y[b] : c->num_class_embeds - 1;
            DDPM_ASSERT(u->labels[b] >= 0 && u->labels[b] < c->num_class_embeds);
        }

    /* Timestep embedding -> linear_1 -> SiLU -> linear_2; every resnet uses SiLU of it. */
    const param_info *tp = &u->table[u->temb_index];
    timestep_embedding(SV(u->temb[0]), t, B, D0, c->flip_sin_to_cos, c->freq_shift);
    linear_forward(SV(u->temb[1]), Dt, SV(u->temb[0]), D0, P(tp[0].offset), P(tp[1].offset), B, D0, Dt, 0);
    silu_forward(SV(u->temb[2]), SV(u->temb[1]), (size_t)B * Dt);
    linear_forward(SV(u->temb[3]), Dt, SV(u->temb[2]), Dt, P(tp[2].offset), P(tp[3].offset), B, Dt, Dt, 0);
    if (c->num_class_embeds > 0) embedding_forward(SV(u->temb[3]), P(u->class_emb), u->labels, B, Dt);
    silu_forward(SV(u->temb[4]), SV(u->temb[3]), (size_t)B * Dt);

    for (int i = 0; i < u->nunits; i++) {
        unet_unit *r = &u->units[i];
        int HW = r->H * r->W;
        switch (r->kind) {
        case U_CONV_IN:
            conv_forward(r->c1, A(r->out), SV(u->x_in), P(r->p[0]), P(r->p[1]));
            break;
        case U_RESNET:
            resnet_forward(u, r, dp);
            break;
        case U_ATTN: {
            attn_params p = attn_p(u, r);
            attn_saved s = attn_s(u, r);
            attn_forward(A(r->out), r->out.ld, &s, A(r->in), r->in.ld, &p, B, HW, r->cin, G, c->norm_eps);
            break;
        }
        case U_DOWN:
            conv_forward(r->c1, A(r->out), A(r->in), P(r->p[0]), P(r->p[1]));
            break;
        case U_UP:
            upsample2x_forward(SV(r->s[0]), A(r->in), r->in.ld, B, r->H, r->W, r->cin);
            conv_forward(r->c1, A(r->out), SV(r->s[0]), P(r->p[0]), P(r->p[1]));
            break;
        case U_OUT:
            groupnorm_forward(SV(r->s[0]), r->cin, SV(r->s[1]), SV(r->s[2]), A(r->in), r->in.ld, P(r->p[0]),
                              P(r->p[1]), B, HW, r->cin, G, c->norm_eps, 1);
            conv_forward(r->c1, out, SV(r->s[0]), P(r->p[2]), P(r->p[3]));
            break;
        }
    }
    u->last_dropout = dp ? *dp : (unet_dropout){0, 0, 0};
    u->last_had_dropout = dp != NULL;
}

/* ---- backward ---------------------------------------------------------------- */

static void resnet_backward(net *u, unet_unit *r) {
    int B = u->batch, HW = r->H * r->W, G = u->cfg.norm_groups, Dt = 4 * u->cfg.block_out[0];
    size_t M = (size_t)B * HW;
    float *dh2 = u->scratch, *dc1 = dh2 + M * r->cout, *dh1 = dc1 + M * r->cout, *dtp = dh1 + M * r->cin;
    if (r->cin != r->cout)
        linear_backward(D(r->in), r->in.ld, GR(r->p[10]), GR(r->p[11]), D(r->out), r->out.ld, A(r->in), r->in.ld,
                        P(r->p[10]), (int)M, r->cin, r->cout);
    else
        add_rows(D(r->in), r->in.ld, D(r->out), r->out.ld, (int)M, r->cout);
    conv_backward(r->c2, dh2, GR(r->p[8]), GR(r->p[9]), D(r->out), SV(r->s[2]), P(r->p[8]));
    if (u->last_had_dropout)
        dropout_backward(dh2, dh2, B, (size_t)HW * r->cout, u->cfg.dropout, u->last_dropout.seed,
                         rng_stream(u->last_dropout.step, (uint64_t)r->layer << 16) + u->last_dropout.image0 +
                             (uint64_t)u->image0);
    groupnorm_backward(dc1, r->cout, GR(r->p[6]), GR(r->p[7]), dh2, r->cout, SV(r->s[1]), r->cout, SV(r->s[6]),
                       SV(r->s[7]), P(r->p[6]), P(r->p[7]), B, HW, r->cout, G, 1, 0);
    sum_per_sample(dtp, dc1, B, HW, r->cout);
    linear_backward(u->dtemb_act, Dt, GR(r->p[4]), GR(r->p[5]), dtp, r->cout, SV(u->temb[4]), Dt, P(r->p[4]), B, Dt,
                    r->cout);
    conv_backward(r->c1, dh1, GR(r->p[2]), GR(r->p[3]), dc1, SV(r->s[0]), P(r->p[2]));
    groupnorm_backward(D(r->in), r->in.ld, GR(r->p[0]), GR(r->p[1]), dh1, r->cin, A(r->in), r->in.ld, SV(r->s[4]),
                       SV(r->s[5]), P(r->p[0]), P(r->p[1]), B, HW, r->cin, G, 1, 1);
}

/* The backward of one network after its forward: grads (+=), dx (=, may be NULL). */
static void net_backward(net *u, float *dx, const float *dout) {
    const unet_config *c = &u->cfg;
    int B = u->batch, D0 = c->block_out[0], Dt = 4 * D0, G = c->norm_groups;
    u->dact = exec_buffer(NET_SLOT_DACT, sizeof(float) * u->act_len);
    u->scratch = exec_buffer(NET_SLOT_SCRATCH, sizeof(float) * u->scratch_len);
    if (!u->dact || !u->scratch) return; /* out of memory: recorded (exec_buffer) */
    memset(u->dact, 0, sizeof(float) * u->act_len);
    memset(u->dtemb_act, 0, sizeof(float) * (size_t)B * Dt);
    for (int i = u->nunits - 1; i >= 0; i--) {
        unet_unit *r = &u->units[i];
        int HW = r->H * r->W;
        switch (r->kind) {
        case U_OUT:
            conv_backward(r->c1, u->scratch, GR(r->p[2]), GR(r->p[3]), dout, SV(r->s[0]), P(r->p[2]));
            groupnorm_backward(D(r->in), r->in.ld, GR(r->p[0]), GR(r->p[1]), u->scratch, r->cin, A(r->in), r->in.ld,
                               SV(r->s[1]), SV(r->s[2]), P(r->p[0]), P(r->p[1]), B, HW, r->cin, G, 1, 1);
            break;
        case U_UP:
            conv_backward(r->c1, u->scratch, GR(r->p[0]), GR(r->p[1]), D(r->out), SV(r->s[0]), P(r->p[0]));
            upsample2x_backward(D(r->in), r->in.ld, u->scratch, B, r->H, r->W, r->cin);
            break;
        case U_DOWN:
            conv_backward(r->c1, u->scratch, GR(r->p[0]), GR(r->p[1]), D(r->out), A(r->in), P(r->p[0]));
            add_rows(D(r->in), r->in.ld, u->scratch, r->in.ld, B * HW, r->cin);
            break;
        case U_ATTN: {
            attn_params p = attn_p(u, r);
            attn_saved s = attn_s(u, r);
            attn_grads g = {GR(r->p[0]), GR(r->p[1]), GR(r->p[2]), GR(r->p[3]), GR(r->p[4]),
                            GR(r->p[5]), GR(r->p[6]), GR(r->p[7]), GR(r->p[8]), GR(r->p[9])};
            attn_backward(D(r->in), r->in.ld, &g, D(r->out), r->out.ld, &s, A(r->in), r->in.ld, &p, B, HW, r->cin, G,
                          u->scratch);
            break;
        }
        case U_RESNET:
            resnet_backward(u, r);
            break;
        case U_CONV_IN:
            conv_backward(r->c1, dx, GR(r->p[0]), GR(r->p[1]), D(r->out), SV(u->x_in), P(r->p[0]));
            break;
        }
    }
    /* Time embedding MLP (the timesteps themselves get no gradient). */
    const param_info *tp = &u->table[u->temb_index];
    float *d3 = u->scratch, *d2 = d3 + (size_t)B * Dt, *d1 = d2 + (size_t)B * Dt;
    silu_backward(d3, u->dtemb_act, SV(u->temb[3]), (size_t)B * Dt);
    if (u->cfg.num_class_embeds > 0) embedding_backward(GR(u->class_emb), d3, u->labels, B, Dt);
    memset(d2, 0, sizeof(float) * (size_t)B * Dt);
    linear_backward(d2, Dt, GR(tp[2].offset), GR(tp[3].offset), d3, Dt, SV(u->temb[2]), Dt, P(tp[2].offset), B, Dt, Dt);
    silu_backward(d1, d2, SV(u->temb[1]), (size_t)B * Dt);
    linear_backward(NULL, 0, GR(tp[0].offset), GR(tp[1].offset), d1, Dt, SV(u->temb[0]), D0, P(tp[0].offset), B, D0, Dt);
}

/* ---- passes ------------------------------------------------------------------ */

typedef struct pass {
    float *out, *dx;
    const float *x, *t;
    const int32_t *y;    /* class labels, NULL: the null class (conditional models) */
    const unet_dropout *dropout;
    unet_loss_grad loss; /* NULL: forward only */
    void *ctx;
    unet *u;             /* the whole network */
} pass;

/* One network's part of a pass, on the calling worker: the forward of its
 * images, then (training) their loss gradient and the backward. */
static void net_pass(net *u, const pass *a) {
    const unet_config *c = &u->cfg;
    size_t hw = (size_t)c->sample_size * c->sample_size, b0 = (size_t)u->image0;
    u->act = exec_buffer(NET_SLOT_ACT, sizeof(float) * u->act_len);
    u->saved = exec_buffer(NET_SLOT_SAVED, sizeof(float) * u->saved_len);
    if (!u->act || !u->saved) return; /* out of memory: recorded (exec_buffer) */
    float *out = a->out + b0 * hw * c->out_channels;
    net_forward(u, out, a->x + b0 * hw * c->in_channels, a->t + b0, a->y ? a->y + b0 : NULL, a->dropout);
    if (!a->loss) return;
    float *dout = exec_buffer(NET_SLOT_DOUT, sizeof(float) * u->batch * hw * c->out_channels);
    if (!dout) return;
    a->loss(a->ctx, u->image0, u->batch, out, dout);
    net_backward(u, a->dx ? a->dx + b0 * hw * c->in_channels : NULL, dout);
}

static void shard_pass(void *ctx, int shard, float *grads) {
    const pass *a = ctx;
    net *sh = a->u->shards[shard];
    sh->grads = grads;
    net_pass(sh, a);
}

/* A pass over the shards on the executor: the gradients (+=) u->grads summed
 * in the executor's fixed tree. */
static int run_pass(unet *u, pass *a, const char *what, ddpm_err *err) {
    net *s0 = u->shards[0];
    exec_take_failure(NULL); /* the calling thread's: none of this pass's yet */
    for (int i = 0; i < s0->nunits; i++) {
        unet_unit *r = &s0->units[i];
        if (r->c1) conv_prepare(r->c1, u->params + conv_weights(r, 0));
        if (r->c2) conv_prepare(r->c2, u->params + conv_weights(r, 1));
    }
    a->u = u;
    if (exec_take_failure(err) || exec_run(u->exec, shard_pass, a, a->loss ? u->grads : NULL, err))
        return ddpm_wrap(err, "the U-Net's %s", what);
    return 0;
}

int unet_forward(unet *u, float *out, const float *x, const float *t, const int32_t *y, const unet_dropout *dropout,
                 ddpm_err *err) {
    pass a = {.out = out, .x = x, .t = t, .y = y, .dropout = dropout};
    return run_pass(u, &a, "forward pass", err);
}

int unet_train_pass(unet *u, float *out, float *dx, const float *x, const float *t, const int32_t *y,
                    const unet_dropout *dropout, unet_loss_grad loss, void *ctx, ddpm_err *err) {
    DDPM_ASSERT(u->training && loss != NULL);
    pass a = {out, dx, x, t, y, dropout, loss, ctx, NULL};
    return run_pass(u, &a, "training pass", err);
}

/* Floating-point operations of one image's forward. */
static double net_flops(const net *u) {

    double f = 0;
    const unet_config *c = &u->cfg;
    int Dt = 4 * c->block_out[0];
    f += 2.0 * (c->block_out[0] * Dt + Dt * Dt);
    for (int i = 0; i < u->nunits; i++) {
        const unet_unit *r = &u->units[i];
        double HW = (double)r->H * r->W;
        switch (r->kind) {
        case U_CONV_IN: case U_DOWN: case U_UP: case U_OUT: {
            double oHW = r->kind == U_DOWN ? HW / 4 : r->kind == U_UP ? HW * 4 : HW;
            f += 2.0 * 9 * r->cin * r->cout * oHW;
            break;
        }
        case U_RESNET:
            f += 2.0 * 9 * HW * ((double)r->cin * r->cout + (double)r->cout * r->cout) + 2.0 * Dt * r->cout;
            if (r->cin != r->cout) f += 2.0 * HW * r->cin * r->cout;
            break;
        case U_ATTN:
            f += 2.0 * HW * 4 * r->cin * r->cin + 2.0 * 2 * HW * HW * r->cin;
            break;
        }
    }
    return f;
}

double unet_forward_flops(const unet *u) { return net_flops(u->shards[0]); }
