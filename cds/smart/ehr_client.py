"""What a launch asks the EHR: SMART and OpenID discovery, the code exchange, the Patient, the id_token's keys.

Every URL here comes from a registered EHR's ``iss`` or from that EHR's own discovery documents.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import jwt
import requests
from django.conf import settings

from cds.smart.errors import LaunchRefused

# SMART App Launch 2.x: RS256 is required of every server; ES384 is the other algorithm the IG names.
ID_TOKEN_ALGORITHMS = ("RS256", "ES384")


def _get_json(url: str, *, what: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        response = requests.get(
            url, headers={"Accept": "application/json", **(headers or {})}, timeout=settings.SMART_HTTP_TIMEOUT_S
        )
    except requests.RequestException as exc:
        raise LaunchRefused(502, f"{what}-unreachable", f"The EHR's {what} could not be reached: {exc}") from exc
    if response.status_code != 200:
        raise LaunchRefused(502, f"{what}-failed", f"The EHR's {what} answered HTTP {response.status_code}.")
    try:
        body = response.json()
    except ValueError as exc:
        raise LaunchRefused(502, f"{what}-invalid", f"The EHR's {what} is not JSON.") from exc
    if not isinstance(body, dict):
        raise LaunchRefused(502, f"{what}-invalid", f"The EHR's {what} is not a JSON object.")
    return body


def smart_configuration(iss: str) -> dict[str, Any]:
    """Return the EHR's ``.well-known/smart-configuration`` after checking what an EHR launch needs."""
    config = _get_json(f"{iss}/.well-known/smart-configuration", what="smart-configuration")
    for field in ("authorization_endpoint", "token_endpoint"):
        if not isinstance(config.get(field), str) or not config[field].startswith(("https://", "http://")):
            raise LaunchRefused(502, "smart-configuration-invalid", f"The EHR's smart-configuration has no {field}.")
    methods = config.get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        # SMART 2.x: servers SHALL support S256; one that does not advertise it cannot be used safely.
        raise LaunchRefused(
            502, "smart-configuration-invalid", "The EHR's smart-configuration does not list PKCE S256 support."
        )
    return config


def token_exchange(*, config: dict[str, Any], client_id: str, code: str, verifier: str, redirect_uri: str) -> Any:
    """Exchange the authorization code (public client: client_id + PKCE verifier, no secret)."""
    try:
        response = requests.post(
            config["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
            },
            headers={"Accept": "application/json"},
            timeout=settings.SMART_HTTP_TIMEOUT_S,
        )
    except requests.RequestException as exc:
        raise LaunchRefused(502, "token-unreachable", f"The EHR's token endpoint could not be reached: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        detail = f"HTTP {response.status_code}" + (f", {error}" if isinstance(error, str) and error else "")
        raise LaunchRefused(502, "token-refused", f"The EHR refused to exchange the authorization code ({detail}).")
    return body


def ehr_patient(*, iss: str, patient_id: str, access_token: str) -> dict[str, Any]:
    """Read the launch's Patient from the EHR (its identifiers are how we find our copy)."""
    return _get_json(
        f"{iss}/Patient/{quote(patient_id, safe='')}",
        what="Patient read",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"},
    )


def id_token_claims(*, config: dict[str, Any], iss: str, id_token: str, client_id: str) -> dict[str, Any]:
    """Return the id_token's claims once its signature (OpenID ``jwks_uri``), ``iss``, ``aud`` and ``exp`` hold."""
    issuer = config.get("issuer") if isinstance(config.get("issuer"), str) else iss
    openid = _get_json(f"{str(issuer).rstrip('/')}/.well-known/openid-configuration", what="openid-configuration")
    if openid.get("issuer") != issuer or not isinstance(openid.get("jwks_uri"), str):
        raise LaunchRefused(502, "openid-configuration-invalid", "The EHR's OpenID configuration names no usable keys.")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise LaunchRefused(401, "id-token-invalid", "The EHR's id_token is not a JWT.") from exc
    if header.get("alg") not in ID_TOKEN_ALGORITHMS:
        raise LaunchRefused(401, "id-token-invalid", f"The EHR's id_token uses algorithm {header.get('alg')!r}.")
    keys = _get_json(openid["jwks_uri"], what="JWKS")
    key = _signing_key(keys, kid=header.get("kid"), alg=header["alg"])
    try:
        return jwt.decode(
            id_token,
            key,
            algorithms=[header["alg"]],
            audience=client_id,
            issuer=issuer,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            leeway=30,
        )
    except jwt.PyJWTError as exc:
        raise LaunchRefused(401, "id-token-invalid", f"The EHR's id_token was refused: {exc}.") from exc


def _signing_key(jwks: dict[str, Any], *, kid: Any, alg: str) -> Any:
    candidates = [k for k in jwks.get("keys") or [] if isinstance(k, dict) and (kid is None or k.get("kid") == kid)]
    for candidate in candidates:
        try:
            return jwt.PyJWK(candidate, algorithm=alg).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
    raise LaunchRefused(401, "id-token-invalid", f"No key {kid!r} for {alg} in the EHR's JWKS.")
