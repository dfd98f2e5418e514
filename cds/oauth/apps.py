from __future__ import annotations

from django.apps import AppConfig


class OauthConfig(AppConfig):
    name = "cds.oauth"
    label = "oauth"
    verbose_name = "OAuth2 API clients"
