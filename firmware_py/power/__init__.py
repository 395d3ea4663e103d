"""Battery, temperature and power-monitor sensors (real and mock) and the tier policy that reads them.

Adding a sensor kind: one file ``battery_<kind>.py`` / ``thermal_<kind>.py`` / ``monitor_<kind>.py``
that registers its class (and its configuration keys) with ``BATTERIES`` / ``THERMALS`` /
``MONITORS``, plus its import line below.
"""
from firmware_py.power.policy import PolicyInputs, TierPolicy
from firmware_py.power.sensors import (BATTERIES, MONITORS, THERMALS, Battery, BatteryReading, PowerReading, Thermal,
                                       make_battery, make_monitor, make_thermal)

# Registration: importing a kind's file registers it, one line per kind (order = order in the docs).
from firmware_py.power import battery_mock  # noqa: E402,F401
from firmware_py.power import battery_sysfs  # noqa: E402,F401
from firmware_py.power import battery_psutil  # noqa: E402,F401
from firmware_py.power import battery_max17048  # noqa: E402,F401
from firmware_py.power import battery_sim  # noqa: E402,F401
from firmware_py.power import thermal_mock  # noqa: E402,F401
from firmware_py.power import thermal_sysfs  # noqa: E402,F401
from firmware_py.power import thermal_psutil  # noqa: E402,F401
from firmware_py.power import monitor_ina219  # noqa: E402,F401
from firmware_py.power import monitor_ina260  # noqa: E402,F401

__all__ = ["BATTERIES", "MONITORS", "THERMALS", "Battery", "BatteryReading", "PowerReading", "Thermal", "PolicyInputs",
           "TierPolicy", "make_battery", "make_monitor", "make_thermal"]
