"""Reads of API clients: lookup by client id and client authentication."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password

from cds.oauth.models import ApiClient


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
