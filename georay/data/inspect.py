"""``georay inspect``: format, size and EXIF GPS of images, one JSON line per file."""

from __future__ import annotations

import json
import sys
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


def _expand(target: str) -> list[str]:
    from georay.data.images import IMAGE_SUFFIXES
    from georay.data.storage import filesystem_for, is_s3, list_files

    fs, path = filesystem_for(target)
    info = fs.get_file_info(path)
    if info.type.name == "Directory" or (is_s3(target) and info.type.name == "NotFound"):
        found = list_files(target, IMAGE_SUFFIXES)
        return found or [target]
    return [target]


def inspect(cfg: InspectConfig) -> int:
    """Print one JSON line per image; exit status 0 if any file was read, 1 if every one failed."""
    from georay.data.exif import inspect_image

    ok = failed = 0
    for target in cfg.images:
        for uri in _expand(target):
            try:
                line = inspect_image(uri, check=cfg.check)
            except Exception as err:  # one bad file must not stop the listing
                reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
                line = {"file": uri, "error": reason}
            failed += "error" in line
            ok += "error" not in line
            print(json.dumps(line, ensure_ascii=False), flush=True)
    if failed:
        print(f"inspect: {failed} of {ok + failed} file(s) unreadable", file=sys.stderr)
    return 0 if ok else 1
