/* api.c -- the public API's basics (include/ddpm.h): version, status names,
 * error messages, the log function, settings and the process group. */
#include "api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/log.h"
#include "core/threads.h"
#include "dist/dist.h"
#include "exec/executor.h"
#include "io/safetensors.h"
#include "ops/ops.h"

static _Thread_local char last_msg[sizeof(((api_obj *)0)->msg)];
static ddpm_log_fn log_fn;

const char *ddpm_version(void) { return DDPM_VERSION; }

int ddpm_version_number(void) { return DDPM_VERSION_NUMBER; }

const char *ddpm_status_name(int status)
{
    static const char *const names[] = {"ok", "invalid argument", "bad input", "out of memory",
                                        "cannot write", "not finite", "cancelled", "runtime error"};
    return status >= 0 && status < (int)(sizeof names / sizeof names[0]) ? names[status] : "unknown status";
}

const char *ddpm_errmsg(const void *handle)
{
    if (!handle) return last_msg;
    const api_obj *h = handle;
    return h->magic == API_MAGIC ? h->msg : "not a ddpm handle";
}

void api_obj_init(api_obj *h)
{
    h->magic = API_MAGIC;
    h->msg[0] = 0;
}

static int record(api_obj *h, int status, const char *msg)
{
    snprintf(last_msg, sizeof last_msg, "%s", msg);
    if (h) snprintf(h->msg, sizeof h->msg, "%s", msg);
    return status;
}

int api_fail(api_obj *h, int status, const char *fmt, ...)
{
    char msg[sizeof last_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return record(h, status, msg);
}

int api_status(api_obj *h, int status, const err_t *e)
{
    return record(h, e->oom ? DDPM_ERR_NOMEM : status, e->msg[0] ? e->msg : ddpm_status_name(status));
}

/* The library's notes (core/log.h) to the user's log function, on rank 0. */
static void forward_note(void *ctx, log_level level, const char *msg)
{
    if (dist_rank() == 0) log_fn(ctx, level == LOG_WARN ? DDPM_LOG_WARN : DDPM_LOG_INFO, msg);
}

void ddpm_set_log(ddpm_log_fn fn, void *ctx)
{
    log_fn = fn;
    log_set_sink(fn ? forward_note : NULL, ctx);
}

int ddpm_set_threads(int n) { return thread_set_count(n); }

const char *ddpm_cpu_level(void) { return cpu_level_name(cpu_level()); }

double ddpm_now(void) { return clock_now(); }

void ddpm_set_verify(int on) { st_set_verify(on); }

int ddpm_set_conv_algorithm(const char *name)
{
    int alg = name ? ops_conv_algorithm_parse(name) : -1;
    if (alg < 0)
        return api_fail(NULL, DDPM_ERR_ARG, "ddpm_set_conv_algorithm: \"%s\" is not measure, direct, winograd or "
                        "onednn-winograd", name ? name : "(null)");
    ops_conv_set_algorithm(alg);
    return DDPM_OK;
}

int api_precision(api_obj *h, const char *name)
{
    int p = name ? exec_precision_parse(name) : EXEC_FP32;
    err_t e = {0};
    if (p < 0) return api_fail(h, DDPM_ERR_ARG, "precision '%s': fp32, bf16 or bf16-emulated", name), -1;
    if (p == EXEC_BF16 && exec_bf16_check(&e)) return api_status(h, DDPM_ERR_ARG, &e), -1;
    return p;
}

void ddpm_free(void *p) { free(p); }

int ddpm_proc_init(void)
{
    err_t e = {0};
    return dist_init(&e) ? api_status(NULL, DDPM_ERR_RUNTIME, &e) : DDPM_OK;
}

int ddpm_proc_rank(void) { return dist_rank(); }

int ddpm_proc_size(void) { return dist_size(); }

int ddpm_proc_or(int v) { return dist_or(v); }

void ddpm_proc_abort(int status) { dist_abort(status); }

void ddpm_proc_finalize(void) { dist_finalize(); }
