"""Promote a candidate model version if its pre-registered criteria pass on signed verdicts; refuse otherwise.

Exits non-zero on a refusal, printing every figure; both outcomes are recorded and audited."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.review.promotion import CandidateError, promote


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="model_name, e.g. ecg-interpretation")
        parser.add_argument("version", help="the candidate's model_version")
        parser.add_argument("--by", default="", help="who asks (recorded with the decision)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            decision = promote(model_name=options["name"], model_version=options["version"], decided_by=options["by"])
        except CandidateError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(decision.record.figures, indent=2))
        if not decision.promoted:
            raise CommandError(
                f"promotion of {options['name']} {options['version']} refused: " + "; ".join(decision.reasons)
            )
        self.stdout.write(
            f"promoted {options['name']} {options['version']} (was {decision.record.serving_version or 'none'}); "
            "now pin it in TRITON_MODEL_VERSIONS for the serving deployment"
        )
