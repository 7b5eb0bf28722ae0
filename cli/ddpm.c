/* ddpm.c -- the ddpm program: dispatches to one subcommand per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "ddpm.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} commands[] = {
    {"train", cmd_train, "train a noise-prediction U-Net on images (Algorithm 1)"},
    {"eval", cmd_eval, "evaluate: 'eval nll' (bits/dim), 'eval fid' (FID, IS, precision/recall), 'eval stats'"},
    {"figure", cmd_figure, "the paper's figures: 'figure progressive|shared|interpolate' (Figs. 6, 7, 8)"},
    {"info", cmd_info, "summarise a model folder or training run"},
    {"sample", cmd_sample, "draw images: --sampler ddpm (ancestral), ddim or dpm++2m (PNG grid, PNGs, .npy)"},
    {"eps", cmd_eps, "predict the noise eps(x_t, t) for inputs in an .npy file"},
};

/* The library's notes (ddpm_set_log): "ddpm CMD: message" on stderr. */
static void log_line(void *ctx, ddpm_log_level level, const char *msg)
{
    fprintf(stderr, "ddpm %s: %s%s\n", (const char *)ctx, level == DDPM_LOG_WARN ? "warning: " : "", msg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ddpm COMMAND [options]   (ddpm COMMAND --help for its options)\n\n"
               "Denoising Diffusion Probabilistic Models (Ho et al. 2020) in C.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            /* One rank of an MPI job when a launcher started us (src/dist). */
            if (ddpm_proc_init()) {
                fprintf(stderr, "ddpm: %s\n", ddpm_errmsg(NULL));
                return EXIT_RUNTIME;
            }
            char name[64];
            snprintf(name, sizeof name, "%s%s%s", argv[1], argc > 2 && !strcmp(argv[1], "eval") ? " " : "",
                     argc > 2 && !strcmp(argv[1], "eval") ? argv[2] : "");
            ddpm_set_log(log_line, name);
            /* What splits over processes: train, sample, eval nll. */
            int parallel = !strcmp(argv[1], "train") || !strcmp(argv[1], "sample") ||
                           (!strcmp(argv[1], "eval") && argc > 2 && !strcmp(argv[2], "nll"));
            if (ddpm_proc_size() > 1 && !parallel) {
                if (ddpm_proc_rank() == 0)
                    fprintf(stderr, "ddpm %s: does not run over MPI (train, sample and eval nll do); "
                                    "run it as one process\n", name);
                ddpm_proc_finalize();
                return EXIT_USAGE;
            }
            int rc = commands[i].run(argc - 1, argv + 1);
            /* A failed rank of a job may have left the others waiting in a
             * collective: end the whole job rather than hang in MPI_Finalize.
             * (128 + signal is a stop every rank agreed on, see cmd_train.) */
            if (rc != 0 && rc < 128 && ddpm_proc_size() > 1) ddpm_proc_abort(rc);
            ddpm_proc_finalize();
            return rc;
        }
    fprintf(stderr, "ddpm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
