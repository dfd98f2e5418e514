from __future__ import annotations

from django.contrib import admin

from cds.smart.models import SmartClinician, SmartEhr


class SmartClinicianInline(admin.TabularInline):
    model = SmartClinician
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(SmartEhr)
class SmartEhrAdmin(admin.ModelAdmin):
    list_display = ("iss", "name", "client_id", "organization", "is_active")
    list_filter = ("organization", "is_active")
    search_fields = ("iss", "name", "client_id")
    inlines = [SmartClinicianInline]


@admin.register(SmartClinician)
class SmartClinicianAdmin(admin.ModelAdmin):
    list_display = ("fhir_user", "user", "ehr")
    list_filter = ("ehr",)
    search_fields = ("fhir_user", "user__username")
    autocomplete_fields = ("user",)
