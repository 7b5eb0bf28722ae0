/* train.c -- the training section of the public API (include/ddpm.h): the
 * public options turned into a run's (train/run.h does the run folder, new or
 * resumed, and its cadence), and the run's failures into status codes. */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "diffusion/schedule.h"
#include "exec/executor.h"
#include "io/fileio.h"
#include "model/config.h"
#include "train/run.h"

struct ddpm_trainer {
    api_obj head;
    train_run run;
    ddpm_train_options opts;   /* the run's options; strings below */
    char *s_data, *s_preset, *s_config, *s_inception;
};

/* ------------------------------------------------------------------ options */

/* The trainer's cadence (train_opts records it) as the public struct, and back. */
static ddpm_train_cadence cadence_of(const train_opts *o)
{
    return (ddpm_train_cadence){o->save_every, o->log_every, o->sample_every, o->sample_n, o->eval_every, o->eval_n,
                                o->tensorboard};
}

static void cadence_to(train_opts *o, const ddpm_train_cadence *c)
{
    o->save_every = c->save_every, o->log_every = c->log_every, o->sample_every = c->sample_every;
    o->sample_n = c->sample_n, o->eval_every = c->eval_every, o->eval_n = c->eval_n;
    o->tensorboard = c->tensorboard;
}

/* Checks c's fields against the trainer's ranges (keep_negative: a field < 0
 * means "unchanged"). */
static int check_cadence(api_obj *h, const ddpm_train_cadence *c, int keep_negative)
{
    train_opts o;
    cadence_to(&o, c);
    for (int i = 0; i < TRAIN_CADENCE_FIELDS; i++) {
        long long v = *train_cadence_of(&o, i);
        if (keep_negative && v < 0) continue;
        if (v < train_cadence[i].min || v > train_cadence[i].max)
            return api_fail(h, DDPM_ERR_ARG, "%s %lld is out of range (%.0f..%.0f)", train_cadence[i].name, v,
                            train_cadence[i].min, train_cadence[i].max);
    }
    return DDPM_OK;
}

/* c's fields that are >= 0 replace those of run. */
static void merge_cadence(ddpm_train_cadence *run, const ddpm_train_cadence *c)
{
    if (!c) return;
    train_opts a, b;
    cadence_to(&a, run);
    cadence_to(&b, c);
    for (int i = 0; i < TRAIN_CADENCE_FIELDS; i++)
        if (*train_cadence_of(&b, i) >= 0) *train_cadence_of(&a, i) = *train_cadence_of(&b, i);
    *run = cadence_of(&a);
}

void ddpm_train_options_init(ddpm_train_options *o)
{
    if (!o) return;
    train_opts d = train_opts_default();
    *o = (ddpm_train_options){0};
    o->preset = "fmnist-small";
    o->batch = d.batch, o->lr = d.lr, o->warmup = d.warmup, o->clip = d.clip, o->ema = d.ema;
    o->ema_warmup = d.ema_warmup, o->dropout = -1, o->p_uncond = d.p_uncond, o->seed = d.seed;
    o->T = 1000, o->schedule = "linear", o->beta_start = 1e-4, o->beta_end = 0.02, o->variance = "fixed_small";
    o->cadence = cadence_of(&d);
    o->prediction = "epsilon", o->lr_schedule = "constant", o->loss_weight = "none", o->snr_gamma = d.snr_gamma;
    o->vlb_weight = d.vlb_weight;
    o->precision = "fp32";
}

int ddpm_train_options_recipe(ddpm_train_options *o, const char *recipe)
{
    API_REQUIRE(NULL, o);
    API_REQUIRE(NULL, recipe);
    if (!strcmp(recipe, "paper")) o->batch = 128, o->lr = 2e-4, o->warmup = 5000, o->ema = 0.9999;
    else if (!strcmp(recipe, "short"))
        o->batch = 32, o->lr = 2e-3, o->warmup = 200, o->ema = 0.999, o->dropout = 0, o->lr_schedule = "cosine",
        o->loss_weight = "min-snr";
    else return api_fail(NULL, DDPM_ERR_ARG, "unknown recipe '%s' (paper or short)", recipe);
    return DDPM_OK;
}

/* The option checks the trainer does not make itself. */
static int check_options(const ddpm_train_options *o)
{
    const char *bad = NULL;
    if (o->batch < 1 || o->batch > 65536) bad = "batch";
    else if (!(o->lr > 0 && o->lr <= 10)) bad = "lr";
    else if (o->warmup < 0) bad = "warmup";
    else if (!(o->clip >= 0)) bad = "clip";
    else if (!(o->ema >= 0 && o->ema <= 1)) bad = "ema";
    else if (!(o->dropout <= 0.99)) bad = "dropout";
    else if (!(o->p_uncond >= 0 && o->p_uncond <= 1)) bad = "p_uncond";
    else if (o->limit < 0) bad = "limit";
    else if (o->shards < 0 || o->shards > 65536) bad = "shards";
    else if (o->T < 2 || o->T > SCHED_MAX_T) bad = "T";
    if (bad) return api_fail(NULL, DDPM_ERR_ARG, "the option %s is out of range", bad);
    if (o->schedule && strcmp(o->schedule, "linear") && strcmp(o->schedule, "cosine"))
        return api_fail(NULL, DDPM_ERR_ARG, "schedule '%s': linear or cosine", o->schedule);
    if (o->variance && strcmp(o->variance, "fixed_small") && strcmp(o->variance, "fixed_large") &&
        strcmp(o->variance, "learned_range"))
        return api_fail(NULL, DDPM_ERR_ARG, "variance '%s': fixed_small, fixed_large or learned_range", o->variance);
    if (!(o->vlb_weight >= 0 && o->vlb_weight <= 1e3)) return api_fail(NULL, DDPM_ERR_ARG, "the option vlb_weight is out of range");
    if (o->prediction && schedule_prediction_parse(o->prediction) < 0)
        return api_fail(NULL, DDPM_ERR_ARG, "prediction '%s': epsilon, sample or v_prediction", o->prediction);
    if (o->lr_schedule && train_lr_schedule_parse(o->lr_schedule) < 0)
        return api_fail(NULL, DDPM_ERR_ARG, "lr_schedule '%s': constant, linear or cosine", o->lr_schedule);
    if (o->loss_weight && train_loss_weight_parse(o->loss_weight) < 0)
        return api_fail(NULL, DDPM_ERR_ARG, "loss_weight '%s': none or min-snr", o->loss_weight);
    if (!(o->snr_gamma > 0 && o->snr_gamma <= 1e6)) return api_fail(NULL, DDPM_ERR_ARG, "the option snr_gamma is out of range");
    if (o->precision && api_precision(NULL, o->precision) < 0) return DDPM_ERR_ARG;
    if (o->data && strlen(o->data) >= sizeof(((train_opts *)0)->data))
        return api_fail(NULL, DDPM_ERR_ARG, "data: the path is too long");
    return check_cadence(NULL, &o->cadence, 0);
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

/* t->opts: the public view of the run's options (o: as given to create, NULL
 * for a resumed run). */
static int keep_options(ddpm_trainer *t, const ddpm_train_options *o, const char *inception)
{
    const train_opts *r = &t->run.tr.o;
    const schedule *s = &t->run.tr.sched;
    int oom = 0;
    ddpm_train_options *k = &t->opts;
    ddpm_train_options_init(k);
    t->s_data = dup_or_null(r->data[0] ? r->data : NULL, &oom);
    t->s_preset = dup_or_null(o ? (o->config ? NULL : o->preset ? o->preset : "fmnist-small") : NULL, &oom);
    t->s_config = dup_or_null(o ? o->config : NULL, &oom);
    t->s_inception = dup_or_null(inception, &oom);
    if (oom) return api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
    k->data = t->s_data, k->preset = t->s_preset, k->config = t->s_config, k->inception = t->s_inception;
    k->limit = r->limit, k->batch = r->batch, k->lr = r->lr, k->warmup = r->warmup, k->clip = r->clip;
    k->ema = r->ema, k->ema_warmup = r->ema_warmup, k->dropout = t->run.tr.u->cfg.dropout, k->flip = r->flip;
    k->classes = r->classes, k->p_uncond = r->p_uncond, k->seed = r->seed, k->T = s->T;
    k->schedule = strcmp(s->kind, "linear") ? "cosine" : "linear";
    k->beta_start = s->beta_start, k->beta_end = s->beta_end;
    k->variance = schedule_variance_name(s->variance_type);
    k->vlb_weight = r->vlb_weight;
    k->shards = r->shards;
    k->cadence = cadence_of(r);
    k->prediction = schedule_prediction_name(s->prediction);
    k->lr_schedule = train_lr_schedule_name(r->lr_schedule), k->loss_weight = train_loss_weight_name(r->loss_weight);
    k->snr_gamma = r->snr_gamma;
    k->precision = exec_precision_name(r->precision);
    return DDPM_OK;
}

/* ------------------------------------------------------------- the run */

/* The public status of a run_failure (run.h) with err's message. */
static int status_of(api_obj *h, int kind, const err_t *e)
{
    static const int status[] = {[RUN_OK] = DDPM_OK, [RUN_BAD_ARG] = DDPM_ERR_ARG, [RUN_BAD_INPUT] = DDPM_ERR_INPUT,
                                 [RUN_IO] = DDPM_ERR_IO, [RUN_NONFINITE] = DDPM_ERR_NONFINITE,
                                 [RUN_RUNTIME] = DDPM_ERR_RUNTIME};
    return kind == RUN_OK ? DDPM_OK : api_status(h, status[kind], e);
}

int ddpm_run_exists(const char *run_dir) { return run_exists(run_dir); }

void ddpm_trainer_free(ddpm_trainer *t)
{
    if (!t) return;
    run_free(&t->run);
    free(t->s_data), free(t->s_preset), free(t->s_config), free(t->s_inception);
    free(t);
}

static ddpm_trainer *new_trainer(void)
{
    ddpm_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    api_obj_init(&t->head);
    return t;
}

/* The network of a new run: the config file or the preset, the dropout. */
static int new_config(const ddpm_train_options *o, unet_config *cfg)
{
    err_t e = {0};
    if (o->config) {
        unsigned char *txt = NULL;
        size_t len;
        int bad = file_read_all(o->config, &txt, &len, &e);
        char *s = bad ? NULL : realloc(txt, len + 1);
        if (!bad && !s) bad = err_oom(&e, "out of memory");
        if (!bad) s[len] = 0, txt = NULL, bad = unet_config_from_json(cfg, s, &e);
        free(txt), free(s);
        if (bad) return err_wrap(&e, "config"), api_status(NULL, DDPM_ERR_INPUT, &e);
    } else if (unet_config_preset(cfg, o->preset ? o->preset : "fmnist-small", &e)) {
        return api_status(NULL, DDPM_ERR_ARG, &e);
    }
    if (o->dropout >= 0) cfg->dropout = (float)o->dropout;
    return DDPM_OK;
}

static train_opts new_train_opts(const ddpm_train_options *o)
{
    train_opts r = train_opts_default();
    r.seed = o->seed, r.batch = o->batch, r.lr = o->lr, r.warmup = o->warmup, r.clip = o->clip;
    r.ema = o->ema, r.ema_warmup = o->ema_warmup != 0, r.flip = o->flip != 0, r.shards = o->shards;
    r.classes = o->classes != 0, r.p_uncond = o->p_uncond;
    cadence_to(&r, &o->cadence);
    snprintf(r.data, sizeof r.data, "%s", o->data ? o->data : "");
    r.limit = o->limit;
    r.lr_schedule = o->lr_schedule ? train_lr_schedule_parse(o->lr_schedule) : TRAIN_LR_CONSTANT;
    r.loss_weight = o->loss_weight ? train_loss_weight_parse(o->loss_weight) : TRAIN_WEIGHT_NONE;
    r.snr_gamma = o->snr_gamma;
    r.vlb_weight = o->vlb_weight;
    r.precision = o->precision ? exec_precision_parse(o->precision) : EXEC_FP32;
    return r;
}

int ddpm_trainer_create(const char *run_dir, const ddpm_train_options *o, ddpm_trainer **out)
{
    API_REQUIRE(NULL, run_dir);
    API_REQUIRE(NULL, o);
    API_REQUIRE(NULL, out);
    *out = NULL;
    int st = check_options(o);
    if (st) return st;
    if (run_exists(run_dir))
        return api_fail(NULL, DDPM_ERR_ARG, "%s already holds a run: resume it, or pick another folder", run_dir);
    unet_config cfg;
    schedule sched = {0};
    err_t e = {0};
    if ((st = new_config(o, &cfg))) return st;
    if (o->beta_start > o->beta_end)
        return api_fail(NULL, DDPM_ERR_ARG, "beta_start %g is larger than beta_end %g", o->beta_start, o->beta_end);
    if (schedule_init(&sched, o->schedule ? o->schedule : "linear", o->T, o->beta_start, o->beta_end, &e))
        return api_status(NULL, DDPM_ERR_ARG, &e);
    sched.variance_type = !o->variance || !strcmp(o->variance, "fixed_small") ? SCHED_FIXED_SMALL
                          : !strcmp(o->variance, "fixed_large")          ? SCHED_FIXED_LARGE
                                                                          : SCHED_LEARNED_RANGE;
    if (sched.variance_type == SCHED_LEARNED_RANGE) cfg.out_channels = 2 * cfg.in_channels; /* the variance half */
    sched.prediction = o->prediction ? schedule_prediction_parse(o->prediction) : SCHED_PRED_EPSILON;
    train_opts r = new_train_opts(o);
    ddpm_trainer *t = new_trainer();
    if (!t) st = DDPM_ERR_NOMEM;
    else st = status_of(NULL, run_create(&t->run, run_dir, &cfg, &sched, &r, o->inception, &e), &e);
    if (!st) st = keep_options(t, o, o->inception);
    schedule_free(&sched);
    if (st) {
        ddpm_trainer_free(t);
        return st;
    }
    *out = t;
    return DDPM_OK;
}

int ddpm_trainer_resume(const char *run_dir, const ddpm_train_cadence *cadence, const char *inception,
                        ddpm_trainer **out)
{
    API_REQUIRE(NULL, run_dir);
    API_REQUIRE(NULL, out);
    *out = NULL;
    int st = cadence ? check_cadence(NULL, cadence, 1) : DDPM_OK;
    if (st) return st;
    if (!run_exists(run_dir))
        return api_fail(NULL, DDPM_ERR_ARG, "no run to resume: %s/%s does not exist", run_dir, TRAIN_STATE_FILE);
    long long given[TRAIN_CADENCE_FIELDS];
    train_opts c;
    cadence_to(&c, cadence ? cadence : &(ddpm_train_cadence){-1, -1, -1, -1, -1, -1, -1});
    for (int i = 0; i < TRAIN_CADENCE_FIELDS; i++) given[i] = *train_cadence_of(&c, i);
    err_t e = {0};
    ddpm_trainer *t = new_trainer();
    if (!t) st = DDPM_ERR_NOMEM;
    else st = status_of(NULL, run_resume(&t->run, run_dir, given, inception, &e), &e);
    if (!st) st = keep_options(t, NULL, inception);
    if (st) {
        ddpm_trainer_free(t);
        return st;
    }
    *out = t;
    return DDPM_OK;
}

int ddpm_trainer_get_options(const ddpm_trainer *t, ddpm_train_options *o)
{
    API_REQUIRE(NULL, t);
    API_REQUIRE(NULL, o);
    *o = t->opts;
    o->cadence = cadence_of(&t->run.tr.o);
    return DDPM_OK;
}

int ddpm_trainer_set_cadence(ddpm_trainer *t, const ddpm_train_cadence *c)
{
    API_REQUIRE(NULL, t);
    API_REQUIRE(&t->head, c);
    int st = check_cadence(&t->head, c, 1);
    if (st) return st;
    ddpm_train_cadence now = cadence_of(&t->run.tr.o);
    merge_cadence(&now, c);
    cadence_to(&t->run.tr.o, &now);
    t->opts.cadence = now;
    return DDPM_OK;
}

int ddpm_trainer_set_horizon(ddpm_trainer *t, long long total)
{
    API_REQUIRE(NULL, t);
    if (total < 1) return api_fail(&t->head, DDPM_ERR_ARG, "horizon %lld: at least 1 step", total);
    trainer_set_horizon(&t->run.tr, total);
    return DDPM_OK;
}

/* ------------------------------------------------------------------ steps */

int ddpm_trainer_get_metrics(const ddpm_trainer *t, ddpm_train_metrics *m)
{
    API_REQUIRE(NULL, t);
    API_REQUIRE(NULL, m);
    const trainer *tr = &t->run.tr;
    *m = (ddpm_train_metrics){0};
    m->step = tr->step;
    m->loss = tr->loss, m->grad_norm = tr->grad_norm, m->lr = tr->lr, m->reduce_s = tr->reduce_s;
    m->img_per_s = run_img_per_s(&t->run);
    m->num_parameters = tr->u->nparams;
    m->batch = tr->o.batch, m->processes = tr->nranks, m->shards = tr->o.shards, m->local_batch = tr->local;
    m->data_desc = t->run.d.desc;
    m->eval_n = (int)tr->o.eval_n;
    return DDPM_OK;
}

int ddpm_trainer_step(ddpm_trainer *t, ddpm_train_metrics *m)
{
    API_REQUIRE(NULL, t);
    err_t e = {0};
    run_events ev;
    int kind = run_step(&t->run, &ev, &e);
    if (kind == RUN_NONFINITE || !m) return status_of(&t->head, kind, &e); /* no step taken: m untouched */
    ddpm_trainer_get_metrics(t, m);
    m->logged = ev.logged, m->log_loss = ev.log_loss, m->log_img_per_s = ev.log_img_per_s;
    m->evaluated = ev.evaluated, m->fid = ev.fid, m->precision = ev.precision, m->recall = ev.recall;
    m->broken = ev.broken, m->out_of_range = ev.out_of_range, m->eval_s = ev.eval_s, m->fid_label = ev.fid_label;
    m->saved = ev.saved, m->sampled = ev.sampled;
    return status_of(&t->head, kind, &e);
}

int ddpm_trainer_save(ddpm_trainer *t)
{
    API_REQUIRE(NULL, t);
    err_t e = {0};
    return status_of(&t->head, run_save(&t->run, &e), &e);
}

int ddpm_trainer_sample_grid(ddpm_trainer *t)
{
    API_REQUIRE(NULL, t);
    err_t e = {0};
    return status_of(&t->head, run_sample_grid(&t->run, &e), &e);
}

int ddpm_trainer_finish(ddpm_trainer *t)
{
    API_REQUIRE(NULL, t);
    err_t e = {0};
    return status_of(&t->head, run_finish(&t->run, &e), &e);
}
