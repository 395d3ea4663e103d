"""Build the daemon's parts from the validated configuration."""
from __future__ import annotations

import os
from importlib import resources

from firmware_py.errors import ConfigError


def packaged_models_dir() -> str:
    return str(resources.files("firmware_py.models"))


def packaged_public_key() -> str:
    return os.path.join(packaged_models_dir(), "keys", "dev-ed25519.pub")


def delegate_loader(cfg):
    """The accelerator delegate loader for `accelerator.kind`, or None for CPU only."""
    acc = cfg.accelerator
    if acc.kind == "none":
        return None
    from firmware_py.drivers.accelerator import DelegateLoader
    from firmware_py.inference.backend import interpreter_backend

    return DelegateLoader.from_config(
        {"kind": acc.kind, "device": acc.edgetpu_device, "library": acc.external_library,
         "options": dict(acc.external_options), "reattach_initial_s": acc.reattach_initial_s,
         "reattach_max_s": acc.reattach_max_s},
        interp=interpreter_backend())


def open_engine(cfg, *, on_event=None):
    """The inference engine on the configured (signed) model set, starting on the configured tier."""
    from firmware_py.inference import Engine

    m = cfg.models
    models_dir = os.path.dirname(os.path.abspath(m.manifest)) if m.manifest else packaged_models_dir()
    if m.manifest and os.path.basename(m.manifest) != "manifest.yaml":
        raise ConfigError(f"models.manifest must point to a file named manifest.yaml (got {m.manifest}); "
                          f"keep the manifest beside its models and signature")
    public_key = m.public_key or packaged_public_key()
    if not os.path.exists(public_key):
        raise ConfigError(f"public key {public_key} not found; set models.public_key to the PEM file that "
                          f"verifies the model manifest")
    engine = Engine(models_dir, public_key=public_key,
                    start_tier=None if m.start_tier == "auto" else m.start_tier,
                    threads=cfg.accelerator.cpu_threads, accelerator=delegate_loader(cfg),
                    memory_budget_mb=m.memory_budget_mb, invoke_deadline_ms=cfg.accelerator.invoke_deadline_ms,
                    reattach_backoff_s=(cfg.accelerator.reattach_initial_s, cfg.accelerator.reattach_max_s),
                    on_event=on_event)
    return engine
