"""Online geolocation API: a Ray Serve app with a FastAPI ingress (``georay serve``)."""
