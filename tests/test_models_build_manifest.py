"""The shipped manifest is exactly what the generator makes from the committed tier records."""
import os

import pytest

from firmware_py.models.build import manifest

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def test_committed_manifest_is_the_generated_one():
    with open(os.path.join(MODELS, "manifest.yaml"), encoding="utf-8") as fh:
        committed = fh.read()
    assert manifest.generate(MODELS) == committed, (
        "models/manifest.yaml differs from its tier records: run "
        "`python -m firmware_py.models.build finish` and commit the result")


def test_generated_manifest_passes_the_engine_loader():
    from firmware_py.inference.manifest import parse_manifest

    m = parse_manifest(manifest.generate(MODELS))
    for task in ("classify", "segment"):
        ladder = m.ladder(task)
        assert [t.rank for t in ladder] == list(range(len(ladder)))
        for t in ladder:
            assert t.input.quantization.scale == pytest.approx(1 / 255, rel=1e-6)
            assert t.input.quantization.zero_point == -128
            assert t.output.applied_in_model is False  # logits: the engine applies softmax/sigmoid
    assert len(m.ladder("classify")) >= 3 and len(m.ladder("segment")) >= 3


def test_generator_refuses_an_empty_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the build first"):
        manifest.generate(str(tmp_path))
