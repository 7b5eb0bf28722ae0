/* net_build.c -- a network from its config: the parameter table (diffusers'
 * names, in registration order), the units in forward order with their
 * parameters and saved tensors, the activation arena's views (concat buffers
 * for the skips), the convolution plans, and the sizes a pass needs of a
 * worker's buffers (net.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/executor.h"
#include "net.h"

/* The skips the down path pushes: the conv_in output, then per level one per
 * resnet and one for the downsampler. */
#define MAX_SKIPS (1 + UNET_MAX_LEVELS * (UNET_MAX_LAYERS_PER_BLOCK + 1))
/* Resnets per up block: one more than layers_per_block. */
#define MAX_UP_RESNETS (UNET_MAX_LAYERS_PER_BLOCK + 1)

typedef struct builder {
    net *u;
    size_t act, saved, scratch;   /* running arena sizes (floats) */
    size_t saved_base, saved_max; /* inference: where every unit's saved tensors start, and their end */
    int layers;                   /* dropout layer ids handed out */
    err_t *err;
} builder;

static size_t take(size_t *top, size_t n) {
    size_t off = *top;
    *top += (n + 15) / 16 * 16;
    return off;
}

static size_t add_param(builder *b, int ndim, const int *shape, const char *fmt, ...) {
    net *u = b->u;
    ERR_ASSERT(u->ntensors < u->cap_tensors); /* net_capacity counts them */
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

/* PREFIX.weight and PREFIX.bias of a k x k convolution, a linear layer and a norm. */
static wb add_conv(builder *b, int cout, int cin, int k, const char *prefix) {
    int ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    wb p = {add_param(b, 4, ws, "%s.weight", prefix), 0};
    p.b = add_param(b, 1, bs, "%s.bias", prefix);
    return p;
}

static wb add_linear(builder *b, int out, int in, const char *prefix) {
    int ws[2] = {out, in}, bs[1] = {out};
    wb p = {add_param(b, 2, ws, "%s.weight", prefix), 0};
    p.b = add_param(b, 1, bs, "%s.bias", prefix);
    return p;
}

static wb add_norm(builder *b, int c, const char *prefix) {
    int s[1] = {c};
    wb p = {add_param(b, 1, s, "%s.weight", prefix), 0};
    p.b = add_param(b, 1, s, "%s.bias", prefix);
    return p;
}

static net_unit *new_unit(builder *b, int kind, int H, int W, int cin, int cout, view in, view out) {
    net *u = b->u;
    ERR_ASSERT(u->nunits < u->cap_units); /* net_capacity counts them */
    net_unit *x = &u->units[u->nunits++];
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

/* "PREFIX.NAME" into name. */
static const char *join(char *name, size_t len, const char *prefix, const char *part) {
    snprintf(name, len, "%s.%s", prefix, part);
    return name;
}

/* Resnet unit (diffusers ResnetBlock2D): parameters in registration order
 * norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut. */
static void build_resnet(builder *b, const char *prefix, int H, int W, int cin, int cout, view in, view out) {
    net *u = b->u;
    int B = u->batch, Dt = 4 * u->cfg.block_out[0], G = u->cfg.norm_groups;
    size_t M = (size_t)B * H * W;
    net_unit *x = new_unit(b, U_RESNET, H, W, cin, cout, in, out);
    resnet_unit *r = &x->res;
    char name[96];
    r->norm1 = add_norm(b, cin, join(name, sizeof name, prefix, "norm1"));
    r->conv1 = add_conv(b, cout, cin, 3, join(name, sizeof name, prefix, "conv1"));
    r->temb_proj = add_linear(b, cout, Dt, join(name, sizeof name, prefix, "time_emb_proj"));
    r->norm2 = add_norm(b, cout, join(name, sizeof name, prefix, "norm2"));
    r->conv2 = add_conv(b, cout, cout, 3, join(name, sizeof name, prefix, "conv2"));
    if (cin != cout) r->shortcut = add_conv(b, cout, cin, 1, join(name, sizeof name, prefix, "conv_shortcut"));
    r->layer = b->layers++ & 0xffff;
    r->saved.h1 = take(&b->saved, M * cin);
    r->saved.c1 = take(&b->saved, M * cout);
    r->saved.h2 = take(&b->saved, M * cout);
    r->saved.temb = take(&b->saved, (size_t)B * cout);
    r->saved.mean1 = take(&b->saved, (size_t)B * G);
    r->saved.rstd1 = take(&b->saved, (size_t)B * G);
    r->saved.mean2 = take(&b->saved, (size_t)B * G);
    r->saved.rstd2 = take(&b->saved, (size_t)B * G);
    need_scratch(b, 2 * M * cout + M * cin + (size_t)B * cout + 64);
}

static void build_attn(builder *b, const char *prefix, int H, int W, int C, view in, view out) {
    net *u = b->u;
    int B = u->batch, HW = H * W, G = u->cfg.norm_groups;
    size_t M = (size_t)B * HW;
    attn_unit *a = &new_unit(b, U_ATTN, H, W, C, C, in, out)->attn;
    char name[96];
    a->norm = add_norm(b, C, join(name, sizeof name, prefix, "group_norm"));
    a->q = add_linear(b, C, C, join(name, sizeof name, prefix, "to_q"));
    a->k = add_linear(b, C, C, join(name, sizeof name, prefix, "to_k"));
    a->v = add_linear(b, C, C, join(name, sizeof name, prefix, "to_v"));
    a->out = add_linear(b, C, C, join(name, sizeof name, prefix, "to_out.0"));
    a->saved.g = take(&b->saved, M * C);
    a->saved.q = take(&b->saved, M * C);
    a->saved.k = take(&b->saved, M * C);
    a->saved.v = take(&b->saved, M * C);
    a->saved.p = take(&b->saved, (size_t)B * HW * HW); /* softmax */
    a->saved.o = take(&b->saved, M * C);
    a->saved.mean = take(&b->saved, (size_t)B * G);
    a->saved.rstd = take(&b->saved, (size_t)B * G);
    need_scratch(b, ops_attn_scratch_floats(B, HW, C));
}

static int make_plan(builder *b, conv_plan **p, int H, int W, int cin, int cout, int stride, int pad,
                     int ldx, int ldy) {
    return ops_conv_plan_create(p, b->u->batch, H, W, cin, cout, stride, pad, ldx, ldy, b->u->training, b->err);
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
    skip skips[MAX_SKIPS];
    int nskip = 0;

    /* 1. Which tensors the down path pushes (channels, resolution). */
    skips[nskip++] = (skip){D0, S, {0, 0}};
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < n; j++) skips[nskip++] = (skip){c->block_out[i], S >> i, {0, 0}};
        if (i < L - 1) skips[nskip++] = (skip){c->block_out[i], S >> (i + 1), {0, 0}};
    }
    /* 2. One concat buffer per up-block resnet: [the running activation | the
     * popped skip], the skip writing straight into its right part. */
    view cat[UNET_MAX_LEVELS][MAX_UP_RESNETS];
    int top = nskip;
    for (int i = 0; i < L; i++) {
        int res = S >> (L - 1 - i), outc = c->block_out[L - 1 - i], prev = i == 0 ? c->block_out[L - 1] : c->block_out[L - i];
        for (int j = 0; j <= n; j++) {
            skip *s = &skips[--top];
            int hc = j == 0 ? prev : outc, w = hc + s->C;
            ERR_ASSERT(s->H == res);
            cat[i][j] = plain(b, res, res, w);
            s->v = (view){cat[i][j].off + (size_t)hc, w};
        }
    }
    ERR_ASSERT(top == 0);

    /* 3. Parameters and units in forward order. */
    char name[96];
    net_unit *x = new_unit(b, U_CONV_IN, S, S, c->in_channels, D0, (view){0, c->in_channels}, skips[0].v);
    x->conv.conv = add_conv(b, D0, c->in_channels, 3, "conv_in");
    if (make_plan(b, &x->c1, S, S, c->in_channels, D0, 1, CONV_PAD_SAME, c->in_channels, skips[0].v.ld)) return -1;
    temb_unit *te = &u->temb;
    te->linear_1 = add_linear(b, Dt, D0, "time_embedding.linear_1");
    te->linear_2 = add_linear(b, Dt, Dt, "time_embedding.linear_2");
    if (c->num_class_embeds > 0) {
        int cs[2] = {c->num_class_embeds, Dt};
        te->class_emb = add_param(b, 2, cs, "class_embedding.weight");
    }
    size_t *ts[] = {&te->saved.emb, &te->saved.a1, &te->saved.s1, &te->saved.out, &te->saved.act};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) *ts[i] = take(&b->saved, (size_t)B * Dt);
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
            net_unit *d = new_unit(b, U_DOWN, res, res, C, C, h, skips[k].v);
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            d->conv.conv = add_conv(b, C, C, 3, name);
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
        }
        if (i < L - 1) {
            view out = {cat[i + 1][0].off, cat[i + 1][0].ld};
            net_unit *up = new_unit(b, U_UP, res, res, co, co, h, out);
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
            up->conv.conv = add_conv(b, co, co, 3, name);
            up->conv.saved.up = take(&b->saved, (size_t)B * 4 * res * res * co);
            if (make_plan(b, &up->c1, 2 * res, 2 * res, co, co, 1, CONV_PAD_SAME, co, out.ld)) return -1;
            need_scratch(b, (size_t)B * 4 * res * res * co);
            h = out;
        }
        C = co;
    }
    net_unit *o = new_unit(b, U_OUT, S, S, D0, c->out_channels, h, (view){0, c->out_channels});
    o->head.norm = add_norm(b, D0, "conv_norm_out");
    o->head.conv = add_conv(b, c->out_channels, D0, 3, "conv_out");
    o->head.saved.h = take(&b->saved, (size_t)B * S * S * D0);
    o->head.saved.mean = take(&b->saved, (size_t)B * c->norm_groups);
    o->head.saved.rstd = take(&b->saved, (size_t)B * c->norm_groups);
    if (make_plan(b, &o->c1, S, S, D0, c->out_channels, 1, CONV_PAD_SAME, D0, c->out_channels)) return -1;
    need_scratch(b, (size_t)B * S * S * D0);
    if (b->saved_max > b->saved) b->saved = b->saved_max;

    /* Resnet conv plans (need the final views, made last). */
    for (int i = 0; i < u->nunits; i++) {
        net_unit *r = &u->units[i];
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

void net_free(net *u) {
    if (!u) return;
    for (int i = 0; i < u->nunits; i++) {
        ops_conv_plan_free(u->units[i].c1);
        ops_conv_plan_free(u->units[i].c2);
    }
    free(u->units);
    free(u->table);
    free(u->dtemb_act);
    free(u->labels);
    free(u);
}

int net_create(net **out, const unet_config *cfg, int batch, int training, int image0, err_t *err) {
    *out = NULL;
    net *u = mem_calloc(1, sizeof *u, err);
    if (!u) return -1;
    u->cfg = *cfg;
    u->batch = batch;
    u->training = training;
    u->image0 = image0;
    net_capacity(cfg, &u->cap_units, &u->cap_tensors);
    u->units = mem_calloc((size_t)u->cap_units, sizeof *u->units, err);
    u->table = mem_calloc((size_t)u->cap_tensors, sizeof *u->table, err);
    if (!u->units || !u->table) goto fail;
    builder b = {.u = u, .err = err};
    if (build(&b)) goto fail;
    u->act_len = b.act;
    u->saved_len = b.saved;
    u->scratch_len = training ? b.scratch : 0;
    if (cfg->num_class_embeds > 0 && !(u->labels = mem_calloc((size_t)batch, sizeof *u->labels, err))) goto fail;
    if (training && !(u->dtemb_act = mem_alloc_floats((size_t)batch * 4 * cfg->block_out[0], err))) goto fail;
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

size_t net_conv_weights(const net_unit *r, int second) {
    switch (r->kind) {
    case U_RESNET: return second ? r->res.conv2.w : r->res.conv1.w;
    case U_OUT: return r->head.conv.w;
    default: return r->conv.conv.w;
    }
}

double net_flops(const net *u) {
    double f = 0;
    const unet_config *c = &u->cfg;
    int Dt = 4 * c->block_out[0];
    f += 2.0 * (c->block_out[0] * Dt + Dt * Dt);
    for (int i = 0; i < u->nunits; i++) {
        const net_unit *r = &u->units[i];
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
