/* threads.h -- how many CPUs we may use, the one threading runtime (OpenMP),
 * and the clock. The public ddpm_set_threads and ddpm_now (ddpm.h) are these. */
#ifndef DDPM_THREADS_H
#define DDPM_THREADS_H

/* CPUs this process may run on (sched_getaffinity; CPUID topology is wrong in VMs). */
int thread_cpu_count(void);

/* Sets the OpenMP thread count used by ddpm's kernels and oneDNN; n <= 0
 * means thread_cpu_count(). Returns the count set. How the threads are used
 * (workers, per-worker temporaries) is the executor's: exec/executor.h. */
int thread_set_count(int n);

/* Wall-clock seconds from a monotonic clock. Thread-safe. */
double clock_now(void);

#endif
