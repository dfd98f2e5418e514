"""Admin building blocks shared by the apps."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from cds.core.models import Organization


class ReadOnlyAdmin(admin.ModelAdmin):
    """Clinical source data is changed only through the FHIR API, never edited in place."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    """Organisations (tenants): created with their first API client (``create_api_client --organization``)."""

    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")

    # The slug is what create_api_client names; renaming it would point scripts at a new, empty tenant.
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("slug", "created_at") if obj is not None else ("created_at",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its data points at it (PROTECT); an organisation is deactivated through its clients
