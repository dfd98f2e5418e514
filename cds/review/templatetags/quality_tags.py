"""The drift banner: open drift alarms at the top of the admin pages quality teams and clinicians open."""

from __future__ import annotations

from typing import Any

from django import template

from cds.review.drift import open_alarms

register = template.Library()


@register.inclusion_tag("admin/review/drift_banner.html")
def drift_banner() -> dict[str, Any]:
    """Return the open (unacknowledged) drift alarms for the banner; nothing renders when none is open."""
    return {"alarms": open_alarms()[:20]}
