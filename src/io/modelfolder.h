/* modelfolder.h -- diffusers model folders: config.json +
 * diffusion_pytorch_model.safetensors (+ scheduler_config.json), in the flat
 * layout (all in DIR) or the pipeline layout (DIR/unet/, DIR/scheduler/).
 * Reads F32/F16/BF16 weights, the legacy attention names (query, key, value,
 * proj_attn) and [C,C,1,1] attention weights; writes F32 atomically. */
#ifndef DDPM_MODELFOLDER_H
#define DDPM_MODELFOLDER_H

#include "core/status.h"
#include "model/config.h"
#include "model/unet.h"

#define MODEL_WEIGHTS_FILE "diffusion_pytorch_model.safetensors"

/* Reads the U-Net config of the folder dir into cfg. */
int folder_read_config(const char *dir, unet_config *cfg, err_t *err);

/* Reads the class names of dir's config.json (cls->n = 0 when it has none);
 * free with unet_classes_free. */
int folder_read_classes(const char *dir, unet_classes *cls, err_t *err);

/* Reads the scheduler_config.json text of dir (malloc'd into *json), or sets
 * *json = NULL when the folder has none. */
int folder_read_scheduler(const char *dir, char **json, err_t *err);

/* Loads the weights of the safetensors file at path into params (laid out by
 * u's table): every parameter must be present with its shape, and the file may
 * hold nothing else. */
int folder_load_weights_file(const unet *u, float *params, const char *path, err_t *err);

/* Loads dir's weights into u->params. */
int folder_load_weights(unet *u, const char *dir, err_t *err);

/* Reads dir's config, builds a network for `batch` images and loads its weights. */
int folder_load(unet **u, const char *dir, int batch, int training, err_t *err);

/* Writes the weights params (laid out by u's table) as F32 safetensors at path. */
int folder_save_weights_file(const unet *u, const float *params, const char *path, err_t *err);

/* Writes a flat model folder: config.json (with the class names cls, which
 * may be NULL), the weights params, and scheduler_config.json when sched_json
 * is not NULL. Each file is atomic. */
int folder_save(const unet *u, const float *params, const char *dir, const char *sched_json, const unet_classes *cls,
               err_t *err);

#endif
