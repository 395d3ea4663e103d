"""Battery and temperature sensors (real and mock) and the tier policy that reads them."""
from firmware_py.power.policy import PolicyInputs, TierPolicy
from firmware_py.power.sensors import make_battery, make_thermal

__all__ = ["PolicyInputs", "TierPolicy", "make_battery", "make_thermal"]
