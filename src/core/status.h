/* status.h -- error reporting for the whole library.
 *
 * Library functions never exit on anything a user can cause. They return 0 on
 * success and -1 on failure, after writing a one-line human message into the
 * caller's ddpm_err. Internal invariants (programming errors) use DDPM_ASSERT,
 * which is always on and prints file:line before aborting.
 */
#ifndef DDPM_STATUS_H
#define DDPM_STATUS_H

#include <stddef.h>

typedef struct ddpm_err {
    char msg[1024];
    int oom;   /* the failure is an allocation that did not succeed (ddpm_oom), not a bad input */
} ddpm_err;

/* Formats a message into err (if err is not NULL) and returns -1. */
int ddpm_fail(ddpm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same for running out of memory: also sets err->oom, so that callers can
 * tell it from a bad input (the CLI exits 1 for it, 2 for bad input). */
int ddpm_oom(ddpm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes err->msg with "<fmt>: " (for adding context while unwinding); returns -1. */
int ddpm_wrap(ddpm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void ddpm_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#define DDPM_ASSERT(c) ((c) ? (void)0 : ddpm_assert_fail(#c, __FILE__, __LINE__))

/* malloc/calloc that report failure through err (returns NULL on failure). */
void *ddpm_malloc(size_t n, ddpm_err *err);
void *ddpm_calloc(size_t n, size_t size, ddpm_err *err);

/* 64-byte aligned allocation, pre-faulted (touching every page once now so the
 * hot loop never page-faults; page faults are very expensive in this VM). Free
 * with free(). */
float *ddpm_alloc_floats(size_t n, ddpm_err *err);

#endif
