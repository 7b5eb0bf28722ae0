/* test_cpu.c -- the kernels' instruction-set levels (core/cpu.h): the cap's
 * mapping from oneDNN's names, this process honouring ONEDNN_MAX_CPU_ISA,
 * cpu_set_level reaching every kernel, and each level this CPU supports
 * computing what the x86-64 baseline computes: a U-Net training pass (every
 * convolution by ddpm's Winograd, dropout on), an Adam + EMA update and the
 * RNG's draws. The copies' instructions themselves are checked by
 * tests/test_symbols.sh (no AVX in the baseline's, AVX2 and AVX-512
 * registers in the others'). */
#include <stdlib.h>

#include "check.h"
#include "core/cpu.h"
#include "core/rng.h"
#include "fixture.h"
#include "io/modelfolder.h"
#include "ops/ops.h"
#include "unet_pass.h"

static void test_cap_mapping(void) {
    for (int s = 0; s < CPU_LEVELS; s++) {
        int avx2 = s < CPU_AVX2 ? s : CPU_AVX2;
        CHECK(cpu_level_capped(s, NULL) == s, "no cap");
        CHECK(cpu_level_capped(s, "") == s, "empty cap");
        CHECK(cpu_level_capped(s, "ALL") == s, "ALL");
        CHECK(cpu_level_capped(s, "SSE41") == CPU_X86_64, "SSE41");
        CHECK(cpu_level_capped(s, "avx") == CPU_X86_64, "avx (any case)");
        CHECK(cpu_level_capped(s, "AVX2") == avx2, "AVX2 on %s", cpu_level_name(s));
        CHECK(cpu_level_capped(s, "AVX2_VNNI") == avx2, "AVX2_VNNI");
        CHECK(cpu_level_capped(s, "AVX512_CORE") == s, "AVX512_CORE on %s", cpu_level_name(s));
        CHECK(cpu_level_capped(s, "avx512_core_amx") == s, "AVX512_CORE_AMX");
        CHECK(cpu_level_capped(s, "AVX512_MIC") == avx2, "AVX512_MIC: no BW/DQ/VL");
        CHECK(cpu_level_capped(s, "AVX3000") == s, "an unknown name is ignored, as oneDNN does");
    }
    CHECK(!strcmp(cpu_level_name(CPU_X86_64), "x86-64") && !strcmp(cpu_level_name(CPU_AVX512), "avx512"), "names");
    CHECK(cpu_level_name(CPU_LEVELS) == NULL && cpu_level_name(-1) == NULL, "no name out of range");
}

static void test_this_process(void) {
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
    int want = cpu_level_capped(cpu_level_supported(), cap && *cap ? cap : getenv("DNNL_MAX_CPU_ISA"));
    printf("  CPU supports %s; ONEDNN_MAX_CPU_ISA=%s; kernels run at %s\n", cpu_level_name(cpu_level_supported()),
           cap ? cap : "(unset)", cpu_level_name(cpu_level()));
    CHECK(cpu_level() == want, "level %s, want %s", cpu_level_name(cpu_level()), cpu_level_name(want));
    int total, at = cpu_kernels_at(cpu_level(), &total);
    CHECK(total >= 30 && at == total, "%d of %d kernels at the running level", at, total);
}

static void test_set_level(void) {
    int start = cpu_level(), total;
    for (int l = 0; l < CPU_LEVELS; l++) {
        int rc = cpu_set_level(l), at = cpu_kernels_at(l, &total);
        if (l <= cpu_level_supported()) {
            CHECK(rc == 0 && cpu_level() == l && at == total, "%s: rc %d, %d of %d kernels", cpu_level_name(l), rc, at,
                  total);
        } else {
            CHECK(rc == -1, "%s is refused on this CPU", cpu_level_name(l));
            CHECK(cpu_kernels_at(l, &total) == 0, "no kernel points at a copy the CPU cannot run");
        }
    }
    CHECK(cpu_set_level(-1) == -1, "a negative level is refused");
    CHECK(cpu_set_level(start) == 0 && cpu_level() == start, "back to %s", cpu_level_name(start));
}

/* What one level computes: a training pass's output, input gradient and
 * parameter gradients, an Adam + EMA step, and RNG draws. */
typedef struct result {
    float *out, *dx, *grads, *p, *m, *v, *ema, *uni, *nrm;
    size_t n, np, nr;
} result;

static void compute(result *r, int level) {
    CHECK(cpu_set_level(level) == 0, "set %s", cpu_level_name(level));
    ops_conv_set_algorithm(CONV_ALG_WINOGRAD);
    err_t err;
    unet_config cfg;
    unet *u = NULL;
    CHECK(folder_read_config("tests/fixtures/unet_a", &cfg, &err) == 0, "%s", err.msg);
    cfg.dropout = 0.25f; /* the dropout masks come from the RNG kernels */
    int rc = unet_create(&u, &cfg, 2, 1, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK(folder_load_weights(u, "tests/fixtures/unet_a", &err) == 0, "%s", err.msg);
    st_file f = fx_open("tests/fixtures/unet_a_io.safetensors");
    int N, C, H, W;
    float *x = fx_get_nhwc(&f, "x", &N, &C, &H, &W), *t = fx_get(&f, "t", NULL);
    r->n = (size_t)N * C * H * W;
    r->np = u->nparams;
    r->out = malloc(r->n * sizeof(float));
    r->dx = malloc(r->n * sizeof(float));
    float *dout = malloc(r->n * sizeof(float));
    for (size_t i = 0; i < r->n; i++) dout[i] = sinf(0.37f * (float)i);
    unet_dropout dp = {7, 3, 0};
    memset(u->grads, 0, u->nparams * sizeof(float));
    pass_with_dout(u, r->out, r->dx, x, t, NULL, &dp, dout);
    r->grads = malloc(r->np * sizeof(float));
    memcpy(r->grads, u->grads, r->np * sizeof(float));
    /* One Adam + EMA step from the loaded weights with these gradients. */
    r->p = malloc(r->np * sizeof(float)), r->ema = malloc(r->np * sizeof(float));
    r->m = calloc(r->np, sizeof(float)), r->v = calloc(r->np, sizeof(float));
    memcpy(r->p, u->params, r->np * sizeof(float));
    memcpy(r->ema, u->params, r->np * sizeof(float));
    adam_ema_coef c = {0.5f, 0.9f, 0.999f, 0.1f, 0.001f, 1e-8f, 0.99f};
    ops_adam_ema_update(r->p, r->m, r->v, r->ema, r->grads, r->np, &c);
    r->nr = 1000;
    r->uni = malloc(r->nr * sizeof(float)), r->nrm = malloc(r->nr * sizeof(float));
    rng_uniform_at(r->uni, r->nr, 11, RNG_INIT, 5, 3);
    rng_normal(r->nrm, r->nr, 11, RNG_INIT, 6);
    free(dout), free(x), free(t);
    st_close(&f);
    unet_free(u);
}

static void result_free(result *r) {
    float *a[] = {r->out, r->dx, r->grads, r->p, r->m, r->v, r->ema, r->uni, r->nrm};
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) free(a[i]);
}

static int same_bits(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof(float)); }

static void test_levels_agree(void) {
    int start = cpu_level();
    result base = {0};
    compute(&base, CPU_X86_64);
    for (int l = CPU_AVX2; l <= cpu_level_supported(); l++) {
        result r = {0};
        compute(&r, l);
        printf("  %s against x86-64:\n", cpu_level_name(l));
        check_close("forward output", r.out, base.out, r.n, 1e-6, 1e-5);
        check_close("input gradient", r.dx, base.dx, r.n, 1e-6 * fx_maxabs(base.dx, r.n), 1e-4);
        check_close("parameter gradients", r.grads, base.grads, r.np, 1e-6 * fx_maxabs(base.grads, r.np), 1e-4);
        check_close("Adam: parameters", r.p, base.p, r.np, 1e-6, 1e-5);
        check_close("Adam: EMA", r.ema, base.ema, r.np, 1e-6, 1e-5);
        check_close("Adam: second moment", r.v, base.v, r.np, 1e-12, 1e-5);
        /* The RNG's words are integers: its copies must agree exactly. */
        CHECK(same_bits(r.uni, base.uni, r.nr), "uniform draws differ between %s and x86-64", cpu_level_name(l));
        CHECK(same_bits(r.nrm, base.nrm, r.nr), "normal draws differ between %s and x86-64", cpu_level_name(l));
        printf("  bitwise the same as x86-64: output %s, gradients %s, Adam %s\n",
               same_bits(r.out, base.out, r.n) ? "yes" : "no", same_bits(r.grads, base.grads, r.np) ? "yes" : "no",
               same_bits(r.p, base.p, r.np) ? "yes" : "no");
        result_free(&r);
    }
    if (cpu_level_supported() == CPU_X86_64) printf("  this CPU runs only the x86-64 copies\n");
    result_free(&base);
    CHECK(cpu_set_level(start) == 0, "back");
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
}

TEST_MAIN(test_cap_mapping, test_this_process, test_set_level, test_levels_agree)
