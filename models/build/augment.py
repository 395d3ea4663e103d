"""Ultrasound augmentation as TensorFlow batch ops (images in [0, 1], NHWC).

Geometric: horizontal flip (left/right is arbitrary in a B-mode image; up/down is not: depth has
meaning, so no vertical flip), small rotations (probe tilt), random crop-and-zoom (field of view).
Photometric: overall gain, contrast (gamma), and multiplicative speckle noise, the granular
interference pattern of coherent imaging. Masks, when given, follow the geometric transforms only.
"""
from __future__ import annotations


class UltrasoundAugment:
    def __init__(self, tf, seed: int, rotate_deg: float = 10.0, zoom: float = 0.12, gain: float = 0.2,
                 gamma: float = 0.25, speckle: float = 0.12):
        L = tf.keras.layers
        self.tf = tf
        self.geo = tf.keras.Sequential([
            L.RandomFlip("horizontal", seed=seed),
            L.RandomRotation(rotate_deg / 360.0, fill_mode="reflect", seed=seed + 1),
            L.RandomZoom((-zoom, 0.0), fill_mode="reflect", seed=seed + 2),  # zoom in = random crop
        ])
        self.gain, self.gamma, self.speckle = gain, gamma, speckle
        self.rng = tf.random.Generator.from_seed(seed + 3)

    def __call__(self, x, mask=None):
        tf = self.tf
        n = tf.shape(x)[0]
        if mask is not None:
            both = self.geo(tf.concat([x, mask], axis=-1), training=True)
            x, mask = both[..., :1], both[..., 1:]
        else:
            x = self.geo(x, training=True)
        g = self.rng.uniform([n, 1, 1, 1], 1.0 - self.gain, 1.0 + self.gain)
        gm = tf.exp(self.rng.uniform([n, 1, 1, 1], -self.gamma, self.gamma))
        x = tf.pow(tf.clip_by_value(x, 1e-4, 1.0), gm) * g
        # Speckle: multiplicative noise with a per-image strength, as in a fully developed speckle field.
        s = self.rng.uniform([n, 1, 1, 1], 0.0, self.speckle)
        x = x * (1.0 + s * self.rng.normal(tf.shape(x)))
        x = tf.clip_by_value(x, 0.0, 1.0)
        return x if mask is None else (x, tf.clip_by_value(mask, 0.0, 1.0))
