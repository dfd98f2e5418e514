from __future__ import annotations

from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "cds.analysis"
    label = "analysis"

    def ready(self) -> None:
        # Register the Celery tasks (cds.core.dispatch finds tasks by name, in the web process too).
        from cds.analysis import tasks  # noqa: F401, PLC0415 AppConfig.ready()
