/* model.h -- the struct behind the public ddpm_model handle (include/ddpm.h,
 * "models") and what the other src/api files need of it: the schedule, the
 * class names and a network built for the rows a call runs.
 *
 * A model keeps one network. Its weights are loaded once (ddpm_model_load);
 * a call that needs another batch size builds a new network for exactly that
 * many rows and copies the weights over (api_model_net), because the network's
 * rounding may depend on its batch: building for the batch a plain CLI run
 * uses keeps results bit-identical with it. */
#ifndef DDPM_API_MODEL_H
#define DDPM_API_MODEL_H

#include "api.h"
#include "diffusion/schedule.h"
#include "model/config.h"
#include "model/denoiser.h"
#include "model/unet.h"

struct ddpm_model {
    api_obj head;
    char dir[4096];   /* the model folder (dir/model of a run folder) */
    char given[4096]; /* the folder ddpm_model_load was given (a run folder's training state lives there) */
    unet_config cfg;
    unet_classes cls; /* the config's _class_names (cls.n = 0: none) */
    int null_class;   /* -1: none */
    int nclasses;     /* classes to draw */
    char (*names)[UNET_NAME_LEN]; /* [num_class_embeds]: cls names, else the index as text */
    schedule sched;
    int has_scheduler;
    char *config_json, *sched_json;
    unet *u;          /* the network with the weights (u->params); its batch is the last call's */
    unet *plain;      /* NULL, or a second network with u's weights: guided sampling's B-row one */
    double flops;     /* per image */
    char *run_step, *run_options; /* ddpm_model_run_state's strings */
};

/* The network of m built for exactly rows images in `precision`
 * (exec/executor.h; rebuilt, weights copied, when the current one has another
 * batch or precision). Returns 0, or -1 with err set (the old network is then
 * kept). */
int api_model_net(ddpm_model *m, int rows, int precision, unet **u, err_t *err);
/* The same for m's second network (m->plain), which guided sampling uses
 * beside the first one; kept, like it, for the next call. */
int api_model_plain_net(ddpm_model *m, int rows, int precision, unet **u, err_t *err);

/* Values per image (H W C). */
size_t api_model_image_size(const ddpm_model *m);

/* Checks that every one of n labels is a class of m (0..num_class_embeds-1)
 * and, when labels is NULL, that a conditional m has a null class. Returns
 * DDPM_OK, or DDPM_ERR_ARG recorded on m naming fn. */
int api_model_check_labels(ddpm_model *m, const char *fn, int n, const int32_t *labels);

/* Collective: agrees on status over the ranks (dist_agree); a rank whose own
 * status was DDPM_OK but another's was not records "<fn>: another process
 * failed (<status name>)" on m. Returns the agreed status. */
int api_model_agree(ddpm_model *m, const char *fn, int status);

#endif
