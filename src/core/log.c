/* log.c -- the library's notes to its user (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static log_sink sink;
static void *sink_ctx;

void log_set_sink(log_sink fn, void *ctx)
{
    sink = fn;
    sink_ctx = ctx;
}

void log_note(log_level level, const char *fmt, ...)
{
    if (!sink) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sink(sink_ctx, level, msg);
}
