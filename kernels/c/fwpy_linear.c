/* Separable kernel for linear probes (kernels/_linear.pyx, LinearPlan): depth pass per scan
   line, line pass per column, 16 x 16 byte transpose; docs/kernels.md "The separable linear
   path" has the passes and the fixed-point formats. */
#include "fwpy_linear.h"
#include "fwpy_simd.h"

/* d0 + w (d1 - d0) in units of 1/128 display, d in units of 1/q, m = 128 / q, w Q15
   (< 1): all in 16-bit lanes, (d1 - d0) m fits because |d1 - d0| <= 255 q; the product
   rounds like a multiply-high-round (pmulhrsw), within 1/256 display. */
#define FWPY_LERP(d0, d1, w, m) \
    (int16_t)((d0) * (m) + (((int)(int16_t)(((d1) - (d0)) * (m)) * (w) + 16384) >> 15))

/* Depth blend of one line's gathered pairs into t (units of 1/128 display). */
FWPY_INLINE void fwpy_lin_blend(const fwpy_lin *j, const uint32_t *restrict P,
                                int16_t *restrict t, const int16_t *restrict ws,
                                const int16_t *restrict g0, const int16_t *restrict g1) {
    const int h = j->height, q = j->q, hi = 255 * q, m = 128 / q;
    if (!j->wide && g0) {  /* 8-bit with TGC: byte * q + gain, clipped to [0, 255 q] */
        const uint16_t *restrict P8 = (const uint16_t *)P;
        for (int r = 0; r < h; r++) {
            const int d0 = fwpy_clamp(FWPY_LO8(P8[r]) * q + g0[r], 0, hi);
            const int d1 = fwpy_clamp(FWPY_HI8(P8[r]) * q + g1[r], 0, hi);
            t[r] = FWPY_LERP(d0, d1, ws[r], m);
        }
    } else if (g0) {       /* 16-bit: table value + gain, clipped */
        for (int r = 0; r < h; r++) {
            const int d0 = fwpy_clamp(fwpy_lo16(P[r]) + g0[r], 0, hi);
            const int d1 = fwpy_clamp(fwpy_hi16(P[r]) + g1[r], 0, hi);
            t[r] = FWPY_LERP(d0, d1, ws[r], m);
        }
    } else if (j->wide) {  /* 16-bit without TGC */
        for (int r = 0; r < h; r++) {
            const int d0 = fwpy_clamp(fwpy_lo16(P[r]), 0, hi);
            const int d1 = fwpy_clamp(fwpy_hi16(P[r]), 0, hi);
            t[r] = FWPY_LERP(d0, d1, ws[r], m);
        }
    } else {               /* 8-bit without TGC: the bytes are display values (q = 1) */
        const uint16_t *restrict P8 = (const uint16_t *)P;
        for (int r = 0; r < h; r++)
            t[r] = FWPY_LERP(FWPY_LO8(P8[r]), FWPY_HI8(P8[r]), ws[r], 128);
    }
}

/* 8-bit gather by byte shuffles. Rows come in chunks of 8; the 16 bytes of a chunk's 8 pairs
   (k0[r], k0[r] + 1 of one line) lie within nb <= 4 consecutive 16-byte blocks of the line,
   the same for every line, so per line and chunk the gather is nb loads, nb table shuffles
   (pshufb / tbl: an index with the high bit set gives 0) and one store, instead of 8 pair
   loads and 8 stores. Chunks too wide (strong decimation, outside rows) stay scalar. */
FWPY_API int fwpy_lin_plan_chunks(fwpy_lin *j) {
    const int h = j->height;
    j->n_chunks = h / 8;
    for (int g = 0; g < j->n_chunks; g++) {
        const int32_t *k = j->k0 + 8 * g;
        int lo = k[0], hi = k[0];
        for (int i = 1; i < 8; i++) { lo = k[i] < lo ? k[i] : lo; hi = k[i] > hi ? k[i] : hi; }
        int nb = (hi + 2 - lo + 15) / 16;
        long off = lo;
        if (off + 16L * nb > j->n_samples) off = j->n_samples - 16L * nb;  /* stay in the line */
        if (nb > 4 || off < 0) nb = 0;
        j->chunk_off[g] = (int32_t)off;
        j->chunk_nb[g] = nb;
        uint8_t *m = j->chunk_mask + 64L * g;
        memset(m, 0x80, 64);
        for (int i = 0; i < 8 && nb; i++)
            for (int t = 0; t < 2; t++) {
                const int at = k[i] + t - (int)off;
                m[16 * (at / 16) + 2 * i + t] = (uint8_t)(at % 16);
            }
    }
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("ssse3");
#elif defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}

static inline void fwpy_lin_scalar8(const uint8_t *const s[8], uint16_t *const p[8],
                                    const int32_t *k0, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        const long k = k0[r];
        for (int i = 0; i < 8; i++) p[i][r] = fwpy_pair8(s[i] + k);
    }
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__) && \
    (defined(__x86_64__) || defined(__aarch64__))
#define FWPY_LIN_SHUFFLE 1
#if defined(__x86_64__)
#include <immintrin.h>
typedef __m128i fwpy_b16;
#define FWPY_LD(p) _mm_loadu_si128((const __m128i *)(p))
#define FWPY_ST(p, v) _mm_storeu_si128((__m128i *)(p), v)
#define FWPY_TBL(v, m) _mm_shuffle_epi8(v, m)
#define FWPY_OR(a, b) _mm_or_si128(a, b)
#define FWPY_SHUFFLE_TARGET __attribute__((target("ssse3")))
#else
#include <arm_neon.h>
typedef uint8x16_t fwpy_b16;
#define FWPY_LD(p) vld1q_u8((const uint8_t *)(p))
#define FWPY_ST(p, v) vst1q_u8((uint8_t *)(p), v)
#define FWPY_TBL(v, m) vqtbl1q_u8(v, m)
#define FWPY_OR(a, b) vorrq_u8(a, b)
#define FWPY_SHUFFLE_TARGET
#endif
FWPY_SHUFFLE_TARGET static void fwpy_lin_shuffle8(const fwpy_lin *j, const uint8_t *const s[8],
                                                  uint16_t *const p[8]) {
    for (int g = 0; g < j->n_chunks; g++) {
        const int nb = j->chunk_nb[g];
        if (nb == 0) { fwpy_lin_scalar8(s, p, j->k0, 8 * g, 8 * g + 8); continue; }
        const long off = j->chunk_off[g];
        const uint8_t *mk = j->chunk_mask + 64L * g;
        const fwpy_b16 m0 = FWPY_LD(mk), m1 = FWPY_LD(mk + 16), m2 = FWPY_LD(mk + 32),
                       m3 = FWPY_LD(mk + 48);
        /* one branch per chunk, not per line: the block count is a loop invariant */
#define FWPY_G1(b) FWPY_TBL(FWPY_LD(b), m0)
#define FWPY_G2(b) FWPY_OR(FWPY_G1(b), FWPY_TBL(FWPY_LD((b) + 16), m1))
#define FWPY_G3(b) FWPY_OR(FWPY_G2(b), FWPY_TBL(FWPY_LD((b) + 32), m2))
#define FWPY_G4(b) FWPY_OR(FWPY_G3(b), FWPY_TBL(FWPY_LD((b) + 48), m3))
#define FWPY_GLINES(G) for (int i = 0; i < 8; i++) FWPY_ST(p[i] + 8 * g, G(s[i] + off))
        switch (nb) {
        case 1: FWPY_GLINES(FWPY_G1); break;
        case 2: FWPY_GLINES(FWPY_G2); break;
        case 3: FWPY_GLINES(FWPY_G3); break;
        default: FWPY_GLINES(FWPY_G4); break;
        }
    }
    fwpy_lin_scalar8(s, p, j->k0, 8 * j->n_chunks, j->height);
}

/* 8-bit without TGC (the common B-mode case): gather and depth blend in one go, straight
   into T, with the multiply-high-round instruction the generic code cannot name (pmulhrsw /
   sqrdmulh: (x w + 2**14) >> 15, exactly FWPY_LERP's rounding, so both paths agree to the
   bit). Saves storing the pairs and reading them back. */
#if defined(__x86_64__)
#define FWPY_BLEND8(acc, wv) _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(acc, _mm_set1_epi16(0xFF)), 7), \
    _mm_mulhrs_epi16(_mm_slli_epi16(_mm_sub_epi16(_mm_srli_epi16(acc, 8), \
                                                  _mm_and_si128(acc, _mm_set1_epi16(0xFF))), 7), wv))
#define FWPY_LDW(p) _mm_loadu_si128((const __m128i *)(p))
#else
#define FWPY_BLEND8(acc, wv) vreinterpretq_u8_s16(vaddq_s16( \
    vshlq_n_s16(vandq_s16(vreinterpretq_s16_u8(acc), vdupq_n_s16(0xFF)), 7), \
    vqrdmulhq_s16(vshlq_n_s16(vsubq_s16( \
        vreinterpretq_s16_u16(vshrq_n_u16(vreinterpretq_u16_u8(acc), 8)), \
        vandq_s16(vreinterpretq_s16_u8(acc), vdupq_n_s16(0xFF))), 7), wv)))
#define FWPY_LDW(p) vld1q_s16(p)
#endif
FWPY_SHUFFLE_TARGET static void fwpy_lin_depth8_fused(const fwpy_lin *j, const uint8_t *const s[8],
                                                      int16_t *const t[8]) {
    const int32_t *k0 = j->k0;
    const int16_t *ws = j->ws;
    for (int g = 0; g < j->n_chunks; g++) {
        const int nb = j->chunk_nb[g];
        if (nb == 0) {
            for (int i = 0; i < 8; i++)
                for (int r = 8 * g; r < 8 * g + 8; r++)
                    t[i][r] = FWPY_LERP(s[i][k0[r]], s[i][k0[r] + 1], ws[r], 128);
            continue;
        }
        const long off = j->chunk_off[g];
        const uint8_t *mk = j->chunk_mask + 64L * g;
        const fwpy_b16 m0 = FWPY_LD(mk), m1 = FWPY_LD(mk + 16), m2 = FWPY_LD(mk + 32),
                       m3 = FWPY_LD(mk + 48);
        const __typeof__(FWPY_LDW(ws)) wv = FWPY_LDW(ws + 8 * g);
#define FWPY_FLINES(G) for (int i = 0; i < 8; i++) FWPY_ST(t[i] + 8 * g, FWPY_BLEND8(G(s[i] + off), wv))
        switch (nb) {
        case 1: FWPY_FLINES(FWPY_G1); break;
        case 2: FWPY_FLINES(FWPY_G2); break;
        case 3: FWPY_FLINES(FWPY_G3); break;
        default: FWPY_FLINES(FWPY_G4); break;
        }
    }
    for (int i = 0; i < 8; i++)
        for (int r = 8 * j->n_chunks; r < j->height; r++)
            t[i][r] = FWPY_LERP(s[i][k0[r]], s[i][k0[r] + 1], ws[r], 128);
}
#endif

/* Pass 1: a block of lines at a time (8-bit: 8, 16-bit: 4), gather the sample pair of every
   output row (k0[r] and the shuffle controls are the same for every line, so one index or
   control load serves the block), then blend each line. */
FWPY_INLINE void fwpy_lin_depth(const fwpy_lin *j) {
    const int h = j->height, last = j->n_used - 1;
    const int32_t *restrict k0 = j->k0;
    uint32_t *restrict P = j->P;
    const int nb = j->wide ? 4 : 8;
    for (int l = 0; l <= last; l += nb) {
        long base[8];
        for (int i = 0; i < 8; i++)  /* a short tail repeats the last line */
            base[i] = (long)(j->line0 + (l + i <= last ? l + i : last)) * j->n_samples;
        if (j->wide) {
            const uint16_t *s = (const uint16_t *)j->src;
            const uint16_t *s0 = s + base[0], *s1 = s + base[1], *s2 = s + base[2], *s3 = s + base[3];
            const int16_t *tab = j->table;
            uint32_t *restrict p0 = P, *restrict p1 = P + h, *restrict p2 = P + 2 * h,
                     *restrict p3 = P + 3 * h;
            for (int r = 0; r < h; r++) {
                const long k = k0[r];
                p0[r] = (uint16_t)tab[s0[k]] | ((uint32_t)(uint16_t)tab[s0[k + 1]] << 16);
                p1[r] = (uint16_t)tab[s1[k]] | ((uint32_t)(uint16_t)tab[s1[k + 1]] << 16);
                p2[r] = (uint16_t)tab[s2[k]] | ((uint32_t)(uint16_t)tab[s2[k + 1]] << 16);
                p3[r] = (uint16_t)tab[s3[k]] | ((uint32_t)(uint16_t)tab[s3[k + 1]] << 16);
            }
        } else {
            const uint8_t *s = (const uint8_t *)j->src;
            const uint8_t *sl[8];
            uint16_t *pl[8];  /* line i's pairs at P + i h */
            for (int i = 0; i < 8; i++) { sl[i] = s + base[i]; pl[i] = (uint16_t *)(P + (long)i * h); }
#ifdef FWPY_LIN_SHUFFLE
            if (j->shuffle && !j->g0) {  /* gather + blend fused, straight into T */
                int16_t *tl[8];  /* a short tail rewrites the last line's row */
                for (int i = 0; i < 8; i++) tl[i] = j->T + (long)(l + i <= last ? l + i : last) * h;
                fwpy_lin_depth8_fused(j, sl, tl);
                continue;
            }
            if (j->shuffle) fwpy_lin_shuffle8(j, sl, pl);
            else
#endif
            fwpy_lin_scalar8(sl, pl, k0, 0, h);
        }
        for (int i = 0; i < nb && l + i <= last; i++)
            fwpy_lin_blend(j, P + (long)i * h, j->T + (long)(l + i) * h, j->ws, j->g0, j->g1);
    }
}

/* One output column (restrict parameters: GCC then drops its per-call alias checks). */
FWPY_INLINE void fwpy_lin_column(const int16_t *restrict A, const int16_t *restrict B,
                                 const int32_t *restrict row_out, int8_t *restrict o,
                                 int h, int w, float ua, float b, int fill) {
    if (!row_out) {
        for (int r = 0; r < h; r++) {
            const int x = FWPY_RINT((float)FWPY_LERP(A[r], B[r], w, 1) * ua + b);
            o[r] = (int8_t)fwpy_clamp(x, -128, 127);
        }
    } else {
        for (int r = 0; r < h; r++) {
            const int x = FWPY_RINT((float)FWPY_LERP(A[r], B[r], w, 1) * ua + b);
            const int code = fwpy_clamp(x, -128, 127);
            o[r] = (int8_t)((code & ~row_out[r]) | (fill & row_out[r]));
        }
    }
}

/* Pass 2: line blend per column (16-bit lanes, as the depth blend), quantize, fill; codes
   into OT[c][r]. */
FWPY_INLINE void fwpy_lin_lines(const fwpy_lin *j) {
    const int h = j->height, fill = j->fill_code;
    const float ua = j->a * (1.0f / 128.0f), b = j->b;
    const int32_t *row_out = j->rows_all_in ? NULL : j->row_out;
    for (int c = 0; c < j->width; c++) {
        int8_t *o = j->OT + (long)c * j->hstride;
        if (!j->col_in[c]) { memset(o, fill, h); continue; }
        fwpy_lin_column(j->T + (long)(j->i0[c] - j->line0) * h, j->T + (long)(j->i1[c] - j->line0) * h,
                        row_out, o, h, j->wl[c], ua, b, fill);
    }
}

typedef uint8_t fwpy_v16 __attribute__((vector_size(16)));
/* Byte interleave of two vectors (punpcklbw/punpckhbw, zip1/zip2). */
#if defined(__clang__)
#define FWPY_ZIP_LO(a, b) __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define FWPY_ZIP_HI(a, b) __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
#else
#define FWPY_ZIP_LO(a, b) __builtin_shuffle(a, b, (fwpy_v16){0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23})
#define FWPY_ZIP_HI(a, b) __builtin_shuffle(a, b, (fwpy_v16){8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31})
#endif

/* Pass 3: out[r][c] = OT[c][r]; 16 x 16 blocks by four rounds of byte interleaves. */
FWPY_INLINE void fwpy_lin_transpose(const fwpy_lin *j) {
    const int h = j->height, w = j->width, hs = j->hstride;
    int c = 0;
    for (; c + 16 <= w; c += 16) {
        int r = 0;
        for (; r + 16 <= h; r += 16) {
            fwpy_v16 x[16], y[16];
            for (int i = 0; i < 16; i++) memcpy(&x[i], j->OT + (long)(c + i) * hs + r, 16);
            for (int s = 0; s < 4; s++) {
                for (int i = 0; i < 8; i++) {
                    y[2 * i] = FWPY_ZIP_LO(x[i], x[i + 8]);
                    y[2 * i + 1] = FWPY_ZIP_HI(x[i], x[i + 8]);
                }
                memcpy(x, y, sizeof x);
            }
            for (int i = 0; i < 16; i++) memcpy(j->out + (long)(r + i) * w + c, &x[i], 16);
        }
        for (; r < h; r++)
            for (int i = 0; i < 16; i++) j->out[(long)r * w + c + i] = j->OT[(long)(c + i) * hs + r];
    }
    for (; c < w; c++)
        for (int r = 0; r < h; r++) j->out[(long)r * w + c] = j->OT[(long)c * hs + r];
}

FWPY_API FWPY_CLONES void fwpy_lin_run(const fwpy_lin *j) {
    fwpy_lin_depth(j);
    fwpy_lin_lines(j);
    fwpy_lin_transpose(j);
}
