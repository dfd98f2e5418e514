"""Top-level routes: FHIR API, OAuth2 token endpoint, health probes, admin."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from cds.fhirapi.apis import BundleProcessApi, by_method
from cds.oauth.apis import SmartConfigurationApi
from cds.writeback.apis import jwks_view

if settings.ADMIN_OTP_REQUIRED:  # review (issue 6): admin pages need a verified TOTP device
    from django_otp.admin import OTPAdminSite

    admin.site.__class__ = OTPAdminSite

urlpatterns = [
    # The FHIR base is /fhir (no slash): [base] takes Bundles, [base]/{type} everything else.
    path("fhir", by_method(POST=BundleProcessApi.as_view()), name="fhir-base"),
    # SMART discovery, at the root and relative to the FHIR base (before fhir/<type>/<id> claims it).
    path(".well-known/smart-configuration", SmartConfigurationApi.as_view(), name="smart-configuration"),
    path("fhir/.well-known/smart-configuration", SmartConfigurationApi.as_view(), name="fhir-smart-configuration"),
    # Our write-back signing keys' public halves (the JKU EHRs register for our backend client).
    path(".well-known/jwks.json", jwks_view, name="jwks"),
    path("fhir/", include("cds.fhirapi.urls")),
    path("auth/", include("cds.oauth.urls")),
    path("", include("cds.hooks.urls")),
    path("", include("cds.smart.urls")),
    path("", include("cds.core.urls")),
    path("admin/", admin.site.urls),
]
