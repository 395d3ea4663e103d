"""The power keys are checked when the configuration loads, one line naming the key and the fix:
power.bands (it used to be parsed only when the policy was built) and the INA219's range."""
from __future__ import annotations

import pytest

from firmware_py.config import load_config
from firmware_py.errors import ConfigError


def load(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return load_config(str(path))


@pytest.mark.parametrize("bands, expected", [
    ("{low: 2}", "'power.bands' entry 'low': 2: the key must be a charge in percent, 0 to 100"),
    ("{140: 2}", "'power.bands' entry 140: 2: the key must be a charge in percent"),
    ("{40: 2.5}", "'power.bands' entry 40: 2.5: the value must be a whole number of rungs below the top"),
    ("{40: -1}", "'power.bands' entry 40: -1: the value must be a whole number"),
    ("{40: true}", "'power.bands' entry 40: True: the value must be a whole number"),
    ("[40, 2]", "'power.bands' must be a mapping of charge percent to rungs below the top"),
])
def test_bad_bands_are_refused_at_load_with_the_line_and_the_fix(tmp_path, bands, expected):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f"power:\n  bands: {bands}\n")
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'cfg.yaml'}:2: ") and expected in text
    assert 'e.g. {"40": 2}' in text


def test_good_bands_load_with_number_or_string_keys_and_reach_the_policy(tmp_path):
    from firmware_py.power import TierPolicy

    cfg = load(tmp_path, "power:\n  bands: {60: 1, \"40\": 3}\n")
    assert cfg.power.bands == {60: 1, "40": 3}
    policy = TierPolicy.from_config(cfg.power, 5)
    assert (60.0, 1) in policy.bands and (40.0, 3) in policy.bands


def test_an_ina219_range_over_its_shunt_voltage_is_refused_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"power.monitor.ina219: 5 A through 0.1 ohm is 500 mV, over the INA219's "
                                          r"320 mV; lower power.monitor.ina219.max_current_a or fit a smaller shunt"):
        load(tmp_path, "power:\n  monitor:\n    kind: ina219\n    ina219: {shunt_ohms: 0.1, max_current_a: 5}\n")
    assert load(tmp_path, "power:\n  monitor:\n    kind: ina219\n    ina219: {shunt_ohms: 0.01, max_current_a: 5}\n"
                ).power.monitor.ina219.max_current_a == 5
