/* fid_sources.h -- the image sources of `ddpm eval fid` and `ddpm eval stats`
 * (cmd_fid.c): what --samples, --ref and --data name, opened as NCHW floats
 * in [-1, 1] with their class labels, or as statistics. A source is one of:
 *   - an image array: a .npy, or an .npz holding `arr_0` (guided-diffusion's
 *     sample and reference batches), [n, C, H, W] (NCHW), [n, H, W, C] (NHWC)
 *     with C = 1 or 3, or [n, H, W] (gray), uint8 0..255 or float in [-1, 1];
 *     a 4-d array whose layout the shape does not tell (both dim 1 and dim 3
 *     are 1 or 3) needs --layout nchw|nhwc;
 *   - statistics: an .npz without `arr_0` (pytorch-fid's mu, sigma);
 *   - a data set as `ddpm train --data` takes it (labels and class names kept);
 *   - --samples only: a model or run folder, sampled first (a class-conditional
 *     model class by class, with guidance).
 * Every function reports its failure itself (one line, "ddpm CMD: ...") and
 * returns the exit status; 0 on success. Written on ddpm.h alone. */
#ifndef DDPM_CLI_FID_SOURCES_H
#define DDPM_CLI_FID_SOURCES_H

#include <stdint.h>
#include <unistd.h>

#include "args.h"
#include "common.h"
#include "ddpm.h"

#define FID_NAME_LEN 64 /* class names are kept to 63 bytes, as the data sets keep theirs */

/* The layout of 4-d image arrays (--layout). */
typedef enum fid_layout { FID_LAYOUT_AUTO, FID_LAYOUT_NCHW, FID_LAYOUT_NHWC } fid_layout;
#define FID_LAYOUT_CHOICES "auto|nchw|nhwc"
/* The --layout word as a fid_layout (args_parse allows only FID_LAYOUT_CHOICES). */
fid_layout fid_layout_of(const char *word);

typedef struct fid_source {
    int is_stats;            /* a statistics file: stats only */
    ddpm_stats *stats;       /* the file's statistics, or the images' once computed */
    float *x;                /* the images [n, c, h, w] in [-1, 1] (values outside: clipped by the features) */
    int n, c, h, w;
    int32_t *labels;         /* [n] class labels (a labelled data set, or the samples of a conditional model) */
    int nclasses;            /* classes (names[nclasses]) when labelled */
    char (*names)[FID_NAME_LEN];
    ddpm_sample_report range; /* float images: values beyond [-1, 1] (range.images = 0: not measured) */
    int32_t *pick;           /* a conditional model's samples: the classes drawn, in turn (npick of them) */
    int npick;
    double guidance;         /* and the guidance weight */
    char desc[700];
} fid_source;

/* Sampling options for a model given as --samples. */
typedef struct fid_sample_args {
    cli_sampler s;
    int batch;
    const char *classes; /* --class (NULL: every class) */
    double guidance;     /* --guidance */
    int guidance_seen;
} fid_sample_args;

/* Where to find a source and how much of it to take. */
typedef struct fid_source_spec {
    const char *flag;  /* "--samples", "--ref", "--data": for messages */
    const char *spec;  /* what the user gave */
    int test_split;    /* a data set: its test split */
    long long limit;   /* > 0: at most that many images (a model: sample that many, else 1000) */
    fid_layout layout; /* of a 4-d array */
    const fid_sample_args *sample; /* non-NULL: a model folder may be given (and is sampled) */
} fid_source_spec;

/* Opens a source into s (zeroed first; on failure freed again). */
int fid_source_open(const arg_cmd *cmd, const fid_source_spec *spec, fid_source *s);
void fid_source_free(fid_source *s);

/* The statistics of an image source into s->stats (features and labels kept,
 * for precision/recall and the per-class FID); nothing for a statistics file.
 * what names the side in messages ("reference"). */
int fid_source_stats(const arg_cmd *cmd, ddpm_features *net, fid_source *s, const char *what);

/* --features: a name, or auto (ddpm_features_auto: a statistics reference
 * decides by its dimension; otherwise 28x28 gray images get F-MNIST
 * features). ref may be NULL. */
ddpm_features_kind fid_pick_features(const char *name, const fid_source *samples, const fid_source *ref);

/* A progress line on stderr for ddpm_progress_fn (ctx: a fid_progress):
 * rewritten in place on a terminal, every 25% otherwise. */
typedef struct fid_progress {
    const char *what;
    int tty, last;
    double t0;
} fid_progress;
#define FID_PROGRESS(what) {(what), isatty(2), -1, ddpm_now()}
int fid_on_progress(void *ctx, long long done, long long total);

#endif
