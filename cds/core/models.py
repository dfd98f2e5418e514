"""Abstract base model shared by the apps."""

from __future__ import annotations

from django.db import models


class BaseModel(models.Model):
    """Add creation and update timestamps."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Organization(BaseModel):
    """A tenant: the hospital (or group) whose API clients, patients, ECGs and care teams belong together.

    Every stored FHIR resource, Patient and ECG carries one, and every read is filtered by the
    caller's: another organisation's data is "not found" (docs/security.md, "Organisations").
    """

    slug = models.SlugField(max_length=64, unique=True, help_text="Short stable name, e.g. 'st-marys'.")
    name = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.slug


# The organisation the 0001 migration creates for data and clients that predate organisations.
DEFAULT_ORGANIZATION_SLUG = "default"
