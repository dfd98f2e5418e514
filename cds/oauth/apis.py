"""The OAuth2 token endpoint and SMART discovery.

The token endpoint is the client-credentials grant (RFC 6749 §4.4) with JSON errors (§5.2), the
client authenticating with a private_key_jwt assertion (SMART Backend Services, RFC 7523) or,
where ``OAUTH_ALLOW_CLIENT_SECRET``, a shared secret.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_plus

from django.http import QueryDict
from rest_framework import exceptions, serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cds.oauth.selectors import GRANT_TYPE, smart_configuration
from cds.oauth.services import IssuedToken, OAuthError, access_token_issue, access_token_issue_for_assertion

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenApi(APIView):
    """``POST /auth/token``: exchange client credentials for a bearer access token.

    The client authenticates with ``client_assertion_type`` (the RFC 7523 jwt-bearer URN) and a
    signed ``client_assertion`` (private_key_jwt), or, where secrets are allowed, with HTTP Basic
    (client_secret_basic) or ``client_id`` and ``client_secret`` in the form (client_secret_post):
    one method, never two. The endpoint itself takes no
    token, and DRF's APIView is CSRF-exempt: it is called by machines, not submitted from a page.
    """

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    # RFC 6749 asks for urlencoded forms; multipart forms (Django's test client, some HTTP libraries'
    # defaults) carry the same fields and refusing them would only break clients.
    parser_classes = [FormParser, MultiPartParser]
    renderer_classes = [JSONRenderer]

    class InputSerializer(serializers.Serializer[Any]):
        # RFC 6749 §3.2: an empty parameter is the same as an absent one.
        grant_type = serializers.CharField(required=False, allow_blank=True, max_length=100)
        client_id = serializers.CharField(required=False, allow_blank=True, max_length=200)
        client_secret = serializers.CharField(required=False, allow_blank=True, max_length=200, trim_whitespace=False)
        scope = serializers.CharField(required=False, allow_blank=True, max_length=4000)
        client_assertion_type = serializers.CharField(required=False, allow_blank=True, max_length=200)
        # An RS384 assertion with a 4096-bit key is under 1.5 kB; the limit only stops abuse.
        client_assertion = serializers.CharField(required=False, allow_blank=True, max_length=16000)

    class OutputSerializer(serializers.Serializer[IssuedToken]):
        access_token = serializers.CharField()
        token_type = serializers.SerializerMethodField()
        expires_in = serializers.IntegerField()
        scope = serializers.CharField()

        def get_token_type(self, token: IssuedToken) -> str:
            return "bearer"

    def post(self, request: Request) -> Response:
        params = self._validated_params(request)
        grant_type = params.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"only grant_type={GRANT_TYPE} is supported")
        if "client_assertion" in params or "client_assertion_type" in params:
            token = self._assertion_token(request, params)
        else:
            client_id, client_secret = self._client_credentials(request, params)
            token = access_token_issue(client_id=client_id, client_secret=client_secret, scope=params.get("scope"))
        return Response(self.OutputSerializer(token).data)

    def _assertion_token(self, request: Request, params: dict[str, str]) -> IssuedToken:
        """Return a token for a private_key_jwt client (SMART Backend Services)."""
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        if "client_assertion" not in params:
            raise OAuthError("invalid_request", "client_assertion is required with client_assertion_type")
        if "client_secret" in params or request.META.get("HTTP_AUTHORIZATION"):
            raise OAuthError("invalid_request", "use one client authentication method, not a secret and an assertion")
        return access_token_issue_for_assertion(
            assertion=params["client_assertion"], client_id=params.get("client_id"), scope=params.get("scope")
        )

    def _validated_params(self, request: Request) -> dict[str, str]:
        data = request.data
        if not isinstance(data, QueryDict):
            data = QueryDict()  # DRF parses an empty body without a form media type to {}
        repeated = sorted(k for k in data if len(data.getlist(k)) > 1)
        if repeated:
            # RFC 6749 §3.2: parameters MUST NOT be repeated; we will not guess which one was meant.
            raise OAuthError("invalid_request", f"repeated parameter(s): {', '.join(repeated)}")
        serializer = self.InputSerializer(data=data)
        if not serializer.is_valid():
            field, errors = next(iter(serializer.errors.items()))
            raise OAuthError("invalid_request", f"{field}: {errors[0]}")
        return {k: v for k, v in serializer.validated_data.items() if v != ""}

    def _client_credentials(self, request: Request, params: dict[str, str]) -> tuple[str, str]:
        """Return ``(client_id, client_secret)`` from the Basic header or the form body."""
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            if "client_id" not in params or "client_secret" not in params:
                raise OAuthError("invalid_client", "client authentication is required", status=401)
            return params["client_id"], params["client_secret"]
        self.basic_attempted = True
        client_id, client_secret = _basic_credentials(header)
        if "client_secret" in params:
            raise OAuthError("invalid_request", "use one client authentication method, not Basic and the body")
        if params.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id in the body differs from the Basic credentials")
        return client_id, client_secret

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, exceptions.UnsupportedMediaType | exceptions.ParseError):
            exc = OAuthError("invalid_request", "send the parameters as an application/x-www-form-urlencoded form")
        if not isinstance(exc, OAuthError):
            return super().handle_exception(exc)
        response = Response({"error": exc.error, "error_description": exc.description}, status=exc.http_status)
        if exc.error == "invalid_client" and getattr(self, "basic_attempted", False):
            # RFC 6749 §5.2: a client that tried the Authorization header gets a challenge in its scheme.
            response["WWW-Authenticate"] = 'Basic realm="token"'
        return response

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # RFC 6749 §5.1: token responses must never be cached by the client or an intermediary.
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response


def _basic_credentials(header: str) -> tuple[str, str]:
    """Return the client id and secret of an ``Authorization: Basic`` header (RFC 6749 §2.3.1).

    Raises ``OAuthError(invalid_client)`` for another scheme or a malformed value.
    """
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", f"unsupported client authentication scheme {scheme!r}", status=401)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "malformed Basic credentials", status=401) from exc
    client_id, colon, client_secret = decoded.partition(":")
    if not colon or not client_id:
        raise OAuthError("invalid_client", "malformed Basic credentials", status=401)
    # Both parts are form-urlencoded before base64, per RFC 6749 §2.3.1.
    return unquote_plus(client_id), unquote_plus(client_secret)


class SmartConfigurationApi(APIView):
    """``GET /.well-known/smart-configuration`` (also under ``/fhir``): how to get a token here."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    def get(self, request: Request) -> Response:
        return Response(smart_configuration())
