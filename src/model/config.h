/* config.h -- the U-Net's configuration: diffusers UNet2DModel config.json keys,
 * parsed with diffusers' defaults for absent keys, checked, written back, and
 * the named presets every benchmark and demo uses. */
#ifndef DDPM_CONFIG_H
#define DDPM_CONFIG_H

#include "core/status.h"

#define UNET_MAX_LEVELS 8
#define UNET_MAX_LAYERS_PER_BLOCK 16
#define UNET_MAX_CLASSES 65536

typedef struct unet_config {
    int sample_size, in_channels, out_channels;
    int levels;                          /* len(block_out_channels) */
    int block_out[UNET_MAX_LEVELS];
    int down_attn[UNET_MAX_LEVELS];      /* down block i is AttnDownBlock2D */
    int up_attn[UNET_MAX_LEVELS];        /* up block i (lowest resolution first) is AttnUpBlock2D */
    int layers_per_block;
    int norm_groups;
    float norm_eps;
    int flip_sin_to_cos;
    float freq_shift;
    float dropout;
    int downsample_padding;              /* 0: TF-style bottom/right pad; 1: symmetric */
    int num_class_embeds;                /* class-conditional (diffusers' num_class_embeds): that many learned
                                          * class embeddings added to the time embedding; 0 = unconditional.
                                          * ddpm's own conditional models have K + 1: class K is the null
                                          * class, the unconditional model (classifier-free guidance) */
} unet_config;

/* Parses config.json text. Absent keys take diffusers' UNet2DModel defaults;
 * unsupported values (multi-head attention, other embeddings or block types)
 * are errors that name the key. Runs unet_config_check. */
int unet_config_from_json(unet_config *c, const char *json, err_t *err);

/* The class names of a conditional model: config.json's "_class_names" (a
 * ddpm key; diffusers ignores keys that start with '_'). names[k] is class k's
 * name for k < n; with n + 1 == num_class_embeds, class n is the null class
 * (the unconditional model of classifier-free guidance). */
#define UNET_NAME_LEN 64
typedef struct unet_classes {
    int n;
    char (*names)[UNET_NAME_LEN];
} unet_classes;

/* Reads "_class_names" from config.json text into c (n = 0, names NULL when
 * absent; at most UNET_MAX_CLASSES strings, each cut to UNET_NAME_LEN - 1). */
int unet_classes_from_json(unet_classes *c, const char *json, err_t *err);
void unet_classes_free(unet_classes *c);

/* The null class of a model with config cfg and classes c: c->n when
 * cfg->num_class_embeds == c->n + 1 (c->n > 0), else -1 (no guidance). */
int unet_null_class(const unet_config *cfg, const unet_classes *c);

/* config.json text for c (malloc'd, diffusers keys, every key written), with
 * "_class_names" when cls is not NULL and has names. NULL on OOM. */
char *unet_config_to_json(const unet_config *c, const unet_classes *cls);

/* Fills c with a preset: "fmnist-small", "fmnist" or "cifar10". */
int unet_config_preset(unet_config *c, const char *name, err_t *err);

/* Names of the presets, NULL-terminated. */
extern const char *const unet_preset_names[];

/* Checks sizes: sample_size divisible by 2^(levels-1), channels divisible by
 * the group count, positive counts, dropout in [0,1). */
int unet_config_check(const unet_config *c, err_t *err);

#endif
