"""Benchmark the localization step the worker adds to every ECG (``inference.localization``).

Per ECG (the bundled PTB-XL samples, each ``--repeats`` times, one thread): the measured evidence
layers and the fusion with a detector map into boxes, timed apart from the measurements they reuse
(the job measures once, ``inference.analyzer.measure_ecg_input``). Baseline in the same run:
``inference.preprocessing.detector_inputs``, which every job already pays.

Usage: ``.venv/bin/python bench/bench_localization.py [--repeats 20]``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from inference.clinical.interpret import measure_and_state  # noqa: E402
from inference.localization import evidence_layers, localize  # noqa: E402
from inference.preprocessing import LEADS_12, RECORD_SAMPLES, detector_inputs  # noqa: E402
from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record  # noqa: E402

SAMPLES = REPO / "samples" / "ptbxl"


def main() -> None:
    """Time the stages and print the medians and 95th percentiles in ms."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    index = load_ptbxl_index(SAMPLES)
    records = [load_ptbxl_record(SAMPLES, row) for _, row in index.iterrows()]
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"baseline_detector_inputs": [], "evidence_layers": [], "fuse_and_boxes": []}
    for _ in range(args.repeats):
        for rec in records:
            x = np.nan_to_num(rec.signal.astype(np.float64))
            t0 = time.perf_counter()
            detector_inputs(x, rec.sample_rate_hz)
            t1 = time.perf_counter()
            measured = measure_and_state(x, rec.sample_rate_hz, LEADS_12, age_years=None, sex=None)
            assert measured.beats is not None
            t2 = time.perf_counter()
            layers = evidence_layers(measured.beats, measured.findings, measured.measurements)
            t3 = time.perf_counter()
            localize(
                layers=layers,
                rate_hz=measured.beats.rate_hz,
                detector_map=rng.random((12, RECORD_SAMPLES)) * 13.0,
                map_threshold=13.0,
                valid=np.ones((12, RECORD_SAMPLES), dtype=bool),
                offset_ms=200.0,
                show_model_only=True,
            )
            t4 = time.perf_counter()
            times["baseline_detector_inputs"].append((t1 - t0) * 1000)
            times["evidence_layers"].append((t3 - t2) * 1000)
            times["fuse_and_boxes"].append((t4 - t3) * 1000)
    out = {
        stage: {"median_ms": round(statistics.median(v), 2), "p95_ms": round(float(np.quantile(v, 0.95)), 2)}
        for stage, v in times.items()
    }
    out["ecgs"] = len(records) * args.repeats
    print(json.dumps(out))


if __name__ == "__main__":
    main()
