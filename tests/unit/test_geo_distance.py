"""Great-circle distance: pinned values, vectorization, NaN and antimeridian handling."""

import numpy as np
import pytest

from georay.geo.distance import EARTH_RADIUS_KM, chord_to_km, haversine_km, unit_vectors


def test_paris_london_pinned():
    assert float(haversine_km(48.8566, 2.3522, 51.5074, -0.1278)) == pytest.approx(343.5, abs=0.5)


def test_vectorized_broadcast_and_nan():
    d = haversine_km([0.0, np.nan, 10.0], [0.0, 0.0, 20.0], [0.0, 0.0, 10.0], [1.0, 1.0, 20.0])
    assert d.shape == (3,)
    assert d[0] == pytest.approx(2 * np.pi * EARTH_RADIUS_KM / 360, rel=1e-9)  # 1 degree
    assert np.isnan(d[1])
    assert d[2] == 0.0


def test_antimeridian_and_antipodes():
    assert float(haversine_km(0, 179.5, 0, -179.5)) == pytest.approx(111.19, abs=0.01)
    assert float(haversine_km(0, 0, 0, 180)) == pytest.approx(np.pi * EARTH_RADIUS_KM)
    assert float(haversine_km(90, 0, 90, 123)) == pytest.approx(0.0, abs=1e-9)


def test_chord_matches_haversine():
    rng = np.random.default_rng(0)
    la, lo = rng.uniform(-90, 90, (2, 100)), rng.uniform(-180, 180, (2, 100))
    v = unit_vectors(la, lo)
    chord = np.linalg.norm(v[0] - v[1], axis=-1)
    np.testing.assert_allclose(
        chord_to_km(chord), haversine_km(la[0], lo[0], la[1], lo[1]), atol=1e-6
    )
