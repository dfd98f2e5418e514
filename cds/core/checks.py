"""Cross-setting invariants as Django system checks with stable ids (docs/style.md G8)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning


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


@register()
def check_login_second_factor(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return an error for clinician login without OTP outside DEBUG (issue 13), a warning if opted out."""
    if settings.DEBUG or settings.ADMIN_OTP_REQUIRED:
        return []
    if settings.ADMIN_OTP_LOCAL_OPT_OUT:
        return [
            CheckWarning(
                "Clinician login needs no second factor (ADMIN_OTP_LOCAL_OPT_OUT): for a local stack only.",
                hint="A deployment unsets ADMIN_OTP_REQUIRED and ADMIN_OTP_LOCAL_OPT_OUT (OTP is then required).",
                id="cds.W030",
            )
        ]
    return [
        Error(
            "ADMIN_OTP_REQUIRED is false with DEBUG false: clinicians would log in to patient data with a password alone.",
            hint="Unset ADMIN_OTP_REQUIRED (required by default) and give each clinician a TOTP device; "
            "ADMIN_OTP_LOCAL_OPT_OUT=true is for local stacks on loopback only.",
            id="cds.E030",
        )
    ]


@register(deploy=False)
def check_security(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return warnings for a production (DEBUG false) deployment without HTTPS-only settings (issue 7)."""
    if settings.DEBUG:
        return []
    warnings: list[CheckMessage] = []
    off = [
        name
        for name, on in (
            ("SECURE_SSL_REDIRECT", settings.SECURE_SSL_REDIRECT),
            ("SESSION_COOKIE_SECURE", settings.SESSION_COOKIE_SECURE),
            ("CSRF_COOKIE_SECURE", settings.CSRF_COOKIE_SECURE),
            ("SECURE_HSTS_SECONDS", settings.SECURE_HSTS_SECONDS > 0),
        )
        if not on
    ]
    if off:
        warnings.append(
            CheckWarning(
                f"DEBUG is false but {', '.join(off)} {'is' if len(off) == 1 else 'are'} off: PHI could travel over plain HTTP.",
                hint="Unset them (their production defaults are on) or set them true; see docs/security.md.",
                id="cds.W020",
            )
        )
    if settings.OAUTH_ALLOW_CLIENT_SECRET:
        warnings.append(
            CheckWarning(
                "OAUTH_ALLOW_CLIENT_SECRET is true with DEBUG false: integration clients may use shared secrets.",
                hint="Register client keys (create_api_client --jwks) and set OAUTH_ALLOW_CLIENT_SECRET=false.",
                id="cds.W021",
            )
        )
    if settings.OAUTH_TOKEN_LIFETIME_SECONDS > 300:
        # SMART Backend Services: access tokens should not live longer than five minutes.
        warnings.append(
            CheckWarning(
                f"OAUTH_TOKEN_LIFETIME_SECONDS={settings.OAUTH_TOKEN_LIFETIME_SECONDS} exceeds 300 with DEBUG false.",
                hint="A stolen bearer token works until it expires; keep tokens short-lived (<= 300 s).",
                id="cds.W023",
            )
        )
    if not settings.PUBLIC_BASE_URL.startswith("https://"):
        warnings.append(
            CheckWarning(
                f"PUBLIC_BASE_URL={settings.PUBLIC_BASE_URL!r} is not https with DEBUG false.",
                hint="Clients sign assertions for, and follow links to, this URL: use the TLS proxy's https URL.",
                id="cds.W022",
            )
        )
    return warnings
