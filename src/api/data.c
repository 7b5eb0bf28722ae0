/* data.c -- the public data-set handle (include/ddpm.h, "data sets"): the
 * images of data/dataset.h (uint8 NHWC in memory) handed out as NCHW floats
 * in [-1, 1]. */
#include "api.h"

#include <stdlib.h>

#include "data/dataset.h"

struct ddpm_dataset {
    api_obj head;
    dataset d;
};

int ddpm_dataset_load(const char *src, int split, int limit, ddpm_dataset **out)
{
    API_REQUIRE(NULL, out);
    *out = NULL;
    if (split != DDPM_SPLIT_TRAIN && split != DDPM_SPLIT_TEST)
        return api_fail(NULL, DDPM_ERR_ARG, "ddpm_dataset_load: split %d is neither DDPM_SPLIT_TRAIN nor "
                        "DDPM_SPLIT_TEST", split);
    if (limit < 0) return api_fail(NULL, DDPM_ERR_ARG, "ddpm_dataset_load: limit %d is negative", limit);
    ddpm_dataset *d = calloc(1, sizeof *d);
    if (!d) return api_fail(NULL, DDPM_ERR_NOMEM, "out of memory");
    api_obj_init(&d->head);
    err_t err = {0};
    if (dataset_load(&d->d, src, split == DDPM_SPLIT_TRAIN ? DATASET_TRAIN : DATASET_TEST, limit, &err)) {
        free(d);
        return api_status(NULL, DDPM_ERR_INPUT, &err);
    }
    *out = d;
    return DDPM_OK;
}

void ddpm_dataset_free(ddpm_dataset *d)
{
    if (!d) return;
    dataset_free(&d->d);
    d->head.magic = 0;
    free(d);
}

int ddpm_dataset_get_info(const ddpm_dataset *d, ddpm_dataset_info *info)
{
    API_REQUIRE(NULL, d);
    API_REQUIRE(NULL, info);
    *info = (ddpm_dataset_info){d->d.n, d->d.c, d->d.h, d->d.w, d->d.labels ? d->d.nclasses : 0, d->d.desc};
    return DDPM_OK;
}

const char *ddpm_dataset_class_name(const ddpm_dataset *d, int k)
{
    return d && d->d.labels && k >= 0 && k < d->d.nclasses ? d->d.names[k] : NULL;
}

int ddpm_dataset_images(const ddpm_dataset *d, int first, int n, float *x, int32_t *labels)
{
    API_REQUIRE(NULL, d);
    API_REQUIRE((api_obj *)&d->head, x);
    const dataset *s = &d->d;
    if (first < 0 || n < 0 || first > s->n || n > s->n - first)
        return api_fail((api_obj *)&d->head, DDPM_ERR_ARG, "ddpm_dataset_images: images %d..%d are outside the "
                        "%d of the data set", first, first + n - 1, s->n);
    const size_t HW = (size_t)s->h * s->w;
    api_bytes_to_nchw(x, s->pixels + (size_t)first * HW * s->c, n, s->c, HW);
    for (int i = 0; labels && i < n; i++) labels[i] = s->labels ? s->labels[first + i] : -1;
    return DDPM_OK;
}
