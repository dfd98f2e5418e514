"""An EHR that fails (500s, slow answers, refused connections): retried with backoff, then visibly failed.

The failing EHR is a loopback HTTP server in this process; once it "recovers" it relays to sekmet,
so a delivery after an outage is checked on a real R4 server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.utils import timezone

from cds.writeback.client import WritebackConfig, WritebackError, fhir_transaction_post
from cds.writeback.models import OutboxMessage
from cds.writeback.services import outbox_deliver, outbox_enqueue, outbox_sweep
from cds.writeback.tasks import outbox_message_deliver
from tests.cds.writeback.conftest import Loopback, Reply, Request, Sekmet, forward, free_port, outcome
from tests.cds.writeback.helpers import identifier, result_bundle

pytestmark = pytest.mark.django_db


@pytest.fixture
def retries() -> Iterator[mock.MagicMock]:
    """Capture the re-enqueue of a message scheduled for a retry (the service's countdown)."""
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.apply_async", autospec=True) as apply_async:
        yield apply_async


def enqueue() -> tuple[str, OutboxMessage]:
    job_key, bundle = result_bundle()
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True):
        return job_key, outbox_enqueue(key=f"test:{job_key}", bundle=bundle)


def deliver_when_due(message: OutboxMessage) -> OutboxMessage:
    """Run the delivery at the message's ``next_attempt_at`` (time travel instead of waiting)."""
    due: datetime = OutboxMessage.objects.get(pk=message.pk).next_attempt_at
    with time_machine.travel(due + timedelta(milliseconds=10), tick=True):
        delivered = outbox_deliver(message_id=message.pk)
    assert delivered is not None
    return delivered


def scripted(replies: list[Reply], then: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
    """Answer with ``replies`` in order, then with ``then`` for every later request."""
    queue = list(replies)
    return lambda request: queue.pop(0) if queue else then(request)


def assert_backoff(message: OutboxMessage, *, ceiling_s: float, since: datetime) -> None:
    delay = (message.next_attempt_at - since).total_seconds()
    assert ceiling_s / 2 - 0.5 <= delay <= ceiling_s + 0.5, delay


def test_it_retries_a_500_with_exponential_backoff_then_fails_with_the_reason(
    writeback_settings: Any, loopback: Callable[..., Loopback], retries: mock.MagicMock
) -> None:
    down = outcome("exception", "database is restarting")
    ehr = loopback(lambda request: Reply(500, down))
    writeback_settings.WRITEBACK_FHIR_BASE_URL = ehr.url
    _, message = enqueue()

    before = timezone.now()
    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.PENDING and message.attempts == 1
    assert message.last_error == "HTTP 500: error exception: database is restarting"
    assert_backoff(message, ceiling_s=10, since=before)  # base 10 s, equal jitter: 5-10 s
    countdown = retries.call_args.kwargs["countdown"]
    retries.assert_called_once_with((message.pk,), countdown=countdown)
    assert abs(timezone.now() + timedelta(seconds=countdown) - message.next_attempt_at) < timedelta(seconds=1)

    second_try = message.next_attempt_at
    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.PENDING and message.attempts == 2
    assert_backoff(message, ceiling_s=20, since=second_try)  # doubled: 10-20 s

    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.FAILED and message.attempts == 3
    assert (
        message.last_error == "gave up after 3 attempts; last error: HTTP 500: error exception: database is restarting"
    )
    assert message.response == {"status": 500}
    assert len(ehr.requests) == 3 and retries.call_count == 2


def test_it_does_not_send_before_the_backoff_is_over(
    writeback_settings: Any, loopback: Callable[..., Loopback], retries: mock.MagicMock
) -> None:
    ehr = loopback(lambda request: Reply(503, b"Service Unavailable", {"Content-Type": "text/plain"}))
    writeback_settings.WRITEBACK_FHIR_BASE_URL = ehr.url
    _, message = enqueue()
    deliver_when_due(message)
    assert outbox_message_deliver(message.pk) is None  # an early duplicate task finds nothing due
    assert len(ehr.requests) == 1


def test_it_honours_retry_after_and_delivers_once_the_server_recovers(
    writeback_settings: Any, sekmet: Sekmet, loopback: Callable[..., Loopback], retries: mock.MagicMock
) -> None:
    replies = [
        Reply(503, outcome("transient", "overloaded")),
        Reply(429, outcome("throttled", "slow down"), {"Retry-After": "120"}),
    ]
    ehr = loopback(scripted(replies, then=lambda request: forward(sekmet, request)))
    writeback_settings.WRITEBACK_FHIR_BASE_URL = ehr.url
    job_key, message = enqueue()

    message = deliver_when_due(message)
    assert (message.status, message.last_error) == ("pending", "HTTP 503: error transient: overloaded")
    second_try = message.next_attempt_at
    message = deliver_when_due(message)
    assert (message.status, message.last_error) == ("pending", "HTTP 429: error throttled: slow down")
    assert (message.next_attempt_at - second_try).total_seconds() >= 120  # longer than the 10-20 s backoff
    # 120 s is longer than a delayed message may wait (WRITEBACK_COUNTDOWN_MAX_S): the sweep sends it.
    assert retries.call_count == 1
    with mock.patch("cds.writeback.services.enqueue", autospec=True) as sweep_enqueue:
        assert outbox_sweep(now=message.next_attempt_at - timedelta(seconds=1))["requeued_pending"] == 0
        assert outbox_sweep(now=message.next_attempt_at + timedelta(seconds=1))["requeued_pending"] == 1
    sweep_enqueue.assert_called_once_with("writeback.deliver", message.pk, countdown=None)

    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.DELIVERED and message.attempts == 3 and message.last_error == ""
    assert len(sekmet.search("DiagnosticReport", identifier=identifier(f"{job_key}-report"))) == 1


def test_it_retries_a_timeout_and_delivers_when_the_server_answers_in_time(
    writeback_settings: Any, sekmet: Sekmet, loopback: Callable[..., Loopback], retries: mock.MagicMock
) -> None:
    writeback_settings.WRITEBACK_TIMEOUT_S = 0.3
    ehr = loopback(scripted([Reply(200, {}, delay_s=1.5)], then=lambda request: forward(sekmet, request)))
    writeback_settings.WRITEBACK_FHIR_BASE_URL = ehr.url
    job_key, message = enqueue()

    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.PENDING
    assert message.last_error == "FHIR endpoint timed out after 0.3 s" and message.response == {}

    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.DELIVERED and message.attempts == 2
    assert len(sekmet.search("Task", identifier=identifier(f"{job_key}-review"))) == 1


def test_it_retries_refused_connections_and_delivers_once_the_server_listens(
    writeback_settings: Any, sekmet: Sekmet, loopback: Callable[..., Loopback], retries: mock.MagicMock
) -> None:
    port = free_port()
    writeback_settings.WRITEBACK_FHIR_BASE_URL = f"http://127.0.0.1:{port}/fhir"
    job_key, message = enqueue()

    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.PENDING
    assert message.last_error.startswith("FHIR endpoint unreachable:") and "refused" in message.last_error

    loopback(lambda request: forward(sekmet, request), port=port)
    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.DELIVERED
    assert len(sekmet.search("Observation", identifier=identifier(f"{job_key}-anomaly-score"))) == 1


def test_it_fails_visibly_when_connections_stay_refused(writeback_settings: Any, retries: mock.MagicMock) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = f"http://127.0.0.1:{free_port()}/fhir"
    writeback_settings.WRITEBACK_MAX_ATTEMPTS = 2
    _, message = enqueue()
    deliver_when_due(message)
    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.FAILED
    assert message.last_error.startswith("gave up after 2 attempts; last error: FHIR endpoint unreachable:")


@pytest.mark.parametrize(
    ("status", "transient"),
    [(400, False), (403, False), (404, False), (409, False), (412, False), (422, False)]
    + [(408, True), (429, True), (500, True), (502, True), (503, True), (504, True)],
)
def test_it_classifies_http_statuses(status: int, transient: bool, loopback: Callable[..., Loopback]) -> None:
    ehr = loopback(lambda request: Reply(status, outcome("processing", f"answer {status}")))
    _, bundle = result_bundle()
    with pytest.raises(WritebackError) as raised:
        fhir_transaction_post(config=WritebackConfig(base_url=ehr.url, timeout_s=5), bundle=bundle)
    assert raised.value.transient is transient and raised.value.status == status
    assert str(raised.value) == f"HTTP {status}: error processing: answer {status}"
    request = ehr.requests[0]
    assert (request.method, request.headers["Content-Type"]) == ("POST", "application/fhir+json")
    assert request.json() == bundle


def test_it_fails_at_once_on_an_error_outcome_in_a_2xx(
    writeback_settings: Any, loopback: Callable[..., Loopback], retries: mock.MagicMock
) -> None:
    ehr = loopback(lambda request: Reply(200, outcome("business-rule", "patient is merged")))
    writeback_settings.WRITEBACK_FHIR_BASE_URL = ehr.url
    _, message = enqueue()
    message = deliver_when_due(message)
    assert message.status == OutboxMessage.Status.FAILED and message.attempts == 1
    assert message.last_error == "HTTP 200: error business-rule: patient is merged"
    retries.assert_not_called()


def test_it_sweeps_lost_and_stuck_messages(writeback_settings: Any) -> None:
    now = timezone.now()
    _, lost = enqueue()
    _, fresh = enqueue()
    _, stuck = enqueue()
    _, hopeless = enqueue()
    OutboxMessage.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(minutes=5))
    old_claim = now - timedelta(seconds=writeback_settings.WRITEBACK_SENDING_TIMEOUT_S + 5)
    OutboxMessage.objects.filter(pk=stuck.pk).update(status="sending", claimed_at=old_claim, attempts=1)
    OutboxMessage.objects.filter(pk=hopeless.pk).update(status="sending", claimed_at=old_claim, attempts=3)

    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True) as delay:
        counts = outbox_sweep(now=now)

    assert counts == {"requeued_pending": 1, "recovered_sending": 1, "failed": 1}
    assert sorted(c.args[0] for c in delay.call_args_list) == sorted([lost.pk, stuck.pk])
    assert OutboxMessage.objects.get(pk=stuck.pk).status == OutboxMessage.Status.PENDING
    hopeless.refresh_from_db()
    assert hopeless.status == OutboxMessage.Status.FAILED
    assert hopeless.last_error == "worker lost the message during attempt 3; giving up"
    assert OutboxMessage.objects.get(pk=fresh.pk).status == OutboxMessage.Status.PENDING


def test_it_marks_the_message_failed_when_the_task_crashes(writeback_settings: Any) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = "http://127.0.0.1:9/fhir"
    _, message = enqueue()
    with mock.patch(
        "cds.writeback.services.fhir_transaction_post", autospec=True, side_effect=RuntimeError("bad bundle")
    ) as post:
        result = outbox_message_deliver.apply(args=(message.pk,))
    assert result.failed()
    post.assert_called_once()
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.FAILED and message.last_error == "RuntimeError: bad bundle"


def test_it_schedules_the_sweep_with_celery_beat(settings: Any) -> None:
    from cds.celery import app

    assert settings.CELERY_BEAT_SCHEDULE["writeback-sweep"]["task"] == "writeback.sweep"
    app.loader.import_default_modules()
    assert {"writeback.sweep", "writeback.deliver"} <= set(app.tasks)
