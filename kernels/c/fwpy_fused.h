/* Row loops of the fused kernel (kernels/_preprocess.pyx, FusedPlan): gather + blend per
   output row; fwpy_fused.c has why they are C rather than Cython. */
#ifndef FWPY_FUSED_H
#define FWPY_FUSED_H

#include "fwpy_simd.h"

typedef struct {
    FWPY_FRAME_FIELDS
    const uint32_t *gpair;    /* per output pixel: TGC of its samples k0, k0 + 1 (int16 pair,
                                 units of 1/q), or NULL without TGC */
    const int32_t *lut;       /* element offset line * n_samples + sample of the upper-left
                                 cell; 0 outside (ws = 0xFFFF there selects the fill) */
    const uint16_t *wl, *ws;  /* Q15 weights of the next line / next sample; ws 0xFFFF outside */
    long width, n_samples, line_step;
    int q;                    /* display values are in units of 1/q */
    float a, b;               /* code = rint(display * a + b) */
    int fill_code;
    int8_t *out;
} fwpy_job;

/* Output rows r0 .. r1 - 1 into j->out; buf: 12 * width bytes of row scratch (per thread). */
void fwpy_rows(const fwpy_job *j, int r0, int r1, char *buf);

#endif
