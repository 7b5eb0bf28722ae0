/* test_fid_classes.c -- the per-class report of `ddpm eval fid`.
 *
 *   test_class_stats   quality_class_stats: the statistics of one class's rows
 *                      are those of the rows gathered by hand (bit for bit).
 *   test_by_class      quality_by_class on made-up features and logits: counts,
 *                      accuracy (ties: the first largest logit), per-class FID 0
 *                      against the same rows and large against another class,
 *                      and what is left out (no labels, no logits, one row).
 *   test_cli_model     end to end: a tiny class-conditional model (2 training
 *                      steps on 64 Fashion-MNIST images), 40 samples with guidance
 *                      2: "per_class" has 10 classes of 4 samples, accuracies in
 *                      [0, 1], finite FIDs; the images are those `ddpm sample`
 *                      draws with the same classes (equal FID, with the same
 *                      --batch for both: docs/determinism.md); --class and
 *                      --guidance 0; a reference without labels; the usage errors.
 *   test_cli_real      real Fashion-MNIST test images as labelled samples: the
 *                      built-in classifier's accuracy is high and each class's FID
 *                      against the same class of the training images is small.
 *
 * Run from the repository root after building BUILD/ddpm (see cli_run.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "cli_run.h"
#include "eval/quality.h"
#include "io/fileio.h"

static char tmp[64]; /* this run's scratch folder */

/* d = 2 features: class k's rows lie around (10k, -5k). */
static void make_rows(float *f, const int32_t *labels, int n) {
    for (int i = 0; i < n; i++) {
        f[2 * i] = 10.0f * labels[i] + 0.5f * (float)((i * 7) % 5) - 1.0f;
        f[2 * i + 1] = -5.0f * labels[i] + 0.3f * (float)((i * 3) % 4) + 0.1f * (float)i;
    }
}

static void test_class_stats(void) {
    enum { N = 12, D = 2 };
    int32_t labels[N] = {0, 1, 2, 1, 0, 1, 2, 2, 1, 0, 3, 1};
    float f[N * D], rows[N * D];
    make_rows(f, labels, N);
    int m = 0;
    for (int i = 0; i < N; i++)
        if (labels[i] == 1) memcpy(rows + D * m++, f + D * i, sizeof(float) * D);
    err_t err;
    fid_stats a, b;
    CHECK(quality_class_stats(&a, f, N, D, labels, 1, &err) == 0, "%s", err.msg);
    CHECK(stats_fid_compute(&b, rows, m, D, &err) == 0, "%s", err.msg);
    CHECK(a.n == 5 && b.n == 5 && a.d == D, "rows %lld, want 5", a.n);
    CHECK(!memcmp(a.mu, b.mu, sizeof(double) * D) && !memcmp(a.sigma, b.sigma, sizeof(double) * D * D),
          "class 1: mu %g %g, want %g %g", a.mu[0], a.mu[1], b.mu[0], b.mu[1]);
    stats_fid_free(&a), stats_fid_free(&b);
    CHECK(quality_class_stats(&a, f, N, D, labels, 3, &err) == -1 && strstr(err.msg, "at least 2 rows, got 1"),
          "one row: %s", err.msg);
    CHECK(quality_class_stats(&a, f, N, D, labels, 7, &err) == -1 && a.mu == NULL, "no row");
}

static void test_by_class(void) {
    enum { N = 9, D = 2, L = 3 };
    int32_t labels[N] = {0, 1, 2, 0, 1, 2, 0, 1, 2}, ref_labels[N];
    /* Predicted classes 0,1,0, 0,2,2, 0,1,(tie of 1 and 2: 1): correct 3 of class 0, 2 of 1, 1 of 2. */
    const int pred[N] = {0, 1, 0, 0, 2, 2, 0, 1, 1};
    float f[N * D], logits[N * L];
    make_rows(f, labels, N);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < L; j++) logits[i * L + j] = (float)(j - i);
        logits[i * L + pred[i]] = 5;
        ref_labels[i] = labels[i] + 10; /* the reference's labels differ from the samples' */
    }
    logits[8 * L + 2] = 5; /* the tie */
    err_t err;
    quality_ref mine = {.feats = f, .n = N}, ref = {.feats = f, .n = N};
    CHECK(stats_fid_compute(&mine.st, f, N, D, &err) == 0, "%s", err.msg);
    quality_class c[5] = {{.k = 0, .ref_k = 10}, {.k = 1, .ref_k = 11}, {.k = 2, .ref_k = 12},
                          {.k = 0, .ref_k = 11}, {.k = 3, .ref_k = 13}};
    CHECK(quality_by_class(c, 5, &mine, labels, logits, L, &ref, ref_labels, &err) == 0, "%s", err.msg);
    const long long want_correct[3] = {3, 2, 1};
    for (int j = 0; j < 3; j++) {
        CHECK(c[j].n == 3 && c[j].n_ref == 3 && c[j].has_acc && c[j].correct == want_correct[j],
              "class %d: n %lld n_ref %lld correct %lld (want 3, 3, %lld)", j, c[j].n, c[j].n_ref, c[j].correct,
              want_correct[j]);
        CHECK(c[j].has_fid && fabs(c[j].fid) < 1e-6, "class %d against itself: FID %g", j, c[j].fid);
    }
    CHECK(c[3].has_fid && c[3].fid > 50, "class 0 against the reference's class 1: FID %g", c[3].fid);
    CHECK(c[4].n == 0 && c[4].n_ref == 0 && !c[4].has_fid && !c[4].has_acc, "class 3 (none, beyond the logits)");
    /* No reference labels: no FID; no logits: no accuracy. */
    CHECK(quality_by_class(c, 3, &mine, labels, NULL, L, &ref, NULL, &err) == 0, "%s", err.msg);
    for (int j = 0; j < 3; j++)
        CHECK(c[j].n == 3 && c[j].n_ref == 0 && !c[j].has_fid && !c[j].has_acc && c[j].correct == 0,
              "class %d without labels/logits", j);
    /* A class with one sample gets no FID. */
    labels[3] = labels[6] = 1;
    CHECK(quality_by_class(c, 1, &mine, labels, logits, L, &ref, ref_labels, &err) == 0, "%s", err.msg);
    CHECK(c[0].n == 1 && !c[0].has_fid && c[0].correct == 1, "class 0 with one sample: n %lld", c[0].n);
    stats_fid_free(&mine.st);
}

/* A file's whole text, parsed (NULL if unreadable or not JSON). */
static cJSON *read_json(const char *path) {
    unsigned char *buf = NULL;
    size_t len;
    err_t err;
    if (file_read_all(path, &buf, &len, &err)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Checks per_class of the JSON at path: m classes (indices want[] if not NULL),
 * n of each, in total n_total; accuracies in [0, 1] whose mean (weighted by n)
 * is "accuracy"; finite FIDs (null allowed when fid_null); each FID below
 * fid_max and accuracy at least acc_min. */
static void check_per_class(const char *path, int m, const int *want, long long n_total, int fid_null,
                            double fid_max, double acc_min) {
    cJSON *j = read_json(path);
    CHECK(j, "%s: not JSON", path);
    if (!j) return;
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(j, "per_class");
    CHECK(cJSON_IsArray(pc) && cJSON_GetArraySize(pc) == m, "%s: per_class has %d entries, want %d", path,
          cJSON_GetArraySize(pc), m);
    long long n = 0;
    double correct = 0;
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, pc) {
        double k = num(c, "index"), cn = num(c, "n"), acc = num(c, "accuracy"), fid = num(c, "fid");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "class");
        CHECK(cJSON_IsString(name) && name->valuestring[0], "%s: class %d has no name", path, i);
        CHECK(!want || (i < m && k == want[i]), "%s: entry %d is class %g", path, i, k);
        CHECK(acc >= 0 && acc <= 1 && acc >= acc_min, "%s: class %g accuracy %g", path, k, acc);
        CHECK((fid_null && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c, "fid"))) ||
                  (isfinite(fid) && fid < fid_max), "%s: class %g FID %g", path, k, fid);
        n += (long long)cn, correct += acc * cn, i++;
    }
    double acc = num(j, "accuracy");
    CHECK(n == n_total && num(j, "n") == n_total, "%s: per-class n sum to %lld, want %lld", path, n, n_total);
    CHECK(fabs(acc - correct / n_total) < 1e-9, "%s: accuracy %g, classes give %g", path, acc, correct / n_total);
    cJSON_Delete(j);
}

/* Runs `ddpm ARGS` (exit 0) and returns "fid" of the JSON it wrote to dir/name. */
static double json_fid(const char *args, const char *dir, const char *name) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    expect(args, 0, NULL);
    cJSON *j = read_json(path);
    double fid = j ? num(j, "fid") : NAN;
    cJSON_Delete(j);
    return fid;
}

static void test_cli_model(void) {
    char a[3000], cfg[200], run[200], js[200];
    snprintf(tmp, sizeof tmp, "/tmp/ddpm_test_fidc_XXXXXX");
    CHECK(mkdtemp(tmp), "mkdtemp");
    /* tests/fixtures/unet_b (channels 8, 16, 16) at 28x28 */
    unsigned char *text = NULL;
    size_t len;
    err_t err;
    CHECK(!file_read_all("tests/fixtures/unet_b/config.json", &text, &len, &err), "%s", err.msg);
    char *s = calloc(len + 8, 1), *at = s ? strstr(memcpy(s, text, len), "\"sample_size\": 8") : NULL;
    CHECK(at, "unet_b config has no sample_size 8");
    if (!at) return;
    memmove(at + 16, at + 15, strlen(at + 15) + 1), memcpy(at + 15, "28", 2);
    snprintf(cfg, sizeof cfg, "%s/tiny.json", tmp);
    const void *chunk = s;
    size_t slen = strlen(s);
    CHECK(!file_write_atomic(cfg, &chunk, &slen, 1, &err), "%s", err.msg);
    free(text), free(s);
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(a, sizeof a, "train --out %s --config %s --classes --limit 64 --batch 8 --steps 2 --threads 2", run, cfg);
    expect(a, 0, "10 classes");
    /* Every class, guidance 2. */
    snprintf(js, sizeof js, "%s/all.json", tmp);
    snprintf(a, sizeof a, "eval fid --samples %s --n 40 --steps 2 --guidance 2 --ref fashion-mnist --ref-split test "
             "--ref-n 500 --json %s --threads 2", run, js);
    expect(a, 0, "per class (guidance 2)");
    check_per_class(js, 10, NULL, 40, 0, 1e6, 0);
    cJSON *j = read_json(js);
    CHECK(j && num(j, "guidance") == 2, "guidance in %s", js);
    cJSON_Delete(j);
    /* The same images as `ddpm sample` draws with those classes, in batches of 8 (the labels of
     * each batch): equal FIDs; another guidance differs. Equal bit for bit because both eval fid
     * runs also feed the feature network the same batches (--batch 8 sets both the sampling and
     * the feature-extraction batch): oneDNN rounds by batch size on some CPUs (AVX2), so with the
     * default --batch 50 for the .npy the FIDs differed in the 9th digit (docs/determinism.md).
     * Guidance at every step (t = 500, 0): the model of two training steps barely tells the classes
     * apart, and the default guidance interval guides only t = 0, where W makes no difference. */
    snprintf(a, sizeof a, "sample --model %s --out %s/s --n 20 --steps 2 --guidance 2 --guidance-interval all "
             "--class 0,1,2,3,4,5,6,7,8,9 --batch 8 --threads 2", run, tmp);
    expect(a, 0, NULL);
    const char *ref = "--ref fashion-mnist --ref-split test --ref-n 100 --threads 2";
    snprintf(a, sizeof a, "eval fid --samples %s/s/samples.npy --batch 8 %s --json %s/same.json", tmp, ref, tmp);
    double fid_sample = json_fid(a, tmp, "same.json");
    snprintf(a, sizeof a, "eval fid --samples %s --n 20 --steps 2 --guidance 2 --guidance-interval all --batch 8 %s "
             "--json %s/g2.json", run, ref, tmp);
    double fid_g2 = json_fid(a, tmp, "g2.json");
    snprintf(a, sizeof a, "eval fid --samples %s --n 20 --steps 2 --guidance 3 --guidance-interval all --batch 8 %s "
             "--json %s/g3.json", run, ref, tmp);
    double fid_g3 = json_fid(a, tmp, "g3.json");
    CHECK(fid_sample == fid_g2 && fid_g2 != fid_g3, "FID of `ddpm sample`'s images %.17g, of eval fid's %.17g "
          "(guidance 3: %.17g)", fid_sample, fid_g2, fid_g3);
    /* Two classes by name and index, unconditional samples labelled in turn. */
    snprintf(js, sizeof js, "%s/two.json", tmp);
    snprintf(a, sizeof a, "eval fid --samples %s --n 10 --steps 2 --guidance 0 --class Bag,1 --ref fashion-mnist "
             "--ref-split test --ref-n 500 --json %s --threads 2", run, js);
    expect(a, 0, "guidance 0");
    const int two[2] = {8, 1};
    check_per_class(js, 2, two, 10, 0, 1e6, 0);
    /* A reference without labels: accuracy, no per-class FID. */
    snprintf(a, sizeof a, "eval stats --data fashion-mnist --split test --n 50 --out %s/ref.npz --threads 2", tmp);
    expect(a, 0, NULL);
    snprintf(js, sizeof js, "%s/npz.json", tmp);
    snprintf(a, sizeof a, "eval fid --samples %s --n 20 --steps 2 --ref %s/ref.npz --json %s --threads 2", run, tmp,
             js);
    expect(a, 0, "the reference has no class labels");
    check_per_class(js, 10, NULL, 20, 1, 1e6, 0);
    /* Usage errors. */
    snprintf(a, sizeof a, "eval fid --samples %s --n 4 --class Nope --threads 2", run);
    expect(a, 2, "--class: no class 'Nope'");
    snprintf(a, sizeof a, "eval fid --samples %s --n 4 --guidance -1", run);
    expect(a, 2, "--guidance -1 is out of range");
    expect("eval fid --samples tests/fixtures/unet_b --n 4 --steps 2 --guidance 2", 2,
           "need a class-conditional model (ddpm train --classes); tests/fixtures/unet_b is unconditional");
    expect("eval fid --samples tests/fixtures/unet_b --n 4 --steps 2 --class 1", 2, "is unconditional");
    expect("eval fid --samples fashion-mnist --n 4 --guidance 1", 2, "fashion-mnist is not a model folder");
    expect("eval fid --help", 0, "--guidance W");
}

static void test_cli_real(void) {
    char a[1000], js[200];
    snprintf(js, sizeof js, "%s/real.json", tmp);
    snprintf(a, sizeof a, "eval fid --samples fashion-mnist --samples-split test --n 500 --ref fashion-mnist "
             "--ref-n 1000 --json %s --threads 2", js);
    expect(a, 0, "per class (the samples' labels)");
    check_per_class(js, 10, NULL, 500, 0, 15, 0.6);
    cJSON *j = read_json(js);
    CHECK(j && num(j, "accuracy") > 0.8 && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "guidance")),
          "real images: accuracy %g", j ? num(j, "accuracy") : NAN);
    cJSON_Delete(j);
    snprintf(a, sizeof a, "rm -rf '%s'", tmp);
    CHECK(system(a) == 0, "%s", a);
}

TEST_MAIN(test_class_stats, test_by_class, test_cli_model, test_cli_real)
