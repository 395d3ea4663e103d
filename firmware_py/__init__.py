"""firmware-py: runtime for handheld ultrasound probes (probe link, SIMD preprocessing,
int8 inference on an accelerator with CPU twins, battery-aware model tiers)."""

__version__ = "0.1.0"
