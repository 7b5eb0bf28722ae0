/* cmd_figure.c -- the paper's figures as PNGs: `ddpm figure progressive`
 * (Fig. 6: the x0 predicted at chosen timesteps along one ancestral sampling
 * run; rows samples, columns t), `ddpm figure shared` (Fig. 7) and
 * `ddpm figure interpolate` (Fig. 8). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ddpm.h"

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

/* Applies --threads and --no-verify, loads the model folder of --model and
 * checks it has a noise schedule.
 * Returns 0, or the exit status after a message (*m is then NULL). */
static int load_model(const arg_cmd *cmd, const char *model, long long threads, int no_verify, ddpm_model **m,
                      ddpm_model_info *mi)
{
    ddpm_set_threads((int)threads);
    ddpm_set_verify(!no_verify);
    int st = ddpm_model_load(model, m);
    if (st) return cli_status(cmd, st);
    ddpm_model_get_info(*m, mi);
    if (!mi->has_scheduler) {
        args_error(cmd, "%s has no scheduler_config.json: this needs the model's noise schedule", mi->dir);
        ddpm_model_free(*m);
        *m = NULL;
        return EXIT_USAGE;
    }
    return 0;
}

/* The paper's sampler for a figure: ancestral, every one of the T steps, the
 * scheduler_config's x0 processing, n images in one batch. */
static void figure_options(ddpm_sample_options *o, const ddpm_model_info *mi, long long seed, int n)
{
    ddpm_sample_options_init(o);
    o->sampler = DDPM_SAMPLER_DDPM;
    o->steps = mi->num_train_timesteps;
    o->x0 = DDPM_X0_CONFIG;
    o->seed = (uint64_t)seed;
    o->batch = n;
}

static int figure_progressive(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *tlist = NULL;
    long long n = 8, seed = 0, threads = 0;
    int no_verify = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder or run folder", 0, 0, NULL, 1, 0},
        {"out", ARG_STR, &out, "FILE.png", "where to write the figure", 0, 0, NULL, 1, 0},
        {"n", ARG_INT, &n, "N", "samples (rows)", 1, 256, NULL, 0, 0},
        {"t", ARG_STR, &tlist, "T1,T2,...", "0-based timesteps (columns), default 10 evenly from T-1 to 0", 0, 0,
         NULL, 0, 0},
        {"seed", ARG_INT, &seed, "S", "random seed", 0, 9.2e18, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"figure progressive", "Progressive generation (paper Fig. 6): predicted x0 along one DDPM sampling run.",
                   NULL, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_model *m = NULL;
    ddpm_model_info mi;
    if ((r = load_model(&cmd, model, threads, no_verify, &m, &mi))) return r;
    const int T = mi.num_train_timesteps, C = mi.in_channels, H = mi.sample_size, W = mi.sample_size;
    int ts[MAX_TRACK], nt = 10;
    if (tlist) nt = parse_list(&cmd, tlist, T, ts);
    else
        for (int j = 0; j < nt; j++) ts[j] = (int)((long long)(T - 1) * (nt - 1 - j) / (nt - 1));
    if (nt < 0) {
        ddpm_model_free(m);
        return EXIT_USAGE;
    }
    size_t D = (size_t)H * W * C;
    float *track = malloc(sizeof(float) * (size_t)nt * n * D), *x = malloc(sizeof(float) * (size_t)n * D);
    float *grid = malloc(sizeof(float) * (size_t)nt * n * D);
    int rc = EXIT_RUNTIME, st;
    if (!track || !x || !grid) {
        fprintf(stderr, "ddpm figure: out of memory\n");
        goto done;
    }
    ddpm_sample_options so;
    figure_options(&so, &mi, seed, (int)n);
    so.ntrack = nt, so.track_t = ts, so.track_x0 = track;
    fprintf(stderr, "ddpm figure progressive: %lld samples, %d columns, %d network calls\n", n, nt, T);
    if ((st = ddpm_sample(m, &so, (int)n, x, NULL))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    for (int i = 0; i < n; i++) /* row i = sample i, column j = timestep ts[j] */
        for (int j = 0; j < nt; j++)
            memcpy(grid + ((size_t)i * nt + j) * D, track + ((size_t)j * n + i) * D, sizeof(float) * D);
    if ((st = ddpm_png_write_grid(out, grid, (int)n * nt, C, H, W, nt, 2))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    printf("%s: %lld rows x %d columns (t =", out, n, nt);
    for (int j = 0; j < nt; j++) printf(" %d", ts[j]);
    printf(")\n");
    rc = 0;
done:
    free(track), free(x), free(grid);
    ddpm_model_free(m);
    return rc;
}

/* Fig. 8: two test images diffused to x_t with the same noise, mixed linearly,
 * denoised by the ancestral sampler from t; one row per pair, the source images
 * at both ends. */
static int figure_interpolate(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *data = NULL;
    long long t = 500, pairs = 4, steps_l = 9, seed = 0, threads = 0;
    int no_verify = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder or run folder", 0, 0, NULL, 1, 0},
        {"out", ARG_STR, &out, "FILE.png", "where to write the figure", 0, 0, NULL, 1, 0},
        {"data", ARG_STR, &data, "SRC", "images to interpolate (default: Fashion-MNIST's test split)", 0, 0, NULL, 0, 0},
        {"t", ARG_INT, &t, "T", "0-based timestep the pair is diffused to [500]", 0, 1e6, NULL, 0, 0},
        {"pairs", ARG_INT, &pairs, "N", "pairs (rows): images 2i and 2i+1 of the data", 1, 64, NULL, 0, 0},
        {"lambdas", ARG_INT, &steps_l, "N", "mixing weights 0, 1/(N-1), ..., 1 (columns)", 2, 64, NULL, 0, 0},
        {"seed", ARG_INT, &seed, "S", "random seed", 0, 9.2e18, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"figure interpolate", "Interpolation in x_t (paper Fig. 8): mix two diffused images, denoise.",
                   NULL, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_model *m = NULL;
    ddpm_model_info mi;
    ddpm_dataset *d = NULL;
    ddpm_dataset_info di;
    if ((r = load_model(&cmd, model, threads, no_verify, &m, &mi))) return r;
    float *xt = NULL, *x = NULL, *grid = NULL, *a = NULL, *b = NULL;
    int rc = EXIT_USAGE, st;
    if (t >= mi.num_train_timesteps) {
        args_error(&cmd, "--t %lld is outside the model's schedule (0..%d)", t, mi.num_train_timesteps - 1);
        goto done;
    }
    if ((rc = cli_open_images(&cmd, m, data, (int)(2 * pairs), &d))) goto done;
    ddpm_dataset_get_info(d, &di);
    int L = (int)steps_l, P = (int)pairs, n = P * L, cols = L + 2;
    const int C = mi.in_channels, H = mi.sample_size, W = mi.sample_size;
    const int32_t tt = (int32_t)t;
    rc = EXIT_USAGE;
    if (di.n < 2 * P) {
        args_error(&cmd, "--data holds %d images; %d pairs need %d", di.n, P, 2 * P);
        goto done;
    }
    size_t D = (size_t)H * W * C;
    rc = EXIT_RUNTIME;
    xt = malloc(sizeof(float) * n * D), x = malloc(sizeof(float) * n * D);
    grid = malloc(sizeof(float) * (size_t)P * cols * D);
    a = malloc(sizeof(float) * D), b = malloc(sizeof(float) * D);
    if (!xt || !x || !grid || !a || !b) {
        fprintf(stderr, "ddpm figure: out of memory\n");
        goto done;
    }
    for (int p = 0; p < P; p++) {
        float *x1 = grid + (size_t)p * cols * D, *x2 = x1 + (size_t)(cols - 1) * D;
        if ((st = ddpm_dataset_images(d, 2 * p, 1, x1, NULL)) || (st = ddpm_dataset_images(d, 2 * p + 1, 1, x2, NULL)) ||
            (st = ddpm_model_diffuse(m, 1, x1, &tt, NULL, (uint64_t)seed, p, a)) || /* the same noise for both */
            (st = ddpm_model_diffuse(m, 1, x2, &tt, NULL, (uint64_t)seed, p, b))) {
            rc = cli_status(&cmd, st);
            goto done;
        }
        for (int l = 0; l < L; l++) {
            float lam = (float)l / (float)(L - 1);
            float *o = xt + ((size_t)p * L + l) * D;
            for (size_t k = 0; k < D; k++) o[k] = (1.0f - lam) * a[k] + lam * b[k];
        }
    }
    ddpm_sample_options so;
    figure_options(&so, &mi, seed, n);
    so.start_t = (int)t + 1, so.noise = xt;
    fprintf(stderr, "ddpm figure interpolate: %d pairs x %d lambdas, denoising from t = %lld\n", P, L, t);
    if ((st = ddpm_sample(m, &so, n, x, NULL))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    for (int p = 0; p < P; p++)
        memcpy(grid + ((size_t)p * cols + 1) * D, x + (size_t)p * L * D, sizeof(float) * L * D);
    if ((st = ddpm_png_write_grid(out, grid, P * cols, C, H, W, cols, 2))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    printf("%s: %d rows (image 2i, %d interpolations, image 2i+1), t = %lld\n", out, P, L, t);
    rc = 0;
done:
    free(xt), free(x), free(grid), free(a), free(b);
    ddpm_dataset_free(d);
    ddpm_model_free(m);
    return rc;
}

/* Fig. 7: one test image diffused to x_t for several t (rows); from each x_t,
 * several samples of x_0 (columns, after the source image). */
static int figure_shared(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *data = NULL, *tlist = "999,750,500,250";
    long long n = 8, index = 0, seed = 0, threads = 0;
    int no_verify = 0;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder or run folder", 0, 0, NULL, 1, 0},
        {"out", ARG_STR, &out, "FILE.png", "where to write the figure", 0, 0, NULL, 1, 0},
        {"data", ARG_STR, &data, "SRC", "images (default: Fashion-MNIST's test split)", 0, 0, NULL, 0, 0},
        {"index", ARG_INT, &index, "I", "which image of the data", 0, 1e9, NULL, 0, 0},
        {"t", ARG_STR, &tlist, "T1,T2,...", "0-based timesteps of the shared x_t (rows)", 0, 0, NULL, 0, 0},
        {"n", ARG_INT, &n, "N", "samples per row", 1, 64, NULL, 0, 0},
        {"seed", ARG_INT, &seed, "S", "random seed", 0, 9.2e18, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"figure shared", "Samples sharing a latent x_t (paper Fig. 7): one image, several t, several x_0 each.",
                   NULL, specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_model *m = NULL;
    ddpm_model_info mi;
    ddpm_dataset *d = NULL;
    ddpm_dataset_info di;
    if ((r = load_model(&cmd, model, threads, no_verify, &m, &mi))) return r;
    int ts[MAX_TRACK], nt = parse_list(&cmd, tlist, mi.num_train_timesteps, ts);
    int N = (int)n, cols = N + 1, rc = EXIT_USAGE, st;
    const int C = mi.in_channels, H = mi.sample_size, W = mi.sample_size;
    float *xt = NULL, *x = NULL, *grid = NULL;
    if (nt < 0) goto done;
    if ((rc = cli_open_images(&cmd, m, data, (int)index + 1, &d))) goto done;
    ddpm_dataset_get_info(d, &di);
    rc = EXIT_USAGE;
    if (di.n <= index) {
        args_error(&cmd, "--index %lld: the data hold %d images", index, di.n);
        goto done;
    }
    size_t D = (size_t)H * W * C;
    rc = EXIT_RUNTIME;
    xt = malloc(sizeof(float) * N * D), x = malloc(sizeof(float) * N * D);
    grid = malloc(sizeof(float) * (size_t)nt * cols * D);
    if (!xt || !x || !grid) {
        fprintf(stderr, "ddpm figure: out of memory\n");
        goto done;
    }
    for (int j = 0; j < nt; j++) {
        float *row = grid + (size_t)j * cols * D;
        const int32_t tj = ts[j];
        if ((st = ddpm_dataset_images(d, (int)index, 1, row, NULL)) ||
            (st = ddpm_model_diffuse(m, 1, row, &tj, NULL, (uint64_t)seed, ts[j], xt))) {
            rc = cli_status(&cmd, st);
            goto done;
        }
        for (int i = 1; i < N; i++) memcpy(xt + (size_t)i * D, xt, sizeof(float) * D); /* the shared latent */
        ddpm_sample_options so;
        figure_options(&so, &mi, seed, N);
        so.start_t = ts[j] + 1, so.noise = xt;
        if ((st = ddpm_sample(m, &so, N, x, NULL))) {
            rc = cli_status(&cmd, st);
            goto done;
        }
        memcpy(row + D, x, sizeof(float) * N * D);
    }
    if ((st = ddpm_png_write_grid(out, grid, nt * cols, C, H, W, cols, 2))) {
        rc = cli_status(&cmd, st);
        goto done;
    }
    printf("%s: %d rows (t = %s), the source image then %d samples each\n", out, nt, tlist, N);
    rc = 0;
done:
    free(xt), free(x), free(grid);
    ddpm_dataset_free(d);
    ddpm_model_free(m);
    return rc;
}

int cmd_figure(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "progressive")) return figure_progressive(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "interpolate")) return figure_interpolate(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "shared")) return figure_shared(argc - 1, argv + 1);
    fprintf(stderr, "ddpm figure: %s\nusage: ddpm figure progressive|shared|interpolate --model DIR --out FILE.png ... "
                    "(see 'ddpm figure progressive --help')\n", argc >= 2 ? "unknown figure" : "which figure?");
    return EXIT_USAGE;
}
