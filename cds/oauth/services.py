"""Create API clients, and issue and verify their OAuth2 access tokens (RFC 6749 §4.4)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import transaction

from cds.core.exceptions import ApplicationError
from cds.oauth.models import ApiClient
from cds.oauth.scopes import scope_within, scopes_split
from cds.oauth.selectors import api_client_authenticate

_ALGORITHM = "HS256"
# Web replicas sign and verify each other's tokens; a few seconds absorb their clock skew.
_CLOCK_LEEWAY_SECONDS = 5
_REQUIRED_CLAIMS = ["iss", "sub", "scope", "iat", "exp", "jti"]


class OAuthError(ApplicationError):
    """Raise to refuse a token request with an RFC 6749 §5.2 error code (``invalid_client``...)."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description, extra={"error": error})
        self.error = error
        self.description = description
        self.http_status = status


class AccessTokenInvalid(ApplicationError):
    """Raise when a bearer token is malformed, forged, expired or from another issuer."""

    http_status = 401


@dataclass(frozen=True)
class CreatedApiClient:
    """A new client and its plain secret, which exists only in this object."""

    client: ApiClient
    client_secret: str


@dataclass(frozen=True)
class IssuedToken:
    """An access token response (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str


@transaction.atomic
def api_client_create(*, name: str, scopes: str) -> CreatedApiClient:
    """Create an active client with a random id and secret; store only the secret's hash.

    Raises ``django.core.exceptions.ValidationError`` for an empty name or an unsupported scope.
    """
    client_secret = secrets.token_urlsafe(32)
    client = ApiClient(
        name=name,
        client_id=secrets.token_urlsafe(16),
        secret_hash=make_password(client_secret),
        scopes=" ".join(scopes_split(scopes)),
    )
    client.full_clean()
    client.save()
    return CreatedApiClient(client=client, client_secret=client_secret)


def access_token_issue(*, client_id: str, client_secret: str, scope: str | None) -> IssuedToken:
    """Authenticate a client and return a signed access token for ``scope``.

    ``scope`` None or blank means every scope the client was granted; otherwise each requested
    scope must lie within the grant (narrowing is allowed, widening is not).

    Raises ``OAuthError``: ``invalid_client`` (401) for an unknown, inactive or wrong-secret client,
    ``invalid_scope`` (400) for a scope outside the grant or malformed.
    """
    client = api_client_authenticate(client_id=client_id, client_secret=client_secret)
    if client is None:
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    granted = client.granted_scopes()
    requested = scopes_split(scope or "") or scopes_split(client.scopes)
    refused = [s for s in requested if not scope_within(s, granted)]
    if refused:
        raise OAuthError("invalid_scope", f"scope not granted to this client: {' '.join(refused)}")
    lifetime = settings.OAUTH_TOKEN_LIFETIME_SECONDS
    now = int(time.time())
    scope_text = " ".join(requested)
    claims = {
        "iss": settings.PUBLIC_BASE_URL,
        "sub": client.client_id,
        "scope": scope_text,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    token = jwt.encode(claims, settings.OAUTH_TOKEN_SIGNING_KEY, algorithm=_ALGORITHM)
    return IssuedToken(access_token=token, expires_in=lifetime, scope=scope_text)


def access_token_verify(*, token: str) -> dict[str, Any]:
    """Return the claims of a token this service issued.

    Checks the signature, the algorithm (only HS256, so ``alg: none`` cannot pass), expiry, issuer
    and that every claim we rely on is present. Raises ``AccessTokenInvalid`` otherwise. Whether
    the client still exists is the caller's check.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.OAUTH_TOKEN_SIGNING_KEY,
            algorithms=[_ALGORITHM],
            issuer=settings.PUBLIC_BASE_URL,
            leeway=_CLOCK_LEEWAY_SECONDS,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AccessTokenInvalid("access token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AccessTokenInvalid("access token invalid") from exc
    if not isinstance(claims["scope"], str):
        raise AccessTokenInvalid("access token invalid")
    return claims
