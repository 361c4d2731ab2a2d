"""Training examples for one worker: SFT records -> encoded tensors -> padded batches.

The order is a pure function of (seed, epoch, rank, world size), so a worker that restarts from
a checkpoint at optimizer step ``s`` sees exactly the batches it would have seen, without
replaying the ones before ``s``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from georay.data.images import decode_fit
from georay.data.splits import holdout_mask
from georay.data.storage import parent_of, read_bytes, resolve_relative
from georay.models.vlm import IGNORE_INDEX, collate, encode_example, processor_max_pixels
from georay.protocol.sft import SftExample, read_sft

log = logging.getLogger(__name__)


def split_validation(
    examples: list[SftExample], fraction: float, seed: int = 0
) -> tuple[list[SftExample], list[SftExample]]:
    """(train, validation): a stable share of examples, chosen by a hash of ``seed:id``.

    The same example lands on the same side whatever the worker count or the file's order.
    """
    if fraction <= 0:
        return examples, []
    held = holdout_mask([ex.id for ex in examples], fraction, seed)
    train = [ex for ex, h in zip(examples, held, strict=True) if not h]
    return train, [ex for ex, h in zip(examples, held, strict=True) if h]


def load_examples(data_uri: str) -> list[SftExample]:
    """The SFT file's examples, image paths relative to the SFT file made absolute."""
    base = parent_of(data_uri)
    return [
        SftExample(ex.id, resolve_relative(ex.image, base), ex.question, ex.answer)
        for ex in read_sft(data_uri)
    ]


# Encoded examples kept in memory per worker. A tiny-model example is a few KB, so a CPU run
# decodes and tokenizes each once; a 448x448 example of a real model is ~5 MB, so 70K curated
# views would need ~350 GB: past the budget, examples are encoded again when they come round.
CACHE_BYTES = 2 << 30


class EncodedExamples:
    """Examples encoded on first use, and kept in memory up to ``cache_bytes`` in all.

    Examples whose image cannot be read or decoded, or that are longer than ``max_length``
    tokens, are skipped with a warning (and remembered as bad): one bad file must not stop a
    training run.
    """

    def __init__(
        self,
        examples: list[SftExample],
        processor: Any,
        max_length: int,
        cache_bytes: int = CACHE_BYTES,
    ):
        self.examples = examples
        self.processor = processor
        self.max_length = max_length
        self.cache_bytes = cache_bytes
        self.max_pixels = processor_max_pixels(processor)
        self.cached_bytes = 0
        self._cache: dict[int, dict[str, torch.Tensor] | None] = {}
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.examples)

    def _encode(self, index: int) -> dict[str, torch.Tensor] | None:
        ex = self.examples[index]
        try:
            # Decoded at the size the model sees, as every prediction path decodes it.
            image = decode_fit(read_bytes(ex.image), self.max_pixels)
            item = encode_example(self.processor, image, ex.question, ex.answer)
            if item["input_ids"].shape[0] > self.max_length:
                raise ValueError(f"{item['input_ids'].shape[0]} tokens > max_length")
        except Exception as err:  # noqa: BLE001 - any bad example is skipped, not fatal
            log.warning("skipping example %s: %s", ex.id, err)
            self.skipped.append((ex.id, str(err)))
            self._cache[index] = None  # never tried again
            return None
        return item

    def get(self, index: int) -> dict[str, torch.Tensor] | None:
        if index in self._cache:
            return self._cache[index]
        item = self._encode(index)
        if item is not None:
            size = sum(t.numel() * t.element_size() for t in item.values())
            if self.cached_bytes + size <= self.cache_bytes:
                self._cache[index] = item
                self.cached_bytes += size
        return item


def batches_per_epoch(n_examples: int, world_size: int, batch_size: int) -> int:
    """Micro-batches each worker gets per epoch (equal on every worker; remainders dropped)."""
    return (n_examples // world_size) // batch_size


def micro_batches(
    data: EncodedExamples,
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    seed: int,
    start: int,
    pad_token_id: int,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless padded micro-batches for one worker, starting at micro-batch number ``start``.

    Each epoch shuffles all examples with ``seed + epoch``, gives worker ``rank`` every
    ``world_size``-th of them and cuts that into ``batch_size`` batches.
    """
    per_epoch = batches_per_epoch(len(data), world_size, batch_size)
    if per_epoch < 1:
        raise ValueError(
            f"{len(data)} examples are too few for {world_size} workers x batch {batch_size}"
        )
    index, last = start, None
    while True:
        epoch, offset = divmod(index, per_epoch)
        order = np.random.default_rng(seed + epoch).permutation(len(data))[rank::world_size]
        for i in range(offset, per_epoch):
            chosen = order[i * batch_size : (i + 1) * batch_size]
            items = [item for j in chosen if (item := data.get(int(j))) is not None]
            if items:
                last = collate(items, pad_token_id)
            elif last is None:
                raise ValueError(f"every example of worker {rank}'s first batch is unreadable")
            # A batch of only bad examples repeats the last one: every rank must take a step.
            yield last
            index += 1


def validation_batches(
    data: EncodedExamples, batch_size: int, pad_token_id: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Every readable validation example once, in file order, in padded batches."""
    items = [item for i in range(len(data)) if (item := data.get(i)) is not None]
    for start in range(0, len(items), batch_size):
        yield collate(items[start : start + batch_size], pad_token_id)


def count_tokens(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(tokens processed, tokens in the loss) of a batch."""
    return int(batch["attention_mask"].sum()), int((batch["labels"] != IGNORE_INDEX).sum())
