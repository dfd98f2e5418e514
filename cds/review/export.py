"""Reviewed labels and intervals as training data in the PTB-XL layout (``training.data.ptbxl`` reads it).

Layout written under ``out``:
- ``ptbxl_database.csv``: ``ecg_id``, ``patient_id``, ``age``, ``sex`` (0 male, 1 female),
  ``scp_codes`` (a dict literal, likelihood 100), ``strat_fold`` (1–10 by patient, so a patient
  never spans folds), ``filename_hr``, ``report`` (the reviewed or signed text), plus ``intervals``
  (JSON list of {lead, start_ms, end_ms}), ``review_id``, ``verdict`` and ``observation``;
- ``scp_statements.csv``: PTB-XL's statements (the labels' vocabulary);
- ``records500/NNNNN/<ecg_id>_hr.{hea,dat}``: the stored waveform as WFDB (mV, 16 bit, gain 1000,
  so microvolts round-trip exactly), written with ``wfdb.wrsamp`` at the recording's own rate.

Labels: the clinician's SCP statements when given; else ``NORM`` when the verdict says the ECG is
normal (a rejected flag, a confirmed not-flagged ECG); else none, which the loader excludes.
"""

from __future__ import annotations

import csv
import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cds.review.models import Review
from cds.review.scp import SCP_STATEMENTS_CSV

COLUMNS = (
    "ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold", "filename_hr", "report", "intervals",
    "review_id", "verdict", "observation",
)  # fmt: skip


@dataclass(frozen=True)
class ExportSummary:
    """How many records were written, and how many reviews had no usable label."""

    records: int
    unlabelled: int


def reviewed_for_export() -> Any:
    """Return signed reviews with a verdict, with what the export writes, oldest first.

    Only what a senior clinician signed becomes training data: the signed revision's labels,
    intervals and text, never a later unsigned edit (an amended review exports its last signature).
    """
    return (
        Review.objects.filter(signed_revision__verdict__in=["accept", "reject"])
        .select_related("signed_revision", "prediction", "recording", "recording__patient")
        .order_by("pk")
    )


def _labels(review: Review) -> dict[str, float]:
    current = review.signed_revision
    assert current is not None
    if current.scp_labels:
        return dict.fromkeys(current.scp_labels, 100.0)
    confirmed = current.verdict == "accept"
    # The AI's call is the one verdict the review judged: the flagged queue holds the abnormal calls.
    is_abnormal = (review.queue == Review.Queue.FLAGGED) == confirmed
    return {} if is_abnormal else {"NORM": 100.0}


def _fold(patient_key: str) -> int:
    return 1 + zlib.crc32(patient_key.encode()) % 10


def _sex(sex: str) -> Any:
    return {"male": 0, "female": 1}.get(sex, "")


def annotations_export(*, out: Path) -> ExportSummary:
    """Write the reviewed ECGs under ``out`` (created; existing files are overwritten)."""
    import wfdb  # noqa: PLC0415 training dependency (ml extra): only this command needs it

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SCP_STATEMENTS_CSV, out / "scp_statements.csv")
    rows, unlabelled = [], 0
    for ecg_id, review in enumerate(reviewed_for_export().iterator(chunk_size=200), start=1):
        recording, current = review.recording, review.signed_revision
        assert current is not None
        labels = _labels(review)
        unlabelled += int(not labels)
        relative = f"records500/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_hr"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        signal_mv = recording.waveform().T.astype(np.float64) / 1000.0  # (samples, leads)
        wfdb.wrsamp(
            Path(relative).name, fs=recording.sample_rate_hz, units=["mV"] * len(recording.leads),
            sig_name=list(recording.leads), p_signal=signal_mv, fmt=["16"] * len(recording.leads),
            adc_gain=[1000.0] * len(recording.leads), baseline=[0] * len(recording.leads),
            write_dir=str((out / relative).parent), comments=[f"ecg-cds review {review.pk}"],
        )  # fmt: skip
        patient_key = recording.patient.logical_id if recording.patient else recording.logical_id
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": patient_key,
                "age": "" if recording.age_min_years is None else int(recording.age_min_years),
                "sex": _sex(recording.sex),
                "scp_codes": repr(labels),
                "strat_fold": _fold(patient_key),
                "filename_hr": relative,
                "report": current.report_text,
                "intervals": json.dumps([{k: i[k] for k in ("lead", "start_ms", "end_ms")} for i in current.intervals]),
                "review_id": review.pk,
                "verdict": current.verdict,
                "observation": f"Observation/{recording.logical_id}",
            }
        )
    with (out / "ptbxl_database.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return ExportSummary(records=len(rows), unlabelled=unlabelled)
