"""Offline gazetteer: reverse lookups, name resolution, country codes, speed."""

import time

import numpy as np
import pytest

from georay.geo.distance import haversine_km
from georay.geo.gazetteer import get_gazetteer
from georay.geo.names import CITY_ALIASES

ZURICH = (47.37, 8.54)


@pytest.fixture(scope="module")
def gaz():
    t = time.perf_counter()
    g = get_gazetteer()
    print(f"gazetteer load {time.perf_counter() - t:.2f} s")
    return g


def test_cached(gaz):
    assert get_gazetteer() is gaz


def test_reverse_shared_photos(gaz):
    # Coordinates of the four photos in ../shared/data/README.md.
    lat = [39.915556, 52.842781, 37.885, 37.814667]
    lon = [116.390833, 11.182857, -122.6225, -122.264167]
    r = gaz.reverse(lat, lon)
    assert list(r.country_code) == ["CN", "DE", "US", "US"]
    assert list(r.place[[0, 1, 3]]) == ["Beijing", "Salzwedel", "Oakland"]
    assert r.country_name[1] == "Germany" and r.admin1[3] == "California"
    assert np.all(r.distance_km < 10)
    np.testing.assert_allclose(r.distance_km, haversine_km(lat, lon, r.place_lat, r.place_lon))


def test_reverse_nan_invalid_and_scalar(gaz):
    r = gaz.reverse([np.nan, 95.0, 47.37], [8.5, 8.5, np.nan])
    assert list(r.country_code) == [None, None, None] and np.isnan(r.distance_km).all()
    one = gaz.reverse(*ZURICH)
    assert len(one) == 1 and one.country_code[0] == "CH"


def test_reverse_antimeridian(gaz):
    # The nearest place lies across the 180th meridian; a K-D tree on raw (lat, lon) would
    # see it as 359 degrees away.
    r = gaz.reverse([-16.5, 66.3], [-179.8, 179.9])
    assert list(r.place) == ["Labasa", "Egvekinot"] and list(r.country_code) == ["FJ", "RU"]
    assert np.all(r.distance_km < 100)


def test_point_at_sea_gets_nearest_place_far_away(gaz):
    r = gaz.reverse(0.0, -140.0)  # mid Pacific
    assert r.country_code[0] is not None and r.distance_km[0] > 500


def test_crimea_follows_geonames(gaz):
    # Sources disagree on Crimea; the GeoNames data shipped here puts Simferopol in UA.
    assert gaz.reverse(44.95, 34.10).country_code[0] == "UA"


def test_ten_thousand_lookups_in_one_call_match_single_lookups(gaz):
    # Speed is benchmarks/geo.py's; here: the vectorised call answers as one-at-a-time calls do.
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-90, 90, 10_000), rng.uniform(-180, 180, 10_000)
    r = gaz.reverse(lat, lon)
    assert len(r) == 10_000
    for i in rng.choice(10_000, 20, replace=False):
        one = gaz.reverse(lat[i], lon[i])
        assert one.country_code[0] == r.country_code[i]
        assert one.distance_km[0] == pytest.approx(r.distance_km[i])


@pytest.mark.parametrize("text", ["Zurich", "Zürich, Switzerland", "zurich , CH", "ZÜRICH"])
def test_resolve_zurich(gaz, text):
    p = gaz.resolve(text)
    assert p is not None and p.country_code == "CH" and p.level == "city"
    assert float(haversine_km(p.lat, p.lon, *ZURICH)) < 10


@pytest.mark.parametrize(
    ("text", "code", "level"),
    [
        ("CH", "CH", "country"),
        ("U.S.A.", "US", "country"),
        ("United States of America", "US", "country"),
        ("Great Britain", "GB", "country"),
        ("DEU", "DE", "country"),
        ("Korea, Republic of", "KR", "country"),
        ("Türkiye", "TR", "country"),
        ("Oakland, CA", "US", "city"),  # US state abbreviation, not Canada
        ("Toronto, CA", "CA", "city"),
        ("Paris, Texas", "US", "city"),
        ("Springfield, Illinois, USA", "US", "city"),
        ("Seoul, Korea, Republic of", "KR", "city"),
        ("Atlantis, France", "FR", "country"),  # unknown city: the named country stands
    ],
)
def test_resolve_forms(gaz, text, code, level):
    p = gaz.resolve(text)
    assert p is not None and (p.country_code, p.level) == (code, level)


@pytest.mark.parametrize(
    ("text", "name", "code", "level"),
    [
        ("New York", "New York City", "US", "city"),  # exonym table
        ("Geneva", "Genève", "CH", "city"),  # not Geneva, Illinois
        ("Geneva, Illinois", "Geneva", "US", "city"),  # unless asked for
        ("Cologne", "Köln", "DE", "city"),
        ("California", "Los Angeles", "US", "admin1"),  # not the Maryland town of 12K
        ("Bavaria, Germany", "Munich", "DE", "admin1"),
        ("Texas, USA", "Houston", "US", "admin1"),
        ("Washington", "Washington", "US", "city"),  # DC outweighs less than 10x: the city
    ],
)
def test_resolve_exonyms_and_regions(gaz, text, name, code, level):
    p = gaz.resolve(text)
    assert p is not None and (p.name, p.country_code, p.level) == (name, code, level)


def test_every_city_alias_points_at_a_place(gaz):
    for alias, (name, code) in CITY_ALIASES.items():
        p = gaz.city(alias)
        assert p is not None and (p.name, p.country_code) == (name, code), alias


def test_resolve_ties_go_to_most_populous(gaz):
    assert gaz.resolve("Paris").country_code == "FR"
    assert gaz.resolve("Springfield, Illinois").admin1 == "Illinois"


@pytest.mark.parametrize("text", ["xyzzy qwv", "", "   ", ",,,", None, 42, "Zurich, Narnia"])
def test_resolve_garbage_is_none(gaz, text):
    assert gaz.resolve(text) is None


def test_country_code_and_name(gaz):
    for text in ["CH", "che", "Switzerland", "schweiz", "SWITZERLAND"]:
        assert gaz.country_code(text) == "CH"
    for text in ["USA", "U.S.A.", "us", "United States", "america"]:
        assert gaz.country_code(text) == "US"
    assert gaz.country_code("Holland") == "NL" and gaz.country_code("The Netherlands") == "NL"
    assert gaz.country_code("Czechia") == gaz.country_code("Czech Republic") == "CZ"
    assert gaz.country_code("Ivory Coast") == gaz.country_code("Côte d'Ivoire") == "CI"
    assert gaz.country_code("England") == "GB" and gaz.country_code("Russia") == "RU"
    assert gaz.country_code("Narnia") is None and gaz.country_code(None) is None
    assert gaz.country_name("kr") == "South Korea" and gaz.country_name("DE") == "Germany"
    with pytest.raises(ValueError, match="unknown country"):
        gaz.country_name("ZZ")


def test_cities(gaz):
    ch = gaz.cities("CH", min_population=100_000)
    assert ch[0].name == "Zürich" and all(p.population >= 100_000 for p in ch)
    pops = [p.population for p in gaz.cities("US", limit=20)]
    assert len(pops) == 20 and pops == sorted(pops, reverse=True)
    assert all(p.country_code == "JP" for p in gaz.cities("Japan", limit=5))
    with pytest.raises(ValueError, match="unknown country"):
        gaz.cities("ZZ")


def test_city_restricted_to_country(gaz):
    assert gaz.city("paris", "US").admin1 == "Texas"
    assert gaz.city("zurich", "FR") is None
    assert gaz.city("nowhere-ville") is None


def test_coordinates_for_name_only_predictions(gaz):
    lat, lon = gaz.coordinates(
        ["CH", "France", None, "", "Narnia"], ["zurich", None, "Zürich", None, "x"]
    )
    assert float(haversine_km(lat[0], lon[0], *ZURICH)) < 10
    assert float(haversine_km(lat[1], lon[1], 48.8566, 2.3522)) < 10  # country -> its place
    assert float(haversine_km(lat[2], lon[2], *ZURICH)) < 10
    assert np.isnan(lat[3:]).all() and np.isnan(lon[3:]).all()
