"""Create API clients, and issue and verify their OAuth2 access tokens (RFC 6749 §4.4).

Clients authenticate with a signed JWT assertion (SMART Backend Services, RFC 7523) or, where
``OAUTH_ALLOW_CLIENT_SECRET``, with a shared secret.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction

from cds.core.exceptions import ApplicationError
from cds.core.models import Organization
from cds.oauth.jwks import ASSERTION_ALGORITHMS, jwk_verifying_key
from cds.oauth.models import ApiClient, UsedAssertion
from cds.oauth.scopes import scope_within, scopes_split
from cds.oauth.selectors import api_client_authenticate, api_client_get_active, token_url

_ALGORITHM = "HS256"
# Web replicas sign and verify each other's tokens; a few seconds absorb their clock skew.
_CLOCK_LEEWAY_SECONDS = 5
_REQUIRED_CLAIMS = ["iss", "sub", "scope", "iat", "exp", "jti"]
# SMART Backend Services: an assertion's exp is no more than five minutes in the future.
ASSERTION_MAX_LIFETIME_SECONDS = 300
_ASSERTION_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "jti"]


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
class IssuedToken:
    """An access token response (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str


@dataclass(frozen=True)
class CreatedApiClient:
    """A new client and its plain secret (None for a key-registered client), which exists only here."""

    client: ApiClient
    client_secret: str | None


@transaction.atomic
def api_client_create(
    *, name: str, scopes: str, organization: Organization, jwks: dict[str, Any] | None = None
) -> CreatedApiClient:
    """Create an active client of ``organization`` with a random id.

    With ``jwks`` the client authenticates with private_key_jwt and gets no usable secret; without,
    it gets a random secret of which only the hash is stored.

    Raises ``django.core.exceptions.ValidationError`` for an empty name, an unsupported scope or an
    unusable JWKS.
    """
    client_secret = None if jwks else secrets.token_urlsafe(32)
    client = ApiClient(
        name=name,
        organization=organization,
        client_id=secrets.token_urlsafe(16),
        # make_password(None) is an unusable hash: check_password never accepts anything against it.
        secret_hash=make_password(client_secret),
        auth_method=ApiClient.AuthMethod.PRIVATE_KEY_JWT if jwks else ApiClient.AuthMethod.CLIENT_SECRET,
        jwks=jwks or {},
        scopes=" ".join(scopes_split(scopes)),
    )
    client.full_clean()
    client.save()
    return CreatedApiClient(client=client, client_secret=client_secret)


def access_token_issue(*, client_id: str, client_secret: str, scope: str | None) -> IssuedToken:
    """Authenticate a client by its shared secret and return a signed access token for ``scope``.

    ``scope`` None or blank means every scope the client was granted; otherwise each requested
    scope must lie within the grant (narrowing is allowed, widening is not).

    Raises ``OAuthError``: ``invalid_client`` (401) when secrets are disabled
    (``OAUTH_ALLOW_CLIENT_SECRET`` false) and for an unknown, inactive or wrong-secret client,
    ``invalid_scope`` (400) for a scope outside the grant or malformed.
    """
    if not settings.OAUTH_ALLOW_CLIENT_SECRET:
        raise OAuthError(
            "invalid_client", "client_secret authentication is disabled here; use private_key_jwt", status=401
        )
    client = api_client_authenticate(client_id=client_id, client_secret=client_secret)
    if client is None:
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    return _token_for(client=client, scope=scope)


def access_token_issue_for_assertion(*, assertion: str, client_id: str | None, scope: str | None) -> IssuedToken:
    """Authenticate a client by a private_key_jwt assertion and return an access token for ``scope``.

    Steps (SMART Backend Services, "Authenticating"; RFC 7523 §3):

    1. the header's ``alg`` is RS384 or ES384 and its ``kid`` names a key in the client's JWKS;
    2. ``iss`` = ``sub`` = the client id of an active client (= ``client_id`` when sent too);
    3. the signature verifies with that key; ``aud`` is our token URL; ``exp`` has not passed and is
       at most five minutes ahead;
    4. the ``jti`` was never used by this client (recorded until the assertion expires).

    Raises ``OAuthError``: ``invalid_client`` (401) for any failed check, ``invalid_scope`` (400).
    """
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise _assertion_refused("client_assertion is not a JWT") from exc
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        raise _assertion_refused(f"client_assertion alg must be one of {', '.join(ASSERTION_ALGORITHMS)}")
    issuer = unverified.get("iss")
    # A NUL (PostgreSQL cannot compare text with one) would turn the client lookup into a 500.
    if not isinstance(issuer, str) or unverified.get("sub") != issuer or "\x00" in issuer:
        raise _assertion_refused("client_assertion iss and sub must both be the client_id")
    if client_id is not None and client_id != issuer:
        raise _assertion_refused("client_id differs from the client_assertion's iss")
    client = api_client_get_active(client_id=issuer)
    kid = header.get("kid")
    jwk = client.jwk_for(kid) if client is not None and isinstance(kid, str) else None
    if client is None or jwk is None:
        # Unknown client and unknown key read the same: the answer reveals no client ids.
        raise _assertion_refused("no registered key for this client_assertion's iss and kid")
    key = jwk_verifying_key(jwk, alg)
    if key is None:
        raise _assertion_refused(f"registered key {kid!r} is not an {alg} key")
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,
            algorithms=[alg],
            audience=token_url(),
            issuer=client.client_id,
            leeway=_CLOCK_LEEWAY_SECONDS,
            options={"require": _ASSERTION_REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _assertion_refused("client_assertion expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise _assertion_refused(f"client_assertion aud must be {token_url()}") from exc
    except (jwt.InvalidTokenError, OverflowError) as exc:  # OverflowError: PyJWT's int() of an exp of 1e400
        raise _assertion_refused(f"client_assertion refused: {exc}") from exc
    now = time.time()
    exp = claims["exp"]
    if not isinstance(exp, int | float) or exp > now + ASSERTION_MAX_LIFETIME_SECONDS + _CLOCK_LEEWAY_SECONDS:
        raise _assertion_refused(f"client_assertion exp must be at most {ASSERTION_MAX_LIFETIME_SECONDS} s ahead")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 0 < len(jti) <= 255 or "\x00" in jti:
        raise _assertion_refused("client_assertion jti must be a string of 1 to 255 characters")
    _assertion_jti_record(client=client, jti=jti, exp=float(exp))
    return _token_for(client=client, scope=scope)


def _assertion_refused(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, status=401)


def _assertion_jti_record(*, client: ApiClient, jti: str, exp: float) -> None:
    """Record ``jti`` as used until ``exp``; raise ``OAuthError(invalid_client)`` when it already was.

    Expired rows go first: an expired assertion is refused by its ``exp``, so its jti need not be kept.
    """
    now = dt.datetime.now(tz=dt.UTC)
    UsedAssertion.objects.filter(expires_at__lt=now - dt.timedelta(seconds=_CLOCK_LEEWAY_SECONDS)).delete()
    expires_at = dt.datetime.fromtimestamp(exp, tz=dt.UTC)
    try:
        # The savepoint keeps an outer transaction usable after the unique violation.
        with transaction.atomic():
            UsedAssertion.objects.create(client=client, jti=jti, expires_at=expires_at)
    except IntegrityError as exc:
        raise _assertion_refused("client_assertion jti was already used") from exc


def _token_for(*, client: ApiClient, scope: str | None) -> IssuedToken:
    """Return a signed access token for an authenticated ``client``; ``invalid_scope`` outside its grant."""
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
