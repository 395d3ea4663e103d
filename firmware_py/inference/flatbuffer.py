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
    subgraphs = 0
    for sg in r.tables(model, 2):  # subgraphs
        subgraphs += 1
        n_tensors = 0
        for tensor in r.tables(sg, 0):
            n_tensors += 1
            r.vector(tensor, 0, 4)  # shape
            bf = r.field(tensor, 2)
            if bf is not None and r.u32(bf) >= max(n_buffers, 1):
                raise _Bad(f"tensor refers to buffer {r.u32(bf)} of {n_buffers}")
        for idx in (1, 2):  # inputs, outputs
            start, length = r.vector(sg, idx, 4)
            for i in range(length):
                if not -1 <= _I32.unpack_from(r.d, start + 4 * i)[0] < n_tensors:
                    raise _Bad("subgraph input/output index out of range")
        for op in r.tables(sg, 3):  # operators
            r.vector(op, 1, 4), r.vector(op, 2, 4), r.vector(op, 5, 1)
    if subgraphs == 0:
        raise _Bad("no subgraph")


def check_flatbuffer(data: bytes, path: str) -> None:
    try:
        _walk(_Reader(data))
    except _Bad as e:
        raise ModelError(f"{path}: corrupt or truncated TFLite flatbuffer ({e}); rebuild the model") from None
