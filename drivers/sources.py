"""Frame sources for the probe simulator: speckle phantom and a folder of B-mode images.

A source yields ``SourceFrame``s; the simulator stamps sequence numbers and timestamps.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from firmware_py.drivers.phantom import GroundTruth, SpecklePhantom, make_geometry
from firmware_py.geometry import Geometry, ProbeKind

IMAGE_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".pgm")


@dataclass
class SourceFrame:
    samples: np.ndarray  # (n_lines, n_samples), uint8 or uint16, C-contiguous
    geometry: Geometry
    name: str  # what the frame shows: "phantom:3" or the image file name
    truth: GroundTruth | None = None


class PhantomSource:
    """Cycles through ``distinct`` pre-generated speckle frames (generation is slower than a fast
    link; speckle differs frame to frame, the lesions stay put). ``set_depth`` rebuilds them."""

    def __init__(self, geometry: Geometry, *, seed: int = 0, distinct: int = 8, lesions=None):
        self.seed, self.distinct, self.lesions = seed, max(1, distinct), lesions
        self._build(geometry)

    def _build(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self.phantom = SpecklePhantom(geometry, self.lesions)
        rng = np.random.default_rng(self.seed)
        self._frames = [self.phantom.frame(rng) for _ in range(self.distinct)]
        self._i = 0

    def set_depth(self, end_depth_mm: float) -> None:
        self._build(replace(self.geometry, end_depth_mm=end_depth_mm))

    def next(self) -> SourceFrame:
        i = self._i
        self._i = (i + 1) % len(self._frames)
        samples, truth = self._frames[i]
        return SourceFrame(samples, self.geometry, f"phantom:{i}", truth)

    @classmethod
    def from_options(cls, kind: str, n_lines: int, n_samples: int, bits: int, seed: int = 0,
                     distinct: int = 8, end_depth_mm: float | None = None) -> "PhantomSource":
        return cls(make_geometry(kind, n_lines, n_samples, bits, end_depth_mm=end_depth_mm),
                   seed=seed, distinct=distinct)


class ImageFolderSource:
    """Each grayscale image becomes a LINEAR 8-bit frame, n_lines = width, n_samples = height
    (samples = image transposed, each column a contiguous scan line), so the preprocessing
    contract turns it into exactly a bilinear resize of the image. Sorted file names, looping."""

    def __init__(self, folder: str, *, pixel_mm: float = 0.2, recursive: bool = True):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"image folder {folder!r} does not exist; pass a folder of PNG images")
        names = []
        for root, _dirs, files in os.walk(folder):
            for f in files:
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    names.append(os.path.relpath(os.path.join(root, f), folder))
            if not recursive:
                break
        if not names:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder!r}")
        self.folder, self.names, self.pixel_mm = folder, sorted(names), pixel_mm
        self._i = 0
        self._geoms: dict[tuple[int, int], Geometry] = {}

    def geometry_for(self, width: int, height: int) -> Geometry:
        g = self._geoms.get((width, height))
        if g is None:
            g = Geometry(ProbeKind.LINEAR, width, height, 8, 0.0, height * self.pixel_mm,
                         width * self.pixel_mm)
            self._geoms[(width, height)] = g
        return g

    def load(self, name: str) -> np.ndarray:
        try:
            from PIL import Image  # only this source needs Pillow
        except ImportError:
            raise RuntimeError("the image-folder source needs Pillow: pip install pillow") from None

        with Image.open(os.path.join(self.folder, name)) as im:
            img = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.ascontiguousarray(img.T)

    def next(self) -> SourceFrame:
        name = self.names[self._i]
        self._i = (self._i + 1) % len(self.names)
        samples = self.load(name)
        return SourceFrame(samples, self.geometry_for(samples.shape[0], samples.shape[1]), name)

    @property
    def geometry(self) -> Geometry:
        return self.geometry_for(*self.load(self.names[0]).shape)
