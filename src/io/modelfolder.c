/* modelfolder.c -- reading and writing diffusers model folders. */
#include "modelfolder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fileio.h"
#include "io/safetensors.h"

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Finds file `name` in dir (flat layout) or dir/sub (pipeline layout). */
static int locate(char *out, size_t n, const char *dir, const char *sub, const char *name, int required,
                  err_t *err) {
    char alt[4096];
    if (file_path_join(out, n, dir, name, err)) return -1;
    if (exists(out)) return 0;
    snprintf(alt, sizeof alt, "%s/%s/%s", dir, sub, name);
    if (exists(alt)) {
        snprintf(out, n, "%s", alt);
        return 0;
    }
    out[0] = 0;
    if (!required) return 0;
    if (!exists(dir)) return err_fail(err, "model folder '%s' does not exist", dir);
    return err_fail(err, "'%s' is not a model folder: no %s in it or in %s/%s", dir, name, dir, sub);
}

static int read_text(const char *path, char **text, err_t *err) {
    unsigned char *buf;
    size_t len;
    if (file_read_all(path, &buf, &len, err)) return -1;
    char *s = realloc(buf, len + 1);
    if (!s) {
        free(buf);
        return err_oom(err, "out of memory reading %s", path);
    }
    s[len] = 0;
    *text = s;
    return 0;
}

int folder_read_config(const char *dir, unet_config *cfg, err_t *err) {
    char path[4096], *text = NULL;
    if (locate(path, sizeof path, dir, "unet", "config.json", 1, err) || read_text(path, &text, err)) return -1;
    int rc = unet_config_from_json(cfg, text, err);
    free(text);
    return rc ? err_wrap(err, "%s", path) : 0;
}

int folder_read_classes(const char *dir, unet_classes *cls, err_t *err) {
    char path[4096], *text = NULL;
    memset(cls, 0, sizeof *cls);
    if (locate(path, sizeof path, dir, "unet", "config.json", 1, err) || read_text(path, &text, err)) return -1;
    int rc = unet_classes_from_json(cls, text, err);
    free(text);
    return rc ? err_wrap(err, "%s", path) : 0;
}

int folder_read_scheduler(const char *dir, char **json, err_t *err) {
    char path[4096];
    *json = NULL;
    if (locate(path, sizeof path, dir, "scheduler", "scheduler_config.json", 0, err)) return -1;
    return path[0] ? read_text(path, json, err) : 0;
}

/* The legacy (diffusers 0.1) name of an attention parameter, or 0 if none. */
static int legacy_name(char *out, size_t n, const char *name) {
    static const char *const now[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const old[] = {".query.", ".key.", ".value.", ".proj_attn."};
    if (!strstr(name, "attentions.")) return 0;
    for (int i = 0; i < 4; i++) {
        const char *p = strstr(name, now[i]);
        if (p) {
            snprintf(out, n, "%.*s%s%s", (int)(p - name), name, old[i], p + strlen(now[i]));
            return 1;
        }
    }
    return 0;
}

static void shape_str(char *out, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(out + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(out + k, n - k, "]");
}

int folder_load_weights_file(const unet *u, float *params, const char *path, err_t *err) {
    st_file f;
    if (st_open(&f, path, err)) return -1;
    char *used = calloc((size_t)f.n + 1, 1);
    int rc = -1;
    if (!used) { err_oom(err, "out of memory"); goto done; }
    for (int i = 0; i < u->ntensors; i++) {
        const param_info *p = &u->table[i];
        const st_tensor *t = st_find(&f, p->name);
        char alt[128];
        if (!t && legacy_name(alt, sizeof alt, p->name)) t = st_find(&f, alt);
        if (!t) { err_fail(err, "%s: missing tensor '%s'", path, p->name); goto done; }
        int ok = t->ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++) ok = t->shape[d] == p->shape[d];
        /* Attention projections may be stored as 1x1 convolutions. */
        if (!ok && p->ndim == 2 && strstr(p->name, "attentions.") && t->ndim == 4)
            ok = t->shape[0] == p->shape[0] && t->shape[1] == p->shape[1] && t->shape[2] == 1 && t->shape[3] == 1;
        if (!ok) {
            char got[96], want[96];
            int64_t ws[4] = {p->shape[0], p->shape[1], p->shape[2], p->shape[3]};
            shape_str(got, sizeof got, t->ndim, t->shape);
            shape_str(want, sizeof want, p->ndim, ws);
            err_fail(err, "%s: tensor '%s' has shape %s, the config needs %s", path, t->name, got, want);
            goto done;
        }
        if (st_read_f32(&f, t, params + p->offset, p->numel, err)) goto done;
        used[t - f.tensors] = 1;
    }
    for (int i = 0; i < f.n; i++)
        if (!used[i]) {
            err_fail(err, "%s: unexpected tensor '%s' (not a parameter of this config)", path, f.tensors[i].name);
            goto done;
        }
    rc = 0;
done:
    free(used);
    st_close(&f);
    return rc;
}

int folder_load_weights(unet *u, const char *dir, err_t *err) {
    char path[4096];
    if (locate(path, sizeof path, dir, "unet", MODEL_WEIGHTS_FILE, 1, err)) return -1;
    return folder_load_weights_file(u, u->params, path, err);
}

int folder_load(unet **u, const char *dir, int batch, int training, err_t *err) {
    unet_config cfg;
    *u = NULL;
    if (folder_read_config(dir, &cfg, err) || unet_create(u, &cfg, batch, training, err)) return -1;
    if (folder_load_weights(*u, dir, err)) {
        unet_free(*u);
        *u = NULL;
        return -1;
    }
    return 0;
}

int folder_save_weights_file(const unet *u, const float *params, const char *path, err_t *err) {
    st_entry *e = mem_calloc((size_t)u->ntensors, sizeof *e, err);
    if (!e) return -1;
    for (int i = 0; i < u->ntensors; i++) {
        const param_info *p = &u->table[i];
        e[i].name = p->name;
        e[i].dtype = ST_F32;
        e[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) e[i].shape[d] = p->shape[d];
        e[i].data = params + p->offset;
    }
    int rc = st_write(path, e, u->ntensors, NULL, err);
    free(e);
    return rc;
}

static int write_text(const char *dir, const char *name, const char *text, err_t *err) {
    char path[4096];
    if (file_path_join(path, sizeof path, dir, name, err)) return -1;
    const void *chunks[2] = {text, "\n"};
    size_t lens[2] = {strlen(text), 1};
    return file_write_atomic(path, chunks, lens, 2, err);
}

int folder_save(const unet *u, const float *params, const char *dir, const char *sched_json, const unet_classes *cls,
               err_t *err) {
    char path[4096];
    if (file_make_dirs(dir, err)) return -1;
    char *cfg = unet_config_to_json(&u->cfg, cls);
    if (!cfg) return err_oom(err, "out of memory");
    int rc = write_text(dir, "config.json", cfg, err);
    free(cfg);
    if (rc) return -1;
    if (file_path_join(path, sizeof path, dir, MODEL_WEIGHTS_FILE, err) ||
        folder_save_weights_file(u, params, path, err))
        return -1;
    if (sched_json && write_text(dir, "scheduler_config.json", sched_json, err)) return -1;
    return 0;
}
