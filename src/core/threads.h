/* threads.h -- how many CPUs we may use, and the one threading runtime (OpenMP). */
#ifndef DDPM_THREADS_H
#define DDPM_THREADS_H

#include <stddef.h>

#include "ddpm.h" /* ddpm_set_threads and ddpm_now are public */

/* CPUs this process may run on (sched_getaffinity; CPUID topology is wrong in VMs). */
int ddpm_cpu_count(void);

/* ddpm_set_threads (ddpm.h) sets the OpenMP thread count used by ddpm's
 * kernels and oneDNN; n <= 0 means ddpm_cpu_count(). How the threads are used
 * (workers, per-worker temporaries) is the executor's: exec/executor.h. */

/* ddpm_now (ddpm.h): wall-clock seconds from a monotonic clock. */

#endif
