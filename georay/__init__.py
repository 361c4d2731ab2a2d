"""georay: GeoReasoner on Ray."""
