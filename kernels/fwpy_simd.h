/* Compiler portability shared by the kernels' C blocks (_preprocess.pyx, _linear.pyx). */
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

#endif
