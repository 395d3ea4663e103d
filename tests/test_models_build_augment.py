"""Issue 16 training parts that need TensorFlow: the device augmentation profile and per-epoch resume.

CI's test extra has no TensorFlow, so there these skip with the reason below (the smoke test's
CI step with the train extra runs them).
"""
import numpy as np
import pytest

tf = pytest.importorskip(
    "tensorflow", reason="TensorFlow not installed: the model build needs the train extra "
    "(pip install -e .[train]); CI's test extra skips these")

from firmware_py.models.build import tiers, train  # noqa: E402
from firmware_py.models.build.augment import UltrasoundAugment  # noqa: E402


def test_device_profile_fill_regions_are_exactly_the_fill():
    kw = dict(tiers.augment_kwargs("classify", "device"), fill=51.0, sector_p=1.0, rotate_deg=30.0)
    aug = UltrasoundAugment(tf, 5, sector_hw=(64, 64), **kw)
    x = tf.constant(np.random.default_rng(0).uniform(0.3, 0.9, (8, 64, 64, 1)), tf.float32)
    y = aug(x).numpy()
    fill = np.isclose(y, 51.0 / 255.0, atol=1e-6)
    # Every image got a sector (sector_p 1): a fan-shaped fill region, top corners filled, centre imaged.
    assert fill[:, 0, 0].all() and fill[:, 0, -1].all() and not fill[:, 40, 32].any()
    assert 0.05 < fill.mean() < 0.6
    # The photometric changes (gain, TGC, speckle) never touch a fill pixel: they are exact, not near.
    assert (y[fill] == np.float32(51.0 / 255.0)).all()
    assert tiers.augment_kwargs("segment", "device") == tiers.AUGMENT["segment"]  # DDTI keeps its recipe
    with pytest.raises(ValueError, match="pick basic"):
        tiers.augment_kwargs("classify", "heavy")


class _Cut(Exception):
    pass


def test_fit_resumes_after_the_last_finished_epoch(tmp_path):
    tf.keras.utils.set_random_seed(0)
    net = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(3)])
    x = np.random.default_rng(1).random((16, 8, 8, 1)).astype(np.float32)
    y = np.arange(16) % 3
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    class CutAfterSecond(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # before the epoch-2 state is saved: as if the session ended mid-epoch
                raise _Cut()

    seen = []
    log = lambda label, epoch, epochs, loss: seen.append(epoch)  # noqa: E731
    with pytest.raises(_Cut):
        train.fit(tf, train.build_trainer(tf, net, "classify"), ds, 4, 1e-2, 2, callbacks=[CutAfterSecond()],
                  log=log, resume=str(tmp_path))
    assert seen == [1]
    seen.clear()
    trainer = train.build_trainer(tf, net, "classify")
    train.fit(tf, trainer, ds, 4, 1e-2, 2, log=log, resume=str(tmp_path))
    assert seen == [2, 3, 4]  # epoch 2 again (it was never saved), then the rest
    assert int(trainer.optimizer.iterations.numpy()) == 4 * 2  # the schedule continued, not restarted
    seen.clear()
    train.fit(tf, train.build_trainer(tf, net, "classify"), ds, 4, 1e-2, 2, log=log, resume=str(tmp_path))
    assert seen == []  # a finished phase trains no further
