"""Outbound HTTP to the EHR: the FHIR transaction POST and the OAuth2 token request.

This module is the seam tests mock (docs/style.md G9); nothing here touches the database. Every failure is a
``WritebackError`` whose ``transient`` flag tells the outbox whether to retry:

- transient: connection refused or reset, timeouts, HTTP 408, 429 and 5xx (also from the token
  endpoint);
- permanent: any other 4xx, a 2xx that carries an error ``OperationOutcome``, a 401 that survives
  one fresh token, a token endpoint that rejects our credentials.

Auth (``WRITEBACK_AUTH``): ``none``; ``client_secret`` (OAuth2 client credentials,
``client_secret_basic``); ``private_key_jwt`` (SMART Backend Services: a signed JWT assertion,
RS384 or ES384). Access tokens are cached per token URL and client until shortly before they expire.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import jwt
import requests
from django.conf import settings

from cds.core.exceptions import InfrastructureError
from cds.writeback.keys import signing_key_current

logger = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTH_METHODS = ("none", "client_secret", "private_key_jwt")
ASSERTION_ALGORITHMS = ("RS384", "ES384")  # the two SMART Backend Services requires servers to support
# SMART caps the assertion's lifetime at 5 minutes; stay under it so clock skew cannot cross it.
ASSERTION_LIFETIME_S = 240
# Renew a cached token this long before it expires, so a request never leaves with a dying token.
TOKEN_RENEW_MARGIN_S = 30.0
TRANSIENT_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
FHIR_JSON = "application/fhir+json"


class WritebackError(InfrastructureError):
    """Raise when the EHR (or its token endpoint) did not accept a request; ``transient`` drives retries."""

    def __init__(
        self, message: str, *, transient: bool, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, transient=transient)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class WritebackConfig:
    """Where and how to reach the EHR's FHIR endpoint (``WRITEBACK_*`` settings)."""

    base_url: str
    auth: str = "none"
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    private_key: str = field(default="", repr=False)
    key_id: str = ""
    algorithm: str = "RS384"
    jku: str = ""  # our JWKS URL, sent in the assertion header only when configured
    scope: str = ""
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls) -> WritebackConfig:
        """Return the configuration in the current Django settings (read at call time).

        The signing key is the current one of the key set (``cds.writeback.keys``): the single
        ``WRITEBACK_PRIVATE_KEY`` or the file ``<WRITEBACK_KEY_ID>.pem`` in ``WRITEBACK_PRIVATE_KEYS_DIR``.
        """
        current = signing_key_current() if settings.WRITEBACK_AUTH == "private_key_jwt" else None
        return cls(
            base_url=settings.WRITEBACK_FHIR_BASE_URL.rstrip("/"),
            auth=settings.WRITEBACK_AUTH,
            token_url=settings.WRITEBACK_TOKEN_URL,
            client_id=settings.WRITEBACK_CLIENT_ID,
            client_secret=settings.WRITEBACK_CLIENT_SECRET or "",
            private_key=current.private_pem if current else settings.WRITEBACK_PRIVATE_KEY or "",
            key_id=settings.WRITEBACK_KEY_ID,
            algorithm=settings.WRITEBACK_ALGORITHM,
            jku=settings.WRITEBACK_JWKS_URL,
            scope=settings.WRITEBACK_SCOPE,
            timeout_s=settings.WRITEBACK_TIMEOUT_S,
        )


@dataclass(frozen=True)
class TransactionResponse:
    """What the EHR answered to a transaction: HTTP status and, per entry, status and location."""

    status: int
    entry_statuses: list[str]
    locations: list[str]
    # Per request entry, in order: its location ("" when the server gave none).
    entry_locations: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Return the response as JSON for ``OutboxMessage.response``."""
        return {"status": self.status, "entry_statuses": self.entry_statuses, "locations": self.locations}


_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def _token_key(config: WritebackConfig) -> tuple[str, str, str]:
    return (config.auth, config.token_url, config.client_id)


def access_tokens_clear() -> None:
    """Forget every cached access token (tests; a credential rotation)."""
    with _tokens_lock:
        _tokens.clear()


def client_assertion(*, config: WritebackConfig, now: float | None = None) -> str:
    """Return a signed SMART Backend Services client assertion (private_key_jwt).

    Claims: ``iss`` = ``sub`` = client id, ``aud`` = token URL, ``exp`` under 5 minutes ahead and a
    unique ``jti`` (servers refuse a replayed one); the header names the key (``kid``) and, when
    configured, our JWKS URL (``jku``) where the EHR finds it.
    """
    issued = time.time() if now is None else now
    claims = {
        "iss": config.client_id,
        "sub": config.client_id,
        "aud": config.token_url,
        "iat": int(issued),
        "exp": int(issued) + ASSERTION_LIFETIME_S,
        "jti": uuid.uuid4().hex,
    }
    headers = {"kid": config.key_id, "typ": "JWT"}
    if config.jku:
        # SMART Backend Services: jku, when present, must be the JWKS URL registered with the EHR.
        headers["jku"] = config.jku
    return jwt.encode(claims, config.private_key, algorithm=config.algorithm, headers=headers)


def _token_request(config: WritebackConfig) -> requests.Response:
    form = {"grant_type": "client_credentials"}
    if config.scope:
        form["scope"] = config.scope
    auth: tuple[str, str] | None = None
    if config.auth == "client_secret":
        # client_secret_basic: RFC 6749 §2.3.1 form-encodes id and secret before Basic encoding.
        auth = (quote_plus(config.client_id), quote_plus(config.client_secret))
    else:
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = client_assertion(config=config)
    try:
        return requests.post(
            config.token_url, data=form, auth=auth, headers={"Accept": "application/json"}, timeout=config.timeout_s
        )
    except requests.Timeout as exc:
        raise WritebackError(f"token endpoint timed out after {config.timeout_s} s", transient=True) from exc
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise WritebackError(f"token endpoint unreachable: {exc}", transient=True) from exc
    except requests.RequestException as exc:
        raise WritebackError(f"token request not sent: {exc}", transient=False) from exc


def access_token(*, config: WritebackConfig) -> str | None:
    """Return a bearer token for the EHR, from the cache or the token endpoint; None for ``auth=none``.

    Raises WritebackError: transient for an unreachable or overloaded token endpoint, permanent when
    it refuses our credentials (``invalid_client`` and friends: retrying would not change its mind).
    """
    if config.auth == "none":
        return None
    key = _token_key(config)
    with _tokens_lock:
        cached = _tokens.get(key)
    if cached is not None and cached[1] > time.time():
        return cached[0]
    response = _token_request(config)
    if response.status_code != 200:
        raise WritebackError(
            f"token endpoint answered HTTP {response.status_code}: {_oauth_error(response)}",
            transient=response.status_code in TRANSIENT_STATUSES,
            status=response.status_code,
            retry_after_s=_retry_after(response),
        )
    try:
        body = response.json()
        token = str(body["access_token"])
        lifetime = float(body.get("expires_in", 300))
    except (ValueError, KeyError, TypeError) as exc:
        raise WritebackError(f"token endpoint answered without an access_token: {exc}", transient=False) from exc
    # A short-lived token is renewed at half its life rather than never cached.
    renew_at = time.time() + lifetime - min(TOKEN_RENEW_MARGIN_S, lifetime / 2)
    with _tokens_lock:
        _tokens[key] = (token, renew_at)
    return token


def access_token_drop(*, config: WritebackConfig) -> None:
    """Forget the cached token for ``config`` (the EHR answered 401 to it)."""
    with _tokens_lock:
        _tokens.pop(_token_key(config), None)


def _oauth_error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "error" in body:
        return f"{body['error']}: {body.get('error_description', '')}".strip(": ")
    return response.text[:500]


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP-date: the backoff schedule applies instead


def _diagnostics(response: requests.Response) -> str:
    """Return the server's own words: OperationOutcome diagnostics, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue") or []
        text = "; ".join(
            f"{i.get('severity', '?')} {i.get('code', '?')}: {i.get('diagnostics') or (i.get('details') or {}).get('text', '')}"
            for i in issues
        )
        return text or "OperationOutcome without issues"
    return json.dumps(body)[:500]


def _outcome(response: requests.Response) -> TransactionResponse:
    """Classify the EHR's answer to a transaction; raise WritebackError unless it was accepted."""
    status = response.status_code
    if status >= 400 or status < 200:
        raise WritebackError(
            f"HTTP {status}: {_diagnostics(response)}",
            transient=status in TRANSIENT_STATUSES,
            status=status,
            retry_after_s=_retry_after(response),
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise WritebackError(f"HTTP {status} with a body that is not JSON", transient=False, status=status) from exc
    if not isinstance(body, dict):
        raise WritebackError(f"HTTP {status} with a body that is not a FHIR resource", transient=False, status=status)
    if body.get("resourceType") == "OperationOutcome":
        if any(i.get("severity") in {"error", "fatal"} for i in body.get("issue") or []):
            raise WritebackError(f"HTTP {status}: {_diagnostics(response)}", transient=False, status=status)
        return TransactionResponse(status=status, entry_statuses=[], locations=[])
    entries = [e.get("response") or {} for e in body.get("entry") or [] if isinstance(e, dict)]
    entries = [e if isinstance(e, dict) else {} for e in entries]
    return TransactionResponse(
        status=status,
        entry_statuses=[str(e.get("status", "")) for e in entries],
        locations=[str(e["location"]) for e in entries if e.get("location")],
        entry_locations=[str(e.get("location") or "") for e in entries],
    )


# The references that tie a result to its ECG and patient: a conditional create that matched a
# resource whose references differ matched someone else's result.
_OWNER_ELEMENTS = ("subject", "for", "derivedFrom")


def _reference_keys(value: Any) -> set[str]:
    """Return comparable keys of a Reference (or list of them): its reference and its identifier."""
    keys: set[str] = set()
    for reference in value if isinstance(value, list) else [value]:
        if not isinstance(reference, dict):
            continue
        if reference.get("reference"):
            keys.add(f"ref:{reference['reference']}")
        identifier = reference.get("identifier")
        if isinstance(identifier, dict) and identifier.get("value"):
            keys.add(f"id:{identifier.get('system', '')}|{identifier['value']}")
    return keys


def match_owner_mismatch(sent: dict[str, Any], found: dict[str, Any]) -> str | None:
    """Return which owner element of the matched resource ``found`` is not the one we ``sent``; None if all agree.

    Each of ``subject``, ``for`` and ``derivedFrom`` we sent must share its reference or its
    identifier with the matched resource's: the EHR may resolve our reference to its own id, but
    keeps one of the two.
    """
    for element in _OWNER_ELEMENTS:
        if element not in sent:
            continue
        sent_keys, found_keys = _reference_keys(sent[element]), _reference_keys(found.get(element))
        if sent_keys and not sent_keys & found_keys:
            return element
    return None


def _read(config: WritebackConfig, location: str, token: str | None) -> dict[str, Any]:
    """GET one resource the EHR named in a transaction response (its ``location``)."""
    url = location if location.startswith(("http://", "https://")) else f"{config.base_url}/{location}"
    headers = {"Accept": FHIR_JSON, **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        response = requests.get(url, headers=headers, timeout=config.timeout_s)
    except requests.RequestException as exc:
        raise WritebackError(f"reading back {location} failed: {exc}", transient=True) from exc
    if response.status_code != 200:
        raise WritebackError(
            f"reading back {location}: HTTP {response.status_code}",
            transient=response.status_code in TRANSIENT_STATUSES,
            status=response.status_code,
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise WritebackError(f"reading back {location}: not JSON", transient=False) from exc
    return body if isinstance(body, dict) else {}


def _verify_matches(
    config: WritebackConfig, bundle: dict[str, Any], response: TransactionResponse, token: str | None
) -> None:
    """Fail loudly when a conditional create matched a resource that is not this ECG's.

    Our identifiers are per-job UUIDs, so a match is normally our own earlier delivery of the same
    Bundle (a replay). A match carrying another subject or another source ECG means an identifier
    collision in the EHR (a misconfigured system shared by two installations, restored data): the
    EHR kept the other resource, our result is not there, and a later signature would amend the
    wrong patient's report. Raises a permanent WritebackError naming the entry.
    """
    for index, (entry, status) in enumerate(zip(bundle.get("entry") or [], response.entry_statuses, strict=False)):
        request, resource = entry.get("request") or {}, entry.get("resource") or {}
        if request.get("method") != "POST" or not request.get("ifNoneExist") or not status.startswith("200"):
            continue
        if not any(element in resource for element in _OWNER_ELEMENTS):
            continue
        location = response.entry_locations[index] if index < len(response.entry_locations) else ""
        if not location:
            raise WritebackError(
                f"Bundle.entry[{index}] matched an existing {resource.get('resourceType')} but the EHR gave no "
                "location to check it against",
                transient=False,
            )
        found = _read(config, location.split("/_history")[0], token)
        element = match_owner_mismatch(resource, found)
        if element is not None:
            raise WritebackError(
                f"identifier collision: Bundle.entry[{index}] ifNoneExist {request['ifNoneExist']!r} matched "
                f"{location.split('/_history')[0]}, whose {element} is not this ECG's; the EHR kept the other "
                "resource and our result was not written",
                transient=False,
            )


def fhir_transaction_post(*, config: WritebackConfig, bundle: dict[str, Any]) -> TransactionResponse:
    """POST a transaction Bundle to the EHR's FHIR base and return its answer.

    A 401 drops the cached token and retries once with a fresh one (the EHR may have revoked it
    early); a second 401 is permanent. Raises WritebackError for anything but an accepted transaction.
    """
    body = json.dumps(bundle, separators=(",", ":"))
    for attempt in (1, 2):
        token = access_token(config=config)
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = requests.post(config.base_url, data=body, headers=headers, timeout=config.timeout_s)
        except requests.Timeout as exc:
            raise WritebackError(f"FHIR endpoint timed out after {config.timeout_s} s", transient=True) from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise WritebackError(f"FHIR endpoint unreachable: {exc}", transient=True) from exc
        except requests.RequestException as exc:
            # An invalid URL or a redirect loop: configuration, which no retry fixes.
            raise WritebackError(f"FHIR request not sent: {exc}", transient=False) from exc
        if response.status_code == 401 and token and attempt == 1:
            logger.info("write-back: EHR refused our access token; fetching a new one")
            access_token_drop(config=config)
            continue
        outcome = _outcome(response)
        _verify_matches(config, bundle, outcome, token)
        return outcome
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
