"""Calibration of confidences: fit, measure, store next to a model, apply (issue 20).

A method's raw probabilities (a VLM's token probabilities, a kNN vote share, a zero-shot
softmax) are rarely what they claim: 0.9 may be right 70% of the time. ``georay calibrate``
fits, per method and level (``country``, ``city``), a map from raw to calibrated probability on
labelled rows the model did not train on, and writes it as ``calibration.json`` next to the
model (artifact folder or gallery folder); producers apply it to every row with
:meth:`Calibration.apply_row` (through :func:`georay.protocol.predictions.with_confidence`).

Two maps are fitted on the same rows and both stored; ``use`` says which one is applied:

* **temperature**: the answer's log-odds divided by ``T`` (``p' = sigmoid(logit(p) / T)``),
  the one-answer form of temperature scaling (Guo et al., 2017): a single probability per row
  is all every method gives, and it keeps the order of rows, so selective-prediction curves
  are unchanged by it. ``T`` minimizes the log-loss of correctness (Newton steps on ``1/T``; the
  loss is convex in it), with Platt's smoothed targets so that a clean validation set cannot
  send it to 0.
* **isotonic**: the monotone step map that best fits correctness in squared error (pool
  adjacent violators over the distinct raw values; linear between steps). More flexible, but
  it merges rows into ties and needs more rows.

``auto`` (the default) picks the one with the lower 5-fold cross-validated Brier score.

Measures: expected calibration error over equal-mass bins (:func:`expected_calibration_error`)
and the Brier score (:func:`brier_score`). Pure NumPy: no Ray, no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

CALIBRATION_FILE = "calibration.json"
FORMAT = "georay-calibration"
VERSION = 1
LEVELS = ("country", "city")
MAPS = ("auto", "temperature", "isotonic")  # what `georay calibrate --map` accepts
APPLIED = ("none", "temperature", "isotonic")  # what a level can apply; "none" only via auto
ECE_BINS = 15
_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking log-odds
_BETA_MAX = 100.0  # 1/T: a sharper map than this is a sign of too few or too clean rows
_BETA_MIN = 1e-3
_MIN_ROWS_AUTO = 20  # fewer rows than this: temperature, whatever `auto` would say


def _arrays(p, correct) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(correct, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} probabilities but {len(y)} outcomes")
    if len(p) and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must be finite and in [0, 1]")
    return p, y


def expected_calibration_error(p, correct, bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``bins`` equal-mass bins.

    Rows are sorted by confidence and cut into ``bins`` groups of (nearly) equal size;
    ECE = sum over bins of (bin rows / rows) * |accuracy in bin - mean confidence in bin|.
    NaN for no rows.
    """
    p, y = _arrays(p, correct)
    if not len(p):
        return math.nan
    order = np.argsort(p, kind="stable")
    total = 0.0
    for idx in np.array_split(order, min(bins, len(p))):
        total += len(idx) * abs(y[idx].mean() - p[idx].mean())
    return float(total / len(p))


def brier_score(p, correct) -> float:
    """Mean squared difference between confidence and correctness (0 best; NaN for no rows)."""
    p, y = _arrays(p, correct)
    return float(np.mean((p - y) ** 2)) if len(p) else math.nan


def reliability(p, correct, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per equal-mass bin: mean confidence, accuracy and rows (the reliability diagram)."""
    p, y = _arrays(p, correct)
    parts = np.array_split(np.argsort(p, kind="stable"), min(bins, max(len(p), 1)))
    parts = [i for i in parts if len(i)]
    return {
        "confidence": np.array([p[i].mean() for i in parts]),
        "accuracy": np.array([y[i].mean() for i in parts]),
        "rows": np.array([len(i) for i in parts]),
    }


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


def fit_temperature(p, correct, steps: int = 50) -> float:
    """The temperature ``T`` of ``sigmoid(logit(p) / T)`` that minimizes log-loss.

    Newton's method on ``b = 1/T`` (logistic regression on the log-odds with no intercept, so
    the loss is convex in ``b``), kept within [1/100, 1000]. The outcomes are Platt's smoothed
    targets, ``(right + 1) / (right + 2)`` for a right row and ``1 / (wrong + 2)`` for a wrong
    one (Platt, 1999): a validation set the model gets all right would otherwise drive ``T`` to
    0 and send every confidence to 0 or 1. No rows: 1 (the identity).
    """
    p, y = _arrays(p, correct)
    z = _logit(p)
    if not len(p) or not np.any(z):
        return 1.0
    right = float(y.sum())
    y = np.where(y > 0.5, (right + 1) / (right + 2), 1 / (len(y) - right + 2))
    b = 1.0
    for _ in range(steps):
        s = _sigmoid(b * z)
        grad = np.sum((s - y) * z)
        hess = np.sum(s * (1 - s) * z * z)
        # every row saturated (hess ~ 0): move out of the flat region by doubling or shrinking
        step = -np.sign(grad) * b if hess <= 1e-12 else -grad / hess
        new = float(np.clip(b + step, _BETA_MIN, _BETA_MAX))
        if abs(new - b) < 1e-10 * max(1.0, b):
            b = new
            break
        b = new
    return 1.0 / b


def fit_isotonic(p, correct) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, y)`` of the non-decreasing map fitted by pool adjacent violators.

    Rows with equal confidence are pooled first (a map is a function of the confidence), then
    adjacent groups whose accuracy decreases are merged; each block contributes its lowest and
    highest confidence as knots at its accuracy. Apply with :func:`apply_isotonic`.
    """
    p, y = _arrays(p, correct)
    if not len(p):
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    xs, inv = np.unique(p, return_inverse=True)
    weight = np.bincount(inv).astype(np.float64)
    mean = np.bincount(inv, weights=y) / weight
    # Stack of blocks: (value, weight, first x index, last x index)
    vals, wts, lo, hi = [], [], [], []
    for i, (m, w) in enumerate(zip(mean, weight, strict=True)):
        vals.append(m), wts.append(w), lo.append(i), hi.append(i)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w2 = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w2
            wts[-2], hi[-2] = w2, hi[-1]
            del vals[-1], wts[-1], lo[-1], hi[-1]
    kx, ky = [], []
    for v, a, b in zip(vals, lo, hi, strict=True):
        kx.append(xs[a]), ky.append(v)
        if b != a:
            kx.append(xs[b]), ky.append(v)
    return np.array(kx), np.array(ky)


def apply_temperature(p, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / temperature)``; T = 1 leaves ``p`` as it is."""
    p = np.asarray(p, dtype=np.float64)
    if temperature == 1.0:
        return p
    return _sigmoid(_logit(p) / temperature)


def apply_isotonic(p, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The isotonic map at ``p``: linear between knots, flat beyond the first and last."""
    return np.interp(np.asarray(p, dtype=np.float64), x, y)


@dataclass(frozen=True)
class LevelMap:
    """The calibration of one method at one level.

    Attributes
    ----------
    use : str
        The map applied: ``"temperature"``, ``"isotonic"`` or ``"none"`` (the raw confidence:
        what ``auto`` keeps when neither fitted map beats it).
    temperature : float
        ``T`` of the temperature map.
    isotonic_x, isotonic_y : list of float
        Knots of the isotonic map.
    rows, correct : int
        Rows fitted on, and how many of them were right.
    fit : dict
        In-sample figures: ECE and Brier before and after each map, the cross-validated Brier
        of each map when ``auto`` chose (a record, not used to apply).
    """

    use: str
    temperature: float = 1.0
    isotonic_x: list[float] = field(default_factory=lambda: [0.0, 1.0])
    isotonic_y: list[float] = field(default_factory=lambda: [0.0, 1.0])
    rows: int = 0
    correct: int = 0
    fit: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.use not in APPLIED:
            raise ValueError(f"unknown calibration map {self.use!r}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be positive, got {self.temperature!r}")
        if len(self.isotonic_x) != len(self.isotonic_y) or not self.isotonic_x:
            raise ValueError("isotonic knots: x and y must be non-empty and of equal length")

    def __call__(self, p) -> np.ndarray:
        """Calibrated probabilities of raw ``p`` (an array, or a float -> 0-d array)."""
        if self.use == "none":
            return np.asarray(p, dtype=np.float64)
        if self.use == "temperature":
            return apply_temperature(p, self.temperature)
        return apply_isotonic(p, np.asarray(self.isotonic_x), np.asarray(self.isotonic_y))


def _cv_brier(p: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Cross-validated Brier score of each map (rows shuffled with a fixed seed)."""
    # Sorted first, so the folds do not depend on the order the rows were read in (a bulk
    # job's parts come back in any order): the same rows always choose the same map.
    order = np.lexsort((y, p))
    p, y = p[order], y[order]
    fold = np.random.default_rng(seed).permutation(len(p)) % folds
    out = {"temperature": 0.0, "isotonic": 0.0}
    for k in range(folds):
        tr, te = fold != k, fold == k
        t = fit_temperature(p[tr], y[tr])
        x, v = fit_isotonic(p[tr], y[tr])
        out["temperature"] += float(np.sum((apply_temperature(p[te], t) - y[te]) ** 2))
        out["isotonic"] += float(np.sum((apply_isotonic(p[te], x, v) - y[te]) ** 2))
    return {k: v / len(p) for k, v in out.items()}


def fit_level(p, correct, use: str = "auto") -> LevelMap:
    """Fit both maps on raw confidences ``p`` and outcomes ``correct`` (bool) of one level.

    Parameters
    ----------
    p, correct : array-like
        One entry per labelled row that has a confidence.
    use : str
        ``"temperature"``, ``"isotonic"`` or ``"auto"``: the lowest 5-fold cross-validated Brier
        score of the two maps and of the raw confidences ("none"; the simpler on a tie), so a
        fit on a small validation set never makes scores that were already calibrated worse;
        temperature below 20 rows.
    """
    if use not in MAPS:
        raise ValueError(f"use must be one of {MAPS}, got {use!r}")
    p, y = _arrays(p, correct)
    t = fit_temperature(p, y)
    x, v = fit_isotonic(p, y)
    after_t, after_i = apply_temperature(p, t), apply_isotonic(p, x, v)
    fit = {
        "ece_before": expected_calibration_error(p, y),
        "brier_before": brier_score(p, y),
        "ece_temperature": expected_calibration_error(after_t, y),
        "brier_temperature": brier_score(after_t, y),
        "ece_isotonic": expected_calibration_error(after_i, y),
        "brier_isotonic": brier_score(after_i, y),
    }
    if use == "auto":
        use = "temperature"
        if len(p) >= _MIN_ROWS_AUTO:
            # Nothing is fitted for "none": its Brier on all rows is already out-of-sample.
            cv = {"none": fit["brier_before"], **_cv_brier(p, y)}
            fit["cv_brier"] = cv
            use = min(APPLIED, key=cv.__getitem__)
    return LevelMap(use=use, temperature=t, isotonic_x=x.tolist(), isotonic_y=v.tolist(),
                    rows=len(p), correct=int(y.sum()), fit=fit)  # fmt: skip


@dataclass
class Calibration:
    """The ``calibration.json`` of a model: per method, per level, a :class:`LevelMap`.

    A folder normally holds one method's calibration (the method of the model in it); the name
    is what ``georay calibrate --method`` said, and :meth:`get` falls back to the only entry so
    that a method scored under another name (``vlm`` vs ``predictions``) still finds it.
    """

    methods: dict[str, dict[str, LevelMap]] = field(default_factory=dict)
    provenance: dict[str, dict] = field(default_factory=dict)  # method -> how it was fitted

    def get(self, method: str = "") -> dict[str, LevelMap] | None:
        """The level maps of ``method``; the only entry when there is one; else None."""
        if method in self.methods:
            return self.methods[method]
        if len(self.methods) == 1:
            return next(iter(self.methods.values()))
        return None

    def apply(self, p, method: str, level: str) -> np.ndarray:
        """Calibrated ``p`` of ``method`` at ``level`` (unchanged where there is no map)."""
        maps = self.get(method) or {}
        fn = maps.get(level)
        return np.asarray(p, dtype=np.float64) if fn is None else fn(p)

    def apply_row(self, row: dict, method: str = "") -> dict:
        """Calibrate one predictions row's confidence fields (in place, returned).

        ``country_confidence`` and ``city_confidence`` go through their level's map, and the
        city's is capped at the country's (a right city needs the right country). Each
        candidate's probability goes through the map of the finest level it names; the first
        (the answer) then equals the row's confidence at that level, and when the others would
        sum past what the first leaves, they are scaled down together to fit (order kept).
        """
        country, city = row.get("country_confidence"), row.get("city_confidence")
        if country is not None:
            country = float(self.apply(country, method, "country"))
            row["country_confidence"] = country
        if city is not None:
            city = float(self.apply(city, method, "city"))
            row["city_confidence"] = city if country is None else min(city, country)
        if row.get("candidates"):
            row["candidates"] = self._candidates(row, method)
        return row

    def _candidates(self, row: dict, method: str) -> list[dict]:
        out = []
        for i, c in enumerate(row["candidates"]):
            level = "city" if c.get("city") else "country"
            mine = row.get(f"{level}_confidence") if i == 0 else None
            p = mine if mine is not None else float(self.apply(c["probability"], method, level))
            out.append({**c, "probability": p})
        room, rest = 1.0 - out[0]["probability"], sum(c["probability"] for c in out[1:])
        if rest > room:
            scale = max(room, 0.0) / rest
            out[1:] = [{**c, "probability": c["probability"] * scale} for c in out[1:]]
        return out

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "methods": {
                m: {"levels": {lvl: asdict(fn) for lvl, fn in maps.items()},
                    **({"fitted": self.provenance[m]} if m in self.provenance else {})}
                for m, maps in self.methods.items()
            },
        }  # fmt: skip
        return json.dumps(body, indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, where: str = "calibration") -> Calibration:
        """Parse a ``calibration.json``; ValueError naming ``where`` if it is not one."""
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON: {err}") from None
        if body.get("format") != FORMAT or body.get("version") != VERSION:
            raise ValueError(
                f"{where}: not a {FORMAT} v{VERSION} file (format={body.get('format')!r}, "
                f"version={body.get('version')!r})"
            )
        out = cls()
        for method, entry in (body.get("methods") or {}).items():
            levels = entry.get("levels") or {}
            unknown = set(levels) - set(LEVELS)
            if unknown:
                raise ValueError(f"{where}: method {method!r}: unknown levels {sorted(unknown)}")
            out.methods[method] = {lvl: LevelMap(**spec) for lvl, spec in levels.items()}
            if "fitted" in entry:
                out.provenance[method] = entry["fitted"]
        return out


def calibration_uri(model_or_file: str) -> str:
    """The ``calibration.json`` of a model/gallery folder, or the file itself if named."""
    if model_or_file.endswith(".json"):
        return model_or_file
    from georay.data.storage import join_uri

    return join_uri(model_or_file, CALIBRATION_FILE)


def load_calibration(model_or_file: str) -> Calibration | None:
    """The calibration stored next to a model (folder or ``s3://`` prefix), or in a named
    ``.json`` file; None where there is none (a model never calibrated: probabilities raw).

    Raises
    ------
    ValueError
        The file exists but is not a georay calibration.
    """
    from georay.data.storage import read_bytes

    uri = calibration_uri(model_or_file)
    try:
        text = read_bytes(uri).decode()
    except FileNotFoundError:
        return None
    except OSError as err:  # S3 reports a missing key as an OSError naming it
        if "does not exist" in str(err) or "NoSuchKey" in str(err) or "Not Found" in str(err):
            return None
        raise
    return Calibration.from_json(text, where=uri)


def save_calibration(calibration: Calibration, model_or_file: str) -> str:
    """Write ``calibration.json`` next to a model (or to a named ``.json``); returns its URI."""
    from georay.data.storage import write_bytes

    uri = calibration_uri(model_or_file)
    write_bytes(uri, calibration.to_json().encode())
    return uri


def job_calibration(choice: str, home: str) -> tuple[Calibration | None, str | None]:
    """The calibration a job applies, and how its ``job.json`` names it.

    Parameters
    ----------
    choice : str
        The ``--calibration`` setting: a file or folder; empty = ``home``'s; ``none`` = none.
    home : str
        The model's own folder (VLM artifact, kNN gallery, zero-shot model folder), or "".

    Returns
    -------
    (Calibration or None, str or None)
        The maps, and ``"<uri> sha256:<digest>"`` of what was applied (a resumed job with
        another calibration is refused, so one output never mixes two).

    Raises
    ------
    UserError
        ``--calibration`` names no calibration, or a file that is not one.
    """
    from georay.config import NO_CALIBRATION
    from georay.errors import UserError

    where = choice or home
    if choice == NO_CALIBRATION or not where:
        return None, None
    try:
        calibration = load_calibration(where)
    except ValueError as err:
        raise UserError(f"--calibration: {err}") from None
    if calibration is None:
        if choice:
            raise UserError(f"--calibration {choice}: no calibration there (`georay "
                            "calibrate` writes one)")  # fmt: skip
        return None, None
    digest = hashlib.sha256(calibration.to_json().encode()).hexdigest()[:16]
    return calibration, f"{calibration_uri(where)} sha256:{digest}"
