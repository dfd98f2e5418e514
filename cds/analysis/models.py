"""Analysis jobs: one per accepted ECG, run by a Celery worker."""

from __future__ import annotations

from django.db import models

from cds.core.models import BaseModel
from cds.ecg.models import EcgRecording


class AnalysisJob(BaseModel):
    """The analysis of one ECG.

    Legal transitions (made only in ``cds.analysis.services``):
    pending → running → succeeded | failed; running → pending (transient error, retried);
    pending → cancelled.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    recording = models.ForeignKey(EcgRecording, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    model_name = models.CharField(max_length=64, blank=True)
    model_version = models.CharField(max_length=64, blank=True)
    triton_model_version = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="analysis_job_status")]

    def __str__(self) -> str:
        return f"AnalysisJob {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        """Return True in a terminal state."""
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}
