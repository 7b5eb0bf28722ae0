/* log.h -- notes for the user from inside the library: a long set-up and how
 * long it took, a fallback taken (a corrupt state passed over). The public
 * API routes them to the function of ddpm_set_log, on rank 0 only; without
 * one, they are dropped. */
#ifndef DDPM_LOG_H
#define DDPM_LOG_H

typedef enum log_level { LOG_INFO = 0, LOG_WARN = 1 } log_level;

typedef void (*log_sink)(void *ctx, log_level level, const char *msg);

/* Where log_note's messages go from now on (NULL: nowhere). Not thread-safe. */
void log_set_sink(log_sink fn, void *ctx);

/* One note, formatted as printf. */
void log_note(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
