/* executor.h -- runs a batch split into shards on the CPU: a team of workers,
 * one thread each, runs the shards in order of their index, each shard in a
 * worker's arena, and sums the shards' parameter gradients in a fixed order.
 *
 * The order: a binary tree over the shard index, leaves left to right, each
 * node the sum of its left and right subtrees ((g0 + g1) + (g2 + g3)) + ...
 * (with a shard count that is not a power of two, the complete subtrees from
 * the left, then their sums from the smallest up). It does not depend on the
 * number of workers, and with a power-of-two shard count any aligned block of
 * shards is a subtree: a process that runs global shards [r k, (r+1) k) sums a
 * subtree, and dist_sum_tree (dist/dist.h) adds the subtrees of the ranks in
 * the same tree. The sum of a batch's gradients is then the same bits with any
 * thread count and any power-of-two number of processes that divides it.
 *
 * Memory: one arena per worker, and, for gradients, one buffer per worker plus
 * one per tree level (log2 of the shard count), made when the executor is. */
#ifndef DDPM_EXECUTOR_H
#define DDPM_EXECUTOR_H

#include <stddef.h>

#include "core/status.h"

typedef struct executor executor;

/* Runs shard `shard` on the calling thread, in arena[arena_floats] (contents
 * undefined), adding its parameter gradients (+=) to grads[grad_floats] (zeroed
 * before the call; NULL when the run has no gradients). Operators called from
 * here must not start parallel regions of their own (they run inactive). */
typedef void (*exec_shard_fn)(void *ctx, int shard, float *arena, float *grads);

/* An executor for nshards shards on up to `threads` workers (<= 0: the
 * current OpenMP thread count, when it runs), arenas of arena_floats floats,
 * and gradients of grad_floats floats (0: forward only). Returns 0, or -1 when
 * memory runs out. */
int exec_create(executor **e, int nshards, int threads, size_t arena_floats, size_t grad_floats, ddpm_err *err);
void exec_free(executor *e);

/* Runs every shard. grads (+=) the tree sum of the shards' gradients when
 * grads is not NULL (the executor must have been made with grad_floats > 0). */
void exec_run(executor *e, exec_shard_fn fn, void *ctx, float *grads);

/* Workers and bytes held (arenas and gradient buffers). */
int exec_workers(const executor *e);
size_t exec_bytes(const executor *e);

#endif
