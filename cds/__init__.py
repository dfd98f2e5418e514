"""ECG clinical decision support service (Django project)."""

from __future__ import annotations

from cds.celery import app as celery_app

__all__ = ["celery_app"]
