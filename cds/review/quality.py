"""The quality report: the served verdict per model version, overall and by age band, sex, site and rate.

The served verdict is the interpretation row (``model_name="ecg-interpretation"``): ``score`` is the
combined probability, ``flagged`` the one verdict (docs/models/verdict.md). Truth comes only from
*signed* reviews (a verdict a senior clinician put their name to): a confirmed flag or a rejected
"normal" is abnormal, a rejected flag or a confirmed "normal" is normal (as in ``cds.review.metrics``).
Site is the sending organisation and the source (API client) within it: ``org/source``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from cds.analysis.models import Prediction
from cds.review.models import DriftAlarm, Review
from cds.review.quality_stats import reliability, with_bootstrap_ci
from cds.review.recalibration_report import recalibration_summary
from inference.results import INTERPRETATION_NAME

# A candidate running in shadow stores its verdicts under "shadow:<model_name>": every reader of the
# served verdict (review page, CDS cards, FHIR results, write-back) selects the exact model_name, so
# a shadow row can never be shown or written back as the verdict.
SHADOW_PREFIX = "shadow:"
GROUPINGS = ("age_band", "sex", "site", "sampling_rate")
FIGURES = ("auroc", "sensitivity", "specificity", "ppv")
# Bands a quality team can act on: paediatric, young adult, middle age, older, very old.
AGE_BANDS = ((18, "<18"), (40, "18-39"), (65, "40-64"), (80, "65-79"), (200, "80+"))


def shadow_model_name(model_name: str) -> str:
    """Return the model_name a shadow candidate of ``model_name`` stores its predictions under."""
    return f"{SHADOW_PREFIX}{model_name}"


@dataclass(frozen=True)
class ServedRow:
    """One served verdict with the subgroup keys and, when signed, the clinicians' truth."""

    job_id: int
    model_version: str
    score: float | None  # the combined probability; None for a fallback verdict (no fitted combiner)
    flagged: bool
    age_band: str
    sex: str
    site: str
    sampling_rate: str
    called: bool | None  # the served call the reviewer judged (None: no signed review)
    truth: bool | None  # abnormal per the signed verdict


def age_band(age_min: float | None, age_max: float | None) -> str:
    """Return the band of the age range's midpoint (a partial birth date gives a range), or "unknown"."""
    if age_min is None and age_max is None:
        return "unknown"
    age = ((age_min if age_min is not None else age_max) + (age_max if age_max is not None else age_min)) / 2  # type: ignore[operator]
    return next(label for upper, label in AGE_BANDS if age < upper)


def signed_truth(queue: str, verdict: str) -> bool:
    """Return whether the signed verdict says abnormal: the clinician judged the served call (the queue).

    A confirmed flag or a rejected "normal" is abnormal; a rejected flag or a confirmed "normal" is normal.
    """
    return (queue == Review.Queue.FLAGGED) == (verdict == "accept")


def site_of(organization: str, source: str) -> str:
    """Return the site label: the sending organisation and, when known, the source (ward feed) in it."""
    return f"{organization}/{source or '(unknown source)'}"


def served_rows(
    *, since: datetime | None = None, model_version: str | None = None, model_name: str = INTERPRETATION_NAME
) -> list[ServedRow]:
    """Return the verdicts of ``model_name`` (received since ``since``) with their subgroups and signed truth.

    A shadow or candidate version's rows get the truth of the same ECG's signed review: the
    clinician judged the served call, so the truth is derived from that call, never from this row's.
    """
    predictions = Prediction.objects.filter(model_name=model_name)
    if since is not None:
        predictions = predictions.filter(created_at__gte=since)
    if model_version:
        predictions = predictions.filter(model_version=model_version)
    values = predictions.values_list(
        "job_id", "model_version", "score", "flagged", "recording__age_min_years", "recording__age_max_years",
        "recording__sex", "recording__organization__slug", "recording__received_from",
        "recording__sample_rate_hz", "job__review__queue", "job__review__signed_revision__verdict",
    )  # fmt: skip
    rows = []
    for job_id, version, score, flagged, age_min, age_max, sex, org, source, rate, queue, verdict in values:
        called = truth = None
        if verdict in {"accept", "reject"}:
            called = queue == Review.Queue.FLAGGED
            truth = signed_truth(queue, verdict)
        rows.append(
            ServedRow(
                job_id=job_id,
                model_version=version,
                score=float(score) if score is not None else None,
                flagged=bool(flagged),
                age_band=age_band(age_min, age_max),
                sex=sex or "unknown",
                site=site_of(org, source),
                sampling_rate=f"{rate:g} Hz",
                called=called,
                truth=truth,
            )
        )
    return rows


def group_figures(rows: list[ServedRow], *, resamples: int | None = None) -> dict[str, Any]:
    """Return counts, flag rate and, over signed verdicts, AUROC/sensitivity/specificity/PPV with 95% CIs."""
    signed = [r for r in rows if r.truth is not None]
    figures: dict[str, Any] = {
        "n": len(rows),
        "n_flagged": sum(r.flagged for r in rows),
        "flag_rate": sum(r.flagged for r in rows) / len(rows) if rows else None,
        "n_signed": len(signed),
        "n_signed_abnormal": sum(bool(r.truth) for r in signed),
    }
    unscored = sum(r.score is None for r in signed)
    scores = np.array([r.score if r.score is not None else 0.0 for r in signed], dtype=np.float64)
    called = np.array([r.flagged for r in signed], dtype=bool)  # this version's own call
    truth = np.array([bool(r.truth) for r in signed], dtype=bool)
    kwargs = {"resamples": resamples} if resamples is not None else {}
    figures.update(with_bootstrap_ci(scores, called, truth, **kwargs))
    if unscored:
        # A fallback verdict ("abnormal when any source flags", no fitted combiner for these model
        # versions) has a call but no probability: an AUROC over stand-in zeros would rank nothing.
        figures["auroc"] = {"value": None, "ci_low": None, "ci_high": None}
        figures["auroc_unavailable"] = f"{unscored} signed verdicts have no combined probability (fallback verdict)"
    return figures


def _by(rows: Iterable[ServedRow], key: str) -> dict[str, list[ServedRow]]:
    groups: dict[str, list[ServedRow]] = defaultdict(list)
    for row in rows:
        groups[getattr(row, key)].append(row)
    return dict(sorted(groups.items()))


def calibration_by_site(rows: list[ServedRow]) -> dict[str, Any]:
    """Return the reliability table and ECE of the combined probability per site, from signed verdicts."""
    result = {}
    # Only verdicts with a combined probability can be calibrated (a fallback verdict has none).
    for site, group in _by((r for r in rows if r.truth is not None and r.score is not None), "site").items():
        scores = np.array([r.score for r in group], dtype=np.float64)
        truth = np.array([bool(r.truth) for r in group], dtype=bool)
        result[site] = reliability(scores, truth)
    return result


def drift_summary(*, since: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Return the drift alarms raised since ``since`` per site (open ones and acknowledged ones)."""
    alarms = DriftAlarm.objects.order_by("site", "day", "feature")
    if since is not None:
        alarms = alarms.filter(day__gte=since.date())
    result: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alarm in alarms:
        result[alarm.site].append(alarm.as_json())
    return dict(result)


def quality_report(
    *, since: datetime | None = None, model_version: str | None = None, resamples: int | None = None
) -> dict[str, Any]:
    """Return the report: per model version, figures overall and by subgroup, calibration per site, drift."""
    rows = served_rows(since=since, model_version=model_version)
    # Shadow candidates are reported beside the served versions, labelled, on the same ECGs' truth.
    rows += [
        replace(row, model_version=f"{row.model_version} (shadow)")
        for row in served_rows(
            since=since, model_version=model_version, model_name=shadow_model_name(INTERPRETATION_NAME)
        )
    ]
    report: dict[str, Any] = {
        "model_name": INTERPRETATION_NAME,
        "since": since.isoformat() if since else None,
        "model_versions": sorted({r.model_version for r in rows}),
        "overall": {},
        **{f"by_{grouping}": {} for grouping in GROUPINGS},
        "calibration": {},
        "drift": drift_summary(since=since),
        "recalibration": recalibration_summary(),  # per site: approved artefact, drafts awaiting approval
    }
    for version, version_rows in _by(rows, "model_version").items():
        report["overall"][version] = group_figures(version_rows, resamples=resamples)
        for grouping in GROUPINGS:
            report[f"by_{grouping}"][version] = {
                group: group_figures(group_rows, resamples=resamples)
                for group, group_rows in _by(version_rows, grouping).items()
            }
        report["calibration"][version] = calibration_by_site(version_rows)
    return report


CSV_HEADER = ["model_version", "grouping", "group", "n", "n_flagged", "flag_rate", "n_signed", "n_signed_abnormal"] + [
    f"{figure}{suffix}" for figure in FIGURES for suffix in ("", "_ci_low", "_ci_high")
]


def report_csv_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Return the report's figures as CSV rows (header first): one row per model version and group."""
    rows: list[list[Any]] = [CSV_HEADER]

    def row(version: str, grouping: str, group: str, figures: dict[str, Any]) -> list[Any]:
        cells = [version, grouping, group] + [figures[k] for k in CSV_HEADER[3:8]]
        for figure in FIGURES:
            cells += [figures[figure]["value"], figures[figure]["ci_low"], figures[figure]["ci_high"]]
        return ["" if c is None else c for c in cells]

    for version, figures in report["overall"].items():
        rows.append(row(version, "overall", "all", figures))
        for grouping in GROUPINGS:
            for group, group_figs in report[f"by_{grouping}"][version].items():
                rows.append(row(version, grouping, group, group_figs))
    return rows


def report_csv(report: dict[str, Any]) -> str:
    """Return the report's figures as CSV text."""
    out = io.StringIO()
    csv.writer(out).writerows(report_csv_rows(report))
    return out.getvalue()
