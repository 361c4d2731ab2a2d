"""One way to reach bytes on local disk and S3: pyarrow filesystems.

``s3://bucket/key`` URIs get a :class:`pyarrow.fs.S3FileSystem` configured from the standard AWS
chain (credentials, region) plus ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for S3-compatible
stores (MinIO, Ceph, moto in tests). The endpoint is passed explicitly as ``endpoint_override``
and ``scheme``: pyarrow 26's S3FileSystem ignores ``AWS_ENDPOINT_URL`` (checked against a moto
server: it tries the default AWS host instead), while boto3 honours it. Everything else is a
local path (``file://`` accepted).

Bulk jobs read their images through :mod:`georay.data.fetch` instead (boto3, configured from
:func:`s3_endpoint_region` so both clients reach the same store).
"""

from __future__ import annotations

import os
import posixpath
from functools import cache
from urllib.parse import urlparse

import pyarrow.fs as pafs

from georay.errors import UserError


def is_s3(uri: str) -> bool:
    """True for ``s3://`` (and ``s3a://``) URIs."""
    return str(uri).startswith(("s3://", "s3a://"))


@cache
def _s3(endpoint: str | None, region: str | None) -> pafs.S3FileSystem:
    kwargs: dict = {}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def s3_endpoint_region() -> tuple[str | None, str | None]:
    """The S3 endpoint URL and region the environment names (None where it names none)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return endpoint or None, region or None


def s3_filesystem() -> pafs.S3FileSystem:
    """The S3 filesystem for the current environment (cached per endpoint and region)."""
    return _s3(*s3_endpoint_region())


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and in-filesystem path of an ``s3://bucket/key`` URI (``bucket/key``), or of
    a ``file://`` URI or local path (absolute)."""
    uri = str(uri)
    if is_s3(uri):
        return s3_filesystem(), uri.split("://", 1)[1]
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def exists(uri: str) -> bool:
    """True if a local path or S3 object/prefix exists.

    Raises
    ------
    georay.errors.UserError
        S3 cannot be reached (no endpoint, no credentials): said in one line.
    """
    fs, path = filesystem_for(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError as err:
        raise UserError(f"cannot reach {uri}: {err}") from None


def read_bytes(uri: str) -> bytes:
    """All bytes of a local file or S3 object (``FileNotFoundError`` when missing)."""
    fs, path = filesystem_for(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to a local file (parent folders created) or an S3 object."""
    fs, path = filesystem_for(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with ``/`` (never a backslash on S3)."""
    base = str(base).rstrip("/")
    return "/".join([base, *(p.strip("/") for p in parts)])


def list_files(uri: str, suffixes: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """All files under a local folder or S3 prefix, recursively, sorted, in the same form as
    ``uri``; with ``suffixes``, only names ending with one of them (case-insensitive)."""
    fs, path = filesystem_for(uri)
    selector = pafs.FileSelector(path.rstrip("/"), recursive=True, allow_not_found=False)
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    out = []
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        if wanted and not info.path.lower().endswith(wanted):
            continue
        out.append(f"s3://{info.path}" if is_s3(uri) else info.path)
    return sorted(out)


def parent_of(uri: str) -> str:
    """The folder (local, made absolute) or ``s3://`` prefix holding the file ``uri``."""
    if is_s3(uri):
        return posixpath.dirname(str(uri))
    return os.path.dirname(os.path.abspath(filesystem_for(uri)[1]))


def resolve_relative(uri: str, base: str) -> str:
    """``uri`` made absolute against ``base`` (a folder path or ``s3://`` prefix) if relative.

    Manifests, clue files and SFT files name images relative to their own folder, so a whole
    dataset folder can move (or be copied to S3) without rewriting its files.
    """
    if is_s3(uri) or "://" in uri or uri.startswith("/"):
        return uri
    return join_uri(base, uri)


def upload_folder(local_dir: str | os.PathLike, uri: str) -> str:
    """Copy a local folder to a local path or ``s3://`` prefix (files of the same name are
    replaced); returns the destination (made absolute when local)."""
    import shutil
    from pathlib import Path

    local_dir = Path(local_dir)
    if not is_s3(uri):
        shutil.copytree(local_dir, uri, dirs_exist_ok=True)
        return str(Path(uri).resolve())
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        write_bytes(join_uri(uri, path.relative_to(local_dir).as_posix()), path.read_bytes())
    return uri
