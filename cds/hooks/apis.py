"""CDS Hooks endpoints: discovery (public), the patient-view service and its feedback.

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
from cds.hooks.feedback import feedback_parse, feedback_record
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


def hook_caller(request: Request) -> tuple[int, str]:
    """Return the caller's organisation id and client id, refusing a caller the hook does not trust.

    Feedback is trusted exactly as the hook is (``cds.hooks.authentication``): the CDS client's
    signed JWT (its ``aud`` is this feedback URL), or one of our tokens with Observation read.
    """
    require_hook_access(request)
    return request_organization_id(request), getattr(request.user, "client_id", "")


class FeedbackApi(APIView):
    """``POST /cds-services/ecg-ai-findings/feedback``: accepted or overridden cards (CDS Hooks 2.0 Feedback)."""

    authentication_classes = PatientViewApi.authentication_classes

    def post(self, request: Request, service_id: str) -> Response:
        if service_id != SERVICE_ID:
            return Response({"message": f"no CDS service {service_id!r}", "extra": {}}, status=404)
        organization_id, client_id = hook_caller(request)
        items = feedback_parse(request.data)
        feedback_record(items=items, organization_id=organization_id, client_id=client_id)
        return Response({})
