"""Manifest parser on any text (issue 18, hypothesis; every CI run, a few seconds).

The shipped manifest with any node replaced, deleted or added, and plain random text: the result
is a ``Manifest`` or one ``ModelError`` whose message is one bounded line; never another exception.
"""
import copy
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_py.errors import ModelError
from firmware_py.inference.manifest import Manifest, parse_manifest

# No subnormal floats: tflite-runtime on aarch64 sets flush-to-zero for the whole process once it is
# imported (by any earlier test), and hypothesis then refuses to draw them; the parsers have no
# subnormal-specific path to miss.
SUBNORMALS = False

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "models", "manifest.yaml"), encoding="utf-8") as _f:
    SHIPPED_TEXT = _f.read()
SHIPPED = yaml.safe_load(SHIPPED_TEXT)
SHIPPED["tiers"] = SHIPPED["tiers"][:2]  # two tiers (a ladder) keep each example fast: the loader is pure Python
MAX_MESSAGE = 600

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70).map(lambda i: i * 10**300),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=SUBNORMALS), st.text(max_size=30),
    st.sampled_from(["cpu", "edgetpu", "int8", "float32", "softmax", "sigmoid", "classify", "segment",
                     "../../etc/passwd", "/abs.tflite", "", "0" * 64, "x" * 2000]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), inner, max_size=4)),
    max_leaves=10)


def _nodes(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, path + (i,))


PATHS = list(_nodes(SHIPPED))[1:]


@st.composite
def mutated_manifests(draw):
    doc = copy.deepcopy(SHIPPED)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        parent = doc
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(values)
            else:
                parent.append(draw(values))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced the path
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True, sort_keys=False)


def check(text) -> None:
    try:
        m = parse_manifest(text, "m.yaml")
    except ModelError as exc:
        msg = str(exc)
        assert msg.startswith("m.yaml") and "\n" not in msg and len(msg) <= MAX_MESSAGE, msg[:300]
    else:
        assert isinstance(m, Manifest) and m.tiers


fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_shipped_manifest_parses():
    assert len(parse_manifest(SHIPPED_TEXT, "m.yaml").tiers) >= 2


@fast
@given(mutated_manifests())
def test_a_mutated_manifest_parses_or_is_one_model_error(text):
    check(text)


@fast
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400),
                 st.integers(0, len(SHIPPED_TEXT)).map(lambda n: SHIPPED_TEXT[:n])))
def test_any_text_or_a_cut_manifest_parses_or_is_one_model_error(text):
    check(text)


def test_pathological_manifests_are_one_model_error():
    for text in ("[" * 600, "tiers: " + "[" * 600, "a: &a [*a]\ntiers: *a\nschema_version: 1",
                 "schema_version: 1" + "0" * 400, "\ufeff\x00", b"\xff\xfe\x00"):
        check(text)
