/* trainer.c -- training step, optimiser, EMA and checkpoints (see trainer.h). */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "diffusion/diffusion.h"
#include "io/fileio.h"
#include "io/modelfolder.h"
#include "io/safetensors.h"
#include "ops/ops.h"

train_opts train_opts_default(void) {
    train_opts o = {0};
    o.seed = 0;
    o.batch = 128;
    o.lr = 2e-4;
    o.warmup = 5000;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.adam_eps = 1e-8;
    o.clip = 1.0;
    o.ema = 0.9999;
    o.ema_warmup = 1;
    o.flip = 0;
    return o;
}

static int copy_schedule(schedule *dst, const schedule *src, ddpm_err *err) {
    char *j = schedule_to_json(src);
    if (!j) return ddpm_fail(err, "out of memory");
    int rc = schedule_from_json(dst, j, err);
    free(j);
    return rc;
}

int trainer_init(trainer *tr, const unet_config *cfg, const schedule *sched, const dataset *d,
                 const train_opts *o, ddpm_err *err) {
    memset(tr, 0, sizeof *tr);
    tr->o = *o;
    if (d->h != cfg->sample_size || d->w != cfg->sample_size || d->c != cfg->in_channels)
        return ddpm_fail(err, "the data are %dx%dx%d images but the model takes %dx%dx%d (pick a matching "
                         "--preset or --config)", d->h, d->w, d->c, cfg->sample_size, cfg->sample_size,
                         cfg->in_channels);
    if (o->batch < 1) return ddpm_fail(err, "batch size must be at least 1");
    if (cfg->out_channels != cfg->in_channels)
        return ddpm_fail(err, "the model predicts the noise, so out_channels must equal in_channels (are %d, %d)",
                         cfg->out_channels, cfg->in_channels);
    if (copy_schedule(&tr->sched, sched, err)) return -1;
    if (loader_init(&tr->ld, d, o->seed, o->flip, err)) goto fail;
    if (unet_create(&tr->u, cfg, o->batch, 1, err)) goto fail;
    unet_init_official(tr->u, o->seed);
    size_t P = tr->u->nparams, n = (size_t)o->batch * cfg->sample_size * cfg->sample_size * cfg->in_channels;
    tr->m = ddpm_alloc_floats(P, err);
    tr->v = ddpm_alloc_floats(P, err);
    tr->ema = ddpm_alloc_floats(P, err);
    tr->x0 = ddpm_alloc_floats(n, err);
    tr->eps = ddpm_alloc_floats(n, err);
    tr->xt = ddpm_alloc_floats(n, err);
    tr->out = ddpm_alloc_floats(n, err);
    tr->t = ddpm_alloc_floats((size_t)o->batch, err);
    if (!tr->m || !tr->v || !tr->ema || !tr->x0 || !tr->eps || !tr->xt || !tr->out || !tr->t)
        goto fail;
    memset(tr->m, 0, P * sizeof(float));
    memset(tr->v, 0, P * sizeof(float));
    memcpy(tr->ema, tr->u->params, P * sizeof(float));
    return 0;
fail:
    trainer_free(tr);
    return -1;
}

void trainer_free(trainer *tr) {
    unet_free(tr->u);
    schedule_free(&tr->sched);
    loader_free(&tr->ld);
    free(tr->m), free(tr->v), free(tr->ema);
    free(tr->x0), free(tr->eps), free(tr->xt), free(tr->out), free(tr->t);
    memset(tr, 0, sizeof *tr);
}

/* Sum of squares of g in double, in fixed chunks summed in order (the same bits
 * for any thread count). */
static double sum_squares(const float *g, size_t n) {
    enum { CHUNK = 1 << 16 };
    size_t nc = (n + CHUNK - 1) / CHUNK;
    double *part = malloc(nc * sizeof *part), total = 0;
    DDPM_ASSERT(part != NULL);
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nc; c++) {
        size_t e = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        double s = 0;
        for (size_t i = c * CHUNK; i < e; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    for (size_t c = 0; c < nc; c++) total += part[c];
    free(part);
    return total;
}

/* d L_simple / d out for a group of the batch's images: L_simple is the mean
 * of (out - eps)^2 over the whole batch. */
static void simple_loss_grad(void *ctx, int image0, int n, const float *out, float *dout) {
    const trainer *tr = ctx;
    const unet_config *c = &tr->u->cfg;
    size_t per = (size_t)c->sample_size * c->sample_size * c->out_channels, m = per * (size_t)n;
    const float *eps = tr->eps + (size_t)image0 * per;
    float g = 2.0f / (float)(per * (size_t)tr->o.batch);
    for (size_t i = 0; i < m; i++) dout[i] = g * (out[i] - eps[i]);
}

int trainer_step(trainer *tr, ddpm_err *err) {
    const train_opts *o = &tr->o;
    unet *u = tr->u;
    int B = o->batch, T = tr->sched.T;
    size_t per = (size_t)u->cfg.sample_size * u->cfg.sample_size * u->cfg.in_channels, n = per * B;
    uint64_t step = (uint64_t)tr->step;

    /* Algorithm 1: x0 ~ data, t ~ U{1..T}, eps ~ N(0, I), x_t = q_sample(x0, t, eps). */
    loader_batch(&tr->ld, step, B, tr->x0);
    rng_normal(tr->eps, n, o->seed, RNG_NOISE, step);
    for (int i = 0; i < B; i++) {
        int ti = (int)rng_below((uint32_t)T, o->seed, RNG_TIMESTEP, step, (uint64_t)i);
        tr->t[i] = (float)ti;
        q_sample(&tr->sched, ti, tr->x0 + i * per, tr->eps + i * per, tr->xt + i * per, per);
    }
    unet_dropout dp = {o->seed, step};
    memset(u->grads, 0, u->nparams * sizeof(float));
    unet_train_pass(u, tr->out, NULL, tr->xt, tr->t, &dp, simple_loss_grad, tr);
    double loss = loss_simple(tr->out, tr->eps, n);
    if (!isfinite(loss))
        return ddpm_fail(err, "the loss is not finite at step %lld (%g): stopping; the last checkpoint is kept",
                         (long long)step + 1, loss);
    double gnorm = sqrt(sum_squares(u->grads, u->nparams));
    if (!isfinite(gnorm))
        return ddpm_fail(err, "the gradient is not finite at step %lld: stopping; the last checkpoint is kept",
                         (long long)step + 1);

    /* Clipping as tf.clip_by_global_norm (the official code), Adam as torch.optim.Adam. */
    float scale = o->clip > 0 && gnorm > o->clip ? (float)(o->clip / gnorm) : 1.0f;
    double k = (double)step + 1;
    double lr = o->lr * (o->warmup > 0 && k < o->warmup ? k / o->warmup : 1.0);
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->adam_eps;
    float c1 = (float)(lr / (1.0 - pow(o->beta1, k))), c2 = (float)(1.0 / sqrt(1.0 - pow(o->beta2, k)));
    double d = o->ema;
    if (o->ema_warmup && (1.0 + k) / (10.0 + k) < d) d = (1.0 + k) / (10.0 + k);
    float fd = (float)d;
    float *p = u->params, *g = u->grads, *m = tr->m, *v = tr->v, *e = tr->ema;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < u->nparams; i++) {
        float gi = g[i] * scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= c1 * m[i] / (sqrtf(v[i]) * c2 + eps);
        e[i] = fd * e[i] + (1.0f - fd) * p[i];
    }
    tr->loss = loss;
    tr->grad_norm = gnorm;
    tr->lr = lr;
    tr->step++;
    return 0;
}

/* ---- options as JSON ------------------------------------------------------- */

char *train_opts_to_json(const train_opts *o) {
    cJSON *j = cJSON_CreateObject();
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(j, "seed", seed); /* a string: JSON numbers lose 64-bit integers */
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "warmup", o->warmup);
    cJSON_AddNumberToObject(j, "beta1", o->beta1);
    cJSON_AddNumberToObject(j, "beta2", o->beta2);
    cJSON_AddNumberToObject(j, "adam_eps", o->adam_eps);
    cJSON_AddNumberToObject(j, "clip", o->clip);
    cJSON_AddNumberToObject(j, "ema", o->ema);
    cJSON_AddBoolToObject(j, "ema_warmup", o->ema_warmup);
    cJSON_AddBoolToObject(j, "flip", o->flip);
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddNumberToObject(j, "limit", o->limit);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

int train_opts_from_json(train_opts *o, const char *json, ddpm_err *err) {
    cJSON *j = cJSON_ParseWithOpts(json, NULL, 1);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return ddpm_fail(err, "training options are not a JSON object");
    }
    *o = train_opts_default();
    const char *num[] = {"batch", "lr", "warmup", "beta1", "beta2", "adam_eps", "clip", "ema"};
    double val[8];
    for (int i = 0; i < 8; i++) {
        cJSON *x = cJSON_GetObjectItemCaseSensitive(j, num[i]);
        if (!cJSON_IsNumber(x)) {
            cJSON_Delete(j);
            return ddpm_fail(err, "training options: '%s' missing or not a number", num[i]);
        }
        val[i] = x->valuedouble;
    }
    o->batch = (int)val[0], o->lr = val[1], o->warmup = (int)val[2], o->beta1 = val[3], o->beta2 = val[4];
    o->adam_eps = val[5], o->clip = val[6], o->ema = val[7];
    cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    cJSON *ew = cJSON_GetObjectItemCaseSensitive(j, "ema_warmup"), *fl = cJSON_GetObjectItemCaseSensitive(j, "flip");
    if (!cJSON_IsString(seed) || !cJSON_IsBool(ew) || !cJSON_IsBool(fl)) {
        cJSON_Delete(j);
        return ddpm_fail(err, "training options: 'seed', 'ema_warmup' or 'flip' missing or of the wrong type");
    }
    o->seed = strtoull(seed->valuestring, NULL, 10);
    o->ema_warmup = cJSON_IsTrue(ew);
    o->flip = cJSON_IsTrue(fl);
    cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *limit = cJSON_GetObjectItemCaseSensitive(j, "limit");
    if (cJSON_IsString(data)) snprintf(o->data, sizeof o->data, "%s", data->valuestring);
    if (cJSON_IsNumber(limit)) o->limit = limit->valueint;
    cJSON_Delete(j);
    return 0;
}

/* ---- checkpoints ------------------------------------------------------------ */

int trainer_save(const trainer *tr, const char *run_dir, ddpm_err *err) {
    char path[4096], stepbuf[32];
    const unet *u = tr->u;
    char *sj = schedule_to_json(&tr->sched), *cj = unet_config_to_json(&u->cfg), *oj = train_opts_to_json(&tr->o);
    int rc = -1;
    if (!sj || !cj || !oj) {
        ddpm_fail(err, "out of memory");
        goto done;
    }
    if (make_dirs(run_dir, err)) goto done;
    snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)tr->step);
    const char *meta[] = {"step", stepbuf, "options", oj, "config", cj, "scheduler", sj, NULL};
    int64_t P = (int64_t)u->nparams;
    st_entry e[4] = {{"params", ST_F32, 1, {P}, u->params}, {"ema", ST_F32, 1, {P}, tr->ema},
                     {"adam.m", ST_F32, 1, {P}, tr->m}, {"adam.v", ST_F32, 1, {P}, tr->v}};
    /* The state first: it alone is what --resume reads, so a save that fails
     * later (a full disk) leaves model folders at most one save behind it. */
    snprintf(path, sizeof path, "%s/%s", run_dir, TRAIN_STATE_FILE);
    if (st_write(path, e, 4, meta, err)) goto done;
    snprintf(path, sizeof path, "%s/model", run_dir);
    if (model_save(u, tr->ema, path, sj, err)) goto done;
    snprintf(path, sizeof path, "%s/model-raw", run_dir);
    rc = model_save(u, u->params, path, sj, err);
done:
    free(sj), free(cj), free(oj);
    return rc;
}

static char *dup_meta(const st_file *f, const char *key, ddpm_err *err) {
    const char *v = st_meta(f, key);
    if (!v) {
        ddpm_fail(err, "%s: metadata '%s' missing (not a ddpm training state?)", f->path, key);
        return NULL;
    }
    char *s = strdup(v);
    if (!s) ddpm_fail(err, "out of memory");
    return s;
}

int trainer_read_run(const char *run_dir, train_opts *o, int64_t *step, char **cfg_json, char **sched_json,
                     ddpm_err *err) {
    char path[4096];
    st_file f;
    *cfg_json = *sched_json = NULL;
    snprintf(path, sizeof path, "%s/%s", run_dir, TRAIN_STATE_FILE);
    if (st_open(&f, path, err)) return -1;
    const char *s = st_meta(&f, "step");
    char *end;
    long long k = s ? strtoll(s, &end, 10) : -1;
    int rc = -1;
    if (!s || *end || k < 0) {
        ddpm_fail(err, "%s: metadata 'step' missing or malformed", path);
        goto done;
    }
    *step = k;
    const char *oj = st_meta(&f, "options");
    if (!oj) {
        ddpm_fail(err, "%s: metadata 'options' missing", path);
        goto done;
    }
    if (train_opts_from_json(o, oj, err)) {
        ddpm_wrap(err, "%s", path);
        goto done;
    }
    if (!(*cfg_json = dup_meta(&f, "config", err)) || !(*sched_json = dup_meta(&f, "scheduler", err))) goto done;
    rc = 0;
done:
    if (rc) {
        free(*cfg_json), free(*sched_json);
        *cfg_json = *sched_json = NULL;
    }
    st_close(&f);
    return rc;
}

int trainer_load(trainer *tr, const char *run_dir, ddpm_err *err) {
    char path[4096];
    st_file f;
    snprintf(path, sizeof path, "%s/%s", run_dir, TRAIN_STATE_FILE);
    if (st_open(&f, path, err)) return -1;
    int64_t P = (int64_t)tr->u->nparams;
    const char *names[4] = {"params", "ema", "adam.m", "adam.v"};
    float *dst[4] = {tr->u->params, tr->ema, tr->m, tr->v};
    int rc = -1;
    for (int i = 0; i < 4; i++) {
        float *x = st_load_f32(&f, names[i], 1, &P, NULL, err);
        if (!x) goto done;
        memcpy(dst[i], x, (size_t)P * sizeof(float));
        free(x);
    }
    tr->step = strtoll(st_meta(&f, "step") ? st_meta(&f, "step") : "0", NULL, 10);
    rc = 0;
done:
    st_close(&f);
    return rc;
}
