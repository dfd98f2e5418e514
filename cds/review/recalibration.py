"""Per-site recalibration of the served verdict's probability (issue 19, docs/quality.md "Calibration per site").

Fit: ``fit_site_recalibration`` Platt-scales the combined probability (``recalibration_fit``) on a
site's signed verdicts for one combiner version and stores an immutable draft with its figures.
Approve: a quality auditor (``review.approve_siterecalibration``) approves a draft; the site's
previously approved artefact is retired in the same transaction; both are audited (django-auditlog).
Serve: ``recalibrated_result`` replaces the stated probability of an ECG from a site with an approved
artefact for the served combiner version, and maps the operating point through the same increasing
function, so the flag (already decided on the raw probability) stays what it was.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from cds.analysis.models import Prediction
from cds.core.exceptions import ApplicationError
from cds.ecg.models import EcgRecording
from cds.review.errors import ReviewPermissionDenied
from cds.review.models import SiteRecalibration
from cds.review.quality import signed_truth, site_of
from cds.review.recalibration_fit import METHOD, FitRefused, Platt, fit_with_cv
from inference.analysis_result import AnalysisResult
from inference.clinical.combined import evidence_words, operating_point_words
from inference.results import INTERPRETATION_NAME

# Below these, a two-parameter fit is noise: refuse rather than serve it (docs/quality.md).
MIN_SIGNED = 50
MIN_PER_CLASS = 10
UNKNOWN_SOURCE = "(unknown source)"  # quality.site_of's label for an ECG without a source


class RecalibrationError(ApplicationError):
    """The fit or the approval is refused (too few verdicts, unknown site, not a draft)."""


def parse_site(site: str) -> tuple[str, str]:
    """Return (organisation slug, source) of an ``org/source`` site label, as ``quality.site_of`` writes it."""
    org, sep, source = site.partition("/")
    if not sep or not org:
        raise RecalibrationError(f"site must be ORG/SOURCE (as in the quality report), not {site!r}", {"site": site})
    return org, "" if source == UNKNOWN_SOURCE else source


def raw_probability(combined: dict[str, Any]) -> float:
    """Return the combiner's own probability of a stored verdict (before any recalibration)."""
    return float(combined.get("raw_probability", combined["probability"]))


def signed_site_verdicts(*, site: str, since: datetime | None = None) -> list[tuple[datetime, float, bool, str]]:
    """Return (received, raw combined probability, abnormal per the signed verdict, combiner version).

    Truth as in ``cds.review.quality``: the clinician judged the served call (the review's queue),
    so accept of a flag or reject of a "normal" is abnormal. Verdicts without a combined probability
    (no fitted combiner served them) are left out: there is nothing to recalibrate.
    """
    org, source = parse_site(site)
    predictions = Prediction.objects.filter(
        model_name=INTERPRETATION_NAME,
        recording__organization__slug=org,
        recording__received_from=source,
        job__review__signed_revision__verdict__in=["accept", "reject"],
    )
    if since is not None:
        predictions = predictions.filter(created_at__gte=since)
    rows = []
    for created, details, queue, verdict in predictions.order_by("created_at").values_list(
        "created_at", "report_details", "job__review__queue", "job__review__signed_revision__verdict"
    ):
        combined = (details or {}).get("combined")
        if not combined:
            continue
        truth = signed_truth(queue, verdict)
        rows.append((created, raw_probability(combined), truth, str(combined["combiner_version"])))
    return rows


def fit_site_recalibration(
    *, site: str, since: datetime | None = None, combiner_version: str | None = None
) -> SiteRecalibration:
    """Fit and store a draft for ``site`` (default combiner: the one of its latest signed verdict).

    Raises ``RecalibrationError`` with the counts when the data cannot support a fit.
    """
    rows = signed_site_verdicts(site=site, since=since)
    if combiner_version is None and rows:
        combiner_version = rows[-1][3]
    rows = [row for row in rows if row[3] == combiner_version]
    if not rows or combiner_version is None:
        raise RecalibrationError(f"no signed verdicts with a combined probability at {site}", {"site": site})
    probability = np.array([row[1] for row in rows])
    truth = np.array([row[2] for row in rows], dtype=bool)
    try:
        model, figures = fit_with_cv(probability, truth, min_n=MIN_SIGNED, min_per_class=MIN_PER_CLASS)
    except FitRefused as exc:
        raise RecalibrationError(f"not fitted for {site}: {exc}", {"site": site}) from exc
    with transaction.atomic():
        latest = (
            SiteRecalibration.objects.select_for_update()
            .filter(site=site, combiner_version=combiner_version)
            .aggregate(latest=Max("version"))["latest"]
        )
        return SiteRecalibration.objects.create(
            site=site,
            combiner_version=combiner_version,
            version=(latest or 0) + 1,
            method=METHOD,
            parameters=model.to_json(),
            n=len(rows),
            n_abnormal=int(truth.sum()),
            window_start=rows[0][0],
            window_end=rows[-1][0],
            ece_before=figures["ece_before"],
            ece_after=figures["ece_after_cv"],
            figures={**figures, "since": since.isoformat() if since else None},
        )


def approve_recalibration(*, recalibration: SiteRecalibration, user: Any) -> SiteRecalibration:
    """Approve a draft (quality auditors only); retire the site's previously approved artefact."""
    if not user.has_perm("review.approve_siterecalibration"):
        raise ReviewPermissionDenied(
            f"{user.get_username()} may not approve recalibrations (quality auditors only)", {"id": recalibration.pk}
        )
    with transaction.atomic():
        recalibration = SiteRecalibration.objects.select_for_update().get(pk=recalibration.pk)
        if recalibration.status != SiteRecalibration.Status.DRAFT:
            raise RecalibrationError(
                f"recalibration {recalibration.pk} is {recalibration.status}, only a draft can be approved",
                {"id": recalibration.pk},
            )
        now = timezone.now()
        # One by one (not queryset.update) so each retirement is an audited change.
        for previous in SiteRecalibration.objects.select_for_update().filter(
            site=recalibration.site, status=SiteRecalibration.Status.APPROVED
        ):
            previous.status, previous.retired_at = SiteRecalibration.Status.RETIRED, now
            previous.save(update_fields=["status", "retired_at", "updated_at"])
        recalibration.status = SiteRecalibration.Status.APPROVED
        recalibration.approved_by, recalibration.approved_at = user, now
        recalibration.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
    return recalibration


def approved_for(*, site: str, combiner_version: str) -> SiteRecalibration | None:
    """Return the approved artefact of ``site`` for this combiner version (None: serve the raw probability)."""
    return SiteRecalibration.objects.filter(
        site=site, combiner_version=combiner_version, status=SiteRecalibration.Status.APPROVED
    ).first()


def recalibrated_result(result: AnalysisResult, recording: EcgRecording) -> AnalysisResult:
    """Return ``result`` with the site's approved recalibration applied to the combined probability.

    The probability and the operating point both go through the same increasing function, so
    ``probability >= threshold`` and the verdict (decided earlier, on the raw probability, with the
    measured findings and rhythm) are unchanged; the raw values and the artefact are kept beside them.
    A different combiner version, or no approved artefact: ``result`` unchanged.
    """
    combined = result.clinical.combined if result.clinical is not None else None
    if not combined or result.clinical is None:
        return result
    site = site_of(recording.organization.slug, recording.received_from)
    artefact = approved_for(site=site, combiner_version=str(combined["combiner_version"]))
    if artefact is None:
        return result
    model = Platt.from_json(artefact.parameters)
    raw, threshold = float(combined["probability"]), float(combined["threshold"])
    recalibrated = {
        **combined,
        "probability": float(model.apply(raw)),
        "threshold": float(model.apply(threshold)),
        "raw_probability": raw,
        "raw_threshold": threshold,
        "recalibration": artefact_reference(artefact),
    }
    # The draft report quotes the figures in the words of inference.clinical.combined (one place):
    # restate them too, so the text, the stored score and the FHIR Observation say the same thing.
    text = result.clinical.text.replace(evidence_words(raw), evidence_words(recalibrated["probability"])).replace(
        operating_point_words(threshold), operating_point_words(recalibrated["threshold"])
    )
    clinical = dataclasses.replace(result.clinical, combined=recalibrated, text=text)
    return dataclasses.replace(result, clinical=clinical)


def artefact_reference(artefact: SiteRecalibration) -> dict[str, Any]:
    """Return how a served verdict names the artefact it used (Prediction details and provenance)."""
    return {
        "id": artefact.pk,
        "version": artefact.version,
        "site": artefact.site,
        "method": artefact.method,
        "parameters": artefact.parameters,
    }
