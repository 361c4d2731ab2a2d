"""Place-name normalization and the curated country aliases the gazetteer adds to ISO names."""

from __future__ import annotations

import re
import unicodedata

# Letters NFKD does not decompose into base + combining mark, so they would survive as
# non-ASCII ("Łódź" must match "Lodz", "Ørsta" "Orsta").
_LETTERS = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ı": "i", "ß": "ss", "æ": "ae",
     "œ": "oe", "þ": "th", "ŀ": "l"}
)  # fmt: skip
_JOIN = re.compile(r"[.'’ʼ`´]")  # dropped without a space: "U.S.A." -> "usa", "d'Ivoire"
_SPLIT = re.compile(r"[^\w]+|_")  # everything else that is not a letter/digit separates words


def normalize_name(text: str) -> str:
    """Normalize a place name for matching.

    Casefolds, strips diacritics (NFKD), maps a few special letters to ASCII, drops periods and
    apostrophes, turns other punctuation into spaces and collapses whitespace; "&" becomes "and".

    Parameters
    ----------
    text : str
        Any free text; non-strings give "".

    Returns
    -------
    str
        e.g. "Zürich" -> "zurich", "U.S.A." -> "usa", "Côte d'Ivoire" -> "cote divoire".
    """
    if not isinstance(text, str):
        return ""
    t = unicodedata.normalize("NFKD", text.casefold())
    t = "".join(c for c in t if not unicodedata.combining(c)).translate(_LETTERS)
    t = _JOIN.sub("", t.replace("&", " and "))
    return " ".join(_SPLIT.sub(" ", t).split())


# Normalized alias -> ISO 3166-1 alpha-2. ISO codes, ISO/pycountry names and the GeoNames
# country list are indexed by the gazetteer already; these are the everyday forms on top.
COUNTRY_ALIASES: dict[str, str] = {
    "usa": "US", "america": "US", "united states of america": "US", "united states": "US",
    "uk": "GB", "britain": "GB", "great britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "united kingdom": "GB",
    "holland": "NL", "the netherlands": "NL",
    "czechia": "CZ", "czech republic": "CZ",
    "south korea": "KR", "korea": "KR", "republic of korea": "KR",
    "north korea": "KP", "dprk": "KP",
    "russia": "RU", "turkey": "TR", "turkiye": "TR",
    "ivory coast": "CI", "cote divoire": "CI",
    "vietnam": "VN", "laos": "LA", "syria": "SY", "iran": "IR", "bolivia": "BO",
    "venezuela": "VE", "tanzania": "TZ", "moldova": "MD", "taiwan": "TW", "brunei": "BN",
    "macedonia": "MK", "north macedonia": "MK", "vatican": "VA", "vatican city": "VA",
    "palestine": "PS", "uae": "AE", "emirates": "AE", "burma": "MM", "swaziland": "SZ",
    "cape verde": "CV", "east timor": "TL", "micronesia": "FM", "kosovo": "XK",
    "drc": "CD", "dr congo": "CD", "congo kinshasa": "CD", "democratic republic of the congo": "CD",
    "congo brazzaville": "CG", "republic of the congo": "CG",
    "bosnia": "BA", "bosnia and herzegovina": "BA", "the gambia": "GM", "the bahamas": "BS",
    # Endonyms a model or a player may write.
    "deutschland": "DE", "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "espana": "ES",
    "italia": "IT", "osterreich": "AT", "brasil": "BR", "nippon": "JP", "nihon": "JP",
    "sverige": "SE", "norge": "NO", "danmark": "DK", "suomi": "FI", "polska": "PL",
    "hellas": "GR", "magyarorszag": "HU", "rossiya": "RU", "zhongguo": "CN",
}  # fmt: skip

# US state abbreviations, because "Oakland, CA" is how US places are usually written.
US_STATES: dict[str, str] = {
    "al": "Alabama", "ak": "Alaska", "az": "Arizona", "ar": "Arkansas", "ca": "California",
    "co": "Colorado", "ct": "Connecticut", "de": "Delaware", "dc": "District of Columbia",
    "fl": "Florida", "ga": "Georgia", "hi": "Hawaii", "id": "Idaho", "il": "Illinois",
    "in": "Indiana", "ia": "Iowa", "ks": "Kansas", "ky": "Kentucky", "la": "Louisiana",
    "me": "Maine", "md": "Maryland", "ma": "Massachusetts", "mi": "Michigan", "mn": "Minnesota",
    "ms": "Mississippi", "mo": "Missouri", "mt": "Montana", "ne": "Nebraska", "nv": "Nevada",
    "nh": "New Hampshire", "nj": "New Jersey", "nm": "New Mexico", "ny": "New York",
    "nc": "North Carolina", "nd": "North Dakota", "oh": "Ohio", "ok": "Oklahoma", "or": "Oregon",
    "pa": "Pennsylvania", "ri": "Rhode Island", "sc": "South Carolina", "sd": "South Dakota",
    "tn": "Tennessee", "tx": "Texas", "ut": "Utah", "vt": "Vermont", "va": "Virginia",
    "wa": "Washington", "wv": "West Virginia", "wi": "Wisconsin", "wy": "Wyoming",
}  # fmt: skip

# Display names where the GeoNames/ISO list uses a long official form ("Korea, Republic of");
# pycountry's `common_name` covers a few more (Bolivia, Iran, Syria, Vietnam, ...).
COUNTRY_DISPLAY_NAMES: dict[str, str] = {
    "RU": "Russia", "CD": "DR Congo", "BN": "Brunei", "MK": "North Macedonia", "SZ": "Eswatini",
    "VA": "Vatican City", "PS": "Palestine", "FM": "Micronesia", "VG": "British Virgin Islands",
    "VI": "U.S. Virgin Islands", "BQ": "Caribbean Netherlands", "SH": "Saint Helena",
}  # fmt: skip

# English exonyms of large places that GeoNames cities1000 names in the local form (so that
# "Geneva" is not Geneva, Illinois, nor "Cologne" a village in Minnesota): alias ->
# (GeoNames name, country). The alias joins that place's candidates; population still decides.
CITY_ALIASES: dict[str, tuple[str, str]] = {
    "geneva": ("Genève", "CH"), "lucerne": ("Luzern", "CH"), "basle": ("Basel", "CH"),
    "cologne": ("Köln", "DE"), "nuremberg": ("Nürnberg", "DE"), "hanover": ("Hannover", "DE"),
    "brunswick": ("Braunschweig", "DE"), "frankfurt": ("Frankfurt am Main", "DE"),
    "seville": ("Sevilla", "ES"), "gothenburg": ("Göteborg", "SE"), "aarhus": ("Århus", "DK"),
    "antwerp": ("Antwerpen", "BE"), "bruges": ("Brugge", "BE"), "ghent": ("Gent", "BE"),
    "kiev": ("Kyiv", "UA"), "odessa": ("Odesa", "UA"), "st petersburg": ("Saint Petersburg", "RU"),
    "mecca": ("Makkah", "SA"), "medina": ("Madinah", "SA"), "quebec city": ("Québec", "CA"),
    "new york": ("New York City", "US"), "washington dc": ("Washington", "US"),
    "panama city": ("Panamá", "PA"), "saigon": ("Ho Chi Minh City", "VN"),
    "bangalore": ("Bengaluru", "IN"), "bombay": ("Mumbai", "IN"), "calcutta": ("Kolkata", "IN"),
    "madras": ("Chennai", "IN"), "peking": ("Beijing", "CN"), "rangoon": ("Yangon", "MM"),
}  # fmt: skip


def city_key(name: str) -> str:
    """Matching key of a city name: `normalize_name`, with known exonyms mapped to the GeoNames
    form, so "Geneva" and "Genève", "Kiev" and "Kyiv", "Zurich" and "Zürich" share a key."""
    key = normalize_name(name)
    return normalize_name(CITY_ALIASES[key][0]) if key in CITY_ALIASES else key
