/* threads.c -- CPU counting with sched_getaffinity and the OpenMP thread count. */
#include "threads.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

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

void *thread_buffer(int slot, size_t bytes) {
    DDPM_ASSERT(slot >= 0 && slot < TBUF_SLOTS);
    if (bytes > tbuf[slot].n) {
        pthread_once(&tbuf_once, tbuf_key_make);
        if (!pthread_getspecific(tbuf_key)) pthread_setspecific(tbuf_key, tbuf);
        free(tbuf[slot].p);
        size_t n = bytes + bytes / 4 + 64;
        tbuf[slot].p = NULL;
        if (posix_memalign(&tbuf[slot].p, 64, n) != 0) {
            /* The one allocation with no error path (it is deep inside an
             * operator): end the process with the contract's status for
             * running out of memory, 1, not an abort. */
            fprintf(stderr, "ddpm: out of memory (a %zu MB temporary buffer)\n", n >> 20);
            fflush(stderr);
            _exit(1);
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
