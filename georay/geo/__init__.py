"""Pure geography for georay: distances, H3 cells, an offline gazetteer, outlines and metrics.

Nothing here imports Ray or torch; functions are vectorized over NumPy arrays and the data
(GeoNames places, Natural Earth polygons) loads lazily on first use, once per process.
"""

from georay.geo.cells import cell_centroids, cell_parents, latlng_to_cells
from georay.geo.distance import EARTH_RADIUS_KM, haversine_km
from georay.geo.gazetteer import Gazetteer, Place, ReverseGeocode, get_gazetteer
from georay.geo.names import normalize_name

__all__ = [
    "EARTH_RADIUS_KM",
    "Gazetteer",
    "Place",
    "ReverseGeocode",
    "cell_centroids",
    "cell_parents",
    "get_gazetteer",
    "haversine_km",
    "latlng_to_cells",
    "normalize_name",
]
