/* ops_prim.c -- oneDNN primitives with user-managed scratchpads on the
 * executor's workers (see dnnl_engine.h). */
#include <omp.h>
#include <string.h>

#include "dnnl_engine.h"
#include "exec/executor.h"

int ops_dnnl_engine(dnnl_engine_t *e, err_t *err) {
    *e = exec_engine(err);
    return *e ? 0 : -1;
}

int ops_prim_attr_user(dnnl_primitive_attr_t *attr, err_t *err) {
    *attr = NULL;
    DNNL_TRY(dnnl_primitive_attr_create(attr), "primitive attributes");
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user), "scratchpad mode");
    return 0;
fail:
    if (*attr) dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
    return -1;
}

int ops_prim_make(ops_prim *op, const_dnnl_primitive_desc_t pd, const char *what, err_t *err) {
    memset(op, 0, sizeof *op);
    op->what = what;
    op->threads = omp_get_max_threads();
    dnnl_engine_t engine;
    if (ops_dnnl_engine(&engine, err)) return -1;
    DNNL_TRY(dnnl_primitive_create(&op->p, pd), what);
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    op->scratch_bytes = md ? dnnl_memory_desc_get_size(md) : 0;
    if (op->scratch_bytes) {
        DNNL_TRY(dnnl_memory_create(&op->scratch, md, engine, DNNL_MEMORY_NONE), "scratchpad memory");
        exec_reserve(EXEC_SLOT_SCRATCHPAD, op->scratch_bytes);
    }
    return 0;
fail:
    ops_prim_free(op);
    return -1;
}

void ops_prim_free(ops_prim *op) {
    if (op->p) dnnl_primitive_destroy(op->p);
    if (op->scratch) dnnl_memory_destroy(op->scratch);
    op->p = NULL, op->scratch = NULL;
}

int ops_prim_run(ops_prim *op, int nargs, const dnnl_exec_arg_t *args) {
    if (op->threads > 1 && omp_in_parallel()) {
        exec_fail("oneDNN: %s made for %d threads ran inside a team of workers (it would compute part of its "
                  "result)", op->what, op->threads);
        return -1;
    }
    dnnl_stream_t stream = exec_stream();
    if (!stream) return -1;
    dnnl_exec_arg_t a[8];
    ERR_ASSERT(nargs < 8);
    memcpy(a, args, sizeof *a * nargs);
    if (op->scratch) {
        void *sp = exec_buffer(EXEC_SLOT_SCRATCHPAD, op->scratch_bytes);
        if (!sp) return -1;
        dnnl_memory_set_data_handle(op->scratch, sp);
        a[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, op->scratch};
    }
    dnnl_status_t s = dnnl_primitive_execute(op->p, stream, nargs, a);
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    if (s == dnnl_out_of_memory) {
        exec_oom("out of memory (oneDNN: %s)", op->what);
        return -1;
    }
    if (s != dnnl_success) {
        exec_fail("oneDNN: %s failed (status %d)", op->what, (int)s);
        return -1;
    }
    return 0;
}
