/* common.c -- helpers shared by the ddpm commands (see common.h). */
#include "common.h"

#include "ddpm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "diffusion/schedule.h"
#include "dist/dist.h"
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

int cli_status(const arg_cmd *cmd, int status)
{
    fprintf(stderr, "ddpm %s: %s\n", cmd->name, ddpm_errmsg(NULL));
    return status == DDPM_ERR_ARG || status == DDPM_ERR_INPUT ? EXIT_USAGE : EXIT_RUNTIME;
}

int cli_fail(const arg_cmd *cmd, const ddpm_err *err)
{
    fprintf(stderr, "ddpm %s: %s\n", cmd->name, err->msg);
    return EXIT_RUNTIME;
}

int cli_bad_input(const arg_cmd *cmd, const ddpm_err *err)
{
    fprintf(stderr, "ddpm %s: %s\n", cmd->name, err->msg);
    return err->oom ? EXIT_RUNTIME : EXIT_USAGE;
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

void cli_share(int n, int batch, int rank, int *first, int *count)
{
    long long nb = (n + (long long)batch - 1) / batch, size = dist_size();
    long long b0 = rank * nb / size, b1 = (rank + 1) * nb / size;
    long long i0 = b0 * batch, i1 = b1 * batch < n ? b1 * batch : n;
    *first = (int)i0;
    *count = (int)(i1 - i0);
}

int cli_gather_share(int failed, const void *mine, void *all, int n, int batch, size_t item)
{
    size_t *bytes = malloc(sizeof *bytes * (size_t)dist_size());
    if (!bytes && !failed) fprintf(stderr, "ddpm: out of memory\n");
    if (dist_or(failed || !bytes)) {
        free(bytes);
        return EXIT_RUNTIME;
    }
    for (int r = 0, first, count; r < dist_size(); r++) {
        cli_share(n, batch, r, &first, &count);
        bytes[r] = (size_t)count * item;
    }
    dist_gather(mine, all, bytes);
    free(bytes);
    return 0;
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

int cli_sampler_opts(const arg_cmd *cmd, const cli_sampler *a, const schedule *s, sampler_opts *o)
{
    ddpm_err err = {0};
    *o = (sampler_opts){.eta = (float)a->eta, .seed = (uint64_t)a->seed, .raw = a->raw,
                        .threshold_ratio = (float)a->threshold, .threshold_max = (float)a->threshold_max};
    if (sampler_parse(a->sampler, &o->kind, &err)) {
        args_error(cmd, "--sampler: %s", err.msg);
        return EXIT_USAGE;
    }
    static const char *const modes[] = {"config", "none", "clip", "threshold"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(a->x0, modes[i])) o->x0 = (x0_mode)i;
    if (!strcmp(a->x0, "auto")) o->x0 = o->kind == SAMPLER_DDPM ? X0_NONE : X0_CONFIG;
    if (strcmp(a->spacing, "config")) o->spacing = a->spacing;
    if (a->steps) {
        o->steps = (int)a->steps;
    } else {
        o->steps = 20 < s->T ? 20 : o->kind == SAMPLER_DPMPP ? s->T - 1 : s->T;
    }
    if (o->steps > s->T) {
        args_error(cmd, "--steps %d is out of range [1, %d] (the schedule's num_train_timesteps)", o->steps, s->T);
        return EXIT_USAGE;
    }
    if (o->kind != SAMPLER_DDIM && a->eta != 0) {
        args_error(cmd, "--eta applies to --sampler ddim only");
        return EXIT_USAGE;
    }
    if ((a->threshold || a->threshold_max) && o->x0 != X0_THRESHOLD && !(o->x0 == X0_CONFIG && s->thresholding)) {
        args_error(cmd, "--threshold and --threshold-max apply to --x0 threshold only");
        return EXIT_USAGE;
    }
    if (sampler_check(s, o, &err)) {
        args_error(cmd, "%s", err.msg);
        return EXIT_USAGE;
    }
    return 0;
}

void cli_sampler_desc(const sampler_opts *o, const schedule *s, char *buf, size_t len)
{
    x0_mode m = o->x0 != X0_CONFIG ? o->x0 : s->thresholding ? X0_THRESHOLD : s->clip_sample ? X0_CLIP : X0_NONE;
    char x0[64];
    if (m == X0_THRESHOLD)
        snprintf(x0, sizeof x0, "threshold %g max %g", (double)(o->threshold_ratio > 0 ? o->threshold_ratio : s->threshold_ratio),
                 (double)(o->threshold_max > 0 ? o->threshold_max : s->sample_max));
    else
        snprintf(x0, sizeof x0, "%s", m == X0_CLIP ? "clip" : "none");
    snprintf(buf, len, "%s, %d steps%s, %s spacing, x0 %s%s", sampler_name(o->kind), o->steps,
             o->kind == SAMPLER_DDIM && o->eta > 0 ? ", eta > 0" : "", o->spacing ? o->spacing : s->timestep_spacing, x0,
             o->raw ? ", raw" : "");
}

/* Parses "a,b,..." (names of cls, or indices < nclasses) into pick[*m]. */
static int parse_class_list(const arg_cmd *cmd, const char *list, int nclasses, const unet_classes *cls,
                            int32_t *pick, int *m)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    *m = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int j = 0; j < cls->n && k < 0; j++)
            if (!strcmp(cls->names[j], tok)) k = j;
        char *end;
        long v = strtol(tok, &end, 10);
        if (k < 0 && !*end && v >= 0 && v < nclasses) k = (int)v;
        if (k < 0) {
            if (cls->n)
                args_error(cmd, "--class: no class '%s' (the model's %d: %s, %s, ..., or their indices 0..%d)", tok,
                           nclasses, cls->names[0], cls->n > 1 ? cls->names[1] : "", nclasses - 1);
            else
                args_error(cmd, "--class: no class '%s' (the model's classes are 0..%d)", tok, nclasses - 1);
            return EXIT_USAGE;
        }
        if (*m == CLI_MAX_PICK) {
            args_error(cmd, "--class: at most %d classes", CLI_MAX_PICK);
            return EXIT_USAGE;
        }
        pick[(*m)++] = k;
    }
    if (!*m) {
        args_error(cmd, "--class: empty list");
        return EXIT_USAGE;
    }
    return 0;
}

int cli_classes(const arg_cmd *cmd, const char *dir, const unet_config *cfg, const char *list, int32_t *pick,
                int *npick, int *nclasses, int *null_class)
{
    ddpm_err err = {0};
    unet_classes cls;
    if (model_read_classes(dir, &cls, &err)) return cli_bad_input(cmd, &err);
    *null_class = unet_null_class(cfg, &cls);
    *nclasses = *null_class >= 0 ? *null_class : cfg->num_class_embeds;
    *npick = 0;
    int rc = 0;
    if (list && cfg->num_class_embeds <= 0) {
        args_error(cmd, "--class needs a class-conditional model (ddpm train --classes); %s is unconditional", dir);
        rc = EXIT_USAGE;
    } else if (list) {
        rc = parse_class_list(cmd, list, *nclasses, &cls, pick, npick);
    }
    unet_classes_free(&cls);
    return rc;
}
