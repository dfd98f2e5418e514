"""CDS Hooks endpoints: discovery (public) and the patient-view service.

The service is called with the CDS client's signed JWT (CDS Hooks 2.0, the standard way) or, for
existing integrations, one of our own access tokens: ``cds.hooks.authentication``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cds.hooks.authentication import CdsHooksAuthentication, hook_fhir_servers, require_hook_access
from cds.hooks.services import SERVICE_ID, discovery, patient_view_cards
from cds.oauth.tenancy import request_organization_id


class DiscoveryApi(APIView):
    """``GET /cds-services``."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(discovery())


class PatientViewApi(APIView):
    """``POST /cds-services/ecg-ai-findings``: cards for the patient's analysed ECGs."""

    authentication_classes = [CdsHooksAuthentication]

    class InputSerializer(serializers.Serializer[Any]):
        hook = serializers.ChoiceField(choices=["patient-view"])
        hookInstance = serializers.CharField()  # noqa: N815 - CDS Hooks field name
        context = serializers.DictField()  # type: ignore[assignment]  # CDS Hooks names the field "context"
        prefetch = serializers.DictField(required=False, allow_null=True)
        fhirServer = serializers.CharField(required=False, allow_null=True, max_length=500)  # noqa: N815
        fhirAuthorization = serializers.DictField(required=False, allow_null=True)  # noqa: N815

        def validate_context(self, value: dict[str, Any]) -> dict[str, Any]:
            if not value.get("patientId"):
                raise serializers.ValidationError("context.patientId is required for patient-view")
            return value

    def post(self, request: Request, service_id: str) -> Response:
        if service_id != SERVICE_ID:
            return Response({"message": f"no CDS service {service_id!r}", "extra": {}}, status=404)
        require_hook_access(request)
        organization_id = request_organization_id(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cards = patient_view_cards(
            request=serializer.validated_data,
            organization_id=organization_id,
            client_id=getattr(request.user, "client_id", ""),
            fhir_servers=hook_fhir_servers(request),
        )
        return Response(cards)
