"""What clinicians did with our CDS Hooks cards, for the quality team (issue 15 item 6).

Per model version (of the detector prediction the card was made from) and site (sending
organisation/source, as in the quality report): accepted and overridden counts, the override rate,
the override reasons with counts, and the most recent free-text comments. docs/quality.md says how
to read and act on them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from cds.review.models import CardFeedback
from cds.review.quality import site_of

RECENT_COMMENTS = 5


def feedback_summary(*, since: datetime | None = None, model_version: str | None = None) -> dict[str, Any]:
    """Return ``{model_version: {site: figures}}`` over the feedback given since ``since``."""
    rows = CardFeedback.objects.select_related("card__prediction__recording__organization").order_by(
        "-outcome_at", "-pk"
    )
    if since is not None:
        rows = rows.filter(outcome_at__gte=since)
    if model_version:
        rows = rows.filter(card__prediction__model_version=model_version)
    groups: dict[tuple[str, str], list[CardFeedback]] = defaultdict(list)
    for row in rows.defer("card__prediction__anomaly_map", "card__prediction__recording__samples"):
        recording = row.card.prediction.recording
        site = site_of(recording.organization.slug, recording.received_from)
        groups[(row.card.prediction.model_version, site)].append(row)
    summary: dict[str, Any] = {}
    for (version, site), group in sorted(groups.items()):
        summary.setdefault(version, {})[site] = _figures(group)
    return summary


def _figures(rows: list[CardFeedback]) -> dict[str, Any]:
    """Return the counts, rates, reasons and recent comments of one group (rows newest first)."""
    overridden = [r for r in rows if r.outcome == CardFeedback.Outcome.OVERRIDDEN]
    reasons = Counter((r.reason_code or "(none given)", r.reason_display or "(none given)") for r in overridden)
    return {
        "n": len(rows),
        "accepted": len(rows) - len(overridden),
        "overridden": len(overridden),
        "override_rate": len(overridden) / len(rows),
        "reasons": [{"code": code, "display": display, "n": n} for (code, display), n in reasons.most_common()],
        "recent_comments": [
            {
                "at": r.outcome_at.isoformat(),
                "outcome": r.outcome,
                "reason": r.reason_display,
                "comment": r.comment,
                "card": str(r.card_id),
            }
            for r in rows
            if r.comment
        ][:RECENT_COMMENTS],
    }


def feedback_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the summary as dashboard rows: one per model version and site."""
    return [
        {"model_version": version, "site": site, **figures}
        for version, sites in summary.items()
        for site, figures in sites.items()
    ]
