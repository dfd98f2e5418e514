"""Scrape-time state for ``/metrics`` (issue 16): analysis jobs, queues, the write-back outbox, flag rates.

Read from the database (and the broker) on every scrape, so every web process answers the same and
nothing is lost when a worker restarts. Each query is one GROUP BY over an indexed column; the flag
rate reads only the last ``METRICS_FLAG_RATE_WINDOW_S`` of predictions (``created_at`` is indexed).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cds.analysis.models import AnalysisJob, Prediction
from cds.writeback.models import OutboxMessage

logger = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Analysis jobs by status, the oldest waiting job, the outbox by status and its oldest, flag rates."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        jobs = GaugeMetricFamily("cds_analysis_jobs", "Analysis jobs by status", labels=["status"])
        counts = dict(AnalysisJob.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in AnalysisJob.Status.values:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs

        oldest = AnalysisJob.objects.filter(status=AnalysisJob.Status.PENDING).aggregate(t=Min("created_at"))["t"]
        yield GaugeMetricFamily(
            "cds_analysis_oldest_pending_seconds",
            "Age of the oldest analysis job still waiting for a worker (0 when none waits)",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )

        outbox = GaugeMetricFamily("cds_outbox_messages", "EHR write-back outbox messages by status", labels=["status"])
        outbox_age = GaugeMetricFamily(
            "cds_outbox_oldest_seconds",
            "Age of the oldest outbox message in each undelivered status (pending, sending, failed)",
            labels=["status"],
        )
        rows = OutboxMessage.objects.values("status").annotate(n=Count("id"), oldest=Min("created_at"))
        by_status = {row["status"]: row for row in rows}
        for status in OutboxMessage.Status.values:
            row = by_status.get(status)
            outbox.add_metric([status], row["n"] if row else 0)
            if status != OutboxMessage.Status.DELIVERED:
                outbox_age.add_metric([status], (now - row["oldest"]).total_seconds() if row else 0.0)
        yield outbox
        yield outbox_age

        window = settings.METRICS_FLAG_RATE_WINDOW_S
        recent = (
            Prediction.objects.filter(created_at__gte=now - timedelta(seconds=window))
            .values("model_name", "model_version")
            .annotate(n=Count("id"), flagged=Count("id", filter=Q(flagged=True)))
        )
        rate = GaugeMetricFamily(
            "cds_prediction_flag_rate",
            f"Share of predictions flagged in the last {window} s, per model and version (drift watch)",
            labels=["model", "model_version"],
        )
        total = GaugeMetricFamily(
            "cds_predictions_recent",
            f"Predictions stored in the last {window} s, per model and version",
            labels=["model", "model_version"],
        )
        for row in recent:
            labels = [row["model_name"], row["model_version"]]
            rate.add_metric(labels, row["flagged"] / row["n"])
            total.add_metric(labels, row["n"])
        yield rate
        yield total


class BrokerCollector(Collector):
    """Messages waiting in each Celery queue (analysis, write-back, maintenance), read from the broker."""

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("cds_queue_depth", "Messages ready in each Celery queue", labels=["queue"])
        up = GaugeMetricFamily("cds_broker_up", "1 when the broker answered this scrape's queue-depth query")
        queues = sorted(
            {settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_WRITEBACK_QUEUE, settings.CELERY_MAINTENANCE_QUEUE}
        )
        try:
            with current_app.connection_for_read(settings.CELERY_BROKER_URL) as connection:
                connection.ensure_connection(max_retries=1, timeout=settings.METRICS_BROKER_TIMEOUT_S)
                for queue in queues:
                    channel = connection.channel()
                    try:
                        # Passive: count without creating; a queue nobody declared yet has no messages.
                        depth.add_metric([queue], channel.queue_declare(queue=queue, passive=True).message_count)
                    except Exception:  # noqa: BLE001 - the broker's "no such queue" differs per transport
                        depth.add_metric([queue], 0)
                    finally:
                        with contextlib.suppress(Exception):  # RabbitMQ already closed it on "no such queue"
                            channel.close()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the broker is down
            logger.warning("queue depth unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield depth
