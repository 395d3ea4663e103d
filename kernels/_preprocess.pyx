# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Private fused preprocessing kernel: TGC + log/display + bilinear scan conversion + int8 quantize.

Assumes valid input (the public wrapper in preprocessor.py checks everything). One pass over the
output pixels, row by row (OpenMP over rows, ``nogil``); per output row:

1. gather (scalar: NEON and SSE2 have no gather instruction): per pixel, the plan's element
   offset gives the upper-left source cell; 8-bit: its two byte pairs go into row arrays (one
   store per pair); 16-bit: its four int16 log-table entries (display values in units of 1/q)
   into four row arrays; no branch (outside pixels read cell 0);
2. blend (vectorised): unpack the pairs, add the pixel's precomputed TGC pair and clip to [0, 255 q] on integers, float
   bilinear with the LUT's Q15 weights, normalise, round half-to-even (cvtps2dq / fcvtns through
   __builtin_irintf), saturate to int8, fill code outside the sector (bit mask, no
   branch), store into the caller's buffer.

The row arrays (8 bytes per output pixel of one row, per thread) are the only scratch memory.

The row loops are C in ``kernels/c/fwpy_fused.c`` rather than Cython: they need ``restrict``
and no float compares (GCC does not if-convert those without -fno-trapping-math, and then the
loop stays scalar). On x86-64 GCC builds them twice (AVX2 and baseline SSE2, chosen at load time
through ``target_clones``, as OpenCV dispatches its own kernels); on aarch64 NEON is the baseline.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int8_t, int16_t, int32_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc

cdef extern from "fwpy_fused.h":
    ctypedef struct fwpy_job:
        const void* src
        int wide
        const int16_t* table
        const uint32_t* gpair
        const int32_t* lut
        const uint16_t* wl
        const uint16_t* ws
        long width
        long n_samples
        long line_step
        int q
        float a
        float b
        int fill_code
        int8_t* out

    void fwpy_rows(const fwpy_job* j, int r0, int r1, char* buf) nogil


cdef class FusedPlan:
    """Everything fixed per (geometry, grid, quantization): run() only binds the frame and output.

    Holding the LUT as typed memoryviews here keeps the per-frame call to two buffer
    acquisitions (the frame and the output) instead of seven.
    """
    cdef const int16_t[::1] table
    cdef const uint32_t[::1] gpair
    cdef const int32_t[::1] lut
    cdef const uint16_t[::1] wl
    cdef const uint16_t[::1] ws
    cdef fwpy_job job
    cdef int height
    cdef int threads
    cdef char* buf

    def __cinit__(self, const int16_t[::1] table, gpair, const int32_t[::1] lut,
                  const uint16_t[::1] wl, const uint16_t[::1] ws, int height, int width,
                  int n_samples, int line_step, int q, float a, float b, int fill_code, int threads):
        """table: uint16 -> int16 display in units of 1/q (16-bit frames); gpair: None or uint32
        per pixel, the int16 TGC pair of its samples k0, k0 + 1 in units of 1/q (low half k0);
        lut: int32 element offsets of the upper-left cells (0 outside); wl/ws: Q15 weights
        (ws 0xFFFF = outside), all height*width;
        code = sat8(rint(bilinear(clip(cell + gain, 0, 255 q)) / q * a + b)), fill_code outside."""
        self.table = table
        self.lut = lut
        self.wl = wl
        self.ws = ws
        self.job.gpair = NULL
        if gpair is not None:
            self.gpair = gpair
            self.job.gpair = &self.gpair[0]
        self.job.table = &self.table[0]
        self.job.lut = &self.lut[0]
        self.job.wl = &self.wl[0]
        self.job.ws = &self.ws[0]
        self.job.width = width
        self.job.n_samples = n_samples
        self.job.line_step = line_step
        self.job.q = q
        self.job.a = a
        self.job.b = b
        self.job.fill_code = fill_code
        self.height = height
        self.threads = threads if threads > 0 and height >= threads else 1
        # Row scratch for every thread, allocated once: a failure raises here, never silently
        # inside the parallel region.
        self.buf = <char*>malloc(self.threads * 12 * width + 64)
        if self.buf == NULL:
            raise MemoryError("no memory for the preprocessing row buffers")

    def __dealloc__(self):
        free(self.buf)

    def run(self, samples, int8_t[::1] out):
        """samples: (n_lines, n_samples) C-contiguous uint8 or uint16; out: height*width int8."""
        cdef const uint8_t[:, ::1] s8
        cdef const uint16_t[:, ::1] s16
        cdef fwpy_job job = self.job
        cdef int r, n = self.threads, h = self.height
        cdef long w = job.width
        if samples.dtype.itemsize == 2:
            s16 = samples
            job.src = &s16[0, 0]
            job.wide = 1
        else:
            s8 = samples
            job.src = &s8[0, 0]
            job.wide = 0
        job.out = &out[0]
        if n == 1:
            with nogil:
                fwpy_rows(&job, 0, h, self.buf)
        else:
            with nogil, parallel(num_threads=n):
                for r in prange(n, schedule="static", chunksize=1):  # one row block per thread
                    fwpy_rows(&job, (h * r) // n, (h * (r + 1)) // n, self.buf + threadid() * 12 * w)


def median3x3_int8(const int8_t[::1] src, const uint16_t[::1] ws, int height, int width,
                   int8_t fill_code, int8_t[::1] out, int threads):
    """3x3 median (border replicated) of src into out; outside-sector pixels get fill_code."""
    cdef int r, n_threads = threads if threads > 0 else 1
    if n_threads == 1 or height < 2:
        with nogil:
            for r in range(height):
                _median_row(&src[0], &ws[0], height, width, r, fill_code, &out[0])
        return
    with nogil:
        for r in prange(height, schedule="static", num_threads=n_threads):
            _median_row(&src[0], &ws[0], height, width, r, fill_code, &out[0])


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


cdef void _median_row(const int8_t* src, const uint16_t* ws, int height, int width, int r,
                      int8_t fill_code, int8_t* out) noexcept nogil:
    cdef const int8_t* up = src + <Py_ssize_t>(r - 1 if r > 0 else 0) * width
    cdef const int8_t* mid = src + <Py_ssize_t>r * width
    cdef const int8_t* dn = src + <Py_ssize_t>(r + 1 if r + 1 < height else height - 1) * width
    cdef int8_t* o = out + <Py_ssize_t>r * width
    cdef const uint16_t* w = ws + <Py_ssize_t>r * width
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
        o[c] = fill_code if w[c] == 0xFFFF else o[c]
