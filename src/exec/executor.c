/* executor.c -- shards on a team of workers, gradients summed in a tree (see executor.h). */
#include "exec/executor.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct executor {
    int nshards, nworkers, levels;
    size_t arena_len, grad_len;
    float **arena;   /* [nworkers] */
    float **pool;    /* free gradient buffers: nworkers + levels in all */
    int npool;
    float **level;   /* [levels + 1]: the sum of a complete subtree of 2^j shards waiting for its right sibling */
};

static int levels_for(int n) {
    int l = 0;
    while ((1 << l) < n) l++;
    return l;
}

int exec_create(executor **out, int nshards, int threads, size_t arena_floats, size_t grad_floats, ddpm_err *err) {
    *out = NULL;
    if (threads <= 0) threads = omp_get_max_threads();
    executor *e = ddpm_calloc(1, sizeof *e, err);
    if (!e) return -1;
    e->nshards = nshards;
    e->nworkers = nshards < threads ? nshards : threads;
    e->levels = levels_for(nshards);
    e->arena_len = arena_floats;
    e->grad_len = grad_floats;
    e->arena = ddpm_calloc((size_t)e->nworkers, sizeof *e->arena, err);
    e->pool = ddpm_calloc((size_t)(e->nworkers + e->levels + 1), sizeof *e->pool, err);
    e->level = ddpm_calloc((size_t)e->levels + 1, sizeof *e->level, err);
    if (!e->arena || !e->pool || !e->level) goto fail;
    for (int w = 0; w < e->nworkers; w++)
        if (!(e->arena[w] = ddpm_alloc_floats(arena_floats, err))) goto fail;
    if (grad_floats)
        for (int i = 0; i < e->nworkers + e->levels; i++)
            if (!(e->pool[e->npool++] = ddpm_alloc_floats(grad_floats, err))) goto fail;
    *out = e;
    return 0;
fail:
    exec_free(e);
    return -1;
}

void exec_free(executor *e) {
    if (!e) return;
    for (int w = 0; e->arena && w < e->nworkers; w++) free(e->arena[w]);
    for (int i = 0; e->pool && i < e->npool; i++) free(e->pool[i]);
    for (int j = 0; e->level && j <= e->levels; j++) free(e->level[j]);
    free(e->arena), free(e->pool), free(e->level);
    free(e);
}

int exec_workers(const executor *e) { return e->nworkers; }

size_t exec_bytes(const executor *e) {
    return sizeof(float) * ((size_t)e->nworkers * e->arena_len + (size_t)(e->nworkers + e->levels) * e->grad_len);
}

/* a (=) a + b, element-wise on the team. */
static void add_into(float *a, const float *b, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

/* Folds the next leaf (in shard order) into the tree: like a binary counter,
 * a complete subtree of 2^j leaves meets the one waiting at level j and the
 * two become one of 2^(j+1). Buffers go back to the pool as they merge. */
static void push_leaf(executor *e, float *leaf) {
    float *carry = leaf;
    int j = 0;
    while (e->level[j]) {
        add_into(e->level[j], carry, e->grad_len); /* left + right */
        e->pool[e->npool++] = carry;
        carry = e->level[j];
        e->level[j++] = NULL;
    }
    e->level[j] = carry;
}

void exec_run(executor *e, exec_shard_fn fn, void *ctx, float *grads) {
    int threads = omp_get_max_threads(), W = e->nworkers < threads ? e->nworkers : threads;
    DDPM_ASSERT(!grads || e->grad_len > 0);
    float *leaf[64];
    DDPM_ASSERT(W <= 64);
    for (int first = 0; first < e->nshards; first += W) {
        int n = e->nshards - first < W ? e->nshards - first : W;
        if (grads)
            for (int k = 0; k < n; k++) {
                DDPM_ASSERT(e->npool > 0);
                leaf[k] = e->pool[--e->npool];
            }
        /* The team always has W threads, so that the operators inside a shard
         * stay single-threaded (nested regions are inactive). */
        #pragma omp parallel num_threads(W)
        {
            int k = omp_get_thread_num();
            if (k < n) {
                if (grads) memset(leaf[k], 0, sizeof(float) * e->grad_len);
                fn(ctx, first + k, e->arena[k], grads ? leaf[k] : NULL);
            }
        }
        if (grads)
            for (int k = 0; k < n; k++) push_leaf(e, leaf[k]);
    }
    if (!grads) return;
    /* What is left: complete subtrees, one per set bit of nshards; the sum
     * runs from the smallest up. */
    float *acc = NULL;
    for (int j = 0; j <= e->levels; j++) {
        if (!e->level[j]) continue;
        if (acc) {
            add_into(e->level[j], acc, e->grad_len);
            e->pool[e->npool++] = acc;
        }
        acc = e->level[j];
        e->level[j] = NULL;
    }
    add_into(grads, acc, e->grad_len);
    e->pool[e->npool++] = acc;
}
