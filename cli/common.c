/* common.c -- helpers shared by the ddpm commands (see common.h). */
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddpm.h"

int cli_status(const arg_cmd *cmd, int status)
{
    fprintf(stderr, "ddpm %s: %s\n", cmd->name, ddpm_errmsg(NULL));
    return status == DDPM_ERR_ARG || status == DDPM_ERR_INPUT ? EXIT_USAGE : EXIT_RUNTIME;
}

/* The --x0 word as a ddpm_x0 (the flag table allows only these). */
static ddpm_x0 x0_of(const char *w)
{
    static const char *const words[] = {"auto", "config", "none", "clip", "threshold"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(w, words[i])) return (ddpm_x0)i;
    return DDPM_X0_AUTO;
}

/* "LO,HI" (finite LO >= 0, HI > LO, HI may be inf) or "all" (0, inf) into gi; -1 otherwise. */
static int parse_interval(const char *s, float gi[2])
{
    if (!strcmp(s, "all")) {
        gi[0] = 0, gi[1] = INFINITY;
        return 0;
    }
    char *end;
    const double lo = strtod(s, &end);
    if (end == s || *end != ',') return -1;
    const char *h = end + 1;
    const double hi = strtod(h, &end);
    if (end == h || *end || !isfinite(lo) || isnan(hi) || !(lo >= 0 && hi > lo)) return -1;
    gi[0] = (float)lo, gi[1] = (float)hi;
    return 0;
}

int cli_sample_options(const arg_cmd *cmd, const cli_sampler *a, const ddpm_model *m, ddpm_sample_options *o)
{
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    const int T = mi.num_train_timesteps;
    if (ddpm_sampler_parse(a->sampler, &o->sampler)) {
        args_error(cmd, "--sampler: %s", ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    o->eta = (float)a->eta, o->seed = (uint64_t)a->seed, o->raw = a->raw;
    o->guidance_rescale = (float)a->guidance_rescale;
    if (a->guidance_interval && parse_interval(a->guidance_interval, o->guidance_interval)) {
        args_error(cmd, "--guidance-interval %s: give LO,HI (noise levels, 0 <= LO < HI; HI may be inf) or all",
                   a->guidance_interval);
        return EXIT_USAGE;
    }
    o->threshold_ratio = (float)a->threshold, o->threshold_max = (float)a->threshold_max;
    o->x0 = x0_of(a->x0);
    o->spacing = strcmp(a->spacing, "config") ? a->spacing : NULL;
    o->steps = (int)a->steps; /* 0: the default */
    o->precision = a->precision;
    if (o->steps > T) {
        args_error(cmd, "--steps %d is out of range [1, %d] (the schedule's num_train_timesteps)", o->steps, T);
        return EXIT_USAGE;
    }
    if (o->sampler != DDPM_SAMPLER_DDIM && a->eta != 0) {
        args_error(cmd, "--eta applies to --sampler ddim only");
        return EXIT_USAGE;
    }
    /* The sampler fields alone: the classes are the caller's (checked by ddpm_sample). */
    static const int32_t class0 = 0;
    ddpm_sample_options c = *o, plain;
    c.classes = mi.num_class_embeds > 0 ? &class0 : NULL, c.guidance = 1;
    plain = c; /* thresholding asked for by the flags or the config */
    plain.threshold_ratio = plain.threshold_max = 0;
    if ((a->threshold || a->threshold_max) && ddpm_sample_check(m, &c) && !ddpm_sample_check(m, &plain)) {
        args_error(cmd, "--threshold and --threshold-max apply to --x0 threshold only");
        return EXIT_USAGE;
    }
    if (ddpm_sample_check(m, &c)) {
        args_error(cmd, "%s", ddpm_errmsg(NULL));
        return EXIT_USAGE;
    }
    return 0;
}

int cli_pick_classes(const arg_cmd *cmd, const ddpm_model *m, const char *list, int32_t *pick, int *npick)
{
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    *npick = 0;
    if (!list) return 0;
    if (mi.num_class_embeds <= 0) {
        args_error(cmd, "--class needs a class-conditional model (ddpm train --classes); %s is unconditional", mi.dir);
        return EXIT_USAGE;
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = ddpm_model_find_class(m, tok);
        if (k < 0) {
            if (mi.has_class_names)
                args_error(cmd, "--class: no class '%s' (the model's %d: %s, %s, ..., or their indices 0..%d)", tok,
                           mi.num_classes, ddpm_model_class_name(m, 0),
                           mi.num_classes > 1 ? ddpm_model_class_name(m, 1) : "", mi.num_classes - 1);
            else
                args_error(cmd, "--class: no class '%s' (the model's classes are 0..%d)", tok, mi.num_classes - 1);
            return EXIT_USAGE;
        }
        if (*npick == CLI_MAX_PICK) {
            args_error(cmd, "--class: at most %d classes", CLI_MAX_PICK);
            return EXIT_USAGE;
        }
        pick[(*npick)++] = k;
    }
    if (!*npick) {
        args_error(cmd, "--class: empty list");
        return EXIT_USAGE;
    }
    return 0;
}

int cli_open_images(const arg_cmd *cmd, const ddpm_model *m, const char *src, int limit, ddpm_dataset **d)
{
    ddpm_model_info mi;
    ddpm_dataset_info di;
    ddpm_model_get_info(m, &mi);
    int st = ddpm_dataset_load(src, DDPM_SPLIT_TEST, limit, d);
    if (st) {
        args_error(cmd, "--data: %s", ddpm_errmsg(NULL));
        return st == DDPM_ERR_NOMEM ? EXIT_RUNTIME : EXIT_USAGE;
    }
    ddpm_dataset_get_info(*d, &di);
    if (di.height != mi.sample_size || di.width != mi.sample_size || di.channels != mi.in_channels) {
        args_error(cmd, "the data are %dx%dx%d images but the model takes %dx%dx%d", di.height, di.width,
                   di.channels, mi.sample_size, mi.sample_size, mi.in_channels);
        ddpm_dataset_free(*d);
        *d = NULL;
        return EXIT_USAGE;
    }
    return 0;
}

int cli_status_all(const arg_cmd *cmd, int status)
{
    int rc = cli_status(cmd, status);
    fflush(stderr);
    ddpm_proc_or(0);
    return rc;
}
