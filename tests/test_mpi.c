/* test_mpi.c -- ddpm over several processes (mpirun -np K).
 *
 * Sampling and evaluation (test_mpi_sample, test_mpi_eval_nll,
 * test_mpi_failure): `ddpm sample` and `ddpm eval nll` split their images over
 * the ranks in whole batches and must write the same bytes as a plain run,
 * with 1 to 4 ranks (4 ranks over 3 batches: rank 0 computes nothing), and a
 * failure on one rank must end every rank with status 1 instead of a hang.
 *
 * The whole binary is skipped (a line saying why, exit status 77: see
 * check.h) when mpirun is not on PATH or ddpm was built without MPI
 * (mpi_require). The ranks run with --oversubscribe (more ranks than cores)
 * under timeout(1). Needs BUILD/ddpm (cli_run.h); run from the repository
 * root. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "io/npy.h"
#include "io/png.h"

#define FIXTURE "tests/fixtures/unet_b" /* 8x8x1 */
#define MPI_TIMEOUT_S 120               /* a run that hangs fails instead */

static char mpi_tmp[64]; /* this run's scratch folder ("" until mpi_scratch) */

/* Returns if ddpm can run as ranks of an mpirun job here; else skips the
 * whole binary (check_skip: every test here needs it, and nothing depends on
 * which test asks first). */
static void mpi_require(void) {
    if (!dist_have_mpi()) check_skip(__FILE__, "ddpm was built without MPI (install libopenmpi-dev, rebuild)");
    if (system("command -v mpirun > /dev/null 2>&1") != 0) check_skip(__FILE__, "mpirun is not on PATH");
    /* Open MPI refuses to start as root without these. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
}

/* The launcher for np ranks ("" for a plain run, np = 0), under a timeout.
 * LeakSanitizer is off for the ranks (a sanitizer build): Open MPI keeps
 * allocations until exit. */
static const char *launcher(int np) {
    static char buf[256];
    if (np == 0) snprintf(buf, sizeof buf, "timeout %d", MPI_TIMEOUT_S);
    else
        snprintf(buf, sizeof buf, "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 timeout %d "
                 "mpirun --oversubscribe -np %d", MPI_TIMEOUT_S, np);
    return buf;
}

/* mpi_tmp (made once): model/ is the fixture's network with a T = 20 linear
 * schedule (eval nll is T network calls per batch), png/ holds 20 8x8 images. */
static void mpi_scratch(void) {
    if (mpi_tmp[0]) return;
    snprintf(mpi_tmp, sizeof mpi_tmp, "/tmp/ddpm_test_mpi_XXXXXX");
    if (!mkdtemp(mpi_tmp)) {
        perror("mkdtemp");
        exit(1);
    }
    char p[256], q[PATH_MAX];
    snprintf(p, sizeof p, "%s/model", mpi_tmp);
    mkdir(p, 0777);
    const char *links[] = {"config.json", "diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, FIXTURE "/%s", links[i]);
        CHECK(realpath(p, q) != NULL, "realpath %s", p);
        snprintf(p, sizeof p, "%s/model/%s", mpi_tmp, links[i]);
        CHECK(symlink(q, p) == 0, "symlink %s", p);
    }
    snprintf(p, sizeof p, "%s/model/scheduler_config.json", mpi_tmp);
    FILE *f = fopen(p, "w");
    CHECK(f && fputs("{\"_class_name\": \"DDPMScheduler\", \"beta_start\": 0.0001, \"beta_end\": 0.02, "
                     "\"beta_schedule\": \"linear\", \"num_train_timesteps\": 20, \"clip_sample\": true, "
                     "\"variance_type\": \"fixed_small\", \"prediction_type\": \"epsilon\"}\n", f) >= 0 &&
              fclose(f) == 0, "cannot write %s", p);
    snprintf(p, sizeof p, "%s/png", mpi_tmp);
    mkdir(p, 0777);
    uint8_t px[64];
    err_t err;
    for (int i = 0; i < 20; i++) {
        for (int k = 0; k < 64; k++) px[k] = (uint8_t)((k * 37 + i * 91 + (k * i) % 13) % 256);
        snprintf(p, sizeof p, "%s/png/%02d.png", mpi_tmp, i);
        CHECK(png_write_u8(p, px, 8, 8, 1, &err) == 0, "%s", err.msg);
    }
    printf("  binary %s, scratch %s\n", cli_path(), mpi_tmp);
}

/* Whether files a and b hold the same bytes (both must exist). */
static int same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int same = f && g;
    while (same) {
        int ca = fgetc(f), cb = fgetc(g);
        same = ca == cb;
        if (ca == EOF) break;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* Occurrences of needle in s. */
static int count_in(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Runs "ddpm ARGS" (args_fmt with %s for a fresh output folder) plainly with
 * --threads 1 (and 2 if threads2: a network of 8 or more images is sharded,
 * the same bits with any thread count; see docs/determinism.md), and as 2, 3
 * and 4 ranks with --threads 1 each; checks that every file of files[]
 * (NULL-terminated, relative to the output folder) has the same bytes in all
 * runs, and that each run printed summary (rank 0's last line) once. */
static void check_same_outputs(const char *name, const char *args_fmt, int threads2, const char *const *files,
                               const char *summary) {
    static const int nps[] = {0, 0, 2, 3, 4}, threads[] = {1, 2, 1, 1, 1};
    char dir[5][300], args[2048], fmt[1024], a[2048], b[2048];
    static char out[1 << 16];
    for (int r = 0; r < 5; r++) {
        if (threads[r] == 2 && !threads2) continue;
        snprintf(dir[r], sizeof dir[r], "%s/%s_np%d_t%d", mpi_tmp, name, nps[r], threads[r]);
        mkdir(dir[r], 0777);
        snprintf(fmt, sizeof fmt, "%s --threads %d", args_fmt, threads[r]);
        snprintf(args, sizeof args, fmt, dir[r]);
        int rc = run_cli_with(launcher(nps[r]), args, out, sizeof out);
        CHECK(rc == 0 && count_in(out, summary) == 1,
              "%s ddpm %s: exit %d, '%s' printed %d times (want once):\n%s", launcher(nps[r]), args, rc, summary,
              count_in(out, summary), out);
        if (r == 0) continue;
        for (int i = 0; files[i]; i++) {
            snprintf(a, sizeof a, "%s/%s", dir[0], files[i]);
            snprintf(b, sizeof b, "%s/%s", dir[r], files[i]);
            CHECK(same_file(a, b), "%s differs from %s (plain run, --threads 1)", b, a);
        }
        printf("  ok  %s ranks %d, --threads %d: %s", name, nps[r] ? nps[r] : 1, threads[r], files[0]);
        for (int i = 1; files[i]; i++) printf(", %s", files[i]);
        printf(" as the plain run with --threads 1\n");
    }
}

/* ddpm sample: 20 images in batches of 8, and 10 in batches of 4 (unsharded:
 * an image's bits depend on its batch, so this catches batches split
 * differently from a plain run). The last batch is partial in both. */
static void test_mpi_sample(void) {
    mpi_require();
    mpi_scratch();
    char fmt[512];
    const char *files[] = {"samples.npy", "grid.png", "samples/000000.png", "samples/000009.png", NULL};
    snprintf(fmt, sizeof fmt, "sample --model %s/model --out %%s --n 20 --batch 8 --steps 5 --seed 7", mpi_tmp);
    check_same_outputs("sample_b8", fmt, 1, files, "float32 NCHW");
    snprintf(fmt, sizeof fmt, "sample --model %s/model --out %%s --n 10 --batch 4 --steps 5 --seed 7", mpi_tmp);
    check_same_outputs("sample_b4", fmt, 0, files, "float32 NCHW");
}

/* ddpm eval nll: every one of the 20 terms, with batches as test_mpi_sample's. */
static void test_mpi_eval_nll(void) {
    mpi_require();
    mpi_scratch();
    char fmt[512];
    const char *files[] = {"nll.csv", "nll_rd.svg", NULL};
    snprintf(fmt, sizeof fmt, "eval nll --model %s/model --data %s/png --n 20 --batch 8 --seed 3 --csv %%s/nll.csv",
             mpi_tmp, mpi_tmp);
    check_same_outputs("nll_b8", fmt, 1, files, "NLL bound ");
    snprintf(fmt, sizeof fmt, "eval nll --model %s/model --data %s/png --n 10 --batch 4 --seed 3 --csv %%s/nll.csv",
             mpi_tmp, mpi_tmp);
    check_same_outputs("nll_b4", fmt, 0, files, "NLL bound ");
}

/* A failure on one rank alone (a non-finite network output in the last
 * batch, rank 2's of 3) ends every rank with status 1 and the message, and
 * nothing is written; a bad model folder (every rank) gives status 2. */
static void test_mpi_failure(void) {
    mpi_require();
    mpi_scratch();
    float x[20 * 64];
    rng_normal(x, 20 * 64, 5, RNG_EVAL, 0);
    for (int k = 19 * 64; k < 20 * 64; k++) x[k] = 3e38f; /* finite, but overflows the network */
    char p[300], args[1024], q[400];
    err_t err;
    int64_t shape[4] = {20, 1, 8, 8};
    snprintf(p, sizeof p, "%s/big.npy", mpi_tmp);
    CHECK(npy_write_f32(p, x, 4, shape, &err) == 0, "%s", err.msg);
    for (int np = 0; np <= 3; np += 3) {
        snprintf(args, sizeof args, "sample --model %s/model --out %s/fail%d --noise %s --batch 8 --steps 2 "
                 "--threads 1", mpi_tmp, mpi_tmp, np, p);
        expect_with(launcher(np), args, 1, "non-finite value(s) (NaN/Inf), first in image 19");
        snprintf(q, sizeof q, "%s/fail%d/samples.npy", mpi_tmp, np);
        CHECK(access(q, F_OK) != 0, "%s written after a failure", q);
    }
    snprintf(args, sizeof args, "sample --model %s/none --out %s/none --threads 1", mpi_tmp, mpi_tmp);
    expect_with(launcher(2), args, 2, "does not exist");
}

/* Removes the scratch folder (ours alone); runs last. */
static void test_mpi_cleanup(void) {
    if (!mpi_tmp[0]) return;
    char a[300];
    snprintf(a, sizeof a, "rm -rf '%s'", mpi_tmp);
    CHECK(system(a) == 0, "%s", a);
}

TEST_MAIN(test_mpi_sample, test_mpi_eval_nll, test_mpi_failure, test_mpi_cleanup)
