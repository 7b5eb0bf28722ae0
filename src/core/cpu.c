/* cpu.c -- the kernels' instruction-set level: what the CPU supports
 * (cpuid, with the OS's consent to the wider registers, through GCC's
 * __builtin_cpu_supports), the ONEDNN_MAX_CPU_ISA cap, and the pointers of
 * every registered kernel table (see cpu.h). */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static cpu_kernels *tables;
static int level = -1; /* not yet decided */

const char *cpu_level_name(int l) {
    static const char *const names[CPU_LEVELS] = {"x86-64", "avx2", "avx512"};
    return l >= 0 && l < CPU_LEVELS ? names[l] : NULL;
}

int cpu_has_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
}

int cpu_level_supported(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return CPU_AVX512;
    if (__builtin_cpu_supports("x86-64-v3")) return CPU_AVX2;
    return CPU_X86_64;
}

int cpu_level_capped(int supported, const char *cap) {
    if (!cap || !*cap || !strcasecmp(cap, "ALL")) return supported;
    /* oneDNN's names (dnnl_cpu_isa_t), lowest first, and the level each allows. */
    static const struct { const char *name; int level; } caps[] = {
        {"SSE41", CPU_X86_64}, {"AVX", CPU_X86_64}, {"AVX2", CPU_AVX2}, {"AVX2_VNNI", CPU_AVX2},
        {"AVX2_VNNI_2", CPU_AVX2}, {"AVX512_MIC", CPU_AVX2}, {"AVX512_MIC_4OPS", CPU_AVX2},
        {"AVX512_CORE", CPU_AVX512}, {"AVX512_CORE_VNNI", CPU_AVX512}, {"AVX512_CORE_BF16", CPU_AVX512},
        {"AVX512_CORE_FP16", CPU_AVX512}, {"AVX512_CORE_AMX", CPU_AVX512}, {"AVX512_CORE_AMX_FP16", CPU_AVX512},
        {"AVX10_1_512", CPU_AVX512}, {"AVX10_1_512_AMX", CPU_AVX512}, {"AVX10_1_512_AMX_FP16", CPU_AVX512},
    };
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++)
        if (!strcasecmp(cap, caps[i].name)) return caps[i].level < supported ? caps[i].level : supported;
    return supported;
}

static void point(cpu_kernels *k) {
    for (int i = 0; i < k->n; i++) *k->to[i] = k->copies[i][level];
}

int cpu_level(void) {
    if (level < 0) {
        const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
        if (!cap || !*cap) cap = getenv("DNNL_MAX_CPU_ISA");
        level = cpu_level_capped(cpu_level_supported(), cap);
    }
    return level;
}

int cpu_set_level(int l) {
    if (l < 0 || l > cpu_level_supported()) return -1;
    level = l;
    for (cpu_kernels *k = tables; k; k = k->next) point(k);
    return 0;
}

void cpu_kernels_register(cpu_kernels *k) {
    cpu_level();
    k->next = tables;
    tables = k;
    point(k);
}

int cpu_kernels_at(int l, int *total) {
    int at = 0, n = 0;
    for (cpu_kernels *k = tables; k; k = k->next)
        for (int i = 0; i < k->n; i++, n++) at += l >= 0 && l < CPU_LEVELS && *k->to[i] == k->copies[i][l];
    *total = n;
    return at;
}
