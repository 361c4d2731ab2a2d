"""The student: open_clip encoder loading, uint8 preprocessing, the ridge head, configs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from georay.curate.config import FitConfig, ScoreConfig
from georay.curate.head import fit_ridge, load_head, regression_metrics, save_head
from georay.data.images import decode_square
from georay.data.splits import holdout_mask
from georay.models.clip import encode, load_clip


def test_tiny_encoder_is_seeded_frozen_and_embeds_uint8():
    a, pre = load_clip("tiny", seed=3)
    b, _ = load_clip("tiny", seed=3)
    pixels = np.random.default_rng(0).integers(0, 255, (4, pre.side, pre.side, 3), np.uint8)
    ea, eb = encode(a, pre, pixels), encode(b, pre, pixels)
    assert ea.shape == (4, 256) and ea.dtype == np.float32
    np.testing.assert_array_equal(ea, eb)
    assert not any(p.requires_grad for p in a.parameters())


def test_decode_square_matches_open_clip_geometry():
    """Our uint8 path (draft decode, cover resize, centre crop) ~ open_clip's preprocess."""
    import open_clip

    y, x = np.mgrid[0:480, 0:640]
    img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    ours = decode_square(buf.getvalue(), 64).astype(float) / 255
    tf = open_clip.image_transform(64, is_train=False, mean=(0, 0, 0), std=(1, 1, 1))
    ref = tf(Image.open(io.BytesIO(buf.getvalue()))).permute(1, 2, 0).numpy()
    assert ours.shape == ref.shape == (64, 64, 3)
    assert np.abs(ours - ref).mean() < 0.06


def test_ridge_head_learns_a_linear_target_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(400, 32))
    y = np.clip(0.5 + emb[:, :4] @ np.array([0.1, -0.05, 0.08, 0.02]), 0, 1)
    head = fit_ridge(emb[:300], y[:300])
    metrics = regression_metrics(head.predict(emb[300:]), y[300:])
    assert metrics["spearman"] > 0.95 and metrics["n"] == 100
    assert head.predict(emb * 100).min() >= 0 and head.predict(emb * 100).max() <= 1
    head.info = {"threshold": 0.4}
    save_head(head, str(tmp_path))
    again = load_head(str(tmp_path))
    np.testing.assert_allclose(again.predict(emb), head.predict(emb))
    assert again.info == {"threshold": 0.4}


def test_holdout_is_stable_as_the_sample_grows():
    ids = [f"id{i}" for i in range(2000)]
    small, big = holdout_mask(ids[:500], 0.2), holdout_mask(ids, 0.2)
    np.testing.assert_array_equal(small, big[:500])
    assert 0.15 < big.mean() < 0.25


def test_configs_validate():
    # --manifest / --images / --webdataset became one --input (its kind is detected).
    with pytest.raises(TypeError, match="input"):
        ScoreConfig(head="h", output="o")
    with pytest.raises(ValueError, match="threshold"):
        ScoreConfig(head="h", output="o", input="dir", threshold=1.5)
    with pytest.raises(ValueError, match="segmenter"):
        FitConfig(input="m", output="o", teacher="segmenter")
    assert ScoreConfig(head="h", output="o", input="s3://b/x.tar").input == "s3://b/x.tar"


def test_cli_flags_and_preset_map_to_fields(tmp_path):
    from importlib import resources

    from georay.cli import build_parser
    from georay.config import from_args

    preset = resources.files("georay.curate").joinpath("presets/tiny.yaml")
    args = build_parser().parse_args(
        [
            "curate",
            "fit",
            "--preset",
            str(preset),
            "--input",
            "m.parquet",
            "--output",
            "h",
            "--sample",
            "200",
        ]  # fmt: skip
    )
    cfg = from_args(FitConfig, args)
    # Local paths are made absolute where the command runs (Ray workers run elsewhere).
    assert (cfg.encoder, cfg.sample, cfg.batch_size, cfg.output) == (
        "tiny", 200, 128, str(Path("h").resolve()),
    )  # fmt: skip
