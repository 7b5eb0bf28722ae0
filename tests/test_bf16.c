/* test_bf16.c -- bf16 mixed precision (exec/executor.h, precisions):
 *   - the rounding against PyTorch's .bfloat16(), bit for bit (every rounding
 *     case, subnormals, infinities, NaNs; tests/fixtures/op_bf16.safetensors);
 *   - each operator in bf16-emulated computing exactly what fp32 computes on
 *     its operands rounded first: the 3x3 convolution by each algorithm,
 *     forward and both gradients, row-strided, stride 2 and one input
 *     channel; the linear layer, forward and backward;
 *   - the attention block and a U-Net training pass in bf16-emulated against
 *     the reference tier in bf16 (plain loops on rounded operands), and their
 *     distance from fp32 (the size of bf16's rounding: not zero, not more);
 *   - the precision recorded in the training options (resume);
 *   - bf16 refused with a message on a CPU without AVX512_BF16 / AMX-BF16,
 *     and on a CPU with them oneDNN's bf16 kernels against bf16-emulated. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/cpu.h"
#include "fixture.h"
#include "io/modelfolder.h"
#include "ops/ops.h"
#include "train/trainer.h"
#include "unet_pass.h"

static float *randn(size_t n, unsigned seed, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = scale * (((float)(seed >> 8) / 16777216.0f) * 2.0f - 1.0f) * (1.0f + (float)(i % 7));
    }
    return x;
}

static float *copy_of(const float *x, size_t n) {
    float *y = malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* The largest |a - b| / (max |b|), the relative size of a difference. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d / fx_maxabs(b, n);
}

static executor *make_exec(int precision) {
    exec_config ec = {.nshards = 1, .threads = 0, .sharded = 0, .precision = precision};
    executor *e = NULL;
    err_t err;
    CHECK(exec_create(&e, &ec, &err) == 0, "%s", err.msg);
    return e;
}

/* ---- the rounding ----------------------------------------------------------- */

static void test_rounding_matches_pytorch(void) {
    st_file f = fx_open("tests/fixtures/op_bf16.safetensors");
    size_t n;
    float *x = fx_get(&f, "x", &n), *want = fx_get(&f, "out", NULL);
    float *got = malloc(n * sizeof(float));
    uint16_t *bits = malloc(n * sizeof(uint16_t));
    ops_round_bf16(got, 1, x, 1, n, 1); /* one value per row: the strides */
    ops_to_bf16(bits, 1, x, 1, n, 1);
    size_t bad = 0, bad16 = 0, nans = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t g, w, xi;
        memcpy(&g, &got[i], 4), memcpy(&w, &want[i], 4), memcpy(&xi, &x[i], 4);
        if (isnan(x[i])) { /* PyTorch's own conversions disagree on a NaN's bits: any NaN, ours 0x7FC0 */
            nans++;
            bad += g != 0x7FC00000u || !isnan(want[i]);
            bad16 += bits[i] != 0x7FC0;
            continue;
        }
        if (g != w && bad++ < 5) fprintf(stderr, "  x=%08x: got %08x, PyTorch %08x\n", xi, g, w);
        bad16 += bits[i] != (uint16_t)(w >> 16);
    }
    printf("  %zu values (%zu NaNs): %zu differ from PyTorch's .bfloat16(), %zu in the 16-bit form\n", n, nans, bad,
           bad16);
    CHECK(bad == 0 && bad16 == 0 && nans >= 8, "the rounding differs from PyTorch's");
    /* In place, dense rows of several channels: the same. */
    ops_round_bf16(x, 64, x, 64, n / 64, 64);
    CHECK(!memcmp(x, got, (n / 64) * 64 * sizeof(float)), "in place over rows of 64");
    free(x), free(want), free(got), free(bits);
    st_close(&f);
}

/* ---- operators: bf16-emulated = fp32 on rounded operands ---------------------- */

typedef struct conv_case {
    int B, H, W, Cin, Cout, stride, pad, ld_x, ld_y;
} conv_case;

static conv_plan *plan_in(executor *e, const conv_case *c) {
    conv_plan *p = NULL;
    err_t err;
    exec_build_begin(e);
    int rc = ops_conv_plan_create(&p, c->B, c->H, c->W, c->Cin, c->Cout, c->stride, c->pad, c->ld_x, c->ld_y, 1, &err);
    CHECK(exec_build_end(e, rc ? NULL : &err) == 0 && rc == 0, "plan: %s", err.msg);
    return p;
}

/* Forward, input gradient and weight/bias gradients of plan p. */
static void conv_run(conv_plan *p, const conv_case *c, float *y, float *dx, float *dw, float *db, const float *x,
                     const float *w, const float *b, const float *dy) {
    size_t nw = (size_t)c->Cout * c->Cin * 9;
    memset(dw, 0, nw * sizeof(float)), memset(db, 0, c->Cout * sizeof(float));
    ops_conv_forward(p, y, x, w, b);
    ops_conv_backward(p, dx, dw, db, dy, x, w);
    err_t err;
    CHECK(exec_take_failure(&err) == 0, "%s", err.msg);
}

static void test_conv_is_fp32_on_rounded_operands(void) {
    const conv_case cases[] = {
        {2, 6, 6, 16, 24, 1, CONV_PAD_SAME, 20, 32}, /* Winograd applies; row-strided in and out */
        {2, 8, 8, 8, 12, 2, CONV_PAD_TF, 8, 12},     /* downsampling */
        {2, 5, 7, 1, 8, 1, CONV_PAD_SAME, 1, 8},     /* one input channel (conv_in of gray images) */
    };
    const int algs[] = {CONV_ALG_DIRECT, CONV_ALG_WINOGRAD};
    executor *e16 = make_exec(EXEC_BF16_EMULATED), *e32 = make_exec(EXEC_FP32);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        for (int a = 0; a < 2; a++) {
            const conv_case *c = &cases[k];
            int Ho, Wo;
            ops_conv_out_size(c->H, c->W, c->stride, &Ho, &Wo);
            size_t nx = (size_t)c->B * c->H * c->W * c->ld_x, ny = (size_t)c->B * Ho * Wo * c->ld_y;
            size_t nw = (size_t)c->Cout * c->Cin * 9;
            float *x = randn(nx, 1 + k, 1.0f), *w = randn(nw, 2 + k, 0.1f), *b = randn(c->Cout, 3, 0.1f);
            float *dy = randn(ny, 4 + k, 1.0f);
            float *xr = copy_of(x, nx), *wr = copy_of(w, nw), *dyr = copy_of(dy, ny);
            ops_round_bf16(xr, 1, xr, 1, nx, 1), ops_round_bf16(wr, 1, wr, 1, nw, 1), ops_round_bf16(dyr, 1, dyr, 1, ny, 1);
            float *y[2], *dx[2], *dw[2], *db[2];
            for (int i = 0; i < 2; i++) {
                y[i] = calloc(ny, sizeof(float)), dx[i] = calloc(nx, sizeof(float));
                dw[i] = malloc(nw * sizeof(float)), db[i] = malloc(c->Cout * sizeof(float));
            }
            ops_conv_set_algorithm(algs[a]);
            conv_plan *p16 = plan_in(e16, c), *p32 = plan_in(e32, c);
            if (p16 && p32) {
                conv_run(p16, c, y[0], dx[0], dw[0], db[0], x, w, b, dy);
                conv_run(p32, c, y[1], dx[1], dw[1], db[1], xr, wr, b, dyr);
                const char *alg = ops_conv_algorithm_name(ops_conv_plan_algorithm(p16, CONV_PASS_FWD));
                printf("  %dx%d, %d -> %d channels, stride %d, %s: ", c->H, c->W, c->Cin, c->Cout, c->stride, alg);
                int same = !memcmp(y[0], y[1], ny * sizeof(float)) && !memcmp(dx[0], dx[1], nx * sizeof(float)) &&
                           !memcmp(dw[0], dw[1], nw * sizeof(float)) && !memcmp(db[0], db[1], c->Cout * sizeof(float));
                printf("%s", same ? "bitwise fp32 on the rounded operands" : "DIFFERENT");
                CHECK(same, "bf16-emulated convolution differs from fp32 on rounded operands");
                /* Prepared weights (as a network's plans share them): rounded once by ops_conv_prepare. */
                ops_conv_plan_share(p16, p16);
                ops_conv_prepare(p16, w);
                conv_run(p16, c, y[0], dx[0], dw[0], db[0], x, w, b, dy);
                same = !memcmp(y[0], y[1], ny * sizeof(float)) && !memcmp(dx[0], dx[1], nx * sizeof(float)) &&
                       !memcmp(dw[0], dw[1], nw * sizeof(float)) && !memcmp(db[0], db[1], c->Cout * sizeof(float));
                printf("%s\n", same ? "; so with prepared weights" : "; prepared: DIFFERENT");
                CHECK(same, "bf16-emulated convolution with prepared weights differs from fp32 on rounded operands");
            }
            ops_conv_plan_free(p16), ops_conv_plan_free(p32);
            for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(dw[i]), free(db[i]);
            free(x), free(w), free(b), free(dy), free(xr), free(wr), free(dyr);
        }
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
    exec_free(e16), exec_free(e32);
}

/* The linear layer inside an executor's run (it takes the executor's precision). */
typedef struct linear_job {
    float *y, *dx, *dW, *db;
    const float *x, *W, *b, *dy;
    int M, K, N;
} linear_job;

static void linear_shard(void *ctx, int shard, float *grads) {
    linear_job *j = ctx;
    ops_linear_forward(j->y, j->N, j->x, j->K, j->W, j->b, j->M, j->K, j->N, 0);
    ops_linear_backward(j->dx, j->K, j->dW, j->db, j->dy, j->N, j->x, j->K, j->W, j->M, j->K, j->N);
}

static void test_linear_is_fp32_on_rounded_operands(void) {
    const int M = 37, K = 24, N = 19;
    float *x = randn((size_t)M * K, 5, 1.0f), *W = randn((size_t)N * K, 6, 0.2f), *b = randn(N, 7, 0.1f);
    float *dy = randn((size_t)M * N, 8, 1.0f);
    float *xr = copy_of(x, (size_t)M * K), *Wr = copy_of(W, (size_t)N * K), *dyr = copy_of(dy, (size_t)M * N);
    ops_round_bf16(xr, K, xr, K, M, K), ops_round_bf16(Wr, K, Wr, K, N, K), ops_round_bf16(dyr, N, dyr, N, M, N);
    linear_job j[2];
    executor *e[2] = {make_exec(EXEC_BF16_EMULATED), make_exec(EXEC_FP32)};
    for (int i = 0; i < 2; i++) {
        j[i] = (linear_job){calloc((size_t)M * N, 4), calloc((size_t)M * K, 4), calloc((size_t)N * K, 4), calloc(N, 4),
                            i ? xr : x, i ? Wr : W, b, i ? dyr : dy, M, K, N};
        err_t err;
        CHECK(exec_run(e[i], linear_shard, &j[i], NULL, &err) == 0, "%s", err.msg);
    }
    int same = !memcmp(j[0].y, j[1].y, sizeof(float) * M * N) && !memcmp(j[0].dx, j[1].dx, sizeof(float) * M * K) &&
               !memcmp(j[0].dW, j[1].dW, sizeof(float) * N * K);
    printf("  linear %dx%d -> %d, forward and backward: %s\n", M, K, N,
           same ? "bitwise fp32 on the rounded operands" : "DIFFERENT");
    CHECK(same, "bf16-emulated linear layer differs from fp32 on rounded operands");
    /* The bias gradient is a sum, not a product: of the gradient as it came, in fp32. */
    int db_ok = 1;
    for (int c = 0; c < N; c++) {
        float s = 0;
        for (int r = 0; r < M; r++) s += dy[(size_t)r * N + c];
        db_ok &= j[0].db[c] == s;
    }
    CHECK(db_ok, "the bias gradient is the fp32 sum of the unrounded gradient");
    for (int i = 0; i < 2; i++) free(j[i].y), free(j[i].dx), free(j[i].dW), free(j[i].db), exec_free(e[i]);
    free(x), free(W), free(b), free(dy), free(xr), free(Wr), free(dyr);
}

/* ---- the attention block and a U-Net: against the reference tier --------------- */

typedef struct attn_job {
    float *out, *dx, *grads;
    const float *x, *dout;
    const attn_params *p;
    int B, HW, C;
} attn_job;

static void attn_shard(void *ctx, int shard, float *grads_unused) {
    attn_job *j = ctx;
    size_t MC = (size_t)j->B * j->HW * j->C, G = 4;
    float *save = calloc(6 * MC + (size_t)j->B * j->HW * j->HW + 2 * j->B * G, sizeof(float));
    attn_saved s = {save, save + MC, save + 2 * MC, save + 3 * MC, save + 6 * MC, save + 4 * MC,
                    save + 6 * MC + (size_t)j->B * j->HW * j->HW, save + 6 * MC + (size_t)j->B * j->HW * j->HW + j->B * G};
    float *scratch = malloc(ops_attn_scratch_floats(j->B, j->HW, j->C) * sizeof(float));
    int C = j->C;
    float *g = j->grads;
    attn_grads ag = {g, g + C, g + 2 * C, g + 2 * C + C * C, g + 3 * C + C * C, g + 3 * C + 2 * C * C,
                     g + 4 * C + 2 * C * C, g + 4 * C + 3 * C * C, g + 5 * C + 3 * C * C, g + 5 * C + 4 * C * C};
    ops_attn_forward(j->out, C, &s, j->x, C, j->p, j->B, j->HW, C, (int)G, 1e-6f);
    ops_attn_backward(j->dx, C, &ag, j->dout, C, &s, j->x, C, j->p, j->B, j->HW, C, (int)G, scratch);
    free(save), free(scratch);
}

static void test_attention_against_reference(void) {
    const int B = 2, HW = 16, C = 8;
    size_t MC = (size_t)B * HW * C, np = 6 * (size_t)C + 4 * (size_t)C * C;
    float *x = randn(MC, 9, 1.0f), *dout = randn(MC, 10, 1.0f), *w = randn(np, 11, 0.3f);
    for (int c = 0; c < C; c++) w[c] = 1.0f + 0.1f * w[c]; /* GroupNorm's scale near 1 */
    attn_params p = {w, w + C, w + 2 * C, w + 2 * C + C * C, w + 3 * C + C * C, w + 3 * C + 2 * C * C,
                     w + 4 * C + 2 * C * C, w + 4 * C + 3 * C * C, w + 5 * C + 3 * C * C, w + 5 * C + 4 * C * C};
    attn_job j[3]; /* bf16-emulated; bf16 in the reference tier; fp32 */
    for (int i = 0; i < 3; i++) {
        executor *e = make_exec(i < 2 ? EXEC_BF16_EMULATED : EXEC_FP32);
        j[i] = (attn_job){calloc(MC, 4), calloc(MC, 4), calloc(np, 4), x, dout, &p, B, HW, C};
        ops_set_reference(i == 1);
        err_t err;
        CHECK(exec_run(e, attn_shard, &j[i], NULL, &err) == 0, "%s", err.msg);
        ops_set_reference(0);
        exec_free(e);
    }
    /* Operands rounded from values that differ in their last fp32 bits may
     * round apart by one bf16 step (2^-8): differences of that size, rarely. */
    check_close("attention output, emulated vs reference", j[0].out, j[1].out, MC, 2e-3 * fx_maxabs(j[1].out, MC), 0);
    check_close("attention dx, emulated vs reference", j[0].dx, j[1].dx, MC, 4e-3 * fx_maxabs(j[1].dx, MC), 0);
    check_close("attention grads, emulated vs reference", j[0].grads, j[1].grads, np, 4e-3 * fx_maxabs(j[1].grads, np), 0);
    double d = rel_diff(j[0].out, j[2].out, MC), dg = rel_diff(j[0].grads, j[2].grads, np);
    printf("  attention, bf16 against fp32: output %.2e, parameter gradients %.2e (relative to the largest)\n", d, dg);
    CHECK(d > 1e-5 && d < 2e-2 && dg > 1e-5 && dg < 5e-2, "bf16's distance from fp32 is not bf16-sized");
    for (int i = 0; i < 3; i++) free(j[i].out), free(j[i].dx), free(j[i].grads);
    free(x), free(dout), free(w);
}

/* A U-Net training pass of the unet_a fixture in `precision`. */
typedef struct pass_result {
    float *out, *dx, *grads;
    size_t n, np;
} pass_result;

static int unet_pass_in(pass_result *r, int precision) {
    err_t err;
    unet_config cfg;
    unet *u = NULL;
    CHECK(folder_read_config("tests/fixtures/unet_a", &cfg, &err) == 0, "%s", err.msg);
    if (unet_create_exec(&u, &cfg, 2, &(unet_exec){0, precision}, 1, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    CHECK(u->precision == precision, "the network's precision");
    CHECK(folder_load_weights(u, "tests/fixtures/unet_a", &err) == 0, "%s", err.msg);
    st_file f = fx_open("tests/fixtures/unet_a_io.safetensors");
    int N, C, H, W;
    float *x = fx_get_nhwc(&f, "x", &N, &C, &H, &W), *t = fx_get(&f, "t", NULL);
    r->n = (size_t)N * C * H * W, r->np = u->nparams;
    r->out = malloc(r->n * 4), r->dx = malloc(r->n * 4), r->grads = calloc(r->np, 4);
    float *dout = malloc(r->n * sizeof(float));
    for (size_t i = 0; i < r->n; i++) dout[i] = sinf(0.37f * (float)i);
    memset(u->grads, 0, u->nparams * sizeof(float));
    pass_with_dout(u, r->out, r->dx, x, t, NULL, NULL, dout);
    memcpy(r->grads, u->grads, r->np * sizeof(float));
    free(dout), free(x), free(t);
    st_close(&f);
    unet_free(u);
    return 0;
}

static void pass_free(pass_result *r) { free(r->out), free(r->dx), free(r->grads); }

/* The root mean square of a - b over that of b. */
static double rms_diff(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
    return sqrt(d / r);
}

/* Two computations of the same bf16 pass: the same rounding, fp32 sums in
 * another order. Through a network that is not a small difference: an
 * intermediate value within the sums' difference (~1e-6) of a bf16
 * rounding boundary rounds apart by one bf16 step (2^-8) in the next
 * operator, and that carries on, layer after layer and more so backward
 * (measured: 0.3-0.5 of bf16's own distance from fp32, RMS). Each operator
 * alone is held to fp32 on rounded operands bit for bit above; here the
 * passes must stay clearly closer to each other than to fp32 (an operand
 * left unrounded would put them as far apart as fp32). */
static void check_same_bf16(const char *what, const float *a, const float *b, const float *f32, size_t n) {
    double rms = rms_diff(a, b, n), rms32 = rms_diff(b, f32, n), mx = rel_diff(a, b, n);
    printf("  %-36s RMS %.2e (bf16 vs fp32: %.2e), largest %.2e of the largest value\n", what, rms, rms32, mx);
    CHECK(rms < 0.6 * rms32 && mx < 2e-2, "%s: not the same bf16 computation", what);
}

static void test_unet_against_reference_and_fp32(void) {
    pass_result em = {0}, ref = {0}, f32 = {0};
    unet_pass_in(&em, EXEC_BF16_EMULATED);
    ops_set_reference(1);
    unet_pass_in(&ref, EXEC_BF16_EMULATED);
    ops_set_reference(0);
    unet_pass_in(&f32, EXEC_FP32);
    if (em.out && ref.out && f32.out) {
        check_same_bf16("output, emulated vs reference", em.out, ref.out, f32.out, em.n);
        check_same_bf16("dx, emulated vs reference", em.dx, ref.dx, f32.dx, em.n);
        check_same_bf16("gradients, emulated vs reference", em.grads, ref.grads, f32.grads, em.np);
        double d = rms_diff(em.out, f32.out, em.n), dg = rms_diff(em.grads, f32.grads, em.np);
        printf("  U-Net, bf16 against fp32 (RMS): output %.2e, parameter gradients %.2e\n", d, dg);
        CHECK(d > 1e-4 && d < 3e-2 && dg > 1e-4 && dg < 5e-2, "bf16's distance from fp32 is not bf16-sized");
    }
    pass_free(&em), pass_free(&ref), pass_free(&f32);
}

/* ---- the options, and the fast path -------------------------------------------- */

static void test_precision_names_and_options(void) {
    for (int p = 0; p < EXEC_PRECISIONS; p++)
        CHECK(exec_precision_parse(exec_precision_name(p)) == p, "name %d", p);
    CHECK(exec_precision_parse("bf32") == -1 && exec_precision_parse(NULL) == -1, "unknown names");
    train_opts o = train_opts_default(), back;
    o.precision = EXEC_BF16_EMULATED;
    char *j = train_opts_to_json(&o);
    err_t err;
    CHECK(j && strstr(j, "\"precision\":\"bf16-emulated\""), "recorded: %s", j ? j : "(null)");
    CHECK(train_opts_from_json(&back, j, &err) == 0 && back.precision == EXEC_BF16_EMULATED, "read back");
    free(j);
    CHECK(train_opts_from_json(&back, "{\"batch\":1,\"lr\":1,\"warmup\":0,\"beta1\":0.9,\"beta2\":0.9,\"adam_eps\":1e-8,"
                                      "\"clip\":1,\"ema\":0.9,\"seed\":\"0\",\"ema_warmup\":true,\"flip\":false}",
                                  &err) == 0 && back.precision == EXEC_FP32, "a state from before bf16: fp32");
    CHECK(train_opts_from_json(&back, "{\"batch\":1,\"lr\":1,\"warmup\":0,\"beta1\":0.9,\"beta2\":0.9,\"adam_eps\":1e-8,"
                                      "\"clip\":1,\"ema\":0.9,\"seed\":\"0\",\"ema_warmup\":true,\"flip\":false,"
                                      "\"precision\":\"fp16\"}", &err) == -1 && strstr(err.msg, "precision"),
          "an unknown precision is refused: %s", err.msg);
}

static void test_native_bf16(void) {
    err_t err = {{0}, 0};
    int ok = exec_bf16_check(&err) == 0;
    exec_config ec = {.nshards = 1, .precision = EXEC_BF16};
    executor *e = NULL;
    int made = exec_create(&e, &ec, &err) == 0;
    exec_free(e);
    CHECK(made == ok, "exec_create agrees with exec_bf16_check");
    if (!ok) {
        printf("  this CPU (or its cap) has no bf16 kernels: %s\n", err.msg);
        CHECK(strstr(err.msg, "AVX512_BF16") && strstr(err.msg, "bf16-emulated"), "the message names what is missing");
        CHECK(cpu_has_bf16() || strstr(err.msg, "neither"), "names the CPU as the cause");
        printf("  oneDNN's bf16 kernels not run here: `make bench-bf16` and this test run them on a CPU with AVX512_BF16\n");
        return;
    }
    /* One operator: the same rounded operands in both, so only the order of
     * the fp32 sums differs. */
    const conv_case c = {2, 6, 6, 16, 24, 1, CONV_PAD_SAME, 20, 32};
    executor *en = make_exec(EXEC_BF16), *ee = make_exec(EXEC_BF16_EMULATED);
    size_t nx = (size_t)c.B * c.H * c.W * c.ld_x, ny = (size_t)c.B * c.H * c.W * c.ld_y, nw = (size_t)c.Cout * c.Cin * 9;
    float *x = randn(nx, 21, 1.0f), *w = randn(nw, 22, 0.1f), *b = randn(c.Cout, 23, 0.1f), *dy = randn(ny, 24, 1.0f);
    float *y[2], *dx[2], *dw[2], *db[2];
    for (int i = 0; i < 2; i++) {
        y[i] = calloc(ny, 4), dx[i] = calloc(nx, 4), dw[i] = malloc(nw * 4), db[i] = malloc(c.Cout * 4);
        conv_plan *p = plan_in(i ? ee : en, &c);
        if (p) conv_run(p, &c, y[i], dx[i], dw[i], db[i], x, w, b, dy);
        ops_conv_plan_free(p);
    }
    check_close("conv forward, oneDNN bf16 vs emulated", y[0], y[1], ny, 1e-5 * fx_maxabs(y[1], ny), 0);
    check_close("conv dx, oneDNN bf16 vs emulated", dx[0], dx[1], nx, 1e-5 * fx_maxabs(dx[1], nx), 0);
    check_close("conv dw, oneDNN bf16 vs emulated", dw[0], dw[1], nw, 1e-5 * fx_maxabs(dw[1], nw), 0);
    check_close("conv db, oneDNN bf16 vs emulated", db[0], db[1], c.Cout, 1e-5 * fx_maxabs(db[1], c.Cout), 0);
    for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(dw[i]), free(db[i]);
    free(x), free(w), free(b), free(dy);
    exec_free(en), exec_free(ee);

    pass_result nat = {0}, em = {0}, f32 = {0};
    unet_pass_in(&nat, EXEC_BF16);
    unet_pass_in(&em, EXEC_BF16_EMULATED);
    unet_pass_in(&f32, EXEC_FP32);
    if (nat.out && em.out && f32.out) {
        check_same_bf16("output, oneDNN bf16 vs emulated", nat.out, em.out, f32.out, em.n);
        check_same_bf16("dx, oneDNN bf16 vs emulated", nat.dx, em.dx, f32.dx, em.n);
        check_same_bf16("gradients, oneDNN bf16 vs emulated", nat.grads, em.grads, f32.grads, em.np);
    }
    pass_free(&nat), pass_free(&em), pass_free(&f32);
}

TEST_MAIN(test_rounding_matches_pytorch, test_conv_is_fp32_on_rounded_operands, test_linear_is_fp32_on_rounded_operands,
          test_attention_against_reference, test_unet_against_reference_and_fp32, test_precision_names_and_options,
          test_native_bf16)
