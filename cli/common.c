/* common.c -- helpers shared by the ddpm commands (see common.h). */
#include "common.h"

#include <stdio.h>
#include <sys/stat.h>

void cli_model_dir(const char *dir, char *buf, size_t len)
{
    struct stat st;
    snprintf(buf, len, "%s/model/config.json", dir);
    if (stat(buf, &st) == 0)
        snprintf(buf, len, "%s/model", dir);
    else
        snprintf(buf, len, "%s", dir);
}

int cli_fail(const arg_cmd *cmd, const ddpm_err *err)
{
    fprintf(stderr, "ddpm %s: %s\n", cmd->name, err->msg);
    return EXIT_RUNTIME;
}

int cli_bad_input(const arg_cmd *cmd, const ddpm_err *err)
{
    fprintf(stderr, "ddpm %s: %s\n", cmd->name, err->msg);
    return EXIT_USAGE;
}
