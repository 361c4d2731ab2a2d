"""The vLLM path of ``georay predict``: Ray's own batch-LLM stack inside the bulk-job skeleton.

::

    load_images (CPU tasks, at the size the model sees)
      -> preprocess: prompt + image + greedy sampling params (CPU tasks)
      -> vLLM engine stage of ray.data.llm (build_processor; one engine per actor)
      -> place: parse + gazetteer + H3 into the predictions schema (CPU tasks)

Only ``ray.data.llm``'s engine stage runs: georay renders the prompt itself (the same
chat-template text the HF engine feeds) and hands the decoded pixels over, so the CPU stages
that would re-decode images and re-render templates are switched off.

Confidence: each answer asks for its top-k logprobs (``SamplingParams(logprobs=k)``), so
``country_confidence`` and ``city_confidence`` are computed exactly as on the HF engine
(:mod:`georay.protocol.tokenprob`). The candidates are the answer alone: completing the
alternatives is a second engine pass over (image, alternative) rows whose outputs must come back
to their image, a regrouping this one-pass streaming job does not do (``georay serve --engine
vllm`` and the HF engine complete them; docs/confidence.md).

Every row goes through the engine, so rows in = rows out in one streaming pass: a row that
failed before (unreadable image) or needs no answer (``--skip-exif-gps``) is sent as a one-token
request on a blank image and keeps its own status; its output is ignored. A row the engine fails
on comes back with ``__inference_error__`` (``should_continue_on_error``) and becomes an error
row, never a failed job.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from georay import pipeline as pl
from georay.predict.config import PredictConfig
from georay.predict.rows import predictions_table
from georay.predict.vllm_engine import (
    CPU_ENV,
    VllmModel,
    engine_kwargs,
    has_gpu,
    logprob_steps,
    scored_output,
    stop_token_ids,
)

_BLANK = np.zeros((28, 28, 3), dtype=np.uint8)  # the smallest image a Qwen2-VL processor takes
_KEEP = ("image_id", "uri", "status", "error", "skip", "exif_lat", "exif_lon")


def _flag(value) -> bool:
    """A boolean cell that may come back as None or NaN (absent in part of a block)."""
    return value is not None and value == value and bool(value)


def _preprocess(prompt: str, max_tokens: int, adapter: str | None, logprobs: int | None):
    def preprocess(row: dict) -> dict:
        answer = row["status"] == pl.OK and not _flag(row.get("skip"))
        if answer:
            shape = (int(row["height"]), int(row["width"]), 3)
            image = np.frombuffer(row["pixels"], np.uint8).reshape(shape)
        else:
            image = _BLANK
        params = {"max_tokens": max_tokens if answer else 1, "temperature": 0.0}
        if logprobs is not None and answer:
            params["logprobs"] = logprobs  # the top-k of every step, raw (as the HF engine's)
        out = {
            "prompt": prompt,
            "multimodal_data": {"image": image},
            "sampling_params": params,
        }
        if adapter:
            out["model"] = adapter  # ray.data.llm turns a row's model into its LoRARequest
        return out

    return preprocess


def _postprocess(row: dict) -> dict:
    """The columns the place stage reads (an engine error row skips this and keeps them all).

    ``ray.data.llm`` gives each step's logprobs as ``{token: {"logprob", "rank",
    "decoded_token"}}``; they leave here as plain lists (token ids, logprobs, per-step top-k),
    which every block can hold whatever its other rows carry.
    """
    steps = logprob_steps(row.get("logprobs"))
    return {
        **{k: row.get(k) for k in _KEEP},
        "generated_text": row["generated_text"],
        "generated_ids": [int(t) for t in row.get("generated_tokens") or []],
        "top_ids": [[t for t, _ in step] for step in steps],
        "top_logprobs": [[lp for _, lp in step] for step in steps],
        "__inference_error__": "",
    }


def _scored(row: dict, stop_ids: set[int]):
    """The engine's answer of one row with its logprobs (None where it gave none)."""
    ids, top_ids = row.get("generated_ids"), row.get("top_ids")
    if ids is None or top_ids is None or not len(top_ids):
        return None
    steps = [{int(t): float(lp) for t, lp in zip(t_ids, lps, strict=True)}
             for t_ids, lps in zip(top_ids, row["top_logprobs"], strict=True)]  # fmt: skip
    return scored_output(ids, steps, str(row["generated_text"] or ""), stop_ids)


@functools.cache
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def place(batch, *, model_id: str, h3_resolution: int, confidence: dict | None = None) -> pa.Table:
    """Engine outputs -> predictions rows (the schema the HF engine writes).

    With ``confidence`` (``path`` of the tokenizer, ``top_k``, ``calibration``,
    ``min_confidence``), answers carry their token probabilities as on the HF engine; the
    candidates are the answer alone (one engine pass: module docstring).
    """
    from georay.predict.place import confidence_rows, plan_confidence, rows_from_texts

    rows = batch.to_dict("records")
    texts: dict[int, str | Exception] = {}
    for i, row in enumerate(rows):
        if row["status"] != pl.OK or _flag(row.get("skip")):
            continue
        failed = row.get("__inference_error__")
        if isinstance(failed, str) and failed:
            texts[i] = RuntimeError(failed)
        else:
            texts[i] = str(row["generated_text"] or "")
    if confidence is None:
        placed = rows_from_texts(list(texts.values()), h3_resolution=h3_resolution,
                                 model_id=model_id)  # fmt: skip
        return predictions_table(rows, dict(zip(texts, placed, strict=True)), model_id,
                                 method="vlm", h3_resolution=h3_resolution)  # fmt: skip
    tokenizer = _tokenizer(confidence["path"])
    stop = stop_token_ids(tokenizer)
    scored = [t if isinstance(t, Exception) else _scored(rows[i], stop) or t
              for i, t in texts.items()]  # fmt: skip

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens, skip_special_tokens=True)

    plan = plan_confidence(scored, decode, top_k=1)
    placed = confidence_rows(plan, [], decode, top_k=confidence["top_k"],
                             h3_resolution=h3_resolution, model_id=model_id,
                             calibration=confidence["calibration"],
                             min_confidence=confidence["min_confidence"])  # fmt: skip
    return predictions_table(rows, dict(zip(texts, placed, strict=True)), model_id,
                             method="vlm", h3_resolution=h3_resolution)  # fmt: skip


def vllm_stages(ds, cfg: PredictConfig, model: VllmModel):
    """Decoded rows -> predictions rows through ``ray.data.llm`` (the module docstring)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    gpu = has_gpu()
    cpus = cfg.cpus_per_actor or 1.0
    bundle = {"CPU": cpus, "GPU": cfg.gpus_per_actor or 1.0} if gpu else {"CPU": cpus}
    kwargs = engine_kwargs(cfg, model, gpu=gpu)
    kwargs.pop("model")  # model_source says it
    # Without stats a row's ``metrics`` is None whether it was answered or failed. With them an
    # answered row carries a struct there and a failed one a null, and Ray 2.60 cannot combine
    # an all-failed engine batch with an answered one into one block (DESIGN: "Engines for
    # generation", issue 26): one refused image then ends the whole job.
    kwargs["disable_log_stats"] = True
    small = {"num_cpus": min(cfg.decode_cpus, 0.25)}
    processor = build_processor(
        vLLMEngineProcessorConfig(
            model_source=model.path,
            engine_kwargs=kwargs,
            batch_size=cfg.batch_size,
            concurrency=cfg.num_actors,
            # The default bundle asks for a GPU; on CPU the engine actor needs a CPU bundle.
            placement_group_config={"bundles": [bundle] * cfg.tensor_parallel_size},
            runtime_env=None if gpu else {"env_vars": CPU_ENV},
            prepare_multimodal_stage=False,
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,
            log_engine_metrics=False,  # its Prometheus logger imports ray.serve
            should_continue_on_error=True,
        ),
        preprocess=_preprocess(
            model.prompt, cfg.max_new_tokens, model.adapter, cfg.top_k if cfg.confidence else None
        ),  # fmt: skip
        postprocess=_postprocess,
        preprocess_map_kwargs=small,
        postprocess_map_kwargs=small,
    )
    ds = processor(ds)
    return ds.map_batches(
        place,
        batch_format="pandas",
        num_cpus=small["num_cpus"],
        fn_kwargs={"model_id": cfg.model, "h3_resolution": cfg.h3_resolution,
                   "confidence": _confidence(cfg, model)},
    )  # fmt: skip


def _confidence(cfg: PredictConfig, model: VllmModel) -> dict | None:
    """What the place stage needs to score answers (None: ``--no-confidence``)."""
    if not cfg.confidence:
        return None
    return {"path": model.path, "top_k": cfg.top_k, "min_confidence": cfg.min_confidence,
            "calibration": cfg.load_calibration()}  # fmt: skip
