/* unet_pass.h -- a U-Net training pass with a given output gradient, for the
 * tests: the gradient of L = sum(dout * out) for a fixed dout. */
#ifndef DDPM_TEST_UNET_PASS_H
#define DDPM_TEST_UNET_PASS_H

#include <string.h>

#include "check.h"
#include "model/unet.h"

typedef struct fixed_dout {
    const float *dout; /* [B, H, W, out_channels] */
    size_t per;        /* floats per image */
} fixed_dout;

static void fixed_dout_grad(void *ctx, int image0, int n, const float *out, float *dout) {
    const fixed_dout *f = ctx;
    (void)out;
    memcpy(dout, f->dout + (size_t)image0 * f->per, sizeof(float) * f->per * (size_t)n);
}

/* out (=) forward(x, t); grads (+=), dx (=, may be NULL) from d L / d out = dout. */
static inline void pass_with_dout(unet *u, float *out, float *dx, const float *x, const float *t, const int32_t *y,
                                  const unet_dropout *dp, const float *dout) {
    fixed_dout f = {dout, (size_t)u->cfg.sample_size * u->cfg.sample_size * u->cfg.out_channels};
    err_t err;
    CHECK(unet_train_pass(u, out, dx, x, t, y, dp, fixed_dout_grad, &f, &err) == 0, "%s", err.msg);
}

#endif
