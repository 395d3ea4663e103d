"""Per-fold, per-tier checkpoints, so a build longer than one working session can continue.

<root>/<task>_fold<k>/ (root(): outside the models folder) holds meta.json (the split's signature and the training settings),
the trained teacher's weights, and per finished student its record (JSON) and int8 file. A
rerun of the same fold with the same split and settings loads the teacher instead of training
it and skips every finished student; anything else starts the fold afresh (the stale files are
removed, never mixed in).
"""
from __future__ import annotations

import json
import logging
import os
import shutil

log = logging.getLogger("firmware_py.models.build")
MODELS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def root(work_dir: str, models_dir: str = MODELS_DIR) -> str:
    """Where a build's checkpoints go: <work_dir>/ckpt, except for a work dir inside the models
    folder (models/report/cv, the default): `models sign` / `verify` refuse every .tflite under
    the models folder that the manifest does not list, and a finished tier's checkpoint is one.
    Those go to <repo>/.cache/models-build/<work dir name>/ckpt (gitignored)."""
    work, models = os.path.realpath(work_dir), os.path.realpath(models_dir)
    if os.path.commonpath([work, models]) != models:
        return os.path.join(work_dir, "ckpt")
    return os.path.join(os.path.dirname(models), ".cache", "models-build", os.path.basename(work), "ckpt")


class FoldCheckpoint:
    def __init__(self, path: str, signature: str, settings: dict):
        self.path = path
        meta = {"split": signature, "settings": settings}
        meta_path = os.path.join(path, "meta.json")
        if os.path.exists(meta_path):
            with open(meta_path) as fh:
                if json.load(fh) != meta:
                    log.info("%s: other split or settings, starting the fold afresh", path)
                    shutil.rmtree(path)
        os.makedirs(path, exist_ok=True)
        with open(meta_path, "w") as fh:
            json.dump(meta, fh, indent=1)

    @property
    def teacher_weights(self) -> str:
        return os.path.join(self.path, "teacher.weights.h5")

    def has_teacher(self) -> bool:
        return os.path.exists(self.teacher_weights)

    def _files(self, name: str) -> tuple:
        stem = os.path.join(self.path, name.replace("-", "_"))
        return stem + ".json", stem + ".tflite"

    def student(self, name: str):
        """(record, int8 bytes) of a finished student, or None."""
        rec_path, tfl_path = self._files(name)
        if not (os.path.exists(rec_path) and os.path.exists(tfl_path)):
            return None
        with open(rec_path) as fh, open(tfl_path, "rb") as fb:
            return json.load(fh), fb.read()

    def save_student(self, name: str, rec: dict, tfl: bytes):
        rec_path, tfl_path = self._files(name)
        with open(tfl_path, "wb") as fb:
            fb.write(tfl)
        with open(rec_path + ".tmp", "w") as fh:  # the record last: it marks the student done
            json.dump(rec, fh, indent=1)
        os.replace(rec_path + ".tmp", rec_path)

    def drop(self, name: str):
        """Forget a student (a --tiers rerun retrains it)."""
        for p in self._files(name):
            if os.path.exists(p):
                os.remove(p)
