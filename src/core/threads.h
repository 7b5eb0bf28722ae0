/* threads.h -- how many CPUs we may use, and the one threading runtime (OpenMP). */
#ifndef DDPM_THREADS_H
#define DDPM_THREADS_H

#include <stddef.h>

#include "ddpm.h" /* ddpm_set_threads and ddpm_now are public */

/* CPUs this process may run on (sched_getaffinity; CPUID topology is wrong in VMs). */
int ddpm_cpu_count(void);

/* ddpm_set_threads (ddpm.h) sets the OpenMP thread count used by ddpm's
 * kernels and oneDNN; n <= 0 means ddpm_cpu_count(). */

/* Per-thread temporaries: the calling thread's buffer for `slot`, at least
 * `bytes` long and 64-byte aligned, contents undefined. Grown on demand, never
 * shrunk, kept for the thread's life. Operators use them for what lives only
 * during one call, so that U-Net shards running concurrently need one copy per
 * thread, not one per shard.
 *
 * Running out of memory (or a request above thread_buffer_set_limit) returns
 * NULL and counts one failure; the slot is then empty. Operators are void and
 * run inside OpenMP teams, so they have no error path: a caller that gets NULL
 * skips its work (its outputs are unspecified) and returns. The functions that
 * run operators (unet_forward, unet_train_pass, featnet_extract) read
 * thread_buffer_failures() before and after and fail with ddpm_oom when it
 * changed. */
enum thread_buffer_slot {
    TBUF_GN_PARTIAL, TBUF_GN_DZ,                    /* GroupNorm backward */
    TBUF_LINEAR_DW,                                 /* linear backward: the weight and bias gradients */
    TBUF_CONV_X, TBUF_CONV_Y, TBUF_CONV_DW,         /* convolution staging and weight gradient */
    TBUF_WINO_V, TBUF_WINO_M, TBUF_WINO_DU, TBUF_WINO_ZERO, TBUF_WINO_SCRAP, /* convolution by Winograd */
    TBUF_NET_DOUT, TBUF_NET_DACT, TBUF_NET_SCRATCH, /* U-Net backward: output and activation gradients, temporaries */
    TBUF_SLOTS
};
void *thread_buffer(int slot, size_t bytes);

/* The number of thread_buffer failures in this process so far, from every
 * thread (atomic; never reset, so nested callers each see their own). */
unsigned long thread_buffer_failures(void);

/* For tests: thread_buffer fails for any request above `bytes` (0: no limit),
 * as if memory had run out. Call while no operator runs. */
void thread_buffer_set_limit(size_t bytes);

/* ddpm_now (ddpm.h): wall-clock seconds from a monotonic clock. */

#endif
