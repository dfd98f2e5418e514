"""Quality metrics per model version and period, from reviewed ECGs (pure numpy over selector rows).

Ground truth comes from the reviewer's verdict on the AI call (the one verdict: the flagged queue
holds the ECGs it called abnormal): a confirmed flag or a rejected "normal" (re-annotation queue) is
abnormal; a rejected flag (false positive) or a confirmed normal
is normal. Unreviewed ECGs count only in the score distribution (drift).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median
from typing import Any

import numpy as np
from django.db.models import QuerySet
from django.db.models.functions import TruncDay, TruncMonth, TruncWeek

from cds.analysis.models import Prediction
from cds.review.models import Review, ReviewRevision
from inference.results import DETECTOR_NAME

TRUNC = {"day": TruncDay, "week": TruncWeek, "month": TruncMonth}


@dataclass
class QualityMetrics:
    """What the dashboard shows for one model version and period."""

    n_predictions: int = 0
    n_reviewed: int = 0
    n_flagged: int = 0
    threshold: float | None = None
    auroc: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    ppv: float | None = None
    confusion: dict[str, int] = field(default_factory=dict)
    ai_agreement: float | None = None  # fraction of verdicts confirming the AI call
    reviewer_agreement: float | None = None  # unanimity among reviews with two or more reviewers
    n_multi_reviewed: int = 0
    turnaround_median_h: float | None = None
    turnaround_p90_h: float | None = None
    roc: tuple[list[float], list[float]] = ((), ())  # type: ignore[assignment]
    drift_periods: list[str] = field(default_factory=list)
    drift_scores: list[list[float]] = field(default_factory=list)


def auroc_and_roc(scores: np.ndarray, truth: np.ndarray) -> tuple[float | None, list[float], list[float]]:
    """Return (AUROC, fpr, tpr); AUROC by the rank-sum (Mann-Whitney) formula with tied ranks averaged.

    Returns (None, [], []) unless both classes are present.
    """
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return None, [], []
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    auroc = (ranks[truth].sum() - positives * (positives + 1) / 2.0) / (positives * negatives)
    thresholds = np.unique(scores)[::-1]
    tpr = [0.0] + [float((scores[truth] >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((scores[~truth] >= t).mean()) for t in thresholds]
    return float(auroc), fpr, tpr


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def quality_metrics(
    *, model_version: str | None, since: datetime | None, until: datetime | None, period: str = "week"
) -> QualityMetrics:
    """Compute the dashboard's metrics for detector predictions in [since, until)."""
    predictions: QuerySet[Prediction] = Prediction.objects.filter(model_name=DETECTOR_NAME)
    if model_version:
        predictions = predictions.filter(model_version=model_version)
    if since:
        predictions = predictions.filter(created_at__gte=since)
    if until:
        predictions = predictions.filter(created_at__lt=until)
    metrics = QualityMetrics()
    drift: dict[str, list[float]] = defaultdict(list)
    rows = predictions.annotate(bucket=TRUNC[period]("created_at")).values_list(
        "bucket", "score", "threshold", "flagged"
    )
    for bucket, score, threshold, flagged in rows:
        metrics.n_predictions += 1
        metrics.n_flagged += int(flagged)
        metrics.threshold = threshold if threshold is not None else metrics.threshold
        if score is not None:
            drift[bucket.date().isoformat()].append(float(score))
    metrics.drift_periods = sorted(drift)
    metrics.drift_scores = [drift[p] for p in metrics.drift_periods]

    reviews = list(
        Review.objects.filter(prediction__in=predictions, current__verdict__in=["accept", "reject"]).values_list(
            "pk", "prediction__score", "queue", "current__verdict", "created_at", "decided_at"
        )
    )
    metrics.n_reviewed = len(reviews)
    if reviews:
        scores = np.array([r[1] or 0.0 for r in reviews], dtype=np.float64)
        # The AI's call the reviewer judged: the one verdict (flagged queue), which is the
        # interpretation's when it ran and may differ from the detector's own flag.
        called: np.ndarray = np.array([r[2] == Review.Queue.FLAGGED for r in reviews])
        confirmed = np.array([r[3] == "accept" for r in reviews])
        truth: np.ndarray = np.equal(called, confirmed)
        metrics.auroc, fpr, tpr = auroc_and_roc(scores, truth)
        metrics.roc = (fpr, tpr)
        tp, fp = int((called & truth).sum()), int((called & ~truth).sum())
        fn, tn = int((~called & truth).sum()), int((~called & ~truth).sum())
        metrics.confusion = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
        metrics.sensitivity, metrics.specificity, metrics.ppv = (
            _ratio(tp, tp + fn),
            _ratio(tn, tn + fp),
            _ratio(tp, tp + fp),
        )
        metrics.ai_agreement = float(confirmed.mean())
        hours = [(r[5] - r[4]) / timedelta(hours=1) for r in reviews if r[5] is not None]
        if hours:
            metrics.turnaround_median_h = median(hours)
            metrics.turnaround_p90_h = float(np.percentile(hours, 90))
        metrics.reviewer_agreement, metrics.n_multi_reviewed = _reviewer_agreement([r[0] for r in reviews])
    return metrics


def _reviewer_agreement(review_ids: list[int]) -> tuple[float | None, int]:
    """Return (fraction of multi-reviewer reviews whose reviewers' last verdicts agree, their count)."""
    last: dict[int, dict[Any, str]] = defaultdict(dict)
    verdicts = (
        ReviewRevision.objects.filter(review_id__in=review_ids, kind__in=["accept", "reject"])
        .order_by("review_id", "number")
        .values_list("review_id", "author_id", "verdict")
    )
    for review_id, author_id, verdict in verdicts:
        last[review_id][author_id] = verdict
    multi = [set(by_author.values()) for by_author in last.values() if len(by_author) >= 2]
    if not multi:
        return None, 0
    return sum(len(v) == 1 for v in multi) / len(multi), len(multi)
