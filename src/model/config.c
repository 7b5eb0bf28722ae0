/* config.c -- config.json <-> unet_config, with diffusers' defaults and checks. */
#include "config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const unet_preset_names[] = {"fmnist-small", "fmnist", "cifar10", NULL};

int unet_config_preset(unet_config *c, const char *name, err_t *err) {
    memset(c, 0, sizeof *c);
    /* The paper's conventions everywhere (google/ddpm-* configs). */
    c->norm_groups = 32;
    c->norm_eps = 1e-6f;
    c->flip_sin_to_cos = 0;
    c->freq_shift = 1;
    c->downsample_padding = 0;
    c->dropout = 0.1f;
    if (!strcmp(name, "fmnist-small") || !strcmp(name, "fmnist")) {
        int small = !strcmp(name, "fmnist-small");
        c->sample_size = 28;
        c->in_channels = c->out_channels = 1;
        c->levels = 3;
        int ch[3] = {small ? 32 : 64, small ? 64 : 128, small ? 64 : 128};
        memcpy(c->block_out, ch, sizeof ch);
        c->layers_per_block = small ? 1 : 2;
        c->down_attn[2] = 1; /* attention at 7x7 only */
        c->up_attn[0] = 1;
    } else if (!strcmp(name, "cifar10")) {
        c->sample_size = 32;
        c->in_channels = c->out_channels = 3;
        c->levels = 4;
        int ch[4] = {128, 256, 256, 256};
        memcpy(c->block_out, ch, sizeof ch);
        c->layers_per_block = 2;
        c->down_attn[1] = 1; /* attention at 16x16 */
        c->up_attn[2] = 1;
    } else {
        return err_fail(err, "unknown preset '%s' (known: fmnist-small, fmnist, cifar10)", name);
    }
    return unet_config_check(c, err);
}

int unet_config_check(const unet_config *c, err_t *err) {
    if (c->levels < 1 || c->levels > UNET_MAX_LEVELS)
        return err_fail(err, "config: block_out_channels must have 1 to %d entries, has %d", UNET_MAX_LEVELS, c->levels);
    if (c->sample_size <= 0 || c->sample_size > 4096)
        return err_fail(err, "config: sample_size must be in 1..4096, is %d", c->sample_size);
    int f = 1 << (c->levels - 1);
    if (c->sample_size % f)
        return err_fail(err, "config: sample_size %d is not divisible by 2^(levels-1) = %d", c->sample_size, f);
    if (c->in_channels <= 0 || c->in_channels > 64 || c->out_channels <= 0 || c->out_channels > 64)
        return err_fail(err, "config: in_channels and out_channels must be in 1..64 (are %d, %d)",
                         c->in_channels, c->out_channels);
    if (c->layers_per_block < 1 || c->layers_per_block > UNET_MAX_LAYERS_PER_BLOCK)
        return err_fail(err, "config: layers_per_block must be in 1..%d, is %d", UNET_MAX_LAYERS_PER_BLOCK,
                         c->layers_per_block);
    if (c->norm_groups < 1) return err_fail(err, "config: norm_num_groups must be positive, is %d", c->norm_groups);
    for (int i = 0; i < c->levels; i++) {
        if (c->block_out[i] <= 0 || c->block_out[i] > 2048)
            return err_fail(err, "config: block_out_channels[%d] = %d is out of range 1..2048", i, c->block_out[i]);
        if (c->block_out[i] % c->norm_groups)
            return err_fail(err, "config: block_out_channels[%d] = %d is not divisible by norm_num_groups = %d",
                             i, c->block_out[i], c->norm_groups);
    }
    if (c->block_out[0] % 2)
        return err_fail(err, "config: block_out_channels[0] = %d must be even (timestep embedding)", c->block_out[0]);
    if (!(c->norm_eps > 0 && c->norm_eps < 1)) return err_fail(err, "config: norm_eps must be in (0, 1)");
    if (!(c->dropout >= 0 && c->dropout < 1)) return err_fail(err, "config: dropout must be in [0, 1), is %g", c->dropout);
    if (c->num_class_embeds < 0 || c->num_class_embeds > UNET_MAX_CLASSES)
        return err_fail(err, "config: num_class_embeds must be in 0..%d, is %d", UNET_MAX_CLASSES, c->num_class_embeds);
    if (c->downsample_padding != 0 && c->downsample_padding != 1)
        return err_fail(err, "config: downsample_padding must be 0 or 1, is %d", c->downsample_padding);
    return 0;
}

/* ---- JSON ----------------------------------------------------------------- */

static int get_int(const cJSON *o, const char *key, int def, int *out, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return 0; }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return err_fail(err, "config: '%s' must be an integer", key);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_num(const cJSON *o, const char *key, double def, float *out, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) { *out = (float)def; return 0; }
    if (!cJSON_IsNumber(v)) return err_fail(err, "config: '%s' must be a number", key);
    if (!(fabs(v->valuedouble) <= FLT_MAX)) /* inf in float: written back as null */
        return err_fail(err, "config: '%s' = %g is out of the float range", key, v->valuedouble);
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *key, int def, int *out, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsBool(v)) return err_fail(err, "config: '%s' must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A string key that must be absent, null, or one of the allowed values. */
static int expect_str(const cJSON *o, const char *key, const char *const *allowed, int null_ok, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || (null_ok && cJSON_IsNull(v))) return 0;
    if (cJSON_IsString(v))
        for (int i = 0; allowed[i]; i++)
            if (!strcmp(v->valuestring, allowed[i])) return 0;
    return err_fail(err, "config: unsupported '%s' (supported: %s%s)", key, allowed[0] ? allowed[0] : "",
                     null_ok ? " or null" : "");
}

static int must_be_null(const cJSON *o, const char *key, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v && !cJSON_IsNull(v)) return err_fail(err, "config: '%s' is not supported (must be null or absent)", key);
    return 0;
}

static int block_types(const cJSON *o, const char *key, const char *plain, const char *attn,
                       const char *const *defaults, int *flags, int *n, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        for (*n = 0; defaults[*n]; (*n)++) flags[*n] = !strcmp(defaults[*n], attn);
        return 0;
    }
    if (!cJSON_IsArray(v)) return err_fail(err, "config: '%s' must be an array of block type names", key);
    *n = cJSON_GetArraySize(v);
    if (*n < 1 || *n > UNET_MAX_LEVELS) return err_fail(err, "config: '%s' must have 1 to %d entries", key, UNET_MAX_LEVELS);
    for (int i = 0; i < *n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(e)) return err_fail(err, "config: '%s'[%d] must be a string", key, i);
        if (!strcmp(e->valuestring, plain)) flags[i] = 0;
        else if (!strcmp(e->valuestring, attn)) flags[i] = 1;
        else return err_fail(err, "config: unknown block type '%s' in '%s' (supported: %s, %s)", e->valuestring, key, plain, attn);
    }
    return 0;
}

int unet_config_from_json(unet_config *c, const char *json, err_t *err) {
    memset(c, 0, sizeof *c);
    cJSON *o = cJSON_ParseWithOpts(json, NULL, 1);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return err_fail(err, "config: not a JSON object (parse error near '%.20s')",
                         cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    }
    static const char *const down_def[] = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", NULL};
    static const char *const up_def[] = {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", NULL};
    static const char *const silu[] = {"silu", "swish", NULL}, *const positional[] = {"positional", NULL};
    static const char *const deflt[] = {"default", NULL}, *const conv[] = {"conv", NULL};
    static const char *const mid[] = {"UNetMidBlock2D", NULL}, *const cls[] = {"UNet2DModel", NULL};
    int rc = -1, nd = 0, nu = 0, center = 0, add_attn = 1;
    float msf = 1;
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(o, "sample_size");
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(o, "block_out_channels");
    const cJSON *ahd = cJSON_GetObjectItemCaseSensitive(o, "attention_head_dim");
    if (!ss || cJSON_IsNull(ss)) { err_fail(err, "config: missing key 'sample_size'"); goto done; }
    if (get_int(o, "sample_size", 0, &c->sample_size, err) || get_int(o, "in_channels", 3, &c->in_channels, err) ||
        get_int(o, "out_channels", 3, &c->out_channels, err) ||
        get_int(o, "layers_per_block", 2, &c->layers_per_block, err) ||
        get_int(o, "norm_num_groups", 32, &c->norm_groups, err) || get_num(o, "norm_eps", 1e-5, &c->norm_eps, err) ||
        get_bool(o, "flip_sin_to_cos", 1, &c->flip_sin_to_cos, err) ||
        get_num(o, "freq_shift", 0, &c->freq_shift, err) || get_num(o, "dropout", 0, &c->dropout, err) ||
        get_int(o, "downsample_padding", 1, &c->downsample_padding, err) ||
        get_bool(o, "center_input_sample", 0, &center, err) || get_bool(o, "add_attention", 1, &add_attn, err) ||
        get_num(o, "mid_block_scale_factor", 1, &msf, err) ||
        expect_str(o, "_class_name", cls, 0, err) || expect_str(o, "act_fn", silu, 0, err) ||
        expect_str(o, "time_embedding_type", positional, 0, err) ||
        expect_str(o, "resnet_time_scale_shift", deflt, 0, err) || expect_str(o, "downsample_type", conv, 0, err) ||
        expect_str(o, "upsample_type", conv, 0, err) || expect_str(o, "mid_block_type", mid, 0, err) ||
        must_be_null(o, "class_embed_type", err) || get_int(o, "num_class_embeds", 0, &c->num_class_embeds, err) ||
        must_be_null(o, "time_embedding_dim", err) || must_be_null(o, "attn_norm_num_groups", err))
        goto done;
    if (center) { err_fail(err, "config: center_input_sample true is not supported"); goto done; }
    if (!add_attn) { err_fail(err, "config: add_attention false is not supported"); goto done; }
    if (msf != 1.0f) { err_fail(err, "config: mid_block_scale_factor other than 1 is not supported"); goto done; }
    if (!ahd) {
        err_fail(err, "config: 'attention_head_dim' is absent, which in diffusers means 8-channel heads; "
                       "ddpm implements the paper's single-head attention: set \"attention_head_dim\": null");
        goto done;
    }
    if (!cJSON_IsNull(ahd)) {
        err_fail(err, "config: 'attention_head_dim' must be null (single-head attention, as in the paper)");
        goto done;
    }
    if (!boc) {
        c->levels = 4;
        int d[4] = {224, 448, 672, 896};
        memcpy(c->block_out, d, sizeof d);
    } else {
        if (!cJSON_IsArray(boc)) { err_fail(err, "config: 'block_out_channels' must be an array"); goto done; }
        c->levels = cJSON_GetArraySize(boc);
        if (c->levels < 1 || c->levels > UNET_MAX_LEVELS) {
            err_fail(err, "config: 'block_out_channels' must have 1 to %d entries", UNET_MAX_LEVELS);
            goto done;
        }
        for (int i = 0; i < c->levels; i++) {
            const cJSON *e = cJSON_GetArrayItem(boc, i);
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || fabs(e->valuedouble) > 1e9) {
                err_fail(err, "config: 'block_out_channels'[%d] must be an integer", i);
                goto done;
            }
            c->block_out[i] = (int)e->valuedouble;
        }
    }
    if (block_types(o, "down_block_types", "DownBlock2D", "AttnDownBlock2D", down_def, c->down_attn, &nd, err) ||
        block_types(o, "up_block_types", "UpBlock2D", "AttnUpBlock2D", up_def, c->up_attn, &nu, err))
        goto done;
    if (nd != c->levels || nu != c->levels) {
        err_fail(err, "config: down_block_types (%d) and up_block_types (%d) must each have one entry per "
                       "block_out_channels entry (%d)", nd, nu, c->levels);
        goto done;
    }
    rc = unet_config_check(c, err);
done:
    cJSON_Delete(o);
    return rc;
}

/* The shortest decimal that reads back as the same float (1e-6, not 9.99999997e-07). */
static double tidy(float f) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", f);
    return strtod(b, NULL);
}

int unet_classes_from_json(unet_classes *c, const char *json, err_t *err) {
    memset(c, 0, sizeof *c);
    cJSON *o = cJSON_ParseWithOpts(json, NULL, 1);
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "_class_names") : NULL;
    int rc = 0;
    if (v && !cJSON_IsNull(v)) {
        int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (n < 1 || n > UNET_MAX_CLASSES) {
            rc = err_fail(err, "config: '_class_names' must be an array of 1 to %d strings", UNET_MAX_CLASSES);
        } else if (!(c->names = mem_calloc((size_t)n, sizeof *c->names, err))) {
            rc = -1;
        } else {
            c->n = n;
            for (int i = 0; i < n && rc == 0; i++) {
                const cJSON *e = cJSON_GetArrayItem(v, i);
                if (!cJSON_IsString(e) || !e->valuestring[0]) rc = err_fail(err, "config: '_class_names'[%d] must be a non-empty string", i);
                else snprintf(c->names[i], UNET_NAME_LEN, "%s", e->valuestring);
            }
        }
    }
    cJSON_Delete(o);
    if (rc) unet_classes_free(c);
    return rc;
}

void unet_classes_free(unet_classes *c) {
    free(c->names);
    memset(c, 0, sizeof *c);
}

int unet_null_class(const unet_config *cfg, const unet_classes *c) {
    return c && c->n > 0 && cfg->num_class_embeds == c->n + 1 ? c->n : -1;
}

char *unet_config_to_json(const unet_config *c, const unet_classes *cls) {
    cJSON *o = cJSON_CreateObject();
    if (cls && cls->n > 0) {
        cJSON *names = cJSON_AddArrayToObject(o, "_class_names");
        for (int i = 0; i < cls->n; i++) cJSON_AddItemToArray(names, cJSON_CreateString(cls->names[i]));
    }
    cJSON_AddStringToObject(o, "_class_name", "UNet2DModel");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.21.0");
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddNullToObject(o, "attention_head_dim");
    cJSON *boc = cJSON_AddArrayToObject(o, "block_out_channels");
    cJSON *down = cJSON_AddArrayToObject(o, "down_block_types");
    cJSON *up = cJSON_AddArrayToObject(o, "up_block_types");
    for (int i = 0; i < c->levels; i++) {
        cJSON_AddItemToArray(boc, cJSON_CreateNumber(c->block_out[i]));
        cJSON_AddItemToArray(down, cJSON_CreateString(c->down_attn[i] ? "AttnDownBlock2D" : "DownBlock2D"));
        cJSON_AddItemToArray(up, cJSON_CreateString(c->up_attn[i] ? "AttnUpBlock2D" : "UpBlock2D"));
    }
    cJSON_AddBoolToObject(o, "center_input_sample", 0);
    cJSON_AddNumberToObject(o, "downsample_padding", c->downsample_padding);
    cJSON_AddNumberToObject(o, "dropout", tidy(c->dropout));
    cJSON_AddBoolToObject(o, "flip_sin_to_cos", c->flip_sin_to_cos);
    cJSON_AddNumberToObject(o, "freq_shift", tidy(c->freq_shift));
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "layers_per_block", c->layers_per_block);
    cJSON_AddNumberToObject(o, "mid_block_scale_factor", 1);
    cJSON_AddNumberToObject(o, "norm_eps", tidy(c->norm_eps));
    if (c->num_class_embeds > 0) cJSON_AddNumberToObject(o, "num_class_embeds", c->num_class_embeds);
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_groups);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(o, "sample_size", c->sample_size);
    cJSON_AddStringToObject(o, "time_embedding_type", "positional");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
