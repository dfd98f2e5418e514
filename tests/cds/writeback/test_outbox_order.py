"""Ordered outbox: one ECG's messages reach the EHR in the order they were queued."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from cds.writeback.client import TransactionResponse, WritebackError
from cds.writeback.models import OutboxMessage
from cds.writeback.services import outbox_deliver, outbox_enqueue, outbox_message_requeue

pytestmark = pytest.mark.django_db

OK = TransactionResponse(status=200, entry_statuses=["201 Created"], locations=["DiagnosticReport/1/_history/1"])


def _bundle(label: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [], "id": label}


@pytest.fixture
def queue(writeback_settings: Any) -> Any:
    """Return a function queueing a message for an ECG (its delivery task captured, not run)."""
    writeback_settings.WRITEBACK_FHIR_BASE_URL = "http://ehr.invalid/fhir"

    def enqueue(key: str, ecg: str) -> OutboxMessage:
        with mock.patch("cds.writeback.services.enqueue", autospec=True):
            return outbox_enqueue(key=key, bundle=_bundle(key), ordering_key=f"ecg:{ecg}")

    return enqueue


def test_it_numbers_each_ecgs_messages_in_queue_order(queue: Any) -> None:
    created, signed, amended = (
        queue("analysis-job:1", "a"),
        queue("review-sign:1:1", "a"),
        queue("review-sign:1:2", "a"),
    )
    other = queue("analysis-job:2", "b")
    assert [m.sequence for m in (created, signed, amended, other)] == [1, 2, 3, 1]


def test_it_holds_a_signature_until_the_creation_bundle_is_delivered(queue: Any) -> None:
    created, signed = queue("analysis-job:1", "a"), queue("review-sign:1:1", "a")
    sent: list[str] = []

    def post(*, config: Any, bundle: dict[str, Any]) -> TransactionResponse:
        sent.append(bundle["id"])
        return OK

    with (
        mock.patch("cds.writeback.services.fhir_transaction_post", autospec=True, side_effect=post),
        mock.patch("cds.writeback.services.enqueue", autospec=True) as enqueue,
    ):
        assert outbox_deliver(message_id=signed.pk) is None  # its predecessor is still owed
        assert OutboxMessage.objects.get(pk=signed.pk).status == OutboxMessage.Status.PENDING
        assert outbox_deliver(message_id=created.pk).status == OutboxMessage.Status.DELIVERED
        # Delivering the head hands the turn to the next message of the same ECG.
        enqueue.assert_called_once_with("writeback.deliver", signed.pk, countdown=None)
        assert outbox_deliver(message_id=signed.pk).status == OutboxMessage.Status.DELIVERED
    assert sent == ["analysis-job:1", "review-sign:1:1"]


def test_it_never_lets_an_older_signature_overwrite_a_newer_amendment(queue: Any) -> None:
    """After an outage the sweep may wake the amendment first: it waits for the older signature."""
    queue("analysis-job:1", "a")
    first, amendment = queue("review-sign:1:1", "a"), queue("review-sign:1:2", "a")
    sent: list[str] = []

    def post(*, config: Any, bundle: dict[str, Any]) -> TransactionResponse:
        sent.append(bundle["id"])
        return OK

    with (
        mock.patch("cds.writeback.services.fhir_transaction_post", autospec=True, side_effect=post),
        mock.patch("cds.writeback.services.enqueue", autospec=True),
    ):
        for message_id in (amendment.pk, first.pk, *OutboxMessage.objects.order_by("pk").values_list("pk", flat=True)):
            outbox_deliver(message_id=message_id)
        outbox_deliver(message_id=amendment.pk)
    assert sent == ["analysis-job:1", "review-sign:1:1", "review-sign:1:2"]


def test_it_keeps_other_ecgs_flowing_while_one_ecg_waits(queue: Any) -> None:
    queue("analysis-job:1", "a")
    blocked = queue("review-sign:1:1", "a")
    independent = queue("analysis-job:2", "b")
    with (
        mock.patch("cds.writeback.services.fhir_transaction_post", autospec=True, return_value=OK),
        mock.patch("cds.writeback.services.enqueue", autospec=True),
    ):
        assert outbox_deliver(message_id=blocked.pk) is None
        assert outbox_deliver(message_id=independent.pk).status == OutboxMessage.Status.DELIVERED


def test_it_holds_the_rest_behind_a_failed_message_until_an_operator_requeues_it(queue: Any) -> None:
    created, signed = queue("analysis-job:1", "a"), queue("review-sign:1:1", "a")
    refused = WritebackError("HTTP 422: invalid", transient=False, status=422)
    with (
        mock.patch("cds.writeback.services.fhir_transaction_post", autospec=True, side_effect=refused),
        mock.patch("cds.writeback.services.enqueue", autospec=True),
    ):
        assert outbox_deliver(message_id=created.pk).status == OutboxMessage.Status.FAILED
        assert outbox_deliver(message_id=signed.pk) is None  # a signature of a report the EHR never got
    with (
        mock.patch("cds.writeback.services.fhir_transaction_post", autospec=True, return_value=OK),
        mock.patch("cds.writeback.services.enqueue", autospec=True),
    ):
        assert outbox_message_requeue(message_id=created.pk)
        assert outbox_deliver(message_id=created.pk).status == OutboxMessage.Status.DELIVERED
        assert outbox_deliver(message_id=signed.pk).status == OutboxMessage.Status.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_it_skips_a_message_another_worker_is_claiming_instead_of_waiting_for_it(writeback_settings: Any) -> None:
    import threading

    from django.db import connection, transaction

    from cds.writeback.services import outbox_claim

    with mock.patch("cds.writeback.services.enqueue", autospec=True):
        message = outbox_enqueue(key="analysis-job:locked", bundle=_bundle("locked"), ordering_key="ecg:z")
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                OutboxMessage.objects.select_for_update().get(pk=message.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        assert outbox_claim(message_id=message.pk) is None  # skipped at once, not blocked behind the lock
    finally:
        release.set()
        thread.join()
    claimed = outbox_claim(message_id=message.pk)
    assert claimed is not None and claimed.status == OutboxMessage.Status.SENDING
