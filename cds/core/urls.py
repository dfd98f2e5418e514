from __future__ import annotations

from django.urls import path

from cds.core.apis import HealthApi, MetricsApi, OpenApiDescriptionApi, ReadinessApi

urlpatterns = [
    path("healthz", HealthApi.as_view(), name="healthz"),
    path("readyz", ReadinessApi.as_view(), name="readyz"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
    path("openapi.yaml", OpenApiDescriptionApi.as_view(), name="openapi"),
]
