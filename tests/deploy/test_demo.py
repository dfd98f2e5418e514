"""Smoke test of `make demo`'s stack on the embedded default (SQLite + file-based Celery transport)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.livestack import free_port
from tests.conftest import REPO_ROOT

# 8 PTB-XL records + the Challenge records (other hospitals) bundled under samples/.
N_SAMPLES = 8 + len(list((REPO_ROOT / "samples" / "challenge").glob("*.hea")))

pytestmark = pytest.mark.live


def test_it_runs_the_demo_end_to_end_on_sqlite(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        # The demo's own defaults, not the test run's (the suite runs the detector in-process).
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "PUBLIC_BASE_URL", "INFERENCE_BACKEND"}
    }
    env.update(PORT=str(free_port()), CDS_VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    env.update(
        TRITON_HTTP_PORT=str(free_port()), TRITON_GRPC_PORT=str(free_port()), TRITON_METRICS_PORT=str(free_port())
    )
    process = subprocess.Popen(
        [sys.executable, "deploy/stack.py", "demo"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 240
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Serving until Ctrl-C" in line or time.monotonic() > deadline:
                break
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    output = "".join(lines)
    assert "Serving until Ctrl-C" in output, output
    assert output.count("201 Created") == N_SAMPLES, output
    assert output.count("job succeeded") == N_SAMPLES, output
    # Scored through the local Triton: each ECG gets its anomaly score against the operating point.
    assert output.count("anomaly score") == N_SAMPLES, output
    assert "FLAGGED" in output and "not flagged" in output, output
    assert output.count("draft report:") == N_SAMPLES, output  # the foundation model's text, served by Triton too
    # The Challenge samples from other hospitals are in atrial fibrillation: the draft names it.
    assert "Atrial fibrillation" in output, output
    assert (tmp_path / "demo.sqlite3").exists()
    assert process.returncode is not None
