"""Model manifest, int8 tiers and the build pipeline (installed as firmware_py.models)."""
