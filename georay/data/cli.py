"""``georay synth`` (draw the synthetic world) and ``georay inspect`` (image headers + EXIF GPS)."""

from __future__ import annotations

import argparse
import json
import sys

from georay.config import add_dataclass_args, from_args
from georay.data.synth import SynthConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` and ``inspect`` subcommands."""
    p = subparsers.add_parser(
        "synth",
        help="draw a synthetic street-view world (JPEGs, manifest, clues) for demos and tests",
        description="Draw procedurally generated street views of real countries and cities: "
        "images/, manifest.parquet (with exact ADE20K class fractions and a train/test split), "
        "clues.jsonl and world.json. Deterministic: the same flags give byte-identical files.",
    )
    add_dataclass_args(p, SynthConfig)
    p.set_defaults(func=_synth)

    p = subparsers.add_parser(
        "inspect",
        help="print format, size and EXIF GPS of images, one JSON line per file",
        description="One JSON line per image: file, format, width, height, lat, lon (null without "
        "GPS). Folders and s3:// prefixes are expanded to the images under them. An unreadable "
        "file gives a line with an 'error' field. Exit status: 0 if at least one file was read, "
        "1 if every file failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="files, folders or s3:// URIs")
    p.add_argument(
        "--check",
        action="store_true",
        help="also decode the pixels: truncated or oversized files get an 'error' field",
    )
    p.set_defaults(func=_inspect)


def _synth(args: argparse.Namespace) -> int:
    from georay.data.synth import generate_world

    summary = generate_world(from_args(SynthConfig, args), progress=True)
    print(json.dumps(summary, sort_keys=True))
    return 0


def _expand(target: str) -> list[str]:
    from georay.data.storage import filesystem_for, is_s3, list_files

    fs, path = filesystem_for(target)
    info = fs.get_file_info(path)
    if info.type.name == "Directory" or (is_s3(target) and info.type.name == "NotFound"):
        found = list_files(target, IMAGE_SUFFIXES)
        return found or [target]
    return [target]


def _inspect(args: argparse.Namespace) -> int:
    from georay.data.exif import inspect_image

    ok = failed = 0
    for target in args.images:
        for uri in _expand(target):
            try:
                line = inspect_image(uri, check=args.check)
            except Exception as err:  # one bad file must not stop the listing
                reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
                line = {"file": uri, "error": reason}
            failed += "error" in line
            ok += "error" not in line
            print(json.dumps(line, ensure_ascii=False), flush=True)
    if failed:
        print(f"inspect: {failed} of {ok + failed} file(s) unreadable", file=sys.stderr)
    return 0 if ok else 1
