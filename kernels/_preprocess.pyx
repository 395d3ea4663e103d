# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Private fused preprocessing kernel: TGC + log/display + bilinear scan conversion + int8 quantize.

Assumes valid input (the public wrapper in preprocessor.py checks everything). One pass over the
output pixels, row by row; per row two loops:

1. a scalar gather loop (gathers cannot vectorise on NEON/SSE2): for each output pixel read the
   four source samples from the LUT's packed (line, sample) index, map each through the display
   table (log compression or identity) and add the per-depth TGC gain, into four float rows;
2. a branch-free loop the compiler vectorises: clip to [0, 255], bilinear blend with the LUT's
   Q15 weights, normalise, round half-to-even and saturate to int8, store into the output.

The row buffers are the only scratch memory (4 x W floats per thread): no full frame is built.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t
from libc.stdlib cimport free, malloc

# Adding then subtracting 1.5 * 2**23 rounds a float32 with |x| < 2**22 half-to-even in the default
# rounding mode, in two vectorisable adds (SSE2 has no round instruction).
cdef float ROUND_MAGIC = 12582912.0
cdef float Q15 = 1.0 / 32768.0


cdef inline void _gather_row_u16(
    const uint16_t* src, const float* table, const float* gain, const int32_t* lut, int width,
    int n_samples, int line_step, float fill, float* b00, float* b01, float* b10, float* b11,
) noexcept nogil:
    cdef int c, e, k
    cdef const uint16_t* p
    cdef float g0, g1
    for c in range(width):
        e = lut[c]
        if e < 0:
            b00[c] = fill; b01[c] = fill; b10[c] = fill; b11[c] = fill
            continue
        k = e & 0xFFFF
        p = src + <Py_ssize_t>(e >> 16) * n_samples + k
        g0 = gain[k]
        g1 = gain[k + 1]
        b00[c] = table[p[0]] + g0
        b01[c] = table[p[1]] + g1
        b10[c] = table[p[line_step]] + g0
        b11[c] = table[p[line_step + 1]] + g1


cdef inline void _gather_row_u8(
    const uint8_t* src, const float* table, const float* gain, const int32_t* lut, int width,
    int n_samples, int line_step, float fill, float* b00, float* b01, float* b10, float* b11,
) noexcept nogil:
    cdef int c, e, k
    cdef const uint8_t* p
    cdef float g0, g1
    for c in range(width):
        e = lut[c]
        if e < 0:
            b00[c] = fill; b01[c] = fill; b10[c] = fill; b11[c] = fill
            continue
        k = e & 0xFFFF
        p = src + <Py_ssize_t>(e >> 16) * n_samples + k
        g0 = gain[k]
        g1 = gain[k + 1]
        b00[c] = table[p[0]] + g0
        b01[c] = table[p[1]] + g1
        b10[c] = table[p[line_step]] + g0
        b11[c] = table[p[line_step + 1]] + g1


cdef inline float _clip255(float x) noexcept nogil:
    x = x if x > 0.0 else 0.0
    return x if x < 255.0 else 255.0


cdef inline void _blend_quantize_row(
    const float* b00, const float* b01, const float* b10, const float* b11,
    const uint16_t* wl, const uint16_t* ws, int width, float a, float b, int8_t* out,
) noexcept nogil:
    cdef int c
    cdef float d00, d01, d10, d11, tl, ts, top, bottom, x
    for c in range(width):
        d00 = _clip255(b00[c])
        d01 = _clip255(b01[c])
        d10 = _clip255(b10[c])
        d11 = _clip255(b11[c])
        ts = ws[c] * Q15
        tl = wl[c] * Q15
        top = d00 + ts * (d01 - d00)
        bottom = d10 + ts * (d11 - d10)
        x = (top + tl * (bottom - top)) * a + b
        x = x if x > -128.0 else -128.0
        x = x if x < 127.0 else 127.0
        x = (x + ROUND_MAGIC) - ROUND_MAGIC
        out[c] = <int8_t>x


cdef void _rows(
    const void* src, bint wide, const float* table, const float* gain, const int32_t* lut,
    const uint16_t* wl, const uint16_t* ws, int r0, int r1, int width, int n_samples,
    int line_step, float fill, float a, float b, int8_t* out, float* buf,
) noexcept nogil:
    cdef int r
    cdef Py_ssize_t o
    cdef float* b00 = buf
    cdef float* b01 = buf + width
    cdef float* b10 = buf + 2 * width
    cdef float* b11 = buf + 3 * width
    for r in range(r0, r1):
        o = <Py_ssize_t>r * width
        if wide:
            _gather_row_u16(<const uint16_t*>src, table, gain, lut + o, width, n_samples,
                            line_step, fill, b00, b01, b10, b11)
        else:
            _gather_row_u8(<const uint8_t*>src, table, gain, lut + o, width, n_samples,
                           line_step, fill, b00, b01, b10, b11)
        _blend_quantize_row(b00, b01, b10, b11, wl + o, ws + o, width, a, b, out + o)


def fused_preprocess(
    samples, const float[::1] table, const float[::1] gain, const int32_t[::1] lut,
    const uint16_t[::1] wl, const uint16_t[::1] ws, int height, int width, int line_step,
    float fill, float a, float b, int8_t[::1] out, int threads,
):
    """out[p] = sat8(rint(bilinear(clip(table[s] + gain[k], 0, 255)) * a + b)) for every pixel p.

    samples: 2-D C-contiguous uint8 or uint16; lut/wl/ws/out: height*width elements.
    """
    cdef const uint8_t[:, ::1] s8
    cdef const uint16_t[:, ::1] s16
    cdef const void* src
    cdef bint wide = samples.dtype.itemsize == 2
    cdef int n_samples = samples.shape[1]
    cdef int r, n_threads = threads if threads > 0 else 1
    cdef float* buf
    if wide:
        s16 = samples
        src = &s16[0, 0]
    else:
        s8 = samples
        src = &s8[0, 0]
    if height < 2:
        n_threads = 1
    # One scratch block for all threads, allocated here so a failure raises instead of
    # silently skipping rows inside the parallel region.
    buf = <float*>malloc(n_threads * 4 * width * sizeof(float))
    if buf == NULL:
        raise MemoryError("no memory for the preprocessing row buffers")
    try:
        if n_threads == 1:
            with nogil:
                _rows(src, wide, &table[0], &gain[0], &lut[0], &wl[0], &ws[0], 0, height, width,
                      n_samples, line_step, fill, a, b, &out[0], buf)
        else:
            with nogil, parallel(num_threads=n_threads):
                for r in prange(height, schedule="static"):
                    _rows(src, wide, &table[0], &gain[0], &lut[0], &wl[0], &ws[0], r, r + 1,
                          width, n_samples, line_step, fill, a, b, &out[0],
                          buf + threadid() * 4 * width)
    finally:
        free(buf)


def median3x3_int8(const int8_t[::1] src, const int32_t[::1] lut, int height, int width,
                   int8_t fill_code, int8_t[::1] out, int threads):
    """3x3 median (border replicated) of src into out; pixels whose LUT entry is < 0 get fill_code."""
    cdef int r, n_threads = threads if threads > 0 else 1
    if n_threads == 1 or height < 2:
        with nogil:
            for r in range(height):
                _median_row(&src[0], &lut[0], height, width, r, fill_code, &out[0])
        return
    with nogil:
        for r in prange(height, schedule="static", num_threads=n_threads):
            _median_row(&src[0], &lut[0], height, width, r, fill_code, &out[0])


cdef inline void _sort2(int8_t* a, int8_t* b) noexcept nogil:
    cdef int8_t lo = a[0] if a[0] < b[0] else b[0]
    cdef int8_t hi = a[0] if a[0] > b[0] else b[0]
    a[0] = lo
    b[0] = hi


cdef inline int8_t _median9(int8_t p0, int8_t p1, int8_t p2, int8_t p3, int8_t p4, int8_t p5,
                            int8_t p6, int8_t p7, int8_t p8) noexcept nogil:
    # Devillard's 19-exchange network (opt_med9): min/max only, so it vectorises across columns.
    _sort2(&p1, &p2); _sort2(&p4, &p5); _sort2(&p7, &p8)
    _sort2(&p0, &p1); _sort2(&p3, &p4); _sort2(&p6, &p7)
    _sort2(&p1, &p2); _sort2(&p4, &p5); _sort2(&p7, &p8)
    _sort2(&p0, &p3); _sort2(&p5, &p8); _sort2(&p4, &p7)
    _sort2(&p3, &p6); _sort2(&p1, &p4); _sort2(&p2, &p5)
    _sort2(&p4, &p7); _sort2(&p4, &p2); _sort2(&p6, &p4)
    _sort2(&p4, &p2)
    return p4


cdef void _median_row(const int8_t* src, const int32_t* lut, int height, int width, int r,
                      int8_t fill_code, int8_t* out) noexcept nogil:
    cdef const int8_t* up = src + <Py_ssize_t>(r - 1 if r > 0 else 0) * width
    cdef const int8_t* mid = src + <Py_ssize_t>r * width
    cdef const int8_t* dn = src + <Py_ssize_t>(r + 1 if r + 1 < height else height - 1) * width
    cdef int8_t* o = out + <Py_ssize_t>r * width
    cdef const int32_t* inside = lut + <Py_ssize_t>r * width
    cdef int c, cl, cr
    if width < 3:
        for c in range(width):
            cl = c - 1 if c > 0 else 0
            cr = c + 1 if c + 1 < width else width - 1
            o[c] = _median9(up[cl], up[c], up[cr], mid[cl], mid[c], mid[cr], dn[cl], dn[c], dn[cr])
    else:
        o[0] = _median9(up[0], up[0], up[1], mid[0], mid[0], mid[1], dn[0], dn[0], dn[1])
        for c in range(1, width - 1):
            o[c] = _median9(up[c - 1], up[c], up[c + 1], mid[c - 1], mid[c], mid[c + 1],
                            dn[c - 1], dn[c], dn[c + 1])
        c = width - 1
        o[c] = _median9(up[c - 1], up[c], up[c], mid[c - 1], mid[c], mid[c], dn[c - 1], dn[c], dn[c])
    for c in range(width):
        if inside[c] < 0:
            o[c] = fill_code
