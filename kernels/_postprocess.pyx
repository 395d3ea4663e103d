# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Private postprocessing kernels (valid input assumed; postprocess.py validates)."""
from libc.math cimport exp
from libc.stdint cimport int8_t, int32_t, uint8_t
from libc.stdlib cimport free, malloc

ctypedef fused code_t:
    int8_t
    uint8_t


def dequantize(const code_t[::1] q, double scale, int zero_point, float[::1] out):
    """out = float32((q - zero_point) * scale): exact integer subtraction first (int32 is enough
    for 8-bit codes and keeps the loop vectorisable), then one double product rounded once."""
    cdef Py_ssize_t i, n = q.shape[0]
    with nogil:
        for i in range(n):
            out[i] = <float>(<double>(<int>q[i] - zero_point) * scale)


def softmax_rows(const float[:, ::1] x, float[:, ::1] out):
    """Numerically stable softmax of every row (max subtracted, sums in double)."""
    cdef Py_ssize_t r, c, n = x.shape[0], m = x.shape[1]
    cdef float mx
    cdef double s, e
    with nogil:
        for r in range(n):
            mx = x[r, 0]
            for c in range(1, m):
                if x[r, c] > mx:
                    mx = x[r, c]
            s = 0.0
            for c in range(m):
                e = exp(<double>x[r, c] - mx)
                out[r, c] = <float>e
                s += e
            for c in range(m):
                out[r, c] = <float>(out[r, c] / s)


cdef inline int32_t _find(int32_t* parent, int32_t i) noexcept nogil:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


cdef inline void _union(int32_t* parent, int32_t a, int32_t b) noexcept nogil:
    a = _find(parent, a)
    b = _find(parent, b)
    if a < b:
        parent[b] = a  # the root stays the component's first pixel in raster order
    elif b < a:
        parent[a] = b


def largest_component(const uint8_t[:, ::1] mask, uint8_t[:, ::1] out):
    """Keep the largest 4-connected component of mask (ties: first in raster order). Returns its size."""
    cdef Py_ssize_t h = mask.shape[0], w = mask.shape[1], n = h * w
    cdef Py_ssize_t r, c, i
    cdef int32_t best = -1, best_size = 0, root
    cdef int32_t* parent = <int32_t*>malloc(n * sizeof(int32_t) * 2 + 1)
    if parent == NULL:
        raise MemoryError("no memory for connected-component labels")
    cdef int32_t* size = parent + n
    with nogil:
        for r in range(h):
            for c in range(w):
                i = r * w + c
                parent[i] = <int32_t>i
                size[i] = 0
                if mask[r, c]:
                    if c > 0 and mask[r, c - 1]:
                        _union(parent, <int32_t>i, <int32_t>(i - 1))
                    if r > 0 and mask[r - 1, c]:
                        _union(parent, <int32_t>i, <int32_t>(i - w))
        for i in range(n):
            if mask[i // w, i % w]:
                root = _find(parent, <int32_t>i)
                size[root] += 1
        for i in range(n):
            if size[i] > best_size:
                best_size = size[i]
                best = <int32_t>i
        for r in range(h):
            for c in range(w):
                i = r * w + c
                out[r, c] = 1 if (mask[r, c] and _find(parent, <int32_t>i) == best) else 0
    free(parent)
    return best_size
