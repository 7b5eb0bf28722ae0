/* dnnl_engine.h -- the one oneDNN CPU engine and stream every operator shares
 * (internal to src/ops). */
#ifndef DDPM_DNNL_ENGINE_H
#define DDPM_DNNL_ENGINE_H

#include <oneapi/dnnl/dnnl.h>

#include "core/status.h"

/* Creates them on first use. Returns 0, or -1 with err set. */
int ops_dnnl_engine(dnnl_engine_t *e, dnnl_stream_t *s, ddpm_err *err);

/* Runs a oneDNN call; on failure sets err (in scope; running out of memory
 * as ddpm_oom) and jumps to `fail`. */
#define DNNL_TRY(call, what)                                                    \
    do {                                                                        \
        dnnl_status_t s_ = (call);                                              \
        if (s_ == dnnl_out_of_memory) {                                         \
            ddpm_oom(err, "out of memory (oneDNN: %s)", what);                  \
            goto fail;                                                          \
        }                                                                       \
        if (s_ != dnnl_success) {                                               \
            ddpm_fail(err, "oneDNN: %s failed (status %d)", what, (int)s_);     \
            goto fail;                                                          \
        }                                                                       \
    } while (0)

/* NHWC with a row stride: dims are logical NCHW, strides say where things are. */
static inline void dnnl_md_nhwc(dnnl_memory_desc_t *md, int B, int C, int H, int W, int ld) {
    dnnl_dims_t dims = {B, C, H, W}, strides = {(dnnl_dim_t)H * W * ld, 1, (dnnl_dim_t)W * ld, ld};
    dnnl_memory_desc_init_by_strides(md, 4, dims, dnnl_f32, strides);
}

#endif
