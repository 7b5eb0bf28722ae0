/* conv2d.c -- inference-only convolution of any kernel size, stride and zero
 * padding on NHWC, with bias and an optional fused ReLU: the layers of the
 * feature networks (Inception-v3's 1x1, 3x3, 5x5, 1x7, 7x1, 1x3, 3x1, strided
 * and unpadded kernels; the F-MNIST classifier's 3x3). One oneDNN primitive per
 * shape (the engine the U-Net's convolutions use), weights reordered into the
 * primitive's layout once when the plan is made, since they never change; a
 * plain-loop reference when ops_reference() is on. Stride-1 3x3 convolutions
 * (padding 1, or 0 computed as padding 1 and cropped) go to conv.c's plans
 * where those pick Winograd F(2x2, 3x3), which is faster than oneDNN's direct
 * kernels there (CPUs without AVX-512; bench/bench_conv.c); their Winograd
 * weights are made once too. */
#include <stdlib.h>
#include <string.h>

#include "dnnl_engine.h"
#include "ops.h"

struct conv2d_plan {
    conv2d_shape s;
    int Ho, Wo, ld_x, ld_y, relu;
    float *w, *b;            /* OIHW weights and bias as given (the reference tier reads them) */
    dnnl_engine_t engine;
    ops_prim fwd;
    dnnl_memory_t x, y, wm, bm; /* x, y: handles set per call; wm: weights in the primitive's layout */
    int stage_x, stage_y;    /* the fast kernel wants dense rows: copy through per-worker buffers */
    conv_plan *wino;         /* a 3x3 stride-1 convolution by Winograd (conv.c), or NULL */
};

void ops_conv2d_out_size(const conv2d_shape *s, int *Ho, int *Wo) {
    *Ho = (s->H + 2 * s->ph - s->kh) / s->sh + 1;
    *Wo = (s->W + 2 * s->pw - s->kw) / s->sw + 1;
}


static void free_prim(conv2d_plan *p) {
    ops_prim_free(&p->fwd);
    dnnl_memory_t *ms[] = {&p->x, &p->y, &p->wm, &p->bm};
    for (int i = 0; i < 4; i++)
        if (*ms[i]) dnnl_memory_destroy(*ms[i]);
    p->x = p->y = p->wm = p->bm = NULL;
}

/* The primitive for activations with row strides ldx / ldy; *ref says whether
 * oneDNN could only offer its slow reference kernel. */
static int build(conv2d_plan *p, int ldx, int ldy, int *ref, err_t *err) {
    const conv2d_shape *s = &p->s;
    dnnl_memory_desc_t x_md, y_md, w_any, w_user, b_md;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    ops_prim reorder = {0};
    dnnl_memory_t wu = NULL;
    ops_md_nhwc(&x_md, s->B, s->Cin, s->H, s->W, ldx, dnnl_f32);
    ops_md_nhwc(&y_md, s->B, s->Cout, p->Ho, p->Wo, ldy, dnnl_f32);
    dnnl_dims_t wd = {s->Cout, s->Cin, s->kh, s->kw}, bd = {s->Cout};
    dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw);
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x);
    dnnl_dims_t strides = {s->sh, s->sw}, pl = {s->ph, s->pw};
    /* Padding ph / pw on both sides; oneDNN's output size is then PyTorch's floor. */
    dnnl_dims_t pr = {s->ph, s->pw};
    dnnl_convolution_desc_t cd;
    DNNL_TRY(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &x_md, &w_any,
                                           &b_md, &y_md, strides, pl, pr), "conv2d descriptor");
    if (ops_prim_attr_user(&attr, err)) goto fail;
    if (p->relu) {
        DNNL_TRY(dnnl_post_ops_create(&po), "post-ops");
        DNNL_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f), "ReLU post-op");
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
    }
    DNNL_TRY(dnnl_primitive_desc_create(&pd, &cd, attr, p->engine, NULL), "conv2d primitive descriptor");
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    *ref = impl && !strncmp(impl, "ref", 3);
    if (ops_prim_make(&p->fwd, pd, "convolution forward (feature network)", err)) goto fail;
    DNNL_TRY(dnnl_memory_create(&p->x, &x_md, p->engine, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&p->y, &y_md, p->engine, DNNL_MEMORY_NONE), "memory");
    DNNL_TRY(dnnl_memory_create(&p->bm, &b_md, p->engine, p->b), "memory");
    /* The weights, once, into the layout the primitive chose. */
    const dnnl_memory_desc_t *wp = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    DNNL_TRY(dnnl_memory_create(&p->wm, wp, p->engine, DNNL_MEMORY_ALLOCATE), "weight memory");
    DNNL_TRY(dnnl_memory_create(&wu, &w_user, p->engine, p->w), "memory");
    dnnl_primitive_attr_destroy(attr); /* the reorder's: no post-ops */
    if (ops_prim_attr_user(&attr, err)) goto fail;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &w_user, p->engine, wp, p->engine, attr), "weight reorder");
    if (ops_prim_make(&reorder, rpd, "weight reorder", err)) goto fail;
    dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, p->wm}};
    if (ops_prim_run(&reorder, 2, a)) {
        exec_take_failure(err);
        goto fail;
    }
    int rc = 0;
    goto done;
fail:
    rc = -1;
done:
    ops_prim_free(&reorder);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (wu) dnnl_memory_destroy(wu);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return rc;
}

int ops_conv2d_plan_create(conv2d_plan **out, const conv2d_shape *s, int ld_x, int ld_y, int relu, const float *w,
                       const float *b, err_t *err) {
    *out = NULL;
    conv2d_plan *p = mem_calloc(1, sizeof *p, err);
    if (!p) return -1;
    p->s = *s, p->ld_x = ld_x, p->ld_y = ld_y, p->relu = relu;
    ops_conv2d_out_size(s, &p->Ho, &p->Wo);
    ERR_ASSERT(s->B > 0 && s->Cin > 0 && s->Cout > 0 && s->sh > 0 && s->sw > 0 && p->Ho > 0 && p->Wo > 0 &&
                ld_x >= s->Cin && ld_y >= s->Cout);
    size_t nw = (size_t)s->Cout * s->Cin * s->kh * s->kw;
    p->w = mem_alloc_floats(nw, err);
    p->b = mem_alloc_floats((size_t)s->Cout, err);
    if (!p->w || !p->b) goto fail;
    memcpy(p->w, w, sizeof(float) * nw);
    if (b) memcpy(p->b, b, sizeof(float) * s->Cout);
    else memset(p->b, 0, sizeof(float) * s->Cout);
    /* A 3x3 stride-1 convolution with padding 1 or 0: conv.c's plan (padding 1,
     * into a dense buffer when the output is cropped), where it picks Winograd. */
    if (s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 && s->ph == s->pw && (s->ph == 0 || s->ph == 1)) {
        int dense = s->ph == 0;
        if (ops_conv_plan_create(&p->wino, s->B, s->H, s->W, s->Cin, s->Cout, 1, CONV_PAD_SAME, ld_x,
                             dense ? s->Cout : ld_y, 0, err))
            goto fail;
        if (ops_conv_plan_algorithm(p->wino, CONV_PASS_FWD) == CONV_ALG_WINOGRAD) {
            ops_conv_plan_share(p->wino, p->wino);
            ops_conv_prepare(p->wino, p->w);
            *out = p;
            return 0;
        }
        ops_conv_plan_free(p->wino);
        p->wino = NULL;
    }
    if (ops_dnnl_engine(&p->engine, err)) goto fail;
    int ref;
    if (build(p, ld_x, ld_y, &ref, err)) goto fail;
    if (ref && (ld_x != s->Cin || ld_y != s->Cout)) {
        free_prim(p);
        if (build(p, s->Cin, s->Cout, &ref, err)) goto fail;
        p->stage_x = ld_x != s->Cin, p->stage_y = ld_y != s->Cout;
    }
    *out = p;
    return 0;
fail:
    ops_conv2d_plan_free(p);
    return -1;
}

void ops_conv2d_plan_free(conv2d_plan *p) {
    if (!p) return;
    free_prim(p);
    ops_conv_plan_free(p->wino);
    free(p->w), free(p->b);
    free(p);
}

static void conv2d_forward_ref(const conv2d_plan *p, float *y, const float *x) {
    const conv2d_shape *s = &p->s;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < s->B; n++)
        for (int oy = 0; oy < p->Ho; oy++)
            for (int ox = 0; ox < p->Wo; ox++) {
                float *o = y + ((size_t)(n * p->Ho + oy) * p->Wo + ox) * p->ld_y;
                for (int co = 0; co < s->Cout; co++) {
                    double acc = p->b[co];
                    for (int ky = 0; ky < s->kh; ky++) {
                        int iy = oy * s->sh + ky - s->ph;
                        if (iy < 0 || iy >= s->H) continue;
                        for (int kx = 0; kx < s->kw; kx++) {
                            int ix = ox * s->sw + kx - s->pw;
                            if (ix < 0 || ix >= s->W) continue;
                            const float *in = x + ((size_t)(n * s->H + iy) * s->W + ix) * p->ld_x;
                            const float *wk = p->w + (size_t)co * s->Cin * s->kh * s->kw + (size_t)ky * s->kw + kx;
                            for (int ci = 0; ci < s->Cin; ci++) acc += (double)in[ci] * wk[(size_t)ci * s->kh * s->kw];
                        }
                    }
                    o[co] = p->relu && acc < 0 ? 0.0f : (float)acc;
                }
            }
}

/* Copies M rows of C floats between row strides. */
static void copy_rows(float *dst, int ldd, const float *src, int lds, size_t M, int C) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < M; i++) memcpy(dst + i * ldd, src + i * lds, sizeof(float) * C);
}

/* By conv.c's Winograd plan: padding 1 straight into y, padding 0 as the
 * interior of the padding-1 result; then the ReLU. */
static void conv2d_forward_wino(conv2d_plan *p, float *y, const float *x) {
    const conv2d_shape *s = &p->s;
    const int crop = s->ph == 0, C = s->Cout, relu = p->relu;
    float *full = crop ? exec_buffer(OPS_SLOT_CONV_Y, sizeof(float) * s->B * s->H * s->W * C) : y;
    if (!full) return; /* out of memory: see exec_buffer */
    ops_conv_forward(p->wino, full, x, p->w, p->b);
    const int ldf = crop ? C : p->ld_y;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < s->B; n++)
        for (int oy = 0; oy < p->Ho; oy++)
            for (int ox = 0; ox < p->Wo; ox++) {
                const float *src = full + ((size_t)(n * s->H + oy + crop) * s->W + ox + crop) * ldf;
                float *dst = y + ((size_t)(n * p->Ho + oy) * p->Wo + ox) * p->ld_y;
                for (int c = 0; c < C; c++) dst[c] = relu && src[c] < 0 ? 0.0f : src[c];
            }
}

void ops_conv2d_forward(conv2d_plan *p, float *y, const float *x) {
    if (ops_reference()) {
        conv2d_forward_ref(p, y, x);
        return;
    }
    if (p->wino) {
        conv2d_forward_wino(p, y, x);
        return;
    }
    const conv2d_shape *s = &p->s;
    size_t Mx = (size_t)s->B * s->H * s->W, My = (size_t)s->B * p->Ho * p->Wo;
    const float *xs = x;
    float *ys = y;
    if (p->stage_x) {
        float *t = exec_buffer(OPS_SLOT_CONV_X, sizeof(float) * Mx * s->Cin);
        if (!t) return; /* out of memory: see exec_buffer */
        copy_rows(t, s->Cin, x, p->ld_x, Mx, s->Cin);
        xs = t;
    }
    if (p->stage_y && !(ys = exec_buffer(OPS_SLOT_CONV_Y, sizeof(float) * My * s->Cout))) return;
    dnnl_memory_set_data_handle(p->x, (void *)xs);
    dnnl_memory_set_data_handle(p->y, ys);
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_WEIGHTS, p->wm}, {DNNL_ARG_BIAS, p->bm},
                           {DNNL_ARG_DST, p->y}};
    if (ops_prim_run(&p->fwd, 4, a)) return;
    if (p->stage_y) copy_rows(y, p->ld_y, ys, s->Cout, My, s->Cout);
}
