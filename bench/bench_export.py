"""Benchmark the Bulk Data export task (issue 15): resources per second written as NDJSON.

Builds a scratch PostgreSQL database (``cds_bench_export``) holding ``--ecgs`` stored 12-lead 10 s
500 Hz ECG Observations (one real PTB-XL record under new ids, through the FHIR store, not analysed)
and as many Patients, then runs the export task body in-process (no broker) into a temporary
directory, ``--repeat`` times, and prints resources/s and MB/s of NDJSON written.
Usage: ``.venv/bin/python bench/bench_export.py [--ecgs 1000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DB = "cds_bench_export"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")


def setup(ecgs: int) -> int:
    """Create the database with ``ecgs`` ECGs and Patients; return the organisation's pk."""
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", DB], check=True)
    import django

    django.setup()
    from django.core.management import call_command

    from cds.core.models import Organization
    from cds.ecg.encoding import ecg_observation
    from cds.fhir.services import fhir_resource_store
    from tests.conftest import LEADS_12, read_sample_record

    call_command("migrate", verbosity=0)
    organization = Organization.objects.create(slug="org-a", name="org-a")
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
        patient = {"resourceType": "Patient", "gender": "female", "birthDate": "1960"}
        fhir_resource_store(resource_type="Patient", content=patient, source="bench", organization_id=organization.pk)
    return int(organization.pk)


def run_once(organization_id: int, directory: Path) -> tuple[float, int, int]:
    """Run one export of Patient and Observation; return (seconds, resources, bytes)."""
    from django.conf import settings
    from django.utils import timezone

    from cds.fhir.bulk import bulk_export_run, export_directory
    from cds.fhir.models import BulkExport

    settings.BULK_EXPORT_DIR = directory
    export = BulkExport.objects.create(
        id=uuid.uuid4(),
        organization_id=organization_id,
        client_id="bench",
        request_url="bench",
        types=["Patient", "Observation"],
        transaction_time=timezone.now(),
    )
    started = time.perf_counter()
    assert bulk_export_run(str(export.pk)) == "completed"
    seconds = time.perf_counter() - started
    export.refresh_from_db()
    size = sum(p.stat().st_size for p in export_directory(export.pk).iterdir())
    return seconds, sum(e["count"] for e in export.output), size


def baseline_once(organization_id: int, directory: Path) -> tuple[float, int]:
    """Read the same current resources as text and write them one per line: the floor an export can reach.

    No snapshot, scopes, parts, progress or manifest: one query, one file. The export's time over this
    is what the task itself adds (a ratio, which holds on a noisy machine where absolute times do not).
    """
    from django.db import connection

    from cds.fhir.models import StoredResource

    table = StoredResource._meta.db_table
    started = time.perf_counter()
    lines = 0
    with connection.cursor() as cursor, (directory / "baseline.ndjson").open("w", encoding="utf-8") as out:
        cursor.execute(
            f"SELECT content::text FROM {table} WHERE organization_id = %s AND is_current "  # noqa: S608 table name from the model
            "AND resource_type IN ('Patient', 'Observation')",
            [organization_id],
        )
        for (text,) in cursor:
            out.write(text.replace("\n", " ") + "\n")
            lines += 1
    return time.perf_counter() - started, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecgs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    organization_id = setup(args.ecgs)
    with tempfile.TemporaryDirectory() as tmp:
        runs, floors = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            runs.append(run_once(organization_id, Path(tmp)))
            floors.append(baseline_once(organization_id, Path(tmp)))
    seconds = statistics.median(r[0] for r in runs)
    floor = statistics.median(f[0] for f in floors)
    resources, size = runs[0][1], runs[0][2]
    assert floors[0][1] == resources, (floors[0][1], resources)
    print(f"{resources} resources ({args.ecgs} ECG Observations + {args.ecgs} Patients), {size / 1e6:.1f} MB NDJSON")
    print(
        f"median of {args.repeat}: {seconds:.2f} s = {resources / seconds:.0f} resources/s, {size / 1e6 / seconds:.1f} MB/s"
    )
    print(f"baseline (one query, one file, same rows): {floor:.2f} s; export / baseline = {seconds / floor:.2f}x")


if __name__ == "__main__":
    main()
