"""Cross-setting invariants as Django system checks with stable ids (STYLE G8)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return errors for settings that contradict each other."""
    errors: list[CheckMessage] = []
    if settings.TIME_ZONE != "UTC":
        errors.append(Error("TIME_ZONE must be UTC: ECG times are compared across systems.", id="cds.E002"))
    if settings.ECG_MIN_SECONDS >= settings.ECG_MAX_SECONDS:
        errors.append(Error("ECG_MIN_SECONDS must be below ECG_MAX_SECONDS.", id="cds.E003"))
    if settings.ECG_MIN_RATE_HZ >= settings.ECG_MAX_RATE_HZ:
        errors.append(Error("ECG_MIN_RATE_HZ must be below ECG_MAX_RATE_HZ.", id="cds.E004"))
    if not settings.DEBUG and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        # SQLite is the embedded demo's store only; production relies on Postgres locks and JSONB.
        errors.append(Error("SQLite is for DEBUG (demo) only; set DATABASE_URL to PostgreSQL.", id="cds.E005"))
    if settings.INFERENCE_BACKEND not in {"triton", "inprocess"}:
        errors.append(Error("INFERENCE_BACKEND must be 'triton' or 'inprocess'.", id="cds.E006"))
    if settings.INFERENCE_BACKEND == "triton" and not (settings.TRITON_URL or settings.TRITON_HTTP_URL):
        errors.append(Error("INFERENCE_BACKEND=triton needs TRITON_URL (or TRITON_HTTP_URL).", id="cds.E007"))
    if settings.TRITON_PROTOCOL not in {"grpc", "http"}:
        errors.append(Error("TRITON_PROTOCOL must be 'grpc' or 'http'.", id="cds.E008"))
    return errors
