"""bench/gpu_check.py on CPU with small sizes: the one command the GPU run will use (issue 14, item 5)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"

pytest.importorskip("torch", reason="the check runs the models with torch (the ml extra)")


def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_runs_every_served_artifact_on_the_cpu_and_reports_figures(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--batches", "1", "2", "--repeats", "1"]
    command += ["--analyzer-ecgs", "1", "--analyzer-rounds", "1", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["artifact_problems"] == []
    assert set(report["models"]) == {
        "ecg_detector/1 (onnx)",
        "ecg_foundation/1 (torchscript)",
        "ecg_detector (torchscript trace)",
    }
    for label, entry in report["models"].items():
        assert entry["comparison"]["within_tolerance"], label
        assert [t["batch"] for t in entry["throughput"]] == [1, 2]
        assert all(t["ecg_per_s"] > 0 and t["latency_ms"] > 0 for t in entry["throughput"])
    assert report["analyzer"]["ecgs"] == 1 and report["analyzer"]["p50_ms"] > 0


def test_the_comparison_fails_beyond_tolerance_and_counts_differing_reports() -> None:
    compare = gpu_check().compare
    reference = [np.array([[1.0, 2.0]], np.float32), np.array([[5, 2, 0], [7, 2, 0]])]
    close = [reference[0] + 1e-4, reference[1].copy()]
    assert compare(reference, close, atol=1e-3, rtol=1e-3)["within_tolerance"] is True
    far = [reference[0] + 0.1, np.array([[5, 2, 0], [8, 2, 0]])]
    result = compare(reference, far, atol=1e-3, rtol=1e-3)
    assert result["within_tolerance"] is False
    assert result["outputs"][1] == {"rows_equal": 1, "rows": 2}
