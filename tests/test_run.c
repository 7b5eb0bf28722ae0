/* test_run.c -- the run folder's TensorBoard events (src/train/run.c) as the library
 * toggles them: a run made with the cadence's tensorboard 0 writes no RUN/tb; turned on
 * mid-run (what ddpm_trainer_set_cadence does) it opens an event file whose first
 * event after file_version is a SessionLog START at the step it opens at, followed by
 * that step's scalars; turned off again, the file takes nothing more. (The CLI's
 * runs, resumes and failures: tests/py/test_train_tensorboard.py.) */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "io/fileio.h"
#include "io/le.h"
#include "io/tfevents.pb-c.h"
#include "model/config.h"
#include "train/run.h"

static char tmpdir[64];

/* The events of the one file in dir/tb ("" when there is none): *n records, *size bytes. */
static int read_tb(const char *dir, Tfevents__Event **ev, int max, int *n, size_t *size) {
    char tb[256], path[600] = "";
    struct dirent *e;
    snprintf(tb, sizeof tb, "%s/tb", dir);
    DIR *d = opendir(tb);
    *n = 0, *size = 0;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "events.out.tfevents.", 20)) snprintf(path, sizeof path, "%s/%s", tb, e->d_name);
    closedir(d);
    unsigned char *b;
    size_t len, off = 0;
    err_t err;
    if (!path[0] || file_read_all(path, &b, &len, &err)) return -1;
    while (*n < max && off + 16 <= len) {
        uint64_t m = le_get64(b + off);
        if (m > len - off - 16 || !(ev[*n] = tfevents__event__unpack(NULL, m, b + off + 12))) break;
        (*n)++, off += 16 + m;
    }
    free(b);
    *size = len;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

static void test_toggle(void) {
    err_t err;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ddpm_test_run_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    /* 16 8x8 gray images as an IDX file. */
    char data[128], dir[128];
    snprintf(data, sizeof data, "%s/images-idx3-ubyte", tmpdir);
    snprintf(dir, sizeof dir, "%s/run", tmpdir);
    unsigned char idx[16 + 16 * 64] = {0, 0, 8, 3, 0, 0, 0, 16, 0, 0, 0, 8, 0, 0, 0, 8};
    for (int i = 16; i < (int)sizeof idx; i++) idx[i] = (unsigned char)(i * 37);
    const void *chunk = idx;
    size_t len = sizeof idx;
    CHECK(file_write_atomic(data, &chunk, &len, 1, &err) == 0, "%s", err.msg);

    unet_config c;
    CHECK(unet_config_preset(&c, "fmnist-small", &err) == 0, "%s", err.msg);
    c.sample_size = 8, c.levels = 2, c.block_out[0] = 8, c.block_out[1] = 16, c.down_attn[0] = 0;
    c.down_attn[1] = 0, c.up_attn[0] = 0, c.up_attn[1] = 0, c.layers_per_block = 1, c.norm_groups = 4;
    schedule s;
    CHECK(schedule_init(&s, "linear", 100, 1e-4, 0.02, &err) == 0, "%s", err.msg);
    train_opts o = train_opts_default();
    snprintf(o.data, sizeof o.data, "%s", data);
    o.batch = 4, o.log_every = 1, o.save_every = 1000, o.tensorboard = 0;
    train_run r;
    int kind = run_create(&r, dir, &c, &s, &o, NULL, &err);
    schedule_free(&s);
    CHECK(kind == RUN_OK, "run_create: %s", err.msg);
    if (kind) return;
    Tfevents__Event *ev[16];
    int n;
    size_t size, size2;
    for (int i = 0; i < 2; i++) CHECK(run_step(&r, NULL, &err) == RUN_OK, "step: %s", err.msg);
    CHECK(read_tb(dir, ev, 16, &n, &size) == -1, "tensorboard 0: no RUN/tb");

    r.tr.o.tensorboard = 1; /* on at step 3 */
    CHECK(run_step(&r, NULL, &err) == RUN_OK, "step: %s", err.msg);
    CHECK(read_tb(dir, ev, 16, &n, &size) == 0 && n == 3, "turned on: file_version, START, scalars: %d records", n);
    if (n == 3) {
        CHECK(ev[1]->what_case == TFEVENTS__EVENT__WHAT_SESSION_LOG && ev[1]->step == 3 &&
                  ev[1]->session_log->status == TFEVENTS__SESSION_LOG__SESSION_STATUS__START,
              "a SessionLog START at 3 (step %lld)", (long long)ev[1]->step);
        CHECK(ev[2]->what_case == TFEVENTS__EVENT__WHAT_SUMMARY && ev[2]->step == 3 && ev[2]->summary->n_value >= 5 &&
                  !strcmp(ev[2]->summary->value[0]->tag, "train/loss") &&
                  ev[2]->summary->value[0]->simple_value == (float)r.tr.loss,
              "step 3's scalars, train/loss first, the step's loss");
    }
    for (int i = 0; i < n; i++) tfevents__event__free_unpacked(ev[i], NULL);

    r.tr.o.tensorboard = 0; /* off again */
    for (int i = 0; i < 2; i++) CHECK(run_step(&r, NULL, &err) == RUN_OK, "step: %s", err.msg);
    CHECK(r.tb == NULL && read_tb(dir, ev, 16, &n, &size2) == 0 && size2 == size, "turned off: the file stays as it was");
    for (int i = 0; i < n; i++) tfevents__event__free_unpacked(ev[i], NULL);
    run_free(&r);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TEST_MAIN(test_toggle)
