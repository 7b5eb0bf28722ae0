/* conv.c -- 3x3 convolution on NHWC: oneDNN primitives made once per shape
 * (forward, backward-data, backward-weights, and the weight reorders between
 * PyTorch's OIHW and the primitive's blocked layout); ddpm's own Winograd
 * F(2x2, 3x3) for stride-1 convolutions (its transforms: winograd.c); and a
 * plain-loop reference used when ops_reference() is on.
 *
 * Which algorithm computes each pass (forward, input gradient, weight
 * gradient) of a plan is decided when the plan is made: by the flag
 * (ops_conv_set_algorithm), or by measuring every candidate on the plan's own
 * shape (conv_measure below), remembered per machine (conv_choice.c).
 *
 * Winograd F(2x2, 3x3) (Lavin & Gray 2016): each 2x2 output tile is
 * A^T [(G g G^T) . (B^T d B)] A over its 4x4 input tile d, so the convolution
 * is 16 GEMMs [tiles x Cin] x [Cin x Cout], 2.25x fewer multiplies than the
 * direct form, with rounding errors of the same order. The input gradient is
 * the same convolution of dy with the flipped, transposed kernel, whose
 * transform is a permutation of the forward one's (no second copy); the
 * weight gradient is the gradient of the forward's GEMMs, transformed back.
 * Tiles go through in chunks, so that their transforms stay in cache.
 *
 * bf16 (exec/executor.h, precisions): a plan takes the precision of the
 * executor that builds it. In EXEC_BF16 its primitives are oneDNN's direct
 * bf16 kernels (source, weights and incoming gradient in bf16, converted
 * here; outputs and the weight gradient in fp32); where oneDNN has only a
 * reference kernel for the shape (one input channel) the plan computes as
 * EXEC_BF16_EMULATED does: its operands rounded to bf16 (copies in the
 * worker's buffers), then the fp32 passes as chosen for the shape. */
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "conv_choice.h"
#include "dnnl_engine.h"
#include "ops.h"
#include "winograd.h"

/* One primitive and its descriptor. */
typedef struct prim {
    ops_prim op;
    dnnl_primitive_desc_t pd;
} prim;

/* A weight reorder between the user's OIHW array (handle set per call) and the
 * primitive's layout. When the layouts agree, prim == user and p is NULL.
 * shared: prim is another plan's (ops_conv_plan_share), filled by ops_conv_prepare. */
typedef struct reorder {
    ops_prim p;                 /* p.p NULL: no reorder */
    dnnl_memory_t user, prim;
    int to_prim, shared, borrowed;
} reorder;

struct conv_plan {
    int B, H, W, Cin, Cout, stride, pad, Ho, Wo, ld_x, ld_y, training;
    int precision;         /* EXEC_FP32, EXEC_BF16 (oneDNN's bf16 primitives) or EXEC_BF16_EMULATED */
    int alg[CONV_PASSES];  /* each pass's algorithm: CONV_ALG_DIRECT, _WINOGRAD or _DNNL_WINOGRAD */
    prim fwd, bwd_data, bwd_w;
    dnnl_primitive_desc_t hint; /* the direct forward: the backward primitives' hint */
    dnnl_memory_t x, y, bias, dx, dy, dbias;   /* user memories, handles set per call (x, dy: bf16 in EXEC_BF16) */
    reorder w_fwd, w_bwd, dw;                  /* weights for fwd / bwd-data, weight grad */
    int stage_x, stage_y;  /* work on dense per-thread copies of x (and dx) / y (and dy) */
    int wino;              /* forward by ddpm's Winograd F(2x2, 3x3) */
    int wino_dx;           /* input gradient by ddpm's Winograd */
    int wino_dw;           /* weight gradient by ddpm's Winograd */
    float *U;              /* Winograd weights [16][Cin][Cout], for wino or wino_dx (another plan's if U_borrowed) */
    int U_shared, U_borrowed;
    int bwd_w_ref;         /* oneDNN has only a reference kernel for the weight gradient */
};

static dnnl_engine_t engine;
static int conv_algorithm = CONV_ALG_MEASURE;

void ops_conv_set_algorithm(int alg) { conv_algorithm = alg; }
int ops_conv_get_algorithm(void) { return conv_algorithm; }

void ops_conv_out_size(int H, int W, int stride, int *Ho, int *Wo) {
    *Ho = (H - 1) / stride + 1;
    *Wo = (W - 1) / stride + 1;
}

#define WINO_CHUNK 256 /* tiles transformed and multiplied at a time */


static dnnl_status_t mem_user(dnnl_memory_t *m, const dnnl_memory_desc_t *md) {
    return dnnl_memory_create(m, md, engine, DNNL_MEMORY_NONE);
}

/* Makes the reorder between user_md (OIHW) and prim_md, in the direction to_prim;
 * the primitive-layout memory is allocated here, or (alloc == 0) set per call. */
static int make_reorder(reorder *r, const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *prim_md,
                        int to_prim, int alloc, err_t *err) {
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    r->to_prim = to_prim;
    DNNL_TRY(mem_user(&r->user, user_md), "memory");
    if (dnnl_memory_desc_equal(user_md, prim_md)) {
        r->prim = r->user;
        return 0;
    }
    DNNL_TRY(dnnl_memory_create(&r->prim, prim_md, engine, alloc ? DNNL_MEMORY_ALLOCATE : DNNL_MEMORY_NONE),
        "weight memory");
    if (ops_prim_attr_user(&attr, err)) goto fail;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, to_prim ? user_md : prim_md, engine,
                                           to_prim ? prim_md : user_md, engine, attr), "reorder");
    if (ops_prim_make(&r->p, pd, "weight reorder", err)) goto fail;
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return 0;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return -1;
}

static void free_reorder(reorder *r) {
    ops_prim_free(&r->p);
    if (r->prim && r->prim != r->user && !r->borrowed) dnnl_memory_destroy(r->prim);
    if (r->user) dnnl_memory_destroy(r->user);
}

/* Points the user side at buf and runs the reorder (if any); returns the
 * memory in the primitive's layout, or NULL after recording a failure. */
static dnnl_memory_t run_reorder(reorder *r, const float *buf) {
    dnnl_memory_set_data_handle(r->user, (void *)buf);
    if (r->p.p) {
        dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, r->to_prim ? r->user : r->prim},
                               {DNNL_ARG_TO, r->to_prim ? r->prim : r->user}};
        if (ops_prim_run(&r->p, 2, a)) return NULL;
    }
    return r->prim;
}

static int is_ref(const prim *q) {
    const char *impl = NULL;
    dnnl_primitive_desc_query(q->pd, dnnl_query_impl_info_str, 0, &impl);
    return impl && !strncmp(impl, "ref", 3);
}

static void free_prims(conv_plan *p) {
    prim *ps[] = {&p->fwd, &p->bwd_data, &p->bwd_w};
    for (int i = 0; i < 3; i++) {
        ops_prim_free(&ps[i]->op);
        if (ps[i]->pd) dnnl_primitive_desc_destroy(ps[i]->pd);
        ps[i]->pd = NULL;
    }
    if (p->hint) dnnl_primitive_desc_destroy(p->hint);
    p->hint = NULL;
    free_reorder(&p->w_fwd);
    free_reorder(&p->w_bwd);
    free_reorder(&p->dw);
    memset(&p->w_fwd, 0, sizeof p->w_fwd);
    memset(&p->w_bwd, 0, sizeof p->w_bwd);
    memset(&p->dw, 0, sizeof p->dw);
    dnnl_memory_t *ms[] = {&p->x, &p->y, &p->bias, &p->dx, &p->dy, &p->dbias};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        if (*ms[i]) dnnl_memory_destroy(*ms[i]);
        *ms[i] = NULL;
    }
}

static dnnl_alg_kind_t dnnl_alg(int alg) {
    return alg == CONV_ALG_DNNL_WINOGRAD ? dnnl_convolution_winograd : dnnl_convolution_direct;
}

/* Creates the oneDNN primitives of the passes that do not run ddpm's
 * Winograd, for activations with row strides ldx / ldy. Sets *any_ref when
 * oneDNN could only offer its slow reference kernel for one of them. */
static int build_prims(conv_plan *p, int ldx, int ldy, int *any_ref, err_t *err) {
    int B = p->B, H = p->H, W = p->W, Cin = p->Cin, Cout = p->Cout, stride = p->stride, pad = p->pad;
    /* x_md, dy_md: the source and the incoming gradient, dense bf16 copies in EXEC_BF16. */
    dnnl_memory_desc_t x_md, dx_md, y_md, dy_md, w_any, w_grad, w_user, b_md;
    int bf = p->precision == EXEC_BF16;
    dnnl_data_type_t dt = bf ? dnnl_bf16 : dnnl_f32;
    ops_md_nhwc(&dx_md, B, Cin, H, W, ldx, dnnl_f32);
    ops_md_nhwc(&y_md, B, Cout, p->Ho, p->Wo, ldy, dnnl_f32);
    ops_md_nhwc(&x_md, B, Cin, H, W, bf ? Cin : ldx, dt);
    ops_md_nhwc(&dy_md, B, Cout, p->Ho, p->Wo, bf ? Cout : ldy, dt);
    dnnl_dims_t wd = {Cout, Cin, 3, 3}, bd = {Cout};
    dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dt, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&w_grad, 4, wd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw);
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x);
    dnnl_dims_t strides = {stride, stride};
    dnnl_dims_t pl = {pad == CONV_PAD_TF ? 0 : 1, pad == CONV_PAD_TF ? 0 : 1};
    dnnl_dims_t pr = {1, 1};
    if (pad == CONV_PAD_TF) {
        /* Bottom/right padding so that (H + 1 - 3) / 2 + 1 = H/2. */
        pr[0] = (p->Ho - 1) * stride + 3 - H;
        pr[1] = (p->Wo - 1) * stride + 3 - W;
    }
    *any_ref = 0;
    dnnl_primitive_attr_t attr = NULL;
    if (ops_prim_attr_user(&attr, err)) return -1;
    const dnnl_prop_kind_t prop = p->training ? dnnl_forward_training : dnnl_forward_inference;
    const int *alg = p->alg;

    dnnl_convolution_desc_t cd;
    DNNL_TRY(mem_user(&p->x, &x_md), "memory");
    DNNL_TRY(mem_user(&p->y, &y_md), "memory");
    if (p->training) {
        DNNL_TRY(dnnl_convolution_forward_desc_init(&cd, prop, dnnl_convolution_direct, &x_md, &w_any, &b_md, &y_md,
                                               strides, pl, pr), "conv forward desc");
        DNNL_TRY(dnnl_primitive_desc_create(&p->hint, &cd, attr, engine, NULL), "conv forward pd");
    }
    if (!p->wino) {
        DNNL_TRY(dnnl_convolution_forward_desc_init(&cd, prop, dnnl_alg(alg[CONV_PASS_FWD]), &x_md, &w_any, &b_md,
                                               &y_md, strides, pl, pr), "conv forward desc");
        DNNL_TRY(dnnl_primitive_desc_create(&p->fwd.pd, &cd, attr, engine, NULL), "conv forward pd");
        if (ops_prim_make(&p->fwd.op, p->fwd.pd, "convolution forward", err)) goto fail;
        *any_ref |= is_ref(&p->fwd);
        DNNL_TRY(mem_user(&p->bias, &b_md), "memory");
        const dnnl_memory_desc_t *wf = dnnl_primitive_desc_query_md(p->fwd.pd, dnnl_query_weights_md, 0);
        if (make_reorder(&p->w_fwd, &w_user, wf, 1, 1, err)) goto fail;
    }

    if (p->training) {
        dnnl_convolution_desc_t bd_desc, bw_desc;
        if (!p->wino_dx) {
            DNNL_TRY(dnnl_convolution_backward_data_desc_init(&bd_desc, dnnl_alg(alg[CONV_PASS_BWD_DATA]), &dx_md,
                                                         &w_any, &dy_md, strides, pl, pr), "conv bwd-data desc");
            DNNL_TRY(dnnl_primitive_desc_create(&p->bwd_data.pd, &bd_desc, attr, engine, p->hint), "conv bwd-data pd");
            if (ops_prim_make(&p->bwd_data.op, p->bwd_data.pd, "convolution backward-data", err)) goto fail;
            *any_ref |= is_ref(&p->bwd_data);
            const dnnl_memory_desc_t *wb = dnnl_primitive_desc_query_md(p->bwd_data.pd, dnnl_query_weights_md, 0);
            if (make_reorder(&p->w_bwd, &w_user, wb, 1, 1, err)) goto fail;
        }
        DNNL_TRY(mem_user(&p->dx, &dx_md), "memory");
        DNNL_TRY(mem_user(&p->dy, &dy_md), "memory");
        if (p->wino_dw) goto done;

        DNNL_TRY(dnnl_convolution_backward_weights_desc_init(&bw_desc, dnnl_alg(alg[CONV_PASS_BWD_W]), &x_md, &w_grad,
                                                        &b_md, &dy_md, strides, pl, pr), "conv bwd-weights desc");
        DNNL_TRY(dnnl_primitive_desc_create(&p->bwd_w.pd, &bw_desc, attr, engine, p->hint), "conv bwd-weights pd");
        if (ops_prim_make(&p->bwd_w.op, p->bwd_w.pd, "convolution backward-weights", err)) goto fail;
        p->bwd_w_ref = is_ref(&p->bwd_w);
        const dnnl_memory_desc_t *dwm = dnnl_primitive_desc_query_md(p->bwd_w.pd, dnnl_query_diff_weights_md, 0);
        if (make_reorder(&p->dw, &w_user, dwm, 0, 0, err)) goto fail;
        DNNL_TRY(mem_user(&p->dbias, &b_md), "memory");
    }
done:
    dnnl_primitive_attr_destroy(attr);
    return 0;
fail:
    dnnl_primitive_attr_destroy(attr);
    return -1;
}

/* Whether ddpm's Winograd applies: stride 1, at least 8 channels each way. */
static int winograd_applies(const conv_key *k) { return k->stride == 1 && k->Cin >= 8 && k->Cout >= 8; }

/* Makes the plan of shape k with the passes' algorithms alg (ddpm's Winograd
 * only where it applies), in `precision`. */
static int plan_make(conv_plan **out, const conv_key *k, const int alg[CONV_PASSES], int precision, err_t *err) {
    *out = NULL;
    if (ops_dnnl_engine(&engine, err)) return -1;
    conv_plan *p = mem_calloc(1, sizeof *p, err);
    if (!p) return -1;
    p->B = k->B; p->H = k->H; p->W = k->W; p->Cin = k->Cin; p->Cout = k->Cout; p->stride = k->stride;
    p->pad = k->pad; p->ld_x = k->ld_x; p->ld_y = k->ld_y; p->training = k->training;
    p->precision = precision;
    ops_conv_out_size(p->H, p->W, p->stride, &p->Ho, &p->Wo);
    int gemm_ok = winograd_applies(k);
    for (int i = 0; i < CONV_PASSES; i++) {
        int a = i == CONV_PASS_FWD || p->training ? alg[i] : CONV_ALG_DIRECT;
        p->alg[i] = a == CONV_ALG_WINOGRAD && !gemm_ok ? CONV_ALG_DIRECT : a;
    }
    p->wino = p->alg[CONV_PASS_FWD] == CONV_ALG_WINOGRAD;
    p->wino_dx = p->alg[CONV_PASS_BWD_DATA] == CONV_ALG_WINOGRAD;
    p->wino_dw = p->alg[CONV_PASS_BWD_W] == CONV_ALG_WINOGRAD;
    /* Not zeroed: wino_weights writes it all before use, and a plan that ends
     * up borrowing another's frees it untouched (no resident pages). */
    if ((p->wino || p->wino_dx) && posix_memalign((void **)&p->U, 64, sizeof(float) * 16 * p->Cin * p->Cout) != 0) {
        p->U = NULL;
        err_oom(err, "out of memory for a convolution's Winograd weights");
        goto fail;
    }

    /* oneDNN's fast kernels may not take row-strided activations (channel
     * slices of a concat buffer) on every CPU: then the plan works on dense
     * staging copies, which costs a copy instead of a reference kernel. */
    int any_ref;
    if (build_prims(p, p->ld_x, p->ld_y, &any_ref, err)) goto fail;
    if ((any_ref || p->bwd_w_ref) && (p->ld_x != p->Cin || p->ld_y != p->Cout)) {
        free_prims(p);
        if (build_prims(p, p->Cin, p->Cout, &any_ref, err)) goto fail;
        p->stage_x = p->ld_x != p->Cin;
        p->stage_y = p->ld_y != p->Cout;
    }
    if (precision == EXEC_BF16 && (any_ref || p->bwd_w_ref)) {
        /* No fast bf16 kernel for this shape: the same numbers by rounding. */
        ops_conv_plan_free(p);
        return plan_make(out, k, alg, EXEC_BF16_EMULATED, err);
    }
    *out = p;
    return 0;
fail:
    ops_conv_plan_free(p);
    return -1;
}

int ops_conv_plan_create(conv_plan **out, int B, int H, int W, int Cin, int Cout, int stride, int pad,
                     int ld_x, int ld_y, int training, err_t *err) {
    conv_key k = {B, H, W, Cin, Cout, stride, pad, ld_x, ld_y, training != 0, exec_build_shards(),
                  exec_build_concurrency()};
    int alg[CONV_PASSES] = {CONV_ALG_DIRECT, CONV_ALG_DIRECT, CONV_ALG_DIRECT};
    int precision = exec_build_precision();
    if (precision == EXEC_BF16) /* oneDNN's direct bf16 kernels: nothing to choose */
        return plan_make(out, &k, alg, precision, err);
    if (conv_algorithm == CONV_ALG_MEASURE) {
        if (ops_conv_choose(&k, alg, err)) return -1;
    } else if (conv_algorithm != CONV_ALG_DIRECT) {
        for (int i = 0; i < CONV_PASSES; i++) alg[i] = conv_algorithm;
    }
    int dnnl_wino = 0, rc;
    for (int i = 0; i < CONV_PASSES; i++) dnnl_wino |= alg[i] == CONV_ALG_DNNL_WINOGRAD;
    if (!dnnl_wino || (rc = plan_make(out, &k, alg, precision, NULL))) {
        /* oneDNN's Winograd where this CPU's oneDNN does not offer it (forced,
         * or pinned by a run made on another CPU): the direct kernels. */
        for (int i = 0; i < CONV_PASSES; i++) alg[i] = alg[i] == CONV_ALG_DNNL_WINOGRAD ? CONV_ALG_DIRECT : alg[i];
        rc = plan_make(out, &k, alg, precision, err);
    }
    if (!rc && conv_algorithm != CONV_ALG_MEASURE) ops_conv_choice_note(&k, (*out)->alg);
    return rc;
}

int ops_conv_plan_algorithm(const conv_plan *p, int pass) { return p->alg[pass]; }


void ops_conv_plan_free(conv_plan *p) {
    if (!p) return;
    free_prims(p);
    if (!p->U_borrowed) free(p->U);
    free(p);
}

/* ---- plain-loop reference ------------------------------------------------ */

static void pads(const conv_plan *p, int *top, int *left) {
    *top = *left = p->pad == CONV_PAD_TF ? 0 : 1;
}

static void conv_forward_ref(conv_plan *p, float *y, const float *x, const float *w, const float *b) {
    int top, left;
    pads(p, &top, &left);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < p->B; n++)
        for (int oy = 0; oy < p->Ho; oy++)
            for (int ox = 0; ox < p->Wo; ox++) {
                float *out = y + ((size_t)(n * p->Ho + oy) * p->Wo + ox) * p->ld_y;
                for (int co = 0; co < p->Cout; co++) {
                    double acc = b ? b[co] : 0.0;
                    for (int ky = 0; ky < 3; ky++) {
                        int iy = oy * p->stride + ky - top;
                        if (iy < 0 || iy >= p->H) continue;
                        for (int kx = 0; kx < 3; kx++) {
                            int ix = ox * p->stride + kx - left;
                            if (ix < 0 || ix >= p->W) continue;
                            const float *in = x + ((size_t)(n * p->H + iy) * p->W + ix) * p->ld_x;
                            for (int ci = 0; ci < p->Cin; ci++)
                                acc += (double)in[ci] * w[((size_t)(co * p->Cin + ci) * 3 + ky) * 3 + kx];
                        }
                    }
                    out[co] = (float)acc;
                }
            }
}

static void conv_backward_ref(conv_plan *p, float *dx, float *dw, float *db, const float *dy,
                              const float *x, const float *w) {
    int top, left;
    pads(p, &top, &left);
    if (dx)
        for (int n = 0; n < p->B; n++)
            for (int i = 0; i < p->H * p->W; i++)
                memset(dx + ((size_t)n * p->H * p->W + i) * p->ld_x, 0, (size_t)p->Cin * sizeof(float));
    for (int n = 0; n < p->B; n++)
        for (int oy = 0; oy < p->Ho; oy++)
            for (int ox = 0; ox < p->Wo; ox++) {
                const float *g = dy + ((size_t)(n * p->Ho + oy) * p->Wo + ox) * p->ld_y;
                for (int co = 0; co < p->Cout; co++) {
                    if (db) db[co] += g[co];
                    for (int ky = 0; ky < 3; ky++) {
                        int iy = oy * p->stride + ky - top;
                        if (iy < 0 || iy >= p->H) continue;
                        for (int kx = 0; kx < 3; kx++) {
                            int ix = ox * p->stride + kx - left;
                            if (ix < 0 || ix >= p->W) continue;
                            size_t off = ((size_t)(n * p->H + iy) * p->W + ix) * p->ld_x;
                            for (int ci = 0; ci < p->Cin; ci++) {
                                size_t wi = ((size_t)(co * p->Cin + ci) * 3 + ky) * 3 + kx;
                                if (dw) dw[wi] += g[co] * x[off + ci];
                                if (dx) dx[off + ci] += g[co] * w[wi];
                            }
                        }
                    }
                }
            }
}

/* Weight and bias gradient by direct loops, for the shapes oneDNN has only a
 * reference kernel for (one input channel): dw, db (=), in a fixed order. */
static void conv_bwd_w_direct(conv_plan *p, float *dw, float *db, const float *dy, int lddy, const float *x, int ldx) {
    int top, left, Cin = p->Cin, Cout = p->Cout;
    pads(p, &top, &left);
    float *acc = exec_buffer(OPS_SLOT_CONV_ACC, sizeof(float) * 9 * Cin * Cout); /* [ky][kx][ci][co] */
    if (!acc) return;
    memset(acc, 0, sizeof(float) * 9 * Cin * Cout);
    memset(db, 0, sizeof(float) * Cout);
    for (int n = 0; n < p->B; n++)
        for (int oy = 0; oy < p->Ho; oy++)
            for (int ox = 0; ox < p->Wo; ox++) {
                const float *g = dy + ((size_t)(n * p->Ho + oy) * p->Wo + ox) * lddy;
                for (int co = 0; co < Cout; co++) db[co] += g[co];
                for (int ky = 0; ky < 3; ky++) {
                    int iy = oy * p->stride + ky - top;
                    if (iy < 0 || iy >= p->H) continue;
                    for (int kx = 0; kx < 3; kx++) {
                        int ix = ox * p->stride + kx - left;
                        if (ix < 0 || ix >= p->W) continue;
                        const float *in = x + ((size_t)(n * p->H + iy) * p->W + ix) * ldx;
                        float *a = acc + (size_t)(ky * 3 + kx) * Cin * Cout;
                        for (int ci = 0; ci < Cin; ci++)
                            for (int co = 0; co < Cout; co++) a[(size_t)ci * Cout + co] += in[ci] * g[co];
                    }
                }
            }
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++)
            for (int k = 0; k < 9; k++) dw[((size_t)co * Cin + ci) * 9 + k] = acc[((size_t)k * Cin + ci) * Cout + co];
}

/* ---- bf16 operands ------------------------------------------------------- */

/* Whether the plan's operands are rounded to bf16 here before its fp32
 * passes: EXEC_BF16_EMULATED, and the bf16 precisions in the reference tier. */
static int rounds(const conv_plan *p) {
    return p->precision == EXEC_BF16_EMULATED || (p->precision == EXEC_BF16 && ops_reference());
}

static const float *rounded_weights(const conv_plan *p, const float *w) {
    return ops_bf16_operand(OPS_SLOT_BF16_W, w, 9 * p->Cin, p->Cout, 9 * p->Cin);
}

/* Whether the forward (back = 0) or input-gradient pass reads the weights it
 * is given, rather than the copies ops_conv_prepare made (rounded already). */
static int reads_weights(const conv_plan *p, int back) {
    if (ops_reference()) return 1;
    if (back ? p->wino_dx : p->wino) return !p->U_shared;
    return !(back ? p->w_bwd.shared : p->w_fwd.shared);
}

/* ---- weights shared between plans ----------------------------------------- */

static const dnnl_memory_desc_t *mem_md(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = NULL;
    ERR_ASSERT(dnnl_memory_get_memory_desc(m, &md) == dnnl_success); /* a memory ddpm made: cannot fail */
    return md;
}

static void share_reorder(reorder *r, reorder *owner) {
    if (!r->p.p || !owner->p.p || !dnnl_memory_desc_equal(mem_md(r->prim), mem_md(owner->prim))) return;
    if (r != owner) {
        if (!r->borrowed) dnnl_memory_destroy(r->prim);
        r->prim = owner->prim;
        r->borrowed = 1;
    }
    r->shared = owner->shared = 1;
}

void ops_conv_plan_share(conv_plan *p, conv_plan *owner) {
    share_reorder(&p->w_fwd, &owner->w_fwd);
    share_reorder(&p->w_bwd, &owner->w_bwd);
    if (p->U && owner->U) {
        if (p != owner) {
            if (!p->U_borrowed) free(p->U);
            p->U = owner->U;
            p->U_borrowed = 1;
        }
        p->U_shared = owner->U_shared = 1;
    }
}

/* The plan's Winograd weights U from w. */
static void wino_weights(conv_plan *p, const float *w) { ops_wino_weights(p->U, w, p->Cin, p->Cout); }

void ops_conv_prepare(conv_plan *p, const float *w) {
    if (rounds(p) && !(w = rounded_weights(p, w))) return;
    reorder *rs[] = {&p->w_fwd, &p->w_bwd};
    for (int i = 0; i < 2; i++)
        if (rs[i]->shared && !rs[i]->borrowed) run_reorder(rs[i], w);
    if (p->U_shared && !p->U_borrowed) wino_weights(p, w);
}

/* The weights in the forward (or backward-data) primitive's layout (NULL:
 * failed, recorded). */
static dnnl_memory_t weights(reorder *r, const float *w) {
    return r->shared ? r->prim : run_reorder(r, w);
}

/* ---- Winograd F(2x2, 3x3) (transforms: winograd.c) ------------------------ */

/* y[B,H,W,Co] (row stride ldy) (=) the stride-1 pad-1 convolution of
 * x[B,H,W,Ci] (row stride ldx) + bias (may be NULL), by Winograd F(2x2, 3x3)
 * with the plan's U (from w): per chunk of tiles, the input transform, 16
 * GEMMs M[k] = V[k] U[k], the output transform. back: the input gradient (x
 * is dy, y is dx; Ci = Cout, Co = Cin): the kernel flipped and transposed,
 * whose transform is U at the positions (pi(i), pi(j)), pi swapping 0 and 3
 * (G J = P G for the reversal J), read transposed. */
static void wino_conv(conv_plan *p, float *y, int ldy, const float *x, int ldx, int Ci, int Co,
                      const float *w, const float *bias, int back) {
    if (!p->U_shared) wino_weights(p, w); /* else ops_conv_prepare made them */
    size_t T = ops_wino_tiles(p->B, p->H, p->W), chunk = T < WINO_CHUNK ? T : WINO_CHUNK;
    float *V = exec_buffer(OPS_SLOT_WINO_V, sizeof(float) * 16 * chunk * Ci);
    float *M = exec_buffer(OPS_SLOT_WINO_M, sizeof(float) * 16 * chunk * Co);
    int zl = Ci > Co ? Ci : Co;
    float *zero = exec_buffer(OPS_SLOT_WINO_ZERO, sizeof(float) * zl); /* pixels outside; no bias */
    /* Where each thread of the team writes the outputs past the image. */
    size_t scrap_ld = ((size_t)Co + 15) / 16 * 16;
    float *scraps = exec_buffer(OPS_SLOT_WINO_SCRAP, sizeof(float) * scrap_ld * ops_team_size());
    if (!V || !M || !zero || !scraps) return; /* out of memory: see exec_buffer */
    memset(zero, 0, sizeof(float) * zl);
    static const int pi[4] = {3, 1, 2, 0};
    for (size_t t0 = 0; t0 < T; t0 += chunk) {
        size_t nt = T - t0 < chunk ? T - t0 : chunk;
        ops_wino_input(V, x, ldx, Ci, p->H, p->W, t0, nt, zero);
        for (int k = 0; k < 16; k++) {
            int ku = back ? 4 * pi[k / 4] + pi[k % 4] : k;
            ops_gemm(0, back, (int)nt, Co, Ci, 1.0f, V + k * nt * Ci, Ci, p->U + (size_t)ku * Ci * Co, back ? Ci : Co,
                 0.0f, M + k * nt * Co, Co);
        }
        ops_wino_output(y, ldy, M, Co, p->H, p->W, t0, nt, bias ? bias : zero, scraps, scrap_ld);
    }
}

/* dw [Cout,Cin,3,3], db [Cout] (=) the weight and bias gradients, as the
 * gradient of the Winograd forward: with Z = A dy_tile A^T and V the input
 * transform, dU[k] = sum over tiles of Z[k]^T V[k] (16 GEMMs accumulated over
 * the chunks), and dw = G^T dU G. */
static void wino_bwd_w(const conv_plan *p, float *dw, float *db, const float *dy, int lddy, const float *x, int ldx) {
    int Ci = p->Cin, Co = p->Cout;
    size_t T = ops_wino_tiles(p->B, p->H, p->W), chunk = T < WINO_CHUNK ? T : WINO_CHUNK;
    float *V = exec_buffer(OPS_SLOT_WINO_V, sizeof(float) * 16 * chunk * Ci);
    float *Z = exec_buffer(OPS_SLOT_WINO_M, sizeof(float) * 16 * chunk * Co);
    float *dU = exec_buffer(OPS_SLOT_WINO_DU, sizeof(float) * 16 * Co * Ci);
    int zl = Ci > Co ? Ci : Co;
    float *zero = exec_buffer(OPS_SLOT_WINO_ZERO, sizeof(float) * zl);
    if (!V || !Z || !dU || !zero) return;
    memset(zero, 0, sizeof(float) * zl);
    for (size_t t0 = 0; t0 < T; t0 += chunk) {
        size_t nt = T - t0 < chunk ? T - t0 : chunk;
        ops_wino_input(V, x, ldx, Ci, p->H, p->W, t0, nt, zero);
        ops_wino_output_grad(Z, dy, lddy, Co, p->H, p->W, t0, nt, zero);
        for (int k = 0; k < 16; k++)
            ops_gemm(1, 0, Co, Ci, (int)nt, 1.0f, Z + k * nt * Co, Co, V + k * nt * Ci, Ci, t0 ? 1.0f : 0.0f,
                 dU + (size_t)k * Co * Ci, Ci);
    }
    ops_wino_weights_grad(dw, dU, Ci, Co);
    ops_sum_rows(db, dy, lddy, (size_t)p->B * p->H * p->W, Co);
}

/* ---- dispatch ------------------------------------------------------------- */

/* dst rows (stride ldd) = src rows (stride lds), C floats each. */
static void copy_rows(float *dst, int ldd, const float *src, int lds, size_t rows, int C) {
    for (size_t r = 0; r < rows; r++) memcpy(dst + r * ldd, src + r * lds, sizeof(float) * C);
}

/* Activations x [rows, C] (row stride ld) as a primitive reads them: a dense
 * bf16 copy (EXEC_BF16), a dense copy (stage), or x itself; in worker slot
 * `slot`. NULL when out of memory (recorded). */
static const void *operand(const conv_plan *p, int slot, const float *x, int ld, size_t rows, int C, int stage) {
    if (p->precision == EXEC_BF16) {
        uint16_t *b = exec_buffer(slot, sizeof(uint16_t) * rows * C);
        if (b) ops_to_bf16(b, C, x, ld, rows, C);
        return b;
    }
    if (!stage) return x;
    float *d = exec_buffer(slot, sizeof(float) * rows * C);
    if (d) copy_rows(d, C, x, ld, rows, C);
    return d;
}

static void forward(conv_plan *p, float *y, const float *x, const float *w, const float *b) {
    if (ops_reference()) {
        conv_forward_ref(p, y, x, w, b);
        return;
    }
    if (p->wino) {
        wino_conv(p, y, p->ld_y, x, p->ld_x, p->Cin, p->Cout, w, b, 0);
        return;
    }
    size_t nx = (size_t)p->B * p->H * p->W, ny = (size_t)p->B * p->Ho * p->Wo;
    const void *xo = operand(p, OPS_SLOT_CONV_X, x, p->ld_x, nx, p->Cin, p->stage_x);
    float *ys = p->stage_y ? exec_buffer(OPS_SLOT_CONV_Y, sizeof(float) * ny * p->Cout) : NULL;
    if (!xo || (p->stage_y && !ys)) return; /* out of memory: see exec_buffer */
    dnnl_memory_t wm = weights(&p->w_fwd, w);
    if (!wm) return;
    dnnl_memory_set_data_handle(p->x, (void *)xo);
    dnnl_memory_set_data_handle(p->y, ys ? ys : y);
    dnnl_memory_set_data_handle(p->bias, (void *)b);
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, p->bias},
                           {DNNL_ARG_DST, p->y}};
    if (ops_prim_run(&p->fwd.op, 4, a)) return;
    if (ys) copy_rows(y, p->ld_y, ys, p->Cout, ny, p->Cout);
}

void ops_conv_forward(conv_plan *p, float *y, const float *x, const float *w, const float *b) {
    if (rounds(p)) {
        x = ops_bf16_operand(OPS_SLOT_BF16_A, x, p->ld_x, (size_t)p->B * p->H * p->W, p->Cin);
        w = reads_weights(p, 0) ? rounded_weights(p, w) : w;
        if (!x || !w) return;
    }
    forward(p, y, x, w, b);
}

static void backward(conv_plan *p, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w) {
    if (ops_reference()) {
        conv_backward_ref(p, dx, dw, db, dy, x, w);
        return;
    }
    size_t nx = (size_t)p->B * p->H * p->W, ny = (size_t)p->B * p->Ho * p->Wo;
    const void *dyo = operand(p, OPS_SLOT_CONV_Y, dy, p->ld_y, ny, p->Cout, p->stage_y);
    if (!dyo) return; /* out of memory: see exec_buffer */
    int lddy = p->stage_y ? p->Cout : p->ld_y; /* of dyo, for ddpm's own passes (never bf16) */
    dnnl_memory_set_data_handle(p->dy, (void *)dyo);
    if (dx && p->wino_dx) {
        wino_conv(p, dx, p->ld_x, (const float *)dyo, lddy, p->Cout, p->Cin, w, NULL, 1);
    } else if (dx) {
        float *dxs = p->stage_x ? exec_buffer(OPS_SLOT_CONV_X, sizeof(float) * nx * p->Cin) : dx;
        dnnl_memory_t wm = dxs ? weights(&p->w_bwd, w) : NULL;
        if (!wm) return;
        dnnl_memory_set_data_handle(p->dx, dxs);
        dnnl_exec_arg_t a[] = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, p->dx}};
        if (ops_prim_run(&p->bwd_data.op, 3, a)) return;
        if (p->stage_x) copy_rows(dx, p->ld_x, dxs, p->Cin, nx, p->Cin);
    }
    if (dw || db) {
        /* This call's gradients: [OIHW weights | bias | primitive-layout weights]. */
        size_t nw = (size_t)p->Cout * p->Cin * 9, head = (nw + p->Cout + 15) / 16 * 16;
        size_t prim_bytes = p->dw.p.p ? dnnl_memory_desc_get_size(mem_md(p->dw.prim)) : 0;
        float *dwt = exec_buffer(OPS_SLOT_CONV_DW, sizeof(float) * head + prim_bytes);
        if (!dwt) return;
        float *dbt = dwt + nw;
        if (p->wino_dw) {
            wino_bwd_w(p, dwt, dbt, (const float *)dyo, lddy, x, p->ld_x);
        } else {
            const void *xo = operand(p, OPS_SLOT_CONV_X, x, p->ld_x, nx, p->Cin, p->stage_x);
            if (!xo) return;
            if (p->bwd_w_ref) {
                conv_bwd_w_direct(p, dwt, dbt, (const float *)dyo, lddy, (const float *)xo, p->stage_x ? p->Cin : p->ld_x);
            } else {
                dnnl_memory_set_data_handle(p->x, (void *)xo);
                dnnl_memory_set_data_handle(p->dbias, dbt);
                dnnl_memory_set_data_handle(p->dw.prim, p->dw.p.p ? (void *)(dwt + head) : (void *)dwt);
                dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DIFF_DST, p->dy},
                                       {DNNL_ARG_DIFF_WEIGHTS, p->dw.prim}, {DNNL_ARG_DIFF_BIAS, p->dbias}};
                if (ops_prim_run(&p->bwd_w.op, 4, a) || !run_reorder(&p->dw, dwt)) return;
            }
        }
        if (dw)
            for (size_t i = 0; i < nw; i++) dw[i] += dwt[i];
        if (db)
            for (int i = 0; i < p->Cout; i++) db[i] += dbt[i];
    }
}

void ops_conv_backward(conv_plan *p, float *dx, float *dw, float *db, const float *dy,
                   const float *x, const float *w) {
    ERR_ASSERT(p->training);
    if (rounds(p)) {
        dy = ops_bf16_operand(OPS_SLOT_BF16_B, dy, p->ld_y, (size_t)p->B * p->Ho * p->Wo, p->Cout);
        x = dw || db ? ops_bf16_operand(OPS_SLOT_BF16_A, x, p->ld_x, (size_t)p->B * p->H * p->W, p->Cin) : x;
        w = dx && reads_weights(p, 1) ? rounded_weights(p, w) : w;
        if (!dy || !x || !w) return;
    }
    backward(p, dx, dw, db, dy, x, w);
}

/* ---- measuring the algorithms ---------------------------------------------- */

/* Buffers of one copy of a measured convolution. */
typedef struct trial {
    conv_plan *p;
    float *x, *dx, *y, *w, *dw, *b, *db;
} trial;

static void trial_run(trial *c, int pass) {
    if (pass == CONV_PASS_FWD) ops_conv_forward(c->p, c->y, c->x, c->w, c->b);
    else if (pass == CONV_PASS_BWD_DATA) ops_conv_backward(c->p, c->dx, NULL, NULL, c->y, c->x, c->w);
    else if (pass == CONV_PASS_BWD_W) ops_conv_backward(c->p, NULL, c->dw, c->db, c->y, c->x, c->w);
    else ops_conv_prepare(c->p, c->w);
}

/* The best of a few runs of one pass (seconds), each copy of c[n] on its own
 * thread at once (as shards run; the preparation: the first copy alone):
 * after a warm-up run, at least 2 and at most 12, until 5 ms have gone. */
static double time_pass(trial *c, int n, int pass) {
    double best = 1e30, spent = 0;
    if (pass == CONV_PASSES) n = 1;
    for (int r = 0; r < 13 && (r < 3 || spent < 0.005); r++) {
        double t0 = clock_now();
        if (n == 1) {
            trial_run(c, pass);
        } else {
            #pragma omp parallel for num_threads(n) schedule(static, 1)
            for (int i = 0; i < n; i++) trial_run(&c[i], pass);
        }
        double t = clock_now() - t0;
        if (r > 0) best = t < best ? t : best, spent += t;
    }
    return best;
}

int ops_conv_measure(const conv_key *k, conv_times *t, err_t *err) {
    int Ho, Wo, n = k->concurrency > 1 ? k->concurrency : 1;
    ops_conv_out_size(k->H, k->W, k->stride, &Ho, &Wo);
    size_t nx = (size_t)k->B * k->H * k->W * k->ld_x, ny = (size_t)k->B * Ho * Wo * k->ld_y;
    size_t nw = (size_t)k->Cout * k->Cin * 9, each = 2 * nx + ny + 2 * nw + 2 * (size_t)k->Cout;
    float *buf = mem_alloc_floats(each * n, err);
    trial *c = mem_calloc((size_t)n, sizeof *c, err);
    if (!buf || !c) {
        free(buf), free(c);
        return -1;
    }
    /* Values of the size activations and weights have; the time does not depend on them. */
    for (size_t i = 0; i < each * n; i++) buf[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int j = 0; j < n; j++) {
        float *q = buf + each * j;
        c[j] = (trial){NULL, q, q + nx, q + 2 * nx, q + 2 * nx + ny, q + 2 * nx + ny + nw, q + 2 * nx + ny + 2 * nw,
                       q + 2 * nx + ny + 2 * nw + k->Cout};
        for (size_t i = 0; i < nw; i++) c[j].w[i] *= 0.03f;
    }
    for (int a = 0; a < CONV_ALGS; a++)
        for (int i = 0; i <= CONV_PASSES; i++) t->s[a][i] = -1; /* not offered */
    int rc = 0;
    for (int a = CONV_ALG_DIRECT; a < CONV_ALGS && !rc; a++) {
        if (a == CONV_ALG_WINOGRAD && !winograd_applies(k)) continue;
        const int alg[CONV_PASSES] = {a, a, a};
        int made = 0;
        while (made < n && !plan_make(&c[made].p, k, alg, EXEC_FP32, a == CONV_ALG_DIRECT ? err : NULL)) {
            ops_conv_plan_share(c[made].p, c[made].p); /* weights prepared once per step, as the shards share them */
            made++;
        }
        if (made == n)
            for (int i = CONV_PASSES; i >= 0; i--) /* the preparation first */
                if (i == CONV_PASSES || i == CONV_PASS_FWD || k->training) t->s[a][i] = time_pass(c, n, i);
        for (int j = 0; j < made; j++) ops_conv_plan_free(c[j].p), c[j].p = NULL;
        if (made < n && a == CONV_ALG_DIRECT) rc = -1; /* else oneDNN offers no Winograd for it */
        if (exec_take_failure(NULL)) /* it failed to run: not a candidate */
            for (int i = 0; i <= CONV_PASSES; i++) t->s[a][i] = -1;
    }
    free(buf), free(c);
    if (!rc && t->s[CONV_ALG_DIRECT][CONV_PASS_FWD] < 0) rc = err_fail(err, "convolution: the direct kernels failed to run");
    return rc;
}
