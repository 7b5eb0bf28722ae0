/* cmd_figure.c -- `ddpm figure progressive`: the paper's Fig. 6, the x0 the
 * model predicts at chosen timesteps along one ancestral sampling run, as one
 * PNG (rows: samples, columns: t from noisy to clean). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/threads.h"
#include "diffusion/sampler.h"
#include "io/modelfolder.h"
#include "io/png.h"

enum { MAX_TRACK = 64 };

/* "999,500,0" -> ts (each in [0, T)); returns the count, or -1 after an error message. */
static int parse_list(const arg_cmd *cmd, const char *list, int T, int *ts) {
    int n = 0;
    for (const char *p = list; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < 0 || v >= T || n == MAX_TRACK) {
            args_error(cmd, "--t: '%s' must be up to %d comma-separated timesteps in 0..%d", list, MAX_TRACK, T - 1);
            return -1;
        }
        ts[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static int figure_progressive(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *tlist = NULL;
    long long n = 8, seed = 0, threads = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder or run folder", 0, 0, NULL, 1, 0},
        {"out", ARG_STR, &out, "FILE.png", "where to write the figure", 0, 0, NULL, 1, 0},
        {"n", ARG_INT, &n, "N", "samples (rows)", 1, 256, NULL, 0, 0},
        {"t", ARG_STR, &tlist, "T1,T2,...", "0-based timesteps (columns), default 10 evenly from T-1 to 0", 0, 0,
         NULL, 0, 0},
        {"seed", ARG_INT, &seed, "S", "random seed", 0, 9.2e18, NULL, 0, 0},
        ARG_THREADS(&threads),
        {0},
    };
    arg_cmd cmd = {"figure progressive", "Progressive generation (paper Fig. 6): predicted x0 along one DDPM sampling run.",
                   NULL, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_set_threads((int)threads);
    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(model, dir, sizeof dir);
    char *sj = NULL;
    schedule s;
    if (model_read_scheduler(dir, &sj, &err)) return cli_bad_input(&cmd, &err);
    if (!sj) {
        args_error(&cmd, "%s has no scheduler_config.json", dir);
        return EXIT_USAGE;
    }
    int bad = schedule_from_json(&s, sj, &err);
    free(sj);
    if (bad) return cli_bad_input(&cmd, &err);
    int ts[MAX_TRACK], nt = 10;
    if (tlist) nt = parse_list(&cmd, tlist, s.T, ts);
    else
        for (int j = 0; j < nt; j++) ts[j] = (int)((long long)(s.T - 1) * (nt - 1 - j) / (nt - 1));
    if (nt < 0) {
        schedule_free(&s);
        return EXIT_USAGE;
    }
    unet *u = NULL;
    if (model_load(&u, dir, (int)n, 0, &err)) {
        schedule_free(&s);
        return cli_bad_input(&cmd, &err);
    }
    const unet_config *c = &u->cfg;
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    float *track = malloc(sizeof(float) * (size_t)nt * n * D), *x = malloc(sizeof(float) * (size_t)n * D);
    float *grid = malloc(sizeof(float) * (size_t)nt * n * D);
    int rc = EXIT_RUNTIME;
    if (!track || !x || !grid) {
        fprintf(stderr, "ddpm figure: out of memory\n");
        goto done;
    }
    sampler_opts so = {.ddim = 0, .steps = s.T, .eta = 0.0f, .seed = (uint64_t)seed, .ntrack = nt, .track_t = ts, .track_x0 = track};
    fprintf(stderr, "ddpm figure progressive: %lld samples, %d columns, %d network calls\n", n, nt, s.T);
    if (sampler_run(u, &s, &so, 0, (int)n, x, NULL, NULL, NULL, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    for (int i = 0; i < n; i++) /* row i = sample i, column j = timestep ts[j] */
        for (int j = 0; j < nt; j++)
            memcpy(grid + ((size_t)i * nt + j) * D, track + ((size_t)j * n + i) * D, sizeof(float) * D);
    if (png_write_grid(out, grid, (int)n * nt, c->sample_size, c->sample_size, c->in_channels, nt, 2, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    printf("%s: %lld rows x %d columns (t =", out, n, nt);
    for (int j = 0; j < nt; j++) printf(" %d", ts[j]);
    printf(")\n");
    rc = 0;
done:
    free(track), free(x), free(grid);
    unet_free(u);
    schedule_free(&s);
    return rc;
}

int cmd_figure(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "progressive")) return figure_progressive(argc - 1, argv + 1);
    fprintf(stderr, "ddpm figure: %s\nusage: ddpm figure progressive --model DIR --out FILE.png [--n N] [--t LIST] "
                    "(see 'ddpm figure progressive --help')\n", argc >= 2 ? "unknown figure" : "which figure?");
    return EXIT_USAGE;
}
