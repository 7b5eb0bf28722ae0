/* fuzz_args.c -- libFuzzer harness for the command-line flag parser
 * (cli/args.c: args_parse, args_help, args_seen).
 *
 * The input is split at NUL bytes into argv[1..] (argv[0] is "sample"; at most
 * 64 arguments) and parsed against a flag table like cmd_sample's: its own
 * flags, the shared sampler flags (CLI_SAMPLER_SPECS) and --threads, plus a
 * duration flag like train's --time, so every argument type is covered.
 * args_parse must return (it never exits the process; --help prints and
 * returns 1), and a successful parse must leave every value in its range.
 * Errors and help are printed by design; the harness sends stdout and stderr
 * to /dev/null (sanitizer and libFuzzer reports still reach the terminal).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fuzz_util.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_mute();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A NUL-terminated copy, cut into arguments at the NUL bytes. */
    char *buf = malloc(size + 1);
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    argv[argc++] = "sample";
    for (size_t i = 0; i < size && argc <= MAX_ARGS; i += strlen(buf + i) + 1) argv[argc++] = buf + i;
    argv[argc] = NULL;

    const char *model = NULL, *out = NULL, *noise = NULL, *classes = NULL;
    long long n = 64, batch = 64, threads = 0, per_class = 0;
    double guidance = 1, time_limit = 0;
    cli_sampler sa = CLI_SAMPLER_INIT;
    arg_spec specs[] = {
        {"model", ARG_STR, &model, "DIR", "model folder (diffusers layout) or run folder", 0, 0, NULL, 1, 0},
        {"out", ARG_STR, &out, "DIR", "output folder (created if missing)", 0, 0, NULL, 1, 0},
        {"n", ARG_INT, &n, "N", "number of images", 1, 1000000, NULL, 0, 0},
        {"batch", ARG_INT, &batch, "B", "images per network call", 1, 4096, NULL, 0, 0},
        CLI_SAMPLER_SPECS(&sa),
        {"class", ARG_STR, &classes, "NAME|INDEX[,...]", "the classes to draw, in turn", 0, 0, NULL, 0, 0},
        {"per-class", ARG_INT, &per_class, "K", "K images of every class", 1, 10000, NULL, 0, 0},
        {"guidance", ARG_FLOAT, &guidance, "W", "classifier-free guidance weight", 0, 100, NULL, 0, 0},
        {"noise", ARG_STR, &noise, "X_T.npy", "start from this x_T", 0, 0, NULL, 0, 0},
        {"time", ARG_SECONDS, &time_limit, "TIME", "stop after this long, e.g. 10m", 1, 1e9, NULL, 0, 0},
        ARG_THREADS(&threads),
        {0},
    };
    arg_cmd cmd = {"sample", "Sample images (fuzz table).", "usage paragraph", specs};
    int r = args_parse(&cmd, argc, argv);
    if (r != 0 && r != 1 && r != -1) abort();
    if (r == 0) {
        if (!model || !*model || !out || !*out || !args_seen(specs, "model") || !args_seen(specs, "out")) abort();
        if (n < 1 || n > 1000000 || batch < 1 || batch > 4096 || threads < 0 || threads > 4096 ||
            sa.steps < 0 || sa.steps > DDPM_MAX_TIMESTEPS || !(sa.eta >= 0 && sa.eta <= 1) ||
            !(guidance >= 0 && guidance <= 100) || !(time_limit == 0 || (time_limit >= 1 && time_limit <= 1e9)))
            abort();
        if (strcmp(sa.sampler, "ddpm") && strcmp(sa.sampler, "ddim") && strcmp(sa.sampler, "dpm++2m")) abort();
        if (args_seen(specs, "no such flag")) abort();
    }
    free(buf);
    return 0;
}
