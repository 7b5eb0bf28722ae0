/* test_exec.c -- the execution context (src/exec): every kind of primitive ddpm
 * runs (3x3 convolution forward, backward-data and backward-weights by oneDNN
 * and by Winograd, their weight reorders, GEMM, and the feature networks'
 * convolutions of every kernel shape), run for 8 shards by the workers of an
 * executor, gives the same bits as on one thread, at 2, 3, 4 and 8 threads;
 * a oneDNN plan made for several threads refuses to run inside a team (an
 * error, not a partial result); an executor of more than 64 workers trains a
 * tiny U-Net to the same bits as one thread; a failure is a status.
 *
 * Run it at both instruction-set levels (ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN):
 * oneDNN picks other kernels there (gemm-based weight gradients on AVX2, whose
 * library-managed scratchpad belongs to the thread that made the primitive). */
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "exec/executor.h"
#include "io/modelfolder.h"
#include "model/unet.h"
#include "ops/ops.h"
#include "unet_pass.h"

#define SHARDS 8
static const int thread_counts[] = {1, 2, 3, 4, 8};
#define NT (int)(sizeof thread_counts / sizeof thread_counts[0])

static float *randu(size_t n, uint64_t seed) {
    float *p = malloc(n * sizeof *p);
    rng_uniform(p, n, seed, RNG_INIT, 1);
    for (size_t i = 0; i < n; i++) p[i] = 2.0f * p[i] - 1.0f;
    return p;
}

static int same_bits(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

/* ---- 3x3 convolutions (the U-Net's) ------------------------------------------ */

typedef struct conv_case {
    int B, H, W, Cin, Cout, stride, pad, ld_x;
    const char *what;
} conv_case;

static const conv_case conv_cases[] = {
    {4, 2, 2, 16, 16, 1, CONV_PAD_SAME, 16, "mb4 ic16 oc16 2x2 (gemm-based weight gradient on AVX2)"},
    {4, 4, 4, 32, 32, 1, CONV_PAD_SAME, 32, "mb4 ic32 oc32 4x4"},
    {2, 8, 8, 16, 32, 1, CONV_PAD_SAME, 16, "mb2 ic16 oc32 8x8"},
    {4, 8, 8, 16, 16, 1, CONV_PAD_SAME, 48, "mb4 ic16 oc16 8x8, a slice of a 48-wide concat"},
    {2, 8, 8, 32, 32, 2, CONV_PAD_SAME, 32, "mb2 32 8x8 stride 2"},
    {2, 8, 8, 32, 32, 2, CONV_PAD_TF, 32, "mb2 32 8x8 stride 2, TF padding"},
    {2, 28, 28, 1, 32, 1, CONV_PAD_SAME, 1, "mb2 ic1 oc32 28x28 (conv_in)"},
    {2, 28, 28, 32, 1, 1, CONV_PAD_SAME, 32, "mb2 ic32 oc1 28x28 (conv_out)"},
    {1, 14, 14, 64, 64, 1, CONV_PAD_SAME, 64, "mb1 ic64 oc64 14x14"},
};

/* One shard's data and results. */
typedef struct conv_shard {
    conv_plan *p;
    float *x, *dy, *y, *dx, *dw, *db;
} conv_shard;

typedef struct conv_run {
    const conv_case *c;
    const float *w, *b;
    conv_shard s[SHARDS];
} conv_run;

static void conv_shard_fn(void *ctx, int k, float *grads) {
    conv_run *r = ctx;
    conv_shard *s = &r->s[k];
    ops_conv_forward(s->p, s->y, s->x, r->w, r->b);
    ops_conv_backward(s->p, s->dx, s->dw, s->db, s->dy, s->x, r->w);
}

/* Runs the case on an executor of `threads` workers; results in r. */
static int conv_exec(conv_run *r, int threads, err_t *err) {
    const conv_case *c = r->c;
    int Ho, Wo;
    ops_conv_out_size(c->H, c->W, c->stride, &Ho, &Wo);
    executor *e;
    exec_config ec = {.nshards = SHARDS, .threads = threads, .sharded = 1};
    if (exec_create(&e, &ec, err)) return -1;
    exec_build_begin(e);
    int rc = 0;
    for (int k = 0; k < SHARDS && !rc; k++)
        rc = ops_conv_plan_create(&r->s[k].p, c->B, c->H, c->W, c->Cin, c->Cout, c->stride, c->pad, c->ld_x, c->Cout, 1,
                              err);
    if (exec_build_end(e, rc ? NULL : err) == 0 && !rc) {
        for (int k = 0; k < SHARDS; k++) {
            memset(r->s[k].dw, 0, sizeof(float) * c->Cout * c->Cin * 9);
            memset(r->s[k].db, 0, sizeof(float) * c->Cout);
            memset(r->s[k].dx, 0, sizeof(float) * c->B * c->H * c->W * c->ld_x);
        }
        rc = exec_run(e, conv_shard_fn, r, NULL, err);
    } else {
        rc = -1;
    }
    for (int k = 0; k < SHARDS; k++) ops_conv_plan_free(r->s[k].p), r->s[k].p = NULL;
    exec_free(e);
    return rc;
}

static void test_conv(void) {
    for (int alg = 0; alg < 2; alg++)
        for (size_t ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++) {
            const conv_case *c = &conv_cases[ci];
            ops_conv_set_algorithm(alg ? CONV_ALG_WINOGRAD : CONV_ALG_DIRECT);
            int Ho, Wo;
            ops_conv_out_size(c->H, c->W, c->stride, &Ho, &Wo);
            size_t nx = (size_t)c->B * c->H * c->W * c->ld_x, ny = (size_t)c->B * Ho * Wo * c->Cout;
            size_t nw = (size_t)c->Cout * c->Cin * 9;
            float *w = randu(nw, 1 + ci), *b = randu((size_t)c->Cout, 2 + ci);
            conv_run runs[NT];
            for (int t = 0; t < NT; t++) {
                runs[t] = (conv_run){.c = c, .w = w, .b = b};
                for (int k = 0; k < SHARDS; k++) {
                    conv_shard *s = &runs[t].s[k];
                    s->x = randu(nx, 100 + k), s->dy = randu(ny, 200 + k);
                    s->y = calloc(ny, sizeof(float)), s->dx = calloc(nx, sizeof(float));
                    s->dw = calloc(nw, sizeof(float)), s->db = calloc((size_t)c->Cout, sizeof(float));
                }
            }
            int ok = 1;
            for (int t = 0; t < NT; t++) {
                err_t err = {0};
                int rc = conv_exec(&runs[t], thread_counts[t], &err);
                CHECK(rc == 0, "%s, %d threads: %s", c->what, thread_counts[t], err.msg);
                if (rc || !t) continue;
                for (int k = 0; k < SHARDS; k++) {
                    const conv_shard *a = &runs[0].s[k], *s = &runs[t].s[k];
                    int same = same_bits(a->y, s->y, ny) && same_bits(a->dx, s->dx, nx) &&
                               same_bits(a->dw, s->dw, nw) && same_bits(a->db, s->db, (size_t)c->Cout);
                    CHECK(same, "%s (%s), shard %d: %d threads differ from 1", c->what,
                          alg ? "Winograd where it applies" : "oneDNN", k, thread_counts[t]);
                    ok &= same;
                }
            }
            printf("  conv %-58s %-8s 1-8 threads: %s\n", c->what, alg ? "gemm" : "direct", ok ? "same bits" : "DIFFER");
            for (int t = 0; t < NT; t++)
                for (int k = 0; k < SHARDS; k++) {
                    conv_shard *s = &runs[t].s[k];
                    free(s->x), free(s->dy), free(s->y), free(s->dx), free(s->dw), free(s->db);
                }
            free(w), free(b);
        }
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
}

/* ---- GEMM ---------------------------------------------------------------------- */

typedef struct gemm_run {
    int ta, tb, M, N, K;
    float *A[SHARDS], *B[SHARDS], *C[SHARDS];
} gemm_run;

static void gemm_shard_fn(void *ctx, int k, float *grads) {
    gemm_run *g = ctx;
    int lda = g->ta ? g->M : g->K, ldb = g->tb ? g->K : g->N;
    ops_gemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A[k], lda, g->B[k], ldb, 0.5f, g->C[k], g->N);
}

static void test_gemm(void) {
    static const int shapes[][5] = {{0, 1, 64, 128, 32}, {1, 0, 128, 33, 257}, {0, 0, 1024, 64, 64}, {1, 1, 7, 9, 300}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        gemm_run g[NT];
        size_t na = (size_t)shapes[i][2] * shapes[i][4], nb = (size_t)shapes[i][4] * shapes[i][3];
        size_t nc = (size_t)shapes[i][2] * shapes[i][3];
        int ok = 1;
        for (int t = 0; t < NT; t++) {
            g[t] = (gemm_run){shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4], {0}, {0}, {0}};
            for (int k = 0; k < SHARDS; k++)
                g[t].A[k] = randu(na, 10 + k), g[t].B[k] = randu(nb, 20 + k), g[t].C[k] = randu(nc, 30 + k);
            executor *e;
            err_t err = {0};
            exec_config ec = {.nshards = SHARDS, .threads = thread_counts[t], .sharded = 1};
            CHECK(exec_create(&e, &ec, &err) == 0, "%s", err.msg);
            exec_build_begin(e);
            CHECK(exec_build_end(e, &err) == 0, "%s", err.msg);
            CHECK(exec_run(e, gemm_shard_fn, &g[t], NULL, &err) == 0, "gemm: %s", err.msg);
            exec_free(e);
            for (int k = 0; t && k < SHARDS; k++) ok &= same_bits(g[0].C[k], g[t].C[k], nc);
        }
        CHECK(ok, "gemm %d%d %dx%dx%d differs across thread counts", shapes[i][0], shapes[i][1], shapes[i][2],
              shapes[i][3], shapes[i][4]);
        printf("  gemm %c%c %4dx%4dx%4d 1-8 threads: %s\n", shapes[i][0] ? 'T' : 'N', shapes[i][1] ? 'T' : 'N',
               shapes[i][2], shapes[i][3], shapes[i][4], ok ? "same bits" : "DIFFER");
        for (int t = 0; t < NT; t++)
            for (int k = 0; k < SHARDS; k++) free(g[t].A[k]), free(g[t].B[k]), free(g[t].C[k]);
    }
}

/* ---- the feature networks' convolutions ------------------------------------------ */

typedef struct conv2d_run {
    conv2d_shape s;
    conv2d_plan *p[SHARDS];
    float *x[SHARDS], *y[SHARDS];
} conv2d_run;

static void conv2d_shard_fn(void *ctx, int k, float *grads) {
    conv2d_run *r = ctx;
    ops_conv2d_forward(r->p[k], r->y[k], r->x[k]);
}

static void test_conv2d(void) {
    /* B, H, W, Cin, Cout, kh, kw, sh, sw, ph, pw: Inception's kernels and F-MNIST's. */
    static const conv2d_shape shapes[] = {
        {2, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1},  {2, 35, 35, 16, 24, 3, 3, 2, 2, 0, 0},
        {2, 17, 17, 32, 32, 1, 7, 1, 1, 0, 3}, {2, 17, 17, 32, 32, 7, 1, 1, 1, 3, 0},
        {2, 35, 35, 24, 32, 5, 5, 1, 1, 2, 2}, {2, 8, 8, 64, 48, 1, 1, 1, 1, 0, 0},
        {2, 16, 16, 32, 32, 3, 3, 1, 1, 0, 0}, {2, 15, 15, 3, 32, 3, 3, 2, 2, 0, 0},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const conv2d_shape *s = &shapes[i];
        int Ho, Wo;
        ops_conv2d_out_size(s, &Ho, &Wo);
        size_t nx = (size_t)s->B * s->H * s->W * s->Cin, ny = (size_t)s->B * Ho * Wo * s->Cout;
        float *w = randu((size_t)s->Cout * s->Cin * s->kh * s->kw, 40 + i), *b = randu((size_t)s->Cout, 50 + i);
        conv2d_run r[NT];
        int ok = 1;
        for (int t = 0; t < NT; t++) {
            r[t].s = *s;
            executor *e;
            err_t err = {0};
            exec_config ec = {.nshards = SHARDS, .threads = thread_counts[t], .sharded = 1};
            CHECK(exec_create(&e, &ec, &err) == 0, "%s", err.msg);
            exec_build_begin(e);
            int rc = 0;
            for (int k = 0; k < SHARDS; k++) {
                r[t].x[k] = randu(nx, 60 + k), r[t].y[k] = calloc(ny, sizeof(float));
                r[t].p[k] = NULL;
                if (!rc) rc = ops_conv2d_plan_create(&r[t].p[k], s, s->Cin, s->Cout, 1, w, b, &err);
            }
            CHECK(exec_build_end(e, &err) == 0 && rc == 0, "conv2d plan: %s", err.msg);
            if (!rc) CHECK(exec_run(e, conv2d_shard_fn, &r[t], NULL, &err) == 0, "conv2d: %s", err.msg);
            exec_free(e);
            for (int k = 0; t && k < SHARDS; k++) ok &= same_bits(r[0].y[k], r[t].y[k], ny);
        }
        CHECK(ok, "conv2d %dx%d stride %d differs across thread counts", s->kh, s->kw, s->sh);
        printf("  conv2d %dx%d stride %d pad %d,%d, %2d->%2d at %dx%d, 1-8 threads: %s\n", s->kh, s->kw, s->sh, s->ph,
               s->pw, s->Cin, s->Cout, s->H, s->W, ok ? "same bits" : "DIFFER");
        for (int t = 0; t < NT; t++)
            for (int k = 0; k < SHARDS; k++) ops_conv2d_plan_free(r[t].p[k]), free(r[t].x[k]), free(r[t].y[k]);
        free(w), free(b);
    }
}

/* ---- a plan made for several threads, run inside a team --------------------------- */

static void test_guard(void) {
    const conv_case *c = &conv_cases[0];
    ops_conv_set_algorithm(CONV_ALG_DIRECT);
    int threads = omp_get_max_threads();
    omp_set_num_threads(4);
    conv_run r = {.c = c};
    err_t err = {0};
    int rc = 0;
    for (int k = 0; k < SHARDS && !rc; k++) /* outside any executor's build: made for 4 threads */
        rc = ops_conv_plan_create(&r.s[k].p, c->B, c->H, c->W, c->Cin, c->Cout, 1, CONV_PAD_SAME, c->Cin, c->Cout, 1, &err);
    omp_set_num_threads(threads);
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
    CHECK(rc == 0, "%s", err.msg);
    size_t nx = (size_t)c->B * c->H * c->W * c->Cin, nw = (size_t)c->Cout * c->Cin * 9;
    float *w = randu(nw, 7), *b = randu((size_t)c->Cout, 8);
    r.w = w, r.b = b;
    for (int k = 0; k < SHARDS; k++) {
        conv_shard *s = &r.s[k];
        s->x = randu(nx, k), s->dy = randu(nx / c->Cin * c->Cout, 9 + k);
        s->y = calloc(nx / c->Cin * c->Cout, sizeof(float)), s->dx = calloc(nx, sizeof(float));
        s->dw = calloc(nw, sizeof(float)), s->db = calloc((size_t)c->Cout, sizeof(float));
    }
    executor *e;
    exec_config ec = {.nshards = SHARDS, .threads = 2, .sharded = 1};
    CHECK(exec_create(&e, &ec, &err) == 0, "%s", err.msg);
    rc = exec_run(e, conv_shard_fn, &r, NULL, &err);
    CHECK(rc == -1 && strstr(err.msg, "made for 4 threads"), "a plan made for 4 threads ran in a team: rc %d '%s'", rc,
          err.msg);
    printf("  a plan made for 4 threads, run by 2 workers: %s\n", rc ? err.msg : "ran (wrong)");
    /* The same executor runs properly made work afterwards: the failure was cleared. */
    gemm_run g = {0, 0, 8, 8, 8, {0}, {0}, {0}};
    for (int k = 0; k < SHARDS; k++) g.A[k] = randu(64, k), g.B[k] = randu(64, k + 1), g.C[k] = randu(64, k + 2);
    CHECK(exec_run(e, gemm_shard_fn, &g, NULL, &err) == 0, "after a failure: %s", err.msg);
    exec_free(e);
    for (int k = 0; k < SHARDS; k++) {
        conv_shard *s = &r.s[k];
        ops_conv_plan_free(s->p);
        free(s->x), free(s->dy), free(s->y), free(s->dx), free(s->dw), free(s->db);
        free(g.A[k]), free(g.B[k]), free(g.C[k]);
    }
    free(w), free(b);
}

/* ---- more than 64 workers on a tiny U-Net ---------------------------------------- */

static void test_many_workers(void) {
    unet_config cfg;
    err_t err = {0};
    if (folder_read_config("tests/fixtures/unet_b", &cfg, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    enum { B = 72 };
    int threads = omp_get_max_threads(), counts[2] = {1, B};
    size_t hw = (size_t)cfg.sample_size * cfg.sample_size, nx = B * hw * cfg.in_channels, no = B * hw * cfg.out_channels;
    float *x = randu(nx, 70), *dout = randu(no, 71), t[B], *out[2], *grads[2];
    for (int b = 0; b < B; b++) t[b] = (float)(b * 13 % 1000);
    int workers = 0;
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(counts[k]);
        unet *u;
        int rc = unet_create_sharded(&u, &cfg, B, B, 1, &err);
        omp_set_num_threads(threads);
        CHECK(rc == 0, "%s", err.msg);
        out[k] = calloc(no, sizeof(float)), grads[k] = calloc(1, sizeof(float));
        if (rc) continue;
        workers = exec_workers(u->exec);
        unet_init_official(u, 5);
        for (size_t i = 0; i < u->nparams; i++) u->params[i] += 0.01f * (float)((i * 7919) % 13) - 0.06f;
        memset(u->grads, 0, sizeof(float) * u->nparams);
        pass_with_dout(u, out[k], NULL, x, t, NULL, NULL, dout);
        free(grads[k]);
        grads[k] = malloc(sizeof(float) * u->nparams);
        memcpy(grads[k], u->grads, sizeof(float) * u->nparams);
        if (k) CHECK(same_bits(out[0], out[1], no) && same_bits(grads[0], grads[1], u->nparams),
                     "%d workers differ from 1", workers);
        unet_free(u);
    }
    CHECK(workers == B, "%d workers, not %d", workers, B);
    printf("  a training pass of %d shards on %d workers: the same bits as on one\n", B, workers);
    free(x), free(dout);
    for (int k = 0; k < 2; k++) free(out[k]), free(grads[k]);
}

/* ---- failures are statuses ----------------------------------------------------------- */

static void test_failure(void) {
    err_t err = {0};
    exec_config ec = {.nshards = 0, .threads = 1, .sharded = 1};
    executor *e;
    CHECK(exec_create(&e, &ec, &err) == -1 && err.msg[0], "no shards: %s", err.msg);
    /* A failure recorded outside any executor stays with the calling thread until taken. */
    exec_fail("a test failure %d", 42);
    CHECK(exec_take_failure(&err) == -1 && !strcmp(err.msg, "a test failure 42"), "'%s'", err.msg);
    CHECK(exec_take_failure(&err) == 0, "taken twice");
    exec_set_buffer_limit(1);
    CHECK(exec_buffer(OPS_SLOTS, 4096) == NULL, "a buffer above the limit");
    exec_set_buffer_limit(0);
    CHECK(exec_take_failure(&err) == -1 && err.oom, "the limit: oom %d '%s'", err.oom, err.msg);
    CHECK(exec_buffer(OPS_SLOTS, 4096) != NULL && exec_take_failure(&err) == 0, "%s", err.msg);
}

/* ---- the instruction-set level ---------------------------------------------------------
 * ONEDNN_MAX_CPU_ISA=AVX2 gives an AVX-512 machine an AVX2 laptop's kernels (the CI's
 * second pass); the algorithms chosen by measurement are keyed by that level
 * (test_conv_choice). */
static void test_isa(void) {
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    printf("  oneDNN's effective ISA 0x%x (%s), ONEDNN_MAX_CPU_ISA=%s\n", (unsigned)isa,
           isa >= dnnl_cpu_isa_avx512_core ? "AVX-512 or more" : "below AVX-512", cap ? cap : "(unset)");
    if (cap && !strcmp(cap, "AVX2")) CHECK(isa <= dnnl_cpu_isa_avx2, "capped at AVX2, effective 0x%x", (unsigned)isa);
}

TEST_MAIN(test_isa, test_conv, test_gemm, test_conv2d, test_guard, test_many_workers, test_failure)
