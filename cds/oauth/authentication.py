"""DRF authentication with the bearer access tokens issued by ``/auth/token`` (RFC 6750)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from cds.oauth.scopes import scope_within, scopes_split
from cds.oauth.selectors import api_client_get_active
from cds.oauth.services import AccessTokenInvalid, access_token_verify

# Set on the request when a presented token is refused, so the challenge can say why (RFC 6750 §3).
_REFUSED_ATTR = "_bearer_token_refused"


class ClientPrincipal:
    """What DRF and Django need of ``request.user`` when the caller is a system, not a person.

    Subclasses provide ``client_id`` (what the audit trail records).
    """

    client_id: str

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.client_id


@dataclass(frozen=True)
class ApiClientPrincipal(ClientPrincipal):
    """The authenticated caller of a request (``request.user``): an API client and its token's scopes."""

    pk: int
    client_id: str
    name: str
    scopes: frozenset[str]
    organization_id: int  # the tenant: every FHIR and CDS Hooks read is filtered by it


class BearerTokenAuthentication(BaseAuthentication):
    """Authenticate ``Authorization: Bearer <access token>``.

    Returns None without that header (DRF then answers 401 NotAuthenticated); raises
    ``AuthenticationFailed`` for a malformed, forged, expired or foreign token, or one whose client
    was deleted or deactivated since it was issued.
    """

    def authenticate(self, request: Request) -> tuple[ApiClientPrincipal, dict[str, Any]] | None:
        parts = request.META.get("HTTP_AUTHORIZATION", "").split()
        if not parts or parts[0].lower() != "bearer":
            return None
        if len(parts) != 2:
            self._refuse(request, "malformed Authorization header; send 'Bearer <token>'")
        try:
            claims = access_token_verify(token=parts[1])
        except AccessTokenInvalid as exc:
            self._refuse(request, exc.message)
        client = api_client_get_active(client_id=claims["sub"])
        if client is None:
            self._refuse(request, "access token's client is unknown or deactivated")
        # Scopes withdrawn from the client since issue stop working now, not when the token expires.
        granted = client.granted_scopes()
        scopes = frozenset(s for s in scopes_split(claims["scope"]) if scope_within(s, granted))
        principal = ApiClientPrincipal(
            pk=client.pk,
            client_id=client.client_id,
            name=client.name,
            scopes=scopes,
            organization_id=client.organization_id,
        )
        return principal, claims

    def authenticate_header(self, request: Request) -> str:
        # A challenge makes DRF answer 401 rather than 403 for a missing or refused credential.
        if getattr(request, _REFUSED_ATTR, False):
            return 'Bearer realm="fhir", error="invalid_token"'
        return 'Bearer realm="fhir"'

    def _refuse(self, request: Request, message: str) -> NoReturn:
        setattr(request, _REFUSED_ATTR, True)
        raise AuthenticationFailed(message)
