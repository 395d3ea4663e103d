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

The passes are C in ``kernels/c/fwpy_linear.c`` (restrict, vector extensions, pshufb / tbl
intrinsics); this module holds the per-geometry plan and the Python entry points.
"""
cimport numpy as cnp
from libc.stdint cimport int8_t, int16_t, int32_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc

cnp.import_array()

cdef extern from "fwpy_linear.h":
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
