from __future__ import annotations

from django.apps import AppConfig


class WritebackConfig(AppConfig):
    name = "cds.writeback"
    label = "writeback"
    verbose_name = "EHR write-back"

    def ready(self) -> None:
        from cds.writeback import checks, tasks  # noqa: F401  register the system checks and Celery tasks
