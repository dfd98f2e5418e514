"""Reads of API clients (lookup by client id, client authentication) and of the SMART configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password

from cds.oauth.jwks import ASSERTION_ALGORITHMS
from cds.oauth.models import ApiClient
from cds.oauth.scopes import ACTIONS

GRANT_TYPE = "client_credentials"


def api_client_get_active(*, client_id: str) -> ApiClient | None:
    """Return the active client with ``client_id``, or None when it is unknown or deactivated."""
    # One query on the unique index of client_id; every authenticated request runs it.
    return ApiClient.objects.filter(client_id=client_id, is_active=True).first()


def api_client_authenticate(*, client_id: str, client_secret: str) -> ApiClient | None:
    """Return the active client whose id and secret match, or None.

    Unknown, inactive and wrong-secret clients are indistinguishable to the caller, in the answer
    and in the time it takes.
    """
    client = api_client_get_active(client_id=client_id)
    if client is None:
        # Spend one hash anyway so response time does not reveal which client ids exist.
        make_password(client_secret)
        return None
    if not check_password(client_secret, client.secret_hash):
        return None
    return client


def token_url() -> str:
    """Return the absolute URL of our token endpoint: the ``aud`` every client assertion must name."""
    return f"{settings.PUBLIC_BASE_URL}/auth/token"


def smart_configuration() -> dict[str, Any]:
    """Return the SMART configuration document (SMART App Launch 2.x, "Backend Services")."""
    auth_methods = ["private_key_jwt"]
    if settings.OAUTH_ALLOW_CLIENT_SECRET:
        auth_methods += ["client_secret_basic", "client_secret_post"]
    return {
        "issuer": settings.PUBLIC_BASE_URL,
        "token_endpoint": token_url(),
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "grant_types_supported": [GRANT_TYPE],
        "scopes_supported": [f"system/*.{ACTIONS}", "system/*.rs", "system/Patient.crs", "system/Observation.crs"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
