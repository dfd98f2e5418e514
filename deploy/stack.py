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
import secrets
import shutil
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
    # Over plain HTTP a browser drops Secure cookies: without these the admin login loops.
    env.setdefault("SESSION_COOKIE_SECURE", "false")
    env.setdefault("CSRF_COOKIE_SECURE", "false")
    env.setdefault("OAUTH_ALLOW_CLIENT_SECRET", "true")
    # Local demo logins use passwords alone (system check cds.W030 says so); deployments require OTP.
    env.setdefault("ADMIN_OTP_REQUIRED", "false")
    env.setdefault("ADMIN_OTP_LOCAL_OPT_OUT", "true")
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


def ensure_secret_key(env: dict[str, str]) -> str | None:
    """Point ``env`` at a local SECRET_KEY file when neither SECRET_KEY nor SECRET_KEY_FILE is set.

    Generated once under ``var/`` (mode 0600) and kept, so sessions survive a restart. Returns a
    line saying so, or None when the environment brought its own key.
    """
    if env.get("SECRET_KEY") or env.get("SECRET_KEY_FILE"):
        return None
    path = VAR / "secret_key"
    env["SECRET_KEY_FILE"] = str(path)
    if path.exists():
        return f"SECRET_KEY: the local one in {path}"
    VAR.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(secrets.token_urlsafe(50))
    return f"SECRET_KEY: none set, so generated a local one in {path} (this machine only; production sets its own)"


def redact_url(url: str) -> str:
    """Return ``url`` without its password (for printing database and broker URLs)."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.password:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))


def where_everything_is(env: dict[str, str], processes: list[str]) -> str:
    """Return the 'where to look' block printed by ``up`` and ``demo``."""
    base = env["PUBLIC_BASE_URL"]
    lines = [
        f"  Web           {base}  ({', '.join(processes)} running)",
        f"  FHIR API      {base}/fhir/metadata (CapabilityStatement, no token needed)",
        f"  CDS Hooks     {base}/cds-services",
        f"  Worklist      {base}/admin/review/review/  (clinicians: flagged ECGs of their care teams)",
        f"  Re-annotation {base}/admin/review/reannotationreview/",
        f"  Quality       {base}/admin/review/qualityprediction/dashboard/  (quality auditors)",
        f"  Metrics       {base}/metrics (Prometheus)"
        + (
            f", analysis worker http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics"
            if env.get("WORKER_METRICS_PORT")
            else ""
        ),
        f"  Health        {base}/healthz, {base}/readyz",
        f"  Database      {redact_url(env.get('DATABASE_URL', ''))}",
        f"  Broker        {redact_url(env.get('CELERY_BROKER_URL', ''))}",
    ]
    if env["INFERENCE_BACKEND"] == "triton":
        lines.append(
            f"  Triton        http://{env['TRITON_HTTP_URL']} (gRPC {env['TRITON_URL']}, "
            f"metrics http://127.0.0.1:{env['TRITON_METRICS_PORT']}/metrics)"
        )
    else:
        lines.append("  Models        in-process (INFERENCE_BACKEND=inprocess)")
    lines += [f"  Logs          {LOGS}/*.log", f"  PIDs          {PIDS}  (make down stops them)"]
    return "Where to look:\n" + "\n".join(lines)


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
        # One worker per queue (cds/settings.py): a slow EHR or a sweep never holds an analysis slot.
        "worker": worker(env.get("CELERY_TASK_DEFAULT_QUEUE", "analysis"), env.get("WORKER_CONCURRENCY", "1")),
        "worker-writeback": worker(env.get("CELERY_WRITEBACK_QUEUE", "writeback"), "1"),
        "worker-maintenance": worker(env.get("CELERY_MAINTENANCE_QUEUE", "maintenance"), "1"),
        "worker-shadow": worker(env.get("CELERY_SHADOW_QUEUE", "shadow"), "1"),  # candidates in shadow (issue 19)
        # The periodic sweeps (lost analysis jobs, write-back retries); its schedule file lives in var/.
        "beat": [
            str(BIN / "celery"),
            "-A",
            "cds",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(VAR / "celerybeat-schedule"),
        ],
    }
    processes = {}
    for name, command in commands.items():
        log = (LOGS / f"{name}.log").open("ab")
        processes[name] = subprocess.Popen(
            command,
            cwd=REPO,
            env=process_env(env, name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=background,
        )
        (PIDS / f"{name}.pid").write_text(str(processes[name].pid))
    wait_for_http(f"http://127.0.0.1:{env['PORT']}/healthz", timeout_s=60)
    if triton:
        wait_for_http(f"http://127.0.0.1:{env['TRITON_HTTP_PORT']}/v2/health/ready", timeout_s=120)
    return processes


def process_env(env: dict[str, str], name: str) -> dict[str, str]:
    """Return ``name``'s environment: its own, emptied Prometheus multiprocess directory (web, workers)."""
    if name in {"triton", "beat"}:
        return env
    # Forked gunicorn/Celery children add up their metrics in one directory per process group;
    # files of a previous run would be added in too.
    folder = VAR / "metrics" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    own = {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    if name != "worker":  # one metrics port per machine: the analysis worker's
        own.pop("WORKER_METRICS_PORT", None)
    return own


def worker(queue: str, concurrency: str) -> list[str]:
    """Return the command line of a Celery worker consuming ``queue``."""
    name = f"{queue}@%h"
    return [
        str(BIN / "celery"),
        "-A",
        "cds",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        concurrency,
        "-Q",
        queue,
        "-n",
        name,
    ]


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


def send_samples(env: dict[str, str]) -> str:
    """Act as an EHR: get a token, send each sample ECG with its patient, wait for the jobs; return the client id."""
    sys.path.insert(0, str(REPO))
    from cds.ecg.encoding import ecg_observation, ecg_transaction_bundle

    base = env["PUBLIC_BASE_URL"]
    # The default scopes plus DocumentReference: the demo also sends ECG documents (DICOM, aECG, MUSE, Philips).
    scopes = "system/Patient.crs system/Observation.crs system/DocumentReference.crs"
    credentials = json.loads(
        manage(env, "create_api_client", "demo-ehr", "--organization", "demo", "--scopes", scopes, capture=True)
    )
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
    if ecgs:
        observation_ids += send_documents(base, token, ecgs[0])
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
            finding = f"  {flag}{f' ({words})' if words else ''}; "
            if job.get("combined_probability") is not None and job.get("combined_threshold") is not None:
                # The verdict's own evidence first: the detector's score alone is not what flags.
                finding += f"combined evidence {job['combined_probability']:.2f} (operating point {job['combined_threshold']:.2f}), "
                finding += f"detector score {job['score']:+.2f}"
            else:
                finding += f"anomaly score {job['score']:+.2f} (operating point {job['threshold']:+.2f})"
            finding += f", {job['boxes']} localized region(s)" if job.get("boxes") else ""
        elif job.get("error"):
            finding = f"  {job['error'][:120]}"
        print(f"  Observation/{oid}: job {states.get(oid, 'unknown')}{finding}")
        print_draft(job)
    print("\nDecision support only: every finding is preliminary until a clinician signs it.")
    print(
        f"\nAs the EHR (token valid {token_body.get('expires_in')} s; `manage.py create_api_client` for your own):\n"
        f"  Search        curl -H 'Authorization: Bearer {token}' '{base}/fhir/Observation?_count=5'\n"
        f"  Results       curl -H 'Authorization: Bearer {token}' '{base}/fhir/Observation?derived-from=Observation/{observation_ids[0] if observation_ids else 'ID'}'"
    )
    return str(credentials["client_id"])


def send_documents(base: str, token: str, ecg: dict[str, Any]) -> list[str]:
    """Send one ECG in each hospital document format (issue 18) as a DocumentReference; return the ECG ids."""
    import base64
    import uuid

    import numpy as np

    from cds.ecg.aecg import aecg_write
    from cds.ecg.dicom_ecg import dicom_ecg_write
    from cds.ecg.muse import muse_write

    signal, rate, name = ecg["signal_uv"], int(ecg["rate_hz"]), ecg["name"]
    muse_leads = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    documents = {
        "application/dicom": dicom_ecg_write(
            signal, sample_rate_hz=rate, leads=LEADS, acquisition="20240301100000+0000"
        ),
        "text/xml": aecg_write(
            signal, sample_rate_hz=rate, leads=LEADS, document_id=f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"
        ),
        "application/xml": muse_write(
            np.stack([signal[LEADS.index(lead)] for lead in muse_leads]), sample_rate_hz=rate, leads=muse_leads
        ),
    }
    print(
        f"\nSending ECG {name} again as DICOM, HL7 aECG and GE MUSE documents, and a Philips ECG (DocumentReference) ..."
    )
    ids = []
    # Philips XML is XLI-compressed and nothing writes it: send the bundled real sample (samples/README.md).
    sent = [*documents.items(), ("text/xml", (REPO / "samples" / "philips" / "129DYPRG.xml").read_bytes())]
    for content_type, data in sent:
        document = {
            "resourceType": "DocumentReference",
            "status": "current",
            "identifier": [{"system": "urn:demo:document", "value": f"{name}-{content_type}-{len(data)}"}],
            "content": [{"attachment": {"contentType": content_type, "data": base64.b64encode(data).decode()}}],
        }
        status, body = http_json("POST", f"{base}/fhir/DocumentReference", document, token)
        if status not in (200, 201):
            print(f"  {content_type}: HTTP {status}: {json.dumps(body)[:300]}")
            continue
        _, found = http_json("GET", f"{base}/fhir/Observation?derived-from=DocumentReference/{body['id']}", None, token)
        ecg_id = found["entry"][0]["resource"]["id"] if found.get("entry") else None
        print(
            f"  {content_type:<17} ({len(data):>7} bytes) -> DocumentReference/{body['id']}  ECG Observation/{ecg_id}"
        )
        ids += [ecg_id] if ecg_id else []
    return ids


def print_demo_users(env: dict[str, str], source: str) -> None:
    """Create the demo users (one per role, clinicians on the care team of ``source``) and print their way in."""
    demo = json.loads(manage(env, "demo_users", "--source", source, capture=True))
    base = env["PUBLIC_BASE_URL"]
    print(f"\nDemo logins at {base}/admin/ (local only; new passwords on every run; care team {demo['care_team']!r}):")
    views = {
        "clinician": f"worklist {base}/admin/review/review/",
        "senior clinician": f"worklist {base}/admin/review/review/ (can sign)",
        "quality auditor": f"dashboard {base}/admin/review/qualityprediction/dashboard/",
    }
    for user in demo["users"]:
        print(f"  {user['role']:<17} {user['username']:<15} {user['password']:<18} {views[user['role']]}")
    if demo["flagged_reviews"]:
        print(f"  First review  {base}/admin/review/review/{demo['flagged_reviews'][0]}/change/")


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


def stop(processes: dict[str, subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """Stop the processes: SIGTERM to all, then SIGKILL to what is still running after ``grace_s`` in all.

    One shared deadline, not ``grace_s`` per process: with a worker per queue, beat, web and Triton,
    waiting in turn could take a minute before Ctrl-C returns.
    """
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def prepare(env: dict[str, str]) -> list[str]:
    """Secret key, migrations and (outside DEBUG) static files; return lines worth telling the user."""
    notes = [note] if (note := ensure_secret_key(env)) else []
    VAR.mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "--no-input", "-v", "0")
    if env.get("DEBUG", "false").lower() not in {"1", "true", "yes", "on"}:
        # Production settings serve STATIC_ROOT (WhiteNoise, hashed names): fill it as the image build does.
        manage(env, "collectstatic", "--no-input", "-v", "0")
    return notes


def command_demo() -> None:
    """Run the embedded stack in the foreground, send the samples, serve until Ctrl-C."""
    # Ctrl-C stops the demo even when its shell started it with SIGINT ignored (a background job of a
    # non-interactive shell, e.g. under nohup or CI), where Python would otherwise keep it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    env = stack_env(embedded=True)
    notes = prepare(env)
    processes = start_processes(env, background=False)
    try:
        source = send_samples(env)
        print_demo_users(env, source)
        print("", *notes, where_everything_is(env, list(processes)), sep="\n")
        print("\nServing until Ctrl-C ...")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
        print("a stack process exited; see the logs", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        stop(processes)


def command_up() -> None:
    """Migrate and start Triton, web, worker and beat in the background (pid files under var/pids)."""
    env = stack_env(embedded=os.environ.get("DATABASE_URL") is None)
    notes = prepare(env)
    processes = start_processes(env, background=True)
    print("up: the stack is running in the background.", *notes, where_everything_is(env, list(processes)), sep="\n")
    print("  Demo logins   make demo, or: .venv/bin/python manage.py demo_users --source CLIENT_ID")


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
