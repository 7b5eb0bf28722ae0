/* cmd_figure.c -- the paper's figures as PNGs: `ddpm figure progressive`
 * (Fig. 6: the x0 predicted at chosen timesteps along one ancestral sampling
 * run; rows samples, columns t), `ddpm figure shared` (Fig. 7) and
 * `ddpm figure interpolate` (Fig. 8). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/rng.h"
#include "core/threads.h"
#include "data/dataset.h"
#include "diffusion/diffusion.h"
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
    ddpm_set_threads((int)threads);
    st_set_verify(!no_verify);
    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(model, dir, sizeof dir);
    schedule s;
    if ((r = cli_read_schedule(&cmd, dir, &s))) return r;
    int ts[MAX_TRACK], nt = 10;
    if (tlist) nt = parse_list(&cmd, tlist, s.T, ts);
    else
        for (int j = 0; j < nt; j++) ts[j] = (int)((long long)(s.T - 1) * (nt - 1 - j) / (nt - 1));
    if (nt < 0) {
        schedule_free(&s);
        return EXIT_USAGE;
    }
    unet *u = NULL;
    denoiser den;
    if (model_load(&u, dir, (int)n, 0, &err) || sampler_unet(&den, u, &err)) {
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
    sampler_opts so = {.kind = SAMPLER_DDPM, .steps = s.T, .eta = 0.0f, .seed = (uint64_t)seed, .ntrack = nt, .track_t = ts, .track_x0 = track};
    fprintf(stderr, "ddpm figure progressive: %lld samples, %d columns, %d network calls\n", n, nt, s.T);
    if (sampler_run(&den, &s, &so, 0, (int)n, x, NULL, NULL, NULL, &err)) {
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
    ddpm_set_threads((int)threads);
    st_set_verify(!no_verify);
    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(model, dir, sizeof dir);
    schedule s;
    if ((r = cli_read_schedule(&cmd, dir, &s))) return r;
    if (t >= s.T) {
        args_error(&cmd, "--t %lld is outside the model's schedule (0..%d)", t, s.T - 1);
        schedule_free(&s);
        return EXIT_USAGE;
    }
    dataset d;
    if ((r = cli_load_images(&cmd, dir, data, (int)(2 * pairs), &d))) {
        schedule_free(&s);
        return r;
    }
    int L = (int)steps_l, P = (int)pairs, n = P * L, cols = L + 2;
    unet *u = NULL;
    denoiser den;
    float *xt = NULL, *x = NULL, *grid = NULL, *a = NULL, *b = NULL, *eps = NULL;
    int rc = EXIT_USAGE;
    if (d.n < 2 * P) {
        args_error(&cmd, "--data holds %d images; %d pairs need %d", d.n, P, 2 * P);
        goto done;
    }
    if (model_load(&u, dir, n, 0, &err) || sampler_unet(&den, u, &err)) {
        rc = cli_bad_input(&cmd, &err);
        goto done;
    }
    const unet_config *c = &u->cfg;
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    rc = EXIT_RUNTIME;
    xt = malloc(sizeof(float) * n * D), x = malloc(sizeof(float) * n * D);
    grid = malloc(sizeof(float) * (size_t)P * cols * D);
    a = malloc(sizeof(float) * D), b = malloc(sizeof(float) * D), eps = malloc(sizeof(float) * D);
    if (!xt || !x || !grid || !a || !b || !eps) {
        fprintf(stderr, "ddpm figure: out of memory\n");
        goto done;
    }
    for (int p = 0; p < P; p++) {
        float *x1 = grid + (size_t)p * cols * D, *x2 = x1 + (size_t)(cols - 1) * D;
        for (size_t k = 0; k < D; k++) {
            x1[k] = d.pixels[(size_t)(2 * p) * D + k] / 127.5f - 1.0f;
            x2[k] = d.pixels[(size_t)(2 * p + 1) * D + k] / 127.5f - 1.0f;
        }
        rng_normal(eps, D, (uint64_t)seed, RNG_EVAL, (uint64_t)p); /* the same noise for both images */
        q_sample(&s, (int)t, x1, eps, a, D);
        q_sample(&s, (int)t, x2, eps, b, D);
        for (int l = 0; l < L; l++) {
            float lam = (float)l / (float)(L - 1);
            float *o = xt + ((size_t)p * L + l) * D;
            for (size_t k = 0; k < D; k++) o[k] = (1.0f - lam) * a[k] + lam * b[k];
        }
    }
    sampler_opts so = {.kind = SAMPLER_DDPM, .steps = s.T, .seed = (uint64_t)seed, .start_from = (int)t + 1};
    fprintf(stderr, "ddpm figure interpolate: %d pairs x %d lambdas, denoising from t = %lld\n", P, L, t);
    if (sampler_run(&den, &s, &so, 0, n, x, xt, NULL, NULL, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    for (int p = 0; p < P; p++)
        memcpy(grid + ((size_t)p * cols + 1) * D, x + (size_t)p * L * D, sizeof(float) * L * D);
    if (png_write_grid(out, grid, P * cols, c->sample_size, c->sample_size, c->in_channels, cols, 2, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    printf("%s: %d rows (image 2i, %d interpolations, image 2i+1), t = %lld\n", out, P, L, t);
    rc = 0;
done:
    free(xt), free(x), free(grid), free(a), free(b), free(eps);
    unet_free(u);
    dataset_free(&d);
    schedule_free(&s);
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
    ddpm_set_threads((int)threads);
    st_set_verify(!no_verify);
    ddpm_err err = {0};
    char dir[4096];
    cli_model_dir(model, dir, sizeof dir);
    schedule s;
    if ((r = cli_read_schedule(&cmd, dir, &s))) return r;
    int ts[MAX_TRACK], nt = parse_list(&cmd, tlist, s.T, ts);
    if (nt < 0) {
        schedule_free(&s);
        return EXIT_USAGE;
    }
    dataset d;
    if ((r = cli_load_images(&cmd, dir, data, (int)index + 1, &d))) {
        schedule_free(&s);
        return r;
    }
    int N = (int)n, cols = N + 1, rc = EXIT_USAGE;
    unet *u = NULL;
    denoiser den;
    float *xt = NULL, *x = NULL, *grid = NULL, *eps = NULL;
    if (d.n <= index) {
        args_error(&cmd, "--index %lld: the data hold %d images", index, d.n);
        goto done;
    }
    if (model_load(&u, dir, N, 0, &err) || sampler_unet(&den, u, &err)) {
        rc = cli_bad_input(&cmd, &err);
        goto done;
    }
    const unet_config *c = &u->cfg;
    size_t D = (size_t)c->sample_size * c->sample_size * c->in_channels;
    rc = EXIT_RUNTIME;
    xt = malloc(sizeof(float) * N * D), x = malloc(sizeof(float) * N * D);
    grid = malloc(sizeof(float) * (size_t)nt * cols * D), eps = malloc(sizeof(float) * D);
    if (!xt || !x || !grid || !eps) {
        fprintf(stderr, "ddpm figure: out of memory\n");
        goto done;
    }
    for (int j = 0; j < nt; j++) {
        float *row = grid + (size_t)j * cols * D;
        for (size_t k = 0; k < D; k++) row[k] = d.pixels[(size_t)index * D + k] / 127.5f - 1.0f;
        rng_normal(eps, D, (uint64_t)seed, RNG_EVAL, (uint64_t)ts[j]);
        q_sample(&s, ts[j], row, eps, xt, D);
        for (int i = 1; i < N; i++) memcpy(xt + (size_t)i * D, xt, sizeof(float) * D); /* the shared latent */
        sampler_opts so = {.kind = SAMPLER_DDPM, .steps = s.T, .seed = (uint64_t)seed, .start_from = ts[j] + 1};
        if (sampler_run(&den, &s, &so, 0, N, x, xt, NULL, NULL, &err)) {
            rc = cli_fail(&cmd, &err);
            goto done;
        }
        memcpy(row + D, x, sizeof(float) * N * D);
    }
    if (png_write_grid(out, grid, nt * cols, c->sample_size, c->sample_size, c->in_channels, cols, 2, &err)) {
        rc = cli_fail(&cmd, &err);
        goto done;
    }
    printf("%s: %d rows (t = %s), the source image then %d samples each\n", out, nt, tlist, N);
    rc = 0;
done:
    free(xt), free(x), free(grid), free(eps);
    unet_free(u);
    dataset_free(&d);
    schedule_free(&s);
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
