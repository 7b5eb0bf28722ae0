/* cmd_info.c -- `ddpm info`: what a model folder or run folder holds (network
 * shape, parameter count, cost per image, noise schedule, training step). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "common.h"
#include "diffusion/schedule.h"
#include "io/modelfolder.h"
#include "io/safetensors.h"
#include "model/unet.h"

static void print_ints(const char *label, const int *v, int n)
{
    printf("%-22s [", label);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", v[i]);
    printf("]\n");
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
    st_set_verify(!no_verify);

    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(model, dir, sizeof dir);
    unet_config c;
    if (model_read_config(dir, &c, &err)) return cli_bad_input(&cmd, &err);
    unet *u = NULL;
    if (unet_create(&u, &c, 1, 0, &err)) return cli_bad_input(&cmd, &err);
    if (model_load_weights(u, dir, &err)) { /* the weights fit the config (and their checksums) */
        unet_free(u);
        return cli_bad_input(&cmd, &err);
    }

    printf("%-22s %s\n", "model folder", dir);
    printf("%-22s %d x %d x %d -> %d channels\n", "image", c.sample_size, c.sample_size, c.in_channels,
           c.out_channels);
    print_ints("block_out_channels", c.block_out, c.levels);
    print_ints("attention (down)", c.down_attn, c.levels);
    printf("%-22s %d\n", "layers_per_block", c.layers_per_block);
    printf("%-22s %d groups, eps %g\n", "group norm", c.norm_groups, c.norm_eps);
    printf("%-22s %g\n", "dropout", c.dropout);
    if (c.num_class_embeds > 0) {
        unet_classes cls;
        if (model_read_classes(dir, &cls, &err)) {
            unet_free(u);
            return cli_bad_input(&cmd, &err);
        }
        int null_class = unet_null_class(&c, &cls);
        printf("%-22s %d class embeddings%s", "classes", c.num_class_embeds,
               null_class >= 0 ? " (the last: the null class, for guidance)" : " (no null class)");
        for (int k = 0; k < cls.n; k++) printf("%s%s", k ? ", " : ": ", cls.names[k]);
        printf("\n");
        unet_classes_free(&cls);
    }
    printf("%-22s %zu\n", "parameters", u->nparams);
    printf("%-22s %.3f GFLOP per image\n", "forward cost", unet_forward_flops(u) / 1e9);
    unet_free(u);

    char *sj = NULL;
    if (model_read_scheduler(dir, &sj, &err)) return cli_bad_input(&cmd, &err);
    if (sj) {
        schedule s;
        if (schedule_from_json(&s, sj, &err)) {
            free(sj);
            return cli_bad_input(&cmd, &err);
        }
        printf("%-22s %s, T = %d, beta %g .. %g, variance %s\n", "noise schedule", s.kind, s.T, s.beta_start,
               s.beta_end, s.variance_type == SCHED_FIXED_SMALL ? "fixed_small" : "fixed_large");
        schedule_free(&s);
        free(sj);
    } else {
        printf("%-22s none (scheduler_config.json absent)\n", "noise schedule");
    }

    char state[4200];
    struct stat stt;
    snprintf(state, sizeof state, "%s/training_state.safetensors", model);
    if (stat(state, &stt) == 0) {
        st_file f;
        if (st_open(&f, state, &err) || st_verify(&f, &err)) {
            st_close(&f);
            return cli_bad_input(&cmd, &err);
        }
        const char *step = st_meta(&f, "step"), *opts = st_meta(&f, "options");
        printf("%-22s %s\n", "training step", step ? step : "?");
        if (opts) printf("%-22s %s\n", "training options", opts);
        st_close(&f);
    }
    return 0;
}
