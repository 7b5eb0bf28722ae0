/* test_unet.c -- the whole U-Net against the PyTorch reference: forward output,
 * MSE loss, the gradient of every parameter and of the input, for two tiny
 * model folders (google-style with legacy attention names; diffusers-default
 * style), with both kernel tiers. Also: a folder written here reads back
 * bit-exactly. */
#include <unistd.h>

#include "fixture.h"
#include "io/modelfolder.h"
#include "model/unet.h"
#include "ops/ops.h"
#include "unet_pass.h"

/* tier: 1 plain loops, 0 the fast path as chosen for this CPU, 2 the fast
 * path with Winograd in every convolution it applies to (the fixtures' 8x8
 * images are below its automatic threshold). */
static void check_model(const char *name, int tier) {
    char dir[256], io[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
    snprintf(io, sizeof io, "tests/fixtures/%s_io.safetensors", name);
    const char *tier_name[] = {"fast (automatic choice)", "reference", "fast, Winograd forced"};
    printf("  %s, %s kernels\n", name, tier_name[tier]);
    ops_set_reference(tier == 1);
    ops_conv_set_algorithm(tier == 2 ? CONV_ALG_WINOGRAD : CONV_ALG_MEASURE);
    err_t err;
    unet *u;
    st_file f = fx_open(io);
    int N, C, H, W;
    size_t ny = 0;
    float *yf = st_find(&f, "y") ? fx_get(&f, "y", &ny) : NULL; /* class labels (conditional model) */
    int32_t y[16];
    for (size_t i = 0; i < ny && i < 16; i++) y[i] = (int32_t)yf[i];
    int rc = folder_load(&u, dir, yf ? (int)ny : 2, 1, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return;
    float *x = fx_get_nhwc(&f, "x", &N, &C, &H, &W);
    float *eps = fx_get_nhwc(&f, "eps", &N, &C, &H, &W);
    float *ref = fx_get_nhwc(&f, "out", &N, &C, &H, &W);
    float *gx = fx_get_nhwc(&f, "grad.x", &N, &C, &H, &W);
    float *t = fx_get(&f, "t", NULL), *loss_ref = fx_get(&f, "loss", NULL);
    size_t n = (size_t)N * C * H * W;
    CHECK(N == u->batch, "batch %d", N);
    float *out = malloc(n * sizeof(float)), *dout = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    CHECK(unet_forward(u, out, x, t, yf ? y : NULL, NULL, &err) == 0, "%s", err.msg);
    check_close("forward output", out, ref, n, 1e-5, 1e-4);
    double loss = ops_mse_loss(dout, out, eps, n);
    printf("  loss %.9f (reference %.9f)\n", loss, loss_ref[0]);
    CHECK(fabs(loss - loss_ref[0]) <= 1e-6 * fabs(loss_ref[0]) + 1e-8, "loss %.9g vs %.9g", loss, loss_ref[0]);
    memset(u->grads, 0, u->nparams * sizeof(float));
    pass_with_dout(u, out, dx, x, t, yf ? y : NULL, NULL, dout);
    check_close("grad.x", dx, gx, n, 1e-4 * fx_maxabs(gx, n), 1e-3);
    double worst = 0;
    const char *worst_name = "";
    int bad = 0;
    for (int i = 0; i < u->ntensors; i++) {
        const param_info *p = &u->table[i];
        char key[128];
        snprintf(key, sizeof key, "grad.%s", p->name);
        size_t m;
        float *g = fx_get(&f, key, &m);
        CHECK(m == p->numel, "%s: %zu vs %zu elements", key, m, p->numel);
        float scale = fx_maxabs(g, m);
        if (scale == 0) scale = 1; /* exact zeros (to_k.bias) */
        for (size_t k = 0; k < m; k++) {
            double d = fabs(u->grads[p->offset + k] - g[k]) / scale;
            if (d > worst) { worst = d; worst_name = p->name; }
            if (d > 1e-4 && fabs(u->grads[p->offset + k] - g[k]) > 1e-3 * fabs(g[k])) bad++;
        }
        free(g);
    }
    printf("  %d parameter gradients: max error relative to each tensor's max %.3e (%s)\n", u->ntensors, worst,
           worst_name);
    CHECK(bad == 0, "%d gradient elements outside tolerance", bad);
    free(x); free(eps); free(ref); free(gx); free(t); free(loss_ref); free(out); free(dout); free(dx); free(yf);
    st_close(&f);
    unet_free(u);
    ops_set_reference(0);
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
}

static void test_unet_a_fast(void) { check_model("unet_a", 0); }
static void test_unet_a_reference(void) { check_model("unet_a", 1); }
static void test_unet_b_fast(void) { check_model("unet_b", 0); }
static void test_unet_b_reference(void) { check_model("unet_b", 1); }
static void test_unet_a_winograd(void) { check_model("unet_a", 2); }
static void test_unet_b_winograd(void) { check_model("unet_b", 2); }
/* Class-conditional, made by the real diffusers (tools/fixtures_class.py). */
static void test_unet_c_fast(void) { check_model("unet_c", 0); }
static void test_unet_c_reference(void) { check_model("unet_c", 1); }

/* A folder written here loads back with identical parameters and config. */
static void test_save_load_roundtrip(void) {
    err_t err;
    unet *u, *v;
    CHECK(folder_load(&u, "tests/fixtures/unet_b", 1, 0, &err) == 0, "%s", err.msg);
    char dir[] = "/tmp/ddpm_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char sub[512];
    snprintf(sub, sizeof sub, "%s/model", dir);
    CHECK(folder_save(u, u->params, sub, "{\"_class_name\": \"DDPMScheduler\"}", NULL, &err) == 0, "%s", err.msg);
    CHECK(folder_load(&v, sub, 1, 0, &err) == 0, "%s", err.msg);
    CHECK(v->nparams == u->nparams && !memcmp(v->params, u->params, u->nparams * sizeof(float)),
          "parameters differ after a round trip");
    CHECK(!memcmp(&u->cfg, &v->cfg, sizeof u->cfg), "config differs after a round trip");
    unet_free(u);
    unet_free(v);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

TEST_MAIN(test_unet_a_fast, test_unet_b_fast, test_unet_a_reference, test_unet_b_reference, test_unet_a_winograd,
          test_unet_b_winograd, test_unet_c_fast, test_unet_c_reference, test_save_load_roundtrip)
