/* executor.c -- workers with their streams, scratchpads, buffers and
 * failures; shards on a team, gradients summed in a tree; the CPU backend
 * (see executor.h). */
#include "exec/executor.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"

struct exec_worker {
    executor *e;              /* NULL: a thread's own worker */
    void *buf[EXEC_SLOTS];
    size_t len[EXEC_SLOTS];
    dnnl_stream_t stream;
    int failed;
    err_t err;             /* the first failure */
};

struct executor {
    const exec_backend *be;
    int nshards, nworkers, op_threads, levels, precision;
    size_t grad_len;
    exec_worker *workers;     /* [nworkers] */
    size_t reserve[EXEC_SLOTS];
    int building, saved_threads;
    exec_worker *saved_self;
    float **pool;             /* free gradient buffers: nworkers + levels in all */
    int npool;
    float **level;            /* [levels + 1]: the sum of a complete subtree of 2^j shards waiting for its right sibling */
    float **leaf;             /* [nworkers]: this round's shard gradients */
    /* one run's arguments, for the team */
    exec_shard_fn fn;
    void *ctx;
    int first, n, with_grads;
};

/* ---- the calling thread's worker ------------------------------------------ */

static _Thread_local exec_worker *self;       /* the worker this thread runs as, while it does */
static _Thread_local exec_worker own;         /* this thread's own worker, outside executors */
static _Thread_local int own_registered;
static pthread_key_t own_key;
static int own_key_ok;
static pthread_once_t own_once = PTHREAD_ONCE_INIT;
static atomic_size_t buffer_limit;            /* 0: none */

static void worker_release(exec_worker *w) {
    for (int i = 0; i < EXEC_SLOTS; i++) {
        free(w->buf[i]);
        w->buf[i] = NULL, w->len[i] = 0;
    }
    if (w->stream) dnnl_stream_destroy(w->stream);
    w->stream = NULL;
}

/* A thread's own worker is freed when the thread ends (OpenMP teams of other
 * sizes come and go). */
static void own_release(void *arg) { worker_release(arg); }
static void own_key_make(void) {
    own_key_ok = pthread_key_create(&own_key, own_release) == 0;
}

exec_worker *exec_self(void) {
    if (self) return self;
    if (!own_registered) { /* first use on this thread: freed at its end */
        pthread_once(&own_once, own_key_make);
        if (own_key_ok) pthread_setspecific(own_key, &own);
        own_registered = 1;
    }
    return &own;
}

static void worker_record(exec_worker *w, int oom, const char *fmt, va_list ap) {
    if (w->failed) return;
    w->failed = 1;
    vsnprintf(w->err.msg, sizeof w->err.msg, fmt, ap);
    w->err.oom = oom;
}

void exec_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    worker_record(exec_self(), 0, fmt, ap);
    va_end(ap);
}

void exec_oom(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    worker_record(exec_self(), 1, fmt, ap);
    va_end(ap);
}

static int take_failure(exec_worker *w, err_t *err) {
    if (!w->failed) return 0;
    if (err) *err = w->err;
    w->failed = 0;
    return -1;
}

int exec_take_failure(err_t *err) { return take_failure(exec_self(), err); }

void exec_set_buffer_limit(size_t bytes) { atomic_store(&buffer_limit, bytes); }

/* Slot `slot` of w, at least `bytes` (grown to that plus `slack`); NULL
 * (nothing recorded) when memory runs out. */
static void *worker_grow(exec_worker *w, int slot, size_t bytes, size_t slack) {
    size_t limit = atomic_load_explicit(&buffer_limit, memory_order_relaxed);
    if (limit && bytes > limit) return NULL;
    if (bytes <= w->len[slot] && w->buf[slot]) return w->buf[slot];
    free(w->buf[slot]);
    w->len[slot] = 0;
    size_t floats = (bytes + slack + sizeof(float) - 1) / sizeof(float);
    if (!(w->buf[slot] = mem_alloc_floats(floats, NULL))) return NULL; /* pre-faulted: no page faults in the hot loop */
    w->len[slot] = floats * sizeof(float);
    return w->buf[slot];
}

void *exec_buffer(int slot, size_t bytes) {
    ERR_ASSERT(slot >= 0 && slot < EXEC_SLOTS);
    exec_worker *w = exec_self();
    void *p = worker_grow(w, slot, bytes, bytes / 4); /* on demand: room to grow */
    if (!p) exec_oom("out of memory for a worker's temporaries (%zu bytes in slot %d)", bytes, slot);
    return p;
}

void exec_reserve(int slot, size_t bytes) {
    ERR_ASSERT(slot >= 0 && slot < EXEC_SLOTS);
    exec_worker *w = exec_self();
    if (w->e && w->e->building && bytes > w->e->reserve[slot]) w->e->reserve[slot] = bytes;
}

/* ---- oneDNN: the engine, and a stream per worker --------------------------- */

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_make(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

void *exec_engine(err_t *err) {
    pthread_once(&engine_once, engine_make);
    if (!engine) err_fail(err, "oneDNN: cannot create the CPU engine");
    return engine;
}

static int cpu_worker_init(exec_worker *w, err_t *err) {
    if (!exec_engine(err)) return -1;
    dnnl_status_t s = dnnl_stream_create(&w->stream, engine, dnnl_stream_default_flags);
    if (s == dnnl_out_of_memory) return err_oom(err, "out of memory (oneDNN: stream)");
    if (s != dnnl_success) return err_fail(err, "oneDNN: cannot create a stream (status %d)", (int)s);
    return 0;
}

void *exec_stream(void) {
    exec_worker *w = exec_self();
    if (!w->stream) {
        err_t err = {{0}, 0};
        if (exec_cpu.worker_init(w, &err)) {
            exec_fail("%s", err.msg);
            return NULL;
        }
    }
    return w->stream;
}

/* ---- oneDNN's instruction set, and the precision ------------------------------ */

const char *exec_dnnl_isa(void) {
    static _Thread_local char buf[32];
    switch ((int)dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: snprintf(buf, sizeof buf, "isa-0x%x", (unsigned)dnnl_get_effective_cpu_isa()); return buf;
    }
}

static const char *const precision_names[EXEC_PRECISIONS] = {"fp32", "bf16", "bf16-emulated"};

const char *exec_precision_name(int precision) {
    return precision >= 0 && precision < EXEC_PRECISIONS ? precision_names[precision] : "?";
}

int exec_precision_parse(const char *name) {
    for (int i = 0; name && i < EXEC_PRECISIONS; i++)
        if (!strcmp(name, precision_names[i])) return i;
    return -1;
}

/* oneDNN has bf16 kernels from avx512_core up (emulating the bf16
 * instructions there), but they are fast only with AVX512_BF16 (its
 * avx512_core_bf16 level) or AMX: below that, refuse rather than run slower
 * than fp32. avx2_vnni is numbered above them but is an AVX2 level. */
int exec_bf16_check(err_t *err) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16) return 0;
    if (!cpu_has_bf16())
        return err_fail(err, "precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16 (Zen 4 and later, Cooper Lake, "
                             "Sapphire Rapids and later), and this one has neither; bf16-emulated computes the same "
                             "numbers on any CPU, slower");
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA") ? "ONEDNN_MAX_CPU_ISA" : "DNNL_MAX_CPU_ISA";
    return err_fail(err, "precision bf16: this CPU has AVX512_BF16 or AMX-BF16, but oneDNN runs at %s (%s=%s); "
                         "bf16-emulated computes the same numbers at any level, slower",
                    exec_dnnl_isa(), cap, getenv(cap) ? getenv(cap) : "unset");
}

/* ---- the CPU backend: OpenMP teams ------------------------------------------ */

static void cpu_worker_free(exec_worker *w) { worker_release(w); }

static void cpu_team(int n, void (*body)(void *arg, int k), void *arg) {
    /* A team of n threads (fewer if the OpenMP runtime gives fewer: then a
     * thread runs several workers in turn); the operators inside run on one
     * thread (nested regions are inactive). */
    #pragma omp parallel num_threads(n)
    for (int k = omp_get_thread_num(); k < n; k += omp_get_num_threads()) body(arg, k);
}

static int cpu_set_threads(int n) {
    int old = omp_get_max_threads();
    omp_set_num_threads(n);
    return old;
}

const exec_backend exec_cpu = {"cpu", cpu_worker_init, cpu_worker_free, cpu_team, cpu_set_threads};

/* ---- executors -------------------------------------------------------------- */

static int levels_for(int n) {
    int l = 0;
    while ((1 << l) < n) l++;
    return l;
}

int exec_create(executor **out, const exec_config *c, err_t *err) {
    *out = NULL;
    if (c->nshards < 1) return err_fail(err, "an executor needs at least one shard, not %d", c->nshards);
    if (c->precision < 0 || c->precision >= EXEC_PRECISIONS) return err_fail(err, "unknown precision %d", c->precision);
    if (c->precision == EXEC_BF16 && exec_bf16_check(err)) return -1;
    int threads = c->threads > 0 ? c->threads : omp_get_max_threads();
    executor *e = mem_calloc(1, sizeof *e, err);
    if (!e) return -1;
    e->be = &exec_cpu;
    e->nshards = c->nshards;
    e->precision = c->precision;
    e->nworkers = c->sharded ? (c->nshards < threads ? c->nshards : threads) : 1;
    e->op_threads = c->sharded ? 1 : threads;
    e->levels = levels_for(c->nshards);
    e->workers = mem_calloc((size_t)e->nworkers, sizeof *e->workers, err);
    e->pool = mem_calloc((size_t)(e->nworkers + e->levels + 1), sizeof *e->pool, err);
    e->level = mem_calloc((size_t)e->levels + 1, sizeof *e->level, err);
    e->leaf = mem_calloc((size_t)e->nworkers, sizeof *e->leaf, err);
    if (!e->workers || !e->pool || !e->level || !e->leaf) goto fail;
    for (int w = 0; w < e->nworkers; w++) {
        e->workers[w].e = e;
        if (e->be->worker_init(&e->workers[w], err)) goto fail;
    }
    *out = e;
    return 0;
fail:
    exec_free(e);
    return -1;
}

void exec_free(executor *e) {
    if (!e) return;
    for (int w = 0; e->workers && w < e->nworkers; w++) e->be->worker_free(&e->workers[w]);
    for (int i = 0; e->pool && i < e->npool; i++) free(e->pool[i]);
    for (int j = 0; e->level && j <= e->levels; j++) free(e->level[j]);
    free(e->workers), free(e->pool), free(e->level), free(e->leaf);
    free(e);
}

int exec_build_shards(void) {
    exec_worker *w = exec_self();
    return w->e && w->e->building ? w->e->nshards : 1;
}

int exec_build_concurrency(void) {
    exec_worker *w = exec_self();
    return w->e && w->e->building && w->e->op_threads == 1 ? w->e->nworkers : 1;
}

int exec_build_precision(void) {
    exec_worker *w = exec_self();
    return w->e && w->e->building ? w->e->precision : EXEC_FP32;
}

int exec_precision(void) {
    exec_worker *w = exec_self();
    return w->e ? w->e->precision : EXEC_FP32;
}

void exec_build_begin(executor *e) {
    ERR_ASSERT(!e->building);
    e->building = 1;
    e->saved_self = self;
    self = &e->workers[0];
    e->saved_threads = e->be->set_threads(e->op_threads);
}

void exec_reserve_grads(executor *e, size_t floats) {
    ERR_ASSERT(e->building && e->npool == 0);
    e->grad_len = floats;
}

int exec_build_end(executor *e, err_t *err) {
    ERR_ASSERT(e->building);
    e->be->set_threads(e->saved_threads);
    self = e->saved_self;
    e->building = 0;
    if (take_failure(&e->workers[0], err)) return -1;
    if (e->grad_len)
        for (int i = 0; i < e->nworkers + e->levels; i++)
            if (!(e->pool[e->npool++] = mem_alloc_floats(e->grad_len, err))) return -1;
    for (int w = 0; w < e->nworkers; w++)
        for (int s = 0; s < EXEC_SLOTS; s++)
            if (e->reserve[s] && !worker_grow(&e->workers[w], s, e->reserve[s], 0))
                return err_oom(err, "out of memory for the workers' buffers (%zu bytes each in slot %d)",
                                e->reserve[s], s);
    return 0;
}

int exec_workers(const executor *e) { return e->nworkers; }

size_t exec_bytes(const executor *e) {
    size_t b = sizeof(float) * (size_t)(e->nworkers + e->levels) * e->grad_len;
    for (int w = 0; w < e->nworkers; w++)
        for (int s = 0; s < EXEC_SLOTS; s++) b += e->workers[w].len[s];
    return b;
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

/* Worker k of a round: shard first + k, as that worker. */
static void round_body(void *arg, int k) {
    executor *e = arg;
    if (k >= e->n) return;
    exec_worker *prev = self;
    self = &e->workers[k];
    if (e->with_grads) memset(e->leaf[k], 0, sizeof(float) * e->grad_len);
    e->fn(e->ctx, e->first + k, e->with_grads ? e->leaf[k] : NULL);
    self = prev;
}

int exec_run(executor *e, exec_shard_fn fn, void *ctx, float *grads, err_t *err) {
    ERR_ASSERT(!grads || e->grad_len > 0);
    int W = e->nworkers;
    e->fn = fn, e->ctx = ctx, e->with_grads = grads != NULL;
    for (int first = 0; first < e->nshards; first += W) {
        e->first = first;
        e->n = e->nshards - first < W ? e->nshards - first : W;
        if (grads)
            for (int k = 0; k < e->n; k++) {
                ERR_ASSERT(e->npool > 0);
                e->leaf[k] = e->pool[--e->npool];
            }
        if (W == 1) { /* on the calling thread, with the operator thread count the plans were built for */
            int threads = e->be->set_threads(e->op_threads);
            round_body(e, 0);
            e->be->set_threads(threads);
        } else {
            e->be->team(W, round_body, e);
        }
        if (grads)
            for (int k = 0; k < e->n; k++) push_leaf(e, e->leaf[k]);
    }
    int rc = 0;
    for (int w = 0; w < W; w++)
        if (take_failure(&e->workers[w], rc ? NULL : err)) rc = -1;
    if (!grads) return rc;
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
    if (!rc) add_into(grads, acc, e->grad_len);
    e->pool[e->npool++] = acc;
    return rc;
}
