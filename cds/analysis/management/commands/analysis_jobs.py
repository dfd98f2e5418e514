"""List analysis jobs (newest first) with their ECG, status and the detector's finding."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cds.analysis.models import AnalysisJob, Prediction
from inference.results import DETECTOR_NAME, FOUNDATION_NAME


def job_row(job: AnalysisJob, detector: Prediction | None, foundation: Prediction | None) -> dict[str, Any]:
    """Return one job's row: status, the detector's finding and the foundation model's draft."""
    return {
        "job": job.pk,
        "observation": job.recording.logical_id,
        "status": job.status,
        "attempts": job.attempts,
        "model_version": job.model_version,
        "score": detector.score if detector else None,
        "threshold": detector.threshold if detector else None,
        "flagged": detector.flagged if detector else None,
        "intervals": len(detector.intervals) if detector else 0,
        "probability_abnormal": foundation.score if foundation else None,
        "report_text": foundation.report_text if foundation else "",
        "review_priority": foundation.review_priority if foundation else None,
        "error": job.error,
    }


class Command(BaseCommand):
    help = "List analysis jobs with their ECG Observation id, status, detector score and error."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON array")
        parser.add_argument("--limit", type=int, default=100)

    def handle(self, *args: Any, **options: Any) -> None:
        jobs = list(AnalysisJob.objects.select_related("recording").order_by("-created_at")[: options["limit"]])
        # One query for every job's detector prediction (the score shown beside each job).
        scored = {
            p.job_id: p
            for p in Prediction.objects.filter(job__in=jobs, model_name=DETECTOR_NAME).only(
                "job_id", "score", "threshold", "flagged", "intervals"
            )
        }
        reported = {
            p.job_id: p
            for p in Prediction.objects.filter(job__in=jobs, model_name=FOUNDATION_NAME).only(
                "job_id", "score", "report_text", "review_priority"
            )
        }
        rows = [job_row(job, scored.get(job.pk), reported.get(job.pk)) for job in jobs]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        for row in rows:
            self.stdout.write(f"{row['job']:>6}  Observation/{row['observation']}  {row['status']:<10} {row['error']}")
