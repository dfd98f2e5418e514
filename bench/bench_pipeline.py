"""Benchmark the analysis pipeline: Triton per-model throughput, then FHIR POST -> stored prediction.

1. Triton (the shipped repository, CPU configs, local ``tritonserver``): detector ECG/s for
   client-side batches of 1, 8 and 32, and for 4 concurrent clients sending single ECGs with
   and without dynamic batching (a copy of the repository with ``dynamic_batching`` removed).
2. End to end: gunicorn + a Celery worker (prefork) on a scratch PostgreSQL database and RabbitMQ,
   with that Triton; ECGs offered open-loop at each ``--rates`` for ``--seconds``. Latency is from
   the POST to the job's ``finished_at`` (results stored); stage shares come from the jobs' own
   timings (load, preprocess, triton, postprocess, store), the queue wait (``started_at - created_at``)
   and the POST itself.

Usage: ``.venv/bin/python bench/bench_pipeline.py [--rates 1 5 20] [--seconds 20] [--worker-concurrency 2]``.
Prints one JSON object and a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
DB = "cds_bench_pipeline"
REPOSITORY = REPO / "deploy" / "triton" / "model_repository"
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

from bench_ingest import sample_bodies  # noqa: E402 - after the path setup

from deploy.livestack import (  # noqa: E402 - after the path setup
    client_token,
    create_api_client,
    free_port,
    live_env,
    manage,
    percentile,
    spawn,
    stop_processes,
    wait_for_health,
    web_command,
    worker_command,
)


def detector_batches() -> dict[str, Any]:
    """Return the stacked detector inputs of the committed sample ECGs (preprocessed once)."""
    import numpy as np
    import wfdb

    from inference.preprocessing import detector_inputs, stack_detector_inputs

    folder = REPO / "samples" / "ptbxl" / "records500" / "00000"
    items = []
    for path in sorted(folder.glob("*.hea")):
        record = wfdb.rdrecord(str(path.with_suffix("")))
        items.append(detector_inputs(np.nan_to_num(record.p_signal.T), record.fs))
    return stack_detector_inputs(items)


def foundation_batches(*, measured: bool = False) -> dict[str, Any]:
    """Return the stacked foundation-model inputs of the committed sample ECGs.

    ``measured``: add each ECG's measured-findings vector (the foundation model's third input).
    """
    import numpy as np
    import wfdb

    from inference.clinical.conditioning import measured_vector_of_signal
    from inference.preprocessing import foundation_inputs

    folder = REPO / "samples" / "ptbxl" / "records500" / "00000"
    items, vectors = [], []
    for path in sorted(folder.glob("*.hea")):
        record = wfdb.rdrecord(str(path.with_suffix("")))
        signal = np.nan_to_num(record.p_signal.T)
        items.append(foundation_inputs(signal, record.fs))
        if measured:
            vectors.append(measured_vector_of_signal(signal, record.fs, LEADS))
    arrays = {"signal": np.stack([i.signal for i in items]), "lead_mask": np.stack([i.lead_mask for i in items])}
    return arrays | ({"measured": np.stack(vectors)} if measured else {})


# The one output each model is timed for (the rest are computed anyway).
TIMED_OUTPUT = {"ecg_detector": "score__0", "ecg_foundation": "token_ids__5"}


def infer_rate(
    grpc_url: str, arrays: dict[str, Any], batch: int, clients: int, seconds: float, model: str = "ecg_detector"
) -> float:
    """Return ECG/s for ``clients`` threads each sending requests of ``batch`` ECGs to ``model`` for ``seconds``."""
    import numpy as np

    from inference.triton_client import TritonClient

    client = TritonClient(grpc_url=grpc_url, timeout_s=60)
    n = len(next(iter(arrays.values())))
    index = np.arange(batch) % n
    request = {name: np.ascontiguousarray(array[index]) for name, array in arrays.items()}
    outputs = [TIMED_OUTPUT[model]]
    client.infer(model, request, outputs)  # warm this thread's connection
    done = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < stop_at:
            client.infer(model, request, outputs)
            with lock:
                done[0] += batch

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0] / (time.perf_counter() - started)


def without_dynamic_batching(root: Path) -> Path:
    """Return a copy of the repository whose CPU configs have no dynamic batching."""
    copy = root / "no_dynamic_batching"
    shutil.copytree(REPOSITORY, copy)
    for config in copy.glob("*/configs/cpu.pbtxt"):
        lines = [line for line in config.read_text().splitlines() if not line.startswith("dynamic_batching")]
        config.write_text("\n".join(lines) + "\n")
    return copy


def foundation_takes_measured() -> bool:
    """Return whether the served foundation model's report is conditioned on the measured findings."""
    return 'name: "measured"' in (REPOSITORY / "ecg_foundation" / "config.pbtxt").read_text()


def served_models() -> list[str]:
    return sorted(path.parent.name for path in REPOSITORY.glob("*/config.pbtxt"))


def triton_benchmark(tmp: Path, seconds: float) -> dict[str, Any]:
    """Measure each served model's throughput on Triton by batch size and with/without dynamic batching."""
    from inference.local_triton import LocalTriton

    inputs = {"ecg_detector": detector_batches()}
    if "ecg_foundation" in served_models():
        inputs["ecg_foundation"] = foundation_batches(measured=foundation_takes_measured())
    results: dict[str, Any] = {model: {} for model in inputs}
    for label, repository in (("dynamic", REPOSITORY), ("no_dynamic", without_dynamic_batching(tmp))):
        with LocalTriton(
            repository=repository,
            config_name="cpu",
            load_models=list(inputs),
            work_dir=tmp / f"work-{label}",
            log_path=tmp / f"triton-{label}.log",
        ) as server:
            for model, arrays in inputs.items():
                if label == "dynamic":
                    for batch in (1, 8, 32):
                        rate = infer_rate(server.grpc_url, arrays, batch, 1, seconds, model)
                        results[model][f"batch{batch}_1client_ecg_per_s"] = rate
                rate = infer_rate(server.grpc_url, arrays, 1, 4, seconds, model)
                results[model][f"batch1_4clients_{label}_ecg_per_s"] = rate
    return results


class Stack:
    """gunicorn + Celery worker on a scratch database, talking to a local Triton."""

    def __init__(self, tmp: Path, port: int, worker_concurrency: int) -> None:
        from inference.local_triton import LocalTriton

        self.tmp = tmp
        self.port = port
        self.triton = LocalTriton(
            repository=REPOSITORY,
            config_name="cpu",
            load_models=served_models(),
            work_dir=tmp / "work-e2e",
            log_path=tmp / "triton-e2e.log",
            http_port=free_port(),
            grpc_port=free_port(),
        )
        self.env = live_env(
            database_url=f"postgres://postgres@127.0.0.1:5432/{DB}",
            base_url=f"http://127.0.0.1:{port}",
            queue=f"bench-{uuid.uuid4().hex[:6]}",
            CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
            INFERENCE_BACKEND="triton",
            INFERENCE_FOUNDATION_ENABLED=str("ecg_foundation" in served_models()).lower(),
            LOG_LEVEL="WARNING",
        )
        self.worker_concurrency = worker_concurrency
        self.processes: list[subprocess.Popen[bytes]] = []
        self.credentials_env: dict[str, str] = {}

    def start(self) -> str:
        """Start everything; return an access token."""
        self.triton.start(timeout_s=120)
        self.env |= {"TRITON_URL": self.triton.grpc_url, "TRITON_HTTP_URL": self.triton.http_url}
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", DB], check=True)
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], check=True)
        manage(self.env, "migrate", "-v", "0")
        credentials = create_api_client(self.env, "bench")
        self.credentials_env = {
            "LOAD_CLIENT_ID": credentials["client_id"],
            "LOAD_CLIENT_SECRET": credentials["client_secret"],
        }
        queue = self.env["CELERY_TASK_DEFAULT_QUEUE"]
        for name, command in {
            "web": web_command(self.port, workers=2),
            "worker": worker_command(queue, concurrency=self.worker_concurrency, loglevel="WARNING"),
        }.items():
            self.processes.append(spawn(command, self.env, self.tmp / f"{name}.log"))
        wait_for_health(f"http://127.0.0.1:{self.port}", timeout_s=90, log=self.tmp / "web.log")
        return client_token(credentials)

    def stop(self) -> None:
        stop_processes(self.processes, timeout_s=30)
        self.triton.stop()


def offer(url: str, token: str, bodies: list[bytes], rate: float) -> list[tuple[str, float, float]]:
    """POST ``bodies`` open-loop at ``rate``/s; return (observation id, post start epoch, post ms)."""
    import requests

    sent: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    local = threading.local()
    headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}", "Prefer": "return=minimal"}

    def post(body: bytes) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started_epoch, started = time.time(), time.perf_counter()
        response = session.post(url, data=body, headers=headers, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code == 201:
            observation_id = response.headers["Location"].split("/Observation/")[1].split("/")[0]
            with lock:
                sent.append((observation_id, started_epoch, elapsed))

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        begin = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, body)
    return sent


def job_rows(observation_ids: list[str]) -> list[tuple[Any, ...]]:
    """Return (observation id, status, created, started, finished, timings) from the scratch database."""
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}") as conn:
        return conn.execute(
            "SELECT r.logical_id, j.status, extract(epoch from j.created_at), extract(epoch from j.started_at),"
            " extract(epoch from j.finished_at), j.timings FROM analysis_analysisjob j"
            " JOIN ecg_ecgrecording r ON r.id = j.recording_id WHERE r.logical_id = ANY(%s)",
            (observation_ids,),
        ).fetchall()


def measure_rate(url: str, token: str, bodies: list[bytes], rate: float, drain_s: float) -> dict[str, Any]:
    """Offer ``bodies`` at ``rate`` and return end-to-end latency, throughput and stage shares."""
    sent = offer(url, token, bodies, rate)
    ids = [s[0] for s in sent]
    deadline = time.monotonic() + drain_s
    rows = job_rows(ids)
    while time.monotonic() < deadline and sum(r[1] in {"succeeded", "failed"} for r in rows) < len(ids):
        time.sleep(1)
        rows = job_rows(ids)
    posted = {s[0]: s for s in sent}
    done = [r for r in rows if r[1] == "succeeded"]
    latencies = [(float(r[4]) - posted[r[0]][1]) * 1000 for r in done]
    first_post = min(s[1] for s in sent)
    last_done = max(float(r[4]) for r in done) if done else first_post
    stages: dict[str, float] = {"post_ms": statistics.mean(s[2] for s in sent)}
    stages["queue_ms"] = statistics.mean((float(r[3]) - float(r[2])) * 1000 for r in done) if done else 0.0
    keys = ("load_ms", "preprocess_ms", "triton_ms", "postprocess_ms")
    keys += ("foundation_preprocess_ms", "foundation_triton_ms")
    keys += ("clinical_measure_ms", "clinical_statements_ms", "clinical_report_ms", "store_ms")
    for key in keys:
        stages[key] = statistics.mean(float(r[5].get(key, 0.0)) for r in done) if done else 0.0
    stage_total = sum(stages.values())
    return {
        "offered_ecg_per_s": rate,
        "offered": len(bodies),
        "accepted": len(sent),
        "succeeded": len(done),
        "failed": sum(r[1] == "failed" for r in rows),
        "unfinished": len(ids) - sum(r[1] in {"succeeded", "failed"} for r in rows),
        "throughput_ecg_per_s": len(done) / max(1e-9, last_done - first_post),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p95_ms": percentile(latencies, 95) if latencies else None,
        "stage_mean_ms": {k: round(v, 1) for k, v in stages.items()},
        "stage_share": {k: round(v / stage_total, 3) for k, v in stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 5.0, 20.0])
    parser.add_argument("--seconds", type=float, default=20.0, help="offering time per rate")
    parser.add_argument("--triton-seconds", type=float, default=4.0, help="per Triton measurement")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--skip-triton", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, no GPU",
        "worker_concurrency": args.worker_concurrency,
    }
    if not args.skip_triton:
        report["triton"] = triton_benchmark(tmp, args.triton_seconds)
    stack = Stack(tmp, args.port, args.worker_concurrency)
    try:
        token = stack.start()
        url = f"http://127.0.0.1:{args.port}/fhir/Observation"
        measure_rate(url, token, sample_bodies(6), 2.0, 60)  # warm web and worker processes
        report["end_to_end"] = [
            measure_rate(url, token, sample_bodies(int(rate * args.seconds)), rate, 120) for rate in args.rates
        ]
    finally:
        stack.stop()
    print(json.dumps(report, indent=2))
    for row in report["end_to_end"]:
        print(
            f"offered {row['offered_ecg_per_s']:>5.1f}/s: {row['succeeded']}/{row['offered']} analysed, "
            f"{row['throughput_ecg_per_s']:.1f} ECG/s, p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms; "
            f"shares {row['stage_share']}"
        )


if __name__ == "__main__":
    main()
