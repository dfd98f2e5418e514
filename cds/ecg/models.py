"""Patients and ECG recordings derived from the FHIR resources we receive."""

from __future__ import annotations

import numpy as np
from django.db import models

from cds.core.models import BaseModel, Organization
from cds.fhir.models import StoredResource


class Patient(BaseModel):
    """Demographics the models need, extracted from a FHIR Patient."""

    resource = models.OneToOneField(StoredResource, on_delete=models.PROTECT, related_name="patient")
    logical_id = models.CharField(max_length=64, unique=True)
    # Copied from the resource: the worklists and hooks filter patients and ECGs on it.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    gender = models.CharField(max_length=16, blank=True)
    # FHIR dates may be partial (YYYY or YYYY-MM); kept as sent, ranges derived when needed.
    birth_date = models.CharField(max_length=10, blank=True)

    def __str__(self) -> str:
        return f"Patient/{self.logical_id}"


class EcgRecording(BaseModel):
    """A decoded ECG waveform, stored once as little-endian float32 microvolts ``(leads, samples)``.

    The exact source Observation is kept in ``resource.content`` for audit; analysis reads only
    ``samples``.
    """

    resource = models.OneToOneField(StoredResource, on_delete=models.PROTECT, related_name="ecg")
    logical_id = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="ecgs")
    effective_at = models.DateTimeField(null=True, blank=True)
    sample_rate_hz = models.FloatField()
    leads = models.JSONField()
    n_samples = models.PositiveIntegerField()
    units = models.CharField(max_length=8, default="uV")
    samples = models.BinaryField()
    # Age at the ECG as a range, because birthDate may be partial; equal bounds for a full date.
    age_min_years = models.FloatField(null=True, blank=True)
    age_max_years = models.FloatField(null=True, blank=True)
    sex = models.CharField(max_length=16, blank=True)
    quality = models.JSONField(default=dict, blank=True)
    # Fingerprint of the stored samples: provenance for every prediction made from them.
    waveform_sha256 = models.CharField(max_length=64)
    received_from = models.CharField(max_length=128, blank=True)

    def __str__(self) -> str:
        return f"ECG Observation/{self.logical_id}"

    def waveform(self) -> np.ndarray:
        """Return the samples as float32 ``(leads, samples)`` in microvolts."""
        return np.frombuffer(bytes(self.samples), dtype="<f4").reshape(len(self.leads), self.n_samples)
