/* cli_run.h -- running the ddpm program from a test: cli_path() finds
 * BUILD/ddpm next to the test binary (tests live in BUILD/tests/, located
 * through /proc/self/exe; build both first: make test-build), run_cli() runs
 * "BUILD/ddpm ARGS" through the shell with stderr merged into stdout and
 * returns the exit status, expect() checks status and message in one line.
 * Run the tests from the repository root (the fixtures are tests/fixtures/...). */
#ifndef DDPM_TESTS_CLI_RUN_H
#define DDPM_TESTS_CLI_RUN_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* BUILD/ddpm, found from /proc/self/exe (BUILD/tests/test_x); exits if absent. */
static inline const char *cli_path(void) {
    static char bin[PATH_MAX + 16];
    if (bin[0]) return bin;
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) {
        fprintf(stderr, "test: cannot read /proc/self/exe\n");
        exit(1);
    }
    self[k] = 0;
    char *slash = strrchr(self, '/'); /* BUILD/tests/test_x -> BUILD/tests */
    if (slash) *slash = 0;
    slash = strrchr(self, '/'); /* -> BUILD */
    if (slash) *slash = 0;
    snprintf(bin, sizeof bin, "%s/ddpm", self);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test: %s not found: build it first (make %s)\n", bin, self);
        exit(1);
    }
    return bin;
}

/* Runs "<prefix> BUILD/ddpm <args> 2>&1" through /bin/sh (quote arguments as in a
 * shell; prefix: a launcher such as "mpirun -np 2", or ""), stores up to len-1
 * bytes of its output NUL-terminated in out, and returns the exit status:
 * 0..255, 128+N when killed by signal N, -1 if it could not be started. */
static inline int run_cli_with(const char *prefix, const char *args, char *out, size_t len) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s%s%s %s 2>&1", prefix, *prefix ? " " : "", cli_path(), args);
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0;
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0) {
        size_t take = n + got < len ? got : (len > n + 1 ? len - n - 1 : 0);
        if (out && take) memcpy(out + n, buf, take), n += take;
    }
    if (out && len) out[n] = 0;
    int st = pclose(p);
    if (st == -1) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

/* run_cli_with without a launcher. */
static inline int run_cli(const char *args, char *out, size_t len) { return run_cli_with("", args, out, len); }

/* Runs "<prefix> ddpm <args>" and checks the exit status and that the output
 * contains needle (NULL: anything). Prints the output when a check fails.
 * Returns the status. */
static inline int expect_with(const char *prefix, const char *args, int code, const char *needle) {
    static char out[1 << 16];
    int rc = run_cli_with(prefix, args, out, sizeof out);
    int ok = rc == code && (!needle || strstr(out, needle));
    CHECK(ok, "%s%sddpm %s: exit %d (want %d), output%s%s%s:\n%s", prefix, *prefix ? " " : "", args, rc, code,
          needle ? " should contain '" : "", needle ? needle : "", needle ? "'" : "", out);
    if (ok) printf("  ok  exit %d  %s%sddpm %s\n", rc, prefix, *prefix ? " " : "", args);
    return rc;
}

/* expect_with without a launcher. */
static inline int expect(const char *args, int code, const char *needle) { return expect_with("", args, code, needle); }

#endif
