"""Verify the JWT a CDS client (EHR) signs for each CDS Hooks call (CDS Hooks 2.0, "Trusting CDS Clients").

Checks, in order: ``alg`` RS384 or ES384 (so ``none`` and HS256 never reach a key); ``iss`` is an
active registered client; a ``jku``, when sent, is the client's registered JWKS URL (we never
fetch keys from a URL the token names); ``kid`` names a key of the client (inline JWKS, else its
fetched JWKS); the signature; ``aud`` is the URL of the endpoint called; ``exp`` has not passed
and is at most five minutes after ``iat``; ``iat`` is not in the future; the ``jti`` was never
used by this client.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import jwt
from django.db import IntegrityError, transaction

from cds.hooks.client_keys import JwksUnavailable, jwk_for_kid
from cds.hooks.models import CdsClient, UsedHookJwt
from cds.oauth.jwks import ASSERTION_ALGORITHMS, jwk_verifying_key

# Clocks of the EHR and of our replicas differ by a few seconds.
CLOCK_LEEWAY_SECONDS = 5
MAX_LIFETIME_SECONDS = 300  # CDS Hooks: the JWT expires no more than five minutes after it is issued
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]
_MIN_RSA_BITS = 2048


class HookJwtRefused(Exception):
    """Raise when a CDS client JWT is refused; ``reason`` is safe to send back and to log."""

    def __init__(self, reason: str, *, iss: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.iss = iss


def hook_jwt_verify(*, token: str, audience: str | list[str]) -> tuple[CdsClient, dict[str, Any]]:
    """Return the registered client that signed ``token`` and its claims; raise ``HookJwtRefused``.

    ``audience`` is the URL of the CDS endpoint being called (``PUBLIC_BASE_URL`` + path).
    """
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise HookJwtRefused("bearer token is not a JWT") from exc
    issuer = unverified.get("iss")
    iss = issuer[:255] if isinstance(issuer, str) else ""
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        raise HookJwtRefused(f"JWT alg must be one of {', '.join(ASSERTION_ALGORITHMS)}, not {alg!r}", iss=iss)
    # A NUL (PostgreSQL cannot compare text with one) would turn the lookup into a 500.
    if not iss or "\x00" in iss:
        raise HookJwtRefused("JWT has no iss", iss=iss)
    client = CdsClient.objects.filter(iss=iss, is_active=True).first()
    if client is None:
        raise HookJwtRefused("JWT iss is not a registered, active CDS client", iss=iss)
    jku = header.get("jku")
    if jku is not None and (not client.jwks_url or jku != client.jwks_url):
        raise HookJwtRefused("JWT jku is not the JWKS URL registered for this client", iss=iss)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise HookJwtRefused("JWT header has no kid", iss=iss)
    key = _verifying_key(client, kid, alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=client.iss,
            leeway=CLOCK_LEEWAY_SECONDS,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.InvalidSignatureError as exc:
        raise HookJwtRefused("JWT signature does not verify with the client's key", iss=iss) from exc
    except jwt.ExpiredSignatureError as exc:
        raise HookJwtRefused("JWT expired", iss=iss) from exc
    except jwt.InvalidAudienceError as exc:
        expected = audience if isinstance(audience, str) else " or ".join(audience)
        raise HookJwtRefused(f"JWT aud must be {expected}", iss=iss) from exc
    except jwt.ImmatureSignatureError as exc:
        raise HookJwtRefused("JWT iat is in the future", iss=iss) from exc
    except (jwt.InvalidTokenError, OverflowError) as exc:  # OverflowError: PyJWT's int() of an exp of 1e400
        raise HookJwtRefused(f"JWT refused: {exc}", iss=iss) from exc
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(iat, int | float) or exp - iat > MAX_LIFETIME_SECONDS + CLOCK_LEEWAY_SECONDS:
        raise HookJwtRefused(f"JWT exp must be at most {MAX_LIFETIME_SECONDS} s after iat", iss=iss)
    if exp > time.time() + MAX_LIFETIME_SECONDS + CLOCK_LEEWAY_SECONDS:
        raise HookJwtRefused(f"JWT exp must be at most {MAX_LIFETIME_SECONDS} s ahead", iss=iss)
    jti = claims["jti"]
    if not isinstance(jti, str) or not 0 < len(jti) <= 255 or "\x00" in jti:
        raise HookJwtRefused("JWT jti must be a string of 1 to 255 characters", iss=iss)
    _jti_record(client=client, jti=jti, exp=float(exp))
    return client, claims


def _verifying_key(client: CdsClient, kid: str, alg: str) -> Any:
    """Return the public key ``kid`` of ``client`` for ``alg``: the inline JWKS first, then the fetched one."""
    inline = client.jwks.get("keys", []) if isinstance(client.jwks, dict) else []
    jwk = next((k for k in inline if isinstance(k, dict) and k.get("kid") == kid), None)
    if jwk is None and client.jwks_url:
        try:
            jwk = jwk_for_kid(jwks_url=client.jwks_url, kid=kid)
        except JwksUnavailable as exc:
            raise HookJwtRefused(f"cannot verify the JWT: {exc}", iss=client.iss) from exc
    if jwk is None:
        raise HookJwtRefused(f"no key {kid!r} in the client's JWKS", iss=client.iss)
    if {"d", "p", "q", "k"} & set(jwk):
        raise HookJwtRefused(f"key {kid!r} in the client's JWKS is not a public key", iss=client.iss)
    key = jwk_verifying_key(jwk, alg)
    if key is None:
        raise HookJwtRefused(f"key {kid!r} of the client is not an {alg} key", iss=client.iss)
    if jwk.get("kty") == "RSA" and key.key_size < _MIN_RSA_BITS:
        raise HookJwtRefused(f"key {kid!r} of the client is shorter than {_MIN_RSA_BITS} bits", iss=client.iss)
    return key


def _jti_record(*, client: CdsClient, jti: str, exp: float) -> None:
    """Record ``jti`` as used until ``exp``; refuse it when it already was (a replay).

    Expired rows go first: an expired JWT is refused by its ``exp``, so its jti need not be kept.
    """
    now = dt.datetime.now(tz=dt.UTC)
    UsedHookJwt.objects.filter(expires_at__lt=now - dt.timedelta(seconds=CLOCK_LEEWAY_SECONDS)).delete()
    try:
        # The savepoint keeps an outer transaction usable after the unique violation.
        with transaction.atomic():
            UsedHookJwt.objects.create(client=client, jti=jti, expires_at=dt.datetime.fromtimestamp(exp, tz=dt.UTC))
    except IntegrityError as exc:
        raise HookJwtRefused("JWT jti was already used (replay)", iss=client.iss) from exc
