from __future__ import annotations

from django.apps import AppConfig


class SmartConfig(AppConfig):
    name = "cds.smart"
    label = "smart"
    verbose_name = "SMART App Launch"
