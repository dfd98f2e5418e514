"""Triton's overhead over in-process compute, side by side, at one batch size (issue 14 target: <= 1.5x).

For each served model: the same artifact run in this process on CPU (ONNX Runtime for ``.onnx``,
TorchScript for ``.pt``; one thread, as each Triton instance has) and through the local Triton
(CPU profile, gRPC, one client sending one batch at a time), on the bundled sample records tiled
to ``--batch``. Calls alternate between the two so that load from other processes hits both alike.

Usage: ``PYTHONPATH=. python bench/triton_overhead.py [--batch 8] [--repeats 20]``. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gpu_check import model_inputs, onnx_runner, sample_ecgs, tiled, torchscript_runner  # noqa: E402

from inference.analyzer import DETECTOR_OUTPUTS  # noqa: E402 - after the path setup
from inference.foundation_postprocessing import FOUNDATION_OUTPUTS_ALL  # noqa: E402
from inference.local_triton import LocalTriton  # noqa: E402
from inference.model_repository import (  # noqa: E402
    DEFAULT_REPOSITORY,
    DETECTOR_MODEL,
    FOUNDATION_MODEL,
)
from inference.triton_client import TritonClient  # noqa: E402

OUTPUTS = {DETECTOR_MODEL: DETECTOR_OUTPUTS, FOUNDATION_MODEL: FOUNDATION_OUTPUTS_ALL}


def side_by_side(models: Sequence[str], batch: int, repeats: int) -> dict[str, Any]:
    """Return, per model, the median latency in process and through Triton and their ratio."""
    import torch  # noqa: PLC0415 ml extra

    torch.set_num_threads(1)
    ecgs = sample_ecgs()
    conditioned = 'name: "measured"' in (DEFAULT_REPOSITORY / FOUNDATION_MODEL / "config.pbtxt").read_text()
    inputs = model_inputs(ecgs, 21 if conditioned else 0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        server = LocalTriton(
            repository=DEFAULT_REPOSITORY, config_name="cpu", load_models=list(models), work_dir=Path(work)
        )
        with server:
            client = TritonClient(grpc_url=server.grpc_url, timeout_s=120)
            for model in models:
                artifact = next((DEFAULT_REPOSITORY / model / "1").glob("model.*"))
                local = (
                    onnx_runner(artifact, "cpu") if artifact.suffix == ".onnx" else torchscript_runner(artifact, "cpu")
                )
                arrays = tiled(inputs[model], batch)
                local(arrays)
                client.infer(model, arrays, OUTPUTS[model])  # warm: first calls pay one-off costs
                here, served = [], []
                for _ in range(repeats):
                    started = time.perf_counter()
                    local(arrays)
                    here.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    client.infer(model, arrays, OUTPUTS[model])
                    served.append(time.perf_counter() - started)
                in_process_ms, triton_ms = statistics.median(here) * 1000, statistics.median(served) * 1000
                results[model] = {
                    "artifact": artifact.name,
                    "in_process_ms": round(in_process_ms, 2),
                    "triton_ms": round(triton_ms, 2),
                    "ratio": round(triton_ms / in_process_ms, 3),
                }
    return {"batch": batch, "repeats": repeats, "models": results}


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, measure, print JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=[DETECTOR_MODEL, FOUNDATION_MODEL])
    args = parser.parse_args(argv)
    print(json.dumps(side_by_side(args.models, args.batch, args.repeats), indent=1))  # noqa: T201


if __name__ == "__main__":
    main()
