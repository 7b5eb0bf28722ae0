/* args.h -- the command line: one table of flags per command, parsed and
 * checked in one place, with --help generated from the same table.
 *
 * Every parse error prints "ddpm CMD: ..." and a hint to stderr and makes the
 * command exit with status 2 (EXIT_USAGE); runtime failures exit 1. */
#ifndef DDPM_ARGS_H
#define DDPM_ARGS_H

#include <stdint.h>

enum { EXIT_USAGE = 2, EXIT_RUNTIME = 1 };

typedef enum {
    ARG_INT,      /* long long in [min, max] */
    ARG_FLOAT,    /* double in [min, max] */
    ARG_STR,      /* const char * */
    ARG_FLAG,     /* int set to 1; takes no value */
    ARG_SECONDS,  /* duration "90", "90s", "10m", "1.5h" -> double seconds in [min, max] */
    ARG_CHOICE,   /* const char * that must be one of the '|'-separated words in `choices` */
} arg_type;

typedef struct arg_spec {
    const char *name;     /* without the leading "--" */
    arg_type type;
    void *dst;            /* long long*, double*, const char**, int* */
    const char *meta;     /* value placeholder in --help, e.g. "N" */
    const char *help;
    double min, max;      /* numeric range (ARG_INT, ARG_FLOAT, ARG_SECONDS) */
    const char *choices;  /* ARG_CHOICE */
    int required;
    int seen;             /* set by the parser */
} arg_spec;

typedef struct arg_cmd {
    const char *name;     /* e.g. "train" */
    const char *summary;  /* one line */
    const char *usage;    /* paragraph after the summary (may be NULL) */
    arg_spec *specs;      /* terminated by an entry with name == NULL */
} arg_cmd;

/* Parses argv[1..argc-1] (argv[0] is the command name). Returns 0 to run,
 * 1 when --help was printed (exit 0), -1 after printing an error (exit 2). */
int args_parse(arg_cmd *cmd, int argc, char **argv);

void args_help(const arg_cmd *cmd);

/* Whether flag `name` was given on the command line (after args_parse). */
int args_seen(const arg_spec *specs, const char *name);

/* Prints "ddpm CMD: message" to stderr. */
void args_error(const arg_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
