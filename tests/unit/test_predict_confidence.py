"""The VLM's confidence from its own token probabilities (issue 20), on a model whose logits are
known: the tiny Qwen2-VL with its output layer scripted, so every probability can be computed by
hand from the logits the test sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from georay.predict.config import ModelSettings
from georay.protocol.prompts import format_answer
from georay.protocol.tokenprob import Scored, locate, path_probability, token_ends

FRANCE = format_answer(country="France", city="Paris")
GERMANY = format_answer(country="Germany", city="Berlin")
# Logits the script gives: the path's next token, the branch point's two choices, the rest 0.
NEXT, FIRST, SECOND = 12.0, 6.0, 5.0


class Scripted:
    """Make a real model's next-token logits a function of what it has generated so far.

    A forward pre-hook on the model keeps each row's tokens; a forward hook on ``lm_head``
    replaces the last position's logits by ``logits(generated)``. Everything else (processor,
    vision tower, ``generate``, caching, padding) is the real thing.
    """

    def __init__(self, model, prompt_len: int, logits):
        self.prompt_len, self.logits, self.rows = prompt_len, logits, []
        self.pad = model.generation_config.pad_token_id
        model.register_forward_pre_hook(self._inputs, with_kwargs=True)
        model.lm_head.register_forward_hook(self._outputs)

    def _inputs(self, module, args, kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1:  # prefill: the whole prompt (and any prefix), left-padded
            rows = [row.tolist() for row in ids]
            self.rows = [r[next(i for i, t in enumerate(r) if t != self.pad) :] for r in rows]
        else:
            for row, token in zip(self.rows, ids[:, 0].tolist(), strict=True):
                row.append(token)

    def _outputs(self, module, args, output):
        import torch

        for b, row in enumerate(self.rows):
            output[b, -1] = torch.as_tensor(self.logits(row[self.prompt_len :]))
        return output


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """A Predictor whose model writes FRANCE, with GERMANY as the branch point's runner-up."""
    from georay.models.vlm import encode_prompts, tiny_qwen2vl
    from georay.predict.predictor import Predictor

    path = tmp_path_factory.mktemp("scripted")
    tiny_qwen2vl(save_dir=path, seed=0)
    predictor = Predictor(ModelSettings(model=str(path), max_new_tokens=40, batch_size=4))
    tok = predictor.processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    paths = [tok(t, add_special_tokens=False)["input_ids"] + [eos] for t in (FRANCE, GERMANY)]
    at = next(i for i, (a, b) in enumerate(zip(*paths, strict=False)) if a != b)
    vocab = predictor.model.config.text_config.vocab_size

    def logits(generated: list[int]) -> np.ndarray:
        out = np.zeros(vocab, dtype=np.float32)
        if len(generated) == at and generated == paths[0][:at]:
            out[paths[0][at]], out[paths[1][at]] = FIRST, SECOND
            return out
        for p in paths:
            if generated == p[: len(generated)] and len(generated) < len(p):
                out[p[len(generated)]] = NEXT
                return out
        out[eos] = NEXT
        return out

    image = np.zeros((56, 56, 3), np.uint8)
    prompt = encode_prompts(predictor.processor, [image], [predictor.question])
    Scripted(predictor.model, prompt["input_ids"].shape[1], logits)
    return predictor, paths, at, vocab, image


def _log_softmax_at(vocab: int, logits: dict[int, float], token: int) -> float:
    """log p(token) of a logit vector that is 0 except ``logits`` (by hand)."""
    total = sum(math.exp(v) for v in logits.values()) + (vocab - len(logits))
    return logits.get(token, 0.0) - math.log(total)


def test_confidence_of_a_model_whose_logits_are_known(scripted):
    predictor, (france, germany), at, vocab, image = scripted
    [row] = predictor.predict([image])
    assert row["raw_text"] == FRANCE and row["country_code"] == "FR" and row["city"] == "Paris"
    # By hand: France's first token wins the branch point (logit 6 against 5); every other
    # token of both paths has logit 12 against 0 for the rest of the vocabulary.
    first = _log_softmax_at(vocab, {france[at]: FIRST, germany[at]: SECOND}, france[at])
    step = _log_softmax_at(vocab, {0: NEXT}, 0)
    tok = predictor.processor.tokenizer
    text_ends = token_ends(lambda t: tok.decode(t), france[:-1])
    country_end = next(i for i, e in enumerate(text_ends) if e >= FRANCE.index("France") + 6)
    city_end = next(i for i, e in enumerate(text_ends) if e >= FRANCE.index("Paris") + 5)
    assert row["country_confidence"] == pytest.approx(
        math.exp(first + step * (country_end - at)), rel=1e-9
    )
    assert row["city_confidence"] == pytest.approx(
        math.exp(first + step * (city_end - at)), rel=1e-9
    )
    # The runner-up, completed greedily by the model itself: Germany / Berlin.
    alt = _log_softmax_at(vocab, {france[at]: FIRST, germany[at]: SECOND}, germany[at])
    g_ends = token_ends(lambda t: tok.decode(t), germany[:-1])
    g_city_end = next(i for i, e in enumerate(g_ends) if e >= GERMANY.index("Berlin") + 6)
    head, second = row["candidates"][:2]
    assert (head["country_code"], head["city"]) == ("FR", "Paris")
    assert head["probability"] == pytest.approx(row["city_confidence"])
    assert (second["country_code"], second["city"]) == ("DE", "Berlin")
    assert second["probability"] == pytest.approx(
        math.exp(alt + step * (g_city_end - at)), rel=1e-9
    )
    assert sum(c["probability"] for c in row["candidates"]) <= 1.0
    assert row["abstained"] is False


def test_scored_generation_is_the_plain_answer(scripted):
    from georay.models.vlm import encode_prompts, generate_answers, generate_scored

    predictor, *_ = scripted
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(56, 56, 3), (84, 70, 3)]]
    batch = encode_prompts(predictor.processor, images, [predictor.question] * 2)
    scored = generate_scored(predictor.model, predictor.processor, batch, 40, 3)
    plain = generate_answers(predictor.model, predictor.processor, images, predictor.question, 40)
    assert [s.text for s in scored] == plain
    for s in scored:
        assert len(s.tokens) == len(s.logprobs) == len(s.top)
        assert all(top[0][1] >= lp - 1e-6 for top, lp in zip(s.top, s.logprobs, strict=True))


def test_locate_and_path_probability_by_hand():
    # One character per token: the arithmetic without a tokenizer.
    text = "{'country': 'Chile', 'city': 'Arica'}"
    from georay.protocol.answers import parse_answer

    scored = Scored(tokens=list(range(len(text))), logprobs=[-0.1] * len(text), text=text)
    found = locate(scored, parse_answer(text), lambda t: text[: len(t)])
    assert (found.start, found.country_end) == (text.index("Chile"), text.index("Chile") + 4)
    assert found.city_end == text.index("Arica") + 4
    assert path_probability(scored.logprobs, found.start, found.country_end) == pytest.approx(
        math.exp(-0.5)
    )
    assert locate(scored, parse_answer("I cannot tell."), lambda t: "") is None


def test_settings_of_confidence_validate():
    with pytest.raises(ValueError, match="top_k"):
        ModelSettings(model="x", top_k=0)
    with pytest.raises(ValueError, match="min_confidence"):
        ModelSettings(model="x", min_confidence=1.5)
    with pytest.raises(ValueError, match="needs confidence"):
        ModelSettings(model="x", min_confidence=0.5, confidence=False)
