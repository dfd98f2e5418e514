"""The write-back outbox: one row per transaction Bundle owed to the EHR."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from cds.core.models import BaseModel


class OutboxMessage(BaseModel):
    """One transaction Bundle to deliver to the EHR's FHIR endpoint, with its delivery state.

    Legal transitions (made only in ``cds.writeback.services``):
    pending → sending (claimed by a worker) → delivered | failed;
    sending → pending (transient error: connection, timeout, 408/429/5xx; retried at
    ``next_attempt_at`` with backoff, or after the sweep finds the worker died mid-send);
    sending → failed (permanent error, or ``WRITEBACK_MAX_ATTEMPTS`` used up);
    failed → pending (an operator requeues it).
    A delivered message is never sent again.

    Messages with the same ``ordering_key`` (one ECG: its results, then each signature) are
    delivered in ``sequence`` order: a message is claimed only when every earlier one of its key
    is delivered, so a signature never reaches the EHR before the report it signs, nor an older
    signature after a newer amendment.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        DELIVERED = "delivered"
        FAILED = "failed"

    # The producer's idempotency key (e.g. ``analysis-job:42``): one message per key, ever.
    key = models.CharField(max_length=200, unique=True)
    bundle = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Summary of the EHR's answer: HTTP status, per-entry statuses and locations.
    response = models.JSONField(default=dict, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Delivery order within one ECG ("ecg:<recording pk>"); blank: no order (messages from before it).
    ordering_key = models.CharField(max_length=128, blank=True, default="")
    sequence = models.PositiveIntegerField(default=0)

    class Meta:
        # The sweep scans by status and due time; the index keeps that cheap as delivered rows pile up.
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="writeback_outbox_due")]
        constraints = [
            # One position per message in its ECG's queue; the unique index also serves the
            # "every earlier message delivered?" check of each claim.
            models.UniqueConstraint(
                fields=["ordering_key", "sequence"],
                condition=~models.Q(ordering_key=""),
                name="writeback_outbox_order_unique",
            )
        ]

    def __str__(self) -> str:
        return f"OutboxMessage {self.key} ({self.status})"

    @property
    def is_finished(self) -> bool:
        """Return True in a terminal state."""
        return self.status in {self.Status.DELIVERED, self.Status.FAILED}
