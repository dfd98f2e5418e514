from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "cds.core"
    label = "core"

    def ready(self) -> None:
        # Registers the cross-setting system checks (cds.E00x).
        from cds.core import checks  # noqa: F401, PLC0415 AppConfig.ready()
