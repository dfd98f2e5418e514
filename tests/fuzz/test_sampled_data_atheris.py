"""A bounded run of the atheris fuzzer of the SampledData decoder (``tests/fuzz/fuzz_sampled_data.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytest.importorskip("atheris")

HARNESS = Path(__file__).with_name("fuzz_sampled_data.py")
RUNS = 5000


def test_it_survives_a_few_thousand_fuzzed_sampled_data_objects(tmp_path: Path) -> None:
    # A fixed seed makes the run reproducible; libFuzzer writes a crash-* file into tmp_path on failure.
    command = [
        sys.executable,
        str(HARNESS),
        f"-runs={RUNS}",
        "-seed=1",
        "-max_len=1024",
        f"-artifact_prefix={tmp_path}/",
    ]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} runs" in result.stderr
    assert not list(tmp_path.glob("crash-*"))


def test_it_checks_the_decoders_contract_on_a_hand_written_input() -> None:
    # The harness's own check: without this, a harness that never raised would pass the run above.
    atheris_harness = pytest.importorskip("tests.fuzz.fuzz_sampled_data")
    atheris_harness.test_one_input(b"")
    atheris_harness.test_one_input(bytes(range(256)) * 4)
    sampled = atheris_harness.sampled_from_bytes(bytes(range(64)))
    assert set(sampled) >= {"origin", "period", "dimensions", "data"}
