from __future__ import annotations

from django.apps import AppConfig


class EcgConfig(AppConfig):
    name = "cds.ecg"
    label = "ecg"
