"""Clinician login policy helpers used by django-axes (docs/security.md "Clinician login")."""

from __future__ import annotations

from datetime import timedelta

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest

MAX_COOL_OFF = timedelta(days=1)


def _username(request: HttpRequest | None) -> str | None:
    credentials = getattr(request, "axes_credentials", None)
    if isinstance(credentials, dict) and credentials.get("username"):
        return str(credentials["username"])
    if request is not None and request.method == "POST":
        return request.POST.get("username") or None
    return None


def progressive_cool_off(request: HttpRequest | None) -> timedelta:
    """Return the lockout for this login's username: ``AXES_COOLOFF_HOURS``, doubled per earlier lockout.

    Failures during a lockout are recorded (and keep it going), so an attacker who keeps guessing
    one username locks it for 1, 2, 4 ... hours, up to a day, while a clinician who mistyped five
    times waits the base time once. Without a username (a probe by address) the base applies.
    """
    base = timedelta(hours=settings.AXES_COOLOFF_HOURS)
    username = _username(request)
    if username is None:
        return base
    failures = AccessAttempt.objects.filter(username=username).aggregate(n=Sum("failures_since_start"))["n"] or 0
    lockouts = failures // max(settings.AXES_FAILURE_LIMIT, 1)
    return min(base * 2 ** max(lockouts - 1, 0), MAX_COOL_OFF)
