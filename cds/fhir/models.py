"""Storage of FHIR resources we host: every version kept, plus a search index of the current one."""

from __future__ import annotations

from django.db import models

from cds.core.models import Organization


class StoredResource(models.Model):
    """One version of a FHIR resource as served by ``/fhir`` (``content`` holds the full JSON).

    Versions are never overwritten: an update adds a row and clears ``is_current`` on the old one,
    so vread and the audit trail see exactly what was served at the time.
    """

    resource_type = models.CharField(max_length=64)
    logical_id = models.CharField(max_length=64)
    version_id = models.PositiveIntegerField(default=1)
    is_current = models.BooleanField(default=True)
    last_updated = models.DateTimeField()
    content = models.JSONField()
    # Who sent it (OAuth client id, or "system" for resources the service writes itself).
    source = models.CharField(max_length=128, blank=True)
    # The tenant: every read, search and conditional match filters on it (docs/security.md).
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["resource_type", "logical_id", "version_id"], name="fhir_resource_version_unique"
            ),
            # At most one current version per resource; the partial index also serves reads.
            models.UniqueConstraint(
                fields=["resource_type", "logical_id"],
                condition=models.Q(is_current=True),
                name="fhir_resource_one_current",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.logical_id}/_history/{self.version_id}"

    @property
    def reference(self) -> str:
        """Return the relative reference ``Type/id``."""
        return f"{self.resource_type}/{self.logical_id}"


class SearchIndexEntry(models.Model):
    """One searchable value of a current resource version (token, reference or date)."""

    resource = models.ForeignKey(StoredResource, on_delete=models.CASCADE, related_name="search_entries")
    resource_type = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    system = models.CharField(max_length=255, blank=True)
    value = models.CharField(max_length=255, blank=True)
    date_start = models.DateTimeField(null=True)
    date_end = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            # Token and reference searches filter on (type, name, value) and then system.
            models.Index(fields=["resource_type", "name", "value", "system"], name="fhir_search_token"),
            models.Index(fields=["resource_type", "name", "date_start"], name="fhir_search_date"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}?{self.name}={self.system}|{self.value}"
