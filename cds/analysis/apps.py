from __future__ import annotations

from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "cds.analysis"
    label = "analysis"

    def ready(self) -> None:
        from cds.analysis import tasks  # noqa: F401  register the Celery tasks for cds.core.dispatch
