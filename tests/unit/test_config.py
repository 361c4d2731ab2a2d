import argparse
from dataclasses import dataclass, field

import pytest

from georay.config import add_dataclass_args, from_args
from georay.errors import UserError


@dataclass
class Example:
    output: str = field(metadata={"help": "where to write"})
    steps: int = field(default=10, metadata={"help": "how many steps"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    use_gpu: bool = field(default=False, metadata={"help": "use a GPU"})
    resolutions: list[int] = field(default_factory=lambda: [3, 5], metadata={"help": "H3"})
    note: str | None = field(default=None, metadata={"help": "free text"})

    def __post_init__(self):
        if self.steps <= 0:
            raise ValueError("steps must be positive")


def parse(argv):
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, Example)
    return from_args(Example, parser.parse_args(argv))


def test_flags_map_one_to_one_to_fields():
    cfg = parse(["--output", "o", "--steps", "3", "--use-gpu", "--resolutions", "4,6"])
    assert cfg == Example(output="o", steps=3, use_gpu=True, resolutions=[4, 6])


def test_defaults_apply_when_flags_are_absent():
    cfg = parse(["--output", "o"])
    assert cfg.steps == 10 and cfg.lr == 1e-3 and cfg.resolutions == [3, 5] and cfg.note is None


def test_preset_is_overridden_by_flags(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("output: from-preset\nsteps: 7\nlr: 0.5\n")
    cfg = parse(["--preset", str(preset), "--steps", "2"])
    assert (cfg.output, cfg.steps, cfg.lr) == ("from-preset", 2, 0.5)


def test_preset_with_unknown_field_is_rejected(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("output: x\nstepz: 7\n")
    with pytest.raises(ValueError, match="stepz"):
        parse(["--preset", str(preset)])


def test_missing_required_flag_names_it():
    with pytest.raises(UserError, match="--output"):
        parse([])


def test_validation_runs():
    with pytest.raises(ValueError, match="positive"):
        parse(["--output", "o", "--steps", "0"])


def test_bad_bool_is_a_parse_error():
    with pytest.raises(SystemExit):
        parse(["--output", "o", "--use-gpu", "maybe"])


def test_list_flags_take_several_values_and_commas():
    cfg = parse(["--output", "o", "--resolutions", "4", "6,7"])
    assert cfg.resolutions == [4, 6, 7]


def test_named_paths_resolve_only_the_path(tmp_path, monkeypatch):
    from georay.cli import check_inputs
    from georay.evaluate.config import EvaluateConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "knn").mkdir()
    (tmp_path / "t.csv").write_text("image_id\n")
    cfg = EvaluateConfig(predictions=["knn=knn", "s3://b/x=y/p"], truth="t.csv", output="r")
    assert cfg.predictions == [f"knn={tmp_path}/knn", "s3://b/x=y/p"]
    assert cfg.methods() == {"knn": f"{tmp_path}/knn", "p": "s3://b/x=y/p"}
    assert EvaluateConfig(predictions="a/predictions", truth="t", output="r").methods() == {
        "predictions": f"{tmp_path}/a/predictions"
    }
    with pytest.raises(UserError, match="--predictions: no such file or folder: .*/missing"):
        check_inputs(EvaluateConfig(predictions=["x=missing"], truth="t.csv", output="r"))
    with pytest.raises(ValueError, match="'a' given twice"):
        EvaluateConfig(predictions=["a=knn", "a=t.csv"], truth="t.csv", output="r")


def test_confidence_flags_are_declared_once_and_validated():
    from georay.baseline import KnnConfig, ZeroShotConfig
    from georay.config import Confident
    from georay.protocol.predictions import DEFAULT_TOP_K

    assert _default(Confident, "top_k") == DEFAULT_TOP_K  # the schema's default, one value
    for cls in (KnnConfig, ZeroShotConfig):
        assert issubclass(cls, Confident)
        parser = argparse.ArgumentParser()
        add_dataclass_args(parser, cls)
        flags = {a for action in parser._actions for a in action.option_strings}
        assert {"--top-k", "--min-confidence", "--calibration"} <= flags
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        Confident(top_k=0)
    with pytest.raises(ValueError, match="min_confidence must be in"):
        Confident(min_confidence=1.5)


def _default(cls, name):
    from dataclasses import fields

    return next(f.default for f in fields(cls) if f.name == name)
