"""Write-back outbox state transitions (the only place that changes ``OutboxMessage.status``).

Delivery is at-least-once: a worker that dies after the EHR committed but before we recorded it
leaves the message ``sending``, and the sweep sends it again. The Bundle makes that harmless
(``ifNoneExist`` on every identified resource, a PUT with a deterministic id for Provenance), and a
message recorded ``delivered`` is never sent again.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from cds.core.dispatch import enqueue
from cds.core.exceptions import ApplicationError
from cds.writeback.client import WritebackConfig, WritebackError, fhir_transaction_post
from cds.writeback.models import OutboxMessage

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


# The Celery task that delivers a message (cds/writeback/tasks.py); enqueued by name (cds.core.dispatch).
OUTBOX_DELIVER_TASK = "writeback.deliver"


def _schedule(message_id: int, *, countdown: float | None = None) -> None:
    enqueue(OUTBOX_DELIVER_TASK, message_id, countdown=countdown)


def _next_sequence(ordering_key: str) -> int:
    """Return the next position in ``ordering_key``'s queue, serialized per key until commit."""
    if not ordering_key:
        return 0
    if connection.vendor == "postgresql":
        # Two producers of one ECG (analysis, a signature) must not take the same number.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"outbox:{ordering_key}"])
    last = OutboxMessage.objects.filter(ordering_key=ordering_key).aggregate(last=Max("sequence"))["last"]
    return (last or 0) + 1


@transaction.atomic
def outbox_enqueue(*, key: str, bundle: dict[str, Any], ordering_key: str = "") -> OutboxMessage:
    """Queue ``bundle`` for delivery under ``key`` and enqueue the delivery once the caller commits.

    Idempotent on ``key``: a second call with the same key returns the existing message and changes
    nothing (not its Bundle, not its state), so a redelivered producer cannot cause a second write.
    Messages sharing an ``ordering_key`` (one ECG's: ``ecg:<recording pk>``) are delivered in the
    order they were queued. Raises ApplicationError when ``bundle`` is not a transaction Bundle.
    """
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise ApplicationError("the write-back outbox only carries transaction Bundles", {"key": key})
    existing = OutboxMessage.objects.filter(key=key).first()
    if existing is not None:
        return existing
    message = OutboxMessage(
        key=key,
        bundle=bundle,
        next_attempt_at=timezone.now(),
        ordering_key=ordering_key,
        sequence=_next_sequence(ordering_key),
    )
    message.full_clean(validate_unique=False)
    try:
        # Savepoint: a concurrent enqueue of the same key loses on the unique constraint here
        # without aborting the caller's transaction.
        with transaction.atomic():
            message.save()
    except IntegrityError:
        return OutboxMessage.objects.get(key=key)
    # After commit: the worker must see the row, and a rolled-back analysis must queue nothing.
    # Robust: a broker outage must not turn the committed analysis into an error; the sweep
    # re-enqueues pending messages from the table.
    transaction.on_commit(lambda: _schedule(message.pk), robust=True)
    return message


def _waiting_for(message: OutboxMessage) -> bool:
    """Return True while an earlier message of the same ECG is not delivered yet."""
    if not message.ordering_key:
        return False
    earlier = OutboxMessage.objects.filter(ordering_key=message.ordering_key, sequence__lt=message.sequence)
    return earlier.exclude(status=OutboxMessage.Status.DELIVERED).exists()


@transaction.atomic
def outbox_claim(*, message_id: int) -> OutboxMessage | None:
    """Move a due pending message to sending; return None when it is gone, not due, taken or must wait.

    ``SELECT ... FOR UPDATE SKIP LOCKED`` on the row: a second worker skips a message being claimed
    instead of queueing behind it. The message must be the oldest undelivered one of its ECG; a
    waiting message stays pending and is handed the turn when its predecessor is delivered. The
    lock lasts only this short transaction, never the HTTP call.
    """
    now = timezone.now()
    message = (
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(pk=message_id, status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now)
        .first()
    )
    if message is None:
        return None
    if _waiting_for(message):
        logger.info("write-back message %s waits for an earlier message of %s", message.pk, message.ordering_key)
        return None
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=OutboxMessage.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1, updated_at=now
    )
    message.refresh_from_db()
    return message


def _hand_on(message: OutboxMessage) -> None:
    """Enqueue the next pending message of a delivered message's ECG (it waited for this one)."""
    if not message.ordering_key:
        return
    following = (
        OutboxMessage.objects.filter(
            ordering_key=message.ordering_key, sequence__gt=message.sequence, status=OutboxMessage.Status.PENDING
        )
        .order_by("sequence")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        _schedule(following)


def outbox_backoff_s(*, attempts: int) -> float:
    """Return the delay before attempt ``attempts + 1``: exponential, capped, with jitter.

    Equal jitter (half fixed, half random) keeps a minimum spacing while spreading the retries of
    many messages that failed together (an EHR outage) so they do not return as one burst.
    """
    base = float(settings.WRITEBACK_BACKOFF_BASE_S)
    ceiling = min(float(settings.WRITEBACK_BACKOFF_MAX_S), base * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not cryptography


def outbox_deliver(*, message_id: int) -> OutboxMessage | None:
    """Send one message to the EHR and record the outcome.

    1. Claim it (pending and due → sending); return None when it is not claimable or write-back
       is disabled.
    2. POST the Bundle, outside any transaction: the claim is already committed, so no row lock or
       open transaction waits on the EHR.
    3. Record: delivered (with the response summary); a transient error → pending again at
       ``next_attempt_at`` (backoff, or the server's Retry-After if longer) and re-enqueued, or
       failed once ``WRITEBACK_MAX_ATTEMPTS`` are used; a permanent error → failed with the
       server's diagnostics.
    """
    if not settings.WRITEBACK_ENABLED:
        # Switched off after it was queued: keep it pending for when write-back is back on.
        logger.warning("write-back disabled; message %s stays pending", message_id)
        return None
    message = outbox_claim(message_id=message_id)
    if message is None:
        logger.info("write-back message %s not claimable; skipping", message_id)
        return None
    try:
        response = fhir_transaction_post(config=WritebackConfig.from_settings(), bundle=message.bundle)
    except WritebackError as exc:
        _record_error(message, exc)
    else:
        # Delivered is the truth even if the sweep reset the row meanwhile: never send it again.
        OutboxMessage.objects.filter(pk=message.pk).exclude(status=OutboxMessage.Status.DELIVERED).update(
            status=OutboxMessage.Status.DELIVERED,
            response=response.summary(),
            delivered_at=timezone.now(),
            last_error="",
            updated_at=timezone.now(),
        )
        _hand_on(message)
    message.refresh_from_db()
    return message


def _record_error(message: OutboxMessage, exc: WritebackError) -> None:
    now = timezone.now()
    error = str(exc)[:MAX_ERROR_CHARS]
    response = {"status": exc.status} if exc.status is not None else {}
    # Conditional on our claim: if the sweep took the message back meanwhile, its new owner records.
    mine = OutboxMessage.objects.filter(
        pk=message.pk, status=OutboxMessage.Status.SENDING, claimed_at=message.claimed_at
    )
    if not exc.transient:
        mine.update(status=OutboxMessage.Status.FAILED, last_error=error, response=response, updated_at=now)
        logger.error("write-back message %s failed permanently: %s", message.key, error)
        return
    if message.attempts >= settings.WRITEBACK_MAX_ATTEMPTS:
        error = f"gave up after {message.attempts} attempts; last error: {error}"[:MAX_ERROR_CHARS]
        mine.update(status=OutboxMessage.Status.FAILED, last_error=error, response=response, updated_at=now)
        logger.error("write-back message %s failed: %s", message.key, error)
        return
    delay = max(outbox_backoff_s(attempts=message.attempts), exc.retry_after_s or 0.0)
    if mine.update(
        status=OutboxMessage.Status.PENDING,
        next_attempt_at=now + timedelta(seconds=delay),
        last_error=error,
        response=response,
        updated_at=now,
    ):
        logger.warning("write-back message %s: %s; retry %d in %.1f s", message.key, error, message.attempts, delay)
        # A short wait rides on a delayed message; a long one is the sweep's (it enqueues what is due):
        # a worker holds a delayed message unacknowledged, and RabbitMQ drops a consumer that holds
        # one past its consumer timeout (30 min by default).
        if delay <= settings.WRITEBACK_COUNTDOWN_MAX_S:
            _schedule(message.pk, countdown=delay)


def outbox_message_fail(*, message_id: int, error: str) -> None:
    """Mark a message failed with its reason (the task crashed or Celery gave up on it)."""
    OutboxMessage.objects.filter(pk=message_id).exclude(status=OutboxMessage.Status.DELIVERED).update(
        status=OutboxMessage.Status.FAILED, last_error=error[:MAX_ERROR_CHARS], updated_at=timezone.now()
    )


def outbox_message_requeue(*, message_id: int) -> bool:
    """Give a failed message a fresh set of attempts (an operator fixed the cause); return True if it was failed."""
    requeued = OutboxMessage.objects.filter(pk=message_id, status=OutboxMessage.Status.FAILED).update(
        status=OutboxMessage.Status.PENDING, attempts=0, next_attempt_at=timezone.now(), updated_at=timezone.now()
    )
    if requeued:
        transaction.on_commit(lambda: _schedule(message_id))
    return bool(requeued)


def outbox_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-enqueue messages whose task was lost and recover messages whose worker died mid-send.

    1. Pending messages due for longer than one sweep interval are enqueued again (their delivery
       task was lost; the claim makes a duplicate harmless), and so are due retries whose backoff
       was too long for a delayed message (``WRITEBACK_COUNTDOWN_MAX_S``).
    2. Sending messages claimed more than ``WRITEBACK_SENDING_TIMEOUT_S`` ago go back to pending
       and are enqueued, or fail once they used ``WRITEBACK_MAX_ATTEMPTS``.
    Returns counts per action (all zero while write-back is disabled).
    """
    now = now or timezone.now()
    counts = {"requeued_pending": 0, "recovered_sending": 0, "failed": 0}
    if not settings.WRITEBACK_ENABLED:
        return counts
    grace = timedelta(seconds=settings.WRITEBACK_SWEEP_INTERVAL_S)
    # Due messages whose task was lost (due for over a sweep interval), and due retries whose wait was
    # too long for a delayed message (scheduled more than WRITEBACK_COUNTDOWN_MAX_S after the failure).
    left_to_sweep = Q(next_attempt_at__gt=F("updated_at") + timedelta(seconds=settings.WRITEBACK_COUNTDOWN_MAX_S))
    due = OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now).filter(
        Q(next_attempt_at__lt=now - grace) | left_to_sweep
    )
    for message_id in list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:500]):
        _schedule(message_id)
        counts["requeued_pending"] += 1
    stuck = OutboxMessage.objects.filter(
        status=OutboxMessage.Status.SENDING,
        claimed_at__lt=now - timedelta(seconds=settings.WRITEBACK_SENDING_TIMEOUT_S),
    )
    for message in list(stuck[:500]):
        # Conditional on the claim we saw: a worker that finishes meanwhile keeps its outcome.
        still_stuck = OutboxMessage.objects.filter(
            pk=message.pk, status=OutboxMessage.Status.SENDING, claimed_at=message.claimed_at
        )
        if message.attempts >= settings.WRITEBACK_MAX_ATTEMPTS:
            if still_stuck.update(
                status=OutboxMessage.Status.FAILED,
                last_error=f"worker lost the message during attempt {message.attempts}; giving up",
                updated_at=now,
            ):
                counts["failed"] += 1
            continue
        if still_stuck.update(status=OutboxMessage.Status.PENDING, next_attempt_at=now, updated_at=now):
            _schedule(message.pk)
            counts["recovered_sending"] += 1
    if any(counts.values()):
        logger.warning("write-back sweep: %s", counts)
    return counts
