"""Fit a draft recalibration of the served probability for one site from its signed verdicts.

Prints the figures (counts, window, ECE before and cross-validated ECE after); refuses with the
counts when there are too few signed verdicts. The draft is not served until a quality auditor
approves it (``approve_site_recalibration``; docs/quality.md, "Calibration per site")."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.review.admin_recalibration import parse_day
from cds.review.recalibration import RecalibrationError, fit_site_recalibration


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", required=True, help="ORG/SOURCE, as in the quality report's by_site")
        parser.add_argument("--since", help="only verdicts received on or after this day (YYYY-MM-DD)")
        parser.add_argument("--combiner-version", help="default: the combiner of the site's latest signed verdict")
        parser.add_argument("--json", action="store_true", help="print the artefact as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            since = parse_day(options["since"])
            if since is None:
                raise CommandError(f"--since must be a date YYYY-MM-DD, not {options['since']!r}")
        try:
            artefact = fit_site_recalibration(
                site=options["site"], since=since, combiner_version=options["combiner_version"]
            )
        except RecalibrationError as exc:
            raise CommandError(exc.message) from exc
        summary = {
            "id": artefact.pk,
            "site": artefact.site,
            "combiner_version": artefact.combiner_version,
            "version": artefact.version,
            "status": artefact.status,
            "method": artefact.method,
            "parameters": artefact.parameters,
            "n": artefact.n,
            "n_abnormal": artefact.n_abnormal,
            "window": [artefact.window_start.isoformat(), artefact.window_end.isoformat()],
            "ece_before": artefact.ece_before,
            "ece_after_cv": artefact.ece_after,
            "figures": artefact.figures,
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        self.stdout.write(
            f"draft {artefact.pk}: {artefact.site} v{artefact.version} for {artefact.combiner_version}, "
            f"{artefact.n} signed verdicts ({artefact.n_abnormal} abnormal) "
            f"{summary['window'][0]} .. {summary['window'][1]}\n"
            f"ECE before {artefact.ece_before:.4f}, after (cross-validated) {artefact.ece_after:.4f}; "
            f"slope {artefact.parameters['slope']:.3f}, intercept {artefact.parameters['intercept']:.3f}\n"
            f"not served until approved: manage.py approve_site_recalibration {artefact.pk} --by USERNAME"
        )
