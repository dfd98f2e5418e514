"""Benchmark the clinical interpretation the worker runs for every ECG, against the detector's preprocessing.

Stages per ECG (10 s, 12 leads, 500 Hz; the bundled PTB-XL samples, each analysed ``--repeats`` times
in this process, one thread): beats (R peaks, classes, median beats), measurements, intended-use
checks, statements, report. The baseline in the same run is ``inference.preprocessing.detector_inputs``
(resampling, filtering, beat windows), which every job already pays, so the ratio holds on a noisy
machine where absolute times do not.

Usage: ``.venv/bin/python bench/bench_clinical.py [--repeats 20]``. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from inference.clinical.beats import beats_analyse  # noqa: E402
from inference.clinical.intended_use import intended_use_findings  # noqa: E402
from inference.clinical.measurements import measure_beats  # noqa: E402
from inference.clinical.report import clinical_report  # noqa: E402
from inference.clinical.statements import measured_findings  # noqa: E402
from inference.preprocessing import LEADS_12, detector_inputs  # noqa: E402
from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record  # noqa: E402

SAMPLES = REPO / "samples" / "ptbxl"


def _time(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, out


def _bench_record(signal: np.ndarray, rate: float, repeats: int, stages: dict[str, list[float]]) -> None:
    """Time each stage on one ECG ``repeats`` times and append the times to ``stages``."""
    leads = LEADS_12
    t, _ = _time(lambda: detector_inputs(signal, rate, leads), repeats)
    stages["baseline_detector_inputs"] += t
    t, beats = _time(lambda: beats_analyse(signal, rate, leads), repeats)
    stages["beats"] += t
    t, m = _time(lambda: measure_beats(beats), repeats)
    stages["measure"] += t
    t, used = _time(lambda: intended_use_findings(signal, rate, leads, age_years=60.0, beats=beats), repeats)
    stages["intended_use"] += t
    t, found = _time(lambda: measured_findings(m, sex="male", age_years=60.0), repeats)
    stages["statements"] += t
    findings = [*used, *found]
    t, _ = _time(lambda: clinical_report(measurements=m, findings=findings, detector=None, foundation=None), repeats)
    stages["report"] += t


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    index = load_ptbxl_index(SAMPLES)
    stages: dict[str, list[float]] = {
        k: [] for k in ("baseline_detector_inputs", "beats", "measure", "intended_use", "statements", "report")
    }
    for _, row in index.iterrows():
        record = load_ptbxl_record(SAMPLES, row)
        _bench_record(np.asarray(record.signal, dtype=np.float64), float(record.sample_rate_hz), args.repeats, stages)
    summary = {
        stage: {"median_ms": round(statistics.median(v), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)}
        for stage, v in stages.items()
    }
    total = sum(summary[s]["median_ms"] for s in summary if s != "baseline_detector_inputs")
    result = {
        "ecgs": len(index),
        "repeats": args.repeats,
        "stages": summary,
        "clinical_total_median_ms": round(total, 2),
        "ratio_to_detector_preprocessing": round(total / summary["baseline_detector_inputs"]["median_ms"], 2),
    }
    for stage, figures in summary.items():
        print(f"{stage:28s} median {figures['median_ms']:8.2f} ms  p95 {figures['p95_ms']:8.2f} ms")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
