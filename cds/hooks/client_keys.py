"""Fetch and cache registered CDS clients' public keys (JWK Sets at their ``jwks_url``).

The cache is per process (a dict under a lock): keys are public, a miss costs one short request,
and each web process refetching on its own is cheap next to a shared cache's moving parts. An
unknown ``kid`` (the EHR rotated its key) refetches once, at most every
``CDS_HOOKS_JWKS_REFETCH_MIN_S`` per client, so a flood of JWTs with made-up kids cannot make us
hammer the EHR's key endpoint.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

from cds.hooks.ehr_http import bounded_get

_MAX_JWKS_BYTES = 64 * 1024  # a JWK Set of a few keys is a few kB


class JwksUnavailable(Exception):
    """Raise when a client's JWK Set cannot be fetched or is not a JWK Set."""


@dataclass
class _Entry:
    keys: list[dict[str, Any]]
    fetched_at: float  # time.monotonic() of the last fetch attempt that succeeded


_cache: dict[str, _Entry] = {}
_failed_at: dict[str, float] = {}  # a URL that failed is not retried sooner than the refetch minimum
_lock = threading.Lock()


def jwks_cache_clear() -> None:
    """Forget every cached key set (tests; a process that must see a rotation at once)."""
    with _lock:
        _cache.clear()
        _failed_at.clear()


def jwk_for_kid(*, jwks_url: str, kid: str) -> dict[str, Any] | None:
    """Return the key ``kid`` of the JWK Set at ``jwks_url``, or None when the set has no such key.

    Uses the cached set while younger than ``CDS_HOOKS_JWKS_CACHE_S``; on a miss refetches once
    unless the set was fetched less than ``CDS_HOOKS_JWKS_REFETCH_MIN_S`` ago. Raises
    ``JwksUnavailable`` when the set is needed and cannot be fetched.
    """
    now = time.monotonic()
    with _lock:
        entry = _cache.get(jwks_url)
    if entry is None or now - entry.fetched_at > settings.CDS_HOOKS_JWKS_CACHE_S:
        entry = _refresh(jwks_url)
    key = _find(entry.keys, kid)
    if key is None and time.monotonic() - entry.fetched_at >= settings.CDS_HOOKS_JWKS_REFETCH_MIN_S:
        try:
            key = _find(_refresh(jwks_url).keys, kid)
        except JwksUnavailable:
            return None  # the cached set stands; the kid is unknown to it
    return key


def _find(keys: list[dict[str, Any]], kid: str) -> dict[str, Any] | None:
    return next((k for k in keys if isinstance(k, dict) and k.get("kid") == kid), None)


def _refresh(jwks_url: str) -> _Entry:
    with _lock:
        failed_at = _failed_at.get(jwks_url)
    if failed_at is not None and time.monotonic() - failed_at < settings.CDS_HOOKS_JWKS_REFETCH_MIN_S:
        raise JwksUnavailable("the client's JWKS URL failed moments ago; not retried yet")
    try:
        entry = _Entry(keys=_fetch(jwks_url), fetched_at=time.monotonic())
    except JwksUnavailable:
        with _lock:
            _failed_at[jwks_url] = time.monotonic()
        raise
    with _lock:
        _cache[jwks_url] = entry
        _failed_at.pop(jwks_url, None)
    return entry


def _fetch(jwks_url: str) -> list[dict[str, Any]]:
    """GET the JWK Set: short timeout, no redirects (the registered URL is the one trusted), size cap."""
    try:
        status, body = bounded_get(
            jwks_url,
            headers={"Accept": "application/json"},
            timeout_s=settings.CDS_HOOKS_JWKS_TIMEOUT_S,
            max_bytes=_MAX_JWKS_BYTES,
        )
    except requests.RequestException as exc:
        raise JwksUnavailable(f"the client's JWKS URL could not be fetched ({type(exc).__name__})") from exc
    if status != 200:
        raise JwksUnavailable(f"the client's JWKS URL answered HTTP {status}")
    if len(body) > _MAX_JWKS_BYTES:
        raise JwksUnavailable(f"the client's JWKS is larger than {_MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise JwksUnavailable("the client's JWKS URL did not answer JSON") from exc
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksUnavailable('the client\'s JWKS URL did not answer a JWK Set {"keys": [...]}')
    return keys
