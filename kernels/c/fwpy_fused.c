/* Row loops of the fused kernel (kernels/_preprocess.pyx). C rather than Cython: they need
   restrict and no float compares (GCC does not if-convert those without -fno-trapping-math, and
   then the loop stays scalar). On x86-64 GCC builds fwpy_rows twice (AVX2 and baseline SSE2,
   chosen at load time through FWPY_CLONES); on aarch64 NEON is the baseline. */
#include "fwpy_fused.h"
#include "fwpy_simd.h"

/* Gathers store pairs (cells k0 and k0+1 of one line) so a pixel costs 2 stores, not 4: stores,
   not loads, bound this loop. No branch: outside pixels read cell 0 and the blend drops it. */
static inline void fwpy_gather8(const fwpy_job *j, const int32_t *restrict lut, long w,
                                uint16_t *restrict top, uint16_t *restrict bot) {
    const long step = j->line_step;
    const uint8_t *src = (const uint8_t *)j->src;
    for (long c = 0; c < w; c++) {
        const uint8_t *p = src + lut[c];
        top[c] = fwpy_pair8(p);
        bot[c] = fwpy_pair8(p + step);
    }
}

/* 16-bit: the four table values as four int16 rows (4 plain stores beat 2 stores plus the
   shift/or packing, and the blend then reads them without unpacking). */
static inline void fwpy_gather16(const fwpy_job *j, const int32_t *restrict lut, long w,
                                 int16_t *restrict d00, int16_t *restrict d01,
                                 int16_t *restrict d10, int16_t *restrict d11) {
    const long step = j->line_step;
    const uint16_t *src = (const uint16_t *)j->src;
    const int16_t *t = j->table;
    for (long c = 0; c < w; c++) {
        const uint16_t *p = src + lut[c];
        d00[c] = t[p[0]];
        d01[c] = t[p[1]];
        d10[c] = t[p[step]];
        d11[c] = t[p[step + 1]];
    }
}

/* Bilinear blend of display values (units of 1/q folded into ua), quantize, fill outside. */
static inline int8_t fwpy_code(float d00, float d01, float d10, float d11, int wsc, int wlc,
                               float ua, float b, int fill) {
    const float q15 = 1.0f / 32768.0f;
    const float ts = wsc * q15, tl = wlc * q15;
    const float top = d00 + ts * (d01 - d00), bottom = d10 + ts * (d11 - d10);
    const int code = fwpy_clamp(FWPY_RINT((top + tl * (bottom - top)) * ua + b), -128, 127);
    const int outside = -(wsc == 0xFFFF);
    return (int8_t)((code & ~outside) | (fill & outside));
}

/* 8-bit without TGC: the bytes are display values, no clipping needed. */
static inline void fwpy_blend8(long w, float a, float b, int fill,
                               const uint16_t *restrict top, const uint16_t *restrict bot,
                               const uint16_t *restrict wl, const uint16_t *restrict ws,
                               int8_t *restrict out) {
    for (long c = 0; c < w; c++) {
        const int t0 = FWPY_LO8(top[c]), t1 = FWPY_HI8(top[c]);
        const int b0 = FWPY_LO8(bot[c]), b1 = FWPY_HI8(bot[c]);
        out[c] = fwpy_code(t0, t1, b0, b1, ws[c], wl[c], a, b, fill);
    }
}

/* 8-bit with TGC: byte * q + gain clipped to [0, 255 q]. */
static inline void fwpy_blend8_tgc(long w, int q, float a, float b, int fill,
                                   const uint16_t *restrict top, const uint16_t *restrict bot,
                                   const uint32_t *restrict gp, const uint16_t *restrict wl,
                                   const uint16_t *restrict ws, int8_t *restrict out) {
    const int hi = 255 * q;
    const float ua = a / (float)q;
    for (long c = 0; c < w; c++) {
        const int t0 = FWPY_LO8(top[c]), t1 = FWPY_HI8(top[c]);
        const int b0 = FWPY_LO8(bot[c]), b1 = FWPY_HI8(bot[c]);
        const int g0 = fwpy_lo16(gp[c]), g1 = fwpy_hi16(gp[c]);
        out[c] = fwpy_code(fwpy_clamp(t0 * q + g0, 0, hi), fwpy_clamp(t1 * q + g1, 0, hi),
                           fwpy_clamp(b0 * q + g0, 0, hi), fwpy_clamp(b1 * q + g1, 0, hi),
                           ws[c], wl[c], ua, b, fill);
    }
}

/* 16-bit: int16 table values (+ gain) clipped to [0, 255 q]. */
static inline void fwpy_blend16(long w, int q, float a, float b, int fill,
                                const int16_t *restrict d00, const int16_t *restrict d01,
                                const int16_t *restrict d10, const int16_t *restrict d11,
                                const uint32_t *restrict gp, const uint16_t *restrict wl,
                                const uint16_t *restrict ws, int8_t *restrict out) {
    const int hi = 255 * q;
    const float ua = a / (float)q;
    if (gp) {
        for (long c = 0; c < w; c++) {
            const int g0 = fwpy_lo16(gp[c]), g1 = fwpy_hi16(gp[c]);
            out[c] = fwpy_code(fwpy_clamp(d00[c] + g0, 0, hi), fwpy_clamp(d01[c] + g1, 0, hi),
                               fwpy_clamp(d10[c] + g0, 0, hi), fwpy_clamp(d11[c] + g1, 0, hi),
                               ws[c], wl[c], ua, b, fill);
        }
    } else {
        for (long c = 0; c < w; c++) {
            out[c] = fwpy_code(fwpy_clamp(d00[c], 0, hi), fwpy_clamp(d01[c], 0, hi),
                               fwpy_clamp(d10[c], 0, hi), fwpy_clamp(d11[c], 0, hi),
                               ws[c], wl[c], ua, b, fill);
        }
    }
}

FWPY_API FWPY_CLONES void fwpy_rows(const fwpy_job *j, int r0, int r1, char *buf) {
    const long w = j->width;
    uint32_t *top = (uint32_t *)buf, *bot = top + w;
    for (int r = r0; r < r1; r++) {
        const long o = (long)r * w;
        const uint32_t *gp = j->gpair ? j->gpair + o : NULL;
        if (j->wide) {
            int16_t *d00 = (int16_t *)top, *d01 = d00 + w, *d10 = d01 + w, *d11 = d10 + w;
            fwpy_gather16(j, j->lut + o, w, d00, d01, d10, d11);
            fwpy_blend16(w, j->q, j->a, j->b, j->fill_code, d00, d01, d10, d11, gp, j->wl + o,
                         j->ws + o, j->out + o);
        } else {
            uint16_t *top8 = (uint16_t *)top, *bot8 = (uint16_t *)bot;
            fwpy_gather8(j, j->lut + o, w, top8, bot8);
            if (gp)
                fwpy_blend8_tgc(w, j->q, j->a, j->b, j->fill_code, top8, bot8, gp, j->wl + o,
                                j->ws + o, j->out + o);
            else
                fwpy_blend8(w, j->a, j->b, j->fill_code, top8, bot8, j->wl + o, j->ws + o,
                            j->out + o);
        }
    }
}
