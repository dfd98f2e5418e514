from __future__ import annotations

from django.apps import AppConfig


class WritebackConfig(AppConfig):
    name = "cds.writeback"
    label = "writeback"
    verbose_name = "EHR write-back"

    def ready(self) -> None:
        # Register the system checks and the Celery tasks (cds.core.dispatch finds tasks by name, in the web process too).
        from cds.writeback import checks, tasks  # noqa: F401, PLC0415 AppConfig.ready()
