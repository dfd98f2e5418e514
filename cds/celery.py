"""Celery application; configuration comes from Django settings prefixed ``CELERY_``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from cds.core import task_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")

app = Celery("cds")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Operations (issue 16): request ids web → worker in the task headers, per-task log context and
# metrics, and the worker's own metrics endpoint (cds/core/task_context.py).
signals.before_task_publish.connect(task_context.on_before_task_publish, weak=False)
signals.task_prerun.connect(task_context.on_task_prerun, weak=False)
signals.task_postrun.connect(task_context.on_task_postrun, weak=False)
signals.worker_process_shutdown.connect(task_context.on_worker_process_shutdown, weak=False)


@signals.worker_init.connect(weak=False)  # type: ignore[misc]
def _serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    from django.conf import settings  # noqa: PLC0415 settings are configured once the worker starts

    from cds.core.tracing import tracing_setup  # noqa: PLC0415 reads settings

    task_context.start_worker_metrics_server(settings.WORKER_METRICS_PORT)
    # The solo and thread pools run tasks in this process; prefork children set up their own.
    if "prefork" not in str(getattr(sender, "pool_cls", "")):
        tracing_setup(service="worker", django=False)


@signals.worker_process_init.connect(weak=False)  # type: ignore[misc]
def _trace_pool_process(**_: Any) -> None:
    from cds.core.tracing import tracing_setup  # noqa: PLC0415 reads settings

    tracing_setup(service="worker", django=False)


@signals.worker_process_shutdown.connect(weak=False)  # type: ignore[misc]
def _flush_traces(**_: Any) -> None:
    from cds.core.tracing import tracing_flush  # noqa: PLC0415 reads settings

    tracing_flush()
