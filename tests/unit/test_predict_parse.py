"""The answer parser: every shape a model answer takes becomes a ParsedAnswer, never an error."""

from __future__ import annotations

import pytest

from georay.protocol.answers import ParsedAnswer, parse_answer
from georay.protocol.prompts import INFERENCE_QUESTION, format_answer, location_answer


def _triple(answer: ParsedAnswer) -> tuple:
    return answer.country, answer.city, answer.answered


@pytest.mark.parametrize(
    "text",
    [
        "{'country': 'Switzerland', 'city': 'Zurich', 'reasons': 'Swiss flags.'}",
        '{"country": "Switzerland", "city": "Zurich", "reasons": "Swiss flags."}',
        '```json\n{"country": "Switzerland", "city": "Zurich", "reasons": "Swiss flags."}\n```',
        "```\n{'country': 'Switzerland', 'city': 'Zurich', 'reasons': 'Swiss flags.'}\n```",
        "Sure! Here is my answer:\n{'country': 'Switzerland', 'city': 'Zurich', "
        "'reasons': 'Swiss flags.'}\nHope this helps.",
        '{"Country": "Switzerland", "City": "Zurich", "Reason": "Swiss flags."}',
        "Country: Switzerland\nCity: Zurich\nReasons: Swiss flags.",
        "{country: Switzerland, city: Zurich, reasons: 'Swiss flags.'}",
        '{"answer": {"country": "Switzerland", "city": "Zurich", "reasons": "Swiss flags."}}',
        "  \n{'country': ' Switzerland ', 'city': 'Zurich', 'reasons': 'Swiss flags.'}  ",
    ],
)
def test_common_shapes(text):
    answer = parse_answer(text)
    assert _triple(answer) == ("Switzerland", "Zurich", True)
    assert answer.reasons == "Swiss flags."
    assert answer.error is None


def test_training_format_round_trips():
    text = format_answer(country="India", city="Mumbai", reasons="Tuk-tuks; Devanagari signs.")
    assert _triple(parse_answer(text)) == ("India", "Mumbai", True)
    assert parse_answer(location_answer("Japan", "Osaka")).city == "Osaka"


def test_reasons_as_list_joined():
    text = '{"country": "Chile", "city": "Santiago", "reasons": ["terracotta roofs", "Andes"]}'
    answer = parse_answer(text)
    assert answer.reasons == "terracotta roofs; Andes"
    assert answer.answered


def test_apostrophe_inside_single_quoted_value():
    # Invalid as a Python literal; the lenient scanner must keep the whole name.
    text = "{'country': 'Côte d'Ivoire', 'city': 'Abidjan', 'reasons': 'The driver's side.'}"
    answer = parse_answer(text)
    assert _triple(answer) == ("Côte d'Ivoire", "Abidjan", True)
    assert answer.reasons == "The driver's side."


def test_repr_with_double_quotes_for_apostrophes():
    text = format_answer(country="Côte d'Ivoire", city="Abidjan", reasons="x")
    assert parse_answer(text).country == "Côte d'Ivoire"


def test_truncated_reasons_kept_city_dropped():
    answer = parse_answer("{'country': 'France', 'city': 'Paris', 'reasons': 'The road mark")
    assert _triple(answer) == ("France", "Paris", True)
    assert answer.reasons == "The road mark"
    assert answer.truncated

    cut_city = parse_answer("{'country': 'France', 'city': 'Pa")
    assert _triple(cut_city) == ("France", None, True)
    assert cut_city.truncated


def test_truncated_before_country_is_unanswered():
    answer = parse_answer("{'country': 'Fra")
    assert not answer.answered
    assert answer.country is None
    assert answer.error == "truncated answer"


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I cannot determine the location of this image.",
        "It is impossible to tell where this photo was taken.",
        "As an AI, I can't identify locations.",
        "{'country': 'unknown', 'city': 'unknown', 'reasons': 'not enough information'}",
        '{"country": "N/A", "city": null, "reasons": ""}',
        "{'country': 'Cannot be determined', 'city': '', 'reasons': 'blurry'}",
    ],
)
def test_refusals_unanswered(text):
    answer = parse_answer(text)
    assert not answer.answered
    assert answer.country is None
    assert answer.error in {"refusal", "no usable country"}


@pytest.mark.parametrize("text", ["", "   ", None, 42, "asdf qwerty", "{}", "{'x': 1}", "[1, 2"])
def test_garbage_unanswered_never_raises(text):
    answer = parse_answer(text)
    assert isinstance(answer, ParsedAnswer)
    assert not answer.answered
    assert answer.error


def test_echoed_template_is_not_an_answer():
    # A base model may parrot the question's template, Ellipsis values and all.
    template = INFERENCE_QUESTION.split("Answer as ")[1]
    answer = parse_answer(template)
    assert not answer.answered
    assert answer.country is None


def test_template_echo_then_real_answer_uses_the_answer():
    text = "{'country': ..., 'city': ...}\n{'country': 'Peru', 'city': 'Lima', 'reasons': 'x'}"
    assert _triple(parse_answer(text)) == ("Peru", "Lima", True)


def test_country_only_answer():
    answer = parse_answer("{'country': 'Kenya', 'reasons': 'Matatus.'}")
    assert _triple(answer) == ("Kenya", None, True)


def test_coordinates_parsed_and_validated():
    ok = parse_answer('{"country": "Japan", "lat": 35.68, "lon": "139.69"}')
    assert (ok.lat, ok.lon) == (35.68, 139.69)
    bad = parse_answer('{"country": "Japan", "lat": 135.0, "lon": 10}')
    assert (bad.lat, bad.lon) == (None, None)
    assert bad.answered


def test_numeric_or_nested_country_values_rejected():
    assert not parse_answer('{"country": 123}').answered
    assert not parse_answer('{"country": {"name": 1}}').answered
    assert parse_answer('{"country": ["Brazil"]}').country == "Brazil"


def test_first_of_several_objects_with_country_wins():
    text = "{'country': 'Spain', 'city': 'Madrid'} or maybe {'country': 'Portugal'}"
    assert parse_answer(text).country == "Spain"


def test_braces_inside_strings_do_not_break_spans():
    text = '{"country": "Italy", "city": "Rome", "reasons": "signs like {STOP} and }"}'
    answer = parse_answer(text)
    assert _triple(answer) == ("Italy", "Rome", True)
    assert "{STOP}" in answer.reasons


def test_unclosed_fence_and_trailing_prose():
    text = '```json\n{"country": "Norway", "city": "Bergen", "reasons": "fjord"}\nI think'
    assert _triple(parse_answer(text)) == ("Norway", "Bergen", True)


def test_last_key_followed_by_prose_with_quotes():
    text = "{'country': 'Peru', 'reasons': 'Andes'} Note: 'this', is a guess."
    answer = parse_answer(text)
    assert answer.reasons == "Andes"


def test_very_long_country_value_rejected():
    assert not parse_answer("{'country': '" + "x" * 200 + "'}").answered


def test_deeply_nested_input_does_not_raise():
    answer = parse_answer("{" * 5000 + "}" * 5000)
    assert not answer.answered


def test_every_prefix_and_random_noise_parse_without_parser_errors():
    import random

    rng = random.Random(0)
    full = format_answer(country="New Zealand", city="Wellington", reasons="Left-hand traffic.")
    texts = [full[:i] for i in range(len(full) + 1)]
    alphabet = "{}[]'\":,;`\n abcxyz country city reasons ... \\"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(300)]
    for text in texts:
        answer = parse_answer(text)
        assert not (answer.error or "").startswith("parser error"), (text, answer)
        if answer.answered:
            assert answer.country
    # Every prefix that has the whole country value names exactly that country (never "New Zea").
    for text in texts[: len(full) + 1]:
        assert parse_answer(text).country in (None, "New Zealand"), text
