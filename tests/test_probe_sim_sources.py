"""Speckle phantom physics and ground truth; image-folder source layout."""
import math
import os

import numpy as np
import pytest

from conftest_drivers import DATA
from firmware_py.drivers.phantom import Lesion, SpecklePhantom, cell_positions_mm, make_geometry
from firmware_py.drivers.sources import ImageFolderSource, PhantomSource
from firmware_py.geometry import ProbeKind


def test_background_speckle_is_rayleigh():
    g = make_geometry("linear", 128, 512, 16)
    ph = SpecklePhantom(g, lesions=(), attenuation_db_cm_mhz=0.0, smooth_axial=1, smooth_lateral=1)
    env = ph.envelope(np.random.default_rng(0)).astype(np.float64)
    # Rayleigh: mean/std = sqrt(pi / (4 - pi)) ~ 1.913; P(a > 2 mean) = exp(-pi) ~ 0.043
    assert env.mean() / env.std() == pytest.approx(math.sqrt(math.pi / (4 - math.pi)), rel=0.03)
    assert (env > 2 * env.mean()).mean() == pytest.approx(math.exp(-math.pi), rel=0.1)
    # smoothing keeps the statistics fully developed (still complex Gaussian) but correlates cells
    ph2 = SpecklePhantom(g, lesions=(), attenuation_db_cm_mhz=0.0)
    env2 = ph2.envelope(np.random.default_rng(0)).astype(np.float64)
    assert env2.mean() / env2.std() == pytest.approx(1.913, rel=0.05)
    axial_corr = np.corrcoef(env2[:, :-1].ravel(), env2[:, 1:].ravel())[0, 1]
    assert axial_corr > 0.3


def test_attenuation_darkens_with_depth():
    g = make_geometry("linear", 64, 400, 16, end_depth_mm=80.0)
    ph = SpecklePhantom(g, lesions=(), attenuation_db_cm_mhz=0.5, frequency_mhz=5.0)
    env = ph.envelope(np.random.default_rng(1)).astype(np.float64)
    shallow, deep = env[:, :40].mean(), env[:, -40:].mean()
    # 0.5 dB/cm/MHz * 5 MHz * 2 ways * 7.2 cm between the two bands' centres = 36 dB
    assert 20 * math.log10(shallow / deep) == pytest.approx(36.0, abs=2.0)


@pytest.mark.parametrize("kind", ["linear", "convex", "phased"])
def test_lesions_have_known_position_size_and_echogenicity(kind):
    g = make_geometry(kind, 128, 384, 8)
    x0, x1, z0, z1 = g.bounding_box_mm()
    zc = (g.start_depth_mm + g.end_depth_mm) / 2
    r = (g.end_depth_mm - g.start_depth_mm) * 0.1
    cyst, bright = Lesion(0.0, zc - 2 * r, r, -40.0), Lesion(0.0, zc + 2 * r, r, 12.0)
    ph = SpecklePhantom(g, (cyst, bright), attenuation_db_cm_mhz=0.0)
    samples, truth = ph.frame(np.random.default_rng(2))
    assert samples.dtype == np.uint8 and samples.shape == (g.n_lines, g.n_samples)
    x, z = cell_positions_mm(g)
    in_cyst = (x - cyst.x_mm) ** 2 + (z - cyst.z_mm) ** 2 <= r * r
    in_bright = (x - bright.x_mm) ** 2 + (z - bright.z_mm) ** 2 <= r * r
    np.testing.assert_array_equal(truth.mask, in_cyst | in_bright)
    assert in_cyst.sum() > 50 and in_bright.sum() > 50
    bg = samples[~truth.mask].astype(float).mean()
    # B-mode over 60 dB: -40 dB is ~170 grey levels darker, +12 dB ~51 brighter
    assert samples[in_cyst].mean() < bg - 120
    assert samples[in_bright].mean() == pytest.approx(bg + 12 * 255 / 60, abs=10)
    assert truth.as_dict()["lesions"][0] == cyst.as_dict()


def test_convex_cell_positions_follow_the_geometry_conventions():
    g = make_geometry("convex", 3, 2, 8, end_depth_mm=100.0)
    x, z = cell_positions_mm(g)
    # centre line (theta = 0) goes straight down from the apex of the array
    assert x[1, 0] == pytest.approx(0.0) and z[1, 0] == pytest.approx(25.0)
    theta = math.radians(-g.width / 2 + 0.5 * g.width / 3)
    assert x[0, 1] == pytest.approx((50.0 + 75.0) * math.sin(theta))
    assert z[0, 1] == pytest.approx((50.0 + 75.0) * math.cos(theta) - 50.0)


def test_phantom_source_cycles_and_rebuilds_on_depth():
    src = PhantomSource(make_geometry("convex", 16, 32, 16), distinct=3, seed=4)
    names = [src.next().name for _ in range(4)]
    assert names == ["phantom:0", "phantom:1", "phantom:2", "phantom:0"]
    src.set_depth(90.0)
    f = src.next()
    assert f.geometry.end_depth_mm == 90.0 and f.geometry.kind == ProbeKind.CONVEX
    assert f.samples.dtype == np.uint16 and f.truth.geometry == f.geometry


def write_png(path, arr):
    from PIL import Image

    Image.fromarray(arr).save(path)


def test_image_folder_source_sends_columns_as_scan_lines(tmp_path):
    rng = np.random.default_rng(5)
    imgs = {n: rng.integers(0, 256, (h, w), dtype=np.uint8)
            for n, (h, w) in {"b.png": (30, 40), "a.png": (20, 10), "c.png": (5, 7)}.items()}
    for n, a in imgs.items():
        write_png(tmp_path / n, a)
    (tmp_path / "notes.txt").write_text("not an image")
    src = ImageFolderSource(str(tmp_path), pixel_mm=0.5)
    out = [src.next() for _ in range(4)]
    assert [f.name for f in out] == ["a.png", "b.png", "c.png", "a.png"]
    f = out[1]
    assert f.geometry.kind == ProbeKind.LINEAR and f.geometry.bits == 8
    assert (f.geometry.n_lines, f.geometry.n_samples) == (40, 30)  # width lines of height samples
    assert (f.geometry.width, f.geometry.end_depth_mm) == (20.0, 15.0)
    assert f.samples.flags.c_contiguous
    np.testing.assert_array_equal(f.samples, imgs["b.png"].T)  # column j is scan line j


def test_image_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderSource(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderSource(str(tmp_path))


def test_image_folder_source_on_real_busi_images():
    folder = os.path.join(DATA, "busi", "malignant")
    if not os.path.isdir(folder):
        pytest.skip(f"shared data not found at {folder} (set FIRMWARE_PY_DATA)")
    src = ImageFolderSource(folder)
    f = src.next()
    assert f.name == sorted(n for n in os.listdir(folder) if n.endswith(".png"))[0]
    assert f.samples.shape == (256, 256) and f.samples.std() > 5
