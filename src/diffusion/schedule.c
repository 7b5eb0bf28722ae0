/* schedule.c -- beta schedules, the derived per-timestep tables, and the
 * diffusers scheduler_config.json reader/writer (see schedule.h).
 */
#include "diffusion/schedule.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* float32 torch.linspace(start, end, T) exactly as PyTorch's CPU kernel
 * computes it (ATen RangeFactoriesKernel.cpp, AVX2 build): step = (end -
 * start) / (T - 1) in float; the first half counts up from start, the second
 * down from end; while 16 or more elements remain, two 8-wide vectors are
 * written, each from a base value base = start + step*i (or end - step*(T-1-i))
 * that the compiler fuses into one FMA, plus k*step (k = 0..7, not fused); the
 * tail is scalar, again with a fused multiply-add. Checked bit-exact against
 * torch 1.13 for T = 2..300, 1000 and 4000 on several ranges. Relies on this
 * file being compiled without FP contraction (-std=c11 implies
 * -ffp-contract=off in gcc), so only the explicit fmaf calls fuse. */
static void torch_linspace_f32(float *out, float start, float end, int T) {
    const float step = (end - start) / (float)(T - 1);
    const int half = T / 2;
    int i = 0;
    for (; i + 16 <= T; i += 16) {
        for (int v = 0; v < 2; v++) {
            int i0 = i + 8 * v;
            float base = i0 < half ? fmaf(step, (float)i0, start) : fmaf(-step, (float)(T - i0 - 1), end);
            for (int k = 0; k < 8; k++) {
                float ks = (float)k * step;
                out[i0 + k] = base + ks;
            }
        }
    }
    for (; i < T; i++) out[i] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(T - i - 1), end);
}

/* alphabar(u) of the cosine schedule (Nichol & Dhariwal), in double, in the
 * same operation order as diffusers' betas_for_alpha_bar. */
static double cosine_abar(double u) {
    double c = cos((u + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

static void set_defaults(schedule *s) {
    s->variance_type = SCHED_FIXED_SMALL;
    s->clip_sample = 1;
    s->clip_range = 1.0f;
    s->thresholding = 0;
    s->threshold_ratio = 0.995f;
    s->sample_max = 1.0f;
    s->set_alpha_to_one = 1;
    snprintf(s->timestep_spacing, sizeof s->timestep_spacing, "leading");
    s->steps_offset = 0;
}

/* Allocates the tables of s (s->T set). */
static int alloc_tables(schedule *s, err_t *err) {
    size_t T = (size_t)s->T;
    s->mem = mem_alloc(9 * T * sizeof(float), err);
    if (!s->mem) return -1;
    float *p = s->mem;
    s->betas = p; p += T;
    s->alphas = p; p += T;
    s->alphas_cumprod = p; p += T;
    s->sqrt_ac = p; p += T;
    s->sqrt_1m_ac = p; p += T;
    s->post_var = p; p += T;
    s->post_log_var_clipped = p; p += T;
    s->post_c0 = p; p += T;
    s->post_ct = p;
    return 0;
}

/* Fills every table from s->betas (float). */
static int derive_tables(schedule *s, err_t *err) {
    int T = s->T;
    double acc = 1.0;
    for (int t = 0; t < T; t++) {
        s->alphas[t] = 1.0f - s->betas[t];
        acc *= (double)s->alphas[t]; /* torch.cumprod on CPU: double accumulator */
        s->alphas_cumprod[t] = (float)acc;
    }
    if (s->alphas_cumprod[0] >= 1.0f)
        return err_fail(err, "schedule: beta[0] = %g is too small (1 - beta rounds to 1 in float32)",
                         (double)s->betas[0]);
    if (!(s->alphas_cumprod[T - 1] > 0.0f))
        return err_fail(err, "schedule: alphas_cumprod underflows to 0 at t = %d (betas too large for T = %d)",
                         T - 1, T);
    for (int t = 0; t < T; t++) {
        double a = s->alphas_cumprod[t], ap = t > 0 ? (double)s->alphas_cumprod[t - 1] : 1.0;
        double cur_alpha = a / ap, cur_beta = 1.0 - cur_alpha; /* as DDPMScheduler.step forms them */
        double pv = (1.0 - ap) / (1.0 - a) * cur_beta;
        s->sqrt_ac[t] = (float)sqrt(a);
        s->sqrt_1m_ac[t] = (float)sqrt(1.0 - a);
        s->post_var[t] = (float)pv;
        s->post_c0[t] = (float)(sqrt(ap) * cur_beta / (1.0 - a));
        s->post_ct[t] = (float)(sqrt(cur_alpha) * (1.0 - ap) / (1.0 - a));
        if (t > 0) s->post_log_var_clipped[t] = (float)log(pv);
    }
    s->post_log_var_clipped[0] = s->post_log_var_clipped[1];
    return 0;
}

static int check_T(int T, err_t *err) {
    if (T < 2 || T > SCHED_MAX_T)
        return err_fail(err, "schedule: num_train_timesteps = %d out of range [2, %d]", T, SCHED_MAX_T);
    return 0;
}

int schedule_init(schedule *s, const char *kind, int T, double beta_start, double beta_end, err_t *err) {
    memset(s, 0, sizeof *s);
    if (check_T(T, err)) return -1;
    if (!kind) kind = "linear";
    int k;
    if (!strcmp(kind, "linear")) k = 0;
    else if (!strcmp(kind, "scaled_linear")) k = 1;
    else if (!strcmp(kind, "squaredcos_cap_v2") || !strcmp(kind, "cosine")) k = 2;
    else
        return err_fail(err, "schedule: unknown beta_schedule \"%.64s\" (expected linear, scaled_linear, "
                              "squaredcos_cap_v2 or cosine)", kind);
    if (k != 2 && !(beta_start > 0 && beta_start <= beta_end && beta_end < 1))
        return err_fail(err, "schedule: need 0 < beta_start <= beta_end < 1, got beta_start = %g, beta_end = %g",
                         beta_start, beta_end);
    s->T = T;
    snprintf(s->kind, sizeof s->kind, "%s", k == 2 ? "squaredcos_cap_v2" : kind);
    s->beta_start = beta_start;
    s->beta_end = beta_end;
    set_defaults(s);
    if (alloc_tables(s, err)) goto fail;
    if (k == 0) {
        torch_linspace_f32(s->betas, (float)beta_start, (float)beta_end, T);
    } else if (k == 1) {
        torch_linspace_f32(s->betas, (float)sqrt(beta_start), (float)sqrt(beta_end), T);
        for (int t = 0; t < T; t++) s->betas[t] = s->betas[t] * s->betas[t];
    } else {
        for (int i = 0; i < T; i++) {
            double b = 1 - cosine_abar((double)(i + 1) / T) / cosine_abar((double)i / T);
            s->betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
    }
    if (derive_tables(s, err)) goto fail;
    return 0;
fail:
    schedule_free(s);
    return -1;
}

int schedule_init_trained(schedule *s, const double *betas, int T, const char *kind, err_t *err) {
    memset(s, 0, sizeof *s);
    if (check_T(T, err)) return -1;
    for (int t = 0; t < T; t++)
        if (!(betas[t] > 0 && betas[t] < 1 && (float)betas[t] > 0 && (float)betas[t] < 1)) /* kept as floats */
            return err_fail(err, "schedule: trained_betas[%d] = %g outside (0, 1) as a float32", t, betas[t]);
    s->T = T;
    s->trained = 1;
    snprintf(s->kind, sizeof s->kind, "%.31s", kind ? kind : "linear");
    s->beta_start = betas[0];
    s->beta_end = betas[T - 1];
    set_defaults(s);
    if (alloc_tables(s, err)) goto fail;
    for (int t = 0; t < T; t++) s->betas[t] = (float)betas[t];
    if (derive_tables(s, err)) goto fail;
    return 0;
fail:
    schedule_free(s);
    return -1;
}

void schedule_free(schedule *s) {
    if (!s) return;
    free(s->mem);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ JSON */

#define CFG "scheduler config"

/* Each getter leaves *out untouched when the key is absent (the default). */
static int get_num(const cJSON *o, const char *key, double *out, err_t *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return err_fail(err, CFG ": \"%s\" must be a number", key);
    *out = it->valuedouble;
    return 0;
}

static int get_int(const cJSON *o, const char *key, int *out, err_t *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return 0;
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || !isfinite(v) || v != floor(v) || v < -2147483647.0 || v > 2147483647.0)
        return err_fail(err, CFG ": \"%s\" must be an integer", key);
    *out = (int)v;
    return 0;
}

static int get_bool(const cJSON *o, const char *key, int *out, err_t *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return 0;
    if (!cJSON_IsBool(it)) return err_fail(err, CFG ": \"%s\" must be true or false", key);
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return 0;
}

static int get_str(const cJSON *o, const char *key, const char **out, err_t *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return 0;
    if (!cJSON_IsString(it) || !it->valuestring) return err_fail(err, CFG ": \"%s\" must be a string", key);
    *out = it->valuestring;
    return 0;
}

int schedule_from_json(schedule *s, const char *json_text, err_t *err) {
    memset(s, 0, sizeof *s);
    double *tb = NULL;
    cJSON *root = json_text ? cJSON_ParseWithOpts(json_text, NULL, 1) : NULL; /* nothing after the value */
    if (!root) return err_fail(err, CFG ": invalid JSON");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_fail(err, CFG ": not a JSON object");
    }
    int T = 1000, clip = 1, offset = 0, one = 1, thresholding = 0, rescale = 0;
    double bs = 0.0001, be = 0.02, range = 1.0, ratio = 0.995, smax = 1.0;
    const char *kind = "linear", *vt = "fixed_small", *pred = "epsilon", *spacing = "leading";
    if (get_int(root, "num_train_timesteps", &T, err) || get_num(root, "beta_start", &bs, err) ||
        get_num(root, "beta_end", &be, err) || get_str(root, "beta_schedule", &kind, err) ||
        get_str(root, "variance_type", &vt, err) || get_bool(root, "clip_sample", &clip, err) ||
        get_num(root, "clip_sample_range", &range, err) || get_str(root, "prediction_type", &pred, err) ||
        get_str(root, "timestep_spacing", &spacing, err) || get_int(root, "steps_offset", &offset, err) ||
        get_bool(root, "set_alpha_to_one", &one, err) || get_bool(root, "thresholding", &thresholding, err) ||
        get_num(root, "dynamic_thresholding_ratio", &ratio, err) || get_num(root, "sample_max_value", &smax, err) ||
        get_bool(root, "rescale_betas_zero_snr", &rescale, err))
        goto fail;
    int var_type;
    if (!strcmp(vt, "fixed_small")) var_type = SCHED_FIXED_SMALL;
    else if (!strcmp(vt, "fixed_large")) var_type = SCHED_FIXED_LARGE;
    else if (!strcmp(vt, "learned_range")) var_type = SCHED_LEARNED_RANGE;
    else {
        err_fail(err, CFG ": variance_type \"%.64s\" is not supported (fixed_small, fixed_large or learned_range)",
                 vt);
        goto fail;
    }
    const int prediction = schedule_prediction_parse(pred);
    if (prediction < 0) {
        err_fail(err, CFG ": prediction_type \"%.64s\" is not supported (epsilon, sample or v_prediction)", pred);
        goto fail;
    }
    if (!(ratio > 0 && ratio <= 1 && (float)ratio > 0)) { /* kept as a float: 1e-300 would be 0 */
        err_fail(err, CFG ": dynamic_thresholding_ratio = %g must be in (0, 1] (as a float32)", ratio);
        goto fail;
    }
    if (!(smax >= 1 && smax <= 1e6)) {
        err_fail(err, CFG ": sample_max_value = %g must be in [1, 1e6]", smax);
        goto fail;
    }
    if (rescale) {
        err_fail(err, CFG ": rescale_betas_zero_snr is not supported");
        goto fail;
    }
    if (strcmp(spacing, "leading") && strcmp(spacing, "trailing") && strcmp(spacing, "linspace")) {
        err_fail(err, CFG ": timestep_spacing \"%.64s\" unknown (expected leading, trailing or linspace)", spacing);
        goto fail;
    }
    if (!(range > 0 && range <= FLT_MAX && (float)range > 0)) { /* kept as a float */
        err_fail(err, CFG ": clip_sample_range = %g must be > 0 and a finite float32", range);
        goto fail;
    }
    if (offset < 0) {
        err_fail(err, CFG ": steps_offset = %d must be >= 0", offset);
        goto fail;
    }
    const cJSON *tbj = cJSON_GetObjectItemCaseSensitive(root, "trained_betas");
    int rc;
    if (tbj && !cJSON_IsNull(tbj)) {
        if (!cJSON_IsArray(tbj)) {
            err_fail(err, CFG ": \"trained_betas\" must be an array of numbers or null");
            goto fail;
        }
        int n = cJSON_GetArraySize(tbj);
        if (n != T) {
            err_fail(err, CFG ": trained_betas has %d entries, num_train_timesteps is %d", n, T);
            goto fail;
        }
        if (check_T(T, err)) {
            err_wrap(err, CFG);
            goto fail;
        }
        tb = mem_alloc((size_t)n * sizeof *tb, err);
        if (!tb) goto fail;
        int i = 0;
        const cJSON *el;
        cJSON_ArrayForEach(el, tbj) {
            if (!cJSON_IsNumber(el)) {
                err_fail(err, CFG ": trained_betas[%d] is not a number", i);
                goto fail;
            }
            tb[i++] = el->valuedouble;
        }
        rc = schedule_init_trained(s, tb, T, kind, err);
        if (!rc) {
            s->beta_start = bs;
            s->beta_end = be;
        }
    } else {
        rc = schedule_init(s, kind, T, bs, be, err);
    }
    if (rc) {
        err_wrap(err, CFG);
        goto fail;
    }
    s->variance_type = var_type;
    s->prediction = prediction;
    s->clip_sample = clip;
    s->clip_range = (float)range;
    s->thresholding = thresholding;
    s->threshold_ratio = (float)ratio;
    s->sample_max = (float)smax;
    s->set_alpha_to_one = one;
    snprintf(s->timestep_spacing, sizeof s->timestep_spacing, "%s", spacing);
    s->spacing_given = cJSON_GetObjectItemCaseSensitive(root, "timestep_spacing") != NULL;
    s->steps_offset = offset;
    free(tb);
    cJSON_Delete(root);
    return 0;
fail:
    free(tb);
    cJSON_Delete(root);
    schedule_free(s);
    return -1;
}

static const char *const prediction_names[] = {"epsilon", "sample", "v_prediction"};
static const char *const variance_names[] = {"fixed_small", "fixed_large", "learned_range"};

const char *schedule_variance_name(int variance_type) {
    ERR_ASSERT(variance_type >= 0 && variance_type < 3);
    return variance_names[variance_type];
}

const char *schedule_prediction_name(int prediction) {
    ERR_ASSERT(prediction >= 0 && prediction < 3);
    return prediction_names[prediction];
}

int schedule_prediction_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, prediction_names[i])) return i;
    return -1;
}

char *schedule_to_json(const schedule *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    /* keys in sorted order, as diffusers' json.dumps(sort_keys=True) writes them */
    int ok = cJSON_AddStringToObject(o, "_class_name", "DDPMScheduler") &&
             cJSON_AddNumberToObject(o, "beta_end", s->beta_end) &&
             cJSON_AddStringToObject(o, "beta_schedule", s->kind) &&
             cJSON_AddNumberToObject(o, "beta_start", s->beta_start) &&
             cJSON_AddBoolToObject(o, "clip_sample", s->clip_sample) &&
             cJSON_AddNumberToObject(o, "clip_sample_range", (double)s->clip_range) &&
             cJSON_AddNumberToObject(o, "dynamic_thresholding_ratio", (double)s->threshold_ratio) &&
             cJSON_AddNumberToObject(o, "num_train_timesteps", s->T) &&
             cJSON_AddStringToObject(o, "prediction_type", schedule_prediction_name(s->prediction)) &&
             cJSON_AddFalseToObject(o, "rescale_betas_zero_snr") &&
             cJSON_AddBoolToObject(o, "set_alpha_to_one", s->set_alpha_to_one) &&
             cJSON_AddNumberToObject(o, "sample_max_value", (double)s->sample_max) &&
             cJSON_AddNumberToObject(o, "steps_offset", s->steps_offset) &&
             cJSON_AddBoolToObject(o, "thresholding", s->thresholding) &&
             cJSON_AddStringToObject(o, "timestep_spacing", s->timestep_spacing);
    if (ok) {
        if (s->trained) {
            cJSON *arr = cJSON_CreateFloatArray(s->betas, s->T);
            ok = arr && cJSON_AddItemToObject(o, "trained_betas", arr);
            if (arr && !ok) cJSON_Delete(arr);
        } else {
            ok = cJSON_AddNullToObject(o, "trained_betas") != NULL;
        }
    }
    ok = ok && cJSON_AddStringToObject(o, "variance_type", schedule_variance_name(s->variance_type));
    char *txt = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return txt;
}
