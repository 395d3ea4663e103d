"""Bounds check of a .tflite flatbuffer before the interpreter sees it.

tflite_runtime 2.14 builds its model without the flatbuffer verifier: a truncated or corrupt file
(say a broken build that was signed anyway) makes it read past the buffer and crash the process
with SIGSEGV, or not, depending on what lies beyond. This walks the parts of the TFLite schema the
interpreter dereferences (tensorflow/lite/schema/schema.fbs: Model, SubGraph, Tensor, Operator,
OperatorCode, Buffer) and refuses any offset or vector that leaves the file, in one line.
"""
from __future__ import annotations

import struct

from firmware_py.errors import ModelError

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")


class _Bad(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.n = len(data)

    def need(self, pos: int, size: int) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise _Bad(f"{size} bytes at offset {pos} lie outside the {self.n}-byte file")

    def u32(self, pos: int) -> int:
        self.need(pos, 4)
        return _U32.unpack_from(self.d, pos)[0]

    def table(self, pos: int) -> tuple[int, int, int]:
        """(table position, vtable position, vtable size)."""
        self.need(pos, 4)
        vt = pos - _I32.unpack_from(self.d, pos)[0]
        self.need(vt, 4)
        vt_size, obj_size = _U16.unpack_from(self.d, vt)[0], _U16.unpack_from(self.d, vt + 2)[0]
        if vt_size < 4 or vt_size % 2:
            raise _Bad(f"vtable at {vt} has size {vt_size}")
        self.need(vt, vt_size)
        self.need(pos, max(obj_size, 4))
        return pos, vt, vt_size

    def field(self, t: tuple[int, int, int], idx: int) -> int | None:
        pos, vt, vt_size = t
        slot = 4 + 2 * idx
        if slot + 2 > vt_size:
            return None
        off = _U16.unpack_from(self.d, vt + slot)[0]
        return pos + off if off else None

    def indirect(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, t, idx: int, elem: int) -> tuple[int, int]:
        """(start, length) of a vector field, or (0, 0) when absent; bounds-checked."""
        f = self.field(t, idx)
        if f is None:
            return 0, 0
        v = self.indirect(f)
        length = self.u32(v)
        self.need(v + 4, length * elem)
        return v + 4, length

    def tables(self, t, idx: int):
        start, length = self.vector(t, idx, 4)
        for i in range(length):
            yield self.table(self.indirect(start + 4 * i))

    def subtable(self, t, idx: int) -> tuple[int, int, int] | None:
        f = self.field(t, idx)
        return None if f is None else self.table(self.indirect(f))

    def scalar(self, t, idx: int, fmt: struct.Struct, default: int = 0) -> int:
        f = self.field(t, idx)
        if f is None:
            return default
        self.need(f, fmt.size)
        return fmt.unpack_from(self.d, f)[0]

    def indices(self, t, idx: int, limit: int, what: str) -> list[int]:
        """An int32 vector whose entries must be -1 (optional) or below ``limit``."""
        start, length = self.vector(t, idx, 4)
        out = [_I32.unpack_from(self.d, start + 4 * i)[0] for i in range(length)]
        for v in out:
            if not -1 <= v < limit:
                raise _Bad(f"{what} index {v} out of range (0..{limit - 1})")
        return out


def _walk(r: _Reader) -> None:
    if r.n < 8 or r.d[4:8] != b"TFL3":
        raise _Bad("no TFL3 file identifier (not a TFLite model)")
    model = r.table(r.indirect(0))
    for code in r.tables(model, 1):  # operator_codes
        r.vector(code, 1, 1)  # custom_code string
    n_buffers = 0
    for buf in r.tables(model, 4):  # buffers
        n_buffers += 1
        r.vector(buf, 0, 1)  # data
        off_f, size_f = r.field(buf, 1), r.field(buf, 2)
        if off_f is not None and size_f is not None:  # >2 GB models keep data after the flatbuffer
            r.need(off_f, 8), r.need(size_f, 8)
            off, size = _U64.unpack_from(r.d, off_f)[0], _U64.unpack_from(r.d, size_f)[0]
            if off > 1:
                r.need(off, size)
    n_codes = sum(1 for _ in r.tables(model, 1))
    r.vector(model, 3, 1)  # description string
    tensors_per_subgraph = []
    for sg in r.tables(model, 2):  # subgraphs
        n_tensors = 0
        for tensor in r.tables(sg, 0):
            n_tensors += 1
            _, rank = r.vector(tensor, 0, 4)  # shape
            bf = r.field(tensor, 2)
            if bf is not None and r.u32(bf) >= max(n_buffers, 1):
                raise _Bad(f"tensor refers to buffer {r.u32(bf)} of {n_buffers}")
            r.vector(tensor, 3, 1)  # name string
            r.vector(tensor, 7, 4)  # shape_signature
            q = r.subtable(tensor, 4)  # quantization
            if q is not None:
                r.vector(q, 0, 4), r.vector(q, 1, 4)  # min, max
                _, n_scales = r.vector(q, 2, 4)
                r.vector(q, 3, 8)  # zero_point (int64)
                r.subtable(q, 5)  # details
                dim = r.scalar(q, 6, _I32)
                if n_scales > 1 and not 0 <= dim < rank:  # per-channel along a dimension the shape has
                    raise _Bad(f"tensor quantized along dimension {dim} of a rank-{rank} shape")
            sp = r.subtable(tensor, 6)  # sparsity
            if sp is not None:
                r.vector(sp, 0, 4), r.vector(sp, 1, 4), list(r.tables(sp, 2))
        for idx in (1, 2):  # inputs, outputs
            r.indices(sg, idx, n_tensors, "subgraph input/output")
        for op in r.tables(sg, 3):  # operators
            code = r.scalar(op, 0, _U32)
            if code >= n_codes:
                raise _Bad(f"operator uses operator code {code} of {n_codes}")
            for idx in (1, 2, 8):  # inputs, outputs, intermediates
                r.indices(op, idx, n_tensors, "operator tensor")
            r.vector(op, 5, 1), r.vector(op, 7, 1)  # custom_options, mutating_variable_inputs
            r.subtable(op, 4), r.subtable(op, 12)  # builtin_options, builtin_options_2
        r.vector(sg, 4, 1)  # name string
        tensors_per_subgraph.append(n_tensors)
    if not tensors_per_subgraph:
        raise _Bad("no subgraph")
    for meta in r.tables(model, 6):  # metadata
        r.vector(meta, 0, 1)
        if r.scalar(meta, 1, _U32) >= max(n_buffers, 1):
            raise _Bad("metadata refers to a buffer the file does not have")
    for sig in r.tables(model, 7):  # signature_defs
        r.vector(sig, 2, 1), r.vector(sig, 3, 1)  # signature_key, deprecated_tag
        sg_index = r.scalar(sig, 4, _U32)
        if sg_index >= len(tensors_per_subgraph):
            raise _Bad(f"signature refers to subgraph {sg_index} of {len(tensors_per_subgraph)}")
        for idx in (0, 1):  # inputs, outputs: TensorMap(name, tensor_index)
            for tmap in r.tables(sig, idx):
                r.vector(tmap, 0, 1)
                if r.scalar(tmap, 1, _U32) >= tensors_per_subgraph[sg_index]:
                    raise _Bad("signature refers to a tensor its subgraph does not have")


def check_flatbuffer(data: bytes, path: str) -> None:
    try:
        _walk(_Reader(data))
    except _Bad as e:
        raise ModelError(f"{path}: corrupt or truncated TFLite flatbuffer ({e}); rebuild the model") from None
