"""Peak Python memory (tracemalloc) of the web process for 32 MiB FHIR requests (issue 13, item 8).

Runs Django in-process against a scratch PostgreSQL database (``cds_bench_memory``, migrated
here) and posts three bodies just under ``FHIR_MAX_BODY_BYTES`` (32 MiB), measuring the peak of
traced allocations (numpy's included) during each request:

- ``resource``: one ECG Observation whose lead I holds ~6.7 million samples, POST /fhir/Observation
  with a token;
- ``nul_anonymous``: a Patient holding a ``\\u0000`` escape, POST /fhir/Patient without a token;
- ``bundle``: a transaction Bundle with that Observation as its entry, POST /fhir with a token.

The figures include the Django test client's copy of the body (about 1x). Run it against any
checkout (the code measured is the one on PYTHONPATH):
``PYTHONPATH=. DATABASE_URL=postgres://postgres@127.0.0.1:5432/cds_bench_memory .venv/bin/python bench/bench_request_memory.py``
"""

from __future__ import annotations

import io
import json
import os
import time
import tracemalloc
from contextlib import redirect_stdout
from urllib.parse import urlencode

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("OAUTH_ALLOW_CLIENT_SECRET", "true")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")

MIB = 1024 * 1024
TARGET = 32 * MIB - 4096


def observation_of(size: int) -> dict[str, object]:
    """Return an ECG Observation (one lead) whose JSON is about ``size`` bytes."""
    head = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "11524-6"}]},
        "identifier": [{"system": "urn:bench", "value": f"mem-{time.time_ns()}"}],
        "component": [
            {
                "code": {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.24", "code": "131329"}]},
                "valueSampledData": {"origin": {"value": 0, "unit": "uV"}, "period": 2, "dimensions": 1, "data": ""},
            }
        ],
    }
    room = size - len(json.dumps(head))
    head["component"][0]["valueSampledData"]["data"] = " ".join(["-1234"] * (room // 6))  # type: ignore[index]
    return head


def measure(client: object, path: str, body: bytes, headers: dict[str, str]) -> dict[str, object]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    response = client.post(path, data=body, content_type="application/fhir+json", **headers)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"status": response.status_code, "peak_mib": round(peak / MIB, 1), "seconds": round(seconds, 2)}


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    with redirect_stdout(out):
        call_command(
            "create_api_client", f"bench-{time.time_ns()}", "--organization", "bench", "--scopes", "system/*.cruds"
        )
    credentials = json.loads(out.getvalue())
    client = Client()
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials["client_id"],
        "client_secret": credentials["client_secret"],
    }
    token = client.post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded").json()[
        "access_token"
    ]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    resource = json.dumps(observation_of(TARGET)).encode()
    patient = {"resourceType": "Patient", "extension": [{"url": "urn:x", "valueString": "x" * 1000}] * (TARGET // 1050)}
    nul = json.dumps(patient).encode().replace(b"x" * 6, b"\\u0000", 1)
    entry = {"resource": observation_of(TARGET - 200), "request": {"method": "POST", "url": "Observation"}}
    bundle = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}).encode()
    results = {
        "resource": (len(resource), measure(client, "/fhir/Observation", resource, auth)),
        "nul_anonymous": (len(nul), measure(client, "/fhir/Patient", nul, {})),
        "bundle": (len(bundle), measure(client, "/fhir", bundle, auth)),
    }
    for name, (size, figures) in results.items():
        print(json.dumps({"case": name, "body_mib": round(size / MIB, 1), **figures}))


if __name__ == "__main__":
    main()
