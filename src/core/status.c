/* status.c -- error messages, always-on asserts and checked allocation. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_error(err_t *err, int oom, const char *fmt, va_list ap) {
    if (!err) return -1;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->oom = oom;
    return -1;
}

int err_fail(err_t *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error(err, 0, fmt, ap);
    va_end(ap);
    return -1;
}

int err_oom(err_t *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error(err, 1, fmt, ap);
    va_end(ap);
    return -1;
}

int err_wrap(err_t *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix), cap = sizeof err->msg - 1;
    if (n > cap) n = cap;
    memcpy(err->msg, prefix, n);
    size_t k = n + 2 <= cap ? 2 : cap - n;
    memcpy(err->msg + n, ": ", k);
    size_t m = strlen(old);
    if (m > cap - n - k) m = cap - n - k;
    memcpy(err->msg + n + k, old, m);
    err->msg[n + k + m] = '\0';
    return -1;
}

void err_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "ddpm: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}

void *mem_alloc(size_t n, err_t *err) {
    void *p = malloc(n ? n : 1);
    if (!p) err_oom(err, "out of memory allocating %zu bytes", n);
    return p;
}

void *mem_calloc(size_t n, size_t size, err_t *err) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) err_oom(err, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

float *mem_alloc_floats(size_t n, err_t *err) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        err_oom(err, "out of memory allocating %zu floats", n);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}
