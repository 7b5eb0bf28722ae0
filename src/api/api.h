/* api.h -- what the implementation of the public API (include/ddpm.h,
 * src/api/) shares: the common head of every handle, which carries the
 * message of its last failure, and the mapping from the library's internal
 * errors (core/status.h: a message, and whether memory ran out) to the public
 * status codes.
 *
 * Every public function that fails goes through api_fail or api_status: the
 * message lands in the handle (when there is one) and in the calling thread's
 * last message (ddpm_errmsg(NULL)), and the status is returned. */
#ifndef DDPM_API_INTERNAL_H
#define DDPM_API_INTERNAL_H

#include <stdint.h>

#include "ddpm.h"
#include "core/status.h"

#define API_MAGIC 0x4444504du /* "DDPM" */

/* The first member of every public handle struct. */
typedef struct api_obj {
    unsigned magic;
    char msg[sizeof(((err_t *)0)->msg)];
} api_obj;

/* Starts h's head (called by every constructor). */
void api_obj_init(api_obj *h);

/* Records a failure: formats the message into h (may be NULL) and the
 * thread's last message; returns status. */
int api_fail(api_obj *h, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the internal error e as status -- or as DDPM_ERR_NOMEM when e says
 * memory ran out -- and returns that. */
int api_status(api_obj *h, int status, const err_t *e);

/* The precision named `name` (NULL: fp32) as exec/executor.h numbers it, or
 * -1 after api_fail(h, DDPM_ERR_ARG, ...): an unknown name, or "bf16" on a
 * CPU that cannot run it (the message says what is missing). */
int api_precision(api_obj *h, const char *name);

/* n images of HWC bytes p into CHW floats o (=): p / 127.5 - 1, the public
 * layout and range (image.c). */
void api_bytes_to_nchw(float *o, const uint8_t *p, int n, int C, size_t HW);

/* Checks a required pointer argument: api_fail(h, DDPM_ERR_ARG, "<fn>: <what> is NULL"). */
#define API_REQUIRE(h, p)                                                                    \
    do {                                                                                     \
        if (!(p)) return api_fail((h), DDPM_ERR_ARG, "%s: %s is NULL", __func__, #p);        \
    } while (0)

#endif
