"""Inference engine: verified model set, TFLite interpreter with accelerator delegate or CPU twin,
zero-copy input, decoded outputs, hitless tier swap (see docs/model-manifest.md, docs/signing.md)."""
from firmware_py.inference.decode import InferenceOutput
from firmware_py.inference.engine import Engine
from firmware_py.inference.manifest import Manifest, Tier, load_manifest, parse_manifest

__all__ = ["Engine", "InferenceOutput", "Manifest", "Tier", "load_manifest", "parse_manifest"]
