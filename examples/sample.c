/* sample.c -- the smallest program on libddpm: loads a model folder (or a training run), draws
 * 16 images with DDIM and writes them as a 4x4 PNG grid.
 *   cc sample.c $(pkg-config --cflags --libs ddpm) -o sample
 *   ./sample MODEL_DIR grid.png [STEPS]        (DDIM steps, default 50) */
#include <stdio.h>
#include <stdlib.h>
#include <ddpm.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR OUT.png [STEPS]\n", argv[0]);
        return 2;
    }
    ddpm_model *m = NULL;
    ddpm_model_info info;
    ddpm_sample_options o;
    float *x = NULL;
    int n = 16, ok = 0;
    if (ddpm_model_load(argv[1], &m) != DDPM_OK || ddpm_model_get_info(m, &info) != DDPM_OK) goto done;
    ddpm_sample_options_init(&o);
    o.sampler = DDPM_SAMPLER_DDIM;
    o.steps = argc > 3 ? atoi(argv[3]) : 50;
    int c = info.in_channels, s = info.sample_size;
    if (!(x = malloc(sizeof *x * (size_t)n * c * s * s))) goto done;
    ok = ddpm_sample(m, &o, n, x, NULL) == DDPM_OK && ddpm_png_write_grid(argv[2], x, n, c, s, s, 4, 2) == DDPM_OK;
done:
    if (!ok) fprintf(stderr, "sample: %s\n", x || !m ? ddpm_errmsg(NULL) : "out of memory");
    free(x);
    ddpm_model_free(m);
    return ok ? 0 : 1;
}
