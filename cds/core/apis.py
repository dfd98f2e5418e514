"""Health and readiness probes, the OpenAPI description and the Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cds.core.metrics import metrics_exposition


class HealthApi(APIView):
    """Answer 200 when the database answers ``SELECT 1`` (liveness for load balancers)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return Response({"status": "ok"})


class ReadinessApi(APIView):
    """Report whether the database and the models answer; 503 names what does not.

    For monitoring and the worker's probe. The web tier's own readiness stays ``/healthz``: FHIR
    ingest must go on (jobs queue) while Triton is down.
    """

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        checks = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            checks["database"] = "ok"
        except DatabaseError as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        # The apps' probes are named in settings (READINESS_CHECKS), so core imports no app.
        for name, dotted_path in settings.READINESS_CHECKS.items():
            checks[name] = "ok" if import_string(dotted_path)() else "unavailable"
        ready = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"


class OpenApiDescriptionApi(APIView):
    """``GET /openapi.yaml``: the hand-written OpenAPI 3.1 description of the non-FHIR endpoints."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(OPENAPI_PATH.read_bytes(), content_type="application/yaml; charset=utf-8")


class MetricsApi(APIView):
    """``GET /metrics``: Prometheus text (``cds.core.metrics``; scrape-time collectors from settings).

    Operational counts only, no patient data. Scraped over the pod network (NetworkPolicy limits
    who may); with ``METRICS_TOKEN`` set the scraper must also send it as a bearer token.
    """

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> HttpResponse:
        expected = settings.METRICS_TOKEN
        if expected and not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {expected}"):
            return HttpResponse("metrics token required\n", status=401, content_type="text/plain; charset=utf-8")
        collectors = [import_string(path)() for path in settings.METRICS_COLLECTORS]
        return HttpResponse(metrics_exposition(collectors), content_type=CONTENT_TYPE_LATEST)
