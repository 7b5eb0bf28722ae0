/* featnet.h -- the feature networks that sample-quality metrics (FID, IS,
 * precision/recall) compare images in:
 *
 *   FEATNET_INCEPTION  pytorch-fid's FID Inception-v3 (the 2015-12-05
 *                      TensorFlow weights, converted by tools/convert_inception.py):
 *                      any image size, resized bilinearly to 299x299 as
 *                      pytorch-fid does; 2048-d pool3 features, and the 1008
 *                      logits the Inception Score uses (pool3 times the softmax
 *                      weights, without the bias, as the original IS code).
 *   FEATNET_FMNIST     ddpm's own classifier for 28x28 gray images, trained on
 *                      Fashion-MNIST by tools/train_fmnist_features.py and built
 *                      into the program: 256-d features (global average pool of
 *                      the last convolution), 10 class logits. Its distances are
 *                      "FID (F-MNIST features)", never Inception FID.
 *
 * Images go in as NHWC 0..255 bytes or floats in [-1, 1] (values outside are
 * clipped, as writing the image would); gray images are repeated to RGB for
 * Inception, as PIL's convert('RGB') does for pytorch-fid.
 */
#ifndef DDPM_FEATNET_H
#define DDPM_FEATNET_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

enum featnet_kind { FEATNET_INCEPTION, FEATNET_FMNIST };

/* "inception" / "fmnist", and back (-1 for an unknown name). */
const char *featnet_kind_name(int kind);
int featnet_kind_from_name(const char *name);

/* Where ddpm looks for the Inception weights when none are named:
 * $DDPM_INCEPTION, else $XDG_CACHE_HOME/ddpm/inception-2015-12-05.safetensors,
 * else ~/.cache/ddpm/inception-2015-12-05.safetensors. */
void featnet_default_inception(char *buf, size_t len);

typedef struct featnet featnet;

/* Builds the network for batches of up to `batch` images. weights: the
 * Inception safetensors file (NULL: the default above); ignored for FMNIST.
 * A missing Inception file is an error that says how to make one. */
int featnet_open(featnet **net, int kind, const char *weights, int batch, err_t *err);
void featnet_free(featnet *net);

int featnet_kind_of(const featnet *net);
int featnet_dim(const featnet *net);     /* feature length */
int featnet_classes(const featnet *net); /* logits per image */
/* "FID" or "FID (F-MNIST features)": how results must be labelled. */
const char *featnet_fid_label(const featnet *net);

/* n images of h x w x c (c = 1 or 3), NHWC: bytes 0..255 (u8) or floats in
 * [-1, 1] (f32); exactly one of the two is set. */
typedef struct image_set {
    int n, h, w, c;
    const uint8_t *u8;
    const float *f32;
} image_set;

/* Whether the network takes these images (FMNIST: 28x28 gray only; floats
 * must be finite). Returns 0, or -1 with a message. */
int featnet_check(const featnet *net, const image_set *s, err_t *err);

/* feats [n, dim] and logits [n, classes] (either may be NULL) of every image.
 * progress (may be NULL) is called after each batch with images done / n.
 * Returns 0, or -1 with a message (err->oom set for memory, including the
 * operators' temporaries). The network runs on the thread count it was
 * opened with. */
int featnet_extract(featnet *net, const image_set *s, float *feats, float *logits,
                    void (*progress)(void *ctx, int done, int total), void *ctx, err_t *err);

#endif
