/* test_cli.c -- the ddpm program end to end: every bad input a user can give
 * on the command line exits with the documented status (2 = usage, 1 =
 * runtime) and a message that names the problem; `info`, `eps` and `sample`
 * succeed on the tiny fixture model and write what they promise.
 *
 * The binary is found next to this test (BUILD/ddpm, BUILD/tests/test_cli)
 * by the helpers of cli_run.h: run_cli() runs "BUILD/ddpm ARGS" and returns
 * the exit status, expect() checks status and message in one line. Run from
 * the repository root (the fixtures are tests/fixtures/...). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cli_run.h"
#include "ddpm.h"
#include "core/rng.h"
#include "diffusion/sampler.h"
#include "io/fileio.h"
#include "io/npy.h"
#include "io/npz.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "ops/ops.h"

#define MODEL "tests/fixtures/unet_b" /* 8x8x1, T = 1000 */

static char tmp[64]; /* this run's scratch folder */

/* tmp/name into buf. */
static const char *tpath(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", tmp, name);
    return buf;
}

static void write_npy(const char *path, const float *x, int n, int c, int h, int w) {
    err_t err;
    int64_t shape[4] = {n, c, h, w};
    if (npy_write_f32(path, x, 4, shape, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

static void write_text(const char *path, const char *text) {
    err_t err;
    const void *chunks[1] = {text};
    size_t lens[1] = {strlen(text)};
    if (file_write_atomic(path, chunks, lens, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/ddpm_test_cli_XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        exit(1);
    }
    cli_path();
    printf("  binary %s, scratch %s\n", cli_path(), tmp);
}

static void test_usage_errors(void) {
    setup();
    expect("", 2, "usage: ddpm COMMAND");
    expect("frobnicate", 2, "unknown command 'frobnicate'");
    expect("--help", 0, "sample");
    expect("info --model " MODEL " --bogus 3", 2, "unknown flag --bogus");
    expect("info", 2, "--model is required");
    expect("sample --model " MODEL, 2, "--out is required");
    expect("sample --model " MODEL " --out /tmp/x --n", 2, "--n needs a value");
    expect("sample --model " MODEL " --out /tmp/x --n abc", 2, "--n expects an integer, got 'abc'");
    expect("sample --model " MODEL " --out /tmp/x --n 12x", 2, "--n expects an integer");
    expect("sample --model " MODEL " --out /tmp/x --eta 0.x --sampler ddim", 2, "--eta expects a number");
    expect("sample --model " MODEL " --out /tmp/x --n 0", 2, "--n 0 is out of range");
    expect("sample --model " MODEL " --out /tmp/x --batch -1", 2, "--batch -1 is out of range");
    expect("sample --model " MODEL " --out /tmp/x --sampler foo", 2, "--sampler must be one of ddpm|ddim|dpm++2m, got 'foo'");
    expect("sample --model " MODEL " --out /tmp/x --sampler dpm++2m --eta 0.5", 2, "--eta applies to --sampler ddim only");
    expect("sample --model " MODEL " --out /tmp/x --sampler dpm++2m --steps 1000", 2, "need N < num_train_timesteps");
    expect("sample --model " MODEL " --out /tmp/x --x0 foo", 2, "--x0 must be one of auto|config|none|clip|threshold");
    expect("sample --model " MODEL " --out /tmp/x --x0 none --threshold 0.9", 2, "apply to --x0 threshold only");
    expect("sample --model " MODEL " --out /tmp/x --x0 threshold --threshold-max 0.5", 2, "--threshold-max 0.5 is out of range");
    expect("sample --model " MODEL " --out /tmp/x --spacing foo", 2, "--spacing must be one of");
    expect("sample --model " MODEL " --out /tmp/x --steps 0", 2, "--steps 0 is out of range");
    expect("sample --model " MODEL " --out /tmp/x --steps 1001", 2, "--steps 1001 is out of range [1, 1000]");
    expect("sample --model " MODEL " --out /tmp/x --sampler ddim --steps 5000", 2, "out of range [1, 1000]");
    expect("sample --model " MODEL " --out /tmp/x --sampler ddim --eta 1.5", 2, "--eta 1.5 is out of range");
    expect("sample --model " MODEL " --out /tmp/x --eta 0.5", 2, "--eta applies to --sampler ddim only");
    expect("sample --model " MODEL " --out /tmp/x stray", 2, "unexpected argument 'stray'");
    expect("sample --help", 0, "samples.npy");
    /* --help shows each default once, and no sentinel value as a default. */
    const char *helps[] = {"train", "sample", "eval nll", "eval fid", "eval stats", "eps", "info",
                           "figure progressive", "figure shared", "figure interpolate"};
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        static char out[1 << 16];
        char a[64];
        snprintf(a, sizeof a, "%s --help", helps[i]);
        int rc = run_cli(a, out, sizeof out);
        CHECK(rc == 0 && !strstr(out, "] [") && !strstr(out, "[-1]"), "ddpm %s: a default twice or a sentinel:\n%s",
              a, out);
        for (char *l = out; (l = strstr(l, "(default")) != NULL; l++) {
            char *e = strchr(l, '\n');
            CHECK(!e || !memchr(l, '[', (size_t)(e - l)) || strstr(l, "[-1, 1]") < e,
                  "ddpm %s: a default in words and in brackets: %.120s", a, l);
        }
    }
    /* The defaults the help text states in words are the library's. */
    char want[96];
    snprintf(want, sizeof want, "(default: %g;", (double)DDPM_GUIDANCE_DEFAULT);
    expect("sample --help", 0, want);
    snprintf(want, sizeof want, "(default: %g,%g,", (double)DDPM_GUIDANCE_INTERVAL_LO, (double)DDPM_GUIDANCE_INTERVAL_HI);
    expect("sample --help", 0, want);
    snprintf(want, sizeof want, "in (%g, %g] by", (double)DDPM_GUIDANCE_INTERVAL_LO, (double)DDPM_GUIDANCE_INTERVAL_HI);
    expect("sample --help", 0, want);
    expect("eps --model " MODEL " --x a.npy --out b.npy --t -1", 2, "--t -1 is out of range");
}

static void test_bad_files(void) {
    char a[2048], p[1024], q[1024];
    /* a model folder that does not exist */
    expect("info --model /nonexistent/model", 2, "/nonexistent/model");
    expect("sample --model /nonexistent/model --out /tmp/x", 2, "/nonexistent/model");
    /* a corrupt config.json */
    tpath(p, sizeof p, "corrupt");
    mkdir(p, 0777);
    write_text(tpath(q, sizeof q, "corrupt/config.json"), "{ \"sample_size\": 8, ");
    snprintf(a, sizeof a, "info --model %s", p);
    expect(a, 2, "config.json");
    snprintf(a, sizeof a, "sample --model %s --out %s/o", p, tmp);
    expect(a, 2, "config.json");
    /* a valid config.json with a scheduler config we cannot use */
    tpath(p, sizeof p, "badsched");
    mkdir(p, 0777);
    unsigned char *cfg = NULL;
    size_t cfglen;
    err_t err;
    CHECK(!file_read_all(MODEL "/config.json", &cfg, &cfglen, &err), "%s", err.msg);
    char *cfgs = calloc(cfglen + 1, 1);
    memcpy(cfgs, cfg, cfglen);
    write_text(tpath(q, sizeof q, "badsched/config.json"), cfgs);
    write_text(tpath(q, sizeof q, "badsched/scheduler_config.json"), "{\"variance_type\": \"learned\"}");
    snprintf(a, sizeof a, "sample --model %s --out %s/o", p, tmp);
    expect(a, 2, "variance_type");
    /* weights missing */
    write_text(tpath(q, sizeof q, "badsched/scheduler_config.json"), "{}");
    expect(a, 2, "diffusion_pytorch_model");
    free(cfg), free(cfgs);

    /* eps with a wrongly shaped input */
    float *x = calloc(2 * 3 * 8 * 8, sizeof(float));
    write_npy(tpath(p, sizeof p, "x_bad.npy"), x, 2, 3, 8, 8);
    snprintf(a, sizeof a, "eps --model " MODEL " --x %s --t 10 --out %s/e.npy", p, tmp);
    expect(a, 2, "expected shape [N, 1, 8, 8]");
    snprintf(a, sizeof a, "eps --model " MODEL " --x %s/missing.npy --t 10 --out %s/e.npy", tmp, tmp);
    expect(a, 2, "missing.npy");
    write_text(tpath(q, sizeof q, "garbage.npy"), "not an npy file");
    snprintf(a, sizeof a, "eps --model " MODEL " --x %s --t 10 --out %s/e.npy", q, tmp);
    expect(a, 2, "garbage.npy");

    /* sample --noise: wrong shape, disagreeing --n, non-finite values, missing file */
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/o --noise %s --steps 2", tmp, p);
    expect(a, 2, "expected float32 [n, 1, 8, 8]");
    write_npy(tpath(p, sizeof p, "x_good.npy"), x, 2, 1, 8, 8);
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/o --noise %s --n 3 --steps 2", tmp, p);
    expect(a, 2, "--n 3 disagrees with --noise");
    x[70] = NAN;
    write_npy(tpath(p, sizeof p, "x_nan.npy"), x, 2, 1, 8, 8);
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/o --noise %s --steps 2", tmp, p);
    expect(a, 2, "non-finite");
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/o --noise %s/nope.npy --steps 2", tmp, tmp);
    expect(a, 2, "nope.npy");
    /* an output folder that cannot be created (a file is in the way) */
    write_text(tpath(q, sizeof q, "afile"), "x");
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/afile/o --n 1 --steps 1", tmp);
    expect(a, 1, "afile");
    free(x);
}

/* Reads an .npy and checks its shape; returns the data (free it) or NULL. */
static float *read_npy(const char *path, int n, int c, int h, int w) {
    float *d = NULL;
    int nd = 0;
    int64_t sh[NPY_MAX_DIMS];
    err_t err;
    if (npy_read_f32(path, &d, &nd, sh, &err)) {
        CHECK(0, "%s", err.msg);
        return NULL;
    }
    CHECK(nd == 4 && sh[0] == n && sh[1] == c && sh[2] == h && sh[3] == w, "%s: shape [%lld %lld %lld %lld]", path,
          (long long)sh[0], (long long)sh[1], (long long)sh[2], (long long)sh[3]);
    return d;
}

static void test_success(void) {
    char a[2048], p[1024];
    err_t err;
    expect("info --model " MODEL, 0, "parameters");

    /* eps on a correctly shaped input */
    float *x = calloc(2 * 64, sizeof(float));
    rng_normal(x, 128, 1, RNG_EVAL, 0);
    write_npy(tpath(p, sizeof p, "x.npy"), x, 2, 1, 8, 8);
    snprintf(a, sizeof a, "eps --model " MODEL " --x %s --t 500 --out %s/eps.npy --threads 1", p, tmp);
    expect(a, 0, NULL);
    float *e = read_npy(tpath(p, sizeof p, "eps.npy"), 2, 1, 8, 8);
    free(e), free(x);

    /* sample: grid.png, samples/, samples.npy */
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/s --n 4 --steps 5 --seed 3 --threads 1", tmp);
    expect(a, 0, "samples.npy [4, 1, 8, 8]");
    uint8_t *pix = NULL;
    int w = 0, h = 0, c = 0;
    CHECK(!png_read_u8(tpath(p, sizeof p, "s/grid.png"), &pix, &w, &h, &c, &err), "%s", err.msg);
    CHECK(w == 18 && h == 18 && c == 1, "grid.png is %dx%dx%d, want 2x2 images of 8x8 with 2 px gaps: 18x18x1", w,
          h, c);
    free(pix);
    float *s = read_npy(tpath(p, sizeof p, "s/samples.npy"), 4, 1, 8, 8);
    if (s) {
        float lo = 0, hi = 0;
        for (int i = 0; i < 256; i++) lo = s[i] < lo ? s[i] : lo, hi = s[i] > hi ? s[i] : hi;
        CHECK(lo >= -1 && hi <= 1 && hi > lo, "samples in [%g, %g]", lo, hi);
        /* the last single PNG is image 3 of samples.npy */
        pix = NULL;
        CHECK(!png_read_u8(tpath(p, sizeof p, "s/samples/000003.png"), &pix, &w, &h, &c, &err), "%s", err.msg);
        uint8_t ref[64];
        png_to_u8(s + 3 * 64, ref, 64);
        CHECK(pix && w == 8 && h == 8 && c == 1 && memcmp(pix, ref, 64) == 0, "000003.png != samples.npy image 3");
        free(pix);
    }

    /* --noise with the x_T the sampler would draw gives the same samples */
    char xtp[1024];
    float xT[4 * 64], xTn[4 * 64];
    sampler_prior(3, 0, 4, 64, xT);
    ops_nhwc_to_nchw(xTn, xT, 4, 1, 64);
    write_npy(tpath(xtp, sizeof xtp, "xT.npy"), xTn, 4, 1, 8, 8);
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/s2 --noise %s --steps 5 --seed 3 --batch 4 --threads 1",
             tmp, xtp);
    expect(a, 0, NULL);
    float *s2 = read_npy(tpath(p, sizeof p, "s2/samples.npy"), 4, 1, 8, 8);
    CHECK(s && s2 && memcmp(s, s2, 256 * sizeof(float)) == 0, "--noise (drawn x_T) differs from drawing it");

    /* batches of 3 (+1 padded) and 1 image: the same noise, so the same images up to
     * the network's rounding (oneDNN's GEMM rounding depends on the row count) */
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/s3 --n 4 --steps 5 --seed 3 --batch 3 --threads 1", tmp);
    expect(a, 0, NULL);
    float *s3 = read_npy(tpath(p, sizeof p, "s3/samples.npy"), 4, 1, 8, 8);
    if (s && s3) check_close("sample --batch 3 vs --batch 4", s3, s, 256, 1e-4, 0);
    /* --noise is sliced into the same batches: equal to s3 bit for bit */
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/s5 --noise %s --steps 5 --seed 3 --batch 3 --threads 1",
             tmp, xtp);
    expect(a, 0, NULL);
    float *s5 = read_npy(tpath(p, sizeof p, "s5/samples.npy"), 4, 1, 8, 8);
    CHECK(s3 && s5 && memcmp(s3, s5, 256 * sizeof(float)) == 0, "--noise in batches of 3 differs from drawing it");
    free(s5);

    /* DDIM, eta 0: deterministic given x_T, whatever the seed */
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/d1 --noise %s --sampler ddim --steps 4 --seed 1 --threads 1",
             tmp, xtp);
    expect(a, 0, "ddim");
    snprintf(a, sizeof a, "sample --model " MODEL " --out %s/d2 --noise %s --sampler ddim --steps 4 --seed 2 --threads 1",
             tmp, xtp);
    expect(a, 0, NULL);
    float *d1 = read_npy(tpath(p, sizeof p, "d1/samples.npy"), 4, 1, 8, 8);
    float *d2 = read_npy(tpath(p, sizeof p, "d2/samples.npy"), 4, 1, 8, 8);
    CHECK(d1 && d2 && memcmp(d1, d2, 256 * sizeof(float)) == 0, "ddim eta 0 depends on the seed");
    free(s), free(s2), free(s3), free(d1), free(d2);

    /* a model folder without scheduler_config.json: the DDPMScheduler defaults, said so */
    char q[1024], r[PATH_MAX];
    tpath(p, sizeof p, "nosched");
    mkdir(p, 0777);
    CHECK(realpath(MODEL "/config.json", r) != NULL, "realpath");
    CHECK(!symlink(r, tpath(q, sizeof q, "nosched/config.json")), "symlink");
    CHECK(realpath(MODEL "/diffusion_pytorch_model.safetensors", r) != NULL, "realpath");
    CHECK(!symlink(r, tpath(q, sizeof q, "nosched/diffusion_pytorch_model.safetensors")), "symlink");
    snprintf(a, sizeof a, "sample --model %s --out %s/s4 --n 1 --steps 2 --threads 1", p, tmp);
    expect(a, 0, "no scheduler_config.json");
}


/* Lines in a text file (0 if absent). */
static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    int n = 0, ch;
    if (!f) return 0;
    while ((ch = fgetc(f)) != EOF) n += ch == '\n';
    fclose(f);
    return n;
}

static void test_train(void) {
    char run[256], a[1024], path[512];
    tpath(run, sizeof run, "run");
    /* Usage errors: exit 2 and a message naming the problem. */
    expect("train --batch 0", 2, "--batch 0 is out of range");
    expect("train --time 5x", 2, "duration");
    expect("train --lr", 2, "needs a value");
    expect("train --lr abc", 2, "expects a number");
    expect("train --preset huge", 2, "must be one of");
    expect("train --bogus", 2, "unknown flag --bogus");
    snprintf(a, sizeof a, "train --out %s/x --data /nonexistent/images --threads 1", tmp);
    expect(a, 2, "/nonexistent/images");
    snprintf(a, sizeof a, "train --out %s/none --resume --threads 1", tmp);
    expect(a, 2, "does not exist");
    snprintf(a, sizeof a, "train --out %s/x --config %s/config.json --limit 4 --threads 1", tmp, MODEL);
    expect(a, 2, "data are 28x28x1 images but the model takes 8x8x1");

    snprintf(a, sizeof a, "eps --model %s --x %s/x.npy --t 1000 --out %s/e.npy", MODEL, tmp, tmp);
    expect(a, 2, "outside the model's schedule");

    /* A short run, then its continuation. */
    snprintf(a, sizeof a, "train --out %s --limit 16 --batch 4 --steps 3 --log-every 1 --threads 1 "
             "--sample-every 2 --sample-n 4", run);
    expect(a, 0, "done at step 3");
    struct stat sb;
    for (int k = 2; k <= 3; k++) {
        snprintf(path, sizeof path, "%s/samples/step_%08d.png", run, k);
        CHECK(stat(path, &sb) == 0 && sb.st_size > 0, "missing sample grid %s", path);
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    CHECK(count_lines(path) == 3, "metrics.jsonl: %d lines, want 3", count_lines(path));
    expect(a, 2, "already holds a run");
    snprintf(a, sizeof a, "train --out %s --resume --lr 0.1", run);
    expect(a, 2, "cannot change when resuming");
    snprintf(a, sizeof a, "train --out %s --resume --limit 8", run);
    expect(a, 2, "--limit cannot change when resuming");
    snprintf(a, sizeof a, "train --out %s --resume --steps 5 --log-every 1 --threads 1", run);
    expect(a, 0, "resuming at step 3");
    CHECK(count_lines(path) == 5, "metrics.jsonl: %d lines, want 5", count_lines(path));
    snprintf(a, sizeof a, "info --model %s", run);
    expect(a, 0, "training step          5");
    snprintf(a, sizeof a, "sample --model %s --out %s/s --n 2 --sampler ddim --steps 2 --threads 1", run, tmp);
    expect(a, 0, "samples.npy");

    /* --recipe short sets the defaults it names; a flag given explicitly wins, and resuming keeps them. */
    snprintf(a, sizeof a, "train --out %s/short --recipe short --batch 4 --limit 16 --steps 1 --threads 1", tmp);
    expect(a, 0, "done at step 1");
    snprintf(a, sizeof a, "info --model %s/short", tmp);
    expect(a, 0, "\"batch\":4,\"lr\":0.002,\"warmup\":200");
    expect(a, 0, "\"ema\":0.999,");
    expect(a, 0, "\"lr_schedule\":\"cosine\",");
    expect(a, 0, "\"loss_weight\":\"min-snr\",");
    expect(a, 0, "dropout                0\n");
    snprintf(a, sizeof a, "train --out %s/short2 --recipe short --lr-schedule linear --loss-weight none --dropout 0.2 "
             "--batch 4 --limit 16 --steps 1 --threads 1", tmp);
    expect(a, 0, "done at step 1");
    snprintf(a, sizeof a, "info --model %s/short2", tmp);
    expect(a, 0, "\"lr_schedule\":\"linear\",");
    expect(a, 0, "\"loss_weight\":\"none\",");
    expect(a, 0, "dropout                0.2\n");
    snprintf(a, sizeof a, "train --out %s/short --resume --recipe paper", tmp);
    expect(a, 2, "--recipe cannot change when resuming");

    /* Ctrl-C: the step finishes, the checkpoint is saved, the status is 130. */
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "%s train --out %s/int --limit 16 --batch 4 --steps 1000000 --save-every 1000000 --log-every 1 "
             "--threads 1 > %s/int.log 2>&1 & p=$!; i=0; "
             "until grep -q '^step 2 ' %s/int.log || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done; "
             "kill -INT $p; wait $p",
             cli_path(), tmp, tmp, tmp);
    int st = system(cmd);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    CHECK(code == 130, "interrupted train exited %d, want 130", code);
    snprintf(a, sizeof a, "info --model %s/int", tmp);
    static char out[1 << 14];
    int rc = run_cli(a, out, sizeof out);
    char *stp = strstr(out, "training step");
    long long steps = stp ? atoll(stp + strlen("training step")) : -1;
    CHECK(rc == 0 && steps > 0, "after Ctrl-C the run should hold its steps (info exit %d, step %lld):\n%s", rc,
          steps, out);
    printf("  ok  Ctrl-C after step 2: exit %d, checkpoint at step %lld\n", code, steps);
}

/* Class-conditional models: every misuse of the class flags is a usage error
 * naming the problem. unet_c (diffusers-made, 5 classes, no _class_names, so
 * no null class) and png8 (two unlabelled 8x8 images, made by test_eval). */
#define CMODEL "tests/fixtures/unet_c"
static void test_classes(void) {
    char a[1024];
    expect("sample --model " MODEL " --out /tmp/x --class 1", 2, "is unconditional");
    expect("sample --model " MODEL " --out /tmp/x --guidance 2", 2, "is unconditional");
    expect("sample --model " CMODEL " --out /tmp/x --class foo", 2, "no class 'foo' (the model's classes are 0..4)");
    expect("sample --model " CMODEL " --out /tmp/x --class 5", 2, "no class '5'");
    expect("sample --model " CMODEL " --out /tmp/x --class 1 --per-class 2", 2, "exclude each other");
    expect("sample --model " CMODEL " --out /tmp/x --per-class 2 --n 7", 2, "draws 10 images (5 classes), not --n 7");
    expect("sample --model " CMODEL " --out /tmp/x --class 1 --guidance 3", 2, "has no null class");
    expect("sample --model " CMODEL " --out /tmp/x --guidance -1", 2, "--guidance -1 is out of range");
    const char *bad_interval[] = {"2,1", "1", "a,b", "-1,2", "0,2x", "nan,1", "1,1"};
    for (size_t i = 0; i < sizeof bad_interval / sizeof *bad_interval; i++) {
        snprintf(a, sizeof a, "sample --model " CMODEL " --out /tmp/x --class 1 --guidance 1 --guidance-interval %s",
                 bad_interval[i]);
        expect(a, 2, "give LO,HI (noise levels, 0 <= LO < HI; HI may be inf) or all");
    }
    expect("eps --model " CMODEL " --x a.npy --out b.npy --t 3", 2, "without a null class: give --class");
    snprintf(a, sizeof a, "train --out %s/cls --config " MODEL "/config.json --data %s/png8 --classes --steps 1", tmp,
             tmp);
    expect(a, 2, "has no class labels");
    snprintf(a, sizeof a, "train --out %s/cls --config " MODEL "/config.json --data %s/png8 --p-uncond 0.2 --steps 1",
             tmp, tmp);
    expect(a, 2, "--p-uncond applies to --classes only");
    snprintf(a, sizeof a, "sample --model " CMODEL " --out %s/c --per-class 2 --steps 2 --threads 1", tmp);
    expect(a, 0, "samples.npy [10, 1, 8, 8]");
}

/* A full disk: a 40 MB tmpfs holds one fmnist-small checkpoint (27 MB) but not
 * the temporary copy of the next one. The save fails with a clear message and
 * exit 1, and the previous checkpoint is still whole. Needs root (mount);
 * skipped otherwise. */
/* The exit contract for model files: a malformed weights file is a bad input
 * (exit 2) for every command that loads one; a config (within its caps) that
 * asks for more memory than there is gives "out of memory" and exit 1, never an
 * abort. The memory case runs under `ulimit -v` (4 GB), which AddressSanitizer
 * builds cannot take: skipped there. */
static void test_model_exit_codes(void) {
    char a[2048], p[512], q[512];
    tpath(p, sizeof p, "badweights");
    mkdir(p, 0777);
    unsigned char *txt;
    size_t len;
    err_t err;
    CHECK(!file_read_all(MODEL "/config.json", &txt, &len, &err), "%s", err.msg);
    const void *chunks[1] = {txt};
    CHECK(!file_write_atomic(tpath(q, sizeof q, "badweights/config.json"), chunks, &len, 1, &err), "%s", err.msg);
    free(txt);
    write_text(tpath(q, sizeof q, "badweights/diffusion_pytorch_model.safetensors"), "\xff\xff\xff\xff not a header");
    write_text(tpath(q, sizeof q, "badweights/scheduler_config.json"), "{\"_class_name\": \"DDPMScheduler\"}");
    float x[64] = {0};
    write_npy(tpath(q, sizeof q, "x1.npy"), x, 1, 1, 8, 8);
    snprintf(a, sizeof a, "sample --model %s --out %s/o --n 1 --steps 1", p, tmp);
    expect(a, 2, "diffusion_pytorch_model.safetensors");
    snprintf(a, sizeof a, "eps --model %s --x %s --t 3 --out %s/e.npy", p, q, tmp);
    expect(a, 2, "diffusion_pytorch_model.safetensors");
    snprintf(a, sizeof a, "figure progressive --model %s --out %s/f.png --n 1", p, tmp);
    expect(a, 2, "diffusion_pytorch_model.safetensors");
#if defined(__SANITIZE_ADDRESS__)
    printf("  skipped: the out-of-memory case (ulimit -v and AddressSanitizer do not mix)\n");
#else
    tpath(p, sizeof p, "huge");
    mkdir(p, 0777);
    write_text(tpath(q, sizeof q, "huge/config.json"),
               "{\"sample_size\": 4096, \"in_channels\": 1, \"out_channels\": 1, \"block_out_channels\": [2048, 2048, 2048], "
               "\"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\", \"AttnDownBlock2D\"], "
               "\"up_block_types\": [\"AttnUpBlock2D\", \"UpBlock2D\", \"UpBlock2D\"], \"norm_num_groups\": 4, "
               "\"attention_head_dim\": null}");
    snprintf(a, sizeof a, "sample --model %s --out %s/o --n 1 --steps 1", p, tmp);
    expect_with("ulimit -v 4000000;", a, 1, "out of memory");
#endif
}

static void test_disk_full(void) {
    char mnt[300], a[1024], cmd[1024];
    snprintf(mnt, sizeof mnt, "%s/small", tmp);
    mkdir(mnt, 0755);
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=40m tmpfs %s 2>/dev/null", mnt);
    if (system(cmd) != 0) {
        printf("  skipped: cannot mount a tmpfs here (not root?)\n");
        return;
    }
    snprintf(a, sizeof a, "train --out %s/run --limit 16 --batch 4 --steps 4 --save-every 2 --threads 1", mnt);
    expect(a, 1, "no space left on device");
    snprintf(a, sizeof a, "info --model %s/run", mnt);
    expect(a, 0, "training step          0");
    snprintf(cmd, sizeof cmd, "umount %s", mnt);
    CHECK(system(cmd) == 0, "umount %s", mnt);
}

static void test_eval(void) {
    char a[1024], dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/png8", tmp);
    mkdir(dir, 0755);
    uint8_t px[64];
    err_t err;
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 64; k++) px[k] = (uint8_t)((k * 37 + i * 91) % 256);
        snprintf(path, sizeof path, "%s/%d.png", dir, i);
        CHECK(png_write_u8(path, px, 8, 8, 1, &err) == 0, "png: %s", err.msg);
    }
    snprintf(a, sizeof a, "eval nll --model %s --data %s --csv %s/nll.csv --threads 1", MODEL, dir, tmp);
    expect(a, 0, "bits/dim (standard error");
    snprintf(path, sizeof path, "%s/nll.csv", tmp);
    CHECK(count_lines(path) == 1000 + 2, "nll.csv: %d lines, want header + 1000 + prior", count_lines(path));
    /* The rate falls as t rises (fewer terms sent), the curve is written as SVG. */
    FILE *f = fopen(path, "r");
    char line[512];
    double prev_rate = INFINITY;
    int monotone = 1, rows = 0;
    while (f && fgets(line, sizeof line, f)) {
        int t;
        double l, m, rate, d;
        if (sscanf(line, "%d,%lf,%lf,%lf,%lf", &t, &l, &m, &rate, &d) != 5) continue;
        monotone &= rate <= prev_rate + 1e-12 && d >= 0, prev_rate = rate, rows++;
    }
    if (f) fclose(f);
    CHECK(rows == 1000 && monotone, "rate-distortion columns: %d rows, rate non-increasing in t: %d", rows, monotone);
    snprintf(path, sizeof path, "%s/nll_rd.svg", tmp);
    CHECK(count_lines(path) > 5, "the rate-distortion SVG %s is missing", path);
    expect("eval", 2, "which evaluation");
    expect("eval bogus", 2, "unknown evaluation");
    expect("eval nll", 2, "--model is required");
    snprintf(a, sizeof a, "eval nll --model %s --n 2 --threads 1", MODEL);
    expect(a, 2, "data are 28x28x1 images but the model takes 8x8x1");
    snprintf(a, sizeof a, "eval nll --model %s/nosched --data %s", tmp, dir);
    expect(a, 2, "no scheduler_config.json");
}

static void test_figure(void) {
    char a[1024];
    snprintf(a, sizeof a, "figure progressive --model %s --out %s/prog.png --n 2 --t 999,500,0 --threads 1", MODEL, tmp);
    expect(a, 0, "2 rows x 3 columns (t = 999 500 0)");
    int w, h, c;
    uint8_t *px = NULL;
    err_t err;
    char path[400];
    snprintf(path, sizeof path, "%s/prog.png", tmp);
    CHECK(png_read_u8(path, &px, &w, &h, &c, &err) == 0, "%s", err.msg);
    CHECK(w == 3 * 8 + 2 * 2 && h == 2 * 8 + 2, "figure is %dx%d", w, h);
    free(px);
    snprintf(a, sizeof a, "figure progressive --model %s --out %s/p.png --t 1000", MODEL, tmp);
    expect(a, 2, "comma-separated timesteps in 0..999");
    snprintf(a, sizeof a, "figure progressive --model %s --out %s/p.png --t 5,,3", MODEL, tmp);
    expect(a, 2, "--t");
    char dir[300], path2[400];
    snprintf(dir, sizeof dir, "%s/png8", tmp); /* two 8x8 images made by test_eval */
    snprintf(a, sizeof a, "figure interpolate --model %s --data %s --out %s/interp.png --pairs 1 --lambdas 3 --t 10 "
             "--threads 1", MODEL, dir, tmp);
    expect(a, 0, "1 rows (image 2i, 3 interpolations, image 2i+1), t = 10");
    snprintf(path2, sizeof path2, "%s/interp.png", tmp);
    CHECK(png_read_u8(path2, &px, &w, &h, &c, &err) == 0, "%s", err.msg);
    CHECK(w == 5 * 8 + 4 * 2 && h == 8, "interpolation figure is %dx%d", w, h);
    free(px);
    snprintf(a, sizeof a, "figure interpolate --model %s --data %s --out %s/i.png --pairs 2", MODEL, dir, tmp);
    expect(a, 2, "2 pairs need 4");
    snprintf(a, sizeof a, "figure interpolate --model %s --data %s --out %s/i.png --t 1000", MODEL, dir, tmp);
    expect(a, 2, "outside the model's schedule");
    snprintf(a, sizeof a, "figure shared --model %s --data %s --out %s/shared.png --n 3 --t 20,5 --index 1 "
             "--threads 1", MODEL, dir, tmp);
    expect(a, 0, "2 rows (t = 20,5), the source image then 3 samples each");
    snprintf(path2, sizeof path2, "%s/shared.png", tmp);
    CHECK(png_read_u8(path2, &px, &w, &h, &c, &err) == 0, "%s", err.msg);
    CHECK(w == 4 * 8 + 3 * 2 && h == 2 * 8 + 2, "shared-latent figure is %dx%d", w, h);
    free(px);
    snprintf(a, sizeof a, "figure shared --model %s --data %s --out %s/s.png --index 2", MODEL, dir, tmp);
    expect(a, 2, "--index 2: the data hold 2 images");
    expect("figure", 2, "which figure");
    expect("figure progressive --out x.png", 2, "--model is required");
}

/* A file's whole text (static buffer; "" if unreadable). */
static const char *slurp(const char *path) {
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    return buf;
}

/* eval fid / eval stats: every kind of source, the JSON, the statistics file
 * read back, and each bad input with exit 2; FID during training. */
static void test_fid(void) {
    char a[2048], p[400], q[450], r[400];
    expect("eval fid", 2, "--samples is required");
    expect("eval stats --out x.npz", 2, "--data is required");
    /* Real images against real images, F-MNIST features picked automatically. */
    snprintf(a, sizeof a, "eval fid --samples fashion-mnist --n 120 --ref fashion-mnist --ref-split test "
             "--ref-n 150 --json %s --threads 1", tpath(p, sizeof p, "fid.json"));
    expect(a, 0, "FID (F-MNIST features): ");
    const char *js = slurp(p);
    CHECK(strstr(js, "\"fid\":") && strstr(js, "\"features\":\"fmnist\"") && strstr(js, "\"inception_score\":null") &&
              strstr(js, "\"n\":120") && strstr(js, "\"broken\":") && !strstr(js, "\"broken\":null") &&
              strstr(js, "\"out_of_range_images\":null"), "fid.json: %s", js);
    /* Statistics with features, then samples (.npy) against them: precision/recall. */
    snprintf(a, sizeof a, "eval stats --data fashion-mnist --split test --n 100 --out %s --save-features --threads 1",
             tpath(q, sizeof q, "ref.npz"));
    expect(a, 0, "mu [256], sigma [256, 256], features, logits of 100 images");
    float *x = malloc(sizeof(float) * 30 * 784);
    rng_normal(x, 30 * 784, 5, 1, 0);
    write_npy(tpath(r, sizeof r, "noise.npy"), x, 30, 1, 28, 28);
    snprintf(a, sizeof a, "eval fid --samples %s --ref %s --threads 1", r, q);
    expect(a, 0, "precision: ");
    /* Noise is broken (noisy) by the looks the statistics file keeps. */
    expect(a, 0, "broken: 30 of 30 images (100.0%): 0 dark, ");
    expect(a, 0, " 30 noisy\n");
    x[784 * 3 + 5] = NAN;
    write_npy(r, x, 30, 1, 28, 28);
    expect(a, 2, "not finite");
    write_npy(r, x, 10, 3, 28, 28); /* RGB 28x28: not for the F-MNIST network */
    snprintf(a, sizeof a, "eval fid --samples %s --ref %s --features fmnist --threads 1", r, q);
    expect(a, 2, "28x28 gray");
    free(x);
    /* Inception without its weights: the message says how to get them. */
    snprintf(a, sizeof a, "eval fid --samples %s --ref %s --features inception --inception %s/none.safetensors", r, q,
             tmp);
    expect(a, 2, "tools/convert_inception.py");
    /* Statistics of the wrong size, or not a statistics file. */
    snprintf(a, sizeof a, "eval stats --data %s/png8 --out %s --features inception --inception /nonexistent", tmp, p);
    expect(a, 2, "cannot read the Inception weights");
    snprintf(a, sizeof a, "eval fid --samples %s --ref fashion-mnist --ref-n 20 --features inception", r);
    expect(a, 2, "the samples are 28x28x3 images but the reference 28x28x1");
    err_t err;
    double mu[10] = {0}, sigma[100] = {0};
    npz_entry e[2] = {{"mu", NPY_F64, 1, {10}, mu}, {"sigma", NPY_F64, 2, {10, 9}, sigma}};
    CHECK(npz_write(tpath(p, sizeof p, "shape.npz"), e, 2, &err) == 0, "%s", err.msg);
    snprintf(a, sizeof a, "eval fid --samples fashion-mnist --n 20 --ref %s --features fmnist", p);
    expect(a, 2, "'sigma' must be [10, 10]");
    e[1].shape[1] = 10;
    CHECK(npz_write(p, e, 2, &err) == 0, "%s", err.msg);
    expect(a, 2, "10-dimensional statistics, but the fmnist network's features are 256-d");
    /* mu and sigma alone (pytorch-fid's layout): an FID, no broken count, and the line says why. */
    double *mu2 = calloc(256, sizeof *mu2), *sigma2 = calloc(256 * 256, sizeof *sigma2);
    for (int i = 0; i < 256; i++) sigma2[i * 257] = 1;
    npz_entry e2[2] = {{"mu", NPY_F64, 1, {256}, mu2}, {"sigma", NPY_F64, 2, {256, 256}, sigma2}};
    CHECK(npz_write(tpath(p, sizeof p, "plain.npz"), e2, 2, &err) == 0, "%s", err.msg);
    snprintf(a, sizeof a, "eval fid --samples fashion-mnist --n 20 --ref %s --threads 1", p);
    expect(a, 0, "broken: not counted (a statistics file without the images' looks");
    free(mu2), free(sigma2);
    write_text(tpath(p, sizeof p, "bad.npz"), "not a zip file");
    snprintf(a, sizeof a, "eval fid --samples fashion-mnist --n 20 --ref %s", p);
    expect(a, 2, "bad.npz");
    /* A model folder: N images sampled first; 8x8 samples against F-MNIST statistics (picked by
     * the reference's dimension) are refused. */
    snprintf(a, sizeof a, "eval fid --samples %s --n 3 --steps 2 --ref %s --threads 1", MODEL, q);
    expect(a, 2, "sampling 3 images from tests/fixtures/unet_b");
    expect(a, 2, "takes 28x28 gray images, not 8x8x1");
    /* FID during training, in metrics.jsonl. */
    snprintf(a, sizeof a, "train --out %s --limit 16 --batch 4 --steps 2 --eval-every 2 --eval-n 10 --threads 1",
             tpath(p, sizeof p, "fidrun"));
    expect(a, 0, "FID (F-MNIST features) ");
    snprintf(q, sizeof q, "%s/metrics.jsonl", p);
    CHECK(strstr(slurp(q), "\"fid\":") && strstr(slurp(q), "\"eval_n\":10"), "metrics.jsonl: %s", slurp(q));
    snprintf(a, sizeof a, "train --out %s/fid8 --config %s/config.json --data %s/png8 --steps 2 --batch 2 "
             "--eval-every 1 --eval-n 10 --inception %s/none --threads 1", tmp, MODEL, tmp, tmp);
    expect(a, 2, "cannot read the Inception weights");
}

/* Flips a bit in the middle of tensor name's data in the safetensors file at path. */
static void corrupt_tensor(const char *path, const char *name) {
    st_file f;
    err_t err;
    unsigned char *b = NULL;
    size_t n = 0;
    CHECK(st_open(&f, path, &err) == 0, "%s", err.msg);
    const st_tensor *t = st_find(&f, name);
    size_t off = t ? (size_t)(f.data - f.buf) + (t->begin + t->end) / 2 : 0;
    CHECK(t != NULL, "%s: no tensor %s", path, name);
    st_close(&f);
    CHECK(file_read_all(path, &b, &n, &err) == 0 && off < n, "%s", err.msg);
    if (b && off < n) b[off] ^= 0x04;
    const void *chunks[1] = {b};
    CHECK(file_write_atomic(path, chunks, &n, 1, &err) == 0, "%s", err.msg);
    free(b);
}

/* The step of the training state file at path (-1 if unreadable). */
static long long state_step(const char *path) {
    st_file f;
    err_t err;
    if (st_open(&f, path, &err)) return -1;
    long long k = st_meta(&f, "step") ? atoll(st_meta(&f, "step")) : -1;
    st_close(&f);
    return k;
}

/* 1 if the two files hold the same bytes. */
static int same_file(const char *a, const char *b) {
    unsigned char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    err_t err;
    int same = !file_read_all(a, &x, &nx, &err) && !file_read_all(b, &y, &ny, &err) && nx == ny && !memcmp(x, y, nx);
    free(x), free(y);
    return same;
}

/* tmp/name: an IDX file of n 8x8 gray images (for tests/fixtures/unet_b's config); its path into buf. */
static const char *tiny_idx(char *buf, size_t len, const char *name, int n) {
    unsigned char *b = malloc(16 + (size_t)n * 64);
    const unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, (unsigned char)(n >> 8), (unsigned char)n, 0, 0, 0, 8, 0, 0, 0, 8};
    memcpy(b, hdr, 16);
    for (int i = 0; i < n * 64; i++) b[16 + i] = (unsigned char)((i * 7919 + 13) % 256);
    err_t err;
    const void *chunks[1] = {b};
    size_t l = 16 + (size_t)n * 64;
    CHECK(file_write_atomic(tpath(buf, len, name), chunks, &l, 1, &err) == 0, "%s", err.msg);
    free(b);
    return buf;
}

/* Checksums: a model file with a flipped bit in a tensor's data is refused
 * by every command that loads it (exit 2, naming the file and the tensor),
 * and read with --no-verify; a corrupt latest training state makes --resume
 * continue from the previous one, ending the same bits as a run never
 * interrupted; with both corrupt, exit 2 naming both files. */
static void test_checksums(void) {
    char a[2048], run[300], ref[300], bad[300], w[400], latest[400], prev[400], x[400], data[400];
    snprintf(run, sizeof run, "%s/ck", tmp);
    snprintf(ref, sizeof ref, "%s/ckref", tmp);
    tiny_idx(data, sizeof data, "ck-images-idx3-ubyte", 16);
    snprintf(a, sizeof a, "train --out %s --config " MODEL "/config.json --data %s --batch 4 --steps 3 --save-every 1 "
             "--log-every 1 --threads 1", run, data);
    expect(a, 0, "done at step 3");
    snprintf(bad, sizeof bad, "%s/ck/model", tmp);
    snprintf(w, sizeof w, "%s/diffusion_pytorch_model.safetensors", bad);
    unsigned char *good = NULL;
    size_t good_len = 0;
    err_t err;
    CHECK(file_read_all(w, &good, &good_len, &err) == 0, "%s", err.msg);
    corrupt_tensor(w, "conv_in.weight");
    float zero[64] = {0};
    write_npy(tpath(x, sizeof x, "ck_x.npy"), zero, 1, 1, 8, 8);
    snprintf(a, sizeof a, "sample --model %s --out %s/ck_s --n 1 --steps 1 --threads 1", run, tmp);
    expect(a, 2, "diffusion_pytorch_model.safetensors: tensor 'conv_in.weight' fails its checksum: the file is corrupt");
    snprintf(a, sizeof a, "eps --model %s --x %s --t 3 --out %s/ck_e.npy --threads 1", bad, x, tmp);
    expect(a, 2, "tensor 'conv_in.weight' fails its checksum");
    snprintf(a, sizeof a, "info --model %s", run);
    expect(a, 2, "tensor 'conv_in.weight' fails its checksum");
    snprintf(a, sizeof a, "figure progressive --model %s --out %s/ck.png --n 1 --t 5 --threads 1", run, tmp);
    expect(a, 2, "tensor 'conv_in.weight' fails its checksum");
    snprintf(a, sizeof a, "sample --model %s --out %s/ck_s --n 1 --steps 1 --threads 1 --no-verify", run, tmp);
    expect(a, 0, "samples.npy");
    snprintf(a, sizeof a, "eps --model %s --x %s --t 3 --out %s/ck_e.npy --threads 1 --no-verify", bad, x, tmp);
    expect(a, 0, NULL);
    snprintf(a, sizeof a, "info --model %s --no-verify", run);
    expect(a, 0, "training step          3");
    const void *chunks[1] = {good};
    CHECK(file_write_atomic(w, chunks, &good_len, 1, &err) == 0, "%s", err.msg);
    free(good);

    /* The latest state corrupt: --resume goes on from the previous one (step 2). */
    snprintf(latest, sizeof latest, "%s/training_state.safetensors", run);
    snprintf(prev, sizeof prev, "%s/training_state.prev.safetensors", run);
    CHECK(state_step(latest) == 3 && state_step(prev) == 2, "steps %lld and %lld", state_step(latest), state_step(prev));
    corrupt_tensor(latest, "ema");
    snprintf(a, sizeof a, "info --model %s", run);
    expect(a, 2, "training_state.safetensors: tensor 'ema' fails its checksum");
    snprintf(a, sizeof a, "train --out %s --resume --steps 6 --threads 1", run);
    expect(a, 0, "resuming from the previous state");
    snprintf(a, sizeof a, "train --out %s --config " MODEL "/config.json --data %s --batch 4 --steps 6 --save-every 1 "
             "--log-every 1 --threads 1", ref, data);
    expect(a, 0, "done at step 6");
    char rl[400];
    snprintf(rl, sizeof rl, "%s/training_state.safetensors", ref);
    CHECK(same_file(latest, rl), "resumed past a corrupt latest state: not the bits of the uninterrupted run");
    snprintf(a, sizeof a, "%s/metrics.jsonl", run);
    CHECK(count_lines(a) == 6, "metrics.jsonl: %d lines, want 6 (steps 1..6)", count_lines(a));

    /* Both corrupt, or the latest corrupt and no previous: exit 2 naming both files. */
    corrupt_tensor(latest, "params");
    corrupt_tensor(prev, "adam.m");
    snprintf(a, sizeof a, "train --out %s --resume --steps 9 --threads 1", run);
    expect(a, 2, "training_state.safetensors: tensor 'params' fails its checksum");
    expect(a, 2, "training_state.prev.safetensors: tensor 'adam.m' fails its checksum");
    remove(prev);
    expect(a, 2, "cannot open");
    expect(a, 2, "training_state.safetensors: tensor 'params' fails");
    snprintf(a, sizeof a, "train --out %s --resume --steps 7 --threads 1 --no-verify", run);
    expect(a, 0, "done at step 7");
}

/* --resume keeps the run's --save-every, --log-every and the rest unless
 * given again. */
static void test_resume_cadence(void) {
    char a[1024], run[300], latest[400], prev[400], metrics[400], data[400];
    snprintf(run, sizeof run, "%s/cad", tmp);
    snprintf(latest, sizeof latest, "%s/training_state.safetensors", run);
    snprintf(prev, sizeof prev, "%s/training_state.prev.safetensors", run);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run);
    tiny_idx(data, sizeof data, "cad-images-idx3-ubyte", 16);
    snprintf(a, sizeof a, "train --out %s --config " MODEL "/config.json --data %s --batch 4 --steps 2 --save-every 3 "
             "--log-every 2 --threads 1", run, data);
    expect(a, 0, "done at step 2");
    /* No flags: a save at step 5 (2 + 3), then the last at 7; lines at 4 and 6. */
    snprintf(a, sizeof a, "train --out %s --resume --steps 7 --threads 1", run);
    expect(a, 0, "done at step 7");
    CHECK(state_step(latest) == 7 && state_step(prev) == 5, "saved at step %lld before the last (%lld), want 5",
          state_step(prev), state_step(latest));
    CHECK(count_lines(metrics) == 3, "metrics.jsonl: %d lines, want 3 (steps 2, 4, 6)", count_lines(metrics));
    snprintf(a, sizeof a, "info --model %s", run);
    expect(a, 0, "\"save_every\":3,\"log_every\":2,");
    /* A flag given again wins, and is kept from then on. */
    snprintf(a, sizeof a, "train --out %s --resume --steps 10 --save-every 2 --threads 1", run);
    expect(a, 0, "done at step 10");
    CHECK(state_step(prev) == 9, "saved at step %lld before the last, want 9", state_step(prev));
    snprintf(a, sizeof a, "info --model %s", run);
    expect(a, 0, "\"save_every\":2,\"log_every\":2,");
}

/* RUN/conv_algorithms.txt keeps the algorithms each convolution ran with: a
 * resume uses them whatever the machine's cache says since, so that it gives
 * the bits of the uninterrupted run. Control: without the file, the cache's
 * other algorithms give other bits. A file that does not parse stops the
 * resume and names the file. */
static void test_conv_record(void) {
    char a[1024], env[400], data[400], cache[400], whole[300], part[300], bare[300], path[600];
    snprintf(env, sizeof env, "XDG_CACHE_HOME=%s/convcache", tmp);
    snprintf(cache, sizeof cache, "%s/convcache/ddpm/conv-algorithms.txt", tmp);
    snprintf(whole, sizeof whole, "%s/conv-whole", tmp);
    snprintf(part, sizeof part, "%s/conv-part", tmp);
    snprintf(bare, sizeof bare, "%s/conv-bare", tmp);
    tiny_idx(data, sizeof data, "conv-images-idx3-ubyte", 16);
    const char *common = "--config " MODEL "/config.json --batch 4 --threads 1 --save-every 2";
    /* A new network is timed once against oneDNN's direct kernels alone: the verdict goes to the
     * cache, and a verdict of "direct" makes the next run of that network all-direct. */
    char first[300], second[300], text[1 << 14];
    snprintf(first, sizeof first, "%s/conv-first", tmp);
    snprintf(second, sizeof second, "%s/conv-second", tmp);
    snprintf(a, sizeof a, "train --out %s --data %s %s --steps 1", first, data, common);
    expect_with(env, a, 0, "a training pass takes");
    FILE *f = fopen(cache, "r");
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[len] = 0;
    char *verdict = strstr(text, " images per shard|");
    CHECK(verdict != NULL, "no verdict in the cache:\n%s", text);
    if (verdict) {
        verdict += strlen(" images per shard|");
        char *end = strchr(verdict, '|');
        f = fopen(cache, "w");
        fprintf(f, "%.*sdirect%s", (int)(verdict - text), text, end);
        fclose(f);
        snprintf(a, sizeof a, "train --out %s --data %s %s --steps 1", second, data, common);
        expect_with(env, a, 0, "done at step 1");
        snprintf(path, sizeof path, "%s/conv_algorithms.txt", second);
        f = fopen(path, "r");
        char line[1024];
        int n = 0, direct = 0;
        while (f && fgets(line, sizeof line, f)) n++, direct += strstr(line, "|direct direct direct|") != NULL;
        if (f) fclose(f);
        CHECK(n > 0 && direct == n, "%s: %d of %d lines all-direct after a verdict of direct", path, direct, n);
    }
    snprintf(a, sizeof a, "train --out %s --data %s %s --steps 4 --conv winograd", whole, data, common);
    expect_with(env, a, 0, "done at step 4");
    for (int k = 0; k < 2; k++) {
        snprintf(a, sizeof a, "train --out %s --data %s %s --steps 2 --conv winograd", k ? bare : part, data, common);
        expect_with(env, a, 0, "done at step 2");
    }
    /* The record: a line per shape, Winograd where it applies. */
    snprintf(path, sizeof path, "%s/conv_algorithms.txt", part);
    f = fopen(path, "r");
    char line[1024], lines[64][1024];
    int n = 0, wino = 0;
    while (f && n < 64 && fgets(line, sizeof line, f)) wino += strstr(line, "|winograd winograd winograd|") != NULL,
                                                       snprintf(lines[n++], sizeof lines[0], "%s", line);
    if (f) fclose(f);
    CHECK(n >= 4 && wino >= 2, "%s: %d lines, %d with Winograd", path, n, wino);
    /* The cache now says direct for every shape of the run. */
    snprintf(a, sizeof a, "mkdir -p %s/convcache/ddpm", tmp);
    CHECK(system(a) == 0, "%s", a);
    f = fopen(cache, "w");
    for (int i = 0; f && i < n; i++) {
        char *bar = strstr(lines[i], "|winograd winograd winograd|");
        if (bar) fprintf(f, "%.*s|direct direct direct|%s", (int)(bar - lines[i]), lines[i], bar + 28);
        else fputs(lines[i], f);
    }
    CHECK(f && fclose(f) == 0, "%s", cache);
    snprintf(path, sizeof path, "%s/conv_algorithms.txt", bare);
    CHECK(remove(path) == 0, "%s", path);
    for (int k = 0; k < 2; k++) {
        snprintf(a, sizeof a, "train --out %s --resume --steps 4 --threads 1", k ? bare : part);
        expect_with(env, a, 0, "done at step 4");
    }
    char sw[400], sp[400], sb[400];
    snprintf(sw, sizeof sw, "%s/training_state.safetensors", whole);
    snprintf(sp, sizeof sp, "%s/training_state.safetensors", part);
    snprintf(sb, sizeof sb, "%s/training_state.safetensors", bare);
    CHECK(same_file(sw, sp), "resumed with the run's record: not the bits of the uninterrupted run");
    CHECK(!same_file(sw, sb), "control: resumed on the cache's direct kernels, yet the same bits");
    snprintf(path, sizeof path, "%s/conv_algorithms.txt", part);
    f = fopen(path, "w");
    fputs("this is not a record\n", f);
    fclose(f);
    snprintf(a, sizeof a, "train --out %s --resume --steps 6 --threads 1", part);
    expect_with(env, a, 2, "conv_algorithms.txt: convolution choices, line 1");
    expect("train --out x --conv fastest", 2, "--conv");
}

/* Removes the scratch folder (ours alone); runs last. */
static void test_cleanup(void) {
    char a[300];
    snprintf(a, sizeof a, "rm -rf '%s'", tmp);
    CHECK(system(a) == 0, "%s", a);
}

TEST_MAIN(test_usage_errors, test_bad_files, test_success, test_train, test_checksums, test_resume_cadence, test_conv_record, test_disk_full, test_eval, test_classes, test_model_exit_codes, test_figure,
          test_fid,
          test_cleanup)
