"""Natural Earth outlines and the polygon (PIGEON) country convention."""

import numpy as np
import pytest

from georay.geo.gazetteer import get_gazetteer
from georay.geo.outlines import country_of_point_polygon, country_outlines


def test_outlines_cover_the_world_and_are_cached():
    out = country_outlines()
    assert country_outlines() is out
    codes = [c for c, _ in out]
    assert codes == sorted(codes) and len(codes) > 200
    rings = dict(out)
    assert {"FR", "NO", "CH", "US"} <= set(rings)  # FR/NO need ISO_A2_EH, not ISO_A2 (-99)
    for ring in rings["CH"]:
        assert ring.ndim == 2 and ring.shape[1] == 2 and np.allclose(ring[0], ring[-1])
    lon, lat = np.concatenate(rings["CH"]).T
    assert 5.9 < lon.min() < lon.max() < 10.5 and 45.8 < lat.min() < lat.max() < 47.9
    coarse = dict(country_outlines(0.5))["CH"]
    assert sum(len(r) for r in coarse) < sum(len(r) for r in rings["CH"])
    with pytest.raises(ValueError, match="tolerance"):
        country_outlines(-1)


def test_polygon_country_vs_nearest_place():
    lat = [39.915556, 52.842781, 37.885, 37.814667, 0.0, np.nan]
    lon = [116.390833, 11.182857, -122.6225, -122.264167, -140.0, 0.0]
    poly = country_of_point_polygon(lat, lon)
    assert list(poly) == ["CN", "DE", "US", "US", None, None]  # at sea: no polygon
    near = get_gazetteer().reverse(lat[4], lon[4]).country_code[0]
    assert near is not None  # the nearest-place convention still names a country there
    assert country_of_point_polygon(47.37, 8.54)[()] == "CH"
    # Crimea: this Natural Earth edition, like GeoNames, draws it inside UA.
    assert country_of_point_polygon(44.95, 34.10)[()] == "UA"
