"""The verified model set in use, and the last-known-good rule.

load() verifies the folder (signature, manifest, every file's digest, no extra or missing file),
then runs `check` on the manifest: the engine's child-process model check (isolation.py), which
raises ModelSetRefused when a file crashes, hangs or raises there. On success the new manifest becomes current; on failure a security event is logged and the
previous manifest stays current, so a bad update never replaces a good set. Only when there was
never a good set does load() raise.
"""
from __future__ import annotations

import hashlib
from typing import Callable

from firmware_py.errors import ModelError
from firmware_py.files import read_bounded
from firmware_py.inference.events import EventLog
from firmware_py.inference.manifest import MAX_MANIFEST_BYTES, Manifest, load_manifest
from firmware_py.inference.signing import ModelSetRefused, manifest_path_of, verify_model_set


class ModelSet:
    def __init__(self, path: str, public_key: str | None, events: EventLog,
                 check: Callable[[Manifest], dict] | None = None):
        self.manifest_path = manifest_path_of(path)
        self.public_key = public_key
        self.events = events
        self.check = check
        self.checked: dict | None = None  # what check() said of the set in use
        self.manifest: Manifest | None = None
        self.digest: str | None = None  # sha256 of the manifest in use
        self.last_error: str | None = None
        self._previous: tuple[Manifest | None, str | None, dict | None] = (None, None, None)

    def load(self) -> bool:
        try:
            if self.public_key is None:
                path = self.manifest_path
                manifest = load_manifest(path)
                data = read_bounded(path, MAX_MANIFEST_BYTES)
                self.events.emit(
                    "signature-not-checked",
                    f"{path}: loaded WITHOUT signature verification (models.public_key not set); development only",
                )
            else:
                manifest, data = verify_model_set(self.manifest_path, self.public_key)
            checked = self.check(manifest) if self.check is not None else None
        except ModelSetRefused as e:
            return self._refuse(e.kind, str(e), e)
        except ModelError as e:
            return self._refuse("manifest-invalid", str(e), e)
        self._previous = (self.manifest, self.digest, self.checked)
        self.manifest = manifest
        self.digest = hashlib.sha256(data).hexdigest()
        self.checked = checked
        self.last_error = None
        return True

    def revert(self) -> None:
        """Go back to the set in use before the last successful load() (its tiers failed to load)."""
        if self._previous[0] is not None:
            self.manifest, self.digest, self.checked = self._previous

    def _refuse(self, kind: str, message: str, err: ModelError) -> bool:
        self.last_error = message
        keep = "keeping the last known good model set" if self.manifest is not None else "no model set active"
        self.events.emit(kind, f"{message} ({keep})", security=True)
        if self.manifest is None:
            raise err
        return False

    def status(self) -> dict:
        return {
            "manifest": self.manifest_path,
            "verified": self.public_key is not None,
            "manifest_sha256": self.digest,
            "last_error": self.last_error,
            "checked": self.checked,
        }
