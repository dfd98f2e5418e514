from __future__ import annotations

from django.urls import path

from cds.core.apis import HealthApi

urlpatterns = [
    path("healthz", HealthApi.as_view(), name="healthz"),
]
