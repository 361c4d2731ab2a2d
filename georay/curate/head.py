"""The student's regression head: ridge regression on standardised, frozen CLIP embeddings.

Why ridge and not an MLP: the encoder is frozen and a fit sees about a thousand teacher labels,
the regime where a linear probe is the standard read-out of CLIP features. Ridge has a closed
form (one SVD fits every regularisation strength, chosen by k-fold cross-validation), is
deterministic, needs no learning-rate or epoch tuning, and scoring is one matrix product in the
actor. A head is saved as ``head.json`` (encoder id, embedding size, threshold, fit metrics) plus
``head.npz`` (arrays) and, for random-init encoders, ``encoder.pt`` (their weights), in a local
folder or under an ``s3://`` prefix.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from georay.data.storage import join_uri, read_bytes, write_bytes

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


@dataclass
class Head:
    """A fitted ridge head and what it was fitted on."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    info: dict = field(default_factory=dict)

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """Locatability in [0, 1] for embeddings ``(n, dim)``; float32."""
        z = (np.asarray(emb, dtype=np.float64) - self.mean) / self.scale
        return np.clip(z @ self.coef + self.intercept, 0.0, 1.0).astype(np.float32)


def _ridge_path(x: np.ndarray, y: np.ndarray, alphas) -> list[np.ndarray]:
    """Ridge coefficients for each alpha from one SVD of centred ``x`` (y centred too)."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    uty = u.T @ y
    return [vt.T @ (s / (s**2 + a) * uty) for a in alphas]


def fit_ridge(emb: np.ndarray, y: np.ndarray, *, alphas=ALPHAS, folds: int = 5, seed: int = 0):
    """Fit a :class:`Head`; alpha picked by k-fold CV (mean squared error).

    Returns
    -------
    Head
        ``info`` holds ``alpha`` and ``cv_mse``.
    """
    x = np.asarray(emb, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < folds * 2:
        raise ValueError(f"need at least {folds * 2} labelled embeddings, got {len(x)}")
    mean, scale = x.mean(0), x.std(0) + 1e-8
    z = (x - mean) / scale
    fold = np.random.default_rng(seed).permutation(len(z)) % folds
    mse = np.zeros(len(alphas))
    for k in range(folds):
        tr, va = fold != k, fold == k
        ym = y[tr].mean()
        zm = z[tr].mean(0)
        for j, w in enumerate(_ridge_path(z[tr] - zm, y[tr] - ym, alphas)):
            mse[j] += np.mean(((z[va] - zm) @ w + ym - y[va]) ** 2) / folds
    best = int(np.argmin(mse))
    ym, zm = y.mean(), z.mean(0)
    (coef,) = _ridge_path(z - zm, y - ym, [alphas[best]])
    info = {"alpha": float(alphas[best]), "cv_mse": float(mse[best])}
    return Head(mean, scale, coef, float(ym - zm @ coef), info)


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict:
    """Spearman and Pearson correlation, MAE and count of ``pred`` against ``target``."""
    from scipy.stats import pearsonr, spearmanr

    pred, target = np.asarray(pred, float), np.asarray(target, float)
    return {
        "spearman": float(spearmanr(pred, target).statistic),
        "pearson": float(pearsonr(pred, target).statistic),
        "mae": float(np.mean(np.abs(pred - target))),
        "n": len(pred),
    }


def save_head(head: Head, uri: str) -> None:
    """Write ``head.json`` + ``head.npz`` into folder or prefix ``uri``."""
    buf = io.BytesIO()
    np.savez(buf, mean=head.mean, scale=head.scale, coef=head.coef)
    write_bytes(join_uri(uri, "head.npz"), buf.getvalue())
    info = {**head.info, "intercept": head.intercept}
    write_bytes(join_uri(uri, "head.json"), json.dumps(info, indent=2).encode())


def load_head(uri: str) -> Head:
    """Read a head written by :func:`save_head`."""
    info = json.loads(read_bytes(join_uri(uri, "head.json")))
    arrays = np.load(io.BytesIO(read_bytes(join_uri(uri, "head.npz"))))
    return Head(arrays["mean"], arrays["scale"], arrays["coef"], info.pop("intercept"), info)
