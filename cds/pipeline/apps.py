from __future__ import annotations

from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "cds.pipeline"
    label = "pipeline"

    def ready(self) -> None:
        from cds.pipeline import tasks  # noqa: F401  register the Celery tasks for cds.core.dispatch
