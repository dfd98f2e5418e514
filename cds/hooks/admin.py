"""Admin for registered CDS clients (EHRs that call our CDS services with signed JWTs)."""

from __future__ import annotations

from django.contrib import admin

from cds.hooks.models import CdsClient


@admin.register(CdsClient)
class CdsClientAdmin(admin.ModelAdmin):
    list_display = ("name", "iss", "organization", "jwks_url", "is_active", "created_at")
    list_filter = ("is_active", "organization")
    search_fields = ("name", "iss")
    fields = ("name", "iss", "organization", "jwks_url", "jwks", "fhir_servers", "is_active", "created_at")
    # Moving a client to another organisation would hand it that tenant's patients: register a new one.
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return ("organization", "created_at") if obj is not None else ("created_at",)
