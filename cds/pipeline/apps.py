from __future__ import annotations

from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "cds.pipeline"
    label = "pipeline"

    def ready(self) -> None:
        # Register the Celery tasks (cds.core.dispatch finds tasks by name, in the web process too).
        from cds.pipeline import tasks  # noqa: F401, PLC0415 AppConfig.ready()
