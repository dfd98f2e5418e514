from __future__ import annotations

from django.apps import AppConfig


class HooksConfig(AppConfig):
    name = "cds.hooks"
    label = "hooks"
