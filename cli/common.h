/* common.h -- what every ddpm command shares: thread setup, locating the model
 * folder inside a run folder, and reporting runtime errors. */
#ifndef DDPM_CLI_COMMON_H
#define DDPM_CLI_COMMON_H

#include <stddef.h>

#include "args.h"
#include "core/status.h"

/* The --threads flag every compute command takes (0 = every CPU we may use). */
#define ARG_THREADS(dst) {"threads", ARG_INT, (dst), "N", "CPU threads (0 = all available)", 0, 4096, NULL, 0, 0}

/* A run folder holds its model in RUN/model; a model folder is used as it is.
 * Writes the folder to use into buf. */
void cli_model_dir(const char *dir, char *buf, size_t len);

/* Prints "ddpm CMD: <err>" and returns EXIT_RUNTIME (a failure while running). */
int cli_fail(const arg_cmd *cmd, const ddpm_err *err);

/* Prints "ddpm CMD: <err>" and returns EXIT_USAGE: an input the user named
 * (model folder, data, .npy) is missing, malformed or of the wrong shape. */
int cli_bad_input(const arg_cmd *cmd, const ddpm_err *err);

/* Loads up to limit images (0 = all) of src's test split (NULL: Fashion-MNIST)
 * into d and checks they have the size of model folder dir's network.
 * Returns 0, or EXIT_USAGE after a message (d then needs no freeing). */
struct dataset;
int cli_load_images(const arg_cmd *cmd, const char *dir, const char *src, int limit, struct dataset *d);

/* Reads the noise schedule of model folder dir (its scheduler_config.json,
 * which must exist) into s. Returns 0, or EXIT_USAGE after a message. */
struct schedule;
int cli_read_schedule(const arg_cmd *cmd, const char *dir, struct schedule *s);

#endif
