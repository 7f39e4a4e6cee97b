/* lstm-bench's bridge to callgrind's client requests (bench/counts): compiled with gcc on first
   use and loaded with ctypes. Outside valgrind every request is a no-op. */
#include <valgrind/callgrind.h>

int lb_on_valgrind(void) { return RUNNING_ON_VALGRIND; }

/* Instrumentation on, counters zeroed: what runs next is counted. */
void lb_count_start(void) {
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_ZERO_STATS;
}

/* Counters since the last zero written to a dump named `label`, and zeroed. */
void lb_count_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }

/* Instrumentation off again: what runs next is not counted. */
void lb_count_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }

/* The CPU features CPUID reports to this process: under valgrind, the ones valgrind emulates
   (no AVX-512 on valgrind 3.19), which decides the kernels oneDNN, XLA and OpenBLAS pick. */
unsigned lb_cpu_features(void) {
    unsigned m = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) m |= 1u << 0;
    if (__builtin_cpu_supports("avx")) m |= 1u << 1;
    if (__builtin_cpu_supports("avx2")) m |= 1u << 2;
    if (__builtin_cpu_supports("fma")) m |= 1u << 3;
    if (__builtin_cpu_supports("avx512f")) m |= 1u << 4;
    if (__builtin_cpu_supports("avx512bw")) m |= 1u << 5;
    if (__builtin_cpu_supports("avx512vl")) m |= 1u << 6;
    if (__builtin_cpu_supports("avx512vnni")) m |= 1u << 7;
    return m;
}
