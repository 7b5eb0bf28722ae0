/* nll.c -- the public likelihood call (include/ddpm.h, "likelihood"): the
 * variational bound of diffusion/bound.h over a batch of images, every term,
 * split in whole batches over the MPI ranks and gathered on rank 0. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/bound.h"
#include "dist/dist.h"
#include "exec/executor.h"
#include "model/denoiser.h"
#include "ops/ops.h"

/* Progress over this rank's share: network evaluations of the finished
 * batches (base) plus the current one's. bound_terms cannot be stopped
 * inside a batch: a cancel ends the call after it. */
typedef struct nll_watch {
    ddpm_progress_fn fn;
    void *ctx;
    long long base, total;
    int cancelled;
} nll_watch;

static void nll_progress(void *ctx, int done, int total)
{
    nll_watch *w = ctx;
    (void)total;
    if (w->fn && !w->cancelled && w->fn(w->ctx, w->base + done, w->total)) w->cancelled = 1;
}

/* The terms of this rank's images [first, first + count) in the batches of B
 * a plain run uses: terms[count, T + 1], mse[count, T]. */
static int nll_share(ddpm_model *m, unet *u, int first, int count, int B, const float *x, const int32_t *labels,
                     uint64_t seed, double *terms, double *mse, ddpm_progress_fn fn, void *ctx)
{
    const int T = m->sched.T, C = m->cfg.in_channels, HW = m->cfg.sample_size * m->cfg.sample_size;
    const size_t D = api_model_image_size(m);
    err_t err = {0};
    float *xb = mem_alloc(sizeof(float) * (size_t)B * D, &err);
    denoiser d;
    unet_labelled l = {0};
    if (!xb || unet_labelled_denoiser(&d, &l, u, &err)) {
        free(xb);
        return api_status(&m->head, DDPM_ERR_NOMEM, &err);
    }
    nll_watch w = {dist_rank() == 0 ? fn : NULL, ctx, 0, (long long)((count + B - 1) / B) * T, 0};
    int st = DDPM_OK;
    for (int i = 0; i < count && !st; i += B) {
        const int nb = count - i < B ? count - i : B, g = first + i;
        ops_nchw_to_nhwc(xb, x + (size_t)g * D, nb, C, HW);
        l.y = labels ? labels + g : NULL;
        if (bound_terms(&d, &m->sched, xb, nb, g, seed, terms + (size_t)i * (T + 1), mse + (size_t)i * T,
                        nll_progress, &w, &err))
            st = api_status(&m->head, DDPM_ERR_NONFINITE, &err);
        else if (w.cancelled)
            st = api_fail(&m->head, DDPM_ERR_CANCELLED, "ddpm_nll: cancelled");
        w.base += T;
    }
    unet_labelled_free(&l);
    free(xb);
    return st;
}

/* The outputs of the gathered terms[n, T + 1] and mse[n, T] (rank 0). */
static void nll_outputs(const ddpm_model *m, int n, const double *terms, const double *mse, double *bpd,
                        double *terms_out, double *mse_out)
{
    const int T = m->sched.T;
    const double to_bpd = 1.0 / ((double)api_model_image_size(m) * log(2.0));
    for (int i = 0; bpd && i < n; i++) {
        double tot = 0;
        for (int t = 0; t <= T; t++) tot += terms[(size_t)i * (T + 1) + t];
        bpd[i] = tot * to_bpd;
    }
    if (terms_out) memcpy(terms_out, terms, sizeof(double) * (size_t)n * (T + 1));
    if (mse_out) memcpy(mse_out, mse, sizeof(double) * (size_t)n * T);
}

int ddpm_nll(ddpm_model *m, int n, const float *x, const int32_t *labels, int batch, uint64_t seed, double *bpd,
             double *terms, double *mse, ddpm_progress_fn progress, void *progress_ctx)
{
    API_REQUIRE(NULL, m);
    API_REQUIRE(&m->head, x);
    const int T = m->sched.T, root = dist_rank() == 0;
    int st = DDPM_OK, first = 0, count = 0, B = batch > 0 ? batch : 64;
    double *tb = NULL, *mb = NULL;
    err_t err = {0};
    unet *u = NULL;
    if (n < 1) {
        st = api_fail(&m->head, DDPM_ERR_ARG, "ddpm_nll: n = %d, need at least 1 image", n);
    } else if (batch < 0) {
        st = api_fail(&m->head, DDPM_ERR_ARG, "ddpm_nll: batch %d is negative", batch);
    } else if (!(st = api_model_check_labels(m, "ddpm_nll", n, labels))) {
        B = B < n ? B : n;
        dist_share(n, B, dist_rank(), &first, &count);
        /* Rank 0 holds every image's terms, its own share first; the other ranks their share. */
        const size_t held = root ? (size_t)n : (size_t)count + 1;
        tb = mem_alloc(sizeof(double) * held * (T + 1), &err);
        mb = mem_alloc(sizeof(double) * held * T, &err);
        if (!tb || !mb || api_model_net(m, B, EXEC_FP32, &u, &err)) st = api_status(&m->head, DDPM_ERR_NOMEM, &err);
    }
    /* Setting up may fail on one rank alone: every rank learns it before the evaluation. */
    if ((st = api_model_agree(m, "ddpm_nll", st))) goto done;
    st = nll_share(m, u, first, count, B, x, labels, seed, tb, mb, progress, progress_ctx);
    if ((st = api_model_agree(m, "ddpm_nll", st))) goto done;
    /* On rank 0 the gathers are in place: its share already lies at the start. */
    if (dist_gather_share(tb, tb, n, B, sizeof(double) * (T + 1)) ||
        dist_gather_share(mb, mb, n, B, sizeof(double) * T)) {
        st = api_fail(&m->head, DDPM_ERR_NOMEM, "ddpm_nll: out of memory");
        goto done;
    }
    if (root) nll_outputs(m, n, tb, mb, bpd, terms, mse);
done:
    free(tb), free(mb);
    return st;
}
