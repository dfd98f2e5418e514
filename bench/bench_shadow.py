"""Measure what a candidate in shadow adds per ECG: the served analysis and the shadow run, one after the other.

A local ``tritonserver`` (CPU configs) serves the shipped repository with ``ecg_detector`` version 2
added (a copy of version 1 with its own label, as tests/e2e/test_shadow.py builds it). Each of the
committed sample ECGs is analysed with the served versions, then with the candidate's (detector 2),
the way the worker does (``TritonAnalyzer`` and ``with_versions``); times are wall-clock per ECG,
after one warm-up ECG. The shadow task's database work (one small transaction) is not included.

Usage: ``PYTHONPATH=$PWD .venv/bin/python bench/bench_shadow.py [--rounds 3]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.analyzer import EcgInput, TritonAnalyzer  # noqa: E402 after the path set-up
from inference.local_triton import LocalTriton  # noqa: E402
from inference.triton_client import TritonClient  # noqa: E402
from tests.conftest import LEADS_12, read_sample_record  # noqa: E402
from tests.e2e.versions import add_copy_as_version_2  # noqa: E402

SAMPLES = (9, 63, 131)
REPOSITORY = REPO / "deploy" / "triton" / "model_repository"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over the sample ECGs")
    args = parser.parse_args()
    ecgs = []
    for ecg_id in SAMPLES:
        samples_uv, header = read_sample_record(ecg_id)
        ecgs.append(EcgInput(signal=samples_uv / 1000.0, rate_hz=float(header["fs"]), leads=LEADS_12))
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "models"
        shutil.copytree(REPOSITORY, repository)
        add_copy_as_version_2(repository / "ecg_detector", "detector-copy-v2")
        server = LocalTriton(
            repository=repository,
            config_name="cpu",
            load_models=sorted(p.parent.name for p in REPOSITORY.glob("*/config.pbtxt")),
            work_dir=Path(tmp) / "work",
        )
        server.start(timeout_s=180)
        try:
            pinned = {"ecg_detector": "1", "ecg_foundation": "1"}
            served = TritonAnalyzer(client=TritonClient(grpc_url=server.grpc_url, expected_versions=pinned))
            shadow = served.with_versions({"ecg_detector": "2"})
            served.analyse(ecgs[0])
            shadow.analyse(ecgs[0])
            times: dict[str, list[float]] = {"served_ms": [], "shadow_ms": []}
            for _ in range(args.rounds):
                for ecg in ecgs:
                    for name, analyzer in (("served_ms", served), ("shadow_ms", shadow)):
                        started = time.perf_counter()
                        analyzer.analyse(ecg)
                        times[name].append((time.perf_counter() - started) * 1000)
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "ecgs": len(times["served_ms"]),
                **{f"{name}_median": round(statistics.median(values), 1) for name, values in times.items()},
                **{f"{name}_max": round(max(values), 1) for name, values in times.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
