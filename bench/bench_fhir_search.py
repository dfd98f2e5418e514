"""Benchmark FHIR searches of ECG Observations: lean vs whole results, keyset vs offset pages (issue 15).

Builds a scratch PostgreSQL database (``cds_bench_fhir``) holding ``--ecgs`` stored 12-lead 10 s
500 Hz ECG Observations (one real PTB-XL record, stored under new ids through the FHIR store, not
analysed), and times in-process Django test-client searches (no HTTP server) of 20 per page:
the default search (waveform samples left out), ``_summary=false`` (whole resources), ``_count=0``,
and a deep page reached by keyset (``_cursor``) against the same depth by ``_offset``.
Usage: ``.venv/bin/python bench/bench_fhir_search.py [--ecgs 500] [--repeat 20]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DB = "cds_bench_fhir"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("PUBLIC_BASE_URL", "http://testserver")
os.environ.setdefault("OAUTH_ALLOW_CLIENT_SECRET", "true")
for _name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(_name, "false")  # the test client speaks plain HTTP
QUERY = "code=http://loinc.org|11524-6&_count=20"


def setup(ecgs: int) -> str:
    """Create the database, ``ecgs`` stored ECGs and an API client; return a bearer token."""
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", DB], check=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from cds.core.models import Organization
    from cds.ecg.encoding import ecg_observation
    from cds.fhir.services import fhir_resource_store
    from tests.conftest import LEADS_12, read_sample_record

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    call_command("create_api_client", "bench", scopes="system/*.rs", organization="org-a", stdout=out)
    credentials = json.loads(out.getvalue())
    organization = Organization.objects.get(slug="org-a")
    samples, header = read_sample_record(9)
    for i in range(ecgs):
        content = ecg_observation(
            samples,
            sample_rate_hz=header["fs"],
            leads=LEADS_12,
            identifier=("urn:bench", f"e{i}"),
            effective="2024-03-01T10:00:00Z",
        )
        fhir_resource_store(
            resource_type="Observation", content=content, source="bench", organization_id=organization.pk
        )
    form = {"grant_type": "client_credentials", **{k: credentials[k] for k in ("client_id", "client_secret")}}
    response = Client().post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded")
    return str(response.json()["access_token"])


def timed(client: Any, token: str, url: str, repeat: int) -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
        size = len(response.content)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ecgs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    token = setup(args.ecgs)
    from django.test import Client

    client = Client()
    depth = (args.ecgs // 20 - 2) * 20
    page = client.get(f"/fhir/Observation?{QUERY}", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    for _ in range(depth // 20):  # walk to the deep page by its next links
        url = next(link["url"] for link in page["link"] if link["relation"] == "next").removeprefix("http://testserver")
        page = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").json()
    cursor_url = next(link["url"] for link in page["link"] if link["relation"] == "self").removeprefix(
        "http://testserver"
    )
    cases = {
        "default (no samples)": f"/fhir/Observation?{QUERY}",
        "_summary=false (whole)": f"/fhir/Observation?{QUERY}&_summary=false",
        "_count=0 (total only)": "/fhir/Observation?code=http://loinc.org|11524-6&_count=0",
        f"keyset page at {depth}": cursor_url,
        f"offset page at {depth}": f"/fhir/Observation?{QUERY}&_offset={depth}",
    }
    print(f"{args.ecgs} ECGs, {args.repeat} requests each")
    print("| search | p50 | p95 | bytes |\n|---|---|---|---|")
    for name, url in cases.items():
        p50, p95, size = timed(client, token, url, args.repeat)
        print(f"| {name} | {p50:.0f} ms | {p95:.0f} ms | {size:,} |")


if __name__ == "__main__":
    main()
