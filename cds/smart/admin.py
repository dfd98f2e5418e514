from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models

from cds.smart.models import SmartClinician, SmartEhr

# An EHR's FHIR base and fhirUser are typed in full; a missing scheme is https, never http.
_URLS: dict[Any, dict[str, Any]] = {models.URLField: {"assume_scheme": "https"}}


class SmartClinicianInline(admin.TabularInline):
    model = SmartClinician
    extra = 0
    formfield_overrides = _URLS
    autocomplete_fields = ("user",)


@admin.register(SmartEhr)
class SmartEhrAdmin(admin.ModelAdmin):
    list_display = ("iss", "name", "client_id", "organization", "is_active")
    formfield_overrides = _URLS
    list_filter = ("organization", "is_active")
    search_fields = ("iss", "name", "client_id")
    inlines = [SmartClinicianInline]


@admin.register(SmartClinician)
class SmartClinicianAdmin(admin.ModelAdmin):
    list_display = ("fhir_user", "user", "ehr")
    formfield_overrides = _URLS
    list_filter = ("ehr",)
    search_fields = ("fhir_user", "user__username")
    autocomplete_fields = ("user",)
