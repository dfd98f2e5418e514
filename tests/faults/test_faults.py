"""Faults injected on real processes; after each, every accepted ECG is analysed once and written back once.

Each test kills or restarts one part of the stack (``tests/faults/conftest.py``) while ECGs are in
flight, lets the system recover the way production does (redelivery, the sweep that beat runs,
Celery retries, the outbox), and then checks the database and the EHR for exactly-once results.
"""

from __future__ import annotations

import time
import uuid

import pytest

from deploy.livestack import free_port, spawn, stop_processes, wait_for_health, web_command, worker_command
from tests.faults.conftest import FaultStack, PrivateRabbitMQ, rabbitmq_available

pytestmark = [pytest.mark.live, pytest.mark.slow]
SAMPLES = (9, 38, 57, 63, 65, 116, 128, 131)


def post_batch(stack: FaultStack, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [stack.post_ecg(SAMPLES[i % len(SAMPLES)], f"fault-{tag}-{i}") for i in range(n)]


def test_it_recovers_a_job_whose_worker_was_killed_mid_run(fault_stack: FaultStack) -> None:
    fault_stack.kill_process("worker")
    ids = post_batch(fault_stack, 8)  # queued while no worker runs
    fault_stack.start_process("worker")
    deadline, caught = time.monotonic() + 60, []
    while time.monotonic() < deadline and not caught:
        caught = fault_stack.db.query("SELECT id FROM analysis_analysisjob WHERE status = 'running'")
        time.sleep(0.01)
    assert caught, "no job was seen running: the kill would not be mid-job"
    fault_stack.kill_process("worker")  # SIGKILL, mid-job
    (stuck,) = fault_stack.db.query("SELECT status FROM analysis_analysisjob WHERE id = %s", caught[0][0])
    assert stuck == ("running",)  # the dead worker's job is left running: only the sweep can recover it
    fault_stack.start_process("worker")
    fault_stack.assert_analysed_and_written_back_once(ids)


def test_it_loses_no_queued_job_when_the_broker_restarts(fault_stack: FaultStack) -> None:
    fault_stack.kill_process("worker")
    ids = post_batch(fault_stack, 6)  # their messages wait in the broker
    fault_stack.broker.stop()
    fault_stack.broker.start()
    fault_stack.start_process("worker")
    fault_stack.assert_analysed_and_written_back_once(ids)


def test_it_loses_no_queued_job_when_a_rabbitmq_node_restarts(fault_stack: FaultStack) -> None:
    """The same fault on RabbitMQ: a private node (own ports and data), web and worker of its own."""
    if not rabbitmq_available():
        pytest.skip("needs rabbitmq-server and its rabbitmq user")
    rabbit = PrivateRabbitMQ(fault_stack.root)
    rabbit.start()
    env = {**fault_stack.env, "CELERY_BROKER_URL": rabbit.url}
    port = free_port()
    processes = [spawn(web_command(port, workers=1), env, fault_stack.root / "web-rabbitmq.log", new_session=True)]
    try:
        wait_for_health(f"http://127.0.0.1:{port}", log=fault_stack.root / "web-rabbitmq.log")
        tag = uuid.uuid4().hex[:8]
        ids = [fault_stack.post_ecg(SAMPLES[i], f"rabbit-{tag}-{i}", base=f"http://127.0.0.1:{port}") for i in range(4)]
        rabbit.stop()  # the messages wait in the stopped node's durable queue
        rabbit.start()
        worker = worker_command(env["CELERY_TASK_DEFAULT_QUEUE"], concurrency=1)
        processes.append(spawn(worker, env, fault_stack.root / "worker-rabbitmq.log", new_session=True))
        # No sweep: every job must come from its own message, which survived the restart.
        assert fault_stack.wait_until_done(ids, timeout_s=120) == {oid: "succeeded" for oid in ids}
        fault_stack.assert_analysed_and_written_back_once(ids)
    finally:
        stop_processes(processes, timeout_s=20, group=True)
        rabbit.stop()


def test_it_waits_out_a_triton_outage_of_a_minute(fault_stack: FaultStack) -> None:
    fault_stack.triton.stop()
    try:
        ids = post_batch(fault_stack, 3)
        time.sleep(15)
        rows = fault_stack.db.query(
            "SELECT j.status, j.error FROM analysis_analysisjob j JOIN ecg_ecgrecording r ON r.id = j.recording_id"
            " WHERE r.logical_id = ANY(%s)",
            ids,
        )
        # Visible while it lasts: waiting for a retry (pending, or running a retry) with the reason;
        # nothing failed, nothing dropped.
        assert len(rows) == 3 and all(status in {"pending", "running"} for status, _ in rows), rows
        assert any("TritonUnavailable" in error for _, error in rows), rows
        time.sleep(45)
    finally:
        fault_stack.triton.start(timeout_s=120)
    # Production backoff (capped at 120 s, full jitter): a job retries within ~2 min of Triton's return.
    fault_stack.assert_analysed_and_written_back_once(ids, timeout_s=240)


def test_it_carries_on_after_postgresql_restarts(fault_stack: FaultStack) -> None:
    before = post_batch(fault_stack, 4)
    fault_stack.db.stop()
    time.sleep(3)
    fault_stack.db.start()
    after = post_batch(fault_stack, 4)  # web and worker reconnect on their own
    fault_stack.assert_analysed_and_written_back_once(before + after)


def outbox_rows(stack: FaultStack) -> list[tuple[str, str, int, str]]:
    return [tuple(r) for r in stack.db.query("SELECT key, status, attempts, last_error FROM writeback_outboxmessage")]  # type: ignore[misc]


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.5)
    return False


def test_it_writes_back_once_after_the_ehr_fails_times_out_and_comes_back(fault_stack: FaultStack) -> None:
    delivered_before = {key for key, status, _, _ in outbox_rows(fault_stack) if status == "delivered"}
    fault_stack.gateway.mode = "error"
    try:
        ids = post_batch(fault_stack, 2)

        def new_rows() -> list[tuple[str, str, int, str]]:
            return [row for row in outbox_rows(fault_stack) if row[0] not in delivered_before]

        assert wait_for(lambda: len(new_rows()) == 2 and all(r[2] >= 2 for r in new_rows()), 60), new_rows()
        assert all(r[1] in {"pending", "sending"} and "500" in r[3] for r in new_rows()), new_rows()
        attempts = {r[0]: r[2] for r in new_rows()}
        fault_stack.gateway.mode = "hang"
        assert wait_for(lambda: all(r[2] > attempts[r[0]] for r in new_rows()), 60), new_rows()
        assert any("imeout" in r[3] or "timed out" in r[3] for r in new_rows()), new_rows()
    finally:
        fault_stack.gateway.mode = "forward"
    fault_stack.assert_analysed_and_written_back_once(ids, timeout_s=90)
