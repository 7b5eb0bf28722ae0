/* cmd_eval.c -- `ddpm eval nll`: the variational bound in bits/dim on a data set
 * (every one of the T terms per image), with its standard error and a per-t CSV. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "ddpm.h"

typedef struct progress {
    int tty, last_pct;
    double t0;
} progress;

static int on_step(void *ctx, long long done, long long total)
{
    progress *p = ctx;
    double frac = (double)done / (double)total;
    int pct = (int)(100 * frac);
    double el = ddpm_now() - p->t0;
    if (p->tty)
        fprintf(stderr, "\rddpm eval nll: %3d%%  %.0f s elapsed, %.0f s left   ", pct, el,
                frac > 0 ? el / frac - el : 0.0);
    else if (pct / 10 != p->last_pct / 10)
        fprintf(stderr, "ddpm eval nll: %3d%%  %.0f s elapsed\n", pct, el);
    p->last_pct = pct;
    return 0;
}

/* The rate-distortion curve (rate[t], dist[t] for t < T, of N images) as an SVG.
 * Returns 0, or -1 if it could not be written. */
static int write_rd_svg(const char *svg, const double *rate, const double *dist, int T, int N)
{
    FILE *g = fopen(svg, "w");
    if (!g) return -1;
    double rmax = rate[0] > 0 ? rate[0] : 1, dmax = 0;
    for (int t = 0; t < T; t++) dmax = dist[t] > dmax ? dist[t] : dmax;
    if (dmax <= 0) dmax = 1;
    const double W = 480, H = 320, L = 60, B = 40;
    fprintf(g, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W + L + 20, H + B + 30);
    fprintf(g, "<text x=\"%.0f\" y=\"18\">Rate-distortion (%d images): distortion vs rate</text>\n", L, N);
    fprintf(g, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, H + 25, L + W, H + 25);
    fprintf(g, "<line x1=\"%.0f\" y1=\"25\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, L, H + 25);
    fprintf(g, "<text x=\"%.0f\" y=\"%.0f\">rate (bits/dim), 0 .. %.3g</text>\n", L + W / 3, H + 55, rmax);
    fprintf(g, "<text x=\"4\" y=\"40\">RMSE</text><text x=\"4\" y=\"54\">%.3g</text>"
               "<text x=\"4\" y=\"%.0f\">0</text>\n", dmax, H + 25);
    fprintf(g, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"");
    for (int t = T - 1; t >= 0; t--)
        fprintf(g, "%.1f,%.1f ", L + W * rate[t] / rmax, 25 + H * (1 - dist[t] / dmax));
    fprintf(g, "\"/>\n</svg>\n");
    return fclose(g) == 0 ? 0 : -1;
}

/* From every image's terms[N, T + 1] and mse[N, T] (images of D values): the
 * per-t CSV at path, its rate-distortion SVG next to it, and the summary line.
 * Returns 0, or EXIT_RUNTIME after a message. */
static int nll_report(const char *path, const double *terms, const double *mse, int N, int T, size_t D)
{
    /* Bits/dim per image, then the mean and its standard error over images. */
    double to_bpd = 1.0 / ((double)D * log(2.0)), sum = 0, sum2 = 0, prior = 0, dec = 0;
    for (int i = 0; i < N; i++) {
        double tot = 0;
        for (int t = 0; t <= T; t++) tot += terms[(size_t)i * (T + 1) + t];
        tot *= to_bpd;
        sum += tot, sum2 += tot * tot;
        prior += terms[(size_t)i * (T + 1) + T] * to_bpd / N;
        dec += terms[(size_t)i * (T + 1)] * to_bpd / N;
    }
    double mean = sum / N, var = N > 1 ? (sum2 - N * mean * mean) / (N - 1) : 0;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "ddpm eval nll: cannot write %s\n", path);
        return EXIT_RUNTIME;
    }
    /* Per t: the mean term, the x0 MSE, and the rate-distortion pair of the
     * paper's Sec. 4.3 -- rate = bits/dim sent from T down to t (prior and the
     * KL terms L_s for s >= max(t, 1)), distortion = RMSE of the x0 prediction
     * on the [0, 255] scale. */
    double *lt = calloc((size_t)T, sizeof *lt), *rate = calloc((size_t)T, sizeof *rate);
    double *dist = calloc((size_t)T, sizeof *dist);
    if (!lt || !rate || !dist) {
        free(lt), free(rate), free(dist);
        fclose(f);
        fprintf(stderr, "ddpm eval nll: out of memory\n");
        return EXIT_RUNTIME;
    }
    for (int t = 0; t < T; t++) {
        double m = 0;
        for (int i = 0; i < N; i++) lt[t] += terms[(size_t)i * (T + 1) + t] * to_bpd / N, m += mse[(size_t)i * T + t] / N;
        dist[t] = sqrt(m) * 127.5;
    }
    for (int t = T - 1; t >= 0; t--) rate[t] = (t == T - 1 ? prior : rate[t + 1]) + (t >= 1 ? lt[t] : 0.0);
    fprintf(f, "t,L_t_bits_per_dim,x0_mse,rate_bits_per_dim,distortion_rmse_0_255\n");
    for (int t = 0; t < T; t++)
        fprintf(f, "%d,%.9g,%.9g,%.9g,%.9g\n", t, lt[t], dist[t] * dist[t] / (127.5 * 127.5), rate[t], dist[t]);
    fprintf(f, "prior,%.9g,,,\n", prior);
    int wrote = fclose(f) == 0;
    /* The rate-distortion curve as an SVG next to the CSV. */
    char svg[4400];
    snprintf(svg, sizeof svg, "%.*s_rd.svg", (int)(strlen(path) > 4 && !strcmp(path + strlen(path) - 4, ".csv")
                                                     ? strlen(path) - 4 : strlen(path)), path);
    wrote = wrote && write_rd_svg(svg, rate, dist, T, N) == 0;
    free(lt), free(rate), free(dist);
    if (!wrote) {
        fprintf(stderr, "ddpm eval nll: writing %s or %s failed\n", path, svg);
        return EXIT_RUNTIME;
    }
    printf("NLL bound %.4f bits/dim (standard error %.4f, %d images; prior %.5f, decoder %.4f); per-t terms and rate-distortion in %s, curve in %s\n",
           mean, sqrt(var / N), N, prior, dec, path, svg);
    return 0;
}

static int eval_nll(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *csv = NULL;
    long long n = 256, batch = 64, seed = 0, threads = 0;
    int no_verify = 0;
    const char *conv = CLI_CONV_DEFAULT;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder or run folder", 0, 0, NULL, 1, 0},
        {"data", ARG_STR, &data, "SRC", "images (default: Fashion-MNIST's test split)", 0, 0, NULL, 0, 0},
        {"n", ARG_INT, &n, "N", "images evaluated (the first N; 0 = all)", 0, 1e9, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call", 1, 4096, NULL, 0, 0},
        {"seed", ARG_INT, &seed, "S", "seed of the x_t noise", 0, 9.2e18, NULL, 0, 0},
        {"csv", ARG_STR, &csv, "FILE", "per-t table: t, mean L_t in bits/dim, mean MSE of the x0 prediction, rate, "
                                       "distortion (RMSE, 0..255); the rate-distortion curve goes to FILE_rd.svg "
                                       "(default: MODEL/../nll.csv for a run folder, else ./nll.csv)", 0, 0, NULL, 0, 0},
        ARG_THREADS(&threads),
        ARG_CONV(&conv),
        ARG_NO_VERIFY(&no_verify),
        {0},
    };
    arg_cmd cmd = {"eval nll", "The variational bound (negative log-likelihood) in bits/dim: L_T + sum of L_{t-1} + L_0.",
                   "Every one of the T terms is evaluated for every image (no subsampling), with the model's\n"
                   "variance (fixed by scheduler_config.json, or learned: variance_type learned_range, as\n"
                   "improved-diffusion) and x0 predictions clipped to [-1, 1] as the paper's code. Cost: T network calls per batch. Under mpirun the processes share the\n"
                   "batches, and rank 0 writes the same numbers as one process would.", specs};
    int r = args_parse(&cmd, argc, argv);
    if (r) return r > 0 ? 0 : EXIT_USAGE;
    ddpm_set_threads((int)threads);
    ddpm_set_verify(!no_verify);
    ddpm_set_conv_algorithm(conv);
    ddpm_model *m = NULL;
    ddpm_dataset *d = NULL;
    ddpm_model_info mi;
    ddpm_dataset_info di;
    float *x = NULL;
    int32_t *labels = NULL;
    double *terms = NULL, *mse = NULL;
    const int root = ddpm_proc_rank() == 0;
    int st, rc = 0;
    if ((st = ddpm_model_load(model, &m))) return cli_status(&cmd, st);
    ddpm_model_get_info(m, &mi);
    if (!mi.has_scheduler) {
        args_error(&cmd, "%s has no scheduler_config.json: this needs the model's noise schedule", mi.dir);
        rc = EXIT_USAGE;
        goto done;
    }
    if ((rc = cli_open_images(&cmd, m, data, (int)n, &d))) goto done;
    ddpm_dataset_get_info(d, &di);
    const int N = di.n, B = batch < N ? (int)batch : N, T = mi.num_train_timesteps;
    const size_t D = (size_t)di.height * di.width * di.channels;
    if (mi.num_class_embeds > 0 && di.num_classes && di.num_classes >= mi.num_class_embeds) {
        args_error(&cmd, "the data have %d classes, the conditional model %d class embeddings", di.num_classes,
                   mi.num_class_embeds);
        rc = EXIT_USAGE;
        goto done;
    }
    x = malloc(sizeof(float) * (size_t)N * D);
    labels = di.num_classes ? malloc(sizeof *labels * (size_t)N) : NULL;
    if (root) terms = malloc(sizeof(double) * (size_t)N * (T + 1)), mse = malloc(sizeof(double) * (size_t)N * T);
    /* Setting up may fail on one rank alone: every rank learns it before the evaluation. */
    if (!x || (di.num_classes && !labels) || (root && (!terms || !mse))) {
        fprintf(stderr, "ddpm eval nll: out of memory\n");
        rc = EXIT_RUNTIME;
    } else if ((st = ddpm_dataset_images(d, 0, N, x, labels))) {
        rc = cli_status(&cmd, st);
    }
    if (ddpm_proc_or(rc != 0)) {
        rc = rc ? rc : EXIT_RUNTIME;
        goto done;
    }
    const char *given = !mi.num_class_embeds ? "" : labels ? ", conditional on the data's labels"
                                                             : ", unlabelled data: the null class (unconditional)";
    if (root)
        fprintf(stderr, "ddpm eval nll: %s; %d images, T = %d, batch %d%s%s\n", di.desc, N, T, B,
                ddpm_proc_size() > 1 ? ", split over the processes" : "", given);
    progress pr = {isatty(2), -1, ddpm_now()};
    st = ddpm_nll(m, N, x, mi.num_class_embeds > 0 ? labels : NULL, B, (uint64_t)seed, NULL, terms, mse, on_step,
                  &pr);
    if (root && pr.tty) fputc('\n', stderr);
    if (st) {
        rc = cli_status_all(&cmd, st);
        goto done;
    }
    if (!root) goto done;
    char path[4300];
    if (csv) snprintf(path, sizeof path, "%s", csv);
    else if (strcmp(mi.dir, model)) snprintf(path, sizeof path, "%s/nll.csv", model);
    else snprintf(path, sizeof path, "nll.csv");
    rc = nll_report(path, terms, mse, N, T, D);
done:
    free(terms), free(mse), free(x), free(labels);
    ddpm_dataset_free(d);
    ddpm_model_free(m);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "nll")) return eval_nll(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "fid")) return eval_fid(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "stats")) return eval_stats(argc - 1, argv + 1);
    fprintf(stderr, "ddpm eval: %s\nusage:\n"
                    "  ddpm eval nll --model DIR [--data SRC] [--n N]      the variational bound in bits/dim\n"
                    "  ddpm eval fid --samples X [--ref Y] [--n N]         FID, IS, precision/recall\n"
                    "  ddpm eval stats --data SRC --out S.npz              reference statistics for eval fid\n"
                    "(see 'ddpm eval nll|fid|stats --help')\n", argc >= 2 ? "unknown evaluation" : "which evaluation?");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : EXIT_USAGE;
}
