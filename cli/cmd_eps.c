/* cmd_eps.c -- `ddpm eps`: the network's noise prediction eps_theta(x_t, t) for
 * a batch in an .npy file (float32, NCHW as PyTorch), for interop and debugging. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "ddpm.h"

int cmd_eps(int argc, char **argv)
{
    const char *model = NULL, *xpath = NULL, *out = NULL, *classes = NULL;
    long long t = 0, threads = 0;
    int no_verify = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder (or run folder)", 0, 0, NULL, 1, 0},
        {"x", ARG_STR, &xpath, "IN.npy", "x_t, float32 [N, C, H, W]", 0, 0, NULL, 1, 0},
        {"t", ARG_INT, &t, "T", "timestep, 0-based as in diffusers", 0, 1e9, NULL, 1, 0},
        {"out", ARG_STR, &out, "OUT.npy", "where to write eps, float32 [N, C, H, W]", 0, 0, NULL, 1, 0},
        {"class", ARG_STR, &classes, "NAME|INDEX[,...]", "conditional models: the class of each image, in turn "
         "(default: the null class)", 0, 0, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"eps", "Predict the noise eps_theta(x_t, t) of a batch (NCHW .npy in, NCHW .npy out).",
                   NULL, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_set_threads((int)threads);
    ddpm_set_verify(!no_verify);

    ddpm_model *m = NULL;
    ddpm_model_info mi;
    float *x = NULL, *e = NULL;
    int32_t *tt = NULL, *y = NULL, pick[CLI_MAX_PICK];
    int npick = 0, ndim, st, rc = 0;
    int64_t shape[DDPM_NPY_MAX_DIMS];
    if ((st = ddpm_model_load(model, &m))) return cli_status(&cmd, st);
    ddpm_model_get_info(m, &mi);
    if ((rc = cli_pick_classes(&cmd, m, classes, pick, &npick))) goto done;
    if (mi.num_class_embeds > 0 && !npick && mi.null_class < 0) {
        args_error(&cmd, "%s is class-conditional without a null class: give --class", mi.dir);
        rc = EXIT_USAGE;
        goto done;
    }
    if (mi.has_scheduler && t >= mi.num_train_timesteps) { /* t must be one of the schedule's timesteps */
        args_error(&cmd, "--t %lld is outside the model's schedule (0..%d)", t, mi.num_train_timesteps - 1);
        rc = EXIT_USAGE;
        goto done;
    }
    if ((st = ddpm_npy_read(xpath, &x, &ndim, shape, NULL))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    if (ndim != 4 || shape[1] != mi.in_channels || shape[2] != mi.sample_size || shape[3] != mi.sample_size ||
        shape[0] < 1) {
        fprintf(stderr, "ddpm eps: %s: expected shape [N, %d, %d, %d], got %d dims [%lld, %lld, %lld, %lld]\n",
                xpath, mi.in_channels, mi.sample_size, mi.sample_size, ndim, (long long)shape[0],
                ndim > 1 ? (long long)shape[1] : 0, ndim > 2 ? (long long)shape[2] : 0,
                ndim > 3 ? (long long)shape[3] : 0);
        rc = EXIT_USAGE;
        goto done;
    }
    const int n = (int)shape[0];
    const size_t nout = (size_t)n * mi.sample_size * mi.sample_size * mi.out_channels;
    e = malloc(nout * sizeof *e), tt = malloc(n * sizeof *tt), y = malloc(n * sizeof *y);
    if (!e || !tt || !y) {
        fprintf(stderr, "ddpm eps: out of memory\n");
        rc = EXIT_RUNTIME;
        goto done;
    }
    for (int i = 0; i < n; i++) tt[i] = (int32_t)t, y[i] = npick ? pick[i % npick] : mi.null_class;
    if ((st = ddpm_model_eps(m, n, x, tt, mi.num_class_embeds > 0 ? y : NULL, e))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    int64_t oshape[4] = {n, mi.out_channels, mi.sample_size, mi.sample_size};
    if ((st = ddpm_npy_write(out, e, 4, oshape))) rc = cli_status(&cmd, st);
done:
    ddpm_free(x);
    free(e), free(tt), free(y);
    ddpm_model_free(m);
    return rc;
}
