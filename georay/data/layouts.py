"""Benchmark tables as they are published, read as georay manifests: layouts told by their columns.

``georay evaluate --truth FILE``, ``georay predict --input FILE`` and every other bulk job read
the common geolocation ground-truth tables as downloaded, with no flag saying which one it is:

=======  ==============================================  ========================================
layout   columns that identify it                        the image of a row
=======  ==============================================  ========================================
georay   ``image_id`` (+ ``uri``, lat, lon, ...)         ``uri``
osv5m    ``id, latitude, longitude`` (OpenStreetView-5M)  ``{id}.jpg`` in the image folder
im2gps   ``IMG_ID, AUTHOR, LAT, LON`` (Im2GPS, Im2GPS3k,  ``IMG_ID``: the file's path in the image
         MP-16: GeoEstimation's ``*_places365.csv``)     folder
yfcc     ``IMG_ID, LAT, LON`` (YFCC4k, YFCC26k)            ``IMG_ID``
=======  ==============================================  ========================================

Im2GPS3k and MP-16 ship the same header (TIBHannover/GeoEstimation ``meta/`` CSVs: image path,
Flickr author, latitude, longitude, Places365 scene labels and probabilities), so they are one
layout; their mapping is the same. Anything else is mapped by hand with ``--truth-columns`` /
``--input-columns id=COL,lat=COL,lon=COL[,country=COL,city=COL,uri=COL]`` (layout ``custom``).
Column names match case-insensitively (copies with lower-cased headers exist).

Every layout becomes georay's manifest columns (``image_id``, ``uri``, ``lat``, ``lon``,
``country``, ``city``) followed by the table's other columns, untouched:

* ``image_id``: the id with its image suffix removed (``1234.jpg`` -> ``1234``): the id that
  :func:`georay.pipeline.inputs.image_table` gives the same file in a folder, so predictions
  of the image folder join the truth table on it;
* ``uri`` (inputs only): ``--image-root`` joined with the file name (the id if it ends in an
  image suffix, else ``{id}.jpg``); by default the folder ``images/<table name>/`` next to the
  table (OSV-5M's ``images/test/``), else ``images/``;
* ``country``: ISO 3166-1 alpha-2 from a code (any case) or a name, through the gazetteer;
  null when it names no country (counted in ``notes``). CSV strings are read literally, so
  ``NA`` is Namibia, not a missing value; empty strings are nulls.

A georay manifest is read exactly as :func:`georay.data.manifest.read_manifest` reads it.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from georay.data.images import IMAGE_SUFFIXES
from georay.data.storage import join_uri, parent_of
from georay.data.tables import is_folder, read_table, table_columns
from georay.errors import UserError

log = logging.getLogger(__name__)

ROLES = ("image_id", "uri", "lat", "lon", "country", "city")
# Names a user may give a role in a column mapping (``id=IMG_ID``).
_ROLE_NAMES = {"id": "image_id", "image_id": "image_id", "uri": "uri", "lat": "lat",
               "lon": "lon", "country": "country", "city": "city"}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """One published table layout.

    Attributes
    ----------
    name, title
        Short name (recorded in metrics.json / summary.json) and what publishes it.
    required
        Columns that must all be present for a table to be read this way.
    columns
        Role (``image_id``, ``lat``, ...) -> candidate source columns; the first present wins.
    """

    name: str
    title: str
    required: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.required)}: {self.title})"


# Most specific first: the first layout whose required columns are all present is used. Column
# names from the published headers: OSV-5M's test.csv, GeoEstimation's
# meta/im2gps3k_places365.csv (MP16-Pro adds city and country_code), YFCC4k / YFCC26k.
_IMG_ID_COLUMNS = {
    "image_id": ("IMG_ID",),
    "lat": ("LAT",),
    "lon": ("LON",),
    "country": ("country_code", "country"),  # MP16-Pro has both; the code is unambiguous
    "city": ("city",),
}
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "georay",
        "georay manifest or predictions",
        ("image_id",),
        {role: (role,) for role in ROLES},
    ),
    Layout(
        "osv5m",
        "OpenStreetView-5M train.csv / test.csv",
        ("id", "latitude", "longitude"),
        {
            "image_id": ("id",),
            "lat": ("latitude",),
            "lon": ("longitude",),
            "country": ("country",),
            "city": ("city",),
        },
    ),
    Layout(
        "im2gps",
        "Im2GPS / Im2GPS3k / MP-16, GeoEstimation *_places365.csv",
        ("IMG_ID", "AUTHOR", "LAT", "LON"),
        _IMG_ID_COLUMNS,
    ),
    Layout("yfcc", "YFCC4k / YFCC26k", ("IMG_ID", "LAT", "LON"), _IMG_ID_COLUMNS),
)
# CSV id columns are read as text: OSV-5M ids are long integers, and ids are names, not numbers.
_ID_TYPES = {name: pa.string() for lay in LAYOUTS for name in lay.columns["image_id"]}


@dataclass
class Detected:
    """The layout a table was read with: ``source`` maps each role to the column it came from;
    ``notes`` counts what the normalization did (countries from names, unresolved ones)."""

    layout: Layout
    source: dict[str, str]
    notes: dict[str, object] = field(default_factory=dict)

    def record(self) -> dict:
        """What metrics.json / summary.json record about it."""
        return {"layout": self.layout.name, "title": self.layout.title,
                "columns": dict(self.source), **self.notes}  # fmt: skip


def parse_mapping(text: str, flag: str) -> dict[str, str]:
    """``"id=IMG_ID,lat=LAT,lon=LON"`` -> ``{"image_id": "IMG_ID", "lat": "LAT", ...}``.

    Raises
    ------
    UserError
        An entry that is not ``ROLE=COLUMN``, an unknown role, or no ``id``.
    """
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        role, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not column or role.lower() not in _ROLE_NAMES:
            raise UserError(
                f"{flag} {text!r}: each entry must be ROLE=COLUMN with ROLE one of "
                f"{', '.join(k for k in _ROLE_NAMES if k != 'image_id')}; got {part!r}"
            )
        mapping[_ROLE_NAMES[role.lower()]] = column
    if "image_id" not in mapping:
        raise UserError(f"{flag} {text!r}: name the id column (id=COLUMN)")
    return mapping


def known_layouts() -> str:
    """The layouts as an error message lists them."""
    return "; ".join(layout.describe() for layout in LAYOUTS)


def detect_layout(
    columns: Sequence[str], mapping: str = "", *, uri: str = "table", flag: str = "--columns"
) -> Detected:
    """The layout of a table with these column names (or the one ``mapping`` describes).

    Raises
    ------
    UserError
        No layout matches (the message names the columns found and the layouts known), or a
        mapped column is absent.
    """
    by_lower = {c.lower(): c for c in columns}
    if mapping:
        wanted = parse_mapping(mapping, flag)
        missing = [c for c in wanted.values() if c.lower() not in by_lower]
        if missing:
            raise UserError(f"{uri}: {flag} names column(s) {missing} it does not have; "
                            f"it has {list(columns)}")  # fmt: skip
        layout = Layout("custom", f"mapped by {flag}", tuple(wanted.values()),
                        {role: (col,) for role, col in wanted.items()})  # fmt: skip
        return Detected(layout, {role: by_lower[c.lower()] for role, c in wanted.items()})
    for layout in LAYOUTS:
        if all(c.lower() in by_lower for c in layout.required):
            source = {}
            for role, candidates in layout.columns.items():
                found = next(
                    (by_lower[c.lower()] for c in candidates if c.lower() in by_lower), None
                )
                if found is not None:
                    source[role] = found
            return Detected(layout, source)
    raise UserError(
        f"{uri}: columns {list(columns)} match no known layout. Known layouts: "
        f"{known_layouts()}. Map other columns with {flag} id=COL,lat=COL,lon=COL"
        "[,country=COL,city=COL]"
    )


def _text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column as strings, empty strings as nulls."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(pa.string()) if arr.type != pa.string() else arr
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def strip_image_suffix(ids: pa.Array) -> pa.Array:
    """``"a/1234.jpg"`` -> ``"a/1234"``: the id a folder listing gives the same file."""
    pattern = "(?i)(" + "|".join(s.replace(".", r"\.") for s in IMAGE_SUFFIXES) + ")$"
    return pc.replace_substring_regex(ids, pattern, "")


def file_names(ids: pa.Array) -> pa.Array:
    """The image file of each raw id: the id if it ends in an image suffix, else ``{id}.jpg``."""
    has_suffix = pc.not_equal(strip_image_suffix(ids), ids)
    return pc.if_else(has_suffix, ids, pc.binary_join_element_wise(ids, ".jpg", ""))


def iso_countries(column: pa.Array) -> tuple[pa.Array, dict[str, int]]:
    """ISO alpha-2 codes of country codes or names (once per distinct value, gazetteer);
    null where nothing resolves. Returns the codes and counts for ``Detected.notes``."""
    from georay.geo.gazetteer import get_gazetteer

    gaz = get_gazetteer()
    enc = column.dictionary_encode()
    values = enc.dictionary.to_pylist()
    codes = [gaz.country_code(v) for v in values]
    out = pa.DictionaryArray.from_arrays(enc.indices, pa.array(codes, pa.string()))
    out = out.cast(pa.string())
    counts = pc.value_counts(enc.indices.drop_null()) if len(enc.indices) else None
    per_value = {}
    if counts is not None:
        per_value = dict(zip(counts.field("values").to_pylist(),
                             counts.field("counts").to_pylist(), strict=True))  # fmt: skip
    named = sum(n for i, n in per_value.items() if codes[i] and values[i].upper() != codes[i])
    unresolved = sum(n for i, n in per_value.items() if codes[i] is None)
    examples = sorted({values[i] for i in per_value if codes[i] is None})[:5]
    notes = {"country_from_names": named, "country_unresolved": unresolved}
    if examples:
        notes["country_unresolved_examples"] = examples
    return out, notes


def normalize(
    table: pa.Table, detected: Detected, keep: Sequence[str] | None = None, files: bool = False
) -> pa.Table:
    """``table`` in georay's columns (see the module notes); ``keep`` limits the other columns
    carried (None: all); ``files`` adds ``_file``, the image file name of each row of a
    benchmark table. A georay table keeps its ids and countries as they are."""
    cols: dict[str, pa.Array] = {}
    own = detected.layout.name == "georay"
    for role, src in detected.source.items():
        col = table[src]
        if role in ("lat", "lon"):
            cols[role] = col.cast(pa.float64()) if col.type != pa.float64() else col
            continue
        text = _text(col)
        if own:  # the manifest contract already: ids and countries as they are
            cols[role] = text
            continue
        if role == "image_id":
            if files:
                cols["_file"] = file_names(text)
            text = strip_image_suffix(text)
        elif role == "country":
            text, notes = iso_countries(text)
            detected.notes.update(notes)
        cols[role] = text
    used = set(detected.source.values()) | set(cols)
    for name in table.column_names:
        if name not in used and (keep is None or name in keep):
            cols[name] = table[name]
    return pa.table(cols)


def default_image_root(uri: str) -> list[str]:
    """Where a benchmark table's images are looked for: ``images/<table name>/`` next to the
    table (OSV-5M: ``images/test/`` for ``test.csv``), then ``images/``."""
    stem = posixpath.basename(str(uri).rstrip("/")).split(".")[0]
    parent = parent_of(uri)
    return [join_uri(parent, "images", stem), join_uri(parent, "images")]


def with_uris(table: pa.Table, uri: str, image_root: str | None, flag: str) -> tuple[pa.Table, str]:
    """Add ``uri`` (image root + file name) to a normalized benchmark table."""
    candidates = [image_root] if image_root else default_image_root(uri)
    root = next((c for c in candidates if is_folder(c)), None)
    if root is None:
        raise UserError(
            f"{uri}: no image folder at {' or '.join(candidates)}; "
            f"name the folder holding its images with {flag}"
        )
    names = table["_file"].combine_chunks()
    uris = pc.binary_join_element_wise(root.rstrip("/") + "/", names, "")
    return table.drop_columns(["_file"]).add_column(1, "uri", uris), root


def read_layout(
    uri: str,
    *,
    columns: str = "",
    keep: Sequence[str] | None = None,
    flag: str = "--columns",
    files: bool = False,
) -> tuple[pa.Table, Detected]:
    """Read a table in any known layout (or the ``ROLE=COLUMN,...`` mapping ``columns``, the
    value of ``flag``), normalized to georay's columns by :func:`normalize`."""
    names = table_columns(uri)
    detected = detect_layout(names, columns, uri=uri, flag=flag)
    wanted = [*detected.source.values(), *(c for c in names if keep is None or c in keep)]
    id_types = {**_ID_TYPES, detected.source["image_id"]: pa.string()}
    table = read_table(uri, list(dict.fromkeys(wanted)), column_types=id_types,
                       strings_can_be_null=False)  # fmt: skip
    table = normalize(table, detected, keep, files)
    log.info("%s: read as layout %s (%s), %d rows", uri, detected.layout.name,
             detected.layout.title, table.num_rows)  # fmt: skip
    return table, detected


def read_images_table(
    uri: str,
    *,
    columns: str = "",
    image_root: str | None = None,
    flags: tuple[str, str] = ("--input-columns", "--image-root"),
) -> tuple[pa.Table, Detected]:
    """The input of a bulk job from a table in any known layout, as a validated manifest; a
    benchmark table gets ``uri`` from its image folder (``image_root``, else
    :func:`default_image_root`). ``flags`` name the mapping and image-folder flags in errors."""
    from georay.data.manifest import read_manifest, validate_manifest

    detected = detect_layout(table_columns(uri), columns, uri=uri, flag=flags[0])
    if detected.layout.name == "georay":
        log.info("%s: read as layout georay (%s)", uri, detected.layout.title)
        return read_manifest(uri), detected
    table, detected = read_layout(uri, columns=columns, flag=flags[0], files=True)
    if "uri" in detected.source:  # mapped by hand: paths relative to the table, as manifests
        from georay.data.storage import resolve_relative

        base = parent_of(uri)
        uris = [u and resolve_relative(u, base) for u in table["uri"].to_pylist()]
        table = table.set_column(table.schema.get_field_index("uri"), "uri", pa.array(uris))
        table = table.drop_columns(["_file"])
    else:
        table, root = with_uris(table, uri, image_root, flags[1])
        detected.notes["image_root"] = root
    return validate_manifest(table), detected
