"""``Geometry``, the value every frame carries, and the registry of probe kinds.

``Geometry(kind, ...)`` returns an instance of the class registered for ``kind`` (see
``firmware_py/geometry/__init__.py`` for the table); that class owns everything that depends on
the probe's shape, so no other module branches on the kind:

* validation (``_shape_problems``) and bounds (``bounding_box_mm``);
* the forward map ``forward_mm`` (scan-line coordinates -> body position; the phantom uses it);
* the inverse map ``inverse_mm`` (body position -> scan-line coordinates; the scan-conversion
  reference and so the lookup tables use it);
* the lookup-table plan the kernels may use (``separable``);
* the kind-specific part of the frame sub-header (``SUBHEADER``, ``encode_subheader``,
  ``decode_subheader``; drivers/protocol.py writes and reads the common fields around it).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Geometry:
    """Immutable and hashable, so it can key the scan-conversion lookup-table cache.

    Conventions shared by every kind (see docs/architecture.md, "Geometry"):

    * A frame's samples are an array of shape ``(n_lines, n_samples)``: each scan line is
      contiguous, as it leaves the beamformer.
    * Cell centres: scan line ``i`` and depth sample ``k`` sit at the centre of their cell,
      ``(i + 0.5)`` and ``(k + 0.5)`` cells from the first edge. Bilinear scan conversion with
      these centres is exactly a half-pixel-centred bilinear resize for a linear probe, so a
      B-mode image replayed as a linear frame lands on the grid a model was trained on.
    * Lateral coordinate of line ``i``: ``-width/2 + (i + 0.5) * width / n_lines``, in the
      kind's lateral unit (mm for linear, degrees for sector probes; see each class).
    * Depth of sample ``k``: ``start + (k + 0.5) * (end - start) / n_samples`` (mm).
    * ``tgc_db``: gains in dB at points spread evenly from start to end depth (first point at
      ``start``, last at ``end``), interpolated linearly per sample; ``None`` means 0 dB.

    A kind class may add dataclass fields of its own after ``tgc_db`` (and encode them in its
    sub-header); the built-in kinds use ``width`` and ``radius_mm`` only.
    """

    kind: int  # protocol kind code; a ProbeKind member for the kinds in the table
    n_lines: int
    n_samples: int
    bits: int  # 8 = log-compressed B-mode, 16 = linear envelope amplitude
    start_depth_mm: float
    end_depth_mm: float
    width: float  # lateral extent in the kind's lateral unit (linear: mm; convex/phased: degrees)
    radius_mm: float = 0.0  # convex only: radius of the array's curvature
    tgc_db: tuple[float, ...] | None = None

    # Class attributes, not fields (unannotated, so not in __dataclass_fields__). Each kind sets
    # ``kind_name`` ("linear": its name in configuration, CLI choices and messages) and
    # ``typical`` (make_geometry's defaults: end_depth_mm, width, radius_mm).
    # True when the inverse map is separable: the line coordinate depends on x only and the depth
    # on z only, so the kernels may interpolate rows and columns independently (a cheaper plan).
    separable = False
    # Lateral offset of the phantom's side lesions, as a fraction of the bounding box width:
    # apart enough to tell them apart, near enough the centre line to stay inside the image.
    phantom_lesion_offset = 0.12
    # Kind-specific fields of the frame sub-header, after the common ones (docs/protocol.md).
    # Keep its size a multiple of 8 so that the samples stay 8-byte aligned.
    SUBHEADER = struct.Struct("<2d")  # width, radius_mm

    def __new__(cls, *args, **kwargs):
        if cls is Geometry:  # Geometry(kind, ...) builds the kind's own class
            cls = geometry_class(args[0] if args else kwargs.get("kind"))
        return object.__new__(cls)

    def __post_init__(self) -> None:
        # Store the registered token (the ProbeKind member) whatever int was passed.
        geometry_class(self.kind)  # raises, naming the known kinds, for an unregistered code
        object.__setattr__(self, "kind", _KINDS[int(self.kind)][0])
        problems = self.problems()
        if problems:
            raise ValueError(f"invalid probe geometry: {problems[0]}")

    # ------------------------------------------------------------------ validation and bounds

    def problems(self) -> list[str]:
        """Reasons this geometry cannot be imaged; empty when it is valid."""
        out = []
        if geometry_class(self.kind) is not type(self):
            out.append(f"kind {self.kind!r} does not match {type(self).__name__}: build it as Geometry(kind, ...)")
        if not 1 <= self.n_lines <= 4096:
            out.append(f"n_lines={self.n_lines} outside 1..4096")
        if not 2 <= self.n_samples <= 65536:
            out.append(f"n_samples={self.n_samples} outside 2..65536")
        if self.bits not in (8, 16):
            out.append(f"bits={self.bits}; only 8 (B-mode) or 16 (envelope) are supported")
        if not (math.isfinite(self.start_depth_mm) and math.isfinite(self.end_depth_mm)):
            out.append("start/end depth must be finite")
        elif not 0.0 <= self.start_depth_mm < self.end_depth_mm:
            out.append(
                f"depth range {self.start_depth_mm}..{self.end_depth_mm} mm must satisfy 0 <= start < end"
            )
        out += self._shape_problems()
        if self.tgc_db is not None:
            if not 1 <= len(self.tgc_db) <= 256:
                out.append(f"TGC curve has {len(self.tgc_db)} points; give 1..256")
            elif not all(math.isfinite(g) and -120 <= g <= 120 for g in self.tgc_db):
                out.append("TGC gains must be finite and within +-120 dB")
        return out

    def _shape_problems(self) -> list[str]:
        """The kind's own checks of width, radius and any fields it adds."""
        raise NotImplementedError

    def bounding_box_mm(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, z_min, z_max) of the imaged region; the output grid spans it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ maps

    def forward_mm(self, lateral: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, z) in mm of the points at ``lateral`` (the kind's unit) and ``depth`` mm below the
        element surface; the arrays broadcast against each other."""
        raise NotImplementedError

    def inverse_mm(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lateral, depth) of the points at (x, z) mm: the inverse of ``forward_mm``."""
        raise NotImplementedError

    def line_laterals(self) -> np.ndarray:
        """Lateral coordinate of every scan line's centre, shape (n_lines,)."""
        i = np.arange(self.n_lines)
        return -self.width / 2 + (i + 0.5) * self.width / self.n_lines

    def sample_depths_mm(self) -> np.ndarray:
        """Depth in mm of every sample's centre, shape (n_samples,)."""
        k = np.arange(self.n_samples)
        return self.start_depth_mm + (k + 0.5) * (self.end_depth_mm - self.start_depth_mm) / self.n_samples

    # ------------------------------------------------------------------ frame sub-header

    def encode_subheader(self) -> bytes:
        """This kind's fields of the frame sub-header (``SUBHEADER.size`` bytes)."""
        return self.SUBHEADER.pack(self.width, self.radius_mm)

    @classmethod
    def decode_subheader(cls, buf, offset: int) -> dict:
        """Constructor keywords of this kind's sub-header fields at ``offset`` in ``buf``."""
        width, radius = cls.SUBHEADER.unpack_from(buf, offset)
        return {"width": width, "radius_mm": radius}

    # ------------------------------------------------------------------ derived sizes

    @property
    def sample_spacing_mm(self) -> float:
        return (self.end_depth_mm - self.start_depth_mm) / self.n_samples

    @property
    def bytes_per_sample(self) -> int:
        return self.bits // 8

    @property
    def payload_bytes(self) -> int:
        return self.n_lines * self.n_samples * self.bytes_per_sample

    def pixel_size_mm(self, out_h: int, out_w: int) -> tuple[float, float]:
        """(dz, dx) of one output pixel when the bounding box is stretched to out_h x out_w."""
        x0, x1, z0, z1 = self.bounding_box_mm()
        return ((z1 - z0) / out_h, (x1 - x0) / out_w)


# ---------------------------------------------------------------------------------- registry

# protocol kind code -> (the token stored in Geometry.kind, the class). The code is the frame
# sub-header's kind byte and the capabilities mask's bit, so it is limited to 0..7.
_KINDS: dict[int, tuple[int, type[Geometry]]] = {}


def register_kind(kind: int, cls: type[Geometry]) -> None:
    """Make ``Geometry(kind, ...)``, the frame parser and the simulator know ``cls``."""
    code = int(kind)
    if not 0 <= code <= 7:
        raise ValueError(f"probe kind code {code} outside 0..7 (one bit of the capabilities mask each)")
    if code in _KINDS:
        raise ValueError(f"probe kind code {code} is already {_KINDS[code][1].__name__}: pick a free code")
    if not (isinstance(cls, type) and issubclass(cls, Geometry)):
        raise TypeError(f"{cls!r} is not a Geometry subclass: derive the kind's class from Geometry")
    _KINDS[code] = (kind, cls)


def kind_names() -> tuple[str, ...]:
    """The name of every registered kind, in code order."""
    return tuple(_KINDS[code][1].kind_name for code in sorted(_KINDS))


def registered_kinds() -> tuple[int, ...]:
    """The token of every registered kind, in code order."""
    return tuple(_KINDS[code][0] for code in sorted(_KINDS))


def kind_named(name: str) -> int:
    """The kind token of a kind name ("convex" -> ProbeKind.CONVEX)."""
    for code in sorted(_KINDS):
        kind, cls = _KINDS[code]
        if cls.kind_name == name.lower():
            return kind
    raise ValueError(f"unknown probe geometry {name!r}; use {', '.join(kind_names())}")


def geometry_class(kind: int) -> type[Geometry]:
    """The class of a kind, by protocol code (int or ProbeKind)."""
    try:
        return _KINDS[int(kind)][1]
    except (KeyError, TypeError, ValueError):
        known = ", ".join(f"{code} {_KINDS[code][1].kind_name}" for code in sorted(_KINDS))
        raise ValueError(f"invalid probe geometry: kind {kind!r} is not one of {known}") from None
