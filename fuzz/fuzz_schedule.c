/* fuzz_schedule.c -- libFuzzer harness for the scheduler_config.json reader
 * (src/diffusion/schedule.c: schedule_from_json, and schedule_to_json).
 *
 * Each input, cut at its first NUL byte (the reader takes a C string), is
 * parsed as a diffusers scheduler config. A failure must come with a
 * "scheduler config" message. A schedule that builds is written back with
 * schedule_to_json and read again, which (schedule.h) must rebuild identical
 * tables and options.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/schedule.h"
#include "fuzz_util.h"

static int same(const schedule *a, const schedule *b) {
    return a->T == b->T && a->trained == b->trained && a->variance_type == b->variance_type &&
           a->clip_sample == b->clip_sample && a->clip_range == b->clip_range && a->thresholding == b->thresholding &&
           a->threshold_ratio == b->threshold_ratio && a->sample_max == b->sample_max &&
           a->set_alpha_to_one == b->set_alpha_to_one && a->steps_offset == b->steps_offset &&
           !strcmp(a->kind, b->kind) && !strcmp(a->timestep_spacing, b->timestep_spacing) &&
           memcmp(a->mem, b->mem, 9 * (size_t)a->T * sizeof(float)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = '\0';

    schedule s, s2;
    err_t err = {0};
    if (schedule_from_json(&s, json, &err) != 0) {
        fz_check_msg(&err, "scheduler config");
    } else {
        char *back = schedule_to_json(&s);
        if (!back || schedule_from_json(&s2, back, &err) != 0 || !same(&s, &s2)) abort();
        schedule_free(&s2);
        free(back);
    }
    schedule_free(&s);
    free(json);
    return 0;
}
