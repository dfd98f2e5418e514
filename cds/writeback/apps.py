from __future__ import annotations

from django.apps import AppConfig


class WritebackConfig(AppConfig):
    name = "cds.writeback"
    label = "writeback"
    verbose_name = "EHR write-back"
