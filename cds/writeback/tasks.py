"""Celery tasks: thin, idempotent wrappers around the write-back services (docs/style.md G5)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from cds.writeback.services import outbox_deliver, outbox_message_fail, outbox_sweep

logger = logging.getLogger(__name__)


class OutboxTask(Task):
    """Mark the message failed once Celery gives up on it, so no write-back is silently dropped."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        message_id = args[0] if args else kwargs.get("message_id")
        outbox_message_fail(message_id=message_id, error=f"{type(exc).__name__}: {exc}")


# EHR errors are retried by the outbox itself (state and backoff live on the row); Celery retries
# only a database blip around the claim or the recording of the outcome.
@shared_task(
    bind=True,
    base=OutboxTask,
    acks_late=True,
    name="writeback.deliver",
    log_id="message_id",  # every log line of the delivery names the outbox message (cds.core.task_context)
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)  # type: ignore[misc]
def outbox_message_deliver(self: Task, message_id: int) -> str | None:
    """Deliver outbox message ``message_id``; safe to run twice (the claim lets only one through)."""
    try:
        message = outbox_deliver(message_id=message_id)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        # Worker boundary: log with the traceback and re-raise so on_failure records the reason.
        logger.error("write-back message %s crashed", message_id, exc_info=True)
        raise
    return message.status if message else None


@shared_task(name="writeback.sweep")  # type: ignore[misc]
def outbox_message_sweep() -> dict[str, int]:
    """Periodic (beat): re-enqueue lost deliveries and recover messages whose worker died."""
    return outbox_sweep()
