/* The one header of helpers and compiler portability shared by the kernels' C files
   (fwpy_fused.c, fwpy_linear.c): a helper needed by both lives here, never copied. */
#ifndef FWPY_SIMD_H
#define FWPY_SIMD_H

#include <stdint.h>
#include <string.h>

/* x86-64 Linux with GCC: an AVX2 clone of each entry point chosen at load time (as OpenCV
   dispatches its kernels), so the distributed build needs no -march=native. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FWPY_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FWPY_CLONES
#endif

/* Entry points the .pyx calls: external so the Cython module links them, hidden so the
   extension does not export them (GCC 12 still exports the ifunc of a target_clones function;
   harmless: Python loads extensions RTLD_LOCAL and the names carry the fwpy_ prefix). */
#define FWPY_API __attribute__((visibility("hidden")))

/* The frame as both kernels' jobs start: set per call by the .pyx (src, wide), per geometry
   (table). */
#define FWPY_FRAME_FIELDS                                                                      \
    const void *src;          /* (n_lines, n_samples) uint8 or uint16, C-contiguous */        \
    int wide;                 /* 1: uint16 samples through table */                           \
    const int16_t *table;     /* uint16 amplitude -> display in units of 1/q (16-bit only) */

/* Helpers must inline into the cloned entry point, or they stay baseline (SSE2) code. */
#define FWPY_INLINE static inline __attribute__((always_inline))

/* Round half to even to int: GCC vectorises __builtin_irintf to cvtps2dq on x86 (the wrappers
   keep |x| < 2**22); other compilers get the 1.5 * 2**23 trick. On aarch64, GCC 12 has no
   vector pattern for irintf (scalar frintx + fcvtzs per element), which kept every row loop
   holding it scalar; rintf vectorises (frintx v.4s) and its integral result converts
   exactly (fcvtzs v.4s): same rounding, same codes. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__aarch64__)
#define FWPY_RINT(x) ((int)__builtin_rintf(x))
#elif defined(__GNUC__) && !defined(__clang__)
#define FWPY_RINT(x) __builtin_irintf(x)
#else
#define FWPY_RINT(x) ((int)(((x) + 12582912.0f) - 12582912.0f))
#endif

/* Integer clamp: compare-selects on integers, which the vectoriser turns into min/max (float
   compares it would not if-convert without -fno-trapping-math). */
FWPY_INLINE int fwpy_clamp(int x, int lo, int hi) {
    x = x > lo ? x : lo;
    return x < hi ? x : hi;
}

/* Two adjacent bytes (samples k, k + 1 of one line) as one load, in native byte order;
   FWPY_LO8 / FWPY_HI8 take them apart again (sample k, sample k + 1). */
FWPY_INLINE uint16_t fwpy_pair8(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FWPY_LO8(v) ((v) & 0xFF)
#define FWPY_HI8(v) ((v) >> 8)
#else
#define FWPY_LO8(v) ((v) >> 8)
#define FWPY_HI8(v) ((v) & 0xFF)
#endif

/* The two int16 halves of a packed pair (low half first: sample k, then k + 1). */
FWPY_INLINE int fwpy_lo16(uint32_t v) { return (int16_t)(v & 0xFFFF); }
FWPY_INLINE int fwpy_hi16(uint32_t v) { return (int16_t)(v >> 16); }

#endif
