/* run.c -- a training run's folder: new runs and resumed ones, and the
 * cadence's writes (see run.h). */
#include "run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "core/threads.h"
#include "diffusion/sampler.h"
#include "dist/dist.h"
#include "io/fileio.h"
#include "io/png.h"
#include "model/config.h"
#include "model/denoiser.h"
#include "ops/ops.h"

/* ------------------------------------------------------ TensorBoard events */

/* A new event file in RUN/tb, which starts with a SessionLog START at `first`, the
 * first step this session logs: TensorBoard then drops what earlier files hold at
 * steps >= first (written past the state this run resumed from). */
static int tb_open(train_run *r, long long first, err_t *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tb", r->dir);
    if (!(r->tb = tfevents_open(dir, err)) || tfevents_session_start(r->tb, first, err)) {
        tfevents_close(r->tb, NULL);
        r->tb = NULL;
        return err_wrap(err, "TensorBoard events (--no-tensorboard turns them off)");
    }
    return 0;
}

/* The scalars v[0..n-1] at the trainer's step, when there is an event file. */
static int tb_scalars(train_run *r, const tfevents_scalar *v, int n, err_t *err)
{
    if (r->tb && tfevents_scalars(r->tb, r->tr.step, v, n, err))
        return err_wrap(err, "TensorBoard events");
    return 0;
}

/* The grid file at path as the image "samples" at the trainer's step. */
static int tb_grid(train_run *r, const char *path, err_t *err)
{
    unsigned char *png;
    size_t len;
    if (!r->tb) return 0;
    if (file_read_all(path, &png, &len, err)) return err_wrap(err, "TensorBoard events");
    int rc = tfevents_png(r->tb, r->tr.step, "samples", png, len, err);
    free(png);
    return rc ? err_wrap(err, "TensorBoard events") : 0;
}

/* ---------------------------------------------------- grids and the FID */

/* How training looks at its EMA weights (grids and FID): `ddpm sample`'s
 * default sampler (ancestral, its default steps, x0 as predicted), seed 0 --
 * the same noise every time. */
static sampler_opts ema_sampler(const trainer *tr)
{
    return (sampler_opts){
        .kind = SAMPLER_DDPM, .steps = sampler_default_steps(SAMPLER_DDPM, tr->sched.T), .x0 = X0_NONE, .seed = 0};
}

/* RUN/samples/step_NNNNNNNN.png of the trainer's step. */
static void grid_path(const train_run *r, char *path, size_t n)
{
    snprintf(path, n, "%s/samples/step_%08lld.png", r->dir, (long long)r->tr.step);
}

/* RUN/samples/step_NNNNNNNN.png: n images from the EMA weights. A
 * conditional model draws the classes in turn, plainly conditioned (guidance
 * 1): one column per class. */
static int sample_grid(train_run *r, int n, err_t *err)
{
    const trainer *tr = &r->tr;
    const unet_config *c = &tr->u->cfg;
    if (r->su && r->su_n != n) unet_free(r->su), r->su = NULL;
    if (!r->su && unet_create_exec(&r->su, c, n, &(unet_exec){0, tr->o.precision}, 0, err)) return -1;
    r->su_n = n;
    memcpy(r->su->params, tr->ema, tr->u->nparams * sizeof(float));
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    float *x = malloc((size_t)n * D * sizeof *x);
    int32_t *y = malloc((size_t)n * sizeof *y);
    char path[4300];
    denoiser d;
    unet_guided g = {0};
    int rc = -1;
    if (!x || !y) {
        err_oom(err, "out of memory");
        goto done;
    }
    const int K = tr->cls.n;
    for (int i = 0; i < n; i++) y[i] = K ? i % K : 0;
    sampler_opts so = ema_sampler(tr);
    snprintf(path, sizeof path, "%s/samples", r->dir);
    if (file_make_dirs(path, err) ||
        (K ? unet_guided_denoiser(&d, &g, r->su, n, K, 1.0f, err) : unet_denoiser(&d, r->su, err)))
        goto done;
    g.y = y;
    if (sampler_run(&d, &tr->sched, &so, 0, n, x, NULL, NULL, NULL, err)) goto done;
    grid_path(r, path, sizeof path);
    int cols = 1;
    while (cols * cols < n) cols++;
    rc = png_write_grid(path, x, n, c->sample_size, c->sample_size, c->in_channels, K && K <= n ? K : cols, 2, err);
done:
    unet_guided_free(&g);
    free(x), free(y);
    return rc ? -1 : 0;
}

static void fid_free(run_fid *e)
{
    unet_free(e->u);
    featnet_free(e->net);
    if (e->have_ref) quality_ref_free(&e->ref);
    free(e->x);
    memset(e, 0, sizeof *e);
}

/* The feature network and the reference statistics, logged with the time
 * they took. Fails with a message prefixed "eval_every: ". */
static int fid_open(train_run *r, err_t *err)
{
    const unet_config *c = &r->tr.u->cfg;
    const dataset *d = &r->d;
    run_fid *e = &r->fe;
    int kind = c->sample_size == 28 && c->in_channels == 1 ? FEATNET_FMNIST : FEATNET_INCEPTION;
    int nref = d->n < 10000 ? d->n : 10000;
    image_set real = {nref, d->h, d->w, d->c, d->pixels, NULL};
    double t0 = clock_now();
    if (featnet_open(&e->net, kind, r->inception, 16, err) ||
        quality_ref_from_images(&e->ref, e->net, &real, 1, NULL, NULL, NULL, err)) {
        fid_free(e); /* opened again at the next try */
        return err_wrap(err, "eval_every");
    }
    e->have_ref = 1;
    log_note(LOG_INFO, "eval_every: %s of %lld EMA samples against %d training images (%.0f s to set up)",
             featnet_fid_label(e->net), r->tr.o.eval_n, nref, clock_now() - t0);
    return 0;
}

/* One FID of eval_n EMA samples against the reference into ev, and its
 * metrics.jsonl line {"step", "fid", "features", "precision", "recall",
 * "broken", "out_of_range", "eval_n", "eval_s"}. */
static int fid_run(train_run *r, run_events *ev, err_t *err)
{
    run_fid *e = &r->fe;
    const trainer *tr = &r->tr;
    const unet_config *c = &tr->u->cfg;
    const int n = (int)tr->o.eval_n;
    double t0 = clock_now();
    if (!e->net && fid_open(r, err)) return -1;
    if (e->n != n) {
        unet_free(e->u), free(e->x);
        e->u = NULL, e->x = NULL, e->n = 0;
        size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
        if (unet_create_exec(&e->u, c, n < 64 ? n : 64, &(unet_exec){0, tr->o.precision}, 0, err) ||
            !(e->x = mem_alloc_floats((size_t)n * D, err)))
            return err_wrap(err, "FID evaluation");
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
        return err_wrap(err, "FID evaluation");
    ev->evaluated = 1;
    ev->fid = q.fid, ev->precision = q.precision, ev->recall = q.recall;
    ev->broken = (double)q.broken / n;
    ev->out_of_range = (double)range.out_images / (double)range.images;
    ev->eval_s = clock_now() - t0;
    ev->eval_n = n;
    ev->fid_label = featnet_fid_label(e->net);
    if (r->mf) {
        fprintf(r->mf, "{\"step\":%lld,\"fid\":%.6g,\"features\":\"%s\",\"precision\":%.4g,\"recall\":%.4g,"
                       "\"broken\":%.4g,\"out_of_range\":%.4g,\"eval_n\":%d,\"eval_s\":%.3f}\n", (long long)tr->step,
                q.fid, featnet_kind_name(featnet_kind_of(e->net)), q.precision, q.recall, ev->broken, ev->out_of_range, n,
                ev->eval_s);
        fflush(r->mf);
    }
    return 0;
}

/* ------------------------------------------------------------ new, resumed */

/* Keeps the lines of RUN/metrics.jsonl up to `step` (a resumed run rewrites the rest). */
static int trim_metrics(const char *path, long long step, err_t *err)
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

int run_exists(const char *dir)
{
    int have = 0;
    if (dist_rank() == 0 && dir) {
        char a[4200], b[4200];
        struct stat st;
        snprintf(a, sizeof a, "%s/%s", dir, TRAIN_STATE_FILE);
        snprintf(b, sizeof b, "%s/%s", dir, TRAIN_STATE_PREV_FILE);
        have = stat(a, &st) == 0 || stat(b, &st) == 0;
    }
    dist_bcast(&have, sizeof have); /* rank 0's view: it alone writes the folder */
    return have;
}

void run_free(train_run *r)
{
    if (!r) return;
    if (r->mf) fclose(r->mf);
    err_t e = {0};
    if (r->tb && tfevents_close(r->tb, &e)) log_note(LOG_WARN, "%s", e.msg);
    unet_free(r->su);
    fid_free(&r->fe);
    trainer_free(&r->tr);
    dataset_free(&r->d);
    free(r->dir), free(r->inception);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------- convolution algorithms */

/* RUN/conv_algorithms.txt: the algorithm each convolution shape of the run
 * uses (ops.h, enum conv_alg), written with every checkpoint; a resume pins
 * them, so that it computes what the run computed before, on this machine
 * whatever its cache holds since, and over MPI every rank computes what
 * rank 0 does. */
#define CONV_FILE "conv_algorithms.txt"

static int conv_save(const train_run *r, err_t *err)
{
    char path[4200], *text = ops_conv_choices_text();
    if (!text) return err_oom(err, "out of memory");
    const void *chunk = text;
    size_t len = strlen(text);
    int rc = file_path_join(path, sizeof path, r->dir, CONV_FILE, err) ||
             file_write_atomic(path, &chunk, &len, 1, err);
    free(text);
    return rc ? -1 : 0;
}

/* Pins the choices in RUN/conv_algorithms.txt (none in a folder from before it). */
static int conv_pin_run(const char *dir, err_t *err)
{
    char path[4200];
    unsigned char *text;
    size_t len;
    struct stat st;
    if (file_path_join(path, sizeof path, dir, CONV_FILE, err)) return -1;
    if (stat(path, &st) != 0 && errno == ENOENT) return 0;
    if (file_read_all(path, &text, &len, err)) return -1;
    char *z = realloc(text, len + 1);
    if (!z) return free(text), err_oom(err, "out of memory");
    z[len] = 0;
    int rc = ops_conv_choices_pin(z, err);
    free(z);
    return rc ? err_wrap(err, "%s", path) : 0;
}

/* Over MPI: rank 0's choices, pinned on the other ranks. */
static int conv_share(err_t *err)
{
    char *text = dist_rank() == 0 ? ops_conv_choices_text() : NULL;
    uint64_t len = text ? strlen(text) + 1 : 0;
    dist_bcast(&len, sizeof len);
    if (dist_rank() != 0 && len && !(text = malloc(len))) return err_oom(err, "out of memory"); /* cannot happen */
    if (len) dist_bcast(text, len);
    int rc = dist_rank() != 0 && len ? ops_conv_choices_pin(text, err) : 0;
    free(text);
    return rc;
}

/* trainer_init, first on rank 0, whose convolution choices (measured, or
 * pinned by a resume) the other ranks then take. */
static int init_trainer(train_run *r, const unet_config *cfg, const schedule *sched, const train_opts *o, err_t *err)
{
    const int rank0 = dist_rank() == 0;
    int bad = rank0 && trainer_init(&r->tr, cfg, sched, &r->d, o, err);
    if (dist_size() > 1) bad |= conv_share(err) != 0;
    if (!rank0 && !bad) bad = trainer_init(&r->tr, cfg, sched, &r->d, o, err) != 0;
    return bad;
}

/* One failure kind agreed by every rank: a rank that did not fail itself
 * reports that another did. */
static int agree(int kind, err_t *err)
{
    if (dist_or(kind != RUN_OK) && kind == RUN_OK) {
        err_fail(err, "stopped: another process failed");
        return RUN_RUNTIME;
    }
    return kind;
}

/* The part of create and resume where the ranks may fail apart: the FID's
 * feature network (rank 0), the state read (resume: every rank), the event
 * file (rank 0, tensorboard), the step-0 save (create: rank 0),
 * RUN/metrics.jsonl opened (rank 0). */
static int open_folder(train_run *r, const char *state, int resume, err_t *err)
{
    const int rank0 = dist_rank() == 0;
    char metrics[4200];
    int kind = RUN_OK;
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", r->dir);
    /* Before anything is written: a missing Inception file leaves no run folder behind. */
    if (rank0 && r->tr.o.eval_every > 0 && fid_open(r, err))
        kind = strstr(err->msg, "oneDNN") ? RUN_RUNTIME : RUN_BAD_INPUT;
    else if (resume && trainer_load(&r->tr, state, err))
        kind = RUN_RUNTIME;
    else if (resume && rank0 && trim_metrics(metrics, r->tr.step, err))
        kind = RUN_IO;
    else if (rank0 && r->tr.o.tensorboard && tb_open(r, r->tr.step + 1, err)) /* new runs too: before the save */
        kind = RUN_IO;
    else if (!resume && rank0 && (trainer_save(&r->tr, r->dir, err) || conv_save(r, err))) /* step 0: usable (and writable) from the start */
        kind = RUN_IO;
    else if (rank0) {
        if (!resume) remove(metrics);
        if (!(r->mf = fopen(metrics, "a"))) {
            err_fail(err, "cannot open %s: %s", metrics, strerror(errno));
            kind = RUN_IO;
        }
    }
    return agree(kind, err);
}

/* Builds r's trainer on cfg, sched and r->d with options o, then
 * open_folder; prev: resuming from the previous state (made the latest again
 * once every rank has read it). */
static int start(train_run *r, const unet_config *cfg, const schedule *sched, const train_opts *o,
                 const char *state, int resume, int prev, err_t *err)
{
    if (resume && conv_pin_run(r->dir, err)) return RUN_BAD_INPUT;
    if (agree(init_trainer(r, cfg, sched, o, err) ? RUN_BAD_ARG : RUN_OK, err)) return RUN_BAD_ARG;
    int kind = open_folder(r, state, resume, err);
    if (kind) return kind;
    if (resume) { /* every rank has read the state: the previous one may become the latest again */
        int bad = dist_rank() == 0 && prev && trainer_restore_prev(r->dir, err);
        if ((kind = agree(bad ? RUN_IO : RUN_OK, err))) return kind;
    }
    r->t0 = r->tlast = clock_now();
    r->start = r->last_log = r->last_save = r->tr.step;
    return RUN_OK;
}

/* The folder's and the Inception file's names, and the data of o. */
static int begin(train_run *r, const char *dir, const train_opts *o, const char *inception, err_t *err)
{
    memset(r, 0, sizeof *r);
    if (!(r->dir = strdup(dir)) || (inception && !(r->inception = strdup(inception))))
        return err_oom(err, "out of memory"), RUN_BAD_ARG;
    if (dataset_load(&r->d, o->data[0] ? o->data : NULL, DATASET_TRAIN, o->limit, err))
        return err_wrap(err, "data"), RUN_BAD_INPUT;
    return RUN_OK;
}

int run_create(train_run *r, const char *dir, const unet_config *cfg, const schedule *sched, const train_opts *o,
               const char *inception, err_t *err)
{
    unet_config c = *cfg;
    int kind = begin(r, dir, o, inception, err);
    if (!kind && o->classes) {
        if (!r->d.labels) {
            err_fail(err, "classes: %s has no class labels (an IDX label file next to the images, CIFAR-10 "
                      "batches, or a PNG folder with one subfolder per class)", r->d.desc);
            kind = RUN_BAD_ARG;
        }
        c.num_class_embeds = r->d.nclasses + 1; /* the last: the null class */
    }
    if (!kind) kind = start(r, &c, sched, o, NULL, 0, 0, err);
    if (kind) run_free(r);
    return kind;
}

/* The run's options, config and schedule from its state file (the latest
 * whole one: trainer_find_state, whose choice is logged); prev: it is the
 * previous state. */
static int read_run(const char *dir, char *state, size_t n, int *prev, train_opts *o, unet_config *cfg,
                    schedule *sched, err_t *err)
{
    err_t why = {0};
    if (trainer_find_state(dir, state, n, &why, err)) return RUN_BAD_INPUT;
    *prev = why.msg[0] != 0;
    if (*prev) {
        log_note(LOG_WARN, "%s", why.msg);
        log_note(LOG_INFO, "resuming from the previous state, %s", state);
    }
    char *cj = NULL, *sj = NULL;
    int64_t done;
    int bad = trainer_read_run(state, o, &done, &cj, &sj, err) || unet_config_from_json(cfg, cj, err) ||
              schedule_from_json(sched, sj, err);
    free(cj), free(sj);
    return bad ? RUN_BAD_INPUT : RUN_OK;
}

int run_resume(train_run *r, const char *dir, const long long *cadence, const char *inception, err_t *err)
{
    char state[4200];
    int prev = 0;
    train_opts o;
    unet_config cfg;
    schedule sched = {0};
    memset(r, 0, sizeof *r);
    int kind = read_run(dir, state, sizeof state, &prev, &o, &cfg, &sched, err);
    if (!kind) {
        for (int i = 0; cadence && i < TRAIN_CADENCE_FIELDS; i++) /* given again: kept from now on */
            if (cadence[i] >= 0) *train_cadence_of(&o, i) = cadence[i];
        kind = begin(r, dir, &o, inception, err);
    }
    if (!kind) kind = start(r, &cfg, &sched, &o, state, 1, prev, err);
    schedule_free(&sched);
    if (kind) run_free(r);
    return kind;
}

/* ------------------------------------------------------------------ steps */

double run_img_per_s(const train_run *r)
{
    double el = clock_now() - r->t0;
    return el > 0 ? (double)(r->tr.step - r->start) * r->tr.o.batch / el : 0;
}

/* The metrics.jsonl line of this step (log_every), and the same values as the
 * event file's scalars train/<key>: the mean loss since the last line, the
 * last step's lr, grad norm and EMA decay, images per second since the last
 * line, the mean loss of the images in each timestep quartile since the last
 * line (loss_q0..q3, left out when none fell in it), the seconds per step of
 * summing over the processes (MPI). */
static int log_line(train_run *r, double now, run_events *ev, err_t *err)
{
    const trainer *tr = &r->tr;
    const double k = (double)(tr->step - r->last_log);
    tfevents_scalar v[10];
    int n = 0;
    ev->logged = 1;
    ev->log_loss = r->loss_sum / k;
    ev->log_img_per_s = k * tr->o.batch / (now - r->tlast);
    v[n++] = (tfevents_scalar){"train/loss", ev->log_loss};
    v[n++] = (tfevents_scalar){"train/lr", tr->lr};
    v[n++] = (tfevents_scalar){"train/grad_norm", tr->grad_norm};
    v[n++] = (tfevents_scalar){"train/img_per_s", ev->log_img_per_s};
    v[n++] = (tfevents_scalar){"train/ema_decay", tr->ema_decay};
    if (r->mf)
        fprintf(r->mf, "{\"step\":%lld,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,\"img_per_s\":%.4g,"
                       "\"elapsed_s\":%.3f,\"ema_decay\":%.6g", (long long)tr->step, ev->log_loss, tr->lr,
                tr->grad_norm, ev->log_img_per_s, now - r->t0, tr->ema_decay);
    static const char *qtag[4] = {"train/loss_q0", "train/loss_q1", "train/loss_q2", "train/loss_q3"};
    for (int q = 0; q < 4; q++) {
        if (!r->q_n[q]) continue;
        double lq = r->q_sum[q] / (double)r->q_n[q];
        v[n++] = (tfevents_scalar){qtag[q], lq};
        if (r->mf) fprintf(r->mf, ",\"loss_q%d\":%.6g", q, lq);
    }
    if (tr->nranks > 1) { /* seconds per step spent in the sum over the processes */
        v[n++] = (tfevents_scalar){"train/reduce_s", r->reduce_sum / k};
        if (r->mf) fprintf(r->mf, ",\"reduce_s\":%.4g", r->reduce_sum / k);
    }
    if (r->mf) {
        fputs("}\n", r->mf);
        fflush(r->mf);
    }
    r->loss_sum = 0, r->reduce_sum = 0, r->last_log = tr->step, r->tlast = now;
    memset(r->q_sum, 0, sizeof r->q_sum), memset(r->q_n, 0, sizeof r->q_n);
    return tb_scalars(r, v, n, err);
}

/* Rank 0's writes at the new step: the metrics line, the checkpoint, the
 * grid, the FID (a failed FID is logged and recorded; training goes on), and
 * the same in the event file (tensorboard; a failed event write stops the
 * run, as a failed grid does). */
static int cadence(train_run *r, run_events *ev, err_t *err)
{
    const trainer *tr = &r->tr;
    const train_opts *o = &tr->o;
    if (!o->tensorboard != !r->tb) { /* turned on or off (ddpm_trainer_set_cadence) */
        if (r->tb) {
            err_t e = {0};
            if (tfevents_close(r->tb, &e)) log_note(LOG_WARN, "%s", e.msg);
            r->tb = NULL;
        } else if (tb_open(r, tr->step, err))
            return RUN_IO;
    }
    if (tr->step % o->log_every == 0 && log_line(r, clock_now(), ev, err)) return RUN_IO;
    if (tr->step - r->last_save >= o->save_every) {
        if (run_save(r, err)) return RUN_IO;
        ev->saved = 1;
    }
    if (o->sample_every > 0 && tr->step % o->sample_every == 0) {
        if (run_sample_grid(r, err)) return RUN_IO;
        ev->sampled = 1;
    }
    err_t e = {0};
    if (o->eval_every > 0 && tr->step % o->eval_every == 0 && fid_run(r, ev, &e)) {
        log_note(LOG_WARN, "step %lld: %s", (long long)tr->step, e.msg);
        ev->evaluated = -1;
        if (r->mf) {
            fprintf(r->mf, "{\"step\":%lld,\"fid\":null}\n", (long long)tr->step);
            fflush(r->mf);
        }
    } else if (ev->evaluated == 1) {
        tfevents_scalar v[5] = {{"eval/fid", ev->fid}, {"eval/precision", ev->precision}, {"eval/recall", ev->recall},
                                {"eval/broken", ev->broken}, {"eval/out_of_range", ev->out_of_range}};
        if (tb_scalars(r, v, 5, err)) return RUN_IO;
    }
    return RUN_OK;
}

int run_step(train_run *r, run_events *ev, err_t *err)
{
    run_events mine = {0};
    if (!ev) ev = &mine;
    *ev = (run_events){0};
    if (trainer_step(&r->tr, err)) return RUN_NONFINITE;
    r->loss_sum += r->tr.loss;
    r->reduce_sum += r->tr.reduce_s;
    for (int q = 0; q < 4; q++) r->q_sum[q] += r->tr.q_sum[q], r->q_n[q] += r->tr.q_n[q];
    return dist_rank() == 0 ? cadence(r, ev, err) : RUN_OK;
}

int run_save(train_run *r, err_t *err)
{
    if (dist_rank() != 0) return RUN_OK;
    if (trainer_save(&r->tr, r->dir, err) || conv_save(r, err))
        return err_wrap(err, "saving the checkpoint failed"), RUN_IO;
    r->last_save = r->tr.step;
    return RUN_OK;
}

int run_sample_grid(train_run *r, err_t *err)
{
    if (dist_rank() != 0) return RUN_OK;
    if (sample_grid(r, (int)r->tr.o.sample_n, err)) return err_wrap(err, "sample grid"), RUN_IO;
    char path[4300];
    grid_path(r, path, sizeof path);
    return tb_grid(r, path, err) ? RUN_IO : RUN_OK;
}

int run_finish(train_run *r, err_t *err)
{
    if (dist_rank() != 0) return RUN_OK;
    const long long step = r->tr.step, every = r->tr.o.sample_every;
    int kind = step != r->last_save ? run_save(r, err) : RUN_OK;
    if (!kind && every > 0 && step % every != 0) kind = run_sample_grid(r, err);
    return kind;
}
