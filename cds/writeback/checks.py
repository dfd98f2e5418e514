"""System checks on the write-back settings (cds.E010-E013), registered by WritebackConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from cds.writeback.client import ASSERTION_ALGORITHMS, AUTH_METHODS
from cds.writeback.keys import key_set_problems


@register()
def check_writeback_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return errors for an enabled EHR write-back that lacks what its auth method needs."""
    if not settings.WRITEBACK_ENABLED:
        return []
    errors: list[CheckMessage] = []
    auth = settings.WRITEBACK_AUTH
    required: dict[str, str | None] = {"WRITEBACK_FHIR_BASE_URL": settings.WRITEBACK_FHIR_BASE_URL}
    if auth == "client_secret":
        required |= {
            "WRITEBACK_TOKEN_URL": settings.WRITEBACK_TOKEN_URL,
            "WRITEBACK_CLIENT_ID": settings.WRITEBACK_CLIENT_ID,
            "WRITEBACK_CLIENT_SECRET": settings.WRITEBACK_CLIENT_SECRET,
        }
    elif auth == "private_key_jwt":
        required |= {
            "WRITEBACK_TOKEN_URL": settings.WRITEBACK_TOKEN_URL,
            "WRITEBACK_CLIENT_ID": settings.WRITEBACK_CLIENT_ID,
            # A key directory (rotation, cds.writeback.keys) stands in for the single key.
            "WRITEBACK_PRIVATE_KEY": settings.WRITEBACK_PRIVATE_KEY or settings.WRITEBACK_PRIVATE_KEYS_DIR,
            "WRITEBACK_KEY_ID": settings.WRITEBACK_KEY_ID,
        }
    missing = [name for name, value in required.items() if not value]
    if missing:
        errors.append(
            Error(
                f"WRITEBACK_ENABLED with WRITEBACK_AUTH={auth} needs {', '.join(missing)}.",
                hint="Set them (secrets may come from NAME_FILE; keys from WRITEBACK_PRIVATE_KEYS_DIR), or set "
                "WRITEBACK_ENABLED=false.",
                id="cds.E010",
            )
        )
    if auth not in AUTH_METHODS:
        errors.append(Error(f"WRITEBACK_AUTH={auth!r} is not one of {', '.join(AUTH_METHODS)}.", id="cds.E011"))
    if auth == "private_key_jwt" and settings.WRITEBACK_ALGORITHM not in ASSERTION_ALGORITHMS:
        # SMART Backend Services servers must support RS384 and ES384; nothing else is portable.
        errors.append(Error(f"WRITEBACK_ALGORITHM must be one of {', '.join(ASSERTION_ALGORITHMS)}.", id="cds.E011"))
    if settings.WRITEBACK_SENDING_TIMEOUT_S <= 4 * settings.WRITEBACK_TIMEOUT_S:
        # A delivery makes up to four requests (token, POST, and both again after a 401): a shorter
        # timeout would let the sweep resend a message whose worker is still waiting on the EHR.
        errors.append(Error("WRITEBACK_SENDING_TIMEOUT_S must exceed 4 × WRITEBACK_TIMEOUT_S.", id="cds.E012"))
    return errors


@register()
def check_signing_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return an error per problem of the signing key set whenever keys are configured (they are published)."""
    if not (settings.WRITEBACK_PRIVATE_KEYS_DIR or settings.WRITEBACK_PRIVATE_KEY):
        return []
    return [
        Error(problem, hint="docs/security.md, 'Rotating the write-back signing key'.", id="cds.E013")
        for problem in key_set_problems()
    ]
