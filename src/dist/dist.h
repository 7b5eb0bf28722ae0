/* dist.h -- one run over several processes: the ranks of an MPI job (Open MPI,
 * started by mpirun or srun), or the one process of a plain run.
 *
 * ddpm built without MPI, or started without a launcher, is rank 0 of 1 and
 * every call below is a cheap no-op; MPI is initialised only when a launcher's
 * environment says this process is one rank of a job. Every function here is
 * collective (all ranks call it, in the same order) unless it says otherwise.
 *
 * The sum over ranks has a fixed order: a perfect binary tree over the ranks in
 * rank order, ((r0 + r1) + (r2 + r3)) + ..., computed by recursive halving
 * (a reduce-scatter) and recursive doubling (an all-gather), so every rank gets
 * the same bits and the traffic per rank is 2 (N-1)/N of the buffer, as a ring's.
 * Together with a rank's own shards summed in the same tree (exec/executor.h),
 * the global sum is one tree over the global shards: the same bits with 1, 2,
 * 4, ... ranks (docs/determinism.md). MPI_Allreduce promises no order, so it
 * is not used for it. */
#ifndef DDPM_DIST_H
#define DDPM_DIST_H

#include <stddef.h>

#include "core/status.h"

/* Joins the job if a launcher started this process (Open MPI's mpirun, or
 * srun/PMIx), else stays a single process. Call once, before threads start.
 * Returns 0, or -1 (MPI failed to start, or this build has no MPI but a
 * launcher started several copies). Not collective. */
int dist_init(err_t *err);

/* Leaves the job (after the last collective call); safe to call when
 * dist_init was not called. Not collective in a single process. */
void dist_finalize(void);

/* This process's rank and the job's size (0 and 1 without a job). Not collective. */
int dist_rank(void);
int dist_size(void);

/* Whether this build can join MPI jobs. Not collective. */
int dist_have_mpi(void);

/* Makes the receive buffer of dist_sum_tree for n floats (before a run, so
 * that no step can fail half-way through a collective). Not collective.
 * Returns 0, or -1 (out of memory). */
int dist_reserve(size_t n, err_t *err);

/* x[n] (=) the sum of every rank's x[n] in the tree order above; dist_size()
 * must be a power of two and dist_reserve(n) done. */
void dist_sum_tree(float *x, size_t n);

/* all[N * bytes] (=) every rank's mine[bytes], in rank order (N = dist_size()). */
void dist_allgather(const void *mine, void *all, size_t bytes);

/* On rank 0: all (=) every rank's mine, in rank order, rank r contributing
 * bytes[r] bytes (the same array on every rank). all is ignored elsewhere. */
void dist_gather(const void *mine, void *all, const size_t *bytes);

/* The bitwise or of every rank's flags. */
int dist_or(int flags);

/* buf[bytes] (=) rank 0's buf[bytes]. */
void dist_bcast(void *buf, size_t bytes);

/* Stops the whole job at once with status code (a rank that cannot go on while
 * the others wait in a collective); exits when there is no job. Not collective. */
void dist_abort(int code) __attribute__((noreturn));

/* ---- splitting a job's images over the ranks (built on the calls above) */

/* The lowest status set in mask (a bitwise or of 1 << status over the ranks),
 * 0 (DDPM_OK) for 0: how ranks agree on one status. Not collective. */
int dist_status_of_mask(int mask);

/* The status every rank agrees on: the lowest nonzero status of any rank
 * (status in 1..30), 0 when every rank's is 0. A rank whose own status was 0
 * learns here that another failed. */
int dist_agree(int status);

/* The share of the n images (in batches of batch) that rank computes: whole
 * batches [r nb / N, (r+1) nb / N) of the nb there are, so every image is
 * computed in the batch of a plain run; images [*first, *first + *count).
 * Not collective. */
void dist_share(int n, int batch, int rank, int *first, int *count);

/* Gathers every rank's share (dist_share: count records of item bytes) into
 * all[n records] on rank 0 in image order (mine may be all on rank 0, whose
 * share starts at 0). Returns 0, or -1 when out of memory (the same on every rank). */
int dist_gather_share(const void *mine, void *all, int n, int batch, size_t item);

#endif
