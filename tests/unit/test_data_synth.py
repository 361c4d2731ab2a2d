"""The synthetic world: valid manifest, exact fractions, determinism, corrupt files, clues."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from georay.cli import main
from georay.data.ade20k import NUM_CLASSES, locatability
from georay.data.images import ImageDecodeError, decode_image
from georay.data.manifest import read_manifest
from georay.synth.world import SynthConfig, generate_world, split_of

# The fixed country order: every 8-country world uses these.
FIRST_EIGHT = {"JP", "BR", "FR", "US", "IN", "ZA", "RU", "AU"}


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    # Through the CLI, as users run it.
    rc = main(
        [
            "synth",
            "--output",
            str(out),
            "--n",
            "200",
            "--countries",
            "8",
            "--seed",
            "0",
            "--corrupt",
            "4",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    return out


def test_manifest_is_valid_and_complete(world):
    table = read_manifest(str(world / "manifest.parquet"))
    assert table.num_rows == 204
    assert len(set(table.column("image_id").to_pylist())) == 204
    assert set(table.column("country").to_pylist()) == FIRST_EIGHT
    assert all(Path(u).is_file() for u in table.column("uri").to_pylist())
    assert len(list((world / "images").glob("*.jpg"))) == 204
    # Coordinates lie near the recorded real city.
    from georay.geo.gazetteer import get_gazetteer

    streets = table.filter(pc.not_equal(table["view"], "corrupt"))
    rev = get_gazetteer().reverse(streets["lat"].to_numpy(), streets["lon"].to_numpy())
    assert (rev.country_code == np.array(streets["country"].to_pylist())).mean() > 0.95
    splits = streets["split"].to_pylist()
    assert set(splits) == {"train", "test"} and 0.1 < splits.count("test") / len(splits) < 0.3
    assert splits == [split_of(i, 0.2) for i in streets["image_id"].to_pylist()]


def test_a_val_share_comes_from_train_and_leaves_test_as_it_was():
    ids = [f"view-{i}" for i in range(2000)]
    before = [split_of(i, 0.2) for i in ids]
    after = [split_of(i, 0.2, 0.1) for i in ids]
    assert [a for a, b in zip(after, before, strict=True) if b == "test"] == [
        "test"
    ] * before.count("test")
    assert {b for a, b in zip(after, before, strict=True) if a == "val"} == {"train"}
    assert 0.07 < after.count("val") / len(ids) < 0.13
    with pytest.raises(ValueError, match="val_share must be in"):
        SynthConfig(output="w", test_share=0.5, val_share=0.6)


def test_fractions_are_exact_and_teacher_separates_views(world):
    table = read_manifest(str(world / "manifest.parquet"))
    streets = table.filter(pc.not_equal(table["view"], "corrupt"))
    fr = np.array(streets["ade20k_fractions"].to_pylist(), dtype=np.float64)
    assert fr.shape == (200, NUM_CLASSES)
    np.testing.assert_allclose(fr.sum(1), 1.0, atol=1e-5)
    score = locatability(fr)
    view = np.array(streets["view"].to_pylist())
    low, street = score[view == "low_locatability"], score[view == "street"]
    assert 10 < len(low) < 60  # default share 0.15
    assert street.mean() > 0.4 > low.max()
    assert street.min() > low.max()


def test_rerun_in_another_folder_is_byte_identical(world, tmp_path):
    cfg = SynthConfig(
        output=str(tmp_path / "again"), n=200, countries=8, seed=0, corrupt=4, workers=2
    )  # also: a process pool must not change the bytes
    summary = generate_world(cfg)
    assert summary["images"] == 200 and summary["corrupt"] == 4
    assert _digest(tmp_path / "again") == _digest(world)


def test_other_seed_differs_but_keeps_countries(world, tmp_path):
    generate_world(SynthConfig(output=str(tmp_path / "s1"), n=16, countries=8, seed=1, workers=1))
    other = read_manifest(str(tmp_path / "s1" / "manifest.parquet"))
    assert set(other.column("country").to_pylist()) <= FIRST_EIGHT
    first = (tmp_path / "s1" / "images" / "synth-s1-000000.jpg").read_bytes()
    assert first != (world / "images" / "synth-s0-000000.jpg").read_bytes()


def test_planted_duplicates_copy_a_view_at_its_place(tmp_path):
    out = tmp_path / "dups"
    summary = generate_world(SynthConfig(output=str(out), n=8, countries=2, seed=0,
                                         duplicates=4, width=96, height=72, workers=1))  # fmt: skip
    assert summary["duplicates"] == 4
    table = read_manifest(str(out / "manifest.parquet")).to_pandas().set_index("image_id")
    copies = table[table.view == "duplicate"]
    assert len(copies) == 4 and table.duplicate_of.notna().sum() == 4
    kinds = [i.rsplit("-", 1)[1] for i in copies.index]
    assert kinds == ["exact", "jpeg", "resize", "trim"]
    for copy, row in copies.iterrows():
        source = table.loc[row.duplicate_of]
        assert (row.lat, row.lon, row.split, row.city) == (
            source.lat, source.lon, source.split, source.city)  # fmt: skip
        data, original = Path(row.uri).read_bytes(), Path(source.uri).read_bytes()
        assert (data == original) == copy.endswith("-exact")
        size = decode_image(data).shape[:2]
        assert size == {"resize": (54, 72), "trim": (72, 95)}.get(copy.rsplit("-", 1)[1], (72, 96))


def test_corrupt_files_fail_to_decode_and_good_ones_decode(world):
    table = read_manifest(str(world / "manifest.parquet"))
    views = table.column("view").to_pylist()
    uris = table.column("uri").to_pylist()
    corrupt = [u for u, v in zip(uris, views, strict=True) if v == "corrupt"]
    assert {Path(u).stem.split("-")[-1] for u in corrupt} == {
        "truncated",
        "zero_bytes",
        "not_an_image",
        "huge_header",
    }
    for uri in corrupt:
        with pytest.raises(ImageDecodeError):
            decode_image(Path(uri).read_bytes(), (56, 56))
    assert decode_image(Path(uris[0]).read_bytes(), (56, 56)).shape == (56, 56, 3)
    assert decode_image(Path(uris[0]).read_bytes()).shape == (480, 640, 3)


def test_clues_and_world_json(world):
    table = read_manifest(str(world / "manifest.parquet"), resolve_uris=False)
    clues = [json.loads(x) for x in (world / "clues.jsonl").read_text().splitlines()]
    assert len(clues) == 200
    doc = json.loads((world / "world.json").read_text())
    names = {c["code"]: c["name"] for c in doc["countries"]}
    by_image = dict(
        zip(
            table["uri"].to_pylist(),
            zip(table["country"].to_pylist(), table["city"].to_pylist(), strict=True),
            strict=True,
        )
    )
    for clue in clues:
        assert set(clue) == {"image", "text", "country", "city"}
        code, city = by_image[clue["image"]]
        assert clue["country"] == names[code] and clue["city"] == city
        assert city in clue["text"] and names[code] in clue["text"]
    assert all(len(c["cities"]) == 3 and c["cues"]["script"] for c in doc["countries"])


def test_config_validation():
    with pytest.raises(ValueError, match="countries must be in 1..32"):
        SynthConfig(output="x", countries=33)
    with pytest.raises(ValueError, match="low_locatability"):
        SynthConfig(output="x", low_locatability=1.5)


def test_inspect_cli_prints_published_coordinates(shared_data, world, capsys):
    rc = main(
        [
            "inspect",
            str(shared_data / "photos"),
            str(world / "images" / "synth-s0-corrupt-001-zero_bytes.jpg"),
        ]
    )
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    got = {Path(x["file"]).name: x for x in lines}
    assert got["goexif_sample1.jpg"]["lat"] == pytest.approx(39.915556, abs=1e-4)
    assert got["goexif_geodegrees_as_string.jpg"]["lon"] == pytest.approx(11.182857, abs=1e-4)
    assert got["npm-exif_test1.jpg"]["lon"] == pytest.approx(-122.6225, abs=1e-4)
    assert got["npm-exif_test2.jpg"]["lat"] == pytest.approx(37.814667, abs=1e-4)
    assert got["synth-s0-corrupt-001-zero_bytes.jpg"]["error"].startswith("empty file")
    assert main(["inspect", str(world / "images" / "synth-s0-corrupt-001-zero_bytes.jpg")]) == 1


def test_country_is_learnable_from_small_pixels(world):
    """A linear (ridge) classifier on 16x12-pixel thumbnails, trained on the train split, names
    the country of held-out street views: the cues survive the downscale a tiny VLM sees."""
    from georay.data.storage import read_bytes

    table = read_manifest(str(world / "manifest.parquet"))
    table = table.filter(pc.equal(table["view"], "street"))
    x = np.stack(
        [decode_image(read_bytes(u), (16, 12)).ravel() / 255.0 for u in table["uri"].to_pylist()]
    )
    y = np.array(table["country"].to_pylist())
    test = np.array(table["split"].to_pylist()) == "test"
    classes = np.unique(y)
    onehot = (y[:, None] == classes[None]).astype(np.float64)
    a = x[~test]
    w = np.linalg.solve(a.T @ a + 1.0 * np.eye(a.shape[1]), a.T @ onehot[~test])
    accuracy = (classes[(x[test] @ w).argmax(1)] == y[test]).mean()
    assert accuracy > 0.8, accuracy


def test_inspect_check_flags_truncated_world_file(world, capsys):
    truncated = str(world / "images" / "synth-s0-corrupt-000-truncated.jpg")
    assert main(["inspect", truncated]) == 0  # the header alone reads fine
    assert main(["inspect", "--check", truncated]) == 1
    assert "truncated" in json.loads(capsys.readouterr().out.splitlines()[-1])["error"]


def test_pretraining_descriptions_name_no_place_and_no_held_out_view(world):
    """pretrain.jsonl, the tiny model's stand-in for pretraining: cues seen, never a place."""
    from georay.protocol.prompts import DESCRIBE_QUESTION
    from georay.protocol.sft import read_sft

    info = json.loads((world / "world.json").read_text())
    names = {c["name"].lower() for c in info["countries"]}
    names |= {city["name"].lower() for c in info["countries"] for city in c["cities"]}
    manifest = pq.read_table(world / "manifest.parquet").to_pandas().set_index("image_id")
    examples = read_sft(world / "pretrain.jsonl")
    streets = manifest[manifest["view"] != "corrupt"]
    assert len(examples) == int((streets["split"] == "train").sum()) > 0
    for ex in examples:
        assert ex.question == DESCRIBE_QUESTION
        assert manifest.loc[ex.id, "split"] == "train"
        text = ex.answer.lower()
        assert not any(name in text for name in names), ex.answer


def test_neighbours_share_what_a_low_view_shows_and_differ_on_the_street():
    """Each confusable neighbour copies its sibling's buildings, sky, script and trees (all a
    low-locatability view draws) and differs in verge, road paint and sign shape."""
    from georay.synth.draw import NEIGHBOURS, STYLES

    assert STYLES[16:] == NEIGHBOURS and len({s.code for s in STYLES}) == len(STYLES)
    for sibling, n in zip(STYLES, NEIGHBOURS, strict=False):
        same = ("wall", "roof", "sky", "script", "vegetation", "tree_kind", "pitched_roofs")
        assert all(getattr(n, f) == getattr(sibling, f) for f in same), n.code
        assert n.verge != sibling.verge and n.sign_shape != sibling.sign_shape, n.code
        assert (n.marking, n.marking_rgb) != (sibling.marking, sibling.marking_rgb), n.code


def test_confusable_preset_through_the_cli(tmp_path):
    out = tmp_path / "w"
    assert main(["synth", "--preset", "confusable", "--output", str(out), "--n", "48",
                 "--workers", "1"]) == 0  # fmt: skip
    config = json.loads((out / "world.json").read_text())["config"]
    assert (config["countries"], config["low_locatability"], config["width"]) == (24, 0.5, 320)
    assert config["n"] == 48  # a flag wins over the preset


def _pair_accuracy(low: bool, per_country: int = 60) -> float:
    """Held-out accuracy of a ridge classifier on 16x12 thumbnails telling JP from TW."""
    from georay.synth.draw import STYLES, draw_low_locatability, draw_street

    x, y = [], []
    for label, style in enumerate((STYLES[0], STYLES[16])):
        for i in range(per_country):
            rng = np.random.default_rng([label, i])
            pixels = (draw_low_locatability(style, 64, 48, rng) if low
                      else draw_street(style, i % 3, 64, 48, rng))[0]  # fmt: skip
            x.append(np.asarray(Image.fromarray(pixels).resize((16, 12))).ravel() / 255.0)
            y.append(label)
    x, y = np.array(x), np.array(y) * 2.0 - 1.0
    test = np.arange(len(y)) % 4 == 0
    a = x[~test]
    w = np.linalg.solve(a.T @ a + 1.0 * np.eye(a.shape[1]), a.T @ y[~test])
    return float((np.sign(x[test] @ w) == y[test]).mean())


def test_neighbours_tell_apart_on_street_views_only():
    """What makes curation matter in benchmarks/claims.py: a street view separates a pair, a
    view of sky, a wall and vegetation does not (chance is 0.5)."""
    street, low = _pair_accuracy(low=False), _pair_accuracy(low=True)
    assert street >= 0.9, street
    assert low <= 0.7, low
