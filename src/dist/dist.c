/* dist.c -- ranks over MPI, or one process (see dist.h). */
#include "dist/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Launchers' variables: Open MPI's mpirun, PMIx (srun --mpi=pmix), PMI-1/2. */
static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", NULL};

static int launched(void) {
    for (int i = 0; launcher_vars[i]; i++)
        if (getenv(launcher_vars[i])) return 1;
    return 0;
}

#ifdef DDPM_MPI
#include <mpi.h>

static int g_on, g_rank, g_size = 1;
static float *g_buf; /* receive buffer of dist_sum_tree, grown on demand */
static size_t g_buf_len;

/* Messages of at most 2^28 elements (MPI counts are ints). */
#define CHUNK ((size_t)1 << 28)

int dist_have_mpi(void) { return 1; }

int dist_init(err_t *err) {
    if (!launched()) return 0;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return err_fail(err, "MPI_Init failed");
    g_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return 0;
}

void dist_finalize(void) {
    if (g_on) MPI_Finalize();
    g_on = 0;
    free(g_buf);
    g_buf = NULL, g_buf_len = 0;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

static void sendrecv_floats(const float *send, size_t ns, float *recv, size_t nr, int peer) {
    for (size_t s = 0, r = 0; s < ns || r < nr;) {
        int cs = (int)(ns - s < CHUNK ? ns - s : CHUNK), cr = (int)(nr - r < CHUNK ? nr - r : CHUNK);
        MPI_Sendrecv(send + s, cs, MPI_FLOAT, peer, 7, recv + r, cr, MPI_FLOAT, peer, 7, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
        s += (size_t)cs, r += (size_t)cr;
    }
}

/* Block b of N over n elements: [b n / N, (b+1) n / N). */
static size_t block_start(size_t n, int N, int b) { return (size_t)((unsigned __int128)n * (unsigned)b / (unsigned)N); }

int dist_reserve(size_t n, err_t *err) {
    size_t need = n / 2 + (size_t)g_size;
    if (g_size == 1 || g_buf_len >= need) return 0;
    float *b = realloc(g_buf, need * sizeof *b);
    if (!b) return err_oom(err, "out of memory (%zu MB for the gradient reduction)", need * 4 >> 20);
    g_buf = b, g_buf_len = need;
    return 0;
}

void dist_sum_tree(float *x, size_t n) {
    int N = g_size, r = g_rank;
    if (N == 1) return;
    ERR_ASSERT((N & (N - 1)) == 0 && g_buf_len >= n / 2 + (size_t)N);
    /* Reduce-scatter by recursive halving, partners at distance 1, 2, 4, ...:
     * after the step at distance d a rank's kept blocks hold the sum over its
     * group of 2d ranks, the left group's sum plus the right one's (float
     * addition commutes, so both partners get the same bits). */
    int lo = 0, hi = N, steps = 0;
    int keep_lo[32], keep_hi[32];
    for (int d = 1; d < N; d <<= 1, steps++) {
        int mid = (lo + hi) / 2, upper = (r & d) != 0;
        int klo = upper ? mid : lo, khi = upper ? hi : mid, slo = upper ? lo : mid, shi = upper ? mid : hi;
        size_t k0 = block_start(n, N, klo), k1 = block_start(n, N, khi);
        size_t s0 = block_start(n, N, slo), s1 = block_start(n, N, shi);
        sendrecv_floats(x + s0, s1 - s0, g_buf, k1 - k0, r ^ d);
        float *k = x + k0;
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < k1 - k0; i++) k[i] += g_buf[i];
        keep_lo[steps] = lo, keep_hi[steps] = hi;
        lo = klo, hi = khi;
    }
    /* All-gather by recursive doubling: undo the halvings in reverse. */
    for (int s = steps - 1, d = N >> 1; s >= 0; s--, d >>= 1) {
        int plo = keep_lo[s], phi = keep_hi[s], mid = (plo + phi) / 2;
        int olo = lo == plo ? mid : plo, ohi = lo == plo ? phi : mid; /* the partner's half */
        size_t m0 = block_start(n, N, lo), m1 = block_start(n, N, hi);
        size_t o0 = block_start(n, N, olo), o1 = block_start(n, N, ohi);
        sendrecv_floats(x + m0, m1 - m0, x + o0, o1 - o0, r ^ d);
        lo = plo, hi = phi;
    }
}

void dist_allgather(const void *mine, void *all, size_t bytes) {
    if (g_size == 1) {
        memmove(all, mine, bytes);
        return;
    }
    ERR_ASSERT(bytes <= CHUNK);
    MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
}

void dist_gather(const void *mine, void *all, const size_t *bytes) {
    if (g_size == 1) {
        memmove(all, mine, bytes[0]);
        return;
    }
    if (g_rank != 0) {
        for (size_t s = 0; s < bytes[g_rank]; s += CHUNK) {
            size_t c = bytes[g_rank] - s < CHUNK ? bytes[g_rank] - s : CHUNK;
            MPI_Send((const char *)mine + s, (int)c, MPI_BYTE, 0, 8, MPI_COMM_WORLD);
        }
        return;
    }
    char *dst = all;
    memmove(dst, mine, bytes[0]);
    dst += bytes[0];
    for (int q = 1; q < g_size; q++) {
        for (size_t s = 0; s < bytes[q]; s += CHUNK) {
            size_t c = bytes[q] - s < CHUNK ? bytes[q] - s : CHUNK;
            MPI_Recv(dst + s, (int)c, MPI_BYTE, q, 8, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        }
        dst += bytes[q];
    }
}

int dist_or(int flags) {
    if (g_size == 1) return flags;
    int out = 0;
    MPI_Allreduce(&flags, &out, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD);
    return out;
}

void dist_bcast(void *buf, size_t bytes) {
    if (g_size == 1) return;
    for (size_t s = 0; s < bytes; s += CHUNK) {
        size_t c = bytes - s < CHUNK ? bytes - s : CHUNK;
        MPI_Bcast((char *)buf + s, (int)c, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
}

void dist_abort(int code) {
    fflush(NULL);
    if (g_on) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* one process */

int dist_have_mpi(void) { return 0; }

int dist_init(err_t *err) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (launched() && n && atoi(n) > 1)
        return err_fail(err, "started as one of %s processes, but this ddpm was built without MPI "
                              "(install libopenmpi-dev and rebuild: make MPI=1)", n);
    return 0;
}
void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
int dist_reserve(size_t n, err_t *err) { return (void)n, (void)err, 0; }
void dist_sum_tree(float *x, size_t n) { (void)x, (void)n; }
void dist_allgather(const void *mine, void *all, size_t bytes) { memmove(all, mine, bytes); }
void dist_gather(const void *mine, void *all, const size_t *bytes) { memmove(all, mine, bytes[0]); }
int dist_or(int flags) { return flags; }
void dist_bcast(void *buf, size_t bytes) { (void)buf, (void)bytes; }
void dist_abort(int code) {
    fflush(NULL);
    exit(code);
}

#endif

/* ---------------------------------------------- splitting images over ranks */

int dist_status_of_mask(int mask) {
    for (int s = 1; s < 31; s++)
        if (mask & (1 << s)) return s;
    return 0;
}

int dist_agree(int status) { return dist_status_of_mask(dist_or(status ? 1 << status : 0)); }

void dist_share(int n, int batch, int rank, int *first, int *count) {
    long long nb = (n + (long long)batch - 1) / batch, size = dist_size();
    long long b0 = rank * nb / size, b1 = (rank + 1) * nb / size;
    long long i0 = b0 * batch, i1 = b1 * batch < n ? b1 * batch : n;
    *first = (int)i0;
    *count = (int)(i1 - i0);
}

int dist_gather_share(const void *mine, void *all, int n, int batch, size_t item) {
    size_t *bytes = malloc(sizeof *bytes * (size_t)dist_size());
    if (dist_or(!bytes)) {
        free(bytes);
        return -1;
    }
    for (int r = 0, first, count; r < dist_size(); r++) {
        dist_share(n, batch, r, &first, &count);
        bytes[r] = (size_t)count * item;
    }
    dist_gather(mine, all, bytes);
    free(bytes);
    return 0;
}
