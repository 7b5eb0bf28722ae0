/* train.c -- the training section of the public API (include/ddpm.h): a run
 * folder driven by a trainer (train/trainer.h). New runs and resumed ones
 * (with the fallback on the previous state when the latest is corrupt), and
 * the per-step cadence: RUN/metrics.jsonl lines, checkpoints, sample grids
 * and the FID of EMA samples. Under MPI every rank trains, every rank reads
 * the checkpoint, rank 0 alone writes the folder. */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/threads.h"
#include "data/dataset.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "dist/dist.h"
#include "eval/quality.h"
#include "io/fileio.h"
#include "io/png.h"
#include "model/config.h"
#include "model/denoiser.h"
#include "train/trainer.h"

/* The FID during training (eval_every): the feature network and the
 * reference statistics (the first 10,000 training images) made once; the
 * sampling network and the sample buffer sized for n images. */
typedef struct fid_eval {
    featnet *net;
    quality_ref ref;
    int have_ref;
    unet *u;
    float *x;
    int n;
} fid_eval;

struct ddpm_trainer {
    api_obj head;
    char *run;                 /* the run folder */
    dataset d;                 /* the training images (the trainer borrows them) */
    trainer tr;
    ddpm_train_options opts;   /* the run's options; strings below */
    char *s_data, *s_preset, *s_config, *s_inception;
    FILE *mf;                  /* RUN/metrics.jsonl (rank 0) */
    unet *su;                  /* the sample grids' network, for su_n images */
    int su_n;
    fid_eval fe;
    double t0, tlast;          /* create/resume, the last metrics line */
    double loss_sum, reduce_sum; /* since the last metrics line */
    long long start, last_log, last_save;
};

/* ------------------------------------------------------------------ options */

/* The trainer's cadence (train_opts records it) as the public struct, and back. */
static ddpm_train_cadence cadence_of(const train_opts *o)
{
    return (ddpm_train_cadence){o->save_every, o->log_every, o->sample_every, o->sample_n, o->eval_every, o->eval_n};
}

static void cadence_to(train_opts *o, const ddpm_train_cadence *c)
{
    o->save_every = c->save_every, o->log_every = c->log_every, o->sample_every = c->sample_every;
    o->sample_n = c->sample_n, o->eval_every = c->eval_every, o->eval_n = c->eval_n;
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
}

int ddpm_train_options_recipe(ddpm_train_options *o, const char *recipe)
{
    API_REQUIRE(NULL, o);
    API_REQUIRE(NULL, recipe);
    if (!strcmp(recipe, "paper")) o->batch = 128, o->lr = 2e-4, o->warmup = 5000, o->ema = 0.9999;
    else if (!strcmp(recipe, "short")) o->batch = 32, o->lr = 1e-3, o->warmup = 200, o->ema = 0.999;
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
    if (o->variance && strcmp(o->variance, "fixed_small") && strcmp(o->variance, "fixed_large"))
        return api_fail(NULL, DDPM_ERR_ARG, "variance '%s': fixed_small or fixed_large", o->variance);
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
    const train_opts *r = &t->tr.o;
    const schedule *s = &t->tr.sched;
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
    k->ema = r->ema, k->ema_warmup = r->ema_warmup, k->dropout = t->tr.u->cfg.dropout, k->flip = r->flip;
    k->classes = r->classes, k->p_uncond = r->p_uncond, k->seed = r->seed, k->T = s->T;
    k->schedule = strcmp(s->kind, "linear") ? "cosine" : "linear";
    k->beta_start = s->beta_start, k->beta_end = s->beta_end;
    k->variance = s->variance_type == SCHED_FIXED_LARGE ? "fixed_large" : "fixed_small";
    k->shards = r->shards;
    k->cadence = cadence_of(r);
    return DDPM_OK;
}

/* ---------------------------------------------------- grids and the FID */

/* How training looks at its EMA weights (grids and FID): `ddpm sample`'s
 * default sampler (ancestral, min(20, T) steps, x0 as predicted), seed 0 --
 * the same noise every time. */
static sampler_opts ema_sampler(const trainer *tr)
{
    return (sampler_opts){.kind = SAMPLER_DDPM, .steps = tr->sched.T < 20 ? tr->sched.T : 20, .x0 = X0_NONE, .seed = 0};
}

/* RUN/samples/step_NNNNNNNN.png: n images from the EMA weights. A
 * conditional model draws the classes in turn, plainly conditioned (guidance
 * 1): one column per class. */
static int sample_grid(ddpm_trainer *t, int n, ddpm_err *err)
{
    const trainer *tr = &t->tr;
    const unet_config *c = &tr->u->cfg;
    if (t->su && t->su_n != n) unet_free(t->su), t->su = NULL;
    if (!t->su && unet_create(&t->su, c, n, 0, err)) return -1;
    t->su_n = n;
    memcpy(t->su->params, tr->ema, tr->u->nparams * sizeof(float));
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    float *x = malloc((size_t)n * D * sizeof *x);
    int32_t *y = malloc((size_t)n * sizeof *y);
    char path[4300];
    denoiser d;
    unet_guided g = {0};
    int rc = -1;
    if (!x || !y) {
        ddpm_oom(err, "out of memory");
        goto done;
    }
    const int K = tr->cls.n;
    for (int i = 0; i < n; i++) y[i] = K ? i % K : 0;
    sampler_opts so = ema_sampler(tr);
    snprintf(path, sizeof path, "%s/samples", t->run);
    if (make_dirs(path, err) ||
        (K ? unet_guided_denoiser(&d, &g, t->su, n, K, 1.0f, err) : unet_denoiser(&d, t->su, err)))
        goto done;
    g.y = y;
    if (sampler_run(&d, &tr->sched, &so, 0, n, x, NULL, NULL, NULL, err)) goto done;
    snprintf(path, sizeof path, "%s/samples/step_%08lld.png", t->run, (long long)tr->step);
    int cols = 1;
    while (cols * cols < n) cols++;
    rc = png_write_grid(path, x, n, c->sample_size, c->sample_size, c->in_channels, K && K <= n ? K : cols, 2, err);
done:
    unet_guided_free(&g);
    free(x), free(y);
    return rc ? -1 : 0;
}

static void fid_free(fid_eval *e)
{
    unet_free(e->u);
    featnet_free(e->net);
    if (e->have_ref) quality_ref_free(&e->ref);
    free(e->x);
    memset(e, 0, sizeof *e);
}

/* The feature network and the reference statistics, logged with the time
 * they took. Fails with a message prefixed "eval_every: ". */
static int fid_open(ddpm_trainer *t, ddpm_err *err)
{
    const unet_config *c = &t->tr.u->cfg;
    const dataset *d = &t->d;
    fid_eval *e = &t->fe;
    int kind = c->sample_size == 28 && c->in_channels == 1 ? FEATNET_FMNIST : FEATNET_INCEPTION;
    int nref = d->n < 10000 ? d->n : 10000;
    image_set real = {nref, d->h, d->w, d->c, d->pixels, NULL};
    double t0 = ddpm_now();
    if (featnet_open(&e->net, kind, t->s_inception, 16, err) ||
        quality_ref_from_images(&e->ref, e->net, &real, 1, NULL, NULL, NULL, err)) {
        fid_free(e); /* opened again at the next try */
        return ddpm_wrap(err, "eval_every");
    }
    e->have_ref = 1;
    api_log(DDPM_LOG_INFO, "eval_every: %s of %lld EMA samples against %d training images (%.0f s to set up)",
            featnet_fid_label(e->net), t->tr.o.eval_n, nref, ddpm_now() - t0);
    return 0;
}


/* One FID of eval_n EMA samples against the reference into m, and its
 * metrics.jsonl line {"step", "fid", "features", "precision", "recall",
 * "broken", "eval_n", "eval_s"}. */
static int fid_run(ddpm_trainer *t, ddpm_train_metrics *m, ddpm_err *err)
{
    fid_eval *e = &t->fe;
    const trainer *tr = &t->tr;
    const unet_config *c = &tr->u->cfg;
    const int n = (int)tr->o.eval_n;
    double t0 = ddpm_now();
    if (!e->net && fid_open(t, err)) return -1;
    if (e->n != n) {
        unet_free(e->u), free(e->x);
        e->u = NULL, e->x = NULL, e->n = 0;
        size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
        if (unet_create(&e->u, c, n < 64 ? n : 64, 0, err) || !(e->x = ddpm_alloc_floats((size_t)n * D, err)))
            return ddpm_wrap(err, "FID evaluation");
        e->n = n;
    }
    memcpy(e->u->params, tr->ema, tr->u->nparams * sizeof(float));
    sampler_opts so = ema_sampler(tr);
    sample_range range = {0};
    so.range = &range;
    image_set s = {n, c->sample_size, c->sample_size, c->in_channels, NULL, e->x};
    quality q;
    denoiser d;
    if (unet_denoiser(&d, e->u, err) || quality_sample(&d, &tr->sched, &so, n, e->x, NULL, NULL, err) ||
        quality_measure(&q, e->net, &s, &e->ref, NULL, NULL, err))
        return ddpm_wrap(err, "FID evaluation");
    m->evaluated = 1;
    m->fid = q.fid, m->precision = q.precision, m->recall = q.recall;
    m->broken = (double)range.broken / (double)range.images;
    m->eval_s = ddpm_now() - t0;
    m->eval_n = n;
    m->fid_label = featnet_fid_label(e->net);
    if (t->mf) {
        fprintf(t->mf, "{\"step\":%lld,\"fid\":%.6g,\"features\":\"%s\",\"precision\":%.4g,\"recall\":%.4g,"
                       "\"broken\":%.4g,\"eval_n\":%d,\"eval_s\":%.3f}\n", (long long)tr->step, q.fid,
                featnet_kind_name(featnet_kind_of(e->net)), q.precision, q.recall, m->broken, n, m->eval_s);
        fflush(t->mf);
    }
    return 0;
}

/* ------------------------------------------------------------ run folder */

/* Keeps the lines of RUN/metrics.jsonl up to `step` (a resumed run rewrites the rest). */
static int trim_metrics(const char *path, long long step, ddpm_err *err)
{
    unsigned char *buf;
    size_t len;
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (file_read_all(path, &buf, &len, err)) return -1;
    size_t keep = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        long long s = -1;
        if (sscanf((const char *)buf + i, "{\"step\":%lld", &s) == 1 && s > step) break;
        keep = e < len ? e + 1 : e;
        i = keep;
    }
    const void *chunks[1] = {buf};
    int rc = file_write_atomic(path, chunks, &keep, 1, err);
    free(buf);
    return rc;
}

int ddpm_run_exists(const char *run_dir)
{
    int have = 0;
    if (dist_rank() == 0 && run_dir) {
        char a[4200], b[4200];
        struct stat st;
        snprintf(a, sizeof a, "%s/%s", run_dir, TRAIN_STATE_FILE);
        snprintf(b, sizeof b, "%s/%s", run_dir, TRAIN_STATE_PREV_FILE);
        have = stat(a, &st) == 0 || stat(b, &st) == 0;
    }
    dist_bcast(&have, sizeof have); /* rank 0's view: it alone writes the folder */
    return have;
}

void ddpm_trainer_free(ddpm_trainer *t)
{
    if (!t) return;
    if (t->mf) fclose(t->mf);
    unet_free(t->su);
    fid_free(&t->fe);
    trainer_free(&t->tr);
    dataset_free(&t->d);
    free(t->run), free(t->s_data), free(t->s_preset), free(t->s_config), free(t->s_inception);
    free(t);
}

/* The part of create and resume where the ranks may fail apart: the FID's
 * feature network (rank 0), the checkpoint read (resume: every rank) or the
 * step-0 save (create: rank 0), RUN/metrics.jsonl opened (rank 0). Returns a
 * status agreed by every rank. */
static int open_run(ddpm_trainer *t, const char *state, int resume)
{
    const int rank0 = dist_rank() == 0;
    char metrics[4200];
    ddpm_err e = {0};
    int st = DDPM_OK;
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", t->run);
    /* Before anything is written: a missing Inception file leaves no run folder behind. */
    if (rank0 && t->tr.o.eval_every > 0 && fid_open(t, &e))
        st = api_status(NULL, strstr(e.msg, "oneDNN") ? DDPM_ERR_RUNTIME : DDPM_ERR_INPUT, &e);
    else if (resume && trainer_load(&t->tr, state, &e))
        st = api_status(NULL, DDPM_ERR_RUNTIME, &e);
    else if (resume && rank0 && trim_metrics(metrics, t->tr.step, &e))
        st = api_status(NULL, DDPM_ERR_IO, &e);
    else if (!resume && rank0 && trainer_save(&t->tr, t->run, &e)) /* step 0: usable (and writable) from the start */
        st = api_status(NULL, DDPM_ERR_IO, &e);
    else if (rank0) {
        if (!resume) remove(metrics);
        if (!(t->mf = fopen(metrics, "a")))
            st = api_fail(NULL, DDPM_ERR_IO, "cannot open %s: %s", metrics, strerror(errno));
    }
    if (dist_or(st != DDPM_OK) && st == DDPM_OK) /* one rank failed: all stop */
        st = api_fail(NULL, DDPM_ERR_RUNTIME, "stopped: another process failed");
    return st;
}

/* Builds t's trainer on cfg, sched and t->d with options o, then open_run;
 * why: resumed from the previous state (restored as the latest once every
 * rank has read it). */
static int start_run(ddpm_trainer *t, const unet_config *cfg, const schedule *sched, const train_opts *o,
                     const char *state, int resume, int why)
{
    ddpm_err e = {0};
    if (trainer_init(&t->tr, cfg, sched, &t->d, o, &e)) return api_status(NULL, DDPM_ERR_ARG, &e);
    int st = open_run(t, state, resume);
    if (st) return st;
    if (resume) { /* every rank has read the state: the previous one may become the latest again */
        int bad = dist_rank() == 0 && why && trainer_restore_prev(t->run, &e);
        if (bad) st = api_status(NULL, DDPM_ERR_IO, &e);
        if (dist_or(bad) && !bad) st = api_fail(NULL, DDPM_ERR_RUNTIME, "stopped: another process failed");
        if (st) return st;
    }
    t->t0 = t->tlast = ddpm_now();
    t->start = t->last_log = t->last_save = t->tr.step;
    return DDPM_OK;
}

static ddpm_trainer *new_trainer(const char *run_dir)
{
    ddpm_trainer *t = calloc(1, sizeof *t);
    if (!t || !(t->run = strdup(run_dir))) {
        free(t);
        api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    api_obj_init(&t->head);
    return t;
}

/* The network of a new run: the config file or the preset, the dropout. */
static int new_config(const ddpm_train_options *o, unet_config *cfg)
{
    ddpm_err e = {0};
    if (o->config) {
        unsigned char *txt = NULL;
        size_t len;
        int bad = file_read_all(o->config, &txt, &len, &e);
        char *s = bad ? NULL : realloc(txt, len + 1);
        if (!bad && !s) bad = ddpm_oom(&e, "out of memory");
        if (!bad) s[len] = 0, txt = NULL, bad = unet_config_from_json(cfg, s, &e);
        free(txt), free(s);
        if (bad) return ddpm_wrap(&e, "config"), api_status(NULL, DDPM_ERR_INPUT, &e);
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
    return r;
}

static int load_data(ddpm_trainer *t, const char *src, int limit)
{
    ddpm_err e = {0};
    if (dataset_load(&t->d, src[0] ? src : NULL, DATASET_TRAIN, limit, &e))
        return ddpm_wrap(&e, "data"), api_status(NULL, DDPM_ERR_INPUT, &e);
    return DDPM_OK;
}

int ddpm_trainer_create(const char *run_dir, const ddpm_train_options *o, ddpm_trainer **out)
{
    API_REQUIRE(NULL, run_dir);
    API_REQUIRE(NULL, o);
    API_REQUIRE(NULL, out);
    *out = NULL;
    int st = check_options(o);
    if (st) return st;
    if (ddpm_run_exists(run_dir))
        return api_fail(NULL, DDPM_ERR_ARG, "%s already holds a run: resume it, or pick another folder", run_dir);
    unet_config cfg;
    schedule sched = {0};
    ddpm_err e = {0};
    if ((st = new_config(o, &cfg))) return st;
    if (o->beta_start > o->beta_end)
        return api_fail(NULL, DDPM_ERR_ARG, "beta_start %g is larger than beta_end %g", o->beta_start, o->beta_end);
    if (schedule_init(&sched, o->schedule ? o->schedule : "linear", o->T, o->beta_start, o->beta_end, &e))
        return api_status(NULL, DDPM_ERR_ARG, &e);
    sched.variance_type = o->variance && !strcmp(o->variance, "fixed_large") ? SCHED_FIXED_LARGE : SCHED_FIXED_SMALL;
    train_opts r = new_train_opts(o);
    ddpm_trainer *t = new_trainer(run_dir);
    if (!t) st = DDPM_ERR_NOMEM;
    else if (!(st = load_data(t, r.data, r.limit)) && r.classes) {
        if (!t->d.labels)
            st = api_fail(NULL, DDPM_ERR_ARG, "classes: %s has no class labels (an IDX label file next to the "
                          "images, CIFAR-10 batches, or a PNG folder with one subfolder per class)", t->d.desc);
        cfg.num_class_embeds = t->d.nclasses + 1; /* the last: the null class */
    }
    if (!st) st = start_run(t, &cfg, &sched, &r, NULL, 0, 0);
    if (!st) st = keep_options(t, o, o->inception);
    schedule_free(&sched);
    if (st) {
        ddpm_trainer_free(t);
        return st;
    }
    *out = t;
    return DDPM_OK;
}

/* The run's options, config and schedule from its state file (the latest
 * whole one: trainer_find_state, whose choice is logged). */
static int read_run(const char *run_dir, char *state, size_t n, int *why, train_opts *o, unet_config *cfg,
                    schedule *sched)
{
    ddpm_err e = {0}, w = {0};
    if (trainer_find_state(run_dir, state, n, &w, &e)) return api_status(NULL, DDPM_ERR_INPUT, &e);
    *why = w.msg[0] != 0;
    if (*why) {
        api_log(DDPM_LOG_WARN, "%s", w.msg);
        api_log(DDPM_LOG_INFO, "resuming from the previous state, %s", state);
    }
    char *cj = NULL, *sj = NULL;
    int64_t done;
    int bad = trainer_read_run(state, o, &done, &cj, &sj, &e) || unet_config_from_json(cfg, cj, &e) ||
              schedule_from_json(sched, sj, &e);
    free(cj), free(sj);
    return bad ? api_status(NULL, DDPM_ERR_INPUT, &e) : DDPM_OK;
}

int ddpm_trainer_resume(const char *run_dir, const ddpm_train_cadence *cadence, const char *inception,
                        ddpm_trainer **out)
{
    API_REQUIRE(NULL, run_dir);
    API_REQUIRE(NULL, out);
    *out = NULL;
    int st = cadence ? check_cadence(NULL, cadence, 1) : DDPM_OK;
    if (st) return st;
    if (!ddpm_run_exists(run_dir))
        return api_fail(NULL, DDPM_ERR_ARG, "no run to resume: %s/%s does not exist", run_dir, TRAIN_STATE_FILE);
    char state[4200];
    int why = 0;
    train_opts r;
    unet_config cfg;
    schedule sched = {0};
    if ((st = read_run(run_dir, state, sizeof state, &why, &r, &cfg, &sched))) return st;
    ddpm_train_cadence c = cadence_of(&r);
    merge_cadence(&c, cadence); /* the run's cadence, unless given again (then kept from now on) */
    cadence_to(&r, &c);
    ddpm_trainer *t = new_trainer(run_dir);
    if (!t) st = DDPM_ERR_NOMEM;
    else if (!(st = load_data(t, r.data, r.limit))) {
        t->s_inception = inception ? strdup(inception) : NULL; /* fid_open reads it */
        if (inception && !t->s_inception) st = api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
    }
    if (!st) st = start_run(t, &cfg, &sched, &r, state, 1, why);
    if (!st) free(t->s_inception), t->s_inception = NULL, st = keep_options(t, NULL, inception);
    schedule_free(&sched);
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
    o->cadence = cadence_of(&t->tr.o);
    return DDPM_OK;
}

int ddpm_trainer_set_cadence(ddpm_trainer *t, const ddpm_train_cadence *c)
{
    API_REQUIRE(NULL, t);
    API_REQUIRE(&t->head, c);
    int st = check_cadence(&t->head, c, 1);
    if (st) return st;
    ddpm_train_cadence now = cadence_of(&t->tr.o);
    merge_cadence(&now, c);
    cadence_to(&t->tr.o, &now);
    t->opts.cadence = now;
    return DDPM_OK;
}

/* ------------------------------------------------------------------ steps */

int ddpm_trainer_get_metrics(const ddpm_trainer *t, ddpm_train_metrics *m)
{
    API_REQUIRE(NULL, t);
    API_REQUIRE(NULL, m);
    const trainer *tr = &t->tr;
    double el = ddpm_now() - t->t0;
    *m = (ddpm_train_metrics){0};
    m->step = tr->step;
    m->loss = tr->loss, m->grad_norm = tr->grad_norm, m->lr = tr->lr, m->reduce_s = tr->reduce_s;
    m->img_per_s = el > 0 ? (double)(tr->step - t->start) * tr->o.batch / el : 0;
    m->num_parameters = tr->u->nparams;
    m->batch = tr->o.batch, m->processes = tr->nranks, m->shards = tr->o.shards, m->local_batch = tr->local;
    m->data_desc = t->d.desc;
    m->eval_n = (int)tr->o.eval_n;
    return DDPM_OK;
}

/* The metrics.jsonl line of this step (log_every), into m too. */
static void log_line(ddpm_trainer *t, double now, ddpm_train_metrics *m)
{
    const trainer *tr = &t->tr;
    const double k = (double)(tr->step - t->last_log);
    m->logged = 1;
    m->log_loss = t->loss_sum / k;
    m->log_img_per_s = k * tr->o.batch / (now - t->tlast);
    fprintf(t->mf, "{\"step\":%lld,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,\"img_per_s\":%.4g,"
                   "\"elapsed_s\":%.3f", (long long)tr->step, m->log_loss, tr->lr, tr->grad_norm, m->log_img_per_s,
            now - t->t0);
    if (tr->nranks > 1) /* seconds per step spent in the sum over the processes */
        fprintf(t->mf, ",\"reduce_s\":%.4g", t->reduce_sum / k);
    fputs("}\n", t->mf);
    fflush(t->mf);
    t->loss_sum = 0, t->reduce_sum = 0, t->last_log = tr->step, t->tlast = now;
}

/* Rank 0's writes at the new step: the metrics line, the checkpoint, the
 * grid, the FID (a failed FID is logged and recorded; training goes on). */
static int cadence_work(ddpm_trainer *t, ddpm_train_metrics *m)
{
    const trainer *tr = &t->tr;
    const train_opts *o = &tr->o;
    ddpm_err e = {0};
    if (tr->step % o->log_every == 0 && t->mf) log_line(t, ddpm_now(), m);
    if (tr->step - t->last_save >= o->save_every) {
        if (trainer_save(tr, t->run, &e))
            return ddpm_wrap(&e, "saving the checkpoint failed"), api_status(&t->head, DDPM_ERR_IO, &e);
        t->last_save = tr->step;
        m->saved = 1;
    }
    if (o->sample_every > 0 && tr->step % o->sample_every == 0) {
        if (sample_grid(t, (int)o->sample_n, &e))
            return ddpm_wrap(&e, "sample grid"), api_status(&t->head, DDPM_ERR_IO, &e);
        m->sampled = 1;
    }
    if (o->eval_every > 0 && tr->step % o->eval_every == 0 && fid_run(t, m, &e)) {
        api_log(DDPM_LOG_WARN, "step %lld: %s", (long long)tr->step, e.msg);
        m->evaluated = -1;
        if (t->mf) {
            fprintf(t->mf, "{\"step\":%lld,\"fid\":null}\n", (long long)tr->step);
            fflush(t->mf);
        }
    }
    return DDPM_OK;
}

int ddpm_trainer_step(ddpm_trainer *t, ddpm_train_metrics *m)
{
    API_REQUIRE(NULL, t);
    ddpm_err e = {0};
    if (trainer_step(&t->tr, &e)) return api_status(&t->head, DDPM_ERR_NONFINITE, &e);
    t->loss_sum += t->tr.loss;
    t->reduce_sum += t->tr.reduce_s;
    ddpm_train_metrics mine;
    ddpm_trainer_get_metrics(t, &mine);
    int st = dist_rank() == 0 ? cadence_work(t, &mine) : DDPM_OK;
    if (m) *m = mine;
    return st;
}

int ddpm_trainer_save(ddpm_trainer *t)
{
    API_REQUIRE(NULL, t);
    ddpm_err e = {0};
    if (dist_rank() != 0) return DDPM_OK;
    if (trainer_save(&t->tr, t->run, &e))
        return ddpm_wrap(&e, "saving the checkpoint failed"), api_status(&t->head, DDPM_ERR_IO, &e);
    t->last_save = t->tr.step;
    return DDPM_OK;
}

int ddpm_trainer_sample_grid(ddpm_trainer *t)
{
    API_REQUIRE(NULL, t);
    ddpm_err e = {0};
    if (dist_rank() == 0 && sample_grid(t, (int)t->tr.o.sample_n, &e))
        return ddpm_wrap(&e, "sample grid"), api_status(&t->head, DDPM_ERR_IO, &e);
    return DDPM_OK;
}

int ddpm_trainer_finish(ddpm_trainer *t)
{
    API_REQUIRE(NULL, t);
    if (dist_rank() != 0) return DDPM_OK;
    const long long step = t->tr.step, every = t->tr.o.sample_every;
    int st = step != t->last_save ? ddpm_trainer_save(t) : DDPM_OK;
    if (!st && every > 0 && step % every != 0) st = ddpm_trainer_sample_grid(t);
    return st;
}
