# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Private separable kernel for linear probes (same contract and output as ``_preprocess``).

On a linear probe the source position of output pixel (r, c) splits exactly: the depth sample
pair and weight depend on the row only, the line pair and weight on the column only (and so does
inside/outside). The fused per-pixel gather of ``_preprocess`` then does 2-3x the necessary
work; here instead, in the frame's own (line-major) orientation:

1. depth pass, per scan line that any column needs: a scalar gather of the sample pair of every
   output row (the only irregular access: ``k0[r]`` is the same for every line), then a
   vectorised blend with the row's depth weight (and TGC gain pair, log table for 16-bit) into
   ``T[line][r]``, int16 display values in units of 1/128;
2. line pass, per output column: a vectorised blend over rows of the two lines' ``T`` rows with
   the column's weight, normalise, round, saturate, fill select, into ``OT[c][r]`` (int8);
3. transpose ``OT`` into the caller's (row-major) buffer in 16 x 16 byte blocks (interleave
   shuffles: punpck on x86, zip on NEON).

Fixed point: weights Q15, capped at 32767 (error <= 2**-15); the depth blend of display values
in units of 1/q runs in 16-bit lanes and rounds to 1/128 display (error <= 1/256); the line
blend likewise (another 1/256), converted once to float32 for the quantization. Total error against the float64 reference stays below 0.02
display levels, as in the fused kernel.
"""
cimport numpy as cnp
from libc.stdint cimport int8_t, int16_t, int32_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc

cnp.import_array()

cdef extern from *:
    """
    #include "fwpy_simd.h"
    #define FWPY_LIN_CLONES FWPY_CLONES
    /* Helpers must inline into the cloned entry point, or they stay baseline (SSE2) code. */
    #define FWPY_LIN_INLINE static inline __attribute__((always_inline))

    typedef struct {
        const void *src;          /* (n_lines, n_samples) uint8 or uint16, C-contiguous */
        int wide;                 /* 1: uint16 samples through table */
        const int16_t *table;     /* uint16 amplitude -> display in units of 1/q (16-bit only) */
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

    FWPY_LIN_INLINE uint16_t fwpy_lin_pair8(const uint8_t *p) {
        uint16_t v; memcpy(&v, p, 2); return v;  /* two adjacent bytes, one load */
    }
    #if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define FWPY_LO8(v) ((v) & 0xFF)
    #define FWPY_HI8(v) ((v) >> 8)
    #else
    #define FWPY_LO8(v) ((v) >> 8)
    #define FWPY_HI8(v) ((v) & 0xFF)
    #endif

    FWPY_LIN_INLINE int fwpy_lin_clamp(int x, int lo, int hi) {
        x = x > lo ? x : lo;
        return x < hi ? x : hi;
    }

    /* d0 + w (d1 - d0) in units of 1/128 display, d in units of 1/q, m = 128 / q, w Q15
       (< 1): all in 16-bit lanes, (d1 - d0) m fits because |d1 - d0| <= 255 q; the product
       rounds like a multiply-high-round (pmulhrsw), within 1/256 display. */
    #define FWPY_LERP(d0, d1, w, m) \
        (int16_t)((d0) * (m) + (((int)(int16_t)(((d1) - (d0)) * (m)) * (w) + 16384) >> 15))

    /* Depth blend of one line's gathered pairs into t (units of 1/128 display). */
    FWPY_LIN_INLINE void fwpy_lin_blend(const fwpy_lin *j, const uint32_t *restrict P,
                                        int16_t *restrict t, const int16_t *restrict ws,
                                        const int16_t *restrict g0, const int16_t *restrict g1) {
        const int h = j->height, q = j->q, hi = 255 * q, m = 128 / q;
        if (!j->wide && g0) {  /* 8-bit with TGC: byte * q + gain, clipped to [0, 255 q] */
            const uint16_t *restrict P8 = (const uint16_t *)P;
            for (int r = 0; r < h; r++) {
                const int d0 = fwpy_lin_clamp(FWPY_LO8(P8[r]) * q + g0[r], 0, hi);
                const int d1 = fwpy_lin_clamp(FWPY_HI8(P8[r]) * q + g1[r], 0, hi);
                t[r] = FWPY_LERP(d0, d1, ws[r], m);
            }
        } else if (g0) {       /* 16-bit: table value + gain, clipped */
            for (int r = 0; r < h; r++) {
                const int d0 = fwpy_lin_clamp((int16_t)(P[r] & 0xFFFF) + g0[r], 0, hi);
                const int d1 = fwpy_lin_clamp((int16_t)(P[r] >> 16) + g1[r], 0, hi);
                t[r] = FWPY_LERP(d0, d1, ws[r], m);
            }
        } else if (j->wide) {  /* 16-bit without TGC */
            for (int r = 0; r < h; r++) {
                const int d0 = fwpy_lin_clamp((int16_t)(P[r] & 0xFFFF), 0, hi);
                const int d1 = fwpy_lin_clamp((int16_t)(P[r] >> 16), 0, hi);
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
    static int fwpy_lin_plan_chunks(fwpy_lin *j) {
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
            for (int i = 0; i < 8; i++) p[i][r] = fwpy_lin_pair8(s[i] + k);
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
    FWPY_LIN_INLINE void fwpy_lin_depth(const fwpy_lin *j) {
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
    FWPY_LIN_INLINE void fwpy_lin_column(const int16_t *restrict A, const int16_t *restrict B,
                                         const int32_t *restrict row_out, int8_t *restrict o,
                                         int h, int w, float ua, float b, int fill) {
        if (!row_out) {
            for (int r = 0; r < h; r++) {
                const int x = FWPY_RINT((float)FWPY_LERP(A[r], B[r], w, 1) * ua + b);
                o[r] = (int8_t)fwpy_lin_clamp(x, -128, 127);
            }
        } else {
            for (int r = 0; r < h; r++) {
                const int x = FWPY_RINT((float)FWPY_LERP(A[r], B[r], w, 1) * ua + b);
                const int code = fwpy_lin_clamp(x, -128, 127);
                o[r] = (int8_t)((code & ~row_out[r]) | (fill & row_out[r]));
            }
        }
    }

    /* Pass 2: line blend per column (16-bit lanes, as the depth blend), quantize, fill; codes
       into OT[c][r]. */
    FWPY_LIN_INLINE void fwpy_lin_lines(const fwpy_lin *j) {
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
    FWPY_LIN_INLINE void fwpy_lin_transpose(const fwpy_lin *j) {
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

    FWPY_LIN_CLONES static void fwpy_lin_run(const fwpy_lin *j) {
        fwpy_lin_depth(j);
        fwpy_lin_lines(j);
        fwpy_lin_transpose(j);
    }
    """
    ctypedef struct fwpy_lin:
        const void* src
        int wide
        const int16_t* table
        long n_samples
        int height
        int width
        int hstride
        int line0
        int n_used
        const int32_t* k0
        const int16_t* ws
        const int16_t* g0
        const int16_t* g1
        const int32_t* row_out
        int rows_all_in
        const int32_t* i0
        const int32_t* i1
        const int16_t* wl
        const uint8_t* col_in
        int q
        int n_chunks
        int shuffle
        int32_t* chunk_off
        int32_t* chunk_nb
        uint8_t* chunk_mask
        float a
        float b
        int fill_code
        int16_t* T
        uint32_t* P
        int8_t* OT
        int8_t* out

    void fwpy_lin_run(const fwpy_lin* j) nogil
    int fwpy_lin_plan_chunks(fwpy_lin* j) nogil


cdef class LinearPlan:
    """Per (geometry, grid, quantization) state of the separable linear path; run() binds a frame.

    Single-threaded by design: the whole pass is a few microseconds, less than an OpenMP fork.
    """
    cdef const int16_t[::1] table, ws, g0, g1, wl
    cdef const int32_t[::1] k0, row_out, i0, i1
    cdef const uint8_t[::1] col_in
    cdef fwpy_lin job
    cdef char* buf
    cdef int n_lines, frame_type

    def __cinit__(self, const int16_t[::1] table, const int32_t[::1] k0, const int16_t[::1] ws,
                  g0, g1, const int32_t[::1] row_out, const int32_t[::1] i0, const int32_t[::1] i1,
                  const int16_t[::1] wl, const uint8_t[::1] col_in, int line0, int n_used,
                  int n_lines, int n_samples, int bits, int q, float a, float b, int fill_code):
        """k0/ws/g0/g1/row_out: per output row; i0/i1/wl/col_in: per output column; q a power
        of two <= 64 (display units of 1/q); lines line0 .. line0 + n_used - 1 are read."""
        cdef int h = k0.shape[0], w = i0.shape[0], hs = (h + 15) & ~15
        self.table, self.k0, self.ws, self.row_out = table, k0, ws, row_out
        self.i0, self.i1, self.wl, self.col_in = i0, i1, wl, col_in
        self.job.table = &self.table[0]
        self.job.k0 = &self.k0[0]
        self.job.ws = &self.ws[0]
        self.job.g0 = NULL
        self.job.g1 = NULL
        if g0 is not None:
            self.g0, self.g1 = g0, g1
            self.job.g0 = &self.g0[0]
            self.job.g1 = &self.g1[0]
        self.job.row_out = &self.row_out[0]
        self.job.rows_all_in = 1
        for i in range(h):
            if row_out[i]:
                self.job.rows_all_in = 0
        self.job.i0 = &self.i0[0]
        self.job.i1 = &self.i1[0]
        self.job.wl = &self.wl[0]
        self.job.col_in = &self.col_in[0]
        self.job.n_samples = n_samples
        self.n_lines = n_lines
        self.frame_type = cnp.NPY_UINT16 if bits == 16 else cnp.NPY_UINT8
        self.job.height, self.job.width, self.job.hstride = h, w, hs
        self.job.line0, self.job.n_used = line0, n_used
        self.job.q = q
        self.job.a, self.job.b, self.job.fill_code = a, b, fill_code
        n_used = n_used if n_used > 0 else 1
        cdef Py_ssize_t nc = h // 8
        self.buf = <char*>malloc(2 * n_used * h + 32 * h + w * hs + 72 * nc + 64)
        if self.buf == NULL:
            raise MemoryError("no memory for the linear-path scratch")
        self.job.T = <int16_t*>self.buf
        self.job.P = <uint32_t*>(self.buf + ((2 * n_used * h + 15) & ~15))
        self.job.OT = <int8_t*>(self.buf + ((2 * n_used * h + 15) & ~15) + 32 * h)
        self.job.chunk_mask = <uint8_t*>(self.job.OT + w * hs)
        self.job.chunk_off = <int32_t*>(self.job.chunk_mask + 64 * nc)
        self.job.chunk_nb = self.job.chunk_off + nc
        self.job.shuffle = fwpy_lin_plan_chunks(&self.job)

    def __dealloc__(self):
        free(self.buf)

    @property
    def shuffle_chunks(self):
        """Chunks of 8 rows gathered by byte shuffles per line (0 when the CPU lacks them)."""
        cdef int g, n = 0
        for g in range(self.job.n_chunks):
            n += self.job.chunk_nb[g] > 0
        return n if self.job.shuffle else 0

    def run_checked(self, samples, out):
        """Run and return True when samples is this geometry's frame (shape, native dtype,
        C-contiguous) and out a writeable C-contiguous int8 (H, W), (1, H, W) or (1, H, W, 1)
        array; otherwise touch nothing and return False, so the wrapper's Python checks name
        the problem. Checking here in C costs ~50 ns instead of the wrapper's ~700 ns, a tenth
        of this kernel."""
        cdef cnp.ndarray s, o
        cdef int nd
        cdef fwpy_lin job = self.job
        if not (cnp.PyArray_Check(samples) and cnp.PyArray_Check(out)):
            return False
        s, o = <cnp.ndarray>samples, <cnp.ndarray>out
        if not (cnp.PyArray_NDIM(s) == 2 and cnp.PyArray_DIM(s, 0) == self.n_lines
                and cnp.PyArray_DIM(s, 1) == job.n_samples and cnp.PyArray_TYPE(s) == self.frame_type
                and cnp.PyArray_ISNOTSWAPPED(s) and cnp.PyArray_IS_C_CONTIGUOUS(s)):
            return False
        nd = cnp.PyArray_NDIM(o)
        if not (cnp.PyArray_TYPE(o) == cnp.NPY_INT8 and cnp.PyArray_IS_C_CONTIGUOUS(o)
                and cnp.PyArray_ISWRITEABLE(o)
                and ((nd == 2 and cnp.PyArray_DIM(o, 0) == job.height and cnp.PyArray_DIM(o, 1) == job.width)
                     or (nd >= 3 and cnp.PyArray_DIM(o, 0) == 1 and cnp.PyArray_DIM(o, 1) == job.height
                         and cnp.PyArray_DIM(o, 2) == job.width
                         and (nd == 3 or (nd == 4 and cnp.PyArray_DIM(o, 3) == 1))))):
            return False
        job.wide = self.frame_type == cnp.NPY_UINT16
        job.src = cnp.PyArray_DATA(s)
        job.out = <int8_t*>cnp.PyArray_DATA(o)
        with nogil:
            fwpy_lin_run(&job)
        return True

    def run(self, cnp.ndarray samples, cnp.ndarray out):
        """samples: (n_lines, n_samples) C-contiguous uint8 or uint16; out: height*width int8.

        Raw array pointers instead of typed memoryviews: acquiring the two buffers cost ~3,700
        instructions per call (callgrind), 3% of this kernel. The checks below keep a wrong call from
        touching memory it does not own; the public wrapper has already checked everything."""
        cdef fwpy_lin job = self.job
        cdef Py_ssize_t need = (<Py_ssize_t>self.n_lines) * job.n_samples
        if not (cnp.PyArray_IS_C_CONTIGUOUS(samples) and cnp.PyArray_IS_C_CONTIGUOUS(out)
                and cnp.PyArray_ISWRITEABLE(out)
                and cnp.PyArray_NBYTES(out) == <Py_ssize_t>job.height * job.width
                and cnp.PyArray_ITEMSIZE(out) == 1
                and cnp.PyArray_SIZE(samples) == need and cnp.PyArray_ITEMSIZE(samples) <= 2):
            raise ValueError("LinearPlan.run: pass the frame (n_lines, n_samples) and a height*width int8 buffer")
        job.wide = cnp.PyArray_ITEMSIZE(samples) == 2
        job.src = cnp.PyArray_DATA(samples)
        job.out = <int8_t*>cnp.PyArray_DATA(out)
        with nogil:
            fwpy_lin_run(&job)
