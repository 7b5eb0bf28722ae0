/* executor.h -- the execution context: the workers that run the operators,
 * on which threads, with which oneDNN streams, scratchpads and temporaries,
 * and how a batch split into shards is run and its gradients summed.
 *
 * Workers. An executor owns a team of workers; while it runs, each worker is
 * one thread, and the operators that thread calls find their worker with
 * exec_self(). A worker owns:
 *   - a oneDNN stream;
 *   - a user-managed scratchpad (every primitive is made with
 *     dnnl_scratchpad_mode_user and executed with DNNL_ARG_SCRATCHPAD = the
 *     running worker's), so that primitives run concurrently from several
 *     threads never share a library buffer (oneDNN's library-managed
 *     scratchpad is thread-local to the thread that made the primitive in
 *     builds without DNNL_ENABLE_CONCURRENT_EXEC: another thread gets none);
 *   - buffers by slot: arenas reserved when the plans are built, and
 *     temporaries that live during one operator. The slots' names belong to
 *     their users (ops.h, the U-Net); this file only counts them;
 *   - the first failure of what it ran (memory, a oneDNN status), which
 *     exec_run returns as an error: operators are void and never abort.
 * A thread outside any executor (a test calling an operator directly) runs as
 * a worker of its own, made on first use and freed when the thread ends.
 *
 * Threads. oneDNN partitions a primitive's work by the OpenMP thread count
 * it sees when the primitive is made, and runs it on one thread inside a
 * parallel region: a primitive made for N > 1 threads and run in a worker of
 * a team computes only part of its result. So every plan is built between
 * exec_build_begin and exec_build_end, with the executor's operator thread
 * count: 1 when shards run one per worker, all of them when one worker runs
 * the whole batch with multi-threaded operators. exec_run sets the same count
 * while it runs. The operators check that a plan made for several threads is
 * not run inside a team (exec_fail).
 *
 * Shards and the gradient sum. With sharded != 0, shards run in order of
 * their index on up to `threads` workers, and the shards' parameter gradients
 * are summed in a fixed order: a binary tree over the shard index, leaves
 * left to right, each node the sum of its left and right subtrees
 * ((g0 + g1) + (g2 + g3)) + ... (with a shard count that is not a power of
 * two, the complete subtrees from the left, then their sums from the smallest
 * up). The order does not depend on the number of workers, and with a
 * power-of-two shard count any aligned block of shards is a subtree: a
 * process that runs global shards [r k, (r+1) k) sums a subtree, and
 * dist_sum_tree (dist/dist.h) adds the subtrees of the ranks in the same
 * tree. What that makes bit-identical is stated in docs/determinism.md.
 *
 * The backend. What the executor asks of the machine it runs on (the workers'
 * resources, the team, the thread regime plans are built under) is a small
 * table of operations, exec_backend; the CPU backend (OpenMP and oneDNN) is
 * the one there is. A GPU backend plugs in there.
 *
 * Precision. An executor computes its convolutions and matrix products in
 * fp32, or in bf16 mixed precision (exec_precision below): the operators ask
 * the executor they run on (exec_precision, exec_build_precision), so a
 * network's precision is its executor's, and one process can hold networks
 * of both (a bf16 training net, fp32 feature networks). */
#ifndef DDPM_EXECUTOR_H
#define DDPM_EXECUTOR_H

#include <stddef.h>

#include "core/status.h"

typedef struct executor executor;
typedef struct exec_worker exec_worker;

/* Buffer slots per worker. Slot 0 is the oneDNN scratchpad; users number
 * theirs from EXEC_SLOT_USER (see ops.h). */
enum { EXEC_SLOT_SCRATCHPAD = 0, EXEC_SLOT_USER = 1, EXEC_SLOTS = 24 };

/* The table of operations a backend provides. */
typedef struct exec_backend {
    const char *name;
    /* A worker's own resources (its stream); 0 or -1 with err set. */
    int (*worker_init)(exec_worker *w, err_t *err);
    void (*worker_free)(exec_worker *w);
    /* Runs body(arg, k) for every k < n, at once on up to n threads;
     * operators called from there run on one thread. */
    void (*team)(int n, void (*body)(void *arg, int k), void *arg);
    /* The operator thread count from now on; returns the previous one. */
    int (*set_threads)(int n);
} exec_backend;

extern const exec_backend exec_cpu;

/* Precisions. In both bf16 ones the operands of every convolution and
 * matrix product (inputs, weights, incoming gradients) are rounded to bf16
 * (to nearest, ties to even) and the products summed in fp32, with fp32
 * results; everything else (GroupNorm, softmax, the optimizer, master
 * weights) stays fp32. EXEC_BF16 runs oneDNN's bf16 kernels, on CPUs with
 * AVX512_BF16 or AMX-BF16 (exec_bf16_check); EXEC_BF16_EMULATED gets the
 * same numbers on any CPU by rounding the operands and multiplying on the
 * fp32 kernels (up to the order of the fp32 sums). */
enum exec_precision { EXEC_FP32 = 0, EXEC_BF16 = 1, EXEC_BF16_EMULATED = 2, EXEC_PRECISIONS };

/* The instruction set oneDNN's kernels run at (its cap applied), by
 * oneDNN's name for it: "avx2", "avx512_core_bf16", ... */
const char *exec_dnnl_isa(void);

/* "fp32", "bf16", "bf16-emulated", and back (-1: unknown). */
const char *exec_precision_name(int precision);
int exec_precision_parse(const char *name);

/* Whether this CPU, under the instruction-set cap of oneDNN
 * (ONEDNN_MAX_CPU_ISA), runs oneDNN's bf16 kernels: 0, or -1 with err
 * saying which instructions are missing. */
int exec_bf16_check(err_t *err);

typedef struct exec_config {
    int nshards;        /* shards of a batch (>= 1) */
    int threads;        /* <= 0: ddpm's thread count (thread_set_count) */
    int sharded;        /* != 0: one shard per worker at a time, single-threaded operators;
                         * 0: one worker runs every shard with multi-threaded operators */
    int precision;      /* enum exec_precision (0: fp32) */
} exec_config;

/* Makes the executor and its workers. Returns 0, or -1 with err set. */
int exec_create(executor **e, const exec_config *c, err_t *err);
void exec_free(executor *e);

/* Plans for e are made between these two calls, on the calling thread: it
 * runs as e's first worker with e's operator thread count, and exec_reserve
 * sizes a slot in every worker of e. exec_build_end allocates what was
 * reserved; it returns 0, or -1 with err set (also for a failure recorded
 * while building). */
void exec_build_begin(executor *e);
int exec_build_end(executor *e, err_t *err);

/* The shard count of the executor whose plans the calling thread is building
 * (1 when it builds none). */
int exec_build_shards(void);
/* How many of its shards run at once, each on one thread (1 when it builds
 * none, or runs its shards one after the other on multi-threaded operators). */
int exec_build_concurrency(void);

/* The precision of the executor whose plans the calling thread is building
 * (EXEC_FP32 when it builds none). */
int exec_build_precision(void);

/* While building: runs will sum parameter gradients of `floats` floats. */
void exec_reserve_grads(executor *e, size_t floats);

/* The shard function: runs shard `shard` on the calling worker, adding its
 * parameter gradients (+=) to grads[grad_floats] (zeroed before the call;
 * NULL when the run has no gradients). */
typedef void (*exec_shard_fn)(void *ctx, int shard, float *grads);

/* Runs every shard; grads (+=) the tree sum of the shards' gradients when
 * grads is not NULL (the executor must have reserved gradients). Returns 0, or -1
 * with the first failure of a worker (in worker order) in err; the outputs
 * are then unspecified. */
int exec_run(executor *e, exec_shard_fn fn, void *ctx, float *grads, err_t *err);

/* Workers, and bytes held (buffers and gradients). */
int exec_workers(const executor *e);
size_t exec_bytes(const executor *e);

/* ---- what operators use ---------------------------------------------------- */

/* The calling thread's worker (never NULL). */
exec_worker *exec_self(void);

/* The precision of the executor the calling thread runs as a worker of (or
 * builds plans for); EXEC_FP32 on a thread's own worker. Threads an operator
 * starts itself are not workers: it asks before it starts them. */
int exec_precision(void);

/* While building (exec_build_begin): slot `slot` of every worker of the
 * executor gets at least `bytes`. Elsewhere: nothing. */
void exec_reserve(int slot, size_t bytes);

/* The calling worker's buffer for slot, at least `bytes` long, 64-byte
 * aligned, contents undefined; grown when smaller, never shrunk. Running out
 * of memory (or a request above exec_set_buffer_limit) returns NULL and
 * records the failure on the worker: the caller skips its work and returns. */
void *exec_buffer(int slot, size_t bytes);

/* The process's oneDNN CPU engine (a dnnl_engine_t), made on first use:
 * NULL with err set when it cannot be made. */
void *exec_engine(err_t *err);

/* The calling worker's oneDNN stream (a dnnl_stream_t), or NULL after
 * recording a failure. */
void *exec_stream(void);

/* Records a failure on the calling worker (the first one is kept). */
void exec_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void exec_oom(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Moves the calling worker's recorded failure into err (NULL: drops it) and
 * clears it: returns 0 when there was none, else -1. For callers that run
 * operators outside exec_run. */
int exec_take_failure(err_t *err);

/* For tests: exec_buffer fails for any request above `bytes` (0: no limit),
 * as if memory had run out. Call while nothing runs. */
void exec_set_buffer_limit(size_t bytes);

#endif
