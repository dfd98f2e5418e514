"""List analysis jobs (newest first) with their ECG, status and the detector's finding."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cds.analysis.models import AnalysisJob, Prediction
from inference.results import DETECTOR_NAME, FOUNDATION_NAME


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
        rows = [
            {
                "job": job.pk,
                "observation": job.recording.logical_id,
                "status": job.status,
                "attempts": job.attempts,
                "model_version": job.model_version,
                "score": scored[job.pk].score if job.pk in scored else None,
                "threshold": scored[job.pk].threshold if job.pk in scored else None,
                "flagged": scored[job.pk].flagged if job.pk in scored else None,
                "intervals": len(scored[job.pk].intervals) if job.pk in scored else 0,
                "probability_abnormal": reported[job.pk].score if job.pk in reported else None,
                "report_text": reported[job.pk].report_text if job.pk in reported else "",
                "review_priority": reported[job.pk].review_priority if job.pk in reported else None,
                "error": job.error,
            }
            for job in jobs
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        for row in rows:
            self.stdout.write(f"{row['job']:>6}  Observation/{row['observation']}  {row['status']:<10} {row['error']}")
