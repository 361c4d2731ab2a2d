"""One setting, one flag: shared settings are declared once, old spellings still work."""

from __future__ import annotations

import dataclasses

import pytest

from georay.cli import build_parser
from georay.config import Batched, from_args


def _config(argv: list[str]):
    args = build_parser().parse_args(argv)
    return from_args(args.command.config, args, args.command.presets)


def _command_configs() -> dict[str, type]:
    parser = build_parser()
    found: dict[str, type] = {}

    def walk(p, prefix):
        for action in p._actions:
            for name, sub in (getattr(action, "choices", None) or {}).items():
                if hasattr(sub, "_actions"):
                    command = sub.get_default("command")
                    if command is not None:
                        found[f"{prefix}{name}"] = command.config
                    walk(sub, f"{prefix}{name} ")

    walk(parser, "")
    return found


# The command -> batch size it starts with: each one's own default, one declaration.
BATCH_DEFAULTS = {
    "curate fit": 64, "curate score": 64, "baseline zeroshot": 64, "baseline knn": 64,
    "predict": 8, "serve": 8, "train": 4,
}  # fmt: skip


def test_batch_size_is_declared_once_with_each_commands_default():
    configs = _command_configs()
    batched = {name for name, cls in configs.items() if issubclass(cls, Batched)}
    assert batched == set(BATCH_DEFAULTS)
    for name in batched:
        field = {f.name: f for f in dataclasses.fields(configs[name])}["batch_size"]
        assert field.default == BATCH_DEFAULTS[name], name
        # The same help everywhere: the field is Batched's, only its default moved.
        assert field.metadata["help"] == dataclasses.fields(Batched)[0].metadata["help"], name


def test_the_input_flag_is_input_everywhere_and_old_names_still_work(tmp_path, capsys):
    for name, cls in _command_configs().items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert "manifest" not in fields or name == "knowledge", name
        assert "data" not in fields, name
    (tmp_path / "m.parquet").write_bytes(b"")
    fit = _config(["curate", "fit", "--manifest", str(tmp_path / "m.parquet"), "--output", "h"])
    assert fit.input == str(tmp_path / "m.parquet")
    train = _config(["train", "--stage", "reasoning", "--data", str(tmp_path / "m.parquet"),
                     "--model", "tiny", "--output", "a"])  # fmt: skip
    assert train.input == str(tmp_path / "m.parquet")
    err = capsys.readouterr().err
    assert "georay curate fit: note: --manifest is now --input" in err
    assert "georay train: note: --data is now --input" in err


def test_neighbours_is_one_flag_and_knn_still_takes_k(capsys):
    argv = ["baseline", "knn", "--input", "i", "--output", "o", "--gallery", "g", "--head", "h"]
    assert _config([*argv, "--k", "7"]).neighbours == 7
    assert "--k is now --neighbours" in capsys.readouterr().err
    assert _config([*argv, "--neighbours", "3"]).neighbours == 3
    dedup = _config(["curate", "dedup", "--input", "i", "--output", "o", "--neighbours", "9"])
    assert dedup.neighbours == 9


def test_gpus_are_numbers_everywhere_and_use_gpu_means_one_per_worker(capsys):
    argv = ["train", "--stage", "reasoning", "--input", "d", "--model", "tiny", "--output", "a"]
    assert _config(argv).gpus_per_worker == 0
    assert _config([*argv, "--gpus-per-worker", "0.5"]).gpus_per_worker == 0.5
    assert _config([*argv, "--use-gpu"]).gpus_per_worker == 1
    assert "--use-gpu is now --gpus-per-worker 1" in capsys.readouterr().err
    for cls in _command_configs().values():
        assert "use_gpu" not in {f.name for f in dataclasses.fields(cls)}


def test_serve_batch_size_is_the_dynamic_batch_and_max_batch_size_still_works(capsys):
    serve = _config(["serve", "--model", "m", "--max-batch-size", "4"])
    assert serve.batch_size == 4 and serve.max_ongoing_requests == 8
    assert "--max-batch-size is now --batch-size" in capsys.readouterr().err
    assert not hasattr(serve, "max_batch_size")


def test_the_processors_own_size_is_zero_in_predict_and_train():
    predict = _config(["predict", "--input", "i", "--model", "m", "--output", "o"])
    train = _config(["train", "--stage", "location", "--input", "d", "--model", "m", "--output",
                     "o"])  # fmt: skip
    assert predict.max_pixels == train.max_pixels == 0
    for argv in (
        ["predict", "--input", "i", "--model", "m", "--output", "o"],
        ["train", "--stage", "location", "--input", "d", "--model", "m", "--output", "o"],
    ):
        with pytest.raises(ValueError, match=r"0 \(the processor's own\) or >= 784"):
            _config([*argv, "--max-pixels", "100"])


def test_predict_has_no_torch_threads_flag():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--input", "i", "--model", "m", "--output", "o",
                                   "--torch-threads", "2"])  # fmt: skip
    assert "torch_threads" in {
        f.name for f in dataclasses.fields(_command_configs()["curate score"])
    }


def test_defaults_and_aliases_keep_the_field_and_refuse_unknown_names():
    @dataclasses.dataclass(kw_only=True)
    class Small(Batched):
        DEFAULTS = {"batch_size": 2}
        ALIASES = {"batch_size": ("--bs",)}

        name: str = "x"

    (field, *_) = dataclasses.fields(Small)
    assert (field.name, field.default, field.metadata["aliases"]) == ("batch_size", 2, ("--bs",))
    assert Small().batch_size == 2 and Batched().batch_size == 8
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Small(batch_size=0)
    with pytest.raises(TypeError, match="no base class declares"):

        @dataclasses.dataclass(kw_only=True)
        class Wrong(Batched):
            DEFAULTS = {"batch_sise": 2}
