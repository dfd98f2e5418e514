"""Celery signal handlers (issue 16), connected in ``cds.celery``: ids across web → worker, task metrics.

- publish: a task enqueued while a request (or another task) runs carries its ``request_id`` in
  the message headers;
- run: the worker binds that ``request_id``, the task id and name, and the task's ``log_id``
  (``job_id``, ``message_id``) to every log line of the task, and counts and times the task;
- worker start: the main process serves the workers' metrics on ``WORKER_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextvars import Token
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.multiprocess import mark_process_dead

from cds.core.logging import log_context_bind, log_context_get, log_context_reset
from cds.core.metrics import CELERY_TASK_SECONDS, CELERY_TASKS, multiprocess_dir, process_registry

logger = logging.getLogger(__name__)

# task id -> (log context token, start time); a worker process runs one task at a time per thread.
_RUNNING: dict[str, tuple[Token[Mapping[str, str]], float]] = {}


def on_before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Copy the current request id into the outgoing task's headers."""
    request_id = log_context_get().get("request_id")
    if headers is not None and request_id and "request_id" not in headers:
        headers["request_id"] = request_id


def on_task_prerun(task_id: str = "", task: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """Bind the task's ids to its log lines (Celery's own included) and start its clock.

    A task names the id its first argument is with the option ``log_id`` (e.g. ``job_id``).
    """
    request_id = getattr(task.request, "request_id", None) if task is not None else None
    ids: dict[str, object] = {}
    log_id = getattr(task, "log_id", None)
    if log_id:
        ids[log_id] = args[0] if args else (kwargs or {}).get(log_id)
    token = log_context_bind(request_id=request_id, task_id=task_id, task=getattr(task, "name", None), **ids)
    _RUNNING[task_id] = (token, time.perf_counter())


def on_task_postrun(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    """Count and time the task by name and final state; unbind its ids."""
    token, started = _RUNNING.pop(task_id, (None, None))
    name = getattr(task, "name", "unknown")
    CELERY_TASKS.labels(name, state or "UNKNOWN").inc()
    if started is not None:
        CELERY_TASK_SECONDS.labels(name).observe(time.perf_counter() - started)
    if token is not None:
        log_context_reset(token)


def start_worker_metrics_server(port: int) -> None:
    """Serve this worker's metrics (all its pool processes' when multiprocess) on ``port``."""
    if port <= 0:
        return
    if multiprocess_dir() is None:
        logger.warning(
            "WORKER_METRICS_PORT=%s without PROMETHEUS_MULTIPROC_DIR: only the main process's metrics are served", port
        )
    start_http_server(port, registry=process_registry())
    logger.info("worker metrics on :%s/metrics", port)


def on_worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    """Drop a finished pool process's live gauges (multiprocess mode keeps its counters)."""
    if multiprocess_dir() is not None and pid is not None:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]
