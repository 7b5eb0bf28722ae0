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
 * shrunk, kept for the thread's life; if memory runs out the process ends
 * with a message and status 1 (there is no error path this deep). Operators use
 * them for what lives only during one call, so that U-Net shards running
 * concurrently need one copy per thread, not one per shard. */
enum thread_buffer_slot {
    TBUF_GN_PARTIAL, TBUF_GN_DZ,                    /* GroupNorm backward */
    TBUF_LINEAR_DW,                                 /* linear backward: the weight and bias gradients */
    TBUF_CONV_X, TBUF_CONV_Y, TBUF_CONV_DW,         /* convolution staging and weight gradient */
    TBUF_WINO_V, TBUF_WINO_M, TBUF_WINO_DU, TBUF_WINO_ZERO, TBUF_WINO_SCRAP, /* convolution by Winograd */
    TBUF_NET_DOUT, TBUF_NET_DACT, TBUF_NET_SCRATCH, /* U-Net backward: output and activation gradients, temporaries */
    TBUF_SLOTS
};
void *thread_buffer(int slot, size_t bytes);

/* ddpm_now (ddpm.h): wall-clock seconds from a monotonic clock. */

#endif
