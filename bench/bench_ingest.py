"""Benchmark ECG ingest: the decode step alone vs whole HTTP requests with 1 and 8 clients.

Starts gunicorn against a scratch PostgreSQL database (``cds_bench``) and RabbitMQ, posts 12-lead
10 s 500 Hz ECGs (PTB-XL samples, each with its own identifier), and prints p50/p95 latency and
ECGs/s, the ratio of request to decode cost, and the peak memory (VmHWM) of a web and a worker
process. Usage: ``.venv/bin/python bench/bench_ingest.py [--requests 200] [--web-workers 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
DB = "cds_bench"

from deploy.livestack import (  # noqa: E402 - after the path setup
    client_token,
    create_api_client,
    live_env,
    manage,
    percentile,
    spawn,
    wait_for_health,
    web_command,
    worker_command,
)


def sample_bodies(n: int) -> list[bytes]:
    """Return ``n`` JSON bodies of distinct 12-lead ECG Observations built from the samples."""
    import numpy as np
    import wfdb

    from cds.ecg.encoding import ecg_observation

    folder = REPO / "samples" / "ptbxl" / "records500" / "00000"
    records = [wfdb.rdrecord(str(p.with_suffix(""))) for p in sorted(folder.glob("*.hea"))]
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    bodies = []
    for i in range(n):
        record = records[i % len(records)]
        observation = ecg_observation(
            np.nan_to_num(record.p_signal.T) * 1000,
            sample_rate_hz=record.fs,
            leads=leads,
            identifier=("urn:bench", f"{uuid.uuid4().hex}"),
            effective="2024-01-01T00:00:00Z",
        )
        bodies.append(json.dumps(observation).encode())
    return bodies


def bench_decode(bodies: list[bytes]) -> dict[str, float]:
    """Time JSON parse + R4B validation + waveform decode in-process (no DB, no HTTP)."""
    import django

    django.setup()
    from cds.ecg.services import ecg_prepare
    from cds.fhir.validation import resource_validate

    for body in bodies[:5]:  # warm the FHIR models (first parse is ~60 ms)
        ecg_prepare(content=json.loads(body))
    times = {"parse_validate_decode": [], "decode_only": []}
    for body in bodies:
        started = time.perf_counter()
        content = json.loads(body)
        resource_validate(content, expected_type="Observation")
        middle = time.perf_counter()
        ecg_prepare(content=content)
        ended = time.perf_counter()
        times["parse_validate_decode"].append((ended - started) * 1000)
        times["decode_only"].append((ended - middle) * 1000)
    return {f"{k}_p50_ms": statistics.median(v) for k, v in times.items()} | {
        f"{k}_p95_ms": percentile(v, 95) for k, v in times.items()
    }


def run_clients(url: str, token: str, bodies: list[bytes], clients: int) -> dict[str, float]:
    """Post all bodies with ``clients`` threads (keep-alive sessions); return latency and rate."""
    import requests

    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    chunks = [bodies[i::clients] for i in range(clients)]

    def worker(chunk: list[bytes]) -> None:
        session = requests.Session()
        headers = {
            "Content-Type": "application/fhir+json",
            "Authorization": f"Bearer {token}",
            "Prefer": "return=minimal",
        }
        for body in chunk:
            started = time.perf_counter()
            response = session.post(url, data=body, headers=headers, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if response.status_code != 201:
                    errors.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
        "ecg_per_s": len(latencies) / wall,
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()

    bodies = sample_bodies(args.requests * 2 + 20)
    decode = bench_decode(bodies[:100])
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    env = live_env(
        database_url=f"postgres://postgres@127.0.0.1:5432/{DB}",
        base_url=f"http://127.0.0.1:{args.port}",
        queue=queue,
        CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        # The drain worker runs the detector in-process: this bench measures ingest, not Triton.
        INFERENCE_BACKEND="inprocess",
    )
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], check=True)
    manage(env, "migrate", "-v", "0")
    credentials = create_api_client(env, "bench")
    web = spawn(web_command(args.port, workers=args.web_workers), env, None)
    try:
        wait_for_health(f"http://127.0.0.1:{args.port}", timeout_s=60)
        token = client_token(credentials)
        url = f"http://127.0.0.1:{args.port}/fhir/Observation"
        run_clients(url, token, bodies[:20], 2)  # warm every web worker
        results = [
            run_clients(url, token, bodies[20 : 20 + args.requests], 1),
            run_clients(url, token, bodies[20 + args.requests :], 8),
        ]
        web_peak = max(peak_rss_mb(pid) for pid in children(web.pid))
    finally:
        web.terminate()
        web.wait(timeout=20)
    # Drain the queued jobs with one worker and record its peak memory.
    worker = spawn(worker_command(queue, loglevel="WARNING"), env, None)
    deadline = time.monotonic() + 300
    drained_jobs = 0
    count_sql = "SELECT count(*) FROM analysis_analysisjob WHERE status = 'pending'"
    while time.monotonic() < deadline:
        pending = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DB, "-tAc", count_sql], capture_output=True, text=True
        ).stdout.strip()
        if pending == "0":
            drained_jobs = 1
            break
        time.sleep(1)
    worker_peak = peak_rss_mb(worker.pid)
    worker.terminate()
    worker.wait(timeout=30)
    print(json.dumps({"decode": decode, "http": results}, indent=2))
    for result in results:
        ratio = result["p50_ms"] / decode["parse_validate_decode_p50_ms"]
        print(
            f"clients={result['clients']}: p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
            f"{result['ecg_per_s']:.1f} ECG/s, errors {result['errors']}, request/decode p50 ratio {ratio:.2f}"
        )
    print(
        f"decode alone: p50 {decode['decode_only_p50_ms']:.2f} ms; parse+validate+decode p50 {decode['parse_validate_decode_p50_ms']:.2f} ms"
    )
    print(
        f"peak RSS: web worker {web_peak:.0f} MB, celery worker {worker_peak:.0f} MB (queue drained: {bool(drained_jobs)})"
    )


if __name__ == "__main__":
    main()
