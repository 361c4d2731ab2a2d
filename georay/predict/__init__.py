"""Prediction: parse model answers, geotag images in bulk with Ray Data (``georay predict``)."""
