"""Ultrasound augmentation as TensorFlow batch ops (images in [0, 1], NHWC).

Geometric: horizontal flip (left/right is arbitrary in a B-mode image; up/down is not: depth has
meaning, so no vertical flip), small rotations (probe tilt), random crop-and-zoom (field of view).
Photometric: overall gain, contrast (gamma), and multiplicative speckle noise, the granular
interference pattern of coherent imaging. Masks, when given, follow the geometric transforms only.

Device profile (the `fill`, `sector_p`, `tgc`, `dynamic_range`, `blur` options; issue 16): what
the daemon feeds a model besides a linear probe's full frame. Rotations uncover corners that hold
the daemon's fill value (not a reflection of the image); a convex or phased probe's sector leaves
fill outside it (masks from the daemon's own scan geometry, perturb.sector_bank); TGC is a
depth-dependent display offset; another displayed dynamic range rescales the log-compressed
display about its top (x' = 1 - (1 - x) * DR / DR'); a softer focus is a Gaussian blur. The fill
regions are applied after the photometric changes, so they stay exactly the fill value, as on the
device. With the defaults none of these run, and the augmentation is the one the DDTI tiers were
built with.
"""
from __future__ import annotations

import numpy as np


class UltrasoundAugment:
    def __init__(self, tf, seed: int, rotate_deg: float = 10.0, zoom: float = 0.12, gain: float = 0.2,
                 gamma: float = 0.25, speckle: float = 0.12, fill: float | None = None, sector_p: float = 0.0,
                 tgc: float = 0.0, dynamic_range: float = 0.0, blur: float = 0.0, blur_p: float = 0.5,
                 sector_hw: tuple = (256, 256)):
        L = tf.keras.layers
        self.tf = tf
        # fill None: the original recipe (reflected corners); a number: corners hold that display value.
        self.fill = None if fill is None else float(fill) / 255.0
        mode = "reflect" if fill is None else "constant"
        self.geo = tf.keras.Sequential([
            L.RandomFlip("horizontal", seed=seed),
            L.RandomRotation(rotate_deg / 360.0, fill_mode=mode, fill_value=-1.0, seed=seed + 1),
            L.RandomZoom((-zoom, 0.0), fill_mode="reflect", seed=seed + 2),  # zoom in = random crop
        ])
        self.gain, self.gamma, self.speckle = gain, gamma, speckle
        self.sector_p, self.tgc, self.dr, self.blur, self.blur_p = sector_p, tgc, dynamic_range, blur, blur_p
        self.bank = None
        if sector_p > 0:
            from .perturb import sector_bank

            self.bank = tf.constant(sector_bank(*sector_hw, seed=seed)[..., None])
        self.rng = tf.random.Generator.from_seed(seed + 3)

    def _blur(self, x, n):
        """Gaussian blur, one sigma per batch drawn from [0.3, blur] px, on about blur_p of the images."""
        tf = self.tf
        sigma = self.rng.uniform([], 0.3, self.blur)
        r = int(np.ceil(3 * self.blur))
        t = tf.range(-r, r + 1, dtype=tf.float32)
        k = tf.exp(-0.5 * (t / sigma) ** 2)
        k = k / tf.reduce_sum(k)
        xb = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
        xb = tf.nn.conv2d(xb, tf.reshape(k, [-1, 1, 1, 1]), 1, "VALID")
        xb = tf.nn.conv2d(xb, tf.reshape(k, [1, -1, 1, 1]), 1, "VALID")
        on = self.rng.uniform([n, 1, 1, 1]) < self.blur_p
        return tf.where(on, xb, x)

    def __call__(self, x, mask=None):
        tf = self.tf
        n = tf.shape(x)[0]
        parts = [x] if mask is None else [x, mask]
        if self.fill is not None:
            parts.append(tf.ones_like(x))  # rotated along: 0 where a corner was uncovered
        both = self.geo(tf.concat(parts, axis=-1), training=True)
        x = both[..., :1]
        if mask is not None:
            mask = both[..., 1:2]
        valid = both[..., -1:] > 0.5 if self.fill is not None else None
        if valid is not None:  # before the blur, so no out-of-range corner bleeds into the image
            x = tf.where(valid, x, self.fill)
        if self.blur > 0:
            x = self._blur(x, n)
        g = self.rng.uniform([n, 1, 1, 1], 1.0 - self.gain, 1.0 + self.gain)
        gm = tf.exp(self.rng.uniform([n, 1, 1, 1], -self.gamma, self.gamma))
        x = tf.pow(tf.clip_by_value(x, 1e-4, 1.0), gm) * g
        if self.dr > 0:
            ratio = tf.exp(self.rng.uniform([n, 1, 1, 1], -self.dr, self.dr))
            x = 1.0 - (1.0 - tf.clip_by_value(x, 0.0, 1.0)) * ratio
        if self.tgc > 0:
            # A straight TGC ramp in display units from the top row to the bottom row.
            h = tf.shape(x)[1]
            depth = tf.reshape(tf.linspace(0.0, 1.0, h), [1, -1, 1, 1])
            top = self.rng.uniform([n, 1, 1, 1], -self.tgc, self.tgc)
            bottom = self.rng.uniform([n, 1, 1, 1], -self.tgc, self.tgc)
            x = x + top + (bottom - top) * depth
        # Speckle: multiplicative noise with a per-image strength, as in a fully developed speckle field.
        s = self.rng.uniform([n, 1, 1, 1], 0.0, self.speckle)
        x = x * (1.0 + s * self.rng.normal(tf.shape(x)))
        x = tf.clip_by_value(x, 0.0, 1.0)
        if self.bank is not None:
            pick = self.rng.uniform([n], 0, self.bank.shape[0], dtype=tf.int32)
            sec = tf.image.resize(tf.gather(self.bank, pick), tf.shape(x)[1:3], method="nearest") > 0.5
            on = self.rng.uniform([n, 1, 1, 1]) < self.sector_p
            valid = (valid if valid is not None else tf.ones_like(x, tf.bool)) & (sec | ~on)
        if valid is not None:
            x = tf.where(valid, x, self.fill)
        return x if mask is None else (x, tf.clip_by_value(mask, 0.0, 1.0))
