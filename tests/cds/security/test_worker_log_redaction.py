"""What a real Celery worker writes to its log is redacted (issue 13): read the worker's own file.

Celery installs its own root handler unless told otherwise, so a filter configured in Django's
LOGGING proves nothing about the worker by itself. This test makes the worker log PHI-shaped text
that we do not control (Celery's "unregistered task" error quotes the whole message body) and reads
the log file the worker wrote.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

SAMPLES = "1021 -334 87 455 -12 903 118 -76 640 22"  # a run of waveform values
FAMILY = "Quillfeather-Worker"
MRN = "CANARY-MRN-WORKER-77"


def _wait_for(path: Path, text: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    written = ""
    while time.monotonic() < deadline:
        written = path.read_text(errors="replace") if path.exists() else ""
        if text in written:
            return written
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never appeared in {path}:\n{written[-3000:]}")


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_worker_redacts_what_celery_itself_logs(tmp_path: Any) -> None:
    from cds.celery import app
    from tests.livestack import LiveStack

    stack = LiveStack(tmp_path, env={"LOG_LEVEL": "DEBUG"})
    try:
        stack.start()
        body = {"resourceType": "Patient", "name": [{"family": FAMILY}], "identifier": [{"value": MRN}]}
        app.send_task(
            "cds.canary.not_a_task",
            args=[SAMPLES, body],
            kwargs={"data": SAMPLES},
            queue=stack.env["CELERY_TASK_DEFAULT_QUEUE"],
        )
        # One record names the task and quotes the body (Celery's "Received unregistered task").
        written = _wait_for(tmp_path / "worker.log", "cds.canary.not_a_task")
    finally:
        stack.stop()
    assert "unregistered" in written.lower()  # Celery's own error, written by the worker
    assert "[samples redacted]" in written and "[redacted]" in written
    for canary in (SAMPLES, FAMILY, MRN, "1021 -334 87"):
        assert canary not in written, f"{canary!r} in the worker log"
