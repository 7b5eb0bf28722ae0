/* dnnl_engine.h -- the one oneDNN CPU engine and stream every operator shares
 * (internal to src/ops). */
#ifndef DDPM_DNNL_ENGINE_H
#define DDPM_DNNL_ENGINE_H

#include <oneapi/dnnl/dnnl.h>

#include "core/status.h"

/* Creates them on first use. Returns 0, or -1 with err set. */
int ops_dnnl_engine(dnnl_engine_t *e, dnnl_stream_t *s, ddpm_err *err);

#endif
