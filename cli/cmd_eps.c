/* cmd_eps.c -- `ddpm eps`: the network's noise prediction eps_theta(x_t, t) for
 * a batch in an .npy file (float32, NCHW as PyTorch), for interop and debugging. */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "core/threads.h"
#include "diffusion/schedule.h"
#include "io/modelfolder.h"
#include "io/npy.h"
#include "ops/ops.h"

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
    st_set_verify(!no_verify);

    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(model, dir, sizeof dir);
    unet_config cfg;
    if (model_read_config(dir, &cfg, &err)) return cli_bad_input(&cmd, &err);
    int32_t pick[CLI_MAX_PICK];
    int npick, nclasses, null_class;
    if ((r = cli_classes(&cmd, dir, &cfg, classes, pick, &npick, &nclasses, &null_class))) return r;
    if (cfg.num_class_embeds > 0 && !npick && null_class < 0) {
        args_error(&cmd, "%s is class-conditional without a null class: give --class", dir);
        return EXIT_USAGE;
    }
    char *sj = NULL;
    if (model_read_scheduler(dir, &sj, &err)) return cli_bad_input(&cmd, &err);
    if (sj) { /* with a schedule, t must be one of its timesteps */
        schedule s;
        int bad = schedule_from_json(&s, sj, &err);
        free(sj);
        if (bad) return cli_bad_input(&cmd, &err);
        int T = s.T;
        schedule_free(&s);
        if (t >= T) {
            args_error(&cmd, "--t %lld is outside the model's schedule (0..%d)", t, T - 1);
            return EXIT_USAGE;
        }
    }

    float *x = NULL;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    if (npy_read_f32(xpath, &x, &ndim, shape, &err)) return cli_bad_input(&cmd, &err);
    if (ndim != 4 || shape[1] != cfg.in_channels || shape[2] != cfg.sample_size || shape[3] != cfg.sample_size ||
        shape[0] < 1) {
        fprintf(stderr, "ddpm eps: %s: expected shape [N, %d, %d, %d], got %d dims [%lld, %lld, %lld, %lld]\n",
                xpath, cfg.in_channels, cfg.sample_size, cfg.sample_size, ndim, (long long)shape[0],
                ndim > 1 ? (long long)shape[1] : 0, ndim > 2 ? (long long)shape[2] : 0,
                ndim > 3 ? (long long)shape[3] : 0);
        free(x);
        return EXIT_USAGE;
    }
    int n = (int)shape[0], hw = cfg.sample_size * cfg.sample_size;
    unet *u = NULL;
    if (model_load(&u, dir, n, 0, &err)) {
        free(x);
        return cli_bad_input(&cmd, &err);
    }
    size_t nin = (size_t)n * hw * cfg.in_channels, nout = (size_t)n * hw * cfg.out_channels;
    float *xh = malloc(nin * sizeof *xh), *eh = malloc(nout * sizeof *eh), *e = malloc(nout * sizeof *e);
    float *tt = malloc(n * sizeof *tt);
    int32_t *y = malloc(n * sizeof *y);
    int rc = 0;
    if (!xh || !eh || !e || !tt || !y) {
        fprintf(stderr, "ddpm eps: out of memory\n");
        rc = EXIT_RUNTIME;
    } else {
        for (int i = 0; i < n; i++) tt[i] = (float)t, y[i] = npick ? pick[i % npick] : null_class;
        nchw_to_nhwc(xh, x, n, cfg.in_channels, hw);
        unet_forward(u, eh, xh, tt, cfg.num_class_embeds > 0 ? y : NULL, NULL);
        nhwc_to_nchw(e, eh, n, cfg.out_channels, hw);
        int64_t oshape[4] = {n, cfg.out_channels, cfg.sample_size, cfg.sample_size};
        if (npy_write_f32(out, e, 4, oshape, &err)) rc = cli_fail(&cmd, &err);
    }
    free(x), free(xh), free(eh), free(e), free(tt), free(y);
    unet_free(u);
    return rc;
}
