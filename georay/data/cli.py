"""``georay inspect``: flags map one-to-one to :class:`InspectConfig`."""

from georay.command import Command
from georay.data.inspect import InspectConfig

COMMANDS = [
    Command(
        "inspect",
        InspectConfig,
        "georay.data.inspect:inspect",
        help="print format, size and EXIF GPS of images, one JSON line per file",
        description="One JSON line per image: file, format, width, height, lat, lon (null without "
        "GPS). Folders and s3:// prefixes are expanded to the images under them. An unreadable "
        "file gives a line with an 'error' field. Exit status: 0 if at least one file was read, "
        "1 if every file failed. --summary prints one JSON object instead: files per format and how "
        "many carry EXIF GPS, how many are unreadable and why, and the files skipped as not "
        "images (AppleDouble ._* files, .DS_Store, Thumbs.db, other extensions).",
    )
]
