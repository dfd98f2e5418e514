"""Admin for registered CDS clients (EHRs that call our CDS services with signed JWTs)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from cds.hooks.models import CdsClient


@admin.register(CdsClient)
class CdsClientAdmin(admin.ModelAdmin):
    list_display = ("name", "iss", "organization", "jwks_url", "is_active", "created_at")
    list_filter = ("is_active", "organization")
    search_fields = ("name", "iss")
    fields = ("name", "iss", "organization", "jwks_url", "jwks", "fhir_servers", "is_active", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Moving a client to another organisation would hand it that tenant's patients: register a new one.
        return ("organization", "created_at") if obj is not None else ("created_at",)
