/* common.c -- helpers shared by the ddpm commands (see common.h). */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "diffusion/schedule.h"
#include "io/modelfolder.h"

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

int cli_read_schedule(const arg_cmd *cmd, const char *dir, schedule *s)
{
    ddpm_err err = {0};
    char *sj = NULL;
    if (model_read_scheduler(dir, &sj, &err)) return cli_bad_input(cmd, &err);
    if (!sj) {
        args_error(cmd, "%s has no scheduler_config.json: this needs the model's noise schedule", dir);
        return EXIT_USAGE;
    }
    int bad = schedule_from_json(s, sj, &err);
    free(sj);
    return bad ? cli_bad_input(cmd, &err) : 0;
}

int cli_load_images(const arg_cmd *cmd, const char *dir, const char *src, int limit, dataset *d)
{
    ddpm_err err = {0};
    unet_config c;
    if (model_read_config(dir, &c, &err)) return cli_bad_input(cmd, &err);
    if (dataset_load(d, src, DATASET_TEST, limit, &err)) {
        args_error(cmd, "--data: %s", err.msg);
        return EXIT_USAGE;
    }
    if (d->h != c.sample_size || d->w != c.sample_size || d->c != c.in_channels) {
        args_error(cmd, "the data are %dx%dx%d images but the model takes %dx%dx%d", d->h, d->w, d->c,
                   c.sample_size, c.sample_size, c.in_channels);
        dataset_free(d);
        return EXIT_USAGE;
    }
    return 0;
}
