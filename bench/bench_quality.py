"""Benchmark the quality report and the drift check (issue 19) on a scratch database.

Builds ``cds_bench_quality`` and bulk-inserts ``--items`` served verdicts (``ecg-interpretation``)
over 6 sites, 2 sexes, 5 age bands and 2 sampling rates, ``--signed`` of them with a signed review;
each recording carries a real 12-lead 10 s 500 Hz PTB-XL waveform (the drift check reads them).
Times ``quality_report`` (1000 bootstrap resamples, what the command and the dashboard compute) and
``check_drift`` for one day against a 14-day reference (``--per-day`` ECGs per site and day).
Usage: ``.venv/bin/python bench/bench_quality.py [--items 10000] [--signed 0.3] [--per-day 20]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DB = "cds_bench_quality"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
SITES = ["ward-a", "ward-b", "ward-c", "icu", "ed", "clinic"]


def fresh_database() -> None:
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", DB], check=True)


def waveforms() -> list[bytes]:
    import numpy as np
    import wfdb

    folder = REPO / "samples" / "ptbxl" / "records500" / "00000"
    return [
        np.ascontiguousarray(
            np.nan_to_num(wfdb.rdrecord(str(p.with_suffix(""))).p_signal.T) * 1000, dtype="<f4"
        ).tobytes()
        for p in sorted(folder.glob("*.hea"))
    ]


def populate(items: int, signed: float, days: int) -> None:
    """Insert ``items`` served verdicts spread over ``days`` days; ``signed`` of them reviewed and signed."""
    from datetime import timedelta

    import numpy as np
    from django.utils import timezone

    from cds.analysis.models import AnalysisJob, Prediction
    from cds.core.models import Organization
    from cds.ecg.models import EcgRecording
    from cds.fhir.models import StoredResource
    from cds.review.models import Review, ReviewRevision

    rng = np.random.default_rng(0)
    waves = waveforms()
    org = Organization.objects.get_or_create(slug="bench", defaults={"name": "bench"})[0]
    now = timezone.now().replace(hour=12)
    resources = StoredResource.objects.bulk_create(
        StoredResource(resource_type="Observation", logical_id=f"o{i}", last_updated=now, content={}, organization=org)
        for i in range(items)
    )
    recordings = EcgRecording.objects.bulk_create(
        EcgRecording(
            resource=resources[i], logical_id=f"o{i}", organization=org, sample_rate_hz=500.0 if i % 7 else 250.0,
            leads=LEADS, n_samples=5000, samples=b"", age_min_years=float(rng.integers(10, 95)),
            age_max_years=None, sex="female" if i % 2 else "male", waveform_sha256="0" * 64,
            received_from=SITES[i % len(SITES)],
        )
        for i in range(items)
    )  # fmt: skip
    # Django 5.2 bulk-inserts through UNNEST arrays, which cannot carry bytea: waveforms go in by update.
    for k, wave in enumerate(waves):
        EcgRecording.objects.filter(pk__in=[r.pk for r in recordings[k :: len(waves)]]).update(samples=wave)
    for i, recording in enumerate(recordings):  # spread over the days (created_at is auto_now_add)
        recording.created_at = now - timedelta(days=i % days)
    EcgRecording.objects.bulk_update(recordings, ["created_at"], batch_size=1000)
    jobs = AnalysisJob.objects.bulk_create(AnalysisJob(recording=r, status="succeeded") for r in recordings)
    abnormal = rng.random(items) < 0.4
    scores = np.clip(rng.normal(np.where(abnormal, 0.7, 0.3), 0.15), 0, 1)
    predictions = Prediction.objects.bulk_create(
        Prediction(job=j, recording=r, model_name="ecg-interpretation", model_version="interp-1",
                   score=float(s), threshold=0.5, flagged=bool(s >= 0.5))
        for j, r, s in zip(jobs, recordings, scores, strict=True)
    )  # fmt: skip
    chosen = [i for i in range(items) if rng.random() < signed]
    reviews = Review.objects.bulk_create(
        Review(job=jobs[i], prediction=predictions[i], recording=recordings[i], status="signed",
               queue="flagged" if predictions[i].flagged else "reannotation")
        for i in chosen
    )  # fmt: skip
    revisions = ReviewRevision.objects.bulk_create(
        ReviewRevision(review=review, number=1, kind="sign",
                       verdict="accept" if predictions[i].flagged == abnormal[i] else "reject")
        for review, i in zip(reviews, chosen, strict=True)
    )  # fmt: skip
    for review, revision in zip(reviews, revisions, strict=True):
        review.current = review.signed_revision = revision
    Review.objects.bulk_update(reviews, ["current", "signed_revision"], batch_size=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--signed", type=float, default=0.3)
    parser.add_argument("--per-day", type=int, default=20, help="ECGs per site and day (sets the days spanned)")
    args = parser.parse_args()
    fresh_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    days = max(1, args.items // (args.per_day * len(SITES)))
    started = time.perf_counter()
    populate(args.items, args.signed, days)
    print(f"populated {args.items} served verdicts over {days} days in {time.perf_counter() - started:.1f} s")

    from cds.review.drift import check_drift
    from cds.review.quality import quality_report

    for label, kwargs in (
        ("quality_report, 1000 resamples", {}),
        ("quality_report, 200 resamples", {"resamples": 200}),
    ):
        started = time.perf_counter()
        report = quality_report(**kwargs)
        elapsed = time.perf_counter() - started
        print(f"{label}: {elapsed:.2f} s ({report['overall']['interp-1']['n_signed']} signed verdicts)")
    started = time.perf_counter()
    alarms = check_drift(day=timezone.now().date())
    print(f"check_drift one day, 14-day reference, {len(SITES)} sites: {time.perf_counter() - started:.2f} s, "
          f"{len(alarms)} alarms")  # fmt: skip


if __name__ == "__main__":
    main()
