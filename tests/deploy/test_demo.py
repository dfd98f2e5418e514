"""Smoke test of `make demo`'s stack on the embedded default (SQLite + file-based Celery transport)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from deploy.livestack import free_port
from tests.conftest import REPO_ROOT

# 8 PTB-XL records + the Challenge records (other hospitals) bundled under samples/.
N_SAMPLES = 8 + len(list((REPO_ROOT / "samples" / "challenge").glob("*.hea")))
N_DOCUMENTS = 4  # DICOM, HL7 aECG, GE MUSE and the Philips sample (deploy/stack.py send_documents)

pytestmark = pytest.mark.live


def demo_views(output: str, base: str) -> dict[str, int]:
    """Log in as each printed demo user through the admin's login form; return each view's HTTP status."""
    logins = re.findall(
        r"^\s+(clinician|senior clinician|quality auditor)\s+(demo-\S+)\s+(\S+)\s+\S+ (\S+)", output, re.M
    )
    assert len(logins) == 3, output
    review = re.search(r"First review\s+(\S+)", output)
    assert review, output
    statuses = {}
    for role, username, password, view in logins:
        session = requests.Session()
        session.get(f"{base}/admin/login/", timeout=10)
        form = {"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
        response = session.post(f"{base}/admin/login/?next=/admin/", data=form, timeout=10)
        assert response.url.rstrip("/").endswith("/admin"), (role, response.url)
        statuses[role] = session.get(review.group(1) if role == "senior clinician" else view, timeout=30).status_code
    statuses["css"] = requests.get(f"{base}/static/admin/css/base.css", timeout=10).status_code
    return statuses


def test_it_runs_the_demo_end_to_end_on_sqlite(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        # The demo's own defaults, not the test run's (the suite runs the detector in-process).
        if key
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "PUBLIC_BASE_URL",
            "INFERENCE_BACKEND",
            "SECRET_KEY",
            "STATIC_MANIFEST",
        }
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
        # While it serves: each printed demo login opens its view (issue 16).
        views = demo_views("".join(lines), f"http://127.0.0.1:{env['PORT']}")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    output = "".join(lines)
    assert "Serving until Ctrl-C" in output, output
    assert output.count("201 Created") == N_SAMPLES, output
    # One ECG sent again as DICOM, aECG and MUSE documents, and the Philips sample: each stored and analysed.
    assert output.count("-> DocumentReference/") == N_DOCUMENTS and "HTTP 4" not in output, output
    analysed = N_SAMPLES + N_DOCUMENTS
    assert output.count("job succeeded") == analysed, output
    # Scored through the local Triton: each verdict states the evidence it rests on (the combined
    # evidence and the detector's score; the detector's operating point where no combination applies).
    assert output.count("detector score") + output.count("anomaly score") == analysed, output
    assert "combined evidence" in output, output
    assert "FLAGGED" in output and "not flagged" in output, output
    assert output.count("draft report:") == analysed, output  # the foundation model's text, served by Triton too
    # The Challenge samples from other hospitals are in atrial fibrillation: the draft names it.
    assert "Atrial fibrillation" in output, output
    assert (tmp_path / "demo.sqlite3").exists()
    assert views["clinician"] == 200 and views["senior clinician"] == 200 and views["quality auditor"] == 200
    assert views["css"] == 200  # the admin is styled
    assert "generated a local one" in output  # no SECRET_KEY in the environment: one in var/, said so
    assert process.returncode is not None
