"""Admin for API clients: inspect, rescope and deactivate; creation is the management command's."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from cds.oauth.models import ApiClient


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ("client_id", "name", "organization", "auth_method", "is_active", "scopes", "created_at")
    list_filter = ("is_active", "auth_method", "organization")
    search_fields = ("client_id", "name")
    # secret_hash is left out entirely: not even its hash is shown or editable here.
    # jwks stays editable: rotating a key is adding the new public key, then removing the old one.
    fields = ("name", "client_id", "organization", "auth_method", "scopes", "jwks", "is_active", "created_at")
    # Moving a client to another organisation would hand it that tenant's data: create a new client instead.
    readonly_fields = ("client_id", "organization", "auth_method", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The secret is shown once, at creation; `manage.py create_api_client` is where it can be shown.
        return False
