"""``georay inspect``: format, size and EXIF GPS of images, one JSON line per file, or
(``--summary``) one JSON object for a whole folder: the first command an archive runs."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass

from georay.config import Config, option


@dataclass(kw_only=True)
class InspectConfig(Config):
    """Print format, size and EXIF GPS of images, one JSON line per file."""

    # Not checked up front (path="in"): a missing file is one error line among the others.
    images: list[str] = option(help="image files, folders or s3:// URIs", positional=True)
    check: bool = option(
        False, help="also decode the pixels: truncated or oversized files get an 'error' field"
    )
    summary: bool = option(
        False,
        help="print one JSON summary instead of a line per file: files per format and how many "
        "carry EXIF GPS, how many are unreadable and why, and which files were skipped (not "
        "images: AppleDouble ._* files, .DS_Store, Thumbs.db, other extensions)",
    )


def _expand(target: str) -> tuple[list[str], Counter]:
    """The image files a target names, and the files skipped under a folder (reason -> n)."""
    from georay.data.images import list_images
    from georay.data.storage import filesystem_for, is_s3

    fs, path = filesystem_for(target)
    info = fs.get_file_info(path)
    if info.type.name == "Directory" or (is_s3(target) and info.type.name == "NotFound"):
        found, skipped = list_images(target)
        # An empty folder (or prefix) is one error line, so it is not silently nothing.
        return found if found or skipped else [target], skipped
    return [target], Counter()


def _line(uri: str, check: bool) -> dict:
    from georay.data.exif import inspect_image

    try:
        return inspect_image(uri, check=check)
    except Exception as err:  # one bad file must not stop the listing
        return {
            "file": uri,
            "error": getattr(err, "reason", None) or f"{type(err).__name__}: {err}",
        }


class Tally:
    """What ``--summary`` prints: counts per format, with GPS, unreadable and skipped."""

    def __init__(self):
        self.total = 0
        self.files, self.gps = Counter(), Counter()
        self.unreadable, self.skipped = Counter(), Counter()

    def add(self, line: dict) -> None:
        self.total += 1
        if "format" in line:
            self.files[line["format"]] += 1
            self.gps[line["format"]] += line["lat"] is not None
        if "error" in line:
            self.unreadable[line["error"]] += 1

    def result(self) -> dict:
        return {
            "files": self.total,
            "formats": {f: {"files": n, "gps": self.gps[f]} for f, n in self.files.most_common()},
            "with_gps": sum(self.gps.values()),
            "unreadable": sum(self.unreadable.values()),
            "unreadable_reasons": dict(self.unreadable.most_common()),
            "skipped_files": sum(self.skipped.values()),
            "skipped_reasons": dict(self.skipped.most_common()),
        }


def inspect(cfg: InspectConfig) -> int:
    """Print one JSON line per image (or the ``--summary``); exit status 0 if any file was
    read, 1 if every one failed."""
    tally = Tally()
    for target in cfg.images:
        uris, skipped = _expand(target)
        tally.skipped.update(skipped)
        for uri in uris:
            line = _line(uri, cfg.check)
            tally.add(line)
            if not cfg.summary:
                print(json.dumps(line, ensure_ascii=False), flush=True)
    result = tally.result()
    if cfg.summary:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    failed, total = result["unreadable"], result["files"]
    if failed:
        print(f"inspect: {failed} of {total} file(s) unreadable", file=sys.stderr)
    return 0 if total > failed else 1
