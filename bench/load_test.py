"""Load test: Locust offers ECGs at a fixed rate for a bounded time; nothing may be lost.

Starts the same stack as ``bench_pipeline.py`` (gunicorn, a Celery worker, the local Triton, on a
scratch PostgreSQL database and RabbitMQ), then runs Locust headless on 127.0.0.1 only: ``--users``
users each posting one ECG Observation per second (``constant_throughput``) for ``--minutes``.
Every 10 s it samples the queue depth (pending jobs) and the resident memory of the web and worker
processes. After the run it waits for the backlog to drain and checks that every accepted ECG was
analysed exactly once. Locust runs from its own virtualenv (``var/venv-locust``, created on first
use): its requirements conflict with our lock.

Usage: ``.venv/bin/python bench/load_test.py [--users 20] [--minutes 10] [--drain-minutes 15]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import DB, Stack, job_rows  # noqa: E402 - after the path setup

LOCUST_VENV = REPO / "var" / "venv-locust"
LOCUST_VERSION = "2.47.0"
PLACEHOLDER = "__LOAD_ID__"

LOCUSTFILE = f'''
import itertools, os, time, uuid
from locust import HttpUser, constant_throughput, task

BODIES = [line for line in open(os.environ["LOAD_BODIES"]) if line.strip()]
COUNTER = itertools.count()
RUN = uuid.uuid4().hex[:8]


class Ehr(HttpUser):
    """An EHR integration engine: client-credentials token (renewed before it expires), one ECG a second."""

    wait_time = constant_throughput(1)

    def on_start(self):
        self.renew_token()

    def renew_token(self):
        # Per-request headers only: a session-wide FHIR Content-Type would spoil the form-encoded
        # token request once the first token is in use.
        r = self.client.post("/auth/token", data={{"grant_type": "client_credentials"}},
                             auth=(os.environ["LOAD_CLIENT_ID"], os.environ["LOAD_CLIENT_SECRET"]), name="POST token")
        r.raise_for_status()
        token = r.json()
        self.expires_at = time.monotonic() + token["expires_in"] - 30
        self.fhir_headers = {{"Authorization": "Bearer " + token["access_token"],
                             "Content-Type": "application/fhir+json", "Prefer": "return=minimal"}}

    @task
    def post_ecg(self):
        if time.monotonic() > self.expires_at:
            self.renew_token()
        n = next(COUNTER)
        body = BODIES[n % len(BODIES)].replace("{PLACEHOLDER}", f"{{RUN}}-{{n}}")
        with self.client.post("/fhir/Observation", data=body, headers=self.fhir_headers, catch_response=True,
                              name="POST Observation") as r:
            if r.status_code == 201:
                print("ACCEPTED", r.headers["Location"].split("/Observation/")[1].split("/")[0], flush=True)
            else:
                r.failure(f"HTTP {{r.status_code}}")
'''


def locust_venv() -> Path:
    """Return the Locust executable, creating its virtualenv on first use."""
    executable = LOCUST_VENV / "bin" / "locust"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True)
        subprocess.run([str(LOCUST_VENV / "bin" / "pip"), "install", "-q", f"locust=={LOCUST_VERSION}"], check=True)
    return executable


def write_bodies(path: Path) -> None:
    """Write one ECG Observation per line with a placeholder identifier (the 8 committed samples)."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
    from bench_ingest import sample_bodies

    lines = []
    for body in sample_bodies(8):
        observation = json.loads(body)
        observation["identifier"][0]["value"] = PLACEHOLDER
        lines.append(json.dumps(observation))
    path.write_text("\n".join(lines) + "\n")


def rss_mb(pid: int) -> float:
    """Return the resident memory of ``pid`` and its children in MB."""
    pids = [
        pid,
        *[int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()],
    ]
    total = 0.0
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            continue
    return round(total, 1)


def pending_jobs() -> int:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}") as conn:
        row = conn.execute(
            "SELECT count(*) FROM analysis_analysisjob WHERE status IN ('pending', 'running')"
        ).fetchone()
    return int(row[0]) if row else 0


def duplicate_predictions(observation_ids: list[str]) -> int:
    """Return how many accepted ECGs have more than one detector prediction (must be 0)."""
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}") as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT j.recording_id FROM analysis_prediction p"
            " JOIN analysis_analysisjob j ON j.id = p.job_id JOIN ecg_ecgrecording r ON r.id = j.recording_id"
            " WHERE r.logical_id = ANY(%s) AND p.model_name = 'ecg-anomaly-detector'"
            " GROUP BY j.recording_id HAVING count(*) > 1) d",
            (observation_ids,),
        ).fetchone()
    return int(row[0]) if row else 0


def sample(stack: Stack, samples: list[dict[str, Any]], stop: threading.Event, started: float) -> None:
    """Every 10 s: queue depth and memory of web and worker."""
    web, worker = stack.processes
    while not stop.wait(10):
        samples.append(
            {
                "t_s": round(time.monotonic() - started),
                "queue_depth": pending_jobs(),
                "web_rss_mb": rss_mb(web.pid),
                "worker_rss_mb": rss_mb(worker.pid),
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="each offers 1 ECG/s")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--drain-minutes", type=float, default=15.0)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--port", type=int, default=8097)
    args = parser.parse_args()
    locust = locust_venv()
    tmp = Path(tempfile.mkdtemp(prefix="load-test-"))
    write_bodies(tmp / "bodies.jsonl")
    (tmp / "locustfile.py").write_text(LOCUSTFILE)
    stack = Stack(tmp, args.port, args.worker_concurrency)
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    try:
        stack.start()
        started = time.monotonic()
        sampler = threading.Thread(target=sample, args=(stack, samples, stop, started), daemon=True)
        sampler.start()
        env = {**os.environ, "LOAD_BODIES": str(tmp / "bodies.jsonl"), **stack.credentials_env}
        run = subprocess.run(
            [
                str(locust),
                "-f",
                str(tmp / "locustfile.py"),
                "--headless",
                "--host",
                f"http://127.0.0.1:{args.port}",
                "-u",
                str(args.users),
                "-r",
                str(max(1, args.users // 5)),
                "--run-time",
                f"{int(args.minutes * 60)}s",
                "--stop-timeout",
                "30",
                "--csv",
                str(tmp / "locust"),
                "--only-summary",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.minutes * 60 + 300,
        )
        offered_s = time.monotonic() - started
        accepted = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("ACCEPTED")]
        deadline = time.monotonic() + args.drain_minutes * 60
        while time.monotonic() < deadline and pending_jobs() > 0:
            time.sleep(5)
        drained_s = time.monotonic() - started
        stop.set()
        rows = job_rows(accepted)
        duplicates = duplicate_predictions(accepted)
    finally:
        stack.stop()
    with (tmp / "locust_stats.csv").open() as handle:
        stats = next(row for row in csv.DictReader(handle) if row["Name"] == "POST Observation")
    statuses = [r[1] for r in rows]
    finished = [float(r[4]) for r in rows if r[1] == "succeeded"]
    report = {
        "users": args.users,
        "offered_per_s": args.users,
        "minutes": args.minutes,
        "requests": int(stats["Request Count"]),
        "http_errors": int(stats["Failure Count"]),
        "post_p50_ms": float(stats["50%"]),
        "post_p95_ms": float(stats["95%"]),
        "post_p99_ms": float(stats["99%"]),
        "accepted": len(accepted),
        "jobs_found": len(rows),
        "succeeded": statuses.count("succeeded"),
        "failed": statuses.count("failed"),
        "unfinished": len(accepted) - statuses.count("succeeded") - statuses.count("failed"),
        "lost": len(accepted) - len(rows),
        "duplicate_predictions": duplicates,
        "analysed_per_s_overall": round(len(finished) / max(1e-9, drained_s), 2),
        "offered_for_s": round(offered_s),
        "drained_after_s": round(drained_s),
        "max_queue_depth": max((s["queue_depth"] for s in samples), default=0),
        "rss_first_last_mb": {
            "web": [samples[0]["web_rss_mb"], samples[-1]["web_rss_mb"]] if samples else None,
            "worker": [samples[0]["worker_rss_mb"], samples[-1]["worker_rss_mb"]] if samples else None,
        },
        "samples": samples,
        "run_id": uuid.uuid4().hex[:6],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
