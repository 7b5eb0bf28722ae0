/* model.c -- the public model handle (include/ddpm.h, "models"): loading a
 * model folder, its description, class names, the noise prediction and the
 * forward process; and the share/gather/agree helpers of the collective calls
 * (sample.c, nll.c). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "diffusion/diffusion.h"
#include "diffusion/sampler.h"
#include "dist/dist.h"
#include "exec/executor.h"
#include "io/modelfolder.h"
#include "io/safetensors.h"
#include "ops/ops.h"

_Static_assert(DDPM_MAX_TIMESTEPS == SCHED_MAX_T, "ddpm.h's DDPM_MAX_TIMESTEPS is schedule.h's SCHED_MAX_T");
_Static_assert(UNET_MAX_LEVELS == 8, "ddpm_model_info holds 8 levels");

/* A run folder holds its model in dir/model; a model folder is used as it is. */
static void resolve_dir(const char *given, char *buf, size_t len)
{
    struct stat st;
    snprintf(buf, len, "%s/model/config.json", given);
    if (stat(buf, &st) == 0)
        snprintf(buf, len, "%s/model", given);
    else
        snprintf(buf, len, "%s", given);
}

/* The schedule of m: scheduler_config.json, or the DDPMScheduler defaults. */
static int load_schedule(ddpm_model *m, err_t *err)
{
    char *sj = NULL;
    if (folder_read_scheduler(m->dir, &sj, err)) return -1;
    m->has_scheduler = sj != NULL;
    int rc = sj ? schedule_from_json(&m->sched, sj, err) : schedule_init(&m->sched, "linear", 1000, 1e-4, 0.02, err);
    free(sj);
    if (rc && m->has_scheduler) err_wrap(err, "%s/scheduler_config.json", m->dir);
    return rc;
}

/* names[k] for every class embedding: the config's name, else k as text. */
static int make_names(ddpm_model *m, err_t *err)
{
    int k = m->cfg.num_class_embeds;
    if (k <= 0) return 0;
    if (!(m->names = mem_calloc((size_t)k, sizeof *m->names, err))) return -1;
    for (int i = 0; i < k; i++) {
        if (i < m->cls.n)
            snprintf(m->names[i], sizeof m->names[i], "%s", m->cls.names[i]);
        else
            snprintf(m->names[i], sizeof m->names[i], "%d", i);
    }
    return 0;
}

static int load(ddpm_model *m, const char *dir, err_t *err)
{
    snprintf(m->given, sizeof m->given, "%s", dir);
    resolve_dir(dir, m->dir, sizeof m->dir);
    if (folder_read_config(m->dir, &m->cfg, err) || folder_read_classes(m->dir, &m->cls, err)) return -1;
    m->null_class = unet_null_class(&m->cfg, &m->cls);
    m->nclasses = m->null_class >= 0 ? m->null_class : m->cfg.num_class_embeds;
    if (load_schedule(m, err) || make_names(m, err)) return -1;
    if (unet_create(&m->u, &m->cfg, 1, 0, err) || folder_load_weights(m->u, m->dir, err)) return -1;
    m->flops = unet_forward_flops(m->u);
    m->config_json = unet_config_to_json(&m->cfg, &m->cls);
    m->sched_json = schedule_to_json(&m->sched);
    if (!m->config_json || !m->sched_json) return err_oom(err, "out of memory");
    return 0;
}

int ddpm_model_load(const char *dir, ddpm_model **out)
{
    API_REQUIRE(NULL, out);
    *out = NULL;
    API_REQUIRE(NULL, dir);
    err_t err = {0};
    ddpm_model *m = calloc(1, sizeof *m);
    if (!m) return api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
    api_obj_init(&m->head);
    if (load(m, dir, &err)) {
        ddpm_model_free(m);
        return api_status(NULL, DDPM_ERR_INPUT, &err);
    }
    *out = m;
    return DDPM_OK;
}

void ddpm_model_free(ddpm_model *m)
{
    if (!m) return;
    unet_free(m->u);
    unet_free(m->plain);
    unet_classes_free(&m->cls);
    schedule_free(&m->sched);
    free(m->names), free(m->config_json), free(m->sched_json), free(m->run_step), free(m->run_options);
    m->head.magic = 0;
    free(m);
}

int ddpm_model_get_info(const ddpm_model *m, ddpm_model_info *info)
{
    API_REQUIRE(NULL, m);
    API_REQUIRE(NULL, info);
    const unet_config *c = &m->cfg;
    const schedule *s = &m->sched;
    *info = (ddpm_model_info){
        .sample_size = c->sample_size, .in_channels = c->in_channels, .out_channels = c->out_channels,
        .num_class_embeds = c->num_class_embeds, .num_classes = m->nclasses, .null_class = m->null_class,
        .has_class_names = m->cls.n > 0, .num_train_timesteps = s->T, .has_scheduler = m->has_scheduler,
        .num_parameters = m->u->nparams, .flops_per_image = m->flops, .dir = m->dir, .levels = c->levels,
        .layers_per_block = c->layers_per_block, .norm_groups = c->norm_groups, .norm_eps = c->norm_eps,
        .dropout = c->dropout, .beta_schedule = s->kind, .beta_start = s->beta_start, .beta_end = s->beta_end,
        .variance_type = schedule_variance_name(s->variance_type),
        .prediction_type = schedule_prediction_name(s->prediction),
        .timestep_spacing = s->timestep_spacing};
    for (int i = 0; i < c->levels; i++) {
        info->block_out_channels[i] = c->block_out[i];
        info->down_attention[i] = c->down_attn[i];
    }
    return DDPM_OK;
}

const char *ddpm_model_config_json(const ddpm_model *m) { return m ? m->config_json : NULL; }

const char *ddpm_model_scheduler_json(const ddpm_model *m) { return m ? m->sched_json : NULL; }

const char *ddpm_model_class_name(const ddpm_model *m, int k)
{
    return m && k >= 0 && k < m->cfg.num_class_embeds ? m->names[k] : NULL;
}

int ddpm_model_find_class(const ddpm_model *m, const char *name)
{
    if (!m || !name) return -1;
    for (int j = 0; j < m->cls.n; j++)
        if (!strcmp(m->cls.names[j], name)) return j;
    char *end;
    long v = strtol(name, &end, 10);
    return *name && !*end && v >= 0 && v < m->nclasses ? (int)v : -1;
}

int ddpm_model_run_state(ddpm_model *m, const char **step, const char **options)
{
    API_REQUIRE(NULL, m);
    API_REQUIRE(&m->head, step);
    API_REQUIRE(&m->head, options);
    *step = *options = NULL;
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/training_state.safetensors", m->given);
    if (stat(path, &st) != 0) return DDPM_OK;
    err_t err = {0};
    st_file f = {0};
    if (st_open(&f, path, &err) || st_verify(&f, &err)) {
        st_close(&f);
        return api_status(&m->head, DDPM_ERR_INPUT, &err);
    }
    const char *s = st_meta(&f, "step"), *o = st_meta(&f, "options");
    free(m->run_step), free(m->run_options);
    m->run_step = s ? strdup(s) : NULL;
    m->run_options = o ? strdup(o) : NULL;
    st_close(&f);
    if ((s && !m->run_step) || (o && !m->run_options)) return api_fail(&m->head, DDPM_ERR_NOMEM, "out of memory");
    *step = m->run_step;
    *options = m->run_options;
    return DDPM_OK;
}

size_t api_model_image_size(const ddpm_model *m)
{
    return (size_t)m->cfg.sample_size * m->cfg.sample_size * m->cfg.in_channels;
}

/* *slot built for rows images in precision, with m->u's weights. */
static int net_in(ddpm_model *m, unet **slot, int rows, int precision, err_t *err)
{
    if (*slot && (*slot)->batch == rows && (*slot)->precision == precision) return 0;
    unet *v = NULL;
    if (unet_create_exec(&v, &m->cfg, rows, &(unet_exec){0, precision}, 0, err)) return -1;
    memcpy(v->params, m->u->params, sizeof(float) * m->u->nparams);
    unet_free(*slot);
    *slot = v;
    return 0;
}

int api_model_net(ddpm_model *m, int rows, int precision, unet **u, err_t *err)
{
    if (net_in(m, &m->u, rows, precision, err)) return -1;
    *u = m->u;
    return 0;
}

int api_model_plain_net(ddpm_model *m, int rows, int precision, unet **u, err_t *err)
{
    if (net_in(m, &m->plain, rows, precision, err)) return -1;
    *u = m->plain;
    return 0;
}

int api_model_check_labels(ddpm_model *m, const char *fn, int n, const int32_t *labels)
{
    const int k = m->cfg.num_class_embeds;
    if (k <= 0) return DDPM_OK;
    if (!labels && m->null_class < 0)
        return api_fail(&m->head, DDPM_ERR_ARG, "%s: %s is class-conditional without a null class: give the labels",
                        fn, m->dir);
    for (int i = 0; labels && i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return api_fail(&m->head, DDPM_ERR_ARG, "%s: label %d of image %d is out of range [0, %d]", fn,
                            (int)labels[i], i, k - 1);
    return DDPM_OK;
}

int ddpm_model_eps(ddpm_model *m, int n, const float *x, const int32_t *t, const int32_t *labels, float *eps)
{
    API_REQUIRE(NULL, m);
    API_REQUIRE(&m->head, x);
    API_REQUIRE(&m->head, t);
    API_REQUIRE(&m->head, eps);
    if (n < 1) return api_fail(&m->head, DDPM_ERR_ARG, "ddpm_model_eps: n = %d, need at least 1 image", n);
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= m->sched.T)
            return api_fail(&m->head, DDPM_ERR_ARG, "ddpm_model_eps: timestep %d of image %d is outside the "
                            "model's schedule (0..%d)", (int)t[i], i, m->sched.T - 1);
    int st = api_model_check_labels(m, "ddpm_model_eps", n, labels);
    if (st) return st;
    const unet_config *c = &m->cfg;
    const int hw = c->sample_size * c->sample_size;
    const size_t nin = (size_t)n * hw * c->in_channels, nout = (size_t)n * hw * c->out_channels;
    err_t err = {0};
    if (sampler_check_finite("x", x, 1, nin, 0, &err)) return api_status(&m->head, DDPM_ERR_ARG, &err);
    st = DDPM_ERR_NOMEM;
    float *xh = mem_alloc(nin * sizeof *xh, &err), *eh = mem_alloc(nout * sizeof *eh, &err);
    float *tt = mem_alloc(n * sizeof *tt, &err);
    int32_t *y = mem_alloc(n * sizeof *y, &err);
    unet *u = NULL;
    if (!xh || !eh || !tt || !y) goto done;
    st = DDPM_ERR_NOMEM; /* building the network fails only for memory */
    if (api_model_net(m, n, EXEC_FP32, &u, &err)) goto done;
    for (int i = 0; i < n; i++) tt[i] = (float)t[i], y[i] = labels ? labels[i] : m->null_class;
    ops_nchw_to_nhwc(xh, x, n, c->in_channels, hw);
    if (unet_forward(u, eh, xh, tt, c->num_class_embeds > 0 ? y : NULL, NULL, &err)) goto done; /* st: NOMEM */
    st = DDPM_ERR_NONFINITE;
    if (sampler_check_finite("the network's output", eh, n, nout / (size_t)n, 0, &err)) goto done;
    ops_nhwc_to_nchw(eps, eh, n, c->out_channels, hw);
    st = DDPM_OK;
done:
    free(xh), free(eh), free(tt), free(y);
    return st ? api_status(&m->head, st, &err) : DDPM_OK;
}

int ddpm_model_diffuse(const ddpm_model *m, int n, const float *x0, const int32_t *t, const float *noise,
                       uint64_t seed, int first_index, float *x_t)
{
    API_REQUIRE(NULL, m);
    API_REQUIRE(NULL, x0);
    API_REQUIRE(NULL, t);
    API_REQUIRE(NULL, x_t);
    if (n < 1) return api_fail(NULL, DDPM_ERR_ARG, "ddpm_model_diffuse: n = %d, need at least 1 image", n);
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= m->sched.T)
            return api_fail(NULL, DDPM_ERR_ARG, "ddpm_model_diffuse: timestep %d of image %d is outside the "
                            "model's schedule (0..%d)", (int)t[i], i, m->sched.T - 1);
    const int C = m->cfg.in_channels, HW = m->cfg.sample_size * m->cfg.sample_size;
    const size_t D = api_model_image_size(m);
    err_t err = {0};
    float *a = mem_alloc(sizeof(float) * D, &err), *e = mem_alloc(sizeof(float) * D, &err);
    float *b = mem_alloc(sizeof(float) * D, &err);
    int st = DDPM_ERR_NOMEM;
    if (!a || !e || !b) goto done;
    /* Image by image in NHWC, the layout the noise is drawn in. */
    for (int i = 0; i < n; i++) {
        ops_nchw_to_nhwc(a, x0 + (size_t)i * D, 1, C, HW);
        if (noise)
            ops_nchw_to_nhwc(e, noise + (size_t)i * D, 1, C, HW);
        else
            rng_normal(e, D, seed, RNG_EVAL, (uint64_t)((int64_t)first_index + i));
        diffusion_q_sample(&m->sched, t[i], a, e, b, D);
        ops_nhwc_to_nchw(x_t + (size_t)i * D, b, 1, C, HW);
    }
    st = DDPM_OK;
done:
    free(a), free(e), free(b);
    return st ? api_status(NULL, st, &err) : DDPM_OK;
}

/* ---------------------------------------------------- collective helpers */

int api_model_agree(ddpm_model *m, const char *fn, int status)
{
    int agreed = dist_agree(status);
    if (agreed && !status)
        api_fail(&m->head, agreed, "%s: another process failed (%s)", fn, ddpm_status_name(agreed));
    return agreed;
}
