"""Per site: the approved recalibration and the drafts awaiting approval (quality report and dashboard, issue 19).

Reads only ``SiteRecalibration`` rows, so ``cds.review.quality`` can include it without importing the
fitting and serving code (``cds.review.recalibration``), which itself uses ``quality.site_of``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cds.review.models import SiteRecalibration


def recalibration_summary(sites: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Return per site: the approved artefact and the drafts awaiting approval, with ECE before/after."""
    result: dict[str, dict[str, Any]] = {site: {"approved": None, "drafts": []} for site in sites}
    artefacts = SiteRecalibration.objects.exclude(status=SiteRecalibration.Status.RETIRED).order_by("site", "version")
    for artefact in artefacts.select_related("approved_by"):
        entry = result.setdefault(artefact.site, {"approved": None, "drafts": []})
        summary = {
            "id": artefact.pk,
            "version": artefact.version,
            "combiner_version": artefact.combiner_version,
            "n": artefact.n,
            "ece_before": artefact.ece_before,
            "ece_after_cv": artefact.ece_after,
            "fitted_at": artefact.created_at.isoformat(),
        }
        if artefact.status == SiteRecalibration.Status.APPROVED:
            approver = artefact.approved_by.get_username() if artefact.approved_by else ""
            approved_at = artefact.approved_at.isoformat() if artefact.approved_at else None
            entry["approved"] = {**summary, "approved_by": approver, "approved_at": approved_at}
        else:
            entry["drafts"].append(summary)
    return dict(sorted(result.items()))
