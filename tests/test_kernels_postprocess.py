"""Postprocessing kernels vs their NumPy twins: dequantize, softmax, masks, components, area."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_py.geometry import Geometry, ProbeKind
from firmware_py.kernels import dequantize, largest_component, mask_area_mm2, mask_from_output, reference, softmax


def test_dequantize_matches_int64_reference_for_every_code():
    codes = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    for scale, zp in ((0.00390625, -128), (0.1173, 17), (1e-5, 127)):
        got = dequantize(codes, scale, zp)
        assert got.dtype == np.float32 and got.shape == codes.shape
        np.testing.assert_array_equal(got, reference.dequantize(codes, scale, zp))
    u = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(dequantize(u, 0.5, 128), (u.astype(np.int64) - 128) * np.float32(0.5))


def test_dequantize_rejects_float_and_bad_parameters():
    with pytest.raises(TypeError, match="int8"):
        dequantize(np.zeros(3, np.float32), 0.1, 0)
    with pytest.raises(ValueError, match="scale"):
        dequantize(np.zeros(3, np.int8), 0.0, 0)
    with pytest.raises(TypeError, match="zero point"):
        dequantize(np.zeros(3, np.int8), 0.1, 0.5)


def test_softmax_matches_reference_and_is_stable():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 30, (5, 7, 3)).astype(np.float32)
    for axis in (-1, 0, 1):
        got = softmax(x, axis=axis)
        np.testing.assert_allclose(got, reference.softmax(x, axis=axis), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-6)
    big = softmax(np.array([1000.0, 999.0, -1000.0], np.float32))  # no overflow
    np.testing.assert_allclose(big, [0.7310586, 0.2689414, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        softmax(np.array([np.nan, 1.0]))


def test_mask_from_output_threshold_and_argmax():
    rng = np.random.default_rng(1)
    one = rng.integers(-128, 128, (1, 40, 30, 1), dtype=np.int8)
    m = mask_from_output(one, scale=1 / 256, zero_point=-128, threshold=0.5)
    assert m.shape == (40, 30) and m.dtype == bool
    np.testing.assert_array_equal(m, one[0, :, :, 0] >= 0)  # (q + 128) / 256 >= 0.5  <=>  q >= 0
    np.testing.assert_array_equal(m, reference.mask_from_output(one, scale=1 / 256, zero_point=-128))
    np.testing.assert_array_equal(m, mask_from_output(one[:, :, :, 0], scale=1 / 256, zero_point=-128))
    multi = rng.integers(-128, 128, (1, 40, 30, 3), dtype=np.int8)
    m3 = mask_from_output(multi, scale=0.1, zero_point=3)
    np.testing.assert_array_equal(m3, np.argmax(multi[0], axis=-1) != 0)
    np.testing.assert_array_equal(m3, reference.mask_from_output(multi, scale=0.1, zero_point=3))
    with pytest.raises(TypeError, match="int8"):
        mask_from_output(one.astype(np.float32), scale=0.1, zero_point=0)
    with pytest.raises(ValueError, match="batch 1"):
        mask_from_output(np.zeros((2, 4, 4, 1), np.int8), scale=0.1, zero_point=0)


def test_largest_component_matches_reference():
    rng = np.random.default_rng(2)
    for density in (0.3, 0.5, 0.6):
        mask = rng.random((37, 41)) < density
        got = largest_component(mask)
        np.testing.assert_array_equal(got, reference.largest_component(mask))
        assert got.sum() > 0 and not (got & ~mask).any()


def test_largest_component_shapes():
    mask = np.zeros((8, 10), bool)
    mask[1:3, 1:3] = True  # 4 pixels
    mask[5:8, 4:9] = True  # 15 pixels
    mask[0, 9] = True
    mask[4, 8] = True  # touches the big one (4-connected)
    expected = np.zeros_like(mask)
    expected[5:8, 4:9] = True
    expected[4, 8] = True
    np.testing.assert_array_equal(largest_component(mask), expected)
    diagonal = np.eye(5, dtype=bool)  # 8-connected only: every pixel its own component; first wins
    first = np.zeros_like(diagonal)
    first[0, 0] = True
    np.testing.assert_array_equal(largest_component(diagonal), first)
    np.testing.assert_array_equal(largest_component(diagonal), reference.largest_component(diagonal))
    assert not largest_component(np.zeros((3, 3), bool)).any()
    spiral = np.array([[1, 1, 1, 1], [0, 0, 0, 1], [1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(largest_component(spiral), spiral)  # U-shaped merge of labels
    with pytest.raises(ValueError, match="2-D"):
        largest_component(np.zeros((1, 3, 3), bool))


def test_mask_area_mm2_from_geometry():
    g = Geometry(ProbeKind.LINEAR, 128, 512, 8, 10.0, 50.0, 38.0)
    mask = np.zeros((100, 95), bool)
    mask[10:30, 20:40] = True  # 400 pixels of (40/100) mm x (38/95) mm
    assert mask_area_mm2(mask, g) == pytest.approx(400 * 0.4 * 0.4)
    assert mask_area_mm2(mask, g) == pytest.approx(reference.mask_area_mm2(mask, g))
    convex = Geometry(ProbeKind.CONVEX, 128, 512, 8, 0.0, 100.0, 60.0, 50.0)
    x0, x1, z0, z1 = convex.bounding_box_mm()
    full = np.ones((64, 64), bool)
    assert mask_area_mm2(full, convex) == pytest.approx((x1 - x0) * (z1 - z0))
    with pytest.raises(TypeError, match="Geometry"):
        mask_area_mm2(mask, None)
