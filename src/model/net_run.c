/* net_run.c -- a network's forward and backward on the calling worker: the
 * units in order, then in reverse, each reading its parameters and saved
 * tensors by name (net.h), with the activations, saved tensors and
 * temporaries in the worker's buffers. */
#include <string.h>

#include "core/rng.h"
#include "exec/executor.h"
#include "net.h"

#define P(o) (u->params + (o))
#define GR(o) (u->grads + (o))
#define A(v) (u->act + (v).off)
#define D(v) (u->dact + (v).off)
#define SV(o) (u->saved + (o))

/* ---- forward ---------------------------------------------------------------- */

/* The stream of a resnet's dropout masks in a pass (ops_dropout_forward, ops.h, adds the image index). */
static uint64_t dropout_stream(const net *u, const resnet_unit *r, const unet_dropout *dp) {
    return rng_stream(dp->step, (uint64_t)r->layer << 16) + dp->image0 + (uint64_t)u->image0;
}

static void resnet_forward(net *u, const net_unit *x, const unet_dropout *dp) {
    const resnet_unit *r = &x->res;
    int B = u->batch, HW = x->H * x->W, G = u->cfg.norm_groups, Dt = 4 * u->cfg.block_out[0];
    float eps = u->cfg.norm_eps;
    ops_groupnorm_forward(SV(r->saved.h1), x->cin, SV(r->saved.mean1), SV(r->saved.rstd1), A(x->in), x->in.ld,
                      P(r->norm1.w), P(r->norm1.b), B, HW, x->cin, G, eps, 1);
    ops_conv_forward(x->c1, SV(r->saved.c1), SV(r->saved.h1), P(r->conv1.w), P(r->conv1.b));
    ops_linear_forward(SV(r->saved.temb), x->cout, SV(u->temb.saved.act), Dt, P(r->temb_proj.w), P(r->temb_proj.b), B,
                   Dt, x->cout, 0);
    ops_add_bias_per_sample(SV(r->saved.c1), SV(r->saved.temb), B, HW, x->cout);
    ops_groupnorm_forward(SV(r->saved.h2), x->cout, SV(r->saved.mean2), SV(r->saved.rstd2), SV(r->saved.c1), x->cout,
                      P(r->norm2.w), P(r->norm2.b), B, HW, x->cout, G, eps, 1);
    if (dp) ops_dropout_forward(SV(r->saved.h2), B, (size_t)HW * x->cout, u->cfg.dropout, dp->seed, dropout_stream(u, r, dp));
    ops_conv_forward(x->c2, A(x->out), SV(r->saved.h2), P(r->conv2.w), P(r->conv2.b));
    if (x->cin != x->cout)
        ops_linear_forward(A(x->out), x->out.ld, A(x->in), x->in.ld, P(r->shortcut.w), P(r->shortcut.b), B * HW, x->cin,
                       x->cout, 1);
    else
        ops_add_rows(A(x->out), x->out.ld, A(x->in), x->in.ld, B * HW, x->cout);
}

static attn_params attn_p(const net *u, const attn_unit *a) {
    attn_params p = {P(a->norm.w), P(a->norm.b), P(a->q.w), P(a->q.b), P(a->k.w),
                     P(a->k.b),    P(a->v.w),    P(a->v.b), P(a->out.w), P(a->out.b)};
    return p;
}

static attn_saved attn_s(const net *u, const attn_unit *a) {
    attn_saved s = {SV(a->saved.g), SV(a->saved.q), SV(a->saved.k),    SV(a->saved.v),
                    SV(a->saved.p), SV(a->saved.o), SV(a->saved.mean), SV(a->saved.rstd)};
    return s;
}

static void net_forward(net *u, float *out, const float *x, const float *t, const int32_t *y,
                        const unet_dropout *dropout) {
    const unet_config *c = &u->cfg;
    const temb_unit *te = &u->temb;
    int B = u->batch, D0 = c->block_out[0], Dt = 4 * D0, G = c->norm_groups;
    const unet_dropout *dp = c->dropout > 0 ? dropout : NULL;
    memcpy(SV(u->x_in), x, sizeof(float) * (size_t)B * c->sample_size * c->sample_size * c->in_channels);
    if (c->num_class_embeds > 0) /* the backward needs them too; no labels: the null class */
        for (int b = 0; b < B; b++) {
            u->labels[b] = y ? y[b] : c->num_class_embeds - 1;
            ERR_ASSERT(u->labels[b] >= 0 && u->labels[b] < c->num_class_embeds);
        }

    /* Timestep embedding -> linear_1 -> SiLU -> linear_2; every resnet uses SiLU of it. */
    ops_timestep_embedding(SV(te->saved.emb), t, B, D0, c->flip_sin_to_cos, c->freq_shift);
    ops_linear_forward(SV(te->saved.a1), Dt, SV(te->saved.emb), D0, P(te->linear_1.w), P(te->linear_1.b), B, D0, Dt, 0);
    ops_silu_forward(SV(te->saved.s1), SV(te->saved.a1), (size_t)B * Dt);
    ops_linear_forward(SV(te->saved.out), Dt, SV(te->saved.s1), Dt, P(te->linear_2.w), P(te->linear_2.b), B, Dt, Dt, 0);
    if (c->num_class_embeds > 0) ops_embedding_forward(SV(te->saved.out), P(te->class_emb), u->labels, B, Dt);
    ops_silu_forward(SV(te->saved.act), SV(te->saved.out), (size_t)B * Dt);

    for (int i = 0; i < u->nunits; i++) {
        const net_unit *r = &u->units[i];
        int HW = r->H * r->W;
        switch (r->kind) {
        case U_CONV_IN:
            ops_conv_forward(r->c1, A(r->out), SV(u->x_in), P(r->conv.conv.w), P(r->conv.conv.b));
            break;
        case U_RESNET:
            resnet_forward(u, r, dp);
            break;
        case U_ATTN: {
            attn_params p = attn_p(u, &r->attn);
            attn_saved s = attn_s(u, &r->attn);
            ops_attn_forward(A(r->out), r->out.ld, &s, A(r->in), r->in.ld, &p, B, HW, r->cin, G, c->norm_eps);
            break;
        }
        case U_DOWN:
            ops_conv_forward(r->c1, A(r->out), A(r->in), P(r->conv.conv.w), P(r->conv.conv.b));
            break;
        case U_UP:
            ops_upsample2x_forward(SV(r->conv.saved.up), A(r->in), r->in.ld, B, r->H, r->W, r->cin);
            ops_conv_forward(r->c1, A(r->out), SV(r->conv.saved.up), P(r->conv.conv.w), P(r->conv.conv.b));
            break;
        case U_OUT: {
            const out_unit *o = &r->head;
            ops_groupnorm_forward(SV(o->saved.h), r->cin, SV(o->saved.mean), SV(o->saved.rstd), A(r->in), r->in.ld,
                              P(o->norm.w), P(o->norm.b), B, HW, r->cin, G, c->norm_eps, 1);
            ops_conv_forward(r->c1, out, SV(o->saved.h), P(o->conv.w), P(o->conv.b));
            break;
        }
        }
    }
    u->last_dropout = dp ? *dp : (unet_dropout){0, 0, 0};
    u->last_had_dropout = dp != NULL;
}

/* ---- backward ---------------------------------------------------------------- */

static void resnet_backward(net *u, const net_unit *x) {
    const resnet_unit *r = &x->res;
    int B = u->batch, HW = x->H * x->W, G = u->cfg.norm_groups, Dt = 4 * u->cfg.block_out[0];
    size_t M = (size_t)B * HW;
    float *dh2 = u->scratch, *dc1 = dh2 + M * x->cout, *dh1 = dc1 + M * x->cout, *dtp = dh1 + M * x->cin;
    if (x->cin != x->cout)
        ops_linear_backward(D(x->in), x->in.ld, GR(r->shortcut.w), GR(r->shortcut.b), D(x->out), x->out.ld, A(x->in),
                        x->in.ld, P(r->shortcut.w), (int)M, x->cin, x->cout);
    else
        ops_add_rows(D(x->in), x->in.ld, D(x->out), x->out.ld, (int)M, x->cout);
    ops_conv_backward(x->c2, dh2, GR(r->conv2.w), GR(r->conv2.b), D(x->out), SV(r->saved.h2), P(r->conv2.w));
    if (u->last_had_dropout)
        ops_dropout_backward(dh2, dh2, B, (size_t)HW * x->cout, u->cfg.dropout, u->last_dropout.seed,
                         dropout_stream(u, r, &u->last_dropout));
    ops_groupnorm_backward(dc1, x->cout, GR(r->norm2.w), GR(r->norm2.b), dh2, x->cout, SV(r->saved.c1), x->cout,
                       SV(r->saved.mean2), SV(r->saved.rstd2), P(r->norm2.w), P(r->norm2.b), B, HW, x->cout, G, 1, 0);
    ops_sum_per_sample(dtp, dc1, B, HW, x->cout);
    ops_linear_backward(u->dtemb_act, Dt, GR(r->temb_proj.w), GR(r->temb_proj.b), dtp, x->cout, SV(u->temb.saved.act),
                    Dt, P(r->temb_proj.w), B, Dt, x->cout);
    ops_conv_backward(x->c1, dh1, GR(r->conv1.w), GR(r->conv1.b), dc1, SV(r->saved.h1), P(r->conv1.w));
    ops_groupnorm_backward(D(x->in), x->in.ld, GR(r->norm1.w), GR(r->norm1.b), dh1, x->cin, A(x->in), x->in.ld,
                       SV(r->saved.mean1), SV(r->saved.rstd1), P(r->norm1.w), P(r->norm1.b), B, HW, x->cin, G, 1, 1);
}

/* The backward of the net after its forward: grads (+=), dx (=, may be NULL). */
static void net_backward(net *u, float *dx, const float *dout) {
    const unet_config *c = &u->cfg;
    const temb_unit *te = &u->temb;
    int B = u->batch, D0 = c->block_out[0], Dt = 4 * D0, G = c->norm_groups;
    u->dact = exec_buffer(NET_SLOT_DACT, sizeof(float) * u->act_len);
    u->scratch = exec_buffer(NET_SLOT_SCRATCH, sizeof(float) * u->scratch_len);
    if (!u->dact || !u->scratch) return; /* out of memory: recorded (exec_buffer) */
    memset(u->dact, 0, sizeof(float) * u->act_len);
    memset(u->dtemb_act, 0, sizeof(float) * (size_t)B * Dt);
    for (int i = u->nunits - 1; i >= 0; i--) {
        const net_unit *r = &u->units[i];
        int HW = r->H * r->W;
        switch (r->kind) {
        case U_OUT: {
            const out_unit *o = &r->head;
            ops_conv_backward(r->c1, u->scratch, GR(o->conv.w), GR(o->conv.b), dout, SV(o->saved.h), P(o->conv.w));
            ops_groupnorm_backward(D(r->in), r->in.ld, GR(o->norm.w), GR(o->norm.b), u->scratch, r->cin, A(r->in),
                               r->in.ld, SV(o->saved.mean), SV(o->saved.rstd), P(o->norm.w), P(o->norm.b), B, HW,
                               r->cin, G, 1, 1);
            break;
        }
        case U_UP:
            ops_conv_backward(r->c1, u->scratch, GR(r->conv.conv.w), GR(r->conv.conv.b), D(r->out), SV(r->conv.saved.up),
                          P(r->conv.conv.w));
            ops_upsample2x_backward(D(r->in), r->in.ld, u->scratch, B, r->H, r->W, r->cin);
            break;
        case U_DOWN:
            ops_conv_backward(r->c1, u->scratch, GR(r->conv.conv.w), GR(r->conv.conv.b), D(r->out), A(r->in),
                          P(r->conv.conv.w));
            ops_add_rows(D(r->in), r->in.ld, u->scratch, r->in.ld, B * HW, r->cin);
            break;
        case U_ATTN: {
            const attn_unit *a = &r->attn;
            attn_params p = attn_p(u, a);
            attn_saved s = attn_s(u, a);
            attn_grads g = {GR(a->norm.w), GR(a->norm.b), GR(a->q.w), GR(a->q.b), GR(a->k.w),
                            GR(a->k.b),    GR(a->v.w),    GR(a->v.b), GR(a->out.w), GR(a->out.b)};
            ops_attn_backward(D(r->in), r->in.ld, &g, D(r->out), r->out.ld, &s, A(r->in), r->in.ld, &p, B, HW, r->cin, G,
                          u->scratch);
            break;
        }
        case U_RESNET:
            resnet_backward(u, r);
            break;
        case U_CONV_IN:
            ops_conv_backward(r->c1, dx, GR(r->conv.conv.w), GR(r->conv.conv.b), D(r->out), SV(u->x_in),
                          P(r->conv.conv.w));
            break;
        }
    }
    /* Time embedding MLP (the timesteps themselves get no gradient). */
    float *d3 = u->scratch, *d2 = d3 + (size_t)B * Dt, *d1 = d2 + (size_t)B * Dt;
    ops_silu_backward(d3, u->dtemb_act, SV(te->saved.out), (size_t)B * Dt);
    if (c->num_class_embeds > 0) ops_embedding_backward(GR(te->class_emb), d3, u->labels, B, Dt);
    memset(d2, 0, sizeof(float) * (size_t)B * Dt);
    ops_linear_backward(d2, Dt, GR(te->linear_2.w), GR(te->linear_2.b), d3, Dt, SV(te->saved.s1), Dt, P(te->linear_2.w),
                    B, Dt, Dt);
    ops_silu_backward(d1, d2, SV(te->saved.a1), (size_t)B * Dt);
    ops_linear_backward(NULL, 0, GR(te->linear_1.w), GR(te->linear_1.b), d1, Dt, SV(te->saved.emb), D0, P(te->linear_1.w),
                    B, D0, Dt);
}

/* ---- a pass ------------------------------------------------------------------ */

void net_pass(net *u, const net_pass_args *a) {
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
