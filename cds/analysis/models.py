"""Analysis jobs: one per accepted ECG, run by a Celery worker."""

from __future__ import annotations

import uuid

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
    # Candidates run in shadow on this job's ECG after it succeeded (cds.pipeline.shadow):
    # {candidate version: {"status", "attempts", "error", "ms"}}. Never part of the served result.
    shadow = models.JSONField(default=dict, blank=True)
    # The identity of everything written for this job (EHR identifiers, Provenance id): generated
    # once and stored, never derived from the row id, which a pg_restore or a second installation
    # would hand out again.
    writeback_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="analysis_job_status")]

    def __str__(self) -> str:
        return f"AnalysisJob {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        """Return True in a terminal state."""
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


class Prediction(BaseModel):
    """One model version's output for one ECG, with what it was computed from (provenance).

    Predictions are never edited: a re-analysis with another model version adds a row.
    """

    job = models.ForeignKey(AnalysisJob, on_delete=models.PROTECT, related_name="predictions")
    recording = models.ForeignKey(EcgRecording, on_delete=models.PROTECT, related_name="predictions")
    model_name = models.CharField(max_length=64)
    model_version = models.CharField(max_length=64)
    server_model_version = models.CharField(max_length=64, blank=True)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    flagged = models.BooleanField(default=False)
    probabilities = models.JSONField(default=dict, blank=True)
    per_lead_scores = models.JSONField(default=dict, blank=True)
    intervals = models.JSONField(default=list, blank=True)
    # Anomaly map downsampled to ``map_rate_hz``, float16 (leads, samples) in ``map_leads`` order.
    anomaly_map = models.BinaryField(blank=True, default=b"")
    map_rate_hz = models.FloatField(null=True, blank=True)
    map_leads = models.JSONField(default=list, blank=True)
    report_text = models.TextField(blank=True)
    # Active learning (foundation model): the re-annotation value, how much a clinician's label would
    # help, in [0, 1]. Not clinical urgency (that is ``urgency`` of the interpretation row).
    review_priority = models.FloatField(null=True, blank=True)
    # The rule-based interpretation (model_name INTERPRETATION_NAME): EcgMeasurements.to_json(),
    # [Finding.to_json()], the one verdict and urgency; ``report_text`` holds the grounded report
    # and ``report_details`` what it was checked against (disagreements, the decoder's raw text and
    # the decoder statements removed from it).
    measurements = models.JSONField(default=dict, blank=True)
    findings = models.JSONField(default=list, blank=True)
    verdict = models.CharField(max_length=32, blank=True)
    urgency = models.CharField(max_length=16, blank=True)
    report_details = models.JSONField(default=dict, blank=True)
    quality = models.JSONField(default=list, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # Inputs' provenance: the waveform fingerprint and lead set the models saw.
    input_provenance = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "model_name", "model_version"], name="prediction_one_per_model_version"
            )
        ]
        indexes = [models.Index(fields=["model_name", "model_version", "created_at"], name="prediction_model_time")]

    def __str__(self) -> str:
        return f"{self.model_name}@{self.model_version} for job {self.job_id}"


class ResultResource(models.Model):
    """Links a job to each FHIR resource written for it (our store), for idempotent re-runs."""

    job = models.ForeignKey(AnalysisJob, on_delete=models.PROTECT, related_name="result_resources")
    resource = models.OneToOneField("fhir.StoredResource", on_delete=models.PROTECT, related_name="analysis_link")
    role = models.CharField(max_length=32)

    def __str__(self) -> str:
        return f"{self.role} of job {self.job_id}"
