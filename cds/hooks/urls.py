from __future__ import annotations

from django.urls import path

from cds.hooks.apis import DiscoveryApi, FeedbackApi, PatientViewApi

urlpatterns = [
    path("cds-services", DiscoveryApi.as_view(), name="cds-services"),
    path("cds-services/<str:service_id>", PatientViewApi.as_view(), name="cds-service"),
    path("cds-services/<str:service_id>/feedback", FeedbackApi.as_view(), name="cds-service-feedback"),
]
