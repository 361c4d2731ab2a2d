"""H3 helpers: cells, parents, centroids, NaN safety."""

import h3
import numpy as np
import pytest

from georay.geo.cells import cell_centroids, cell_parents, latlng_to_cells
from georay.geo.distance import haversine_km


def test_cells_nan_safe_and_parents():
    cells = latlng_to_cells([47.37, np.nan, 95.0, -33.87], [8.54, 1.0, 0.0, 151.21], 5)
    assert cells.dtype == object and cells[0] == "851f8edbfffffff"
    assert cells[1] is None and cells[2] is None
    parents = cell_parents(cells, 3)
    assert parents[0] == "831f8efffffffff" and parents[1] is None
    # H3 parents are not "the coarse cell containing the point" (aperture-7 cells do not nest
    # exactly), so only the resolution is checked here.
    assert {h3.get_resolution(c) for c in parents if c} == {3}


def test_centroids_close_to_points():
    lat, lon = np.array([47.37, -33.87, 0.0]), np.array([8.54, 151.21, 179.99])
    clat, clon = cell_centroids(latlng_to_cells(lat, lon, 7))
    assert np.all(haversine_km(lat, lon, clat, clon) < 3)  # res-7 cells are ~1.2 km across
    nlat, nlon = cell_centroids([None, "not-a-cell"])
    assert np.isnan(nlat).all() and np.isnan(nlon).all()


def test_scalar_and_bad_resolution():
    assert latlng_to_cells(47.37, 8.54, 5).shape == ()
    with pytest.raises(ValueError, match="resolution"):
        latlng_to_cells([0.0], [0.0], 16)
    with pytest.raises(ValueError, match="parent"):
        cell_parents(latlng_to_cells([0.0], [0.0], 3), 5)


def test_cell_boundary_surrounds_the_centre_and_unwraps_the_antimeridian():
    from georay.geo.cells import cell_boundary

    cell = latlng_to_cells(48.8566, 2.3522, 5).item()
    ring = np.array(cell_boundary(cell))
    assert ring.shape == (6, 2)  # hexagon
    assert np.all(haversine_km(48.8566, 2.3522, ring[:, 0], ring[:, 1]) < 15)
    fiji = np.array(cell_boundary(latlng_to_cells(-17.0, 179.99, 3).item()))
    assert np.ptp(fiji[:, 1]) < 5  # not ~360: the ring goes past 180 instead of wrapping
    with pytest.raises(ValueError, match="not an H3 cell"):
        cell_boundary("not-a-cell")
