"""Reading and writing what the stages exchange: bytes on disk or S3, images, EXIF, manifests and
tables, and the ADE20K locatability weights. No Ray, no torch here."""
