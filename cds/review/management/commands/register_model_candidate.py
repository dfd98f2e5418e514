"""Register a candidate model version with its acceptance criteria, before its results are seen.

--criteria is a JSON file: [{"figure": "sensitivity", "bound": "ci_low", "compare": "serving", "margin": 0.0}, ...]
(docs/quality.md, "Gated promotion"). Criteria cannot be changed once registered.
--detector-version / --foundation-version (Triton version numbers) put the candidate in shadow: it
runs on every analysed ECG beside the served verdict until promoted or retired (--retire)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.review.promotion import CandidateError, register_candidate, retire_candidate
from inference.results import INTERPRETATION_NAME


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="the candidate's model_version as its predictions carry it")
        parser.add_argument("--name", default=INTERPRETATION_NAME, help="model_name (default: the served verdict)")
        parser.add_argument("--criteria", help="JSON file with the acceptance criteria (required to register)")
        parser.add_argument("--min-signed", type=int, default=50, help="signed verdicts needed before any decision")
        parser.add_argument("--detector-version", default="", help="Triton version of ecg_detector to run in shadow")
        parser.add_argument(
            "--foundation-version", default="", help="Triton version of ecg_foundation to run in shadow"
        )
        parser.add_argument("--retire", action="store_true", help="retire the candidate (it stops running in shadow)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["retire"]:
            try:
                retired = retire_candidate(model_name=options["name"], model_version=options["version"])
            except CandidateError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(f"retired {retired}")
            return
        if not options["criteria"]:
            raise CommandError("--criteria is required to register a candidate")
        try:
            criteria = json.loads(Path(options["criteria"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"--criteria {options['criteria']}: {exc}") from exc
        try:
            candidate = register_candidate(
                model_name=options["name"],
                model_version=options["version"],
                criteria=criteria,
                min_signed=options["min_signed"],
                detector_version=options["detector_version"],
                foundation_version=options["foundation_version"],
            )
        except CandidateError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"registered {candidate} with {len(candidate.criteria)} criteria")
