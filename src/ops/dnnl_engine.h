/* dnnl_engine.h -- oneDNN primitives as the operators run them (internal to
 * src/ops): made with a user-managed scratchpad, for the thread count of the
 * executor that builds them, and run on the calling worker's stream with the
 * worker's scratchpad (exec/executor.h). */
#ifndef DDPM_DNNL_ENGINE_H
#define DDPM_DNNL_ENGINE_H

#include <oneapi/dnnl/dnnl.h>

#include "core/status.h"

/* The CPU engine (exec_engine). Returns 0, or -1 with err set. */
int ops_dnnl_engine(dnnl_engine_t *e, err_t *err);

/* Runs a oneDNN call; on failure sets err (in scope; running out of memory
 * as err_oom) and jumps to `fail`. */
#define DNNL_TRY(call, what)                                                    \
    do {                                                                        \
        dnnl_status_t s_ = (call);                                              \
        if (s_ == dnnl_out_of_memory) {                                         \
            err_oom(err, "out of memory (oneDNN: %s)", what);                  \
            goto fail;                                                          \
        }                                                                       \
        if (s_ != dnnl_success) {                                               \
            err_fail(err, "oneDNN: %s failed (status %d)", what, (int)s_);     \
            goto fail;                                                          \
        }                                                                       \
    } while (0)

/* New primitive attributes with the user-managed scratchpad (the caller
 * destroys them). Returns 0, or -1 with err set. */
int ops_prim_attr_user(dnnl_primitive_attr_t *attr, err_t *err);

/* A primitive, its scratchpad's memory (handle set per run), and the OpenMP
 * thread count it was made for. */
typedef struct ops_prim {
    dnnl_primitive_t p;
    dnnl_memory_t scratch;
    size_t scratch_bytes;
    int threads;
    const char *what;
} ops_prim;

/* Makes the primitive of pd (made with ops_prim_attr_user's attributes) and
 * reserves its scratchpad in the building executor's workers. Returns 0, or
 * -1 with err set. */
int ops_prim_make(ops_prim *op, const_dnnl_primitive_desc_t pd, const char *what, err_t *err);
void ops_prim_free(ops_prim *op);

/* Runs it on the calling worker's stream with the worker's scratchpad, and
 * waits. Returns 0, or -1 after recording the failure on the worker (exec_fail):
 * a oneDNN status, no memory for the scratchpad, or a primitive made for
 * several threads running inside a team. */
int ops_prim_run(ops_prim *op, int nargs, const dnnl_exec_arg_t *args);

/* NHWC with a row stride: dims are logical NCHW, strides say where things are. */
static inline void ops_md_nhwc(dnnl_memory_desc_t *md, int B, int C, int H, int W, int ld, dnnl_data_type_t dt) {
    dnnl_dims_t dims = {B, C, H, W}, strides = {(dnnl_dim_t)H * W * ld, 1, (dnnl_dim_t)W * ld, ld};
    dnnl_memory_desc_init_by_strides(md, 4, dims, dt, strides);
}

#endif
