"""The vLLM engine, for real (vLLM's CPU build in .venv-vllm; skipped where vllm is missing).

Token equality with transformers (greedy, float32) for a plain model, a merged artifact and the
last stage as a LoRA over the merged earlier stages; ``georay predict --engine vllm`` through
``ray.data.llm`` on a manifest with broken, missing and engine-refused images; and the online
API with vLLM behind the same routes, over HTTP with the official ``openai`` client, streaming
included. Run by ``make test`` in ``.venv-vllm`` (``-m vllm``).
"""

from __future__ import annotations

import base64
import io
import socket

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from support import france_model, two_stage_artifact_at

from georay.data.images import encode_jpeg

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
pytest.importorskip("vllm", reason="vLLM is not installed here: `make vllm-env` (.venv-vllm)")

ANSWER = dict(country="France", city="Paris", reasons="Slate roofs and limestone walls.")
QUESTION = "Which country and city is the image located?"


@pytest.fixture(scope="module", autouse=True)
def cpu_env():
    from georay.predict.vllm_engine import use_cpu_env

    use_cpu_env()


@pytest.fixture(scope="module")
def france(tmp_path_factory) -> str:
    """The tiny Qwen2-VL taught to answer France / Paris to any image (a plain HF folder)."""
    path = tmp_path_factory.mktemp("france")
    france_model(path, ANSWER)
    return str(path)


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory) -> str:
    return str(two_stage_artifact_at(tmp_path_factory.mktemp("two-stage"), QUESTION))


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(56, 56), (84, 70)]]


def _hf_tokens(model_dir: str, n: int = 12) -> list[list[int]]:
    """transformers' greedy tokens, cut after the end-of-turn token (vLLM stops there)."""
    import torch

    from georay.models.vlm import encode_prompts, load_vlm

    model, processor = load_vlm(model_dir)
    batch = encode_prompts(processor, _images(), [QUESTION] * 2)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=n, do_sample=False)
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows = out[:, batch["input_ids"].shape[1] :].tolist()
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


def _vllm_tokens(settings, n: int = 12) -> list[list[int]]:
    from vllm import LLM, SamplingParams

    from georay.predict.vllm_engine import engine_kwargs, lora_request, resolve_model

    model = resolve_model(settings)
    llm = LLM(**engine_kwargs(settings, model, gpu=False))
    prompts = [{"prompt": model.prompt, "multi_modal_data": {"image": im}} for im in _images()]
    outs = llm.generate(prompts, SamplingParams(max_tokens=n, temperature=0.0),
                        lora_request=lora_request(model))  # fmt: skip
    del llm
    return [list(o.outputs[0].token_ids) for o in outs]


def test_vllm_gives_transformers_tokens_merged_and_as_lora(two_stage, tmp_path):
    from georay.models.vlm import tiny_qwen2vl
    from georay.predict.config import ModelSettings

    plain = tmp_path / "plain"
    tiny_qwen2vl(save_dir=plain, seed=3)
    settings = dict(engine="vllm", question=QUESTION, max_model_len=512, max_num_seqs=4)
    assert _vllm_tokens(ModelSettings(model=str(plain), **settings)) == _hf_tokens(str(plain))
    want = _hf_tokens(two_stage)  # base + both adapters merged, as georay trains them
    assert _vllm_tokens(ModelSettings(model=two_stage, **settings)) == want
    lora = ModelSettings(model=two_stage, lora_adapter=True, **settings)
    assert _vllm_tokens(lora) == want


def _world(root) -> tuple[str, int]:
    """Good photos, a broken one, a missing one and one too thin for the processor."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(1)
    ids, uris = [], []
    for i in range(6):
        pixels = rng.integers(0, 256, (120 + 10 * i, 160, 3), dtype=np.uint8)
        (images / f"img{i}.jpg").write_bytes(encode_jpeg(pixels))
        ids.append(f"img{i}")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    # 3 x 700: decodes, but a Qwen2-VL processor refuses an aspect ratio over 200.
    (images / "thin.png").write_bytes(_png(np.zeros((3, 700, 3), np.uint8)))
    ids += ["broken", "thin", "missing"]
    for i in ids:
        suffix = "png" if i == "thin" else "jpg"
        uris.append(str(images / f"{i}.{suffix}"))
    manifest = root / "manifest.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"image_id": ids, "uri": uris}), manifest)
    return str(manifest), 6


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_bulk_job_through_ray_data_llm(ray_session, tmp_path, france):
    from georay.predict import PredictConfig, predict

    manifest, good = _world(tmp_path / "world")
    common = dict(input=manifest, model=france, max_new_tokens=48, batch_size=4, block_rows=4)
    out = tmp_path / "vllm"
    summary = predict(PredictConfig(output=str(out), engine="vllm", max_num_seqs=4, **common))
    assert (summary["rows_out"], summary["ok"], summary["error"]) == (good + 3, good, 3)
    rows = {r["image_id"]: r for r in pq.read_table(out / "predictions").to_pylist()}
    assert rows["missing"]["error"].startswith("missing file")
    assert rows["broken"]["error"].startswith("unreadable image header")
    assert rows["thin"]["status"] == "error" and rows["thin"]["error"].startswith("generate failed")
    for i in range(good):
        row = rows[f"img{i}"]
        assert row["status"] == "ok" and row["answered"] and row["country_code"] == "FR"
        assert row["city"] == "Paris" and row["h3"] and row["model"] == france
    # Same columns and answers as the transformers engine on the same input.
    hf = predict(PredictConfig(output=str(tmp_path / "hf"), **common))
    assert (hf["ok"], hf["error"]) == (summary["ok"], summary["error"])
    hf_rows = {r["image_id"]: r for r in pq.read_table(tmp_path / "hf" / "predictions").to_pylist()}
    assert set(hf_rows) == set(rows)
    for i in range(good):  # every column, not only the text: the rows are built once
        _same_row(hf_rows[f"img{i}"], rows[f"img{i}"])
    # A rerun finds every row committed; the other engine cannot write into this output.
    assert predict(PredictConfig(output=str(out), engine="vllm", **common))["rows_this_run"] == 0
    from georay.errors import UserError

    with pytest.raises(UserError, match="engine"):
        predict(PredictConfig(output=str(out), **common))


CONFIDENCE = ("country_confidence", "city_confidence")


def _same_row(hf: dict, vllm: dict, candidates: int | None = 1) -> None:
    """The same row from both engines: equal but for the probabilities, which are close (the
    same raw logits; HF's log-softmax in float64, vLLM's in float32). vLLM's bulk job gives
    the answer alone as its candidates (vllm_bulk's docstring): compare the first ones."""
    skip = {*CONFIDENCE, "candidates"}
    assert {k: v for k, v in hf.items() if k not in skip} == {
        k: v for k, v in vllm.items() if k not in skip
    }
    for key in CONFIDENCE:
        assert (hf[key] is None) == (vllm[key] is None)
        if hf[key] is not None:
            assert vllm[key] == pytest.approx(hf[key], rel=1e-4)
    if hf["candidates"] is None:
        assert vllm["candidates"] is None
        return
    if candidates is None:
        assert len(hf["candidates"]) == len(vllm["candidates"])
    pairs = list(zip(hf["candidates"], vllm["candidates"], strict=False))[:candidates]
    for a, b in pairs:
        assert {k: v for k, v in a.items() if k != "probability"} == {
            k: v for k, v in b.items() if k != "probability"
        }
        assert b["probability"] == pytest.approx(a["probability"], rel=1e-4)


def test_online_confidence_and_alternatives_match_transformers(france):
    """AsyncVllm (what a Serve replica holds) gives the HF engine's confidence and candidates:
    the same branch points, the same greedy completions of the alternatives."""
    import asyncio

    from georay.models.vlm import continue_scored, encode_prompts
    from georay.predict.config import ModelSettings
    from georay.predict.predictor import Predictor
    from georay.predict.vllm_engine import AsyncVllm, scored_output, stop_token_ids

    hf = Predictor(ModelSettings(model=france, max_new_tokens=48))
    want = hf.predict(_images())
    engine = AsyncVllm(ModelSettings(model=france, engine="vllm", max_new_tokens=48,
                                     max_model_len=512, max_num_seqs=8))  # fmt: skip
    image = _images()[0]
    batch = encode_prompts(hf.processor, [image], [hf.question])
    prefix = list(hf.processor.tokenizer("{'country': 'G", add_special_tokens=False).input_ids)
    # 8 tokens: on the tiny model this text it never learned reaches a near-tie that
    # float32 (vLLM) and float64 (HF) log-softmax break apart at the 11th token.
    [mine] = continue_scored(hf.model, hf.processor, batch, [0], [prefix], 8)

    async def both():  # one event loop: the async engine is bound to the one it started on
        got = await asyncio.gather(*[engine.answer(im) for im in _images()])
        # An alternative's completion, token for token: the prefix after the prompt.
        branch = {"prompt": engine.model.prompt + "{'country': 'G"}
        return got, await engine._complete(branch, image, 8, 0)

    try:
        got, branch = asyncio.run(both())
        for a, b in zip(want, got, strict=True):
            assert a["country_confidence"] > 0 and a["candidates"]
            _same_row(a, b, candidates=None)
        out = branch.outputs[0]
        stop = stop_token_ids(hf.processor.tokenizer)
        other = scored_output(out.token_ids, out.logprobs, "", stop)
        assert other.tokens == mine.tokens
        assert other.logprobs == pytest.approx(mine.logprobs, abs=1e-4)
    finally:
        engine.close()


@pytest.fixture(scope="module")
def wide_france(tmp_path_factory, france) -> str:
    """The France model with a processor that keeps images up to 200 visual tokens, so a large
    photo makes a prompt longer than a small ``max_model_len`` (vLLM refuses it)."""
    import shutil

    from georay.models.qwen2vl import set_max_pixels
    from georay.models.vlm import load_processor

    path = tmp_path_factory.mktemp("wide") / "model"
    shutil.copytree(france, path)
    processor = load_processor(path)
    set_max_pixels(processor, 28 * 28 * 200)
    processor.save_pretrained(str(path))
    return str(path)


def _mixed_world(root, n_blocks: int = 4) -> tuple[str, dict[str, str]]:
    """Blocks of four rows: two the engine answers, then two it fails on (a 3x700 image its
    processor refuses; a 392x392 image whose prompt is longer than ``max_model_len``).

    With ``block_rows=4`` and ``batch_size=2`` every engine batch is all-answered or all-failed
    and every block holds one of each, the arrangement that crashed Ray Data's block
    concatenation (issue 26). The answered pair has the same shape in even blocks and two shapes
    in odd ones (fixed- and variable-shape image tensors).
    """
    import pyarrow as pa

    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(2)
    kinds: dict[str, str] = {}
    uris = []
    for b in range(n_blocks):
        shapes = [(56, 56), (56, 56)] if b % 2 == 0 else [(56, 84), (84, 70)]
        for j, shape in enumerate(shapes):
            name = f"good{b}{j}"
            (images / f"{name}.jpg").write_bytes(
                encode_jpeg(rng.integers(0, 256, (*shape, 3), np.uint8))
            )
            kinds[name], uris = "good", uris + [str(images / f"{name}.jpg")]
        (images / f"thin{b}.png").write_bytes(_png(np.zeros((3, 700, 3), np.uint8)))
        big = rng.integers(0, 256, (392, 392, 3), np.uint8)
        (images / f"long{b}.jpg").write_bytes(encode_jpeg(big))
        kinds[f"thin{b}"], kinds[f"long{b}"] = "thin", "long"
        uris += [str(images / f"thin{b}.png"), str(images / f"long{b}.jpg")]
    manifest = root / "manifest.parquet"
    pq.write_table(pa.table({"image_id": list(kinds), "uri": uris}), manifest)
    return str(manifest), kinds


MIXED = dict(max_new_tokens=48, batch_size=2, block_rows=4, engine="vllm", max_num_seqs=4,
             max_model_len=160)  # fmt: skip


def test_bulk_job_with_engine_errors_in_every_block(ray_session, tmp_path, wide_france):
    """Answered and engine-failed rows share every block: the job finishes, every row once."""
    from georay.predict import PredictConfig, predict

    manifest, kinds = _mixed_world(tmp_path / "world")
    out = tmp_path / "out"
    summary = predict(PredictConfig(input=manifest, model=wide_france, output=str(out), **MIXED))
    good = sum(k == "good" for k in kinds.values())
    assert (summary["rows_in"], summary["rows_out"]) == (len(kinds), len(kinds))
    assert (summary["ok"], summary["error"]) == (good, len(kinds) - good)
    table = pq.read_table(out / "predictions")
    ids = table["image_id"].to_pylist()
    assert sorted(ids) == sorted(kinds)  # every row once
    for row in table.to_pylist():
        kind = kinds[row["image_id"]]
        if kind == "good":
            assert row["status"] == "ok" and row["country_code"] == "FR", row
        else:
            assert row["status"] == "error" and row["error"].startswith("generate failed"), row
        if kind == "long":
            assert "maximum model length" in row["error"]


def test_bulk_job_that_raises_midway_resumes(ray_session, tmp_path, wide_france, monkeypatch):
    """The place stage raises once a part is committed: the job fails, the committed parts stay,
    and a rerun writes only the rest, every row once."""
    import sys
    import time

    from ray import cloudpickle

    from georay.predict import PredictConfig, predict, vllm_bulk

    manifest, kinds = _mixed_world(tmp_path / "world")
    out = tmp_path / "out"
    parts = out / "predictions"
    real_place = vllm_bulk.place

    def place_then_fail(batch, **kwargs):
        if "good30" in set(batch["image_id"]):  # the last block: wait for a committed part
            deadline = time.monotonic() + 120
            while not any(parts.glob("*.parquet")) and time.monotonic() < deadline:
                time.sleep(0.5)
            raise RuntimeError("injected failure in the place stage")
        return real_place(batch, **kwargs)

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests
    monkeypatch.setattr(vllm_bulk, "place", place_then_fail)
    cfg = PredictConfig(
        input=manifest, model=wide_france, output=str(out), rows_per_part=4, **MIXED
    )
    with pytest.raises(Exception, match="injected failure"):
        predict(cfg)
    committed = pq.read_table(parts)["image_id"].to_pylist()
    assert 0 < len(committed) < len(kinds) and len(set(committed)) == len(committed)
    assert "good30" not in committed

    monkeypatch.setattr(vllm_bulk, "place", real_place)
    summary = predict(cfg)
    assert summary["rows_this_run"] == len(kinds) - len(committed)
    assert sorted(pq.read_table(parts)["image_id"].to_pylist()) == sorted(kinds)
    assert summary["rows_out"] == summary["rows_in"] == len(kinds)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_online_api_with_vllm_and_the_openai_client(ray_session, france):
    import httpx
    import openai
    from ray import serve

    from georay.serve.app import build_app
    from georay.serve.config import ServeConfig

    port = _free_port()
    cfg = ServeConfig(model=france, engine="vllm", max_new_tokens=48, max_num_seqs=4,
                      port=port, cpus_per_replica=0.5)  # fmt: skip
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(cfg), name="vllm-test", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        photo = encode_jpeg(np.random.default_rng(5).integers(0, 256, (90, 120, 3), np.uint8))
        good = httpx.post(base + "/v1/geolocate", files={"image": ("a.jpg", photo)}, timeout=120)
        assert good.status_code == 200, good.text
        assert good.json()["country_code"] == "FR" and good.json()["city"] == "Paris"
        bad = httpx.post(base + "/v1/geolocate", files={"image": ("b.jpg", b"nope")}, timeout=60)
        assert bad.status_code == 400 and "not an image" in bad.json()["error"]
        assert httpx.get(base + "/healthz").json()["engine"] == "vllm"

        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", timeout=120)
        url = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": "Where was this taken?"}]},
        ]  # fmt: skip
        reply = client.chat.completions.create(model="georay", messages=messages, max_tokens=32)
        text = reply.choices[0].message.content
        assert isinstance(text, str) and reply.choices[0].finish_reason in ("stop", "length")
        # The caller's own question changes the prompt: asked georay's, the model answers it.
        ours = [{"role": "user", "content": messages[1]["content"][:1]
                 + [{"type": "text", "text": cfg.question or _trained(france)}]}]  # fmt: skip
        answer = client.chat.completions.create(model="georay", messages=ours, max_tokens=48)
        assert "France" in answer.choices[0].message.content
        pieces = client.chat.completions.create(
            model="georay", messages=ours, max_tokens=48, stream=True
        )
        chunks = [c.choices[0].delta.content or "" for c in pieces if c.choices]
        assert len(chunks) > 2 and "".join(chunks) == answer.choices[0].message.content
        with pytest.raises(openai.BadRequestError):  # two images, one allowed
            two = [{"role": "user", "content": messages[1]["content"][:1] * 2}]
            client.chat.completions.create(model="georay", messages=two)
    finally:
        serve.shutdown()


def _trained(model: str) -> str:
    from georay.predict.predictor import default_question

    return default_question(model)
