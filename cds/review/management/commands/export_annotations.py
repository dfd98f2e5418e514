"""Export reviewed labels and intervals as PTB-XL-layout training data (see cds/review/export.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cds.review.export import annotations_export


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="folder to write (ptbxl_database.csv, records500/...)")

    def handle(self, *args: Any, **options: Any) -> None:
        summary = annotations_export(out=Path(options["out"]))
        self.stdout.write(
            f"wrote {summary.records} reviewed ECGs to {options['out']} ({summary.unlabelled} without a usable label)"
        )
