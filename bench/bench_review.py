"""Benchmark the review admin: worklist pages over 10,000 pending items and review page renders.

Builds a scratch PostgreSQL database (``cds_bench_review``), bulk-inserts ``--items`` pending flagged
reviews visible to one clinician (plus 10% on a source outside the care team), and times in-process
Django test-client requests (no HTTP server: the figure is the Django + database cost):
- the worklist's first page, a filtered page and a deep page (p50/p95, queries per page);
- the review page of ECGs with real 12-lead 10 s 500 Hz waveforms (p50/p95, queries), and the
  SVG plot alone.
Query counts at two page sizes show whether the list issues a query per row (N+1).
Usage: ``.venv/bin/python bench/bench_review.py [--items 10000] [--repeat 20]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DB = "cds_bench_review"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("AXES_ENABLED", "false")
for _name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(_name, "false")  # the test client speaks plain HTTP
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
FULL_WAVEFORMS = 40  # reviews whose ECG carries a real waveform (the review-page sample)

from deploy.livestack import percentile  # noqa: E402 - after the path setup


def fresh_database() -> None:
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", DB], check=True)


def sample_waveforms() -> list[bytes]:
    import numpy as np
    import wfdb

    folder = REPO / "samples" / "ptbxl" / "records500" / "00000"
    out = []
    for path in sorted(folder.glob("*.hea")):
        record = wfdb.rdrecord(str(path.with_suffix("")))
        out.append(np.ascontiguousarray(np.nan_to_num(record.p_signal.T) * 1000, dtype="<f4").tobytes())
    return out


def populate(items: int) -> None:
    """Insert ``items`` visible pending reviews (+10% outside the care team) with bulk_create."""
    from datetime import timedelta

    import numpy as np
    from django.db import connection
    from django.utils import timezone

    from cds.analysis.models import AnalysisJob, Prediction
    from cds.ecg.models import EcgRecording, Patient
    from cds.fhir.models import StoredResource
    from cds.review.models import Review, ReviewRevision

    rng = np.random.default_rng(0)
    waveforms = sample_waveforms()
    now = timezone.now()
    total = items + items // 10
    n_patients = max(FULL_WAVEFORMS + 1, total // 4)
    resources = StoredResource.objects.bulk_create(
        [
            StoredResource(resource_type="Patient", logical_id=f"p{i}", last_updated=now, content={})
            for i in range(n_patients)
        ]
        + [
            StoredResource(resource_type="Observation", logical_id=f"o{i}", last_updated=now, content={})
            for i in range(total)
        ],
        batch_size=2000,
    )
    patients = Patient.objects.bulk_create(
        [
            Patient(resource=resources[i], logical_id=f"p{i}", gender="female", birth_date="1960")
            for i in range(n_patients)
        ],
        batch_size=2000,
    )
    tiny = np.zeros((12, 1), dtype="<f4").tobytes()
    recordings = EcgRecording.objects.bulk_create(
        [
            EcgRecording(
                resource=resources[n_patients + i],
                logical_id=f"o{i}",
                # Full-waveform ECGs come three per patient on successive days: their review pages
                # also draw the patient's earlier ECGs (up to two rhythm strips).
                patient=patients[i // 3]
                if i < FULL_WAVEFORMS
                else patients[FULL_WAVEFORMS + i % (n_patients - FULL_WAVEFORMS)],
                effective_at=now - timedelta(days=i % 3) if i < FULL_WAVEFORMS else now,
                sample_rate_hz=500.0,
                leads=LEADS,
                # Only the review-page sample needs real samples; the list never reads them.
                n_samples=5000 if i < FULL_WAVEFORMS else 1,
                samples=waveforms[i % len(waveforms)] if i < FULL_WAVEFORMS else tiny,
                age_min_years=64,
                age_max_years=64,
                sex="female",
                waveform_sha256="0" * 64,
                received_from="ward-a" if i < items else "ward-b",
            )  # fmt: skip
            for i in range(total)
        ],
        batch_size=1000,
    )
    jobs = AnalysisJob.objects.bulk_create(
        [
            AnalysisJob(recording=r, status="succeeded", model_name="ecg-anomaly-detector", model_version="1.0.0")
            for r in recordings
        ],
        batch_size=2000,
    )
    amap = np.linspace(0, 1, 12 * 250, dtype="<f2").tobytes()
    scores = rng.uniform(1.0, 4.0, total)
    intervals = [{"lead": "V2", "start_ms": 1000.0, "end_ms": 1400.0, "score": 0.9}]
    predictions = Prediction.objects.bulk_create(
        [
            Prediction(
                job=j,
                recording=j.recording,
                model_name="ecg-anomaly-detector",
                model_version="1.0.0",
                score=float(scores[i]),
                threshold=1.0,
                flagged=True,
                intervals=intervals,
                anomaly_map=amap,
                map_rate_hz=25.0,
                map_leads=LEADS,
            )  # fmt: skip
            for i, j in enumerate(jobs)
        ],
        batch_size=2000,
    )
    reviews = Review.objects.bulk_create(
        [Review(job=p.job, prediction=p, recording=p.recording, priority=p.score or 0.0) for p in predictions],
        batch_size=2000,
    )
    ReviewRevision.objects.bulk_create(
        [
            ReviewRevision(review=r, number=1, kind="ai", intervals=intervals, report_text="sinus rhythm.")
            for r in reviews
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE review_review r SET current_id = rv.id FROM review_reviewrevision rv WHERE rv.review_id = r.id"
        )
        cursor.execute("ANALYZE")


def clinician() -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from cds.review.models import CareTeam, CareTeamSource
    from cds.review.roles import roles_setup

    roles_setup()
    user = get_user_model().objects.create_user("bench-clinician", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="senior clinician"))
    team = CareTeam.objects.create(name="ward a")
    CareTeamSource.objects.create(team=team, source="ward-a")
    team.members.add(user)
    return user


def timed(client: Any, url: str, repeat: int) -> dict[str, Any]:
    return timed_many(client, [url], repeat)


def timed_many(client: Any, urls: list[str], repeat: int) -> dict[str, Any]:
    """GET each URL ``repeat`` times (round robin); wall p50/p95, this process's CPU p50, queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(urls[0])  # warm caches (templates, plans)
    times, cpu, queries = [], [], 0
    for _ in range(repeat):
        for url in urls:
            with CaptureQueriesContext(connection) as captured:
                started, started_cpu = time.perf_counter(), time.process_time()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
            assert response.status_code == 200, (url, response.status_code)
            queries = max(queries, len(captured))
    return {
        "p50_ms": statistics.median(times), "p95_ms": percentile(times, 95), "cpu_p50_ms": statistics.median(cpu),
        "queries": queries,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    fresh_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from cds.review.models import Review

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    populate(args.items)
    print(f"populated {Review.objects.count()} reviews in {time.perf_counter() - started:.1f} s")
    client = Client()
    client.force_login(clinician())
    deep_page = max(1, min(100, args.items // 50))
    results = {
        "worklist page 1 (50 rows)": timed(client, "/admin/review/review/", args.repeat),
        "worklist filtered (status=pending, source=ward-a)": timed(
            client, "/admin/review/review/?status__exact=pending&source=ward-a", args.repeat
        ),
        f"worklist page {deep_page}": timed(client, f"/admin/review/review/?p={deep_page}", args.repeat),
        "worklist search ?q=o1000 (few rows: N+1 check)": timed(client, "/admin/review/review/?q=o1000", args.repeat),
    }
    pks = list(Review.objects.filter(recording__n_samples=5000).values_list("pk", flat=True))
    pages = [f"/admin/review/review/{pk}/change/" for pk in pks]
    results["review page (12 x 1 SVG + earlier ECGs' strips)"] = timed_many(
        client, pages, max(1, args.repeat // len(pks) + 1)
    )
    from cds.review.plots import ecg_paper_svg
    from cds.review.selectors import anomaly_map

    review = Review.objects.select_related("recording", "prediction").get(pk=pks[0])
    plot_times, plot_cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ecg_paper_svg(
            signal_uv=review.recording.waveform(), leads=review.recording.leads, sample_rate_hz=500.0,
            anomaly_map=anomaly_map(review.prediction), map_leads=LEADS, map_rate_hz=25.0,
            intervals=review.prediction.intervals,
        )  # fmt: skip
        plot_times.append((time.perf_counter() - t0) * 1000)
        plot_cpu.append((time.process_time() - c0) * 1000)
    results["SVG plot alone"] = {
        "p50_ms": statistics.median(plot_times),
        "p95_ms": percentile(plot_times, 95),
        "cpu_p50_ms": statistics.median(plot_cpu),
        "queries": 0,
    }
    print(f"| measure ({args.items} pending items) | p50 | p95 | CPU p50 (this process) | queries |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['cpu_p50_ms']:.1f} ms | {r['queries']} |")


if __name__ == "__main__":
    main()
