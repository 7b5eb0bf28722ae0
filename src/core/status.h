/* status.h -- error reporting for the whole library.
 *
 * Library functions never exit on anything a user can cause. They return 0 on
 * success and -1 on failure, after writing a one-line human message into the
 * caller's err_t. Internal invariants (programming errors) use ERR_ASSERT,
 * which is always on and prints file:line before aborting.
 */
#ifndef DDPM_STATUS_H
#define DDPM_STATUS_H

#include <stddef.h>

typedef struct err_t {
    char msg[1024];
    int oom;   /* the failure is an allocation that did not succeed (err_oom), not a bad input */
} err_t;

/* Formats a message into err (if err is not NULL) and returns -1. */
int err_fail(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same for running out of memory: also sets err->oom, so that callers can
 * tell it from a bad input (the CLI exits 1 for it, 2 for bad input). */
int err_oom(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes err->msg with "<fmt>: " (for adding context while unwinding); returns -1. */
int err_wrap(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void err_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#define ERR_ASSERT(c) ((c) ? (void)0 : err_assert_fail(#c, __FILE__, __LINE__))

/* malloc/calloc that report failure through err (returns NULL on failure). */
void *mem_alloc(size_t n, err_t *err);
void *mem_calloc(size_t n, size_t size, err_t *err);

/* 64-byte aligned allocation, pre-faulted (touching every page once now so the
 * hot loop never page-faults; page faults are very expensive in this VM). Free
 * with free(). */
float *mem_alloc_floats(size_t n, err_t *err);

#endif
