"""OAuth2 routes under ``/auth/``; the SMART discovery document is routed in ``cds/urls.py``."""

from __future__ import annotations

from django.urls import path

from cds.oauth.apis import TokenApi

urlpatterns = [
    path("token", TokenApi.as_view(), name="oauth-token"),
]
