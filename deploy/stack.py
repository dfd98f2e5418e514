"""Run the service stack locally: ``demo`` (foreground, sends sample ECGs), ``up`` and ``down``.

``demo`` uses the embedded defaults (SQLite, kombu's file-system transport, a local Triton serving
the bundled models) unless the environment says otherwise; ``up``/``down`` run the same processes
in the background, configured by ``DATABASE_URL``, ``CELERY_BROKER_URL`` and ``PORT``.

Triton is the ``tritonserver`` bundled in ``nvidia-pytriton`` (``inference/local_triton.py``; its
own virtualenv ``.venv-triton`` is created on first use), serving
``deploy/triton/model_repository`` with the CPU config variants on ``TRITON_HTTP_PORT`` /
``TRITON_GRPC_PORT`` / ``TRITON_METRICS_PORT`` (8100-8102). ``INFERENCE_BACKEND=inprocess`` skips
it and runs the models inside the worker instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VAR = Path(os.environ.get("CDS_VAR_DIR", REPO / "var"))
PIDS = VAR / "pids"
LOGS = VAR / "logs"
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
BIN = Path(sys.executable).parent


def stack_env(embedded: bool) -> dict[str, str]:
    """Return the environment for web and worker processes."""
    env = dict(os.environ)
    env.setdefault("CDS_VAR_DIR", str(VAR))
    if embedded:
        # kombu's file-system transport expects its folders to exist.
        for folder in ("celery-queue", "celery-processed", "celery-control"):
            (VAR / folder).mkdir(parents=True, exist_ok=True)
        env.setdefault("DEBUG", "true")
        env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'demo.sqlite3'}")
        env.setdefault("CELERY_BROKER_URL", "filesystem://")
    # The local stack serves plain HTTP on 127.0.0.1 and its demo client uses a shared secret; a
    # deployment behind a TLS proxy uses the production defaults instead (docs/security.md).
    env.setdefault("SECURE_SSL_REDIRECT", "false")
    env.setdefault("OAUTH_ALLOW_CLIENT_SECRET", "true")
    port = env.setdefault("PORT", "8080")
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    env.setdefault("INFERENCE_BACKEND", "triton")
    if env["INFERENCE_BACKEND"] == "triton":
        env.setdefault("TRITON_HTTP_PORT", "8100")
        env.setdefault("TRITON_GRPC_PORT", "8101")
        env.setdefault("TRITON_METRICS_PORT", "8102")
        env.setdefault("TRITON_URL", f"127.0.0.1:{env['TRITON_GRPC_PORT']}")
        env.setdefault("TRITON_PROTOCOL", "grpc")
        env.setdefault("TRITON_HTTP_URL", f"127.0.0.1:{env['TRITON_HTTP_PORT']}")
    return env


def triton_command(env: dict[str, str]) -> list[str] | None:
    """Return the local Triton's command line, or None when the models run in-process."""
    if env["INFERENCE_BACKEND"] != "triton":
        return None
    # Create or verify the server's own virtualenv first (minutes on a fresh machine, then instant).
    subprocess.run([str(BIN / "python"), "-m", "inference.local_triton", "install"], cwd=REPO, env=env, check=True)
    return [
        str(BIN / "python"),
        "-m",
        "inference.local_triton",
        "serve",
        "--repository",
        str(REPO / "deploy" / "triton" / "model_repository"),
        "--config-name",
        "cpu",
        "--http-port",
        env["TRITON_HTTP_PORT"],
        "--grpc-port",
        env["TRITON_GRPC_PORT"],
        "--metrics-port",
        env["TRITON_METRICS_PORT"],
        "--work-dir",
        str(VAR / "triton"),
    ]


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    """Run ``manage.py`` with ``args`` and return its stdout when ``capture``."""
    result = subprocess.run(
        [str(BIN / "python"), str(REPO / "manage.py"), *args],
        env=env,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def start_processes(env: dict[str, str], *, background: bool) -> dict[str, subprocess.Popen[bytes]]:
    """Start Triton (unless in-process), gunicorn (web) and a Celery worker; return them by name."""
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    commands: dict[str, list[str]] = {}
    triton = triton_command(env)
    if triton:
        commands["triton"] = triton
    commands |= {
        "web": [
            str(BIN / "gunicorn"),
            "cds.wsgi:application",
            "--bind",
            f"127.0.0.1:{env['PORT']}",
            "--workers",
            env.get("WEB_CONCURRENCY", "2"),
            "--access-logfile",
            "-",
            # Path only, no query string: searches carry patient identifiers (no PHI in logs).
            "--access-logformat",
            '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s',
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "cds",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            env.get("WORKER_CONCURRENCY", "1"),
            "-Q",
            "analysis",
        ],
    }
    processes = {}
    for name, command in commands.items():
        log = (LOGS / f"{name}.log").open("ab")
        processes[name] = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=background
        )
        (PIDS / f"{name}.pid").write_text(str(processes[name].pid))
    wait_for_http(f"http://127.0.0.1:{env['PORT']}/healthz", timeout_s=60)
    if triton:
        wait_for_http(f"http://127.0.0.1:{env['TRITON_HTTP_PORT']}/v2/health/ready", timeout_s=120)
    return processes


def wait_for_http(url: str, *, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200 or the timeout passes (then raise)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset or timed out while the server boots
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s; see {LOGS}")


def http_json(method: str, url: str, body: Any = None, token: str | None = None, form: bool = False) -> tuple[int, Any]:
    """Send one request and return ``(status, parsed JSON)``."""
    headers = {"Accept": "application/json" if form else "application/fhir+json"}
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/fhir+json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def sample_ecgs() -> list[dict[str, Any]]:
    """Return the bundled sample ECGs as an EHR would hold them: patient, signal in µV, labels.

    ``samples/ptbxl`` (PTB-XL layout) and ``samples/challenge`` (PhysioNet/CinC Challenge WFDB
    records from other hospitals, with AF and bundle branch blocks; see samples/README.md).
    """
    import numpy as np
    import pandas as pd
    import wfdb

    ecgs = []
    samples = REPO / "samples" / "ptbxl"
    for row in pd.read_csv(samples / "ptbxl_database.csv").itertuples():
        record = wfdb.rdrecord(str(samples / row.filename_hr))
        ecgs.append(
            {
                "name": str(row.ecg_id),
                "labels": str(row.scp_codes),
                "signal_uv": np.nan_to_num(record.p_signal.T) * 1000.0,
                "rate_hz": record.fs,
                "patient": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:demo:ptbxl:patient", "value": str(int(row.patient_id))}],
                    "gender": "male" if row.sex == 0 else "female",
                    "birthDate": str(int(str(row.recording_date)[:4]) - int(row.age)) if row.age == row.age else None,
                },
                "identifier": ("urn:demo:ptbxl:ecg", str(row.ecg_id)),
                "effective": str(row.recording_date).replace(" ", "T") + "Z",
            }
        )
    for header in sorted((REPO / "samples" / "challenge").glob("*.hea")):
        record = wfdb.rdrecord(str(header.with_suffix("")))
        names = [name.lower() for name in record.sig_name]
        order = [names.index(lead.lower()) for lead in LEADS]
        meta = dict(c.split(":", 1) for c in record.comments if ":" in c)
        meta = {k.strip().lower(): v.strip() for k, v in meta.items()}
        age = meta.get("age", "")
        ecgs.append(
            {
                "name": header.stem,
                "labels": f"SNOMED {meta.get('dx', '')}",
                "signal_uv": np.nan_to_num(record.p_signal.T[order]) * 1000.0,
                "rate_hz": record.fs,
                "patient": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:demo:challenge:patient", "value": header.stem}],
                    "gender": {"male": "male", "female": "female"}.get(meta.get("sex", "").lower(), "unknown"),
                    "birthDate": str(2020 - int(age)) if age.isdigit() else None,
                },
                "identifier": ("urn:demo:challenge:ecg", header.stem),
                "effective": "2020-06-01T10:00:00Z",
            }
        )
    return ecgs


def send_samples(env: dict[str, str]) -> None:
    """Act as an EHR: get a token, send each sample ECG with its patient, wait for the jobs."""
    sys.path.insert(0, str(REPO))
    from cds.ecg.encoding import ecg_observation, ecg_transaction_bundle

    base = env["PUBLIC_BASE_URL"]
    credentials = json.loads(manage(env, "create_api_client", "demo-ehr", "--organization", "demo", capture=True))
    token_status, token_body = http_json(
        "POST",
        credentials["token_url"],
        {
            "grant_type": "client_credentials",
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
        },
        form=True,
    )
    if token_status != 200:
        raise RuntimeError(f"token request failed: HTTP {token_status} {token_body}")
    token = token_body["access_token"]
    ecgs = list(sample_ecgs())
    print(f"\nSending {len(ecgs)} sample ECGs (PTB-XL, Challenge) to {base}/fhir as transaction Bundles ...")
    observation_ids = []
    for ecg in ecgs:
        patient = {k: v for k, v in ecg["patient"].items() if v is not None}
        observation = ecg_observation(
            ecg["signal_uv"],
            sample_rate_hz=ecg["rate_hz"],
            leads=list(LEADS),
            identifier=ecg["identifier"],
            effective=ecg["effective"],
        )
        started = time.perf_counter()
        status, body = http_json(
            "POST", f"{base}/fhir", ecg_transaction_bundle(patient=patient, observation=observation), token
        )
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            print(f"  ecg {ecg['name']}: HTTP {status}: {json.dumps(body)[:300]}")
            continue
        location = body["entry"][1]["response"]["location"]
        observation_ids.append(location.split("/")[1])
        print(
            f"  ecg {ecg['name']:>7} ({ecg['labels'][:40]:<40}) -> {body['entry'][1]['response']['status']:<11} {location}  {elapsed:.0f} ms"
        )
    print("\nWaiting for the analysis jobs ...")
    deadline = time.monotonic() + 120
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = manage(env, "analysis_jobs", "--json", capture=True)
        states = {job["observation"]: job["status"] for job in json.loads(out)}
        if all(states.get(oid) in {"succeeded", "failed"} for oid in observation_ids):
            break
        time.sleep(1)
    jobs = {job["observation"]: job for job in json.loads(manage(env, "analysis_jobs", "--json", capture=True))}
    for oid in observation_ids:
        job = jobs.get(oid, {})
        finding = ""
        if job.get("score") is not None:
            # The one verdict (the interpretation's; the detector's flag for jobs without one).
            flag = "FLAGGED" if job["flagged"] else "not flagged"
            words = ", ".join(w for w in (job.get("verdict"), job.get("urgency")) if w)
            finding = f"  {flag}{f' ({words})' if words else ''}; anomaly score {job['score']:+.2f}"
            finding += f" (operating point {job['threshold']:+.2f})"
            finding += f", {job['intervals']} localized interval(s)" if job["intervals"] else ""
        elif job.get("error"):
            finding = f"  {job['error'][:120]}"
        print(f"  Observation/{oid}: job {states.get(oid, 'unknown')}{finding}")
        print_draft(job)
    print("\nDecision support only: every finding is preliminary until a clinician signs it.")
    print(
        f"\nWhere to look:\n  FHIR API      {base}/fhir/metadata (CapabilityStatement, no token needed)\n"
        f"  Search        curl -H 'Authorization: Bearer {token}' '{base}/fhir/Observation?_count=5'\n"
        f"  Results       curl -H 'Authorization: Bearer {token}' '{base}/fhir/Observation?derived-from=Observation/{observation_ids[0] if observation_ids else 'ID'}'\n"
        f"  CDS Hooks     {base}/cds-services\n"
        f"  Health        {base}/healthz\n  Logs          {LOGS}\n"
    )


def print_draft(job: dict[str, Any]) -> None:
    """Print a job's draft report: the grounded report (the interpretation's), with its findings."""
    if not job.get("report_text"):
        return
    source = "" if job.get("verdict") else " (the report model's text: no interpretation for this job)"
    print(f"      draft report: {job['report_text']!r}{source}")
    if job.get("findings"):
        print(f"      findings: {'; '.join(job['findings'])}")
    extras = []
    if job.get("probability_abnormal") is not None:
        extras.append(f"P(abnormal) {job['probability_abnormal']:.2f}")
    if job.get("reannotation_value") is not None:
        extras.append(f"re-annotation value {job['reannotation_value']:.2f}")
    if extras:
        print(f"      ({', '.join(extras)})")


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop the processes: SIGTERM, then SIGKILL after 10 s."""
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    for process in processes.values():
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def command_demo() -> None:
    """Run the embedded stack in the foreground, send the samples, serve until Ctrl-C."""
    env = stack_env(embedded=True)
    VAR.mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "--no-input", "-v", "0")
    processes = start_processes(env, background=False)
    try:
        send_samples(env)
        print("Serving until Ctrl-C ...")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
        print("a stack process exited; see the logs", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        stop(processes)


def command_up() -> None:
    """Migrate and start web and worker in the background (pid files under var/pids)."""
    env = stack_env(embedded=os.environ.get("DATABASE_URL") is None)
    VAR.mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "--no-input", "-v", "0")
    start_processes(env, background=True)
    print(f"up: web on {env['PUBLIC_BASE_URL']} , worker running; logs in {LOGS}")


def command_down() -> None:
    """Stop what ``up`` started."""
    for pid_file in sorted(PIDS.glob("*.pid")) if PIDS.exists() else []:
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink()
        print(f"down: stopped {pid_file.stem} ({pid})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["demo", "up", "down"])
    {"demo": command_demo, "up": command_up, "down": command_down}[parser.parse_args().command]()
