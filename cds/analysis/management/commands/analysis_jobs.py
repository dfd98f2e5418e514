"""List analysis jobs (newest first) with their ECG, status, the one verdict and the draft report."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cds.analysis.models import AnalysisJob, Prediction
from cds.analysis.services import analysis_jobs_requeue_failed
from inference.results import DETECTOR_NAME, FOUNDATION_NAME, INTERPRETATION_NAME


def job_row(
    job: AnalysisJob, detector: Prediction | None, foundation: Prediction | None, interpretation: Prediction | None
) -> dict[str, Any]:
    """Return one job's row: status, the detector's finding, the one verdict and the draft report.

    ``report_text`` is the grounded report (the interpretation's) when there is one, else the
    foundation model's text; ``decoder_text`` is always the foundation model's, as generated.
    """
    decoder_text = foundation.report_text if foundation else ""
    return {
        "job": job.pk,
        "observation": job.recording.logical_id,
        "status": job.status,
        "attempts": job.attempts,
        "model_version": job.model_version,
        "score": detector.score if detector else None,
        "threshold": detector.threshold if detector else None,
        "flagged": interpretation.flagged if interpretation else (detector.flagged if detector else None),
        "detector_flagged": detector.flagged if detector else None,
        "verdict": interpretation.verdict if interpretation else "",
        "urgency": interpretation.urgency if interpretation else "",
        "findings": [f.get("text", "") for f in interpretation.findings] if interpretation else [],
        "intervals": len(detector.intervals) if detector else 0,
        # A localized box spans several leads (one interval row per lead); older rows have no box.
        "boxes": len({row.get("box") or n for n, row in enumerate(detector.intervals)}) if detector else 0,
        "combined_probability": interpretation.score if interpretation else None,
        "combined_threshold": interpretation.threshold if interpretation else None,
        "probability_abnormal": foundation.score if foundation else None,
        "report_text": interpretation.report_text if interpretation else decoder_text,
        "decoder_text": decoder_text,
        "reannotation_value": foundation.review_priority if foundation else None,
        "error": job.error,
    }


def _by_job(jobs: list[AnalysisJob], model_name: str, *fields: str) -> dict[int, Prediction]:
    """Return each job's prediction of ``model_name`` (one query), keyed by job id."""
    rows = Prediction.objects.filter(job__in=jobs, model_name=model_name).only("job_id", *fields)
    return {p.job_id: p for p in rows}


class Command(BaseCommand):
    help = "List analysis jobs with their ECG Observation id, status, detector score and error; --requeue-failed retries failed ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON array")
        parser.add_argument("--limit", type=int, default=100)
        parser.add_argument(
            "--requeue-failed",
            action="store_true",
            help="put failed jobs back to pending and enqueue them (all, or those given with --job), then list",
        )
        parser.add_argument("--job", type=int, action="append", help="with --requeue-failed: only this job; repeatable")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["requeue_failed"]:
            requeued = analysis_jobs_requeue_failed(job_ids=options["job"], limit=options["limit"])
            message = f"requeued {len(requeued)} failed job(s): {', '.join(map(str, requeued)) or '-'}"
            # Keep --json output parseable: the summary goes to stderr.
            (self.stderr if options["json"] else self.stdout).write(message)
        jobs = list(AnalysisJob.objects.select_related("recording").order_by("-created_at")[: options["limit"]])
        # One query per model for every job's prediction (no query per job).
        scored = _by_job(jobs, DETECTOR_NAME, "score", "threshold", "flagged", "intervals")
        reported = _by_job(jobs, FOUNDATION_NAME, "score", "report_text", "review_priority")
        interpreted = _by_job(jobs, INTERPRETATION_NAME, "flagged", "verdict", "urgency", "findings", "report_text")
        rows = [job_row(job, scored.get(job.pk), reported.get(job.pk), interpreted.get(job.pk)) for job in jobs]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        for row in rows:
            self.stdout.write(f"{row['job']:>6}  Observation/{row['observation']}  {row['status']:<10} {row['error']}")
