"""Prometheus metrics (issue 16): the event metrics web and workers update, and the text /metrics serves.

Two kinds, all named ``cds_*``:

- event metrics (counters and histograms below, and ``inference.metrics`` for the Triton calls),
  updated where the event happens. Gunicorn and Celery fork workers, so with
  ``PROMETHEUS_MULTIPROC_DIR`` set (one empty directory per web or worker deployment) every child
  writes its values there and ``process_exposition`` adds them up; without it a process reports
  only its own (fine for one process, wrong for several);
- state read from the database at scrape time (jobs by status, the outbox, flag rates): collectors
  named in ``settings.METRICS_COLLECTORS`` (``cds.pipeline.metrics``), the same from any process.

Labels are bounded sets (status, stage, model, task name, route pattern): never ids or patient data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# Latency buckets from 5 ms to 5 min: FHIR requests take tens of ms, analysis stages up to seconds,
# a job waiting out a Triton outage minutes.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUEST_SECONDS = Histogram(
    "cds_http_request_seconds",
    "Web requests by method, route pattern and status class",
    ["method", "route", "status"],
    buckets=_BUCKETS,
)
ANALYSIS_JOBS_FINISHED = Counter(
    "cds_analysis_jobs_finished_total", "Analysis jobs a worker finished, by final status", ["status"]
)
ANALYSIS_STAGE_SECONDS = Histogram(
    "cds_analysis_job_stage_seconds",
    "Time per stage of a succeeded analysis job (load, preprocess, triton, postprocess, store, ...)",
    ["stage"],
    buckets=_BUCKETS,
)
ANALYSIS_RETRIES = Counter(
    "cds_analysis_job_retries_total", "Analysis job retries scheduled after a transient error", ["reason"]
)
SHADOW_RUNS = Counter(
    "cds_shadow_runs_total",
    "Shadow candidate runs on analysed ECGs, by outcome (succeeded, retrying, failed, not_enqueued) and reason",
    ["outcome", "reason"],
)
CELERY_TASKS = Counter(
    "cds_celery_tasks_total", "Celery tasks run by a worker, by task name and outcome", ["task", "state"]
)
CELERY_TASK_SECONDS = Histogram(
    "cds_celery_task_seconds", "Run time of Celery tasks by task name", ["task"], buckets=_BUCKETS
)


def multiprocess_dir() -> str | None:
    """Return ``PROMETHEUS_MULTIPROC_DIR`` when set (prometheus_client reads it at import time too)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_registry() -> CollectorRegistry:
    """Return the registry of this deployment's event metrics: all its processes' when multiprocess."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def metrics_exposition(collectors: Iterable[Collector] = ()) -> bytes:
    """Return the Prometheus text of the event metrics followed by ``collectors``' (scrape-time) ones."""
    state = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        state.register(collector)
    return generate_latest(process_registry()) + generate_latest(state)
