"""Authentication of CDS Hooks calls: the CDS client's signed JWT (the standard), or our own access token.

CDS Hooks 2.0 ("Trusting CDS Clients"): the EHR sends ``Authorization: Bearer <JWT>`` signed with
its private key; ``cds.hooks.trust`` verifies it. Integrations that already call the hook with an
access token from our ``/auth/token`` keep working: a bearer token whose ``iss`` is our own
``PUBLIC_BASE_URL`` goes to ``BearerTokenAuthentication``, anything else is a CDS client JWT.

Used by every ``/cds-services/{id}`` endpoint (the service call and its ``feedback``); each view
then calls ``require_hook_access``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NoReturn

import jwt
from django.conf import settings
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from cds.hooks.trust import HookJwtRefused, hook_jwt_verify
from cds.oauth.authentication import BearerTokenAuthentication, ClientPrincipal
from cds.oauth.scopes import require_scope

logger = logging.getLogger(__name__)

_REFUSED_ATTR = "_cds_hooks_jwt_refused"


@dataclass(frozen=True)
class CdsClientPrincipal(ClientPrincipal):
    """The authenticated caller of a CDS Hooks request (``request.user``): a registered CDS client."""

    pk: int
    iss: str
    name: str
    organization_id: int  # the tenant: the hook reads only this organisation's patients
    fhir_servers: tuple[str, ...]  # the FHIR bases the fhirServer fallback may read from

    @property
    def client_id(self) -> str:  # type: ignore[override]  # derived from iss, read-only
        # What the audit trail records as the API client.
        return f"cds-client:{self.iss}"


class CdsHooksAuthentication(BaseAuthentication):
    """Authenticate a CDS Hooks call by the CDS client's JWT, or by one of our access tokens.

    Returns None without a bearer token (DRF then answers 401); raises ``AuthenticationFailed``
    (401, with the reason) for any refused token. Refusals are logged with the reason and ``iss``
    (no patient data is in a JWT we verify, so neither is in the log).
    """

    def __init__(self) -> None:
        self._ours = BearerTokenAuthentication()

    def authenticate(self, request: Request) -> tuple[Any, dict[str, Any]] | None:
        parts = request.META.get("HTTP_AUTHORIZATION", "").split()
        if not parts or parts[0].lower() != "bearer":
            return None
        if len(parts) == 2 and _issued_by_us(parts[1]):
            return self._ours.authenticate(request)
        if len(parts) != 2:
            self._refuse(request, "malformed Authorization header; send 'Bearer <JWT>'", iss="")
        audience = _audiences(settings.PUBLIC_BASE_URL + request.path.rstrip("/"))
        try:
            client, claims = hook_jwt_verify(token=parts[1], audience=audience)
        except HookJwtRefused as exc:
            self._refuse(request, exc.reason, iss=exc.iss)
        # The optional tenant claim is not used: the registration fixes the client's organisation.
        principal = CdsClientPrincipal(
            pk=client.pk,
            iss=client.iss,
            name=client.name,
            organization_id=client.organization_id,
            fhir_servers=tuple(client.fhir_servers),
        )
        return principal, claims

    def authenticate_header(self, request: Request) -> str:
        # A challenge makes DRF answer 401 rather than 403 for a missing or refused credential.
        if getattr(request, _REFUSED_ATTR, False):
            return 'Bearer realm="cds-hooks", error="invalid_token"'
        return 'Bearer realm="cds-hooks"'

    def _refuse(self, request: Request, reason: str, *, iss: str) -> NoReturn:
        setattr(request, _REFUSED_ATTR, True)
        logger.warning("CDS Hooks JWT refused on %s: %s (iss %r)", request.path, reason, iss)
        raise AuthenticationFailed(reason)


def _audiences(url: str) -> list[str]:
    """Return the ``aud`` values accepted at ``url``: the URL called, and for a feedback call its service too.

    CDS Hooks 2.0 defines ``aud`` as the CDS Service endpoint; for the service's ``/feedback`` a client
    may name either that endpoint or the feedback URL it calls, so both are accepted there.
    """
    if url.endswith("/feedback"):
        return [url, url.removesuffix("/feedback")]
    return [url]


def _issued_by_us(token: str) -> bool:
    """Return whether ``token`` claims to be one of our access tokens (its signature is checked later)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss") == settings.PUBLIC_BASE_URL
    except jwt.InvalidTokenError:
        return False


def require_hook_access(request: Any) -> None:
    """Fail unless the caller may call our CDS services: a registered CDS client, or a token with Observation read.

    A CDS client's registration is its grant (it can call only the CDS services); our own access
    tokens need ``system/Observation.r`` as before.
    """
    if isinstance(getattr(request, "user", None), CdsClientPrincipal):
        return
    require_scope(request, "Observation", "r")


def hook_fhir_servers(request: Any) -> tuple[str, ...] | None:
    """Return the FHIR bases the caller's fhirServer fallback may use; None for our own access tokens.

    Only registered CDS clients have a fallback: an integration with one of our tokens sends its
    patients to us and is matched on their ids, as before.
    """
    user = getattr(request, "user", None)
    return user.fhir_servers if isinstance(user, CdsClientPrincipal) else None
