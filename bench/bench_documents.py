"""Benchmark ECG document decoding (issue 18): DICOM, HL7 aECG and GE MUSE to the stored ECG.

Times ``ecg_document_prepare`` (base64 → format reader → SampledData Observation → SampledData
decoder), the CPU work a DocumentReference adds before its transaction, on one 12-lead 10 s 500 Hz
PTB-XL sample per format (MUSE: 8 stored leads). No database. Usage:
``.venv/bin/python bench/bench_documents.py [--repeats 20]``.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cds.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import django

    django.setup()
    from cds.ecg.aecg import aecg_write
    from cds.ecg.dicom_ecg import dicom_ecg_write
    from cds.ecg.muse import muse_write
    from cds.pipeline.documents import ecg_document_prepare
    from tests.conftest import LEADS_12, read_sample_record

    samples, _ = read_sample_record(9)
    muse_leads = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    documents = {
        "application/dicom": dicom_ecg_write(samples, sample_rate_hz=500, leads=LEADS_12),
        "text/xml (aECG)": aecg_write(samples, sample_rate_hz=500, leads=LEADS_12),
        "application/xml (MUSE)": muse_write(
            samples[[LEADS_12.index(lead) for lead in muse_leads]], sample_rate_hz=500, leads=muse_leads
        ),
    }
    for label, data in documents.items():
        attachment = {"contentType": label.split(" ")[0], "data": base64.b64encode(data).decode()}
        content = {"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": attachment}]}
        times = []
        for _ in range(args.repeats + 1):
            started = time.perf_counter()
            ecg_document_prepare(content=dict(content))
            times.append((time.perf_counter() - started) * 1000)
        times = times[1:]  # the first call warms imports and caches
        print(f"{label:<24} {len(data):>7} bytes  p50 {statistics.median(times):6.1f} ms  min {min(times):6.1f} ms")


if __name__ == "__main__":
    main()
