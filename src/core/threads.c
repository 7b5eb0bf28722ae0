/* threads.c -- CPU counting with sched_getaffinity, the OpenMP thread count
 * and the per-thread temporary buffers. */
#include "threads.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "status.h"

int ddpm_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

int ddpm_set_threads(int n) {
    if (n <= 0) n = ddpm_cpu_count();
    omp_set_num_threads(n);
    return n;
}

typedef struct tbuf_slot {
    void *p;
    size_t n;
} tbuf_slot;
static _Thread_local tbuf_slot tbuf[TBUF_SLOTS];

/* A thread's buffers are freed when it ends (OpenMP teams of other sizes come
 * and go): the key's destructor runs at thread exit with the thread's array. */
static pthread_key_t tbuf_key;
static pthread_once_t tbuf_once = PTHREAD_ONCE_INIT;

static void tbuf_release(void *arg) {
    tbuf_slot *t = arg;
    for (int i = 0; i < TBUF_SLOTS; i++) {
        free(t[i].p);
        t[i].p = NULL, t[i].n = 0;
    }
}

static void tbuf_key_make(void) { DDPM_ASSERT(pthread_key_create(&tbuf_key, tbuf_release) == 0); }

static atomic_ulong tbuf_failures;
static atomic_size_t tbuf_limit; /* 0: none */

unsigned long thread_buffer_failures(void) { return atomic_load(&tbuf_failures); }

void thread_buffer_set_limit(size_t bytes) { atomic_store(&tbuf_limit, bytes); }

/* Counts a failure; the caller skips its work (see threads.h). */
static void *tbuf_fail(void) {
    atomic_fetch_add(&tbuf_failures, 1);
    return NULL;
}

void *thread_buffer(int slot, size_t bytes) {
    DDPM_ASSERT(slot >= 0 && slot < TBUF_SLOTS);
    size_t limit = atomic_load_explicit(&tbuf_limit, memory_order_relaxed);
    if (limit && bytes > limit) return tbuf_fail();
    if (bytes > tbuf[slot].n) {
        pthread_once(&tbuf_once, tbuf_key_make);
        if (!pthread_getspecific(tbuf_key)) pthread_setspecific(tbuf_key, tbuf);
        free(tbuf[slot].p);
        size_t n = bytes + bytes / 4 + 64;
        tbuf[slot].p = NULL, tbuf[slot].n = 0;
        if (posix_memalign(&tbuf[slot].p, 64, n) != 0) {
            tbuf[slot].p = NULL;
            return tbuf_fail();
        }
        tbuf[slot].n = n;
    }
    return tbuf[slot].p;
}

double ddpm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
