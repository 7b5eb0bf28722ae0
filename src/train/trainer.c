/* trainer.c -- training step, optimiser, EMA and checkpoints (see trainer.h). */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "core/threads.h"
#include "dist/dist.h"
#include "exec/executor.h"
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
    o.p_uncond = 0.1;
    o.lr_schedule = TRAIN_LR_CONSTANT, o.lr_total = 0, o.lr_k0 = 0, o.lr_s0 = 1.0;
    o.loss_weight = TRAIN_WEIGHT_NONE, o.snr_gamma = 5.0, o.vlb_weight = 0.001;
    o.save_every = 1000, o.log_every = 100, o.sample_every = 0, o.sample_n = 16, o.eval_every = 0, o.eval_n = 1000;
    o.tensorboard = 1;
    return o;
}

static const char *const lr_names[] = {"constant", "linear", "cosine"};
static const char *const weight_names[] = {"none", "min-snr"};

static int find_name(const char *const *names, int n, const char *name) {
    for (int i = 0; name && i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

const char *train_lr_schedule_name(int schedule) { return lr_names[schedule]; }
int train_lr_schedule_parse(const char *name) { return find_name(lr_names, 3, name); }
const char *train_loss_weight_name(int weight) { return weight_names[weight]; }
int train_loss_weight_parse(const char *name) { return find_name(weight_names, 2, name); }

double train_lr_factor(const train_opts *o, long long k) {
    if (o->lr_schedule == TRAIN_LR_CONSTANT || o->lr_total <= 0) return 1.0;
    double span = (double)(o->lr_total + 1 - o->lr_k0);
    double u = span > 0 ? (double)(k - o->lr_k0) / span : 1.0;
    u = u < 0 ? 0 : u > 1 ? 1 : u;
    if (o->lr_schedule == TRAIN_LR_LINEAR) return o->lr_s0 * (1.0 - u);
    /* The cosine's phase where it equals lr_s0 (0 for 1: then exactly (1 + cos(pi u)) / 2). */
    const double u0 = acos(2.0 * o->lr_s0 - 1.0) / M_PI;
    return 0.5 * (1.0 + cos(M_PI * (u0 + (1.0 - u0) * u)));
}

void trainer_set_horizon(trainer *tr, long long total) {
    train_opts *o = &tr->o;
    if (o->lr_schedule == TRAIN_LR_CONSTANT || total == o->lr_total || total < 0) return; /* nothing to decay */
    if (o->lr_total > 0) { /* continue from where the old horizon had got to */
        o->lr_s0 = train_lr_factor(o, tr->step);
        o->lr_k0 = tr->step;
    }
    o->lr_total = total;
}

static int copy_schedule(schedule *dst, const schedule *src, err_t *err) {
    char *j = schedule_to_json(src);
    if (!j) return err_oom(err, "out of memory");
    int rc = schedule_from_json(dst, j, err);
    free(j);
    return rc;
}

/* ---- the network, its convolution algorithms checked on a whole pass ---- */

/* tr's training network, with the convolution algorithms in force. */
static int make_net(const trainer *tr, unet **u, const unet_config *cfg, err_t *err) {
    int k = tr->o.shards / tr->nranks; /* this rank's shards: global shards [rank k, (rank+1) k) */
    unet_exec x = {tr->o.shards > 1 ? k : 0, tr->o.precision};
    return unet_create_exec(u, cfg, tr->local, &x, 1, err);
}

static void copy_grad(void *ctx, int image0, int n, const float *out, float *dout) {
    memcpy(dout, out, sizeof(float) * *(const size_t *)ctx * n); /* the gradient of half the sum of squares */
}

/* Seconds of one training pass of u (forward and backward, no update): the
 * best of 2 after a warm-up; -1 with err set when it failed. */
static double pass_seconds(const trainer *tr, unet *u, const unet_config *cfg, err_t *err) {
    size_t px = (size_t)cfg->sample_size * cfg->sample_size, per_image = px * cfg->out_channels;
    size_t nin = (size_t)tr->local * px * cfg->in_channels;
    float *x = mem_alloc_floats(nin, err), *out = mem_alloc_floats(tr->local * per_image, err);
    float *t = mem_alloc_floats((size_t)tr->local, err);
    double best = -1;
    if (x && out && t) {
        for (size_t i = 0; i < nin; i++) x[i] = (float)((i * 2654435761u) % 2000) / 1000.0f - 1.0f;
        for (int i = 0; i < tr->local; i++) t[i] = (float)(i * 997 % 1000);
        unet_dropout dp = {tr->o.seed, 0, 0};
        best = 1e30;
        for (int r = 0; r < 3 && best > 0; r++) {
            double t0 = clock_now();
            if (unet_train_pass(u, out, NULL, x, t, NULL, &dp, copy_grad, &per_image, err)) best = -1;
            else if (r) best = fmin(best, clock_now() - t0);
        }
    }
    free(x), free(out), free(t);
    return best;
}

/* The network's key in the machine's cache: its config, and the images a
 * shard runs (not the process count: every rank and process count must make
 * the same choice). */
static void net_key(char *out, size_t n, const trainer *tr, const unet_config *cfg) {
    char *json = unet_config_to_json(cfg, NULL);
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *s = json ? json : ""; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    free(json);
    snprintf(out, n, "%016llx, %d images per shard%s%s", (unsigned long long)h, tr->o.batch / tr->o.shards,
             tr->o.precision ? ", " : "", tr->o.precision ? exec_precision_name(tr->o.precision) : "");
}

/* Builds tr->u. With the convolution algorithms chosen by measurement and
 * none pinned (a resume's, or rank 0's over MPI), a network met for the
 * first time on this machine is timed against the same network on oneDNN's
 * direct kernels alone, and the faster is kept: the per-shape choices may
 * win convolution by convolution and still lose the whole pass
 * (docs/perf.md). The verdict goes to the machine's cache; rank 0 decides. */
static int create_net(trainer *tr, const unet_config *cfg, err_t *err) {
    if (ops_conv_get_algorithm() != CONV_ALG_MEASURE || ops_conv_pinned() || tr->o.precision == EXEC_BF16)
        return make_net(tr, &tr->u, cfg, err); /* (bf16 convolutions have one algorithm) */
    char net[96];
    net_key(net, sizeof net, tr, cfg);
    int v = ops_conv_net_verdict(net), rc;
    if (v == CONV_NET_DIRECT || (v == CONV_NET_UNKNOWN && dist_rank() == 0)) {
        if (v == CONV_NET_UNKNOWN) {
            /* One network at a time (two would double the run's peak memory): the direct kernels' first, then
             * the measured choices', which stays when it wins. */
            unet *probe = NULL;
            log_note(LOG_INFO, "timing a training pass on these convolution algorithms against oneDNN's direct "
                     "kernels alone (once per network and machine)");
            ops_conv_set_probe(1);
            ops_conv_set_algorithm(CONV_ALG_DIRECT);
            rc = make_net(tr, &probe, cfg, err);
            ops_conv_set_algorithm(CONV_ALG_MEASURE);
            ops_conv_set_probe(0);
            double td = rc ? -1 : pass_seconds(tr, probe, cfg, err);
            unet_free(probe);
            if (td < 0 || make_net(tr, &tr->u, cfg, err)) return -1;
            double ts = pass_seconds(tr, tr->u, cfg, err);
            if (ts < 0) return -1;
            v = td < ts ? CONV_NET_DIRECT : CONV_NET_PER_SHAPE;
            ops_conv_net_record(net, v, ts, td);
            log_note(LOG_INFO, "a training pass takes %.1f ms on the measured choices, %.1f ms on direct kernels: "
                     "keeping the %s", 1e3 * ts, 1e3 * td, v == CONV_NET_DIRECT ? "direct kernels" : "measured choices");
            if (v == CONV_NET_PER_SHAPE) return 0;
            unet_free(tr->u);
            tr->u = NULL;
        }
        ops_conv_set_algorithm(CONV_ALG_DIRECT); /* recorded: the run folder keeps it */
        rc = make_net(tr, &tr->u, cfg, err);
        ops_conv_set_algorithm(CONV_ALG_MEASURE);
        return rc;
    }
    return make_net(tr, &tr->u, cfg, err);
}

int trainer_init(trainer *tr, const unet_config *cfg, const schedule *sched, const dataset *d,
                 const train_opts *o, err_t *err) {
    memset(tr, 0, sizeof *tr);
    tr->o = *o;
    if (d->h != cfg->sample_size || d->w != cfg->sample_size || d->c != cfg->in_channels)
        return err_fail(err, "the data are %dx%dx%d images but the model takes %dx%dx%d (pick a matching "
                         "--preset or --config)", d->h, d->w, d->c, cfg->sample_size, cfg->sample_size,
                         cfg->in_channels);
    if (o->batch < 1) return err_fail(err, "batch size must be at least 1");
    const int learned = sched->variance_type == SCHED_LEARNED_RANGE;
    if (cfg->out_channels != (learned ? 2 : 1) * cfg->in_channels)
        return err_fail(err, "out_channels must be %s in_channels (are %d, %d)%s", learned ? "twice" : "equal to",
                        cfg->out_channels, cfg->in_channels,
                        learned ? ": a learned variance is the second half" : "");
    if (train_split(o->batch, o->shards, dist_size(), &tr->o.shards, err)) return -1;
    if (o->classes && !d->labels)
        return err_fail(err, "--classes: %s has no class labels (an IDX label file, CIFAR-10 batches or a PNG "
                              "folder with one subfolder per class)", d->desc);
    if (o->classes && cfg->num_class_embeds != d->nclasses + 1)
        return err_fail(err, "--classes: the model has %d class embeddings, the data %d classes (+1 null class)",
                         cfg->num_class_embeds, d->nclasses);
    if (!o->classes && cfg->num_class_embeds > 0)
        return err_fail(err, "the model is class-conditional (num_class_embeds %d): train it with --classes",
                         cfg->num_class_embeds);
    if (!(o->p_uncond >= 0 && o->p_uncond <= 1)) return err_fail(err, "--p-uncond must be in [0, 1]");
    if (copy_schedule(&tr->sched, sched, err)) return -1;
    tr->nranks = dist_size();
    tr->local = o->batch / tr->nranks;
    tr->first = dist_rank() * tr->local;
    if (loader_init(&tr->ld, d, o->seed, o->flip, err)) goto fail;
    if (create_net(tr, cfg, err)) goto fail;
    if (dist_reserve(tr->u->nparams, err)) goto fail;
    unet_init_official(tr->u, o->seed);
    size_t P = tr->u->nparams, n = (size_t)tr->local * cfg->sample_size * cfg->sample_size * cfg->in_channels;
    tr->m = mem_alloc_floats(P, err);
    tr->v = mem_alloc_floats(P, err);
    tr->ema = mem_alloc_floats(P, err);
    tr->x0 = mem_alloc_floats(n, err);
    tr->eps = mem_alloc_floats(n, err);
    tr->xt = mem_alloc_floats(n, err);
    tr->out = mem_alloc_floats(n * (size_t)(cfg->out_channels / cfg->in_channels), err);
    tr->target = sched->prediction == SCHED_PRED_EPSILON ? tr->eps : mem_alloc_floats(n, err);
    tr->w = mem_alloc_floats((size_t)tr->local, err);
    if (learned && !(tr->vlb = mem_alloc_floats(6 * n, err))) goto fail;
    tr->t = mem_alloc_floats((size_t)tr->local, err);
    tr->ti = mem_calloc((size_t)tr->local, sizeof *tr->ti, err);
    tr->y = mem_calloc((size_t)tr->local, sizeof *tr->y, err);
    if (o->classes && tr->y && (tr->cls.names = mem_calloc((size_t)d->nclasses, sizeof *tr->cls.names, err))) {
        tr->cls.n = d->nclasses;
        for (int k = 0; k < d->nclasses; k++) snprintf(tr->cls.names[k], UNET_NAME_LEN, "%s", d->names[k]);
    }
    if (o->classes && !tr->cls.names) goto fail;
    tr->sq = mem_calloc((size_t)o->batch, sizeof *tr->sq, err);
    if (!tr->m || !tr->v || !tr->ema || !tr->x0 || !tr->eps || !tr->xt || !tr->out || !tr->t || !tr->ti || !tr->sq ||
        !tr->target || !tr->w)
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
    if (tr->target != tr->eps) free(tr->target);
    free(tr->w), free(tr->vlb);
    free(tr->x0), free(tr->eps), free(tr->xt), free(tr->out), free(tr->t), free(tr->ti), free(tr->sq), free(tr->y);
    unet_classes_free(&tr->cls);
    memset(tr, 0, sizeof *tr);
}

static int is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

int train_split(int batch, int shards, int nranks, int *out, err_t *err) {
    if (batch < 1) return err_fail(err, "batch size must be at least 1");
    if (!is_pow2(nranks))
        return err_fail(err, "%d processes: a data-parallel run needs a power of two (1, 2, 4, 8, ...)", nranks);
    if (batch % nranks)
        return err_fail(err, "the batch of %d images does not split evenly over %d processes "
                              "(pick a --batch that is a multiple of %d)", batch, nranks, nranks);
    int g = shards;
    if (g == 0) {
        g = unet_shard_count(batch);
        if (g < nranks) g = nranks;
    }
    if (!is_pow2(g) || g > batch)
        return err_fail(err, "%d shards: the shard count must be a power of two no larger than the batch (%d)", g,
                         batch);
    if (g % nranks)
        return err_fail(err, "the run sums its gradients over %d shards, which %d processes cannot share "
                              "(use at most %d processes, a power of two)", g, nranks, g);
    *out = g;
    return 0;
}

/* The loss's gradient for a group of this rank's images, and their weighted
 * squared errors: the loss is the mean of w_i (out - target)^2 over the whole
 * global batch (L_simple when every w_i is 1 and the target is eps). */
/* L_hybrid's gradient and value for image i of a learned-variance network:
 * out, dout: its [HW][2C] output and gradient (the mean half, then the
 * variance half of each pixel). Returns w_i (squared error) + vlb_weight T
 * (bound term) D, in the units of tr->sq. */
static double hybrid_loss_grad(trainer *tr, int i, const float *out, float *dout, float g) {
    const unet_config *c = &tr->u->cfg;
    const int C = c->in_channels;
    const size_t HW = (size_t)c->sample_size * c->sample_size, D = HW * C;
    float *mo = tr->vlb + (size_t)i * 6 * D, *vo = mo + D, *x0p = vo + D, *dv = x0p + D, *scr = dv + D;
    for (size_t p = 0; p < HW; p++)
        for (int k = 0; k < C; k++) mo[p * C + k] = out[p * 2 * C + k], vo[p * C + k] = out[p * 2 * C + C + k];
    const float *target = tr->target + (size_t)i * D, *xt = tr->xt + (size_t)i * D;
    double sq = ops_sq_error(x0p, mo, target, D, g * tr->w[i]); /* x0p: the mean half's gradient, for now */
    for (size_t p = 0; p < HW; p++)
        for (int k = 0; k < C; k++) dout[p * 2 * C + k] = x0p[p * C + k];
    const int t = tr->ti[i];
    diffusion_x0_from_output(&tr->sched, t, mo, xt, x0p, D);
    const double scale = tr->o.vlb_weight * tr->sched.T;
    double vb = diffusion_vlb_term(&tr->sched, t, tr->x0 + (size_t)i * D, xt, x0p, vo, dv, D, scr);
    const float gv = (float)(scale / tr->o.batch);
    for (size_t p = 0; p < HW; p++)
        for (int k = 0; k < C; k++) dout[p * 2 * C + C + k] = gv * dv[p * C + k];
    return tr->w[i] * sq + scale * vb * (double)D;
}

static void simple_loss_grad(void *ctx, int image0, int n, const float *out, float *dout) {
    trainer *tr = ctx;
    const unet_config *c = &tr->u->cfg;
    size_t per = (size_t)c->sample_size * c->sample_size * c->out_channels;
    if (tr->vlb) { /* L_hybrid */
        const size_t D = per / 2;
        const float g = 2.0f / (float)(D * (size_t)tr->o.batch);
        for (int i = image0; i < image0 + n; i++)
            tr->sq[tr->first + i] = hybrid_loss_grad(tr, i, out + (size_t)(i - image0) * per,
                                                     dout + (size_t)(i - image0) * per, g);
        return;
    }
    float g = 2.0f / (float)(per * (size_t)tr->o.batch);
    for (int i = image0; i < image0 + n; i++) {
        size_t at = (size_t)(i - image0) * per;
        if (tr->o.loss_weight == TRAIN_WEIGHT_NONE)
            tr->sq[tr->first + i] = ops_sq_error(dout + at, out + at, tr->target + (size_t)i * per, per, g);
        else
            tr->sq[tr->first + i] = tr->w[i] * ops_sq_error(dout + at, out + at, tr->target + (size_t)i * per, per,
                                                            g * tr->w[i]);
    }
}

/* Min-SNR-gamma's weight of timestep t for the schedule's prediction. */
static float min_snr_weight(const schedule *s, int t, double gamma) {
    double ab = s->alphas_cumprod[t], snr = ab / (1.0 - ab), m = snr < gamma ? snr : gamma;
    return (float)(s->prediction == SCHED_PRED_EPSILON ? m / snr : s->prediction == SCHED_PRED_SAMPLE ? m
                                                                                                      : m / (snr + 1));
}

/* t of the global batch's image g at step (0-based): uniform on 0..T-1, keyed by both. */
static int timestep_of(const trainer *tr, uint64_t step, uint64_t g) {
    return (int)rng_below((uint32_t)tr->sched.T, tr->o.seed, RNG_TIMESTEP, step, g);
}

int trainer_step(trainer *tr, err_t *err) {
    const train_opts *o = &tr->o;
    unet *u = tr->u;
    int b = tr->local, T = tr->sched.T;
    size_t per = (size_t)u->cfg.sample_size * u->cfg.sample_size * u->cfg.in_channels;
    uint64_t step = (uint64_t)tr->step;

    /* Algorithm 1 on this rank's images first..first+b-1 of the global batch:
     * x0 ~ data, t ~ U{1..T}, eps ~ N(0, I), x_t = diffusion_q_sample(x0, t, eps); every
     * draw keyed by the image's global index. */
    loader_batch(&tr->ld, step, o->batch, tr->first, b, tr->x0);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < b; i++) {
        uint64_t g = (uint64_t)(tr->first + i);
        rng_normal(tr->eps + (size_t)i * per, per, o->seed, RNG_NOISE, rng_stream(step, g));
        tr->ti[i] = timestep_of(tr, step, g);
        tr->t[i] = (float)tr->ti[i];
    }
    diffusion_q_sample_batch(&tr->sched, tr->ti, b, tr->x0, tr->eps, tr->xt, per);
    for (int i = 0; tr->target != tr->eps && i < b; i++)
        diffusion_target(&tr->sched, tr->ti[i], tr->x0 + (size_t)i * per, tr->eps + (size_t)i * per,
                         tr->target + (size_t)i * per, per);
    for (int i = 0; i < b; i++)
        tr->w[i] = o->loss_weight == TRAIN_WEIGHT_MIN_SNR ? min_snr_weight(&tr->sched, tr->ti[i], o->snr_gamma) : 1.0f;
    if (o->classes) { /* the image's class, or with probability p_uncond the null class */
        loader_labels(&tr->ld, step, o->batch, tr->first, b, tr->y);
        for (int i = 0; i < b; i++) {
            float r;
            rng_uniform(&r, 1, o->seed, RNG_UNCOND, rng_stream(step, (uint64_t)(tr->first + i)));
            if (r < o->p_uncond) tr->y[i] = tr->cls.n;
        }
    }
    unet_dropout dp = {o->seed, step, (uint64_t)tr->first};
    memset(u->grads, 0, u->nparams * sizeof(float));
    int oom = unet_train_pass(u, tr->out, NULL, tr->xt, tr->t, o->classes ? tr->y : NULL, &dp, simple_loss_grad, tr,
                              err) != 0;
    if (dist_or(oom)) /* every rank stops here, before the collectives below, when one ran out of memory */
        return oom ? -1 : err_oom(err, "stopped at step %lld: another process ran out of memory", (long long)step + 1);

    /* The global gradient and loss, the same bits on every rank. */
    double t0 = clock_now();
    dist_sum_tree(u->grads, u->nparams);
    dist_allgather(tr->sq + tr->first, tr->sq, sizeof(double) * (size_t)b);
    tr->reduce_s = clock_now() - t0;
    double loss = 0, q_sum[4] = {0};
    int q_n[4] = {0};
    for (int i = 0; i < o->batch; i++) { /* every rank knows every image's t: a pure function */
        int q = (int)(4LL * timestep_of(tr, step, (uint64_t)i) / T);
        loss += tr->sq[i];
        q_sum[q] += tr->sq[i] / (double)per, q_n[q]++;
    }
    loss /= (double)per * o->batch;
    if (!isfinite(loss))
        return err_fail(err, "the loss is not finite at step %lld (%g): stopping; the last checkpoint is kept",
                         (long long)step + 1, loss);
    double gnorm = sqrt(ops_sum_squares(u->grads, u->nparams));
    if (!isfinite(gnorm))
        return err_fail(err, "the gradient is not finite at step %lld: stopping; the last checkpoint is kept",
                         (long long)step + 1);

    /* Clipping as tf.clip_by_global_norm (the official code), Adam as torch.optim.Adam. */
    double k = (double)step + 1;
    double lr = o->lr * (o->warmup > 0 && k < o->warmup ? k / o->warmup : 1.0) * train_lr_factor(o, (long long)k);
    double d = o->ema;
    if (o->ema_warmup && (1.0 + k) / (10.0 + k) < d) d = (1.0 + k) / (10.0 + k);
    adam_ema_coef c = {.scale = o->clip > 0 && gnorm > o->clip ? (float)(o->clip / gnorm) : 1.0f,
                       .b1 = (float)o->beta1, .b2 = (float)o->beta2, .eps = (float)o->adam_eps,
                       .c1 = (float)(lr / (1.0 - pow(o->beta1, k))), .c2 = (float)(1.0 / sqrt(1.0 - pow(o->beta2, k))),
                       .decay = (float)d};
    ops_adam_ema_update(u->params, tr->m, tr->v, tr->ema, u->grads, u->nparams, &c);
    tr->loss = loss;
    tr->grad_norm = gnorm;
    tr->lr = lr;
    tr->ema_decay = d;
    memcpy(tr->q_sum, q_sum, sizeof q_sum), memcpy(tr->q_n, q_n, sizeof q_n);
    tr->step++;
    return 0;
}

/* ---- options as JSON ------------------------------------------------------- */

const train_cadence_field train_cadence[TRAIN_CADENCE_FIELDS] = {
    {"save_every", offsetof(train_opts, save_every), 1, 1e12},
    {"log_every", offsetof(train_opts, log_every), 1, 1e12},
    {"sample_every", offsetof(train_opts, sample_every), 0, 1e12},
    {"sample_n", offsetof(train_opts, sample_n), 1, 1024},
    {"eval_every", offsetof(train_opts, eval_every), 0, 2e9},
    {"eval_n", offsetof(train_opts, eval_n), 10, 100000},
    {"tensorboard", offsetof(train_opts, tensorboard), 0, 1},
};

long long *train_cadence_of(train_opts *o, int i) { return (long long *)((char *)o + train_cadence[i].offset); }

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
    cJSON_AddNumberToObject(j, "shards", o->shards);
    cJSON_AddBoolToObject(j, "classes", o->classes);
    cJSON_AddNumberToObject(j, "p_uncond", o->p_uncond);
    cJSON_AddStringToObject(j, "lr_schedule", lr_names[o->lr_schedule]);
    cJSON_AddNumberToObject(j, "lr_total", (double)o->lr_total);
    cJSON_AddNumberToObject(j, "lr_k0", (double)o->lr_k0);
    cJSON_AddNumberToObject(j, "lr_s0", o->lr_s0);
    cJSON_AddStringToObject(j, "loss_weight", weight_names[o->loss_weight]);
    cJSON_AddNumberToObject(j, "snr_gamma", o->snr_gamma);
    cJSON_AddNumberToObject(j, "vlb_weight", o->vlb_weight);
    cJSON_AddStringToObject(j, "precision", exec_precision_name(o->precision));
    for (int i = 0; i < TRAIN_CADENCE_FIELDS; i++)
        cJSON_AddNumberToObject(j, train_cadence[i].name, (double)*(const long long *)((const char *)o + train_cadence[i].offset));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

int train_opts_from_json(train_opts *o, const char *json, err_t *err) {
    cJSON *j = cJSON_ParseWithOpts(json, NULL, 1);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return err_fail(err, "training options are not a JSON object");
    }
    *o = train_opts_default();
    const char *num[] = {"batch", "lr", "warmup", "beta1", "beta2", "adam_eps", "clip", "ema"};
    double val[8];
    for (int i = 0; i < 8; i++) {
        cJSON *x = cJSON_GetObjectItemCaseSensitive(j, num[i]);
        if (!cJSON_IsNumber(x)) {
            cJSON_Delete(j);
            return err_fail(err, "training options: '%s' missing or not a number", num[i]);
        }
        val[i] = x->valuedouble;
    }
    o->batch = (int)val[0], o->lr = val[1], o->warmup = (int)val[2], o->beta1 = val[3], o->beta2 = val[4];
    o->adam_eps = val[5], o->clip = val[6], o->ema = val[7];
    cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    cJSON *ew = cJSON_GetObjectItemCaseSensitive(j, "ema_warmup"), *fl = cJSON_GetObjectItemCaseSensitive(j, "flip");
    if (!cJSON_IsString(seed) || !cJSON_IsBool(ew) || !cJSON_IsBool(fl)) {
        cJSON_Delete(j);
        return err_fail(err, "training options: 'seed', 'ema_warmup' or 'flip' missing or of the wrong type");
    }
    o->seed = strtoull(seed->valuestring, NULL, 10);
    o->ema_warmup = cJSON_IsTrue(ew);
    o->flip = cJSON_IsTrue(fl);
    cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *limit = cJSON_GetObjectItemCaseSensitive(j, "limit");
    if (cJSON_IsString(data)) snprintf(o->data, sizeof o->data, "%s", data->valuestring);
    if (cJSON_IsNumber(limit)) o->limit = limit->valueint;
    cJSON *shards = cJSON_GetObjectItemCaseSensitive(j, "shards"); /* absent before data-parallel runs */
    if (cJSON_IsNumber(shards)) o->shards = shards->valueint;
    cJSON *classes = cJSON_GetObjectItemCaseSensitive(j, "classes"), *pu = cJSON_GetObjectItemCaseSensitive(j, "p_uncond");
    o->classes = cJSON_IsTrue(classes);
    if (cJSON_IsNumber(pu)) o->p_uncond = pu->valuedouble;
    /* absent before budget-aware schedules and loss weights: constant, none */
    cJSON *ls = cJSON_GetObjectItemCaseSensitive(j, "lr_schedule"), *lw = cJSON_GetObjectItemCaseSensitive(j, "loss_weight");
    cJSON *lt = cJSON_GetObjectItemCaseSensitive(j, "lr_total"), *lk = cJSON_GetObjectItemCaseSensitive(j, "lr_k0");
    cJSON *l0 = cJSON_GetObjectItemCaseSensitive(j, "lr_s0"), *sg = cJSON_GetObjectItemCaseSensitive(j, "snr_gamma");
    if (ls) o->lr_schedule = cJSON_IsString(ls) ? train_lr_schedule_parse(ls->valuestring) : -1;
    if (lw) o->loss_weight = cJSON_IsString(lw) ? train_loss_weight_parse(lw->valuestring) : -1;
    if (cJSON_IsNumber(lt)) o->lr_total = (long long)lt->valuedouble;
    if (cJSON_IsNumber(lk)) o->lr_k0 = (long long)lk->valuedouble;
    if (cJSON_IsNumber(l0)) o->lr_s0 = l0->valuedouble;
    if (cJSON_IsNumber(sg)) o->snr_gamma = sg->valuedouble;
    cJSON *vw = cJSON_GetObjectItemCaseSensitive(j, "vlb_weight");
    if (cJSON_IsNumber(vw)) o->vlb_weight = vw->valuedouble;
    cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "precision"); /* absent before bf16: fp32 */
    if (pr && (o->precision = cJSON_IsString(pr) ? exec_precision_parse(pr->valuestring) : -1) < 0) {
        cJSON_Delete(j);
        return err_fail(err, "training options: 'precision' is not fp32, bf16 or bf16-emulated");
    }
    if (o->lr_schedule < 0 || o->loss_weight < 0 || o->lr_total < 0 || o->lr_k0 < 0 || !(o->lr_s0 >= 0 && o->lr_s0 <= 1) ||
        !(o->snr_gamma > 0)) {
        cJSON_Delete(j);
        return err_fail(err, "training options: 'lr_schedule', 'lr_total', 'lr_k0', 'lr_s0', 'loss_weight' or "
                             "'snr_gamma' is not valid");
    }
    for (int i = 0; i < TRAIN_CADENCE_FIELDS; i++) { /* absent before --resume kept them: the defaults */
        cJSON *x = cJSON_GetObjectItemCaseSensitive(j, train_cadence[i].name);
        if (!x) continue;
        double v = cJSON_IsNumber(x) ? x->valuedouble : -1;
        if (!(v >= train_cadence[i].min && v <= train_cadence[i].max) || v != floor(v)) {
            cJSON_Delete(j);
            return err_fail(err, "training options: '%s' is not an integer in [%.0f, %.0f]", train_cadence[i].name,
                             train_cadence[i].min, train_cadence[i].max);
        }
        *train_cadence_of(o, i) = (long long)v;
    }
    cJSON_Delete(j);
    return 0;
}

/* ---- checkpoints ------------------------------------------------------------ */

static const char *const state_tensors[4] = {"params", "ema", "adam.m", "adam.v"};

int trainer_save(const trainer *tr, const char *run_dir, err_t *err) {
    char path[4096], prev[4096], stepbuf[32];
    const unet *u = tr->u;
    char *sj = schedule_to_json(&tr->sched), *cj = unet_config_to_json(&u->cfg, &tr->cls), *oj = train_opts_to_json(&tr->o);
    int rc = -1;
    if (!sj || !cj || !oj) {
        err_oom(err, "out of memory");
        goto done;
    }
    if (file_make_dirs(run_dir, err)) goto done;
    snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)tr->step);
    const char *meta[] = {"step", stepbuf, "options", oj, "config", cj, "scheduler", sj, NULL};
    int64_t P = (int64_t)u->nparams;
    st_entry e[4] = {{state_tensors[0], ST_F32, 1, {P}, u->params}, {state_tensors[1], ST_F32, 1, {P}, tr->ema},
                     {state_tensors[2], ST_F32, 1, {P}, tr->m}, {state_tensors[3], ST_F32, 1, {P}, tr->v}};
    /* The state first: it alone is what --resume reads, so a save that fails
     * later (a full disk) leaves model folders at most one save behind it. The
     * latest state becomes the previous one (a second name: the latest stays
     * whole), then the new one replaces the latest atomically. */
    if (file_path_join(path, sizeof path, run_dir, TRAIN_STATE_FILE, err) ||
        file_path_join(prev, sizeof prev, run_dir, TRAIN_STATE_PREV_FILE, err) || file_keep_previous(path, prev, err) ||
        st_write(path, e, 4, meta, err))
        goto done;
    snprintf(path, sizeof path, "%s/model", run_dir);
    if (folder_save(u, tr->ema, path, sj, &tr->cls, err)) goto done;
    snprintf(path, sizeof path, "%s/model-raw", run_dir);
    rc = folder_save(u, u->params, path, sj, &tr->cls, err);
done:
    free(sj), free(cj), free(oj);
    return rc;
}

static char *dup_meta(const st_file *f, const char *key, err_t *err) {
    const char *v = st_meta(f, key);
    if (!v) {
        err_fail(err, "%s: metadata '%s' missing (not a ddpm training state?)", f->path, key);
        return NULL;
    }
    char *s = strdup(v);
    if (!s) err_oom(err, "out of memory");
    return s;
}

/* The step, options, model config and schedule JSON of an open state. */
static int read_meta(const st_file *f, train_opts *o, int64_t *step, char **cfg_json, char **sched_json,
                     err_t *err) {
    const char *s = st_meta(f, "step");
    char *end;
    long long k = s ? strtoll(s, &end, 10) : -1;
    *cfg_json = *sched_json = NULL;
    if (!s || *end || k < 0) return err_fail(err, "%s: metadata 'step' missing or malformed", f->path);
    *step = k;
    const char *oj = st_meta(f, "options");
    if (!oj) return err_fail(err, "%s: metadata 'options' missing", f->path);
    if (train_opts_from_json(o, oj, err)) return err_wrap(err, "%s", f->path);
    if (!(*cfg_json = dup_meta(f, "config", err)) || !(*sched_json = dup_meta(f, "scheduler", err))) {
        free(*cfg_json), free(*sched_json);
        *cfg_json = *sched_json = NULL;
        return -1;
    }
    return 0;
}

int trainer_read_run(const char *state, train_opts *o, int64_t *step, char **cfg_json, char **sched_json,
                     err_t *err) {
    st_file f;
    *cfg_json = *sched_json = NULL;
    if (st_open(&f, state, err)) return -1;
    int rc = read_meta(&f, o, step, cfg_json, sched_json, err);
    st_close(&f);
    return rc;
}

/* 0 if the file at path is a whole training state: it opens, its metadata
 * read, it holds the four tensors as float32 vectors of one length, and every
 * checksum verifies (with verification on). */
static int check_state(const char *path, err_t *err) {
    st_file f;
    train_opts o;
    int64_t step;
    char *cj = NULL, *sj = NULL;
    if (st_open(&f, path, err)) return -1;
    int rc = read_meta(&f, &o, &step, &cj, &sj, err);
    for (int i = 0; i < 4 && !rc; i++) {
        const st_tensor *t = st_find(&f, state_tensors[i]), *t0 = st_find(&f, state_tensors[0]);
        if (!t || t->dtype != ST_F32 || t->ndim != 1 || t->numel != t0->numel)
            rc = err_fail(err, "%s: tensor '%s' missing or not a float32 vector of the weights' length (not a "
                                "ddpm training state?)", path, state_tensors[i]);
    }
    if (!rc) rc = st_verify(&f, err);
    free(cj), free(sj);
    st_close(&f);
    return rc;
}

int trainer_find_state(const char *run_dir, char *path, size_t n, err_t *why, err_t *err) {
    char prev[4096];
    err_t perr = {0};
    why->msg[0] = 0;
    if (file_path_join(path, n, run_dir, TRAIN_STATE_FILE, err)) return -1;
    if (check_state(path, why) == 0) return 0;
    if (file_path_join(prev, sizeof prev, run_dir, TRAIN_STATE_PREV_FILE, err)) return -1;
    if (check_state(prev, &perr) != 0)
        return err_fail(err, "no usable training state in %s: the latest: %s; the previous: %s", run_dir, why->msg,
                         perr.msg);
    return file_path_join(path, n, run_dir, TRAIN_STATE_PREV_FILE, err);
}

int trainer_restore_prev(const char *run_dir, err_t *err) {
    char path[4096], prev[4096];
    if (file_path_join(path, sizeof path, run_dir, TRAIN_STATE_FILE, err) ||
        file_path_join(prev, sizeof prev, run_dir, TRAIN_STATE_PREV_FILE, err))
        return -1;
    if (rename(prev, path) != 0) return err_fail(err, "cannot rename %s to %s: %s", prev, path, strerror(errno));
    return 0;
}

int trainer_load(trainer *tr, const char *state, err_t *err) {
    st_file f;
    if (st_open(&f, state, err)) return -1;
    int64_t P = (int64_t)tr->u->nparams;
    float *dst[4] = {tr->u->params, tr->ema, tr->m, tr->v};
    int rc = -1;
    for (int i = 0; i < 4; i++) {
        float *x = st_load_f32(&f, state_tensors[i], 1, &P, NULL, err);
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
