"""The baselines' cores without Ray: gallery search, where k neighbours point, CLIP captions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from georay.baseline.index import Gallery, locate, neighbour_weights, place_votes
from georay.data.vectors import build_index, normalise
from georay.geo.gazetteer import get_gazetteer

PARIS, LYON, TOKYO = (48.8566, 2.3522), (45.764, 4.8357), (35.6762, 139.6503)


def _gallery(emb: np.ndarray, places: list[tuple[float, float]], kind: str = "flat") -> Gallery:
    lat, lon = np.array(places).T
    ids = np.array([f"g{i}" for i in range(len(emb))], dtype=object)
    none = np.full(len(emb), None, dtype=object)
    return Gallery(build_index(normalise(emb), kind), ids, lat, lon, none, none)


def test_search_is_cosine_best_first_and_skips_the_query_itself():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6, 16)).astype(np.float32)
    g = _gallery(emb * np.arange(1, 7)[:, None], [PARIS] * 6)  # norms differ: cosine ignores them
    query = emb[[2]] + 0.01 * rng.standard_normal((1, 16)).astype(np.float32)
    sims, rows = g.search(query, 3)
    assert rows[0, 0] == 2 and np.all(np.diff(sims[0]) <= 0)
    cos = normalise(emb) @ normalise(query)[0]
    assert sims[0] == pytest.approx(np.sort(cos)[::-1][:3], abs=1e-5)
    sims2, rows2 = g.search(query, 3, exclude=np.array(["g2"], dtype=object))
    assert 2 not in rows2[0] and rows2[0].tolist() == rows[0, 1:].tolist() + [np.argsort(-cos)[3]]
    sims3, rows3 = g.search(query, 8)  # more than the gallery holds: -1 rows
    assert (rows3[0, 6:] == -1).all()


def test_medoid_by_hand():
    # Three neighbours in France, the most similar one in Tokyo.
    lat = np.array([[TOKYO[0], PARIS[0], LYON[0], PARIS[0] + 0.1]])
    lon = np.array([[TOKYO[1], PARIS[1], LYON[1], PARIS[1]]])
    valid = np.ones((1, 4), bool)
    sims = np.array([[0.95, 0.90, 0.89, 0.88]])
    # Uniform weights: the French point with the least total distance to the others: Paris.
    assert locate(lat, lon, sims, valid, temperature=0)[0] == 1
    # A sharp softmax (t=0.01: Tokyo's weight e^5 = 148x each other) follows the top match.
    assert locate(lat, lon, sims, valid, temperature=0.01)[0] == 0
    w = neighbour_weights(sims, valid, 0.05)
    assert w.sum() == pytest.approx(1) and w[0, 0] / w[0, 1] == pytest.approx(np.exp(1))
    valid[0, 0] = False  # a missing neighbour never wins and weighs nothing
    assert locate(lat, lon, sims, valid, temperature=0.01)[0] == 1


def test_place_votes_by_hand():
    # Five neighbours, most similar first: Lyon (FR), Tokyo (JP), Paris (FR), Lyon (FR), Osaka.
    country = np.array(["FR", "JP", "FR", "FR", "JP"], dtype=object)
    city = np.array(["Lyon", "Tokyo", "Paris", "Lyon", "Osaka"], dtype=object)
    w = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    votes = place_votes(country, city, w, answer=2, top_k=5)  # the medoid is the Paris view
    assert votes.country == pytest.approx(0.65) and votes.city == pytest.approx(0.2)
    # One candidate per country: the answer (Paris) first, then Japan at its likelier city.
    assert [(i, round(p, 6)) for i, p in votes.candidates] == [(2, 0.2), (1, 0.25)]
    assert sum(p for _, p in votes.candidates) <= 1
    # Answer = the Lyon view: France at Lyon (0.45 of the weight); top-1 keeps only the answer.
    votes = place_votes(country, city, w, answer=0, top_k=1)
    assert (votes.country, votes.city) == (pytest.approx(0.65), pytest.approx(0.45))
    assert votes.candidates == [(0, pytest.approx(0.45))]
    # A neighbour without a city stands for its country, with the country's probability.
    nocity = np.array([None, "Tokyo", None, None, "Osaka"], dtype=object)
    votes = place_votes(country, nocity, w, answer=0, top_k=3)
    assert votes.city is None and votes.candidates[0] == (0, pytest.approx(0.65))


def test_ivf_searching_every_list_is_exact():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 32))
    emb = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 32))).astype(
        np.float32
    )
    places = [PARIS] * len(emb)
    flat = _gallery(emb, places, "flat")
    ivf = build_index(normalise(emb), "ivf")
    assert type(ivf).__name__ == "IndexIVFFlat" and ivf.nlist == int(4 * np.sqrt(3000))
    ivf.nprobe = ivf.nlist
    queries = emb[:50] + 0.05 * rng.standard_normal((50, 32)).astype(np.float32)
    assert (flat.search(queries, 5)[1] == ivf.search(normalise(queries), 5)[1]).all()
    assert type(build_index(normalise(emb))).__name__ == "IndexFlatIP"  # auto, at this size


def test_gallery_ships_as_arrays():
    rng = np.random.default_rng(2)
    g = _gallery(rng.standard_normal((10, 8)).astype(np.float32), [PARIS] * 10)
    back = Gallery.from_arrays(g.to_arrays())
    q = rng.standard_normal((3, 8)).astype(np.float32)
    assert (back.search(q, 4)[1] == g.search(q, 4)[1]).all()
    assert back.image_id.tolist() == g.image_id.tolist()


def test_hashed_tokens_keep_the_place_name():
    from georay.models.clip import hashed_tokens

    a = hashed_tokens(
        ["A Street View photo in South Korea.", "A Street View photo in Chile."], 8, 64
    )
    assert a.shape == (2, 8) and (a.max(dim=1).values == 63).all()  # the end token, read by
    assert not (a[0] == a[1]).all()  # argmax pooling; the country words are kept
    assert (hashed_tokens(["A Street View photo in Chile."], 8, 64) == a[1]).all()


def tiny_transformers_clip(path) -> str:
    """A random-init transformers CLIPModel with tokenizer and image processor in ``path``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from georay.models.vlm import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64,
                eos_token_id=2)  # 2: pool at the highest token id (CLIP's legacy rule)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=32, patch_size=8)  # fmt: skip
    CLIPModel(
        CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(path)
    return str(path)


def test_zero_shot_actor_with_a_transformers_clip(tmp_path):
    from georay.baseline.zeroshot import ZeroShotActor
    from georay.data.images import encode_jpeg
    from georay.pipeline.stages import load_images

    model = tiny_transformers_clip(tmp_path / "clip")
    rng = np.random.default_rng(3)
    uris = []
    for i in range(3):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(encode_jpeg(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)))
        uris.append(str(path))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    uris.append(str(tmp_path / "bad.jpg"))
    n = len(uris)
    batch = {"image_id": np.array([f"i{i}" for i in range(n)], dtype=object),
             "uri": np.array(uris, dtype=object), "status": np.array(["ok"] * n, dtype=object),
             "error": np.array([None] * n, dtype=object)}  # fmt: skip
    batch = load_images(batch, side=32)
    actor = ZeroShotActor({"input": "in", "output": "out", "encoder": model,
                           "countries": ["France", "JP"], "cities_per_country": 2})  # fmt: skip
    rows = actor(batch).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "error"]
    assert rows[3]["error"].startswith("not an image") and rows[3]["answered"] is False
    gaz = get_gazetteer()
    for row in rows[:3]:
        assert row["country_code"] in ("FR", "JP") and row["answered"] and row["h3"]
        top = {p.name: (p.lat, p.lon) for p in gaz.cities(row["country_code"], limit=2)}
        assert (row["lat"], row["lon"]) == top[row["city"]]
        assert row["model"] == f"transformers:{model}" and row["resolution"] == "city"
        # Confidence: the country's softmax, the city's joint; two countries, two candidates.
        note, cands = json.loads(row["raw_text"]), row["candidates"]
        assert row["country_confidence"] == pytest.approx(note["p_country"], abs=1e-4)
        assert row["city_confidence"] == pytest.approx(note["p_country"] * note["p_city"], abs=1e-3)
        assert [c["country_code"] for c in cands][0] == row["country_code"] and len(cands) == 2
        assert cands[0]["probability"] == pytest.approx(row["city_confidence"])
        assert {c["country_code"] for c in cands} == {"FR", "JP"}
        assert sum(c["probability"] for c in cands) <= 1 + 1e-9 and row["abstained"] is False
    assert rows[3]["country_confidence"] is None and rows[3]["candidates"] is None
    # --top-k 1 and --min-confidence 1: one candidate, every ok row abstains but keeps its answer.
    strict = ZeroShotActor({"input": "in", "output": "out", "encoder": model, "top_k": 1,
                            "countries": ["France", "JP"], "cities_per_country": 2,
                            "min_confidence": 1.0})(batch).to_pylist()  # fmt: skip
    assert [r["abstained"] for r in strict] == [True, True, True, None]
    assert [r["country"] for r in strict[:3]] == [r["country"] for r in rows[:3]]
    assert all(len(r["candidates"]) == 1 for r in strict[:3])


def test_job_calibration_next_to_the_model_a_named_file_or_none(tmp_path):
    from georay.baseline import KnnConfig
    from georay.errors import UserError
    from georay.protocol.calibration import (
        Calibration,
        LevelMap,
        job_calibration,
        save_calibration,
    )

    gallery = tmp_path / "gallery"
    gallery.mkdir()

    def cfg(calibration=""):
        return KnnConfig(input=str(tmp_path), output=str(tmp_path / "o"), gallery=str(gallery),
                         head=str(tmp_path), calibration=calibration)  # fmt: skip

    assert job_calibration(cfg().calibration, str(gallery)) == (None, None)  # never calibrated: raw
    fitted = Calibration({"knn": {"country": LevelMap(use="temperature", temperature=2.0)}})
    save_calibration(fitted, str(gallery))
    found, ident = job_calibration(cfg().calibration, str(gallery))
    assert found.methods == fitted.methods and "calibration.json sha256:" in ident
    assert job_calibration(cfg("none").calibration, str(gallery)) == (None, None)
    other = tmp_path / "other.json"
    save_calibration(Calibration({"knn": {}}), str(other))
    assert job_calibration(cfg(str(other)).calibration, str(gallery))[1].startswith(str(other))
    with pytest.raises(UserError, match="no calibration there"):
        job_calibration(cfg(str(tmp_path / "missing.json")).calibration, str(gallery))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="--calibration: .*not a georay-calibration"):
        job_calibration(cfg(str(tmp_path / "bad.json")).calibration, str(gallery))
