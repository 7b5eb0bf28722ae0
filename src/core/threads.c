/* threads.c -- CPU counting with sched_getaffinity, the OpenMP thread count
 * and the clock. */
#include "threads.h"

#include <omp.h>
#include <sched.h>
#include <time.h>

#include "status.h"

int thread_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

int thread_set_count(int n) {
    if (n <= 0) n = thread_cpu_count();
    omp_set_num_threads(n);
    return n;
}

double clock_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
