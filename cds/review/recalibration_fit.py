"""Platt scaling of the combined probability on its logit, with a cross-validated ECE (pure numpy).

``p' = sigmoid(slope * logit(p) + intercept)``: two parameters, so a site with a few hundred signed
ECGs can fit it without overfitting, and, with ``slope > 0``, strictly increasing in ``p``: the
operating point maps through the same function and every ECG keeps its flag (docs/quality.md).
Kept free of Django so each figure can be checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cds.review.quality_stats import reliability

METHOD = "platt-logit"
FOLDS = 5
# Fixed: the same verdicts give the same folds, so a refit on unchanged data reproduces its figures.
FOLD_SEED = 19
_EPS = 1e-6


class FitRefused(ValueError):
    """The data cannot support a fit (too few verdicts, one class too rare, not increasing)."""


@dataclass(frozen=True)
class Platt:
    """``sigmoid(slope * logit(p) + intercept)``."""

    slope: float
    intercept: float

    def apply(self, probability: np.ndarray | float) -> np.ndarray:
        """Return the recalibrated probability (array in, array out)."""
        return _sigmoid(self.slope * _logit(np.asarray(probability, dtype=np.float64)) + self.intercept)

    def to_json(self) -> dict[str, float]:
        """Return the stored parameters."""
        return {"slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Platt:
        """Rebuild from ``to_json`` output."""
        return cls(slope=float(data["slope"]), intercept=float(data["intercept"]))


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(clipped / (1.0 - clipped))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def platt_fit(probability: np.ndarray, truth: np.ndarray) -> Platt:
    """Fit slope and intercept by Newton's method on the log-loss, with Platt's smoothed targets.

    The targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of 1 and 0 keep the fit finite when the
    classes are separable (Platt 1999), which small sites often are.
    """
    x = _logit(np.asarray(probability, dtype=np.float64))
    y = np.asarray(truth, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    target = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    design = np.column_stack([x, np.ones_like(x)])
    theta = np.array([1.0, 0.0])  # identity: start from "the combiner is calibrated"
    for _ in range(100):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (p - target)
        hessian = design.T @ (design * (p * (1.0 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return Platt(slope=float(theta[0]), intercept=float(theta[1]))


def stratified_folds(truth: np.ndarray, folds: int = FOLDS, seed: int = FOLD_SEED) -> np.ndarray:
    """Return each verdict's fold (0..folds-1), both classes spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(truth), dtype=np.int64)
    for cls in (True, False):
        members = np.flatnonzero(np.asarray(truth, dtype=bool) == cls)
        assignment[rng.permutation(members)] = np.arange(len(members)) % folds
    return assignment


def fit_with_cv(
    probability: np.ndarray, truth: np.ndarray, *, min_n: int, min_per_class: int, folds: int = FOLDS
) -> tuple[Platt, dict[str, Any]]:
    """Fit on all verdicts; measure the ECE after by cross-validation (each fold scored by a fit without it).

    Refuses (``FitRefused``) below ``min_n`` verdicts, below ``min_per_class`` of either class, and
    when the fit is not increasing (the scores carry no usable ranking at this site).
    """
    probability = np.asarray(probability, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    n, n_pos = len(truth), int(truth.sum())
    if n < min_n:
        raise FitRefused(f"{n} signed verdicts, fewer than the {min_n} required")
    if min(n_pos, n - n_pos) < min_per_class:
        raise FitRefused(
            f"{n_pos} abnormal and {n - n_pos} normal signed verdicts: need at least {min_per_class} of each"
        )
    model = platt_fit(probability, truth)
    if model.slope <= 0:
        raise FitRefused(f"fitted slope {model.slope:.3f} is not positive: the scores do not rank at this site")
    fold_of = stratified_folds(truth, folds)
    out_of_fold = np.empty(n)
    for fold in range(folds):
        held = fold_of == fold
        out_of_fold[held] = platt_fit(probability[~held], truth[~held]).apply(probability[held])
    before, after = reliability(probability, truth), reliability(out_of_fold, truth)
    figures = {
        "folds": folds,
        "ece_before": before["ece"],
        "ece_after_cv": after["ece"],
        "reliability_before": before["bins"],
        "reliability_after_cv": after["bins"],
        "log_loss_before": _log_loss(probability, truth),
        "log_loss_after_cv": _log_loss(out_of_fold, truth),
    }
    return model, figures


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    clipped = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(np.where(y, np.log(clipped), np.log(1.0 - clipped))))
