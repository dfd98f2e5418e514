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


class BulkExport(models.Model):
    """One system-level ``$export`` request (FHIR Bulk Data Access IG v2) and where it stands.

    The NDJSON files live on disk (``BULK_EXPORT_DIR/<id>/``), not here: a waveform Observation is
    ~230 kB, so a file of 10,000 is ~2 GB, which would bloat the database, its WAL and its backups.
    """

    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        IN_PROGRESS = "in-progress"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    # Only this client may poll the status and download the files (requiresAccessToken: true).
    client_id = models.CharField(max_length=128)
    request_url = models.TextField()  # the kick-off URL, echoed as the manifest's ``request``
    types = models.JSONField()  # resource types to export, in order
    since = models.DateTimeField(null=True)
    # The snapshot instant: each resource is exported as it stood then (manifest transactionTime).
    transaction_time = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACCEPTED)
    progress = models.CharField(max_length=200, blank=True)  # sent as X-Progress while running
    error = models.TextField(blank=True)  # why it failed (the status URL's OperationOutcome)
    # [{"type": "Observation", "file": "Observation-1.ndjson", "count": 10000}, ...]
    output = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)  # the running task's heartbeat
    expires_at = models.DateTimeField(null=True)  # set when finished; the sweep deletes it then

    def __str__(self) -> str:
        return f"$export {self.id} ({self.status})"
