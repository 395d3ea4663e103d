"""Configuration loader on any input (issue 18, hypothesis; every CI run, a few seconds).

Whatever the file holds (any text, any YAML document, mappings shaped like the schema with
values of every type, anchors, deep nesting), ``load_config`` returns a typed ``Config`` or raises
one ``ConfigError`` whose message is one bounded line; never another exception.
"""
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_py.config import Config, load_config
from firmware_py.config.schema import SCHEMA, Section
from firmware_py.errors import ConfigError

# No subnormal floats: tflite-runtime on aarch64 sets flush-to-zero for the whole process once it is
# imported (by any earlier test), and hypothesis then refuses to draw them; the parsers have no
# subnormal-specific path to miss.
SUBNORMALS = False

MAX_MESSAGE = 1000  # the longest one-line error (an unknown key lists the section's keys)


def _names(section: Section, prefix=()):
    for name, spec in section.items():
        yield prefix + (name,), spec
        if isinstance(spec, Section):
            yield from _names(spec, prefix + (name,))


PATHS = [p for p, _ in _names(SCHEMA)]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70).map(lambda i: i * 10**300),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=SUBNORMALS), st.text(max_size=40),
    st.sampled_from(["", "auto", "none", "mock", "loop://", "1:2", "0x10", "1e309", "-", "~", "null"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
odd_keys = st.one_of(st.text(max_size=20), st.integers(), st.none(), st.booleans(), st.floats(allow_subnormal=SUBNORMALS))


@st.composite
def schema_shaped(draw):
    """A mapping that follows the schema's paths (so validation goes deep), with any values."""
    doc: dict = {}
    for _ in range(draw(st.integers(1, 6))):
        path = draw(st.sampled_from(PATHS))
        node = doc
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[path[-1]] = draw(values)
        if draw(st.booleans()):
            node[draw(odd_keys)] = draw(values)  # a key the schema does not have
    return doc


def check(path) -> None:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        text = str(exc)
        assert text and "\n" not in text and "\r" not in text, text
        assert len(text) <= MAX_MESSAGE, text[:200]
    else:
        assert isinstance(cfg, Config)


fast = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


@fast
@given(schema_shaped())
def test_any_schema_shaped_mapping_loads_or_is_one_config_error(tmp_path, doc):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    check(path)


@fast
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                 st.lists(st.sampled_from(["probe:", "  port: ", "  - ", "&a ", "*a", "!!python/object:os.system ",
                                           "{", "}", "[", "]", ": ", "'", '"', "\t", "\n", "---\n", "%YAML 1.1\n",
                                           "? ", "|\n", "<<: *a\n", "\x00", "\ufeff"]), max_size=40).map("".join)))
def test_any_text_loads_or_is_one_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check(path)


@fast
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_one_config_error(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    check(path)


def test_pathological_documents_are_one_config_error(tmp_path):
    """Shapes a random draw rarely reaches: deep nesting, recursive aliases, an alias bomb."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + chr(ord(c) - 1)] * 10)}]\n" for c in "bcdefgh")
    for text in ("[" * 600, "{a: " * 3000, "probe: {port: &a [*a]}", bomb + "probe: {port: *h}",
                 f"power: {{low_battery_percent: 1{'0' * 400}}}", 'probe: {"x\\ny": 1}', '"a\\nb": 1',
                 f"probe: {{port: {'x' * 100_000}}}", "probe: {baudrate: .nan}", "probe: {max_frame_bytes: 1e3}",
                 bomb + "power: {bands: *h}", f"power: {{bands: {{1{'0' * 400}: 1}}}}", "? [0]: 1", "? {a: 1}: 2"):
        path = tmp_path / "c.yaml"
        path.write_text(text, encoding="utf-8")
        check(path)
    assert math.isfinite(load_config(None).probe.stall_timeout_s)  # the defaults load
