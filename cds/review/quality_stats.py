"""Statistics for quality teams: bootstrap intervals, calibration, drift tests (pure numpy/scipy).

Kept free of Django so every figure in ``quality_report`` can be checked against a hand computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 1000
# A fixed seed: the same data give the same intervals on every run (reports are compared over time).
BOOTSTRAP_SEED = 19


def auroc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Return P(score of an abnormal > score of a normal) + half the ties; None unless both classes exist."""
    positives, negatives = scores[truth], np.sort(scores[~truth])
    if len(positives) == 0 or len(negatives) == 0:
        return None
    below = np.searchsorted(negatives, positives, side="left")
    at_or_below = np.searchsorted(negatives, positives, side="right")
    return float((below + at_or_below).sum() / (2.0 * len(positives) * len(negatives)))


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def operating_figures(called: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """Return sensitivity, specificity and PPV of the served call against clinicians' truth."""
    tp, fp = int((called & truth).sum()), int((called & ~truth).sum())
    fn, tn = int((~called & truth).sum()), int((~called & ~truth).sum())
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp)}


def _statistics(scores: np.ndarray, called: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    return {"auroc": auroc(scores, truth), **operating_figures(called, truth)}


def _resample_weights(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """Return (count, n) multiplicities: how often each ECG is drawn in each bootstrap resample."""
    draws = rng.integers(0, n, (count, n)) + (np.arange(count) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=count * n).reshape(count, n).astype(np.float64)


def _bootstrap_chunk(
    weights: np.ndarray, scores: np.ndarray, called: np.ndarray, truth: np.ndarray
) -> dict[str, np.ndarray]:
    """Return each figure for every resample (rows of ``weights``) at once; NaN where undefined.

    AUROC with multiplicities: sum over abnormal draws of (normal draws scoring lower + half the
    ties), over (abnormal draws x normal draws). Scores are sorted once; ties share one column.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        tp, fp = weights @ (called & truth), weights @ (called & ~truth)
        fn, tn = weights @ (~called & truth), weights @ (~called & ~truth)
        order = np.argsort(scores, kind="mergesort")
        sorted_scores = scores[order]
        starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        w_sorted = weights[:, order]
        positives = np.add.reduceat(w_sorted * truth[order], starts, axis=1)
        negatives = np.add.reduceat(w_sorted * ~truth[order], starts, axis=1)
        below = np.cumsum(negatives, axis=1) - negatives
        won = (positives * (below + 0.5 * negatives)).sum(axis=1)
        return {
            "auroc": won / (positives.sum(axis=1) * negatives.sum(axis=1)),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
        }


def with_bootstrap_ci(
    scores: np.ndarray, called: np.ndarray, truth: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, dict[str, float | None]]:
    """Return {figure: {value, ci_low, ci_high}} with 95% percentile-bootstrap intervals (ECGs resampled).

    A resample in which a figure is undefined (e.g. no abnormal ECG drawn) is left out of that
    figure's interval; with fewer than 20 defined resamples the interval is None (too few to say).
    All resamples are computed as matrix operations, in chunks that keep memory near 16 MB.
    """
    point = _statistics(scores, called, truth)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(scores)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in point}
    chunk = max(1, 2_000_000 // max(n, 1))
    for first in range(0, resamples if n else 0, chunk):
        weights = _resample_weights(rng, n, min(chunk, resamples - first))
        for name, values in _bootstrap_chunk(weights, scores, called, truth).items():
            draws[name].append(values[~np.isnan(values)])
    result: dict[str, dict[str, float | None]] = {}
    for name, value in point.items():
        defined = np.concatenate(draws[name]) if draws[name] else np.array([])
        low = high = None
        if len(defined) >= 20:
            low, high = (float(q) for q in np.percentile(defined, [2.5, 97.5]))
        result[name] = {"value": value, "ci_low": low, "ci_high": high}
    return result


def reliability(scores: np.ndarray, truth: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Return the reliability table (equal-width probability bins) and the expected calibration error.

    ECE = sum over bins of (bin share of ECGs) * |observed abnormal fraction - mean predicted probability|.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table, ece, n = [], 0.0, len(scores)
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if count == 0:
            continue
        predicted, observed = float(scores[mask].mean()), float(truth[mask].mean())
        ece += count / n * abs(observed - predicted)
        table.append(
            {"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": count, "mean_predicted": predicted, "observed": observed}
        )
    return {"n": n, "ece": ece if n else None, "bins": table}


def psi(reference: Sequence[Any], current: Sequence[Any]) -> float:
    """Return the population stability index of two categorical samples (0.25 or more: a major shift).

    A category missing on one side counts as 0.5 ECG there (additive smoothing), so a rate or lead
    set never seen in the reference gives a large but finite index.
    """
    categories = sorted(set(reference) | set(current), key=str)
    ref = np.array([list(reference).count(c) for c in categories], dtype=np.float64) + 0.5
    cur = np.array([list(current).count(c) for c in categories], dtype=np.float64) + 0.5
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(((cur - ref) * np.log(cur / ref)).sum())


def ks(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Return the two-sample Kolmogorov-Smirnov statistic and its p-value (exact for small samples)."""
    result = stats.ks_2samp(np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)
