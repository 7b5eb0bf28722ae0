/* args.c -- flag table parser for the ddpm commands (see args.h). */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void args_error(const arg_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ddpm %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const char *type_meta(const arg_spec *s)
{
    if (s->meta) return s->meta;
    switch (s->type) {
    case ARG_INT: return "N";
    case ARG_FLOAT: return "X";
    case ARG_SECONDS: return "TIME";
    case ARG_CHOICE: return s->choices;
    default: return "VALUE";
    }
}

void args_help(const arg_cmd *cmd)
{
    printf("usage: ddpm %s [options]\n\n%s\n", cmd->name, cmd->summary);
    if (cmd->usage) printf("\n%s\n", cmd->usage);
    printf("\noptions:\n");
    for (const arg_spec *s = cmd->specs; s->name; s++) {
        char left[96];
        if (s->type == ARG_FLAG)
            snprintf(left, sizeof left, "--%s", s->name);
        else
            snprintf(left, sizeof left, "--%s %s", s->name, type_meta(s));
        printf("  %-26s %s", left, s->help);
        /* The default, from the value -- once: not where the help text states it
         * itself ("[2e-4]", or "default: ..." in words, for sentinel values). */
        int stated = strchr(s->help, '[') || strstr(s->help, "(default");
        if (s->required) printf(" (required)");
        else if (stated) {
        } else if (s->type == ARG_INT && s->dst) printf(" [%lld]", *(long long *)s->dst);
        else if ((s->type == ARG_FLOAT || s->type == ARG_SECONDS) && s->dst && *(double *)s->dst != 0)
            printf(" [%g]", *(double *)s->dst);
        else if ((s->type == ARG_STR || s->type == ARG_CHOICE) && *(const char **)s->dst)
            printf(" [%s]", *(const char **)s->dst);
        printf("\n");
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* "90", "90s", "10m", "1.5h" -> seconds; -1 on a malformed value. */
static double parse_seconds(const char *v)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno || !isfinite(x)) return -1;
    double mult = 1;
    if (*end == 's') end++;
    else if (*end == 'm') mult = 60, end++;
    else if (*end == 'h') mult = 3600, end++;
    if (*end) return -1;
    return x * mult;
}

static int set_value(const arg_cmd *cmd, arg_spec *s, const char *v)
{
    char *end;
    switch (s->type) {
    case ARG_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno) {
            args_error(cmd, "--%s expects an integer, got '%s'", s->name, v);
            return -1;
        }
        if ((double)x < s->min || (double)x > s->max) {
            args_error(cmd, "--%s %lld is out of range [%.0f, %.0f]", s->name, x, s->min, s->max);
            return -1;
        }
        *(long long *)s->dst = x;
        return 0;
    }
    case ARG_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x)) {
            args_error(cmd, "--%s expects a number, got '%s'", s->name, v);
            return -1;
        }
        if (x < s->min || x > s->max) {
            args_error(cmd, "--%s %g is out of range [%g, %g]", s->name, x, s->min, s->max);
            return -1;
        }
        *(double *)s->dst = x;
        return 0;
    }
    case ARG_SECONDS: {
        double x = parse_seconds(v);
        if (x < 0) {
            args_error(cmd, "--%s expects a duration like 90s, 10m or 1.5h, got '%s'", s->name, v);
            return -1;
        }
        if (x < s->min || x > s->max) {
            args_error(cmd, "--%s %s is out of range [%gs, %gs]", s->name, v, s->min, s->max);
            return -1;
        }
        *(double *)s->dst = x;
        return 0;
    }
    case ARG_CHOICE:
        if (!choice_ok(s->choices, v)) {
            args_error(cmd, "--%s must be one of %s, got '%s'", s->name, s->choices, v);
            return -1;
        }
        *(const char **)s->dst = v;
        return 0;
    case ARG_STR:
        if (!*v) {
            args_error(cmd, "--%s expects a non-empty value", s->name);
            return -1;
        }
        *(const char **)s->dst = v;
        return 0;
    case ARG_FLAG:
        *(int *)s->dst = 1;
        return 0;
    }
    return -1;
}

int args_parse(arg_cmd *cmd, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            args_help(cmd);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            args_error(cmd, "unexpected argument '%s' (see 'ddpm %s --help')", a, cmd->name);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        arg_spec *s = cmd->specs;
        while (s->name && !(strlen(s->name) == len && strncmp(s->name, name, len) == 0)) s++;
        if (!s->name) {
            args_error(cmd, "unknown flag --%.*s (see 'ddpm %s --help')", (int)len, name, cmd->name);
            return -1;
        }
        const char *v = NULL;
        if (s->type == ARG_FLAG) {
            if (eq) {
                args_error(cmd, "--%s takes no value", s->name);
                return -1;
            }
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            args_error(cmd, "--%s needs a value (%s)", s->name, type_meta(s));
            return -1;
        }
        if (set_value(cmd, s, v) != 0) return -1;
        s->seen = 1;
    }
    for (arg_spec *s = cmd->specs; s->name; s++)
        if (s->required && !s->seen) {
            args_error(cmd, "--%s is required (see 'ddpm %s --help')", s->name, cmd->name);
            return -1;
        }
    return 0;
}

int args_seen(const arg_spec *specs, const char *name) {
    for (const arg_spec *s = specs; s->name; s++)
        if (strcmp(s->name, name) == 0) return s->seen;
    return 0;
}
