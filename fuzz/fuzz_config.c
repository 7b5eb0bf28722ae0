/* fuzz_config.c -- libFuzzer harness for the U-Net config.json reader
 * (src/model/config.c: unet_config_from_json, unet_classes_from_json).
 *
 * Each input, cut at its first NUL byte (the readers take a C string), is
 * parsed both as a UNet2DModel config and for its "_class_names". A failure
 * must come with a "config:" message. A config that parses is written back
 * with unet_config_to_json (with the class names, when they parsed) and must
 * parse again to a config that passes the checks, with the same integers and
 * the same class names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = '\0';

    unet_config c, c2;
    unet_classes cls, cls2;
    err_t err = {0};
    int rc = unet_config_from_json(&c, json, &err);
    if (rc != 0) fz_check_msg(&err, "config:");
    memset(&err, 0, sizeof err);
    int rcc = unet_classes_from_json(&cls, json, &err);
    if (rcc != 0) fz_check_msg(&err, "config:");
    if (rc == 0) {
        char *back = unet_config_to_json(&c, rcc == 0 ? &cls : NULL);
        if (!back) abort();
        if (unet_config_from_json(&c2, back, &err) != 0 || unet_classes_from_json(&cls2, back, &err) != 0) abort();
        if (c2.sample_size != c.sample_size || c2.levels != c.levels || c2.num_class_embeds != c.num_class_embeds ||
            c2.layers_per_block != c.layers_per_block || c2.norm_groups != c.norm_groups ||
            memcmp(c2.block_out, c.block_out, sizeof c.block_out) != 0 ||
            memcmp(c2.down_attn, c.down_attn, sizeof c.down_attn) != 0 ||
            memcmp(c2.up_attn, c.up_attn, sizeof c.up_attn) != 0)
            abort();
        if (rcc == 0 && (cls2.n != cls.n || (cls.n && memcmp(cls2.names, cls.names, sizeof *cls.names * cls.n))))
            abort();
        (void)unet_null_class(&c, &cls);
        unet_classes_free(&cls2);
        free(back);
    }
    if (rcc == 0) unet_classes_free(&cls);
    free(json);
    return 0;
}
