/* Separable kernel for linear probes (kernels/_linear.pyx, LinearPlan): the per-geometry
   plan and the two entry points. */
#ifndef FWPY_LINEAR_H
#define FWPY_LINEAR_H

#include "fwpy_simd.h"

typedef struct {
    FWPY_FRAME_FIELDS
    long n_samples;
    int height, width, hstride;  /* hstride: OT row length, height rounded up to 16 */
    int line0, n_used;        /* T holds lines line0 .. line0 + n_used - 1 */
    const int32_t *k0;        /* per row: lower depth sample (0 for outside rows) */
    const int16_t *ws;        /* per row: Q15 weight of sample k0 + 1 (<= 32767) */
    const int16_t *g0, *g1;   /* per row: gains of samples k0, k0 + 1 (1/q), or NULL */
    const int32_t *row_out;   /* per row: -1 outside the depth range, else 0 */
    int rows_all_in;          /* no row outside: skip the fill select */
    const int32_t *i0, *i1;   /* per column: the two lines (i1 = i0 + 1, or i0 on 1 line) */
    const int16_t *wl;        /* per column: Q15 weight of line i1 (<= 32767) */
    const uint8_t *col_in;    /* per column: 1 inside the aperture */
    int q;                    /* depth display values in units of 1/q, q a power of 2 <= 64 */
    int n_chunks, shuffle;    /* 8-bit shuffle gather: chunks of 8 rows; 1 if the CPU has it */
    int32_t *chunk_off, *chunk_nb;  /* per chunk: first byte, 16-byte blocks (0: scalar) */
    uint8_t *chunk_mask;      /* per chunk: 4 x 16 byte-shuffle controls (0x80: none) */
    float a, b;               /* code = rint(display * a + b) */
    int fill_code;
    int16_t *T;               /* (n_used, height) */
    uint32_t *P;              /* (8, height) gathered sample pairs of a block of lines */
    int8_t *OT;               /* (width, hstride) codes, transposed */
    int8_t *out;              /* (height, width) */
} fwpy_lin;

/* Per geometry, once: the 8-bit shuffle-gather controls (j->chunk_*); returns 1 when this CPU
   runs the shuffle gather (SSSE3 on x86-64, always on aarch64), for j->shuffle. */
int fwpy_lin_plan_chunks(fwpy_lin *j);
/* One frame j->src into j->out (the three passes). */
void fwpy_lin_run(const fwpy_lin *j);

#endif
