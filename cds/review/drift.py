"""Drift per site: each day's input and score statistics against the site's reference window (issue 19).

For every site (``organisation/source``) that sent ECGs on the checked day, compares that day with the
``reference_days`` before it:

- amplitude range (median over leads of the 1st-99th percentile span, µV) and the served score:
  two-sample Kolmogorov-Smirnov; an alarm when p < ``KS_ALPHA`` *and* D >= ``KS_MIN_D`` (a small
  but significant wobble on a busy site is not worth a page);
- sampling rate, lead set and quality flags (decoder's unit/detection-limit flags): population
  stability index over the categories; an alarm at PSI >= ``PSI_ALARM`` (the usual "major shift").

A site switching from µV to mV moves every amplitude by a factor of 1000 (KS D = 1), one resampled to
250 Hz changes the rate category: both are caught on the first day they happen. Each alarm is stored
once (``DriftAlarm``, audited by django-auditlog), shown on the admin and counted on ``/metrics``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cds.analysis.models import Prediction
from cds.ecg.models import EcgRecording
from cds.review.models import DriftAlarm
from cds.review.quality import site_of
from cds.review.quality_stats import ks, psi
from inference.results import INTERPRETATION_NAME

logger = logging.getLogger(__name__)

REFERENCE_DAYS = 14
KS_ALPHA = 0.001
KS_MIN_D = 0.5
PSI_ALARM = 0.25
MIN_DAY = 3  # fewer ECGs on the day: nothing to compare
MIN_REFERENCE = 10
CONTINUOUS = ("amplitude_range_uv", "score")
CATEGORICAL = ("sampling_rate", "lead_set", "quality_flags")


@dataclass
class SiteSample:
    """Per-ECG features of one site over one window."""

    values: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    n: int = 0


def amplitude_range_uv(recording: EcgRecording) -> float:
    """Return the median over leads of the 1st-99th percentile span in µV (robust to a spike)."""
    samples = recording.waveform()
    spans = np.percentile(samples, 99, axis=1) - np.percentile(samples, 1, axis=1)
    return float(np.median(spans))


def quality_flags(quality: dict[str, Any]) -> str:
    """Return the decoder's quality flags as one category ("ok" when none is set)."""
    flags = sorted(key for key, value in (quality or {}).items() if value)
    return ",".join(flags) or "ok"


def _window(start: date, end: date) -> tuple[datetime, datetime]:
    return datetime.combine(start, time.min, tzinfo=UTC), datetime.combine(end, time.min, tzinfo=UTC)


def site_samples(start: date, end: date) -> dict[str, SiteSample]:
    """Return the features of ECGs received in [start, end) (UTC days), per site."""
    low, high = _window(start, end)
    recordings = EcgRecording.objects.filter(created_at__gte=low, created_at__lt=high).select_related("organization")
    # The models' own probability: a site's approved recalibration restates the stored score, and
    # that deliberate change is not drift (the raw value is kept beside it).
    scores = {
        recording_id: raw if raw is not None else score
        for recording_id, score, raw in Prediction.objects.filter(
            model_name=INTERPRETATION_NAME, recording__created_at__gte=low, recording__created_at__lt=high
        ).values_list("recording_id", "score", "report_details__combined__raw_probability")
    }
    sites: dict[str, SiteSample] = defaultdict(SiteSample)
    # iterator(): one window of waveforms in memory at a time, never the whole reference period.
    for recording in recordings.iterator(chunk_size=200):
        sample = sites[site_of(recording.organization.slug, recording.received_from)]
        sample.n += 1
        sample.values["amplitude_range_uv"].append(amplitude_range_uv(recording))
        sample.values["sampling_rate"].append(f"{recording.sample_rate_hz:g} Hz")
        sample.values["lead_set"].append(",".join(recording.leads))
        sample.values["quality_flags"].append(quality_flags(recording.quality))
        score = scores.get(recording.pk)
        if score is not None:
            sample.values["score"].append(float(score))
    return sites


def _summary(values: list[Any]) -> Any:
    if values and isinstance(values[0], float):
        return {"median": float(np.median(values)), "n": len(values)}
    return {str(v): values.count(v) for v in sorted(set(values), key=str)}


def _compare(feature: str, reference: list[Any], current: list[Any]) -> dict[str, Any] | None:
    """Return the alarm fields when ``current`` drifted from ``reference``, else None."""
    if len(current) < MIN_DAY or len(reference) < MIN_REFERENCE:
        return None
    if feature in CONTINUOUS:
        statistic, p_value = ks(reference, current)
        fired = p_value < KS_ALPHA and statistic >= KS_MIN_D
        test, threshold = "ks", KS_MIN_D
    else:
        statistic, p_value = psi(reference, current), None
        fired = statistic >= PSI_ALARM
        test, threshold = "psi", PSI_ALARM
    if not fired:
        return None
    return {
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        "threshold": threshold,
        "n_reference": len(reference),
        "n_day": len(current),
        "details": {"reference": _summary(reference), "day": _summary(current)},
    }


def check_drift(*, day: date, reference_days: int = REFERENCE_DAYS) -> list[DriftAlarm]:
    """Compare ``day`` with the ``reference_days`` before it for every site; store and return new alarms.

    Idempotent: an alarm already raised for a site, day and feature is not raised (or audited) again.
    """
    current = site_samples(day, day + timedelta(days=1))
    reference = site_samples(day - timedelta(days=reference_days), day)
    raised = []
    for site, sample in sorted(current.items()):
        ref = reference.get(site)
        if ref is None:
            continue  # a new site has no reference yet: its first days become the reference
        for feature in CONTINUOUS + CATEGORICAL:
            fields = _compare(feature, ref.values[feature], sample.values[feature])
            if fields is None:
                continue
            alarm, created = DriftAlarm.objects.get_or_create(site=site, day=day, feature=feature, defaults=fields)
            if created:
                logger.warning(
                    "drift alarm", extra={"site": site, "day": day.isoformat(), "feature": feature, **fields}
                )
                raised.append(alarm)
    return raised


def open_alarms() -> list[DriftAlarm]:
    """Return the alarms nobody has acknowledged yet, newest first."""
    return list(DriftAlarm.objects.filter(acknowledged_at__isnull=True).order_by("-day", "site", "feature"))


class DriftCollector(Collector):
    """``cds_quality_drift_alarms_open{feature}``: unacknowledged drift alarms, read at scrape time."""

    def collect(self) -> Any:
        gauge = GaugeMetricFamily(
            "cds_quality_drift_alarms_open", "Drift alarms not yet acknowledged, by feature", labels=["feature"]
        )
        counts: dict[str, int] = dict.fromkeys(CONTINUOUS + CATEGORICAL, 0)
        for alarm in DriftAlarm.objects.filter(acknowledged_at__isnull=True).values_list("feature", flat=True):
            counts[alarm] = counts.get(alarm, 0) + 1
        for feature, n in counts.items():
            gauge.add_metric([feature], n)
        yield gauge


def acknowledge_alarms(*, alarms: Iterable[DriftAlarm], user: Any) -> int:
    """Mark open ``alarms`` acted on by ``user`` (saved one by one, so each change is audited)."""
    count = 0
    for alarm in alarms:
        if alarm.acknowledged_at is None:
            alarm.acknowledged_at, alarm.acknowledged_by = timezone.now(), user
            alarm.save(update_fields=["acknowledged_at", "acknowledged_by", "updated_at"])
            count += 1
    return count
