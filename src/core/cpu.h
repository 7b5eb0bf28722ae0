/* cpu.h -- the instruction-set level ddpm's own kernels run at, chosen when
 * the program starts, and how each kernel reaches the copy compiled for it.
 *
 * One build runs on every x86-64 CPU. The library is compiled for the x86-64
 * baseline, except its hot loops (the Makefile's KERNEL_SRC: Winograd
 * transforms, GroupNorm, element-wise, the optimizer, the RNG), which are
 * compiled once per level:
 *   CPU_X86_64   the baseline (SSE2), what the rest of the library uses;
 *   CPU_AVX2     x86-64-v3: AVX2, FMA, BMI1/2, F16C, MOVBE;
 *   CPU_AVX512   x86-64-v4: the above and AVX-512 F, BW, CD, DQ, VL.
 * In each copy, a global function NAME is renamed NAME__x86_64, NAME__avx2 or
 * NAME__avx512 (objcopy), and NAME itself becomes a jump through a pointer
 * that holds the running level's copy: CPU_KERNELS below, in a file the
 * Makefile generates per folder from the names the objects define.
 *
 * The level is the highest that the CPU and the OS support, capped by
 * ONEDNN_MAX_CPU_ISA (or its older name DNNL_MAX_CPU_ISA), the variable that
 * caps oneDNN's own kernels: one setting steers both, so a machine with
 * AVX-512 also runs and tests what an AVX2 CPU gets. oneDNN's values map to
 * the level whose instructions they allow (SSE41, AVX: x86-64; AVX2,
 * AVX2_VNNI: avx2; AVX512_CORE and above: avx512; ALL: no cap); a value
 * oneDNN does not know is ignored, as oneDNN ignores it. */
#ifndef DDPM_CPU_H
#define DDPM_CPU_H

enum cpu_level { CPU_X86_64, CPU_AVX2, CPU_AVX512, CPU_LEVELS };

/* Whether the CPU has bf16 arithmetic (AVX512_BF16 or AMX-BF16), uncapped. */
int cpu_has_bf16(void);

/* The level the kernels run at. */
int cpu_level(void);
/* The highest level this CPU and OS support, uncapped. */
int cpu_level_supported(void);
/* The level for a CPU supporting `supported`, under the cap text `cap`
 * (ONEDNN_MAX_CPU_ISA's value; NULL or "" for none). */
int cpu_level_capped(int supported, const char *cap);
/* "x86-64", "avx2", "avx512"; NULL for another number. */
const char *cpu_level_name(int level);
/* Points every kernel at its copy for `level` from now on (tests compare the
 * copies in one process; call it while no kernel runs). Returns 0, or -1 when
 * the CPU does not support that level (nothing changes). */
int cpu_set_level(int level);

/* ---- the dispatch (used by the generated kernels.c of each folder) -------- */
typedef void cpu_fn(void); /* a kernel of any signature, only jumped to */

/* One folder's kernels: n of them; to[i] is the pointer kernel i jumps
 * through, copies[i][level] its compiled copies. */
typedef struct cpu_kernels {
    int n;
    cpu_fn **const *to;
    cpu_fn *const (*copies)[CPU_LEVELS];
    struct cpu_kernels *next;
} cpu_kernels;
/* Adds a folder's kernels (at start, from a constructor) and points them at
 * the running level. */
void cpu_kernels_register(cpu_kernels *k);
/* How many registered kernels point at their copy for `level`; *total: how
 * many there are (the tests' check that cpu_set_level reaches every one). */
int cpu_kernels_at(int level, int *total);

/* CPU_KERNELS(LIST), with LIST(X) expanding X(name) for every kernel name,
 * defines for each: `name` (a jump through name__to), name__to (first the
 * baseline copy: right on any CPU before the constructor runs), and the
 * folder's table, registered when the program starts. */
#define CPU_KERNEL_(name)                                                                     \
    extern cpu_fn name##__x86_64, name##__avx2, name##__avx512;                               \
    static cpu_fn *name##__to __attribute__((used)) = name##__x86_64;                         \
    __asm__(".pushsection .text\n\t.globl " #name "\n\t.hidden " #name "\n\t.type " #name     \
            ", @function\n" #name ":\n\tjmp *" #name "__to(%rip)\n\t.size " #name ", .-" #name \
            "\n\t.popsection");
#define CPU_KERNEL_TO_(name) &name##__to,
#define CPU_KERNEL_COPIES_(name) {name##__x86_64, name##__avx2, name##__avx512},
#define CPU_KERNELS(LIST)                                                                      \
    LIST(CPU_KERNEL_)                                                                          \
    static cpu_fn **const cpu_kernels_to_[] = {LIST(CPU_KERNEL_TO_)};                          \
    static cpu_fn *const cpu_kernels_copies_[][CPU_LEVELS] = {LIST(CPU_KERNEL_COPIES_)};       \
    static cpu_kernels cpu_kernels_ = {(int)(sizeof cpu_kernels_to_ / sizeof *cpu_kernels_to_), \
                                       cpu_kernels_to_, cpu_kernels_copies_, 0};               \
    __attribute__((constructor)) static void cpu_kernels_start_(void) { cpu_kernels_register(&cpu_kernels_); }

#endif
