/* cmd_info.c -- `ddpm info`: what a model folder or run folder holds (network
 * shape, parameter count, cost per image, noise schedule, training step). */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "ddpm.h"

static void print_ints(const char *label, const int *v, int n)
{
    printf("%-22s [", label);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", v[i]);
    printf("]\n");
}

/* The class line of a conditional model. */
static void print_classes(const ddpm_model *m, const ddpm_model_info *mi)
{
    printf("%-22s %d class embeddings%s", "classes", mi->num_class_embeds,
           mi->null_class >= 0 ? " (the last: the null class, for guidance)" : " (no null class)");
    /* The named classes: all but the null class (a model has names for all or none). */
    int named = !mi->has_class_names ? 0 : mi->null_class >= 0 ? mi->null_class : mi->num_class_embeds;
    for (int k = 0; k < named; k++) printf("%s%s", k ? ", " : ": ", ddpm_model_class_name(m, k));
    printf("\n");
}

int cmd_info(int argc, char **argv)
{
    const char *model = NULL;
    int no_verify = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder or run folder", 0, 0, NULL, 1, 0},
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"info", "Summarise a model folder (diffusers layout) or a training run folder.", NULL, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_set_verify(!no_verify);

    ddpm_model *m = NULL;
    ddpm_model_info mi;
    int st = ddpm_model_load(model, &m); /* the weights fit the config (and their checksums) */
    if (st) return cli_status(&cmd, st);
    ddpm_model_get_info(m, &mi);
    printf("%-22s %s\n", "model folder", mi.dir);
    printf("%-22s %d x %d x %d -> %d channels\n", "image", mi.sample_size, mi.sample_size, mi.in_channels,
           mi.out_channels);
    print_ints("block_out_channels", mi.block_out_channels, mi.levels);
    print_ints("attention (down)", mi.down_attention, mi.levels);
    printf("%-22s %d\n", "layers_per_block", mi.layers_per_block);
    printf("%-22s %d groups, eps %g\n", "group norm", mi.norm_groups, (double)(float)mi.norm_eps);
    printf("%-22s %g\n", "dropout", (double)(float)mi.dropout);
    if (mi.num_class_embeds > 0) print_classes(m, &mi);
    printf("%-22s %zu\n", "parameters", mi.num_parameters);
    printf("%-22s %.3f GFLOP per image\n", "forward cost", mi.flops_per_image / 1e9);
    if (mi.has_scheduler)
        printf("%-22s %s, T = %d, beta %g .. %g, variance %s, predicts %s\n", "noise schedule", mi.beta_schedule,
               mi.num_train_timesteps, mi.beta_start, mi.beta_end, mi.variance_type, mi.prediction_type);
    else
        printf("%-22s none (scheduler_config.json absent)\n", "noise schedule");

    const char *step = NULL, *opts = NULL;
    int rc = 0;
    if ((st = ddpm_model_run_state(m, &step, &opts))) {
        rc = cli_status(&cmd, st);
    } else if (step || opts) {
        printf("%-22s %s\n", "training step", step ? step : "?");
        if (opts) printf("%-22s %s\n", "training options", opts);
    }
    ddpm_model_free(m);
    return rc;
}
