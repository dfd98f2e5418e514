"""FHIR routes under ``/fhir``."""

from __future__ import annotations

from django.urls import path

from cds.fhirapi.apis import (
    BundleProcessApi,
    MetadataApi,
    ResourceCreateApi,
    ResourceReadApi,
    ResourceSearchApi,
    ResourceUpdateApi,
    by_method,
)
from cds.fhirapi.exports import ExportCancelApi, ExportFileApi, ExportKickoffApi, ExportStatusApi

_ID = "<str:resource_type>/<str:logical_id>"
urlpatterns = [
    path("", by_method(POST=BundleProcessApi.as_view()), name="fhir-system"),
    path("metadata", by_method(GET=MetadataApi.as_view()), name="fhir-metadata"),
    # Bulk Data export (before <resource_type>, which would claim these paths).
    path("$export", by_method(GET=ExportKickoffApi.as_view()), name="fhir-export"),
    path(
        "$export-status/<uuid:export_id>",
        by_method(GET=ExportStatusApi.as_view(), DELETE=ExportCancelApi.as_view()),
        name="fhir-export-status",
    ),
    path(
        "$export-file/<uuid:export_id>/<str:file_name>",
        by_method(GET=ExportFileApi.as_view()),
        name="fhir-export-file",
    ),
    path(
        "<str:resource_type>",
        by_method(GET=ResourceSearchApi.as_view(), POST=ResourceCreateApi.as_view()),
        name="fhir-type",
    ),
    path(f"{_ID}", by_method(GET=ResourceReadApi.as_view(), PUT=ResourceUpdateApi.as_view()), name="fhir-read"),
    path(f"{_ID}/_history/<int:version_id>", by_method(GET=ResourceReadApi.as_view()), name="fhir-vread"),
]
