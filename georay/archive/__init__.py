"""Geotag an archive from its own GPS-tagged photos (issue 21): the VLM's candidates fused with
the nearest photos of a geotagged gallery (``georay predict --gallery``), the gallery optionally
being the archive's own photos with EXIF GPS (``--gallery-from-exif``)."""
