"""CDS Hooks endpoints: discovery (public) and the patient-view service (bearer token)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cds.hooks.services import SERVICE_ID, discovery, patient_view_cards
from cds.oauth.scopes import require_scope
from cds.oauth.tenancy import request_organization_id


class DiscoveryApi(APIView):
    """``GET /cds-services``."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(discovery())


class PatientViewApi(APIView):
    """``POST /cds-services/ecg-ai-findings``: cards for the patient's analysed ECGs."""

    class InputSerializer(serializers.Serializer[Any]):
        hook = serializers.ChoiceField(choices=["patient-view"])
        hookInstance = serializers.CharField()  # noqa: N815 - CDS Hooks field name
        context = serializers.DictField()  # type: ignore[assignment]  # CDS Hooks names the field "context"
        prefetch = serializers.DictField(required=False, allow_null=True)

        def validate_context(self, value: dict[str, Any]) -> dict[str, Any]:
            if not value.get("patientId"):
                raise serializers.ValidationError("context.patientId is required for patient-view")
            return value

    def post(self, request: Request, service_id: str) -> Response:
        if service_id != SERVICE_ID:
            return Response({"message": f"no CDS service {service_id!r}", "extra": {}}, status=404)
        require_scope(request, "Observation", "r")
        organization_id = request_organization_id(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cards = patient_view_cards(
            request=serializer.validated_data,
            organization_id=organization_id,
            client_id=getattr(request.user, "client_id", ""),
        )
        return Response(cards)
