"""A URLconf with tiny DRF views that exercise bearer authentication and scope checks in isolation.

Mounted under ``/fhir/_test/`` so the project's exception handler renders errors as it does on
real FHIR routes (OperationOutcome).
"""

from __future__ import annotations

from typing import cast

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cds.oauth.authentication import ApiClientPrincipal
from cds.oauth.scopes import require_scope


class WhoAmIApi(APIView):
    """Echo the authenticated principal and the token's claims (project-default auth and permissions)."""

    def get(self, request: Request) -> Response:
        principal = cast(ApiClientPrincipal, request.user)
        return Response(
            {
                "client_id": principal.client_id,
                "name": principal.name,
                "scopes": sorted(principal.scopes),
                "claims": request.auth,
            }
        )


class ScopedApi(APIView):
    """Answer 200 only when the token allows ``action`` on ``resource_type``."""

    def get(self, request: Request, resource_type: str, action: str) -> Response:
        require_scope(request, resource_type, action)
        return Response({"allowed": True})


urlpatterns = [
    path("fhir/_test/whoami", WhoAmIApi.as_view()),
    path("fhir/_test/<str:resource_type>/<str:action>", ScopedApi.as_view()),
    path("auth/", include("cds.oauth.urls")),
]
