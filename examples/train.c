/* train.c -- a minimal training loop on libddpm: starts a run (or continues the one in RUN_DIR)
 * and trains it to STEPS steps with the "short" recipe, printing the loss and speed as it goes.
 *   cc train.c $(pkg-config --cflags --libs ddpm) -o train
 *   ./train RUN_DIR STEPS [CONFIG.json|- [DATA]]
 * CONFIG.json: the network (diffusers UNet2DModel keys; "-": the fmnist-small preset); DATA: the
 * images (an IDX file, a CIFAR-10 folder, a folder of PNGs; default Fashion-MNIST). Then
 *   ./sample RUN_DIR grid.png                   (the EMA weights in RUN_DIR/model) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ddpm.h>

/* The library's notes ("resuming from ...") on stderr. */
static void note(void *ctx, ddpm_log_level level, const char *msg)
{
    fprintf(stderr, "train: %s%s\n", level == DDPM_LOG_WARN ? "warning: " : "", msg);
}

int main(int argc, char **argv)
{
    if (argc < 3 || atoll(argv[2]) < 1) {
        fprintf(stderr, "usage: %s RUN_DIR STEPS [CONFIG.json|- [DATA]]\n", argv[0]);
        return 2;
    }
    const char *run = argv[1];
    long long steps = atoll(argv[2]), every = steps >= 10 ? steps / 10 : 1;
    ddpm_trainer *t = NULL;
    ddpm_train_metrics mt;
    int rc = DDPM_OK;
    ddpm_set_log(note, NULL);
    if (ddpm_run_exists(run)) {
        rc = ddpm_trainer_resume(run, NULL, NULL, &t); /* its own options and cadence */
    } else {
        ddpm_train_options o;
        ddpm_train_options_init(&o);
        ddpm_train_options_recipe(&o, "short");
        if (argc > 3 && strcmp(argv[3], "-") != 0) o.config = argv[3];
        if (argc > 4) o.data = argv[4];
        rc = ddpm_trainer_create(run, &o, &t);
    }
    if (rc == DDPM_OK) rc = ddpm_trainer_get_metrics(t, &mt);
    if (rc == DDPM_OK)
        printf("%s: step %lld of %lld, %zu parameters, batch %d\n", run, mt.step, steps, mt.num_parameters, mt.batch);
    while (rc == DDPM_OK && mt.step < steps) {
        rc = ddpm_trainer_step(t, &mt);
        if (rc == DDPM_OK && (mt.step % every == 0 || mt.step == steps))
            printf("step %lld  loss %.4f  %.1f img/s\n", mt.step, mt.loss, mt.img_per_s);
    }
    if (rc == DDPM_OK) rc = ddpm_trainer_finish(t); /* the last checkpoint: RUN_DIR/model */
    if (rc != DDPM_OK) fprintf(stderr, "train: %s (%s)\n", ddpm_errmsg(NULL), ddpm_status_name(rc));
    ddpm_trainer_free(t);
    return rc == DDPM_OK ? 0 : 1;
}
