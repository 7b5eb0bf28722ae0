/* test_model.c -- the U-Net as a whole, built from its config:
 *
 *  - the presets' parameter counts (fmnist-small 1,112,801; fmnist 6,469,889;
 *    cifar10 35,746,307 in 328 tensors, as google/ddpm-cifar10-32) from
 *    unet_create, and their config.json round trip;
 *  - every config mistake a user can make is an error whose message names the
 *    offending key (sample_size not divisible by 2^(levels-1), channels not
 *    divisible by the group count, unknown block types, missing required keys,
 *    bad JSON, wrong types and unsupported values);
 *  - finite differences through the whole network: on tiny configs (with
 *    attention, TF and symmetric downsample padding, one and two resnets per
 *    block, with and without dropout, and a batch large enough to be split into
 *    shards) the gradient of L = sum(r * unet(x, t)) for a fixed random r with
 *    respect to the input and to parameters sampled from every kind of unit
 *    (conv_in, resnet convs/norms/shortcut/time projection, the time embedding
 *    MLP, attention, down/upsamplers, the output head) is compared with
 *    central differences (Richardson-extrapolated, with a measured rounding
 *    floor) element by element and along random directions, in both kernel
 *    tiers; test_fd_sensitivity shows the checker rejects gradients 2% off;
 *  - backward contracts: dx is overwritten, parameter gradients accumulate;
 *    dropout masks are a function of (seed, step); a sharded batch gives the
 *    same bits with one thread as with several;
 *  - running out of memory for the workers' buffers is an
 *    error (err.oom) of the forward and the training pass, not an exit.
 *
 * Runs from the repository root.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/threads.h"
#include "model/config.h"
#include "model/unet.h"
#include "ops/ops.h"
#include "unet_pass.h"

/* ---- helpers ----------------------------------------------------------------- */

static uint64_t rng_state = 0x243F6A8885A308D3ull;

/* Uniform in [-1, 1) from a 64-bit LCG (independent of src/). */
static float urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / 16777216.0 * 2.0 - 1.0);
}

static float maxabs(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* ---- presets ------------------------------------------------------------------- */

static void test_preset_counts(void) {
    const struct { const char *name; size_t params; int tensors; } want[] = {
        {"fmnist-small", 1112801, -1}, {"fmnist", 6469889, -1}, {"cifar10", 35746307, 328}};
    for (int i = 0; i < 3; i++) {
        unet_config c;
        err_t err;
        int rc = unet_config_preset(&c, want[i].name, &err);
        CHECK(rc == 0, "preset %s: %s", want[i].name, err.msg);
        if (rc) continue;
        unet *u;
        rc = unet_create(&u, &c, 1, 0, &err);
        CHECK(rc == 0, "unet_create(%s): %s", want[i].name, err.msg);
        if (rc) continue;
        printf("  %-13s %2d levels  %4d tensors  %10zu parameters\n", want[i].name, c.levels, u->ntensors, u->nparams);
        CHECK(u->nparams == want[i].params, "%s: %zu parameters, expected %zu", want[i].name, u->nparams,
              want[i].params);
        if (want[i].tensors > 0)
            CHECK(u->ntensors == want[i].tensors, "%s: %d tensors, expected %d", want[i].name, u->ntensors,
                  want[i].tensors);
        /* The table is consistent: contiguous offsets summing to nparams. */
        size_t off = 0;
        int bad = 0;
        for (int k = 0; k < u->ntensors; k++) {
            bad += u->table[k].offset != off;
            off += u->table[k].numel;
        }
        CHECK(bad == 0 && off == u->nparams, "%s: parameter table not contiguous", want[i].name);
        CHECK(u->grads == NULL, "%s: inference network has gradient buffers", want[i].name);
        unet_free(u);

        /* config.json written for the preset reads back as the same config. */
        char *json = unet_config_to_json(&c, NULL);
        unet_config back;
        rc = unet_config_from_json(&back, json, &err);
        CHECK(rc == 0, "%s: its own config.json does not parse: %s", want[i].name, err.msg);
        CHECK(rc || !memcmp(&back, &c, sizeof c), "%s: config changed in a JSON round trip", want[i].name);
        free(json);
    }
    /* The cifar10 preset has google/ddpm-cifar10-32's shapes. */
    unet_config c;
    err_t err;
    unet *u;
    if (unet_config_preset(&c, "cifar10", &err) == 0 && unet_create(&u, &c, 1, 0, &err) == 0) {
        const struct { const char *name; int ndim, shape[4]; } t[] = {
            {"conv_in.weight", 4, {128, 3, 3, 3}},
            {"time_embedding.linear_1.weight", 2, {512, 128}},
            {"down_blocks.1.attentions.0.to_q.weight", 2, {256, 256}},
            {"down_blocks.1.resnets.0.conv_shortcut.weight", 4, {256, 128, 1, 1}},
            {"up_blocks.2.attentions.2.group_norm.weight", 1, {256}},
            {"up_blocks.3.resnets.0.conv1.weight", 4, {128, 384, 3, 3}},
            {"conv_out.bias", 1, {3}}};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            int k = unet_param_index(u, t[i].name);
            CHECK(k >= 0, "cifar10: no tensor %s", t[i].name);
            if (k >= 0)
                CHECK(u->table[k].ndim == t[i].ndim && !memcmp(u->table[k].shape, t[i].shape, t[i].ndim * sizeof(int)),
                      "cifar10: %s has the wrong shape", t[i].name);
        }
        CHECK(unet_param_index(u, "down_blocks.0.attentions.0.to_q.weight") < 0, "cifar10: attention at 32x32");
        unet_free(u);
    } else {
        CHECK(0, "cifar10: %s", err.msg);
    }
    CHECK(unet_config_preset(&c, "imagenet", &err) != 0 && strstr(err.msg, "imagenet") &&
              strstr(err.msg, "fmnist-small"),
          "unknown preset: '%s'", err.msg);
}

/* ---- config errors ---------------------------------------------------------------- */

/* The tiny test config, one key per entry. */
static const char *const base_cfg[][2] = {
    {"_class_name", "\"UNet2DModel\""},
    {"sample_size", "8"},
    {"in_channels", "2"},
    {"out_channels", "2"},
    {"block_out_channels", "[8, 16]"},
    {"down_block_types", "[\"DownBlock2D\", \"AttnDownBlock2D\"]"},
    {"up_block_types", "[\"AttnUpBlock2D\", \"UpBlock2D\"]"},
    {"layers_per_block", "1"},
    {"norm_num_groups", "4"},
    {"norm_eps", "1e-06"},
    {"attention_head_dim", "null"},
    {"act_fn", "\"silu\""},
    {"flip_sin_to_cos", "false"},
    {"freq_shift", "1"},
    {"downsample_padding", "0"},
    {"dropout", "0.0"},
    {"time_embedding_type", "\"positional\""},
    {"center_input_sample", "false"},
    {"class_embed_type", "null"},
};
#define NBASE ((int)(sizeof base_cfg / sizeof base_cfg[0]))

/* The base config with overrides {key, value} (value NULL: key left out). */
static void make_json(char *buf, size_t cap, const char *const (*ov)[2], int nov) {
    size_t len = (size_t)snprintf(buf, cap, "{");
    for (int i = 0; i < NBASE; i++) {
        const char *v = base_cfg[i][1];
        int omit = 0;
        for (int k = 0; k < nov; k++)
            if (!strcmp(ov[k][0], base_cfg[i][0])) {
                v = ov[k][1];
                omit = v == NULL;
            }
        if (!omit) len += (size_t)snprintf(buf + len, cap - len, "%s\n  \"%s\": %s", len > 1 ? "," : "", base_cfg[i][0], v);
    }
    for (int k = 0; k < nov; k++) { /* keys not in the base */
        int found = 0;
        for (int i = 0; i < NBASE; i++) found |= !strcmp(ov[k][0], base_cfg[i][0]);
        if (!found && ov[k][1]) len += (size_t)snprintf(buf + len, cap - len, ",\n  \"%s\": %s", ov[k][0], ov[k][1]);
    }
    snprintf(buf + len, cap - len, "\n}\n");
}

static void test_config_errors(void) {
    char json[4096];
    unet_config c;
    err_t err;

    make_json(json, sizeof json, NULL, 0);
    int rc = unet_config_from_json(&c, json, &err);
    CHECK(rc == 0, "the base config does not parse: %s", err.msg);
    CHECK(c.sample_size == 8 && c.levels == 2 && c.block_out[1] == 16 && c.down_attn[1] && !c.down_attn[0] &&
              c.up_attn[0] && !c.up_attn[1] && c.norm_groups == 4 && c.freq_shift == 1 && !c.flip_sin_to_cos,
          "the base config read wrongly");

    /* Each case: overrides (up to 4), then up to two strings the message must contain. */
    static const struct {
        const char *ov[4][2];
        const char *want1, *want2;
    } cases[] = {
        {{{"sample_size", "7"}}, "sample_size", "2^(levels-1)"},
        {{{"sample_size", "6"}, {"block_out_channels", "[8, 16, 16]"},
          {"down_block_types", "[\"DownBlock2D\", \"DownBlock2D\", \"AttnDownBlock2D\"]"},
          {"up_block_types", "[\"AttnUpBlock2D\", \"UpBlock2D\", \"UpBlock2D\"]"}},
         "sample_size", "4"},
        {{{"norm_num_groups", "3"}}, "norm_num_groups", "block_out_channels"},
        {{{"block_out_channels", "[8, 12]"}, {"norm_num_groups", "8"}}, "norm_num_groups", "12"},
        {{{"down_block_types", "[\"DownBlock2D\", \"CrossAttnDownBlock2D\"]"}}, "down_block_types",
         "CrossAttnDownBlock2D"},
        {{{"up_block_types", "[\"AttnUpBlock2D\", \"UpBlock3D\"]"}}, "up_block_types", "UpBlock3D"},
        {{{"down_block_types", "[\"DownBlock2D\", 5]"}}, "down_block_types", NULL},
        {{{"down_block_types", "[\"DownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]"}}, "down_block_types", NULL},
        {{{"up_block_types", "\"UpBlock2D\""}}, "up_block_types", NULL},
        {{{"sample_size", NULL}}, "sample_size", "missing"},
        {{{"sample_size", "null"}}, "sample_size", NULL},
        {{{"attention_head_dim", NULL}}, "attention_head_dim", NULL},
        {{{"attention_head_dim", "8"}}, "attention_head_dim", NULL},
        {{{"sample_size", "\"8\""}}, "sample_size", NULL},
        {{{"layers_per_block", "\"two\""}}, "layers_per_block", NULL},
        {{{"layers_per_block", "1.5"}}, "layers_per_block", NULL},
        {{{"layers_per_block", "0"}}, "layers_per_block", NULL},
        {{{"in_channels", "0"}}, "in_channels", NULL},
        {{{"out_channels", "-3"}}, "out_channels", NULL},
        {{{"block_out_channels", "[]"}}, "block_out_channels", NULL},
        {{{"block_out_channels", "[8, \"16\"]"}}, "block_out_channels", NULL},
        {{{"block_out_channels", "[8, 0]"}}, "block_out_channels", NULL},
        {{{"block_out_channels", "16"}}, "block_out_channels", NULL},
        {{{"norm_num_groups", "0"}}, "norm_num_groups", NULL},
        {{{"norm_eps", "0"}}, "norm_eps", NULL},
        {{{"norm_eps", "\"small\""}}, "norm_eps", NULL},
        {{{"dropout", "1.0"}}, "dropout", NULL},
        {{{"dropout", "-0.1"}}, "dropout", NULL},
        {{{"downsample_padding", "2"}}, "downsample_padding", NULL},
        {{{"flip_sin_to_cos", "1"}}, "flip_sin_to_cos", NULL},
        {{{"freq_shift", "\"one\""}}, "freq_shift", NULL},
        {{{"act_fn", "\"gelu\""}}, "act_fn", NULL},
        {{{"time_embedding_type", "\"fourier\""}}, "time_embedding_type", NULL},
        {{{"class_embed_type", "\"timestep\""}}, "class_embed_type", NULL},
        {{{"num_class_embeds", "-1"}}, "num_class_embeds", "0..65536"},
        {{{"num_class_embeds", "70000"}}, "num_class_embeds", NULL},
        {{{"num_class_embeds", "\"ten\""}}, "num_class_embeds", NULL},
        {{{"center_input_sample", "true"}}, "center_input_sample", NULL},
        {{{"resnet_time_scale_shift", "\"scale_shift\""}}, "resnet_time_scale_shift", NULL},
        {{{"mid_block_scale_factor", "1.414"}}, "mid_block_scale_factor", NULL},
        {{{"_class_name", "\"UNet2DConditionModel\""}}, "_class_name", NULL},
    };
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < ncases; i++) {
        int nov = 0;
        while (nov < 4 && cases[i].ov[nov][0]) nov++;
        make_json(json, sizeof json, cases[i].ov, nov);
        snprintf(err.msg, sizeof err.msg, "(no message)");
        rc = unet_config_from_json(&c, json, &err);
        printf("  %-24s = %-20.20s -> %s\n", cases[i].ov[0][0], cases[i].ov[0][1] ? cases[i].ov[0][1] : "(absent)",
               rc ? err.msg : "accepted");
        CHECK(rc != 0, "case %d (%s): accepted", i, cases[i].ov[0][0]);
        CHECK(strstr(err.msg, cases[i].want1) != NULL, "case %d: message '%s' does not mention '%s'", i, err.msg,
              cases[i].want1);
        if (cases[i].want2)
            CHECK(strstr(err.msg, cases[i].want2) != NULL, "case %d: message '%s' does not mention '%s'", i, err.msg,
                  cases[i].want2);
    }

    /* Text that is not a JSON object. */
    const char *bad[] = {"", "{", "{\"sample_size\": 8,", "not json", "[8, 16]", "{\"sample_size\": 8 \"in_channels\": 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(err.msg, sizeof err.msg, "(no message)");
        rc = unet_config_from_json(&c, bad[i], &err);
        printf("  %-45s -> %s\n", bad[i], rc ? err.msg : "accepted");
        CHECK(rc != 0 && strstr(err.msg, "JSON"), "bad JSON '%s': rc %d, '%s'", bad[i], rc, err.msg);
    }

    /* unet_create checks the config and the batch size itself. */
    make_json(json, sizeof json, NULL, 0);
    CHECK(unet_config_from_json(&c, json, &err) == 0, "%s", err.msg);
    unet *u = NULL;
    CHECK(unet_create(&u, &c, 0, 0, &err) != 0 && strstr(err.msg, "batch") && u == NULL, "batch 0: '%s'", err.msg);
    c.sample_size = 10;
    c.levels = 3;
    c.block_out[2] = 16;
    CHECK(unet_create(&u, &c, 1, 0, &err) != 0 && strstr(err.msg, "sample_size") && u == NULL,
          "sample 10, 3 levels: '%s'", err.msg);
}

/* Inputs fuzz/fuzz_config found (fuzz/corpus/config/crash_*): each is refused
 * with a message naming the key, not undefined behaviour or a config that
 * unet_config_to_json writes and unet_config_from_json cannot read back. */
static void test_config_fuzz(void) {
    static const struct {
        const char *json, *want;
    } cases[] = {
        /* a block_out_channels entry beyond int: was converted to int (undefined behaviour) */
        {"{\"sample_size\": 8, \"attention_head_dim\": null, \"block_out_channels\": [8, 16, "
         "5555555555555555555555555555555555555516], \"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\", "
         "\"AttnDownBlock2D\"], \"up_block_types\": [\"AttnUpBlock2D\", \"UpBlock2D\", \"UpBlock2D\"]}",
         "block_out_channels"},
        {"{\"sample_size\": 8, \"attention_head_dim\": null, \"block_out_channels\": [-1e300]}",
         "block_out_channels"},
        /* a float key beyond the float range: was kept as inf, which config.json then stored as null */
        {"{\"sample_size\": 8, \"attention_head_dim\": null, \"block_out_channels\": [32], \"freq_shift\": 1e39, "
         "\"down_block_types\": [\"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\"]}",
         "freq_shift"},
        {"{\"sample_size\": 8, \"attention_head_dim\": null, \"norm_eps\": -1e39}", "norm_eps"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unet_config c;
        err_t err = {0};
        int rc = unet_config_from_json(&c, cases[i].json, &err);
        printf("  case %zu -> %s\n", i, rc ? err.msg : "accepted");
        CHECK(rc != 0 && strstr(err.msg, "config: ") && strstr(err.msg, cases[i].want), "case %zu: rc %d, '%s'", i,
              rc, err.msg);
    }
    /* the largest finite float still reads, and round-trips through config.json */
    unet_config c, c2;
    err_t err = {0};
    const char *big = "{\"sample_size\": 8, \"attention_head_dim\": null, \"block_out_channels\": [32], "
                      "\"freq_shift\": -3.4e38, \"down_block_types\": [\"DownBlock2D\"], "
                      "\"up_block_types\": [\"UpBlock2D\"]}";
    CHECK(unet_config_from_json(&c, big, &err) == 0, "freq_shift -3.4e38: %s", err.msg);
    char *back = unet_config_to_json(&c, NULL);
    CHECK(back && unet_config_from_json(&c2, back, &err) == 0 && c2.freq_shift == c.freq_shift, "round trip: %s",
          err.msg);
    free(back);
}

/* ---- finite differences through the whole network ---------------------------------- */

/* Central differences through the whole network mix two errors: third-order
 * truncation (with h = 1e-2 several percent on some conv_in elements with one
 * input channel) and float rounding of L divided by h (with h = 1e-3 about 1e-3
 * of max|g| for the tensors with the smallest gradients). Richardson
 * extrapolation of the steps h and h/2, (4 D(h/2) - D(h)) / 3, cancels the h^2
 * term and keeps h large. What rounding remains is measured for each network
 * (fd_noise) and added to the tolerance as an absolute floor. A random
 * direction moves every element at once, so it takes half the step. */
#define FD_H 1e-2f     /* step of one element */
#define FD_H_DIR 5e-3f /* step along a random direction v in [-1,1]^n */
#define FD_TOL 1e-3    /* relative part of the tolerance, see fd_check */
#define FD_DIRS 2      /* random directions per tensor */

typedef struct net_ctx {
    unet *u;
    float *x, *t, *out, *r;
    size_t nx, nout;
    unet_dropout drop, *dp;
    double noise; /* rounding noise of L (fd_noise) */
} net_ctx;

static double net_loss(net_ctx *c) {
    err_t err;
    CHECK(unet_forward(c->u, c->out, c->x, c->t, NULL, c->dp, &err) == 0, "%s", err.msg);
    double s = 0;
    for (size_t i = 0; i < c->nout; i++) s += (double)c->r[i] * c->out[i];
    return s;
}

/* Random parameters that make every path matter: weights uniform with the
 * fan-average variance of the official init at scale 1 (no near-zero layers),
 * biases ~ 0.1, GroupNorm scales around 1. */
static void random_params(unet *u) {
    for (int i = 0; i < u->ntensors; i++) {
        const param_info *p = &u->table[i];
        float *w = u->params + p->offset;
        if (p->ndim == 1) {
            int scale = strstr(p->name, ".weight") != NULL; /* 1-d weights are GroupNorm scales */
            for (size_t k = 0; k < p->numel; k++) w[k] = (scale ? 1.0f : 0.0f) + 0.1f * urand();
            continue;
        }
        int rf = p->ndim == 4 ? p->shape[2] * p->shape[3] : 1;
        double fan = ((double)p->shape[1] * rf + (double)p->shape[0] * rf) / 2;
        float lim = (float)sqrt(3.0 / fan);
        for (size_t k = 0; k < p->numel; k++) w[k] = lim * urand();
    }
}

/* Richardson-extrapolated error of the directional derivative of L along v
 * (p[i] += s v[i], s = h and h/2) against the backward's <g, v>, in derivative
 * units; the first-order term uses the steps actually taken, so float rounding
 * of p +- s v does not count. */
static double fd_dir_error(net_ctx *c, float *p, const float *g, const float *v, size_t n, float h) {
    float *save = malloc(n * sizeof(float));
    memcpy(save, p, n * sizeof(float));
    double e[2];
    for (int k = 0; k < 2; k++) {
        float s = k ? h / 2 : h;
        double a = 0;
        for (size_t i = 0; i < n; i++) p[i] = save[i] + s * v[i];
        double lp = net_loss(c);
        for (size_t i = 0; i < n; i++) {
            float up = p[i];
            p[i] = save[i] - s * v[i];
            a += g[i] * ((double)up - p[i]);
        }
        double lm = net_loss(c);
        e[k] = (lp - lm - a) / (2.0 * s);
    }
    memcpy(p, save, n * sizeof(float));
    free(save);
    return (4 * e[1] - e[0]) / 3;
}

/* Rounding noise of L, measured: L(x + eta v) - L(x) - <dx, eta v> for tiny
 * steps is rounding alone (the second-order term is ~eta^2). Perturbing the
 * input changes every operation, so this bounds the noise of any parameter's
 * differences. Returns twice the worst of 6 samples. */
static double fd_noise(net_ctx *c, const float *dx) {
    const float eta = 1e-5f;
    float *save = malloc(c->nx * sizeof(float));
    memcpy(save, c->x, c->nx * sizeof(float));
    double l0 = net_loss(c), worst = 0;
    for (int k = 0; k < 6; k++) {
        double a = 0;
        for (size_t i = 0; i < c->nx; i++) {
            c->x[i] = save[i] + eta * urand();
            a += dx[i] * ((double)c->x[i] - save[i]);
        }
        worst = fmax(worst, fabs(net_loss(c) - l0 - a));
    }
    memcpy(c->x, save, c->nx * sizeof(float));
    free(save);
    return 2 * worst;
}

/* The rounding floor of one Richardson estimate with step h: (4 D(h/2) - D(h)) / 3
 * with D(s) = dL / 2s, each dL off by up to 2 noise: 3 noise / h. */
static double fd_floor(const net_ctx *c, float h) { return 3 * c->noise / h; }

/* Checks the gradient g of L with respect to p[0..n):
 *  - ncoords elements spread over the tensor: |error| <= FD_TOL (max|g| + |g_i|) + floor(FD_H);
 *  - FD_DIRS random directions v in [-1,1]^n: |error| <= FD_TOL (|<g,v>| + ||g v||_2) + floor(FD_H_DIR)
 *    (||g v||_2 is the size <g,v> has for a random v, so a gradient off by a
 *    factor 1+e fails when e >~ 2 FD_TOL).
 * Prints the errors relative to those scales; returns the worst error / tolerance
 * (quiet: neither prints nor counts a failure). */
static double fd_check(const char *what, net_ctx *c, float *p, const float *g, size_t n, int ncoords, int quiet) {
    float gmax = maxabs(g, n);
    double floor_el = fd_floor(c, FD_H), floor_dir = fd_floor(c, FD_H_DIR);
    double worst_el = 0, worst_dir = 0, worst = 0;
    int bad = 0;
    float *v = calloc(n, sizeof(float));
    for (int k = 0; k < ncoords; k++) {
        size_t i = n <= (size_t)ncoords ? (size_t)k % n
                                       : ((size_t)k * n + (size_t)((urand() + 1) * 0.5f * (n / ncoords))) / ncoords;
        if (i >= n) i = n - 1;
        v[i] = 1;
        double e = fabs(fd_dir_error(c, p, g, v, n, FD_H)), scale = gmax + fabs(g[i]);
        v[i] = 0;
        worst_el = fmax(worst_el, e / scale);
        worst = fmax(worst, e / (FD_TOL * scale + floor_el));
        if (!(e <= FD_TOL * scale + floor_el)) {
            bad++;
            if (!quiet) fprintf(stderr, "  FAIL %s[%zu]: backward %.7g, finite differences off by %.3g\n", what, i, g[i], e);
        }
    }
    for (int d = 0; d < FD_DIRS; d++) {
        double dot = 0, norm = 0;
        for (size_t i = 0; i < n; i++) {
            v[i] = urand();
            dot += (double)g[i] * v[i];
            norm += (double)g[i] * v[i] * g[i] * v[i];
        }
        double e = fabs(fd_dir_error(c, p, g, v, n, FD_H_DIR)), scale = fabs(dot) + sqrt(norm);
        worst_dir = fmax(worst_dir, e / scale);
        worst = fmax(worst, e / (FD_TOL * scale + floor_dir));
        if (!(e <= FD_TOL * scale + floor_dir)) {
            bad++;
            if (!quiet) fprintf(stderr, "  FAIL %s direction %d: <g,v> %.7g, finite differences off by %.3g\n", what, d, dot, e);
        }
    }
    free(v);
    if (!quiet) {
        char el[32] = "-";
        if (ncoords) snprintf(el, sizeof el, "%.1e", worst_el);
        printf("  %-46s n=%-5zu max|g| %.2e  rel. err: elements %-7s  dirs %.1e  %s\n", what, n, gmax, el, worst_dir,
               bad ? "FAIL" : "ok");
        if (bad) check_failures++;
    }
    return worst;
}

typedef struct fd_case {
    const char *name;
    const char *const (*ov)[2]; /* config overrides of the base */
    int nov;
    int batch;
    float dropout;
    int reference;              /* kernel tier */
    int coords;                 /* elements per tensor (0: directions only) */
    const char *const *params;  /* NULL-terminated */
} fd_case;

typedef struct fd_net {
    net_ctx c;
    float *dx, *g; /* the backward's input and parameter gradients */
} fd_net;

/* Builds the case's network with random parameters, inputs, timesteps and
 * projection r, and runs forward + backward (dx starts as NaN: it must be
 * overwritten). Runs on one thread: the shapes are tiny, and an OpenMP team on
 * a loaded machine makes the thousand forwards slow (threads: test_shard_threads). */
static int fd_net_create(fd_net *f, const fd_case *fc) {
    ops_set_reference(fc->reference);
    char json[4096];
    make_json(json, sizeof json, fc->ov, fc->nov);
    unet_config cfg;
    err_t err;
    memset(f, 0, sizeof *f);
    int rc = unet_config_from_json(&cfg, json, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return -1;
    cfg.dropout = fc->dropout;
    net_ctx *c = &f->c;
    rc = unet_create(&c->u, &cfg, fc->batch, 1, &err);
    CHECK(rc == 0, "unet_create: %s", err.msg);
    if (rc) return -1;
    rng_state = 0x1234567 + (uint64_t)fc->batch;
    random_params(c->u);
    c->drop = (unet_dropout){42, 7, 0};
    c->dp = fc->dropout > 0 ? &c->drop : NULL;
    int S = cfg.sample_size;
    c->nx = (size_t)fc->batch * S * S * cfg.in_channels;
    c->nout = (size_t)fc->batch * S * S * cfg.out_channels;
    c->x = malloc(c->nx * sizeof(float));
    c->out = malloc(c->nout * sizeof(float));
    c->r = malloc(c->nout * sizeof(float));
    c->t = malloc((size_t)fc->batch * sizeof(float));
    for (size_t i = 0; i < c->nx; i++) c->x[i] = 1.2f * urand();
    for (size_t i = 0; i < c->nout; i++) c->r[i] = urand();
    for (int b = 0; b < fc->batch; b++) c->t[b] = (float)((b * 397 + 3) % 1000);
    f->dx = malloc(c->nx * sizeof(float));
    for (size_t i = 0; i < c->nx; i++) f->dx[i] = NAN;
    memset(c->u->grads, 0, c->u->nparams * sizeof(float));
    pass_with_dout(c->u, c->out, f->dx, c->x, c->t, NULL, c->dp, c->r);
    f->g = malloc(c->u->nparams * sizeof(float));
    memcpy(f->g, c->u->grads, c->u->nparams * sizeof(float));
    c->noise = fd_noise(c, f->dx);
    return 0;
}

static void fd_net_free(fd_net *f) {
    free(f->c.x); free(f->c.out); free(f->c.r); free(f->c.t); free(f->dx); free(f->g);
    unet_free(f->c.u);
    ops_set_reference(0);
}

/* Finite differences for dx and the case's parameters, then the backward's
 * contracts (dx overwritten, parameter gradients accumulated) and dropout. */
static void run_fd_case(const fd_case *fc) {
    printf("  %s, batch %d, %s kernels\n", fc->name, fc->batch, fc->reference ? "reference" : "oneDNN");
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    fd_net f;
    if (fd_net_create(&f, fc)) {
        omp_set_num_threads(threads);
        return;
    }
    net_ctx *c = &f.c;
    unet *u = c->u;
    printf("  rounding noise of L %.2e: floor of a derivative %.2e (element), %.2e (direction)\n", c->noise,
           fd_floor(c, FD_H), fd_floor(c, FD_H_DIR));
    double worst = fd_check("input x", c, c->x, f.dx, c->nx, fc->coords, 0);
    for (int i = 0; fc->params[i]; i++) {
        int k = unet_param_index(u, fc->params[i]);
        CHECK(k >= 0, "no parameter %s", fc->params[i]);
        if (k < 0) continue;
        const param_info *p = &u->table[k];
        worst = fmax(worst, fd_check(p->name, c, u->params + p->offset, f.g + p->offset, p->numel, fc->coords, 0));
    }
    printf("  worst error / tolerance: %.3f\n", worst);

    /* A second forward/backward: parameter gradients accumulate (now twice), dx is the same. */
    float *dx2 = malloc(c->nx * sizeof(float));
    pass_with_dout(u, c->out, dx2, c->x, c->t, NULL, c->dp, c->r);
    size_t bad = 0;
    float gm = maxabs(f.g, u->nparams);
    for (size_t i = 0; i < u->nparams; i++)
        bad += !(fabsf(u->grads[i] - 2 * f.g[i]) <= 1e-5f * fabsf(f.g[i]) + 1e-7f * gm);
    CHECK(bad == 0, "%zu parameter gradients did not accumulate", bad);
    CHECK(!memcmp(f.dx, dx2, c->nx * sizeof(float)), "dx differs on a second backward (not overwritten?)");
    pass_with_dout(u, c->out, NULL, c->x, c->t, NULL, c->dp, c->r); /* dx may be NULL */
    free(dx2);

    if (fc->dropout > 0) {
        /* Masks are a function of (seed, step): the same again, others for another step. */
        err_t err;
        float *o1 = malloc(c->nout * sizeof(float)), *o2 = malloc(c->nout * sizeof(float));
        CHECK(unet_forward(u, o1, c->x, c->t, NULL, &c->drop, &err) == 0, "%s", err.msg);
        CHECK(unet_forward(u, o2, c->x, c->t, NULL, &c->drop, &err) == 0, "%s", err.msg);
        CHECK(!memcmp(o1, o2, c->nout * sizeof(float)), "dropout: the same (seed, step) gave another output");
        unet_dropout other = {c->drop.seed, c->drop.step + 1, 0};
        CHECK(unet_forward(u, o2, c->x, c->t, NULL, &other, &err) == 0, "%s", err.msg);
        CHECK(memcmp(o1, o2, c->nout * sizeof(float)) != 0, "dropout: another step gave the same output");
        CHECK(unet_forward(u, o2, c->x, c->t, NULL, NULL, &err) == 0, "%s", err.msg);
        CHECK(memcmp(o1, o2, c->nout * sizeof(float)) != 0, "dropout: no dropout gave the same output");
        free(o1); free(o2);
    }
    fd_net_free(&f);
    omp_set_num_threads(threads);
}

/* Config A: the tiny base config (levels [8, 16], attention at 4x4, TF downsample
 * padding, one resnet per block): the input and a parameter from every kind of unit. */
static const char *const params_a[] = {
    "conv_in.weight",
    "time_embedding.linear_1.weight",
    "down_blocks.0.resnets.0.norm1.weight",
    "down_blocks.0.resnets.0.conv1.weight",
    "down_blocks.0.resnets.0.time_emb_proj.weight",
    "down_blocks.0.downsamplers.0.conv.weight",
    "down_blocks.1.resnets.0.conv_shortcut.weight",
    "down_blocks.1.attentions.0.to_q.weight",
    "mid_block.attentions.0.group_norm.weight",
    "mid_block.attentions.0.to_out.0.bias",
    "up_blocks.0.upsamplers.0.conv.weight",
    "up_blocks.1.resnets.1.conv2.weight",
    "conv_norm_out.bias",
    "conv_out.weight",
    NULL};

/* The oneDNN tier, directions only (test_unet holds it to PyTorch element by element). */
static const char *const params_a_fast[] = {
    "conv_in.weight",
    "down_blocks.0.resnets.0.conv1.weight",
    "down_blocks.0.downsamplers.0.conv.weight",
    "mid_block.attentions.0.to_k.weight",
    "up_blocks.0.upsamplers.0.conv.weight",
    "conv_out.bias",
    NULL};

/* Config B: three levels [8, 8, 16] (attention at 2x2), two resnets per block,
 * symmetric downsample padding, flip_sin_to_cos, shift 0, one input channel. */
static const char *const ov_b[][2] = {
    {"block_out_channels", "[8, 8, 16]"},
    {"down_block_types", "[\"DownBlock2D\", \"DownBlock2D\", \"AttnDownBlock2D\"]"},
    {"up_block_types", "[\"AttnUpBlock2D\", \"UpBlock2D\", \"UpBlock2D\"]"},
    {"layers_per_block", "2"},
    {"downsample_padding", "1"},
    {"flip_sin_to_cos", "true"},
    {"freq_shift", "0"},
    {"in_channels", "1"},
    {"out_channels", "1"}};
static const char *const params_b[] = {
    "conv_in.weight",
    "time_embedding.linear_2.weight",
    "down_blocks.1.downsamplers.0.conv.weight",
    "down_blocks.2.attentions.1.to_v.weight",
    "mid_block.attentions.0.group_norm.bias",
    "up_blocks.0.resnets.2.conv_shortcut.weight",
    "up_blocks.2.resnets.2.norm2.weight",
    NULL};

/* With dropout (the backward must regenerate each resnet's mask). */
static const char *const params_drop[] = {
    "down_blocks.0.resnets.0.conv1.weight",
    "down_blocks.0.resnets.0.norm2.weight",
    "mid_block.resnets.1.conv1.bias",
    "up_blocks.1.resnets.1.conv2.weight",
    NULL};

#define NOV(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void test_fd_config_a(void) {
    fd_case ref = {"config A", NULL, 0, 2, 0.0f, 1, 3, params_a};
    run_fd_case(&ref);
    fd_case fast = {"config A", NULL, 0, 2, 0.0f, 0, 0, params_a_fast};
    run_fd_case(&fast);
}

static void test_fd_config_b(void) {
    fd_case fc = {"config B", ov_b, NOV(ov_b), 2, 0.0f, 1, 3, params_b};
    run_fd_case(&fc);
}

static void test_fd_dropout(void) {
    fd_case fc = {"config A, dropout 0.3", NULL, 0, 2, 0.3f, 1, 3, params_drop};
    run_fd_case(&fc);
}

/* A batch split into shards (each a network over some of the images, the
 * gradients summed): directions, with dropout. */
static void test_fd_sharded(void) {
    CHECK(unet_shard_count(8) > 1, "a batch of 8 is not sharded (%d)", unet_shard_count(8));
    static const char *const params[] = {"down_blocks.0.resnets.0.conv1.weight", "mid_block.resnets.1.conv1.bias",
                                         NULL};
    fd_case fc = {"config A, dropout 0.3", NULL, 0, 8, 0.3f, 1, 0, params};
    run_fd_case(&fc);
}

/* The checker rejects slightly wrong gradients: a whole tensor 2% too large, one
 * element off by 2% of the tensor's max, a gradient with its elements permuted. */
static void test_fd_sensitivity(void) {
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    fd_case fc = {"config A", NULL, 0, 2, 0.0f, 1, 3, params_a};
    fd_net f;
    if (fd_net_create(&f, &fc)) {
        omp_set_num_threads(threads);
        return;
    }
    unet *u = f.c.u;
    const char *names[] = {"down_blocks.0.resnets.0.conv1.weight", "mid_block.attentions.0.group_norm.weight"};
    for (int i = 0; i < 2; i++) {
        const param_info *p = &u->table[unet_param_index(u, names[i])];
        float *w = u->params + p->offset, *g = f.g + p->offset, *bad = malloc(p->numel * sizeof(float));
        size_t n = p->numel, imax = 0;
        for (size_t k = 0; k < n; k++) imax = fabsf(g[k]) > fabsf(g[imax]) ? k : imax;
        double ok = fd_check(p->name, &f.c, w, g, n, 3, 1);
        for (size_t k = 0; k < n; k++) bad[k] = 1.02f * g[k];
        double scaled = fd_check(p->name, &f.c, w, bad, n, 0, 1);
        memcpy(bad, g, n * sizeof(float));
        bad[imax] += 0.02f * g[imax];
        /* (the spread sample of 3 elements need not hit imax: check it alone) */
        double one = fd_check(p->name, &f.c, w + imax, bad + imax, 1, 1, 1);
        for (size_t k = 0; k < n; k++) bad[k] = g[(k * 7 + 1) % n];
        double perm = fd_check(p->name, &f.c, w, bad, n, 0, 1);
        printf("  %-42s error/tolerance: right %.2f, x1.02 %.1f, one element +2%% %.1f, permuted %.1f\n", p->name,
               ok, scaled, one, perm);
        CHECK(ok <= 1 && scaled > 1 && one > 1 && perm > 1, "%s: the checker does not tell right from wrong", p->name);
        free(bad);
    }
    fd_net_free(&f);
    omp_set_num_threads(threads);
}

/* A sharded batch gives the same bits with one thread as with all of them
 * (output, input gradient, parameter gradients), dropout included. 22 images
 * in 5 shards of 4, 4, 5, 4, 5: shards of two sizes take turns in the
 * workers' arenas, the last round has fewer shards than threads, and the
 * gradient tree is not a complete one. */
static void test_shard_threads(void) {
    const int B = 22;
    char json[4096];
    make_json(json, sizeof json, NULL, 0);
    unet_config cfg;
    err_t err;
    CHECK(unet_config_from_json(&cfg, json, &err) == 0, "%s", err.msg);
    cfg.dropout = 0.2f;
    size_t nx = (size_t)B * 8 * 8 * cfg.in_channels, no = (size_t)B * 8 * 8 * cfg.out_channels;
    float *x = malloc(nx * sizeof(float)), *r = malloc(no * sizeof(float)), t[B], *params = NULL;
    for (size_t i = 0; i < nx; i++) x[i] = urand();
    for (size_t i = 0; i < no; i++) r[i] = urand();
    for (int b = 0; b < B; b++) t[b] = (float)(b * 123 % 1000);
    unet_dropout dp = {5, 11, 0};
    /* [algorithm][thread count]: oneDNN's kernels, then the GEMM-based ones (whose
     * weights the shards share: a wrong share would show as a mismatch). */
    float *out[2][2], *dx[2][2], *g[2][2];
    size_t np = 0;
    int threads = omp_get_max_threads(), counts[2] = {1, threads > 1 ? threads : 4};
    for (int a = 0; a < 2; a++) {
        ops_conv_set_algorithm(a ? CONV_ALG_WINOGRAD : CONV_ALG_DIRECT);
        unet *u;
        int rc = unet_create_sharded(&u, &cfg, B, 5, 1, &err);
        CHECK(rc == 0, "unet_create: %s", err.msg);
        if (rc) break;
        np = u->nparams;
        if (!params) {
            random_params(u);
            params = malloc(np * sizeof(float));
            memcpy(params, u->params, np * sizeof(float));
        }
        memcpy(u->params, params, np * sizeof(float));
        for (int k = 0; k < 2; k++) {
            omp_set_num_threads(counts[k]);
            out[a][k] = malloc(no * sizeof(float));
            dx[a][k] = malloc(nx * sizeof(float));
            g[a][k] = malloc(np * sizeof(float));
            memset(u->grads, 0, np * sizeof(float));
            pass_with_dout(u, out[a][k], dx[a][k], x, t, NULL, &dp, r);
            memcpy(g[a][k], u->grads, np * sizeof(float));
        }
        omp_set_num_threads(threads);
        printf("  %s: batch %d in %d shards, %d vs %d threads\n", a ? "GEMM-based algorithms" : "oneDNN kernels", B,
               u->nshards, counts[0], counts[1]);
        CHECK(!memcmp(out[a][0], out[a][1], no * sizeof(float)), "output depends on the thread count");
        CHECK(!memcmp(dx[a][0], dx[a][1], nx * sizeof(float)), "dx depends on the thread count");
        CHECK(!memcmp(g[a][0], g[a][1], np * sizeof(float)), "parameter gradients depend on the thread count");
        unet_free(u);
    }
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
    check_close("GEMM-based vs oneDNN: output", out[1][0], out[0][0], no, 1e-5 * maxabs(out[0][0], no), 1e-3);
    check_close("GEMM-based vs oneDNN: dx", dx[1][0], dx[0][0], nx, 1e-5 * maxabs(dx[0][0], nx), 1e-3);
    check_close("GEMM-based vs oneDNN: parameter gradients", g[1][0], g[0][0], np, 1e-5 * maxabs(g[0][0], np), 1e-3);
    for (int a = 0; a < 2; a++)
        for (int k = 0; k < 2; k++) { free(out[a][k]); free(dx[a][k]); free(g[a][k]); }
    free(x); free(r); free(params);
}

/* What data-parallel training relies on: a batch of 16 in 4 shards gives
 * exactly (subtree of shards 0-1) + (subtree of shards 2-3), each subtree
 * computed by its own network of 8 images in 2 shards with the dropout masks
 * of its place in the batch (image0) -- the sum two processes make. And the
 * output and dx of each half are those of the whole batch. */
static void test_shard_subtrees(void) {
    enum { B = 16, H = B / 2 };
    char json[4096];
    make_json(json, sizeof json, NULL, 0);
    unet_config cfg;
    err_t err;
    CHECK(unet_config_from_json(&cfg, json, &err) == 0, "%s", err.msg);
    cfg.dropout = 0.2f;
    size_t per_x = (size_t)8 * 8 * cfg.in_channels, per_o = (size_t)8 * 8 * cfg.out_channels;
    float *x = malloc(B * per_x * sizeof(float)), *r = malloc(B * per_o * sizeof(float)), t[B];
    for (size_t i = 0; i < B * per_x; i++) x[i] = urand();
    for (size_t i = 0; i < B * per_o; i++) r[i] = urand();
    for (int b = 0; b < B; b++) t[b] = (float)(b * 61 % 1000);
    unet *whole, *half;
    if (unet_create_sharded(&whole, &cfg, B, 4, 1, &err) || unet_create_sharded(&half, &cfg, H, 2, 1, &err)) {
        CHECK(0, "unet_create_sharded: %s", err.msg);
        return;
    }
    random_params(whole);
    memcpy(half->params, whole->params, whole->nparams * sizeof(float));
    size_t P = whole->nparams;
    float *out = malloc(B * per_o * sizeof(float)), *dx = malloc(B * per_x * sizeof(float));
    float *out2 = malloc(B * per_o * sizeof(float)), *dx2 = malloc(B * per_x * sizeof(float));
    float *sum = calloc(P, sizeof(float));
    unet_dropout dp = {9, 3, 0};
    memset(whole->grads, 0, P * sizeof(float));
    pass_with_dout(whole, out, dx, x, t, NULL, &dp, r);
    for (int k = 0; k < 2; k++) {
        unet_dropout dk = {9, 3, (uint64_t)k * H};
        memset(half->grads, 0, P * sizeof(float));
        pass_with_dout(half, out2 + k * H * per_o, dx2 + k * H * per_x, x + k * H * per_x, t + k * H, NULL, &dk, r + k * H * per_o);
        for (size_t i = 0; i < P; i++) sum[i] = k ? sum[i] + half->grads[i] : half->grads[i];
    }
    CHECK(!memcmp(out, out2, B * per_o * sizeof(float)), "the halves' outputs differ from the whole batch's");
    CHECK(!memcmp(dx, dx2, B * per_x * sizeof(float)), "the halves' dx differ from the whole batch's");
    CHECK(!memcmp(sum, whole->grads, P * sizeof(float)), "left subtree + right subtree != the 4-shard gradient");
    /* Leaf by leaf: four networks of one shard of 4 images. The tree
     * ((g0 + g1) + (g2 + g3)) matches; the left fold ((g0 + g1) + g2) + g3,
     * the order before the tree, does not: the check can fail. */
    unet *q;
    CHECK(unet_create_sharded(&q, &cfg, 4, 1, 1, &err) == 0, "%s", err.msg);
    memcpy(q->params, whole->params, P * sizeof(float));
    float *leaf[4];
    for (int k = 0; k < 4; k++) {
        unet_dropout dk = {9, 3, (uint64_t)k * 4};
        memset(q->grads, 0, P * sizeof(float));
        pass_with_dout(q, out2, dx2, x + k * 4 * per_x, t + k * 4, NULL, &dk, r + k * 4 * per_o);
        leaf[k] = malloc(P * sizeof(float));
        memcpy(leaf[k], q->grads, P * sizeof(float));
    }
    int tree_ok = 1, fold_same = 1;
    for (size_t i = 0; i < P; i++) {
        float tree = (leaf[0][i] + leaf[1][i]) + (leaf[2][i] + leaf[3][i]);
        float fold = ((leaf[0][i] + leaf[1][i]) + leaf[2][i]) + leaf[3][i];
        tree_ok &= memcmp(&tree, &whole->grads[i], sizeof tree) == 0;
        fold_same &= memcmp(&fold, &whole->grads[i], sizeof fold) == 0;
    }
    CHECK(tree_ok, "(g0 + g1) + (g2 + g3) from single-shard networks != the 4-shard gradient");
    CHECK(!fold_same, "the left fold gives the same bits as the tree: the check above could not fail");
    for (int k = 0; k < 4; k++) free(leaf[k]);
    unet_free(q);
    unet_free(whole), unet_free(half);
    free(x), free(r), free(out), free(dx), free(out2), free(dx2), free(sum);
}

/* Running out of memory for the workers' buffers is an error, not the end of
 * the process: with exec_buffer failing every request (the test knob), unet_forward and unet_train_pass return -1 with err.oom and a
 * message; with the limit lifted the same calls give the bits they gave before.
 * Winograd (GEMM) convolutions, whose forward uses the buffers too, and
 * oneDNN's; one network and a sharded one (shards on the executor's threads). */
static void test_tbuf_oom(void) {
    char json[4096];
    make_json(json, sizeof json, NULL, 0);
    unet_config cfg;
    err_t err;
    CHECK(unet_config_from_json(&cfg, json, &err) == 0, "%s", err.msg);
    cfg.dropout = 0.2f;
    for (int a = 0; a < 2; a++)
        for (int sharded = 0; sharded < 2; sharded++) {
            const int B = sharded ? 8 : 2;
            ops_conv_set_algorithm(a ? CONV_ALG_WINOGRAD : CONV_ALG_DIRECT);
            unet *u;
            int rc = sharded ? unet_create_sharded(&u, &cfg, B, 2, 1, &err) : unet_create(&u, &cfg, B, 1, &err);
            CHECK(rc == 0, "unet_create: %s", err.msg);
            if (rc) continue;
            random_params(u);
            size_t nx = (size_t)B * 8 * 8 * cfg.in_channels, no = (size_t)B * 8 * 8 * cfg.out_channels;
            size_t np = u->nparams;
            float *x = malloc(nx * sizeof(float)), *r = malloc(no * sizeof(float)), t[8];
            float *out[2], *dx[2], *g[2], *fwd[2];
            int frc = 0; /* the forward's status under the limit */
            for (size_t i = 0; i < nx; i++) x[i] = urand();
            for (size_t i = 0; i < no; i++) r[i] = urand();
            for (int b = 0; b < B; b++) t[b] = (float)(b * 97 % 1000);
            fixed_dout f = {r, (size_t)8 * 8 * cfg.out_channels};
            unet_dropout dp = {3, 7, 0};
            for (int k = 0; k < 2; k++) {
                fwd[k] = malloc(no * sizeof(float)), out[k] = malloc(no * sizeof(float));
                dx[k] = malloc(nx * sizeof(float)), g[k] = malloc(np * sizeof(float));
            }
            /* 0: before the failures; 1: after them. */
            for (int k = 0; k < 2; k++) {
                CHECK(unet_forward(u, fwd[k], x, t, NULL, NULL, &err) == 0, "forward: %s", err.msg);
                memset(u->grads, 0, np * sizeof(float));
                CHECK(unet_train_pass(u, out[k], dx[k], x, t, NULL, &dp, fixed_dout_grad, &f, &err) == 0,
                      "training pass: %s", err.msg);
                memcpy(g[k], u->grads, np * sizeof(float));
                if (k) break;
                exec_set_buffer_limit(1);
                err = (err_t){0};
                rc = frc = unet_forward(u, fwd[1], x, t, NULL, NULL, &err);
                if (a) /* oneDNN's direct kernels may need no temporaries in the forward */
                    CHECK(rc == -1 && err.oom && strstr(err.msg, "worker's temporaries"),
                          "forward under the limit: rc %d, oom %d, '%s'", rc, err.oom, err.msg);
                else
                    CHECK(rc == 0 || (rc == -1 && err.oom && err.msg[0]), "forward: rc %d oom %d", rc, err.oom);
                err = (err_t){0};
                rc = unet_train_pass(u, out[1], dx[1], x, t, NULL, &dp, fixed_dout_grad, &f, &err);
                CHECK(rc == -1 && err.oom && strstr(err.msg, "worker's temporaries"),
                      "training pass under the limit: rc %d, oom %d, '%s'", rc, err.oom, err.msg);
                exec_set_buffer_limit(0);
            }
            printf("  %s, %s, under the limit: forward %s, training pass '%s'\n", a ? "Winograd" : "oneDNN",
                   sharded ? "2 shards" : "1 network", frc ? "failed" : "needed no temporaries", err.msg);
            CHECK(!memcmp(fwd[0], fwd[1], no * sizeof(float)), "forward: other bits after the failures");
            CHECK(!memcmp(out[0], out[1], no * sizeof(float)), "training output: other bits after the failures");
            CHECK(!memcmp(dx[0], dx[1], nx * sizeof(float)), "dx: other bits after the failures");
            CHECK(!memcmp(g[0], g[1], np * sizeof(float)), "gradients: other bits after the failures");
            for (int k = 0; k < 2; k++) free(fwd[k]), free(out[k]), free(dx[k]), free(g[k]);
            free(x), free(r);
            unet_free(u);
        }
    ops_conv_set_algorithm(CONV_ALG_MEASURE);
}

TEST_MAIN(test_preset_counts, test_config_errors, test_config_fuzz, test_fd_config_a, test_fd_config_b,
          test_fd_dropout, test_fd_sharded, test_fd_sensitivity, test_shard_threads, test_shard_subtrees,
          test_tbuf_oom)
