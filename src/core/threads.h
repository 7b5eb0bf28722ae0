/* threads.h -- how many CPUs we may use, and the one threading runtime (OpenMP). */
#ifndef DDPM_THREADS_H
#define DDPM_THREADS_H

/* CPUs this process may run on (sched_getaffinity; CPUID topology is wrong in VMs). */
int ddpm_cpu_count(void);

/* Sets the OpenMP thread count used by ddpm's kernels and oneDNN; n <= 0 means
 * ddpm_cpu_count(). Returns the count in use. */
int ddpm_set_threads(int n);

/* Wall-clock seconds from a monotonic clock. */
double ddpm_now(void);

#endif
