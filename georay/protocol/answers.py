"""Turn whatever a vision-language model wrote into a country, a city and reasons.

Models trained on the GeoReasoner format answer with a Python-dict literal
(``{'country': 'Switzerland', 'city': 'Zurich', 'reasons': '...'}``), but base models and
partly trained ones also write JSON, wrap it in markdown fences, add prose around it, give
``reasons`` as a list, stop mid-object when ``max_new_tokens`` runs out, or refuse. Every one of
those becomes a :class:`ParsedAnswer`; :func:`parse_answer` never raises, because one odd answer
must not fail a bulk job of millions of images.

Strategy, strictest first: every balanced ``{...}`` span is tried with ``json.loads`` and then
``ast.literal_eval``; if none yields a country, a lenient key scanner reads ``key: value`` pairs
(quoted or bare, tolerant of apostrophes inside values and of a missing closing brace). A field cut
off by truncation is dropped for country/city (a half name would resolve to the wrong place) but
kept for reasons.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

# Key spellings accepted for each field (compared case-insensitively).
_ALIASES = {
    "country": ("country", "country_name"),
    "city": ("city", "city_name", "town"),
    "reasons": ("reasons", "reason", "reasoning", "explanation", "rationale"),
    "lat": ("lat", "latitude"),
    "lon": ("lon", "lng", "long", "longitude"),
}
_KEY_TO_FIELD = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}

# Values that mean "no answer" rather than a place.
_PLACEHOLDERS = {
    "", "...", "…", "?", "-", "unknown", "n/a", "na", "none", "null", "nil", "unsure", "not sure",
    "unclear", "undetermined", "not applicable", "not specified", "unspecified",
    "cannot determine", "can't determine", "cannot be determined", "indeterminate", "uncertain",
}  # fmt: skip
_REFUSAL = re.compile(
    r"\b(i\s*(?:am|'m)\s*(?:not able|unable|sorry)|i\s*(?:can(?:no|')t|cannot|could\s*n[o']t)|"
    r"(?:can(?:no|')t|cannot|impossible to|unable to|not possible to)\s+(?:be\s+)?"
    r"(?:determine|determined|tell|identify|identified|say|know|infer|locate|pinpoint)|"
    r"not enough (?:information|context|clues)|hard to (?:say|tell)|as an ai)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)(?:```|$)", re.DOTALL)


@dataclass
class ParsedAnswer:
    """What a model answer says. ``answered`` is True when it names a usable country.

    ``error`` says why an answer is not usable (``"refusal"``, ``"no answer found"``, ...).
    ``truncated`` is True when the text stopped inside the answer object.
    """

    country: str | None = None
    city: str | None = None
    reasons: str | None = None
    lat: float | None = None
    lon: float | None = None
    answered: bool = False
    truncated: bool = False
    error: str | None = None
    extra: dict = field(default_factory=dict, repr=False)


def parse_answer(text: object) -> ParsedAnswer:
    """Parse one model answer (anything but a string is unparseable); never raises. Refusals,
    placeholders ("unknown") and text with no recognisable answer give ``answered=False`` with
    an ``error`` reason."""
    try:
        return _parse(text)
    except Exception as err:  # a parser bug must not fail a job: record it on the row
        return ParsedAnswer(error=f"parser error: {type(err).__name__}: {err}")


def _parse(text: object) -> ParsedAnswer:
    if not isinstance(text, str) or not text.strip():
        return ParsedAnswer(error="empty answer")
    body = _unfence(text)
    fields, truncated = _from_objects(body)
    if not _clean_place(fields.get("country")):
        scanned, scan_truncated = _scan_keys(body)
        if _clean_place(scanned.get("country")) or not fields:
            fields, truncated = scanned, scan_truncated
    return _finish(fields, truncated, text)


def _unfence(text: str) -> str:
    """Return the contents of markdown code fences (joined), or the text itself."""
    blocks = [m.group(1) for m in _FENCE.finditer(text) if m.group(1).strip()]
    return "\n".join(blocks) if blocks else text


def _from_objects(text: str) -> tuple[dict, bool]:
    """Fields from the first balanced ``{...}`` span that parses and names a country."""
    first: dict = {}
    for span in _brace_spans(text):
        value = _literal(span)
        found = _fields_of(value) if value is not None else {}
        if _clean_place(found.get("country")):
            return found, False
        first = first or found
    return first, False


def _brace_spans(text: str) -> list[str]:
    """Balanced top-level ``{...}`` substrings, skipping braces inside quoted strings."""
    spans, depth, start, quote, escaped = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        # An apostrophe between letters (d'Ivoire in a double-quoted dict is handled above;
        # here outside any string) is prose, not a string opener.
        if ch in "'\"" and depth > 0 and not _is_apostrophe(text, i):
            quote = ch
        elif ch == "{":
            depth, start = depth + 1, i if depth == 0 else start
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _is_apostrophe(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()


def _literal(span: str) -> object | None:
    """``json.loads`` then ``ast.literal_eval`` (single quotes, True/None); None if neither."""
    try:
        return json.loads(span)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(span)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _fields_of(value: object, depth: int = 0) -> dict:
    """Known fields of a parsed object, looking one level into nested dicts and lists."""
    if depth > 3:
        return {}
    if isinstance(value, list):
        for item in value:
            found = _fields_of(item, depth + 1)
            if found:
                return found
        return {}
    if not isinstance(value, dict):
        return {}
    found: dict = {}
    for key, item in value.items():
        name = _KEY_TO_FIELD.get(str(key).strip().lower())
        if name and name not in found:
            found[name] = item
    if "country" not in found:
        for item in value.values():
            nested = _fields_of(item, depth + 1)
            if "country" in nested:
                return {**nested, **found}
    return found


_KEY_PATTERN = re.compile(
    r"""["']?\b(?P<key>"""
    + "|".join(sorted(map(re.escape, _KEY_TO_FIELD), key=len, reverse=True))
    + r""")\b["']?\s*[:=]\s*""",
    re.IGNORECASE,
)


def _scan_keys(text: str) -> tuple[dict, bool]:
    """Lenient ``key: value`` reader for text no literal parser accepts.

    Handles truncated objects (no closing quote or brace), apostrophes inside single-quoted
    values (``'Côte d'Ivoire'``), bare values (``Country: France``) and list-valued reasons.
    Returns the fields and whether any value ran into the end of the text.
    """
    found: dict = {}
    truncated = False
    matches = list(_KEY_PATTERN.finditer(text))
    for i, match in enumerate(matches):
        name = _KEY_TO_FIELD[match.group("key").lower()]
        if name in found:
            continue
        stop = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value, complete = _scan_value(text[match.end() : stop], last=i + 1 == len(matches))
        if not complete:
            truncated = True
            if name in ("country", "city", "lat", "lon"):
                continue  # a half place name would resolve to the wrong place
        found[name] = value
    return found, truncated


def _scan_value(chunk: str, last: bool) -> tuple[object, bool]:
    """One value from the text between its key and the next key: (value, complete)."""
    chunk = chunk.strip()
    if chunk.startswith("["):
        items = re.findall(r"""(["'])(.*?)\1\s*(?=[,\]]|$)""", chunk, re.DOTALL)
        return [item for _, item in items], "]" in chunk
    if chunk[:1] in ("'", '"'):
        quote, body = chunk[0], chunk[1:]
        ends = [m.start() for m in re.finditer(quote + r"\s*(?:[,;}\]\n]|$)", body)]
        if last:
            # Prose may follow the object: stop at the quote that closes it, else the first one.
            braced = [m.start() for m in re.finditer(quote + r"\s*\}", body)]
            ends = braced[:1] or ends[:1]
        if ends:
            # Not the first quote but the last before the next key: keeps "Côte d'Ivoire".
            return body[: ends[-1]], True
        return body.rstrip(), False
    # Bare value (``Country: France``): up to the end of the line or a separator.
    return re.split(r"[,;}\n]", chunk, maxsplit=1)[0].strip(), True


def _clean_place(value: object) -> str | None:
    """A usable place name, or None for missing, placeholder and refusal values."""
    if value is None or value is Ellipsis or isinstance(value, (dict, bool)):
        return None
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
        return _clean_place(value)
    text = " ".join(str(value).split()).strip(" .,;:'\"`*")
    if text.casefold() in _PLACEHOLDERS or _REFUSAL.search(text) or len(text) > 80:
        return None
    if not re.search(r"[^\W\d_]", text) or re.search(r"[{}\[\]<>]", text):
        return None  # no letter at all ("123"), or a fragment of markup/an object
    return text


def _clean_reasons(value: object) -> str | None:
    if value is None or value is Ellipsis:
        return None
    if isinstance(value, (list, tuple)):
        parts = [_clean_reasons(v) for v in value]
        return "; ".join(p for p in parts if p) or None
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items()) or None
    text = " ".join(str(value).split()).strip()
    return None if text.casefold() in _PLACEHOLDERS else text


def _clean_coord(value: object, limit: float) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if -limit <= number <= limit else None


def _finish(fields: dict, truncated: bool, text: str) -> ParsedAnswer:
    country = _clean_place(fields.get("country"))
    city = _clean_place(fields.get("city"))
    lat = _clean_coord(fields.get("lat"), 90.0)
    lon = _clean_coord(fields.get("lon"), 180.0)
    if lat is None or lon is None:
        lat = lon = None
    answer = ParsedAnswer(
        country=country,
        city=city,
        reasons=_clean_reasons(fields.get("reasons")),
        lat=lat,
        lon=lon,
        answered=country is not None,
        truncated=truncated,
    )
    if not answer.answered:
        raw_country = fields.get("country")
        if _REFUSAL.search(text) or (raw_country is not None and raw_country is not Ellipsis):
            answer.error = "refusal" if _REFUSAL.search(text) else "no usable country"
        else:
            answer.error = "truncated answer" if truncated else "no answer found"
    return answer


def value_span(text: str, name: str, value: str) -> tuple[int, int] | None:
    """Where ``value`` is written as field ``name`` in ``text``: ``(start, end)`` characters.

    The first key spelling of ``name`` (any alias, quoted or not) whose value, after opening
    quotes and spaces, starts with ``value``; None when the text does not write it so (a value
    :func:`parse_answer` cleaned up, or found in nested JSON under another key). Confidence
    needs the characters to find the tokens that wrote the value.
    """
    for match in _KEY_PATTERN.finditer(text):
        if _KEY_TO_FIELD[match.group("key").lower()] != name:
            continue
        rest = text[match.end() :]
        start = match.end() + len(rest) - len(rest.lstrip(" \t'\"`"))
        if value and text.startswith(value, start):
            return start, start + len(value)
    return None
