"""Foundation model per ECG: one request (one encoder pass) against the former two, side by side.

Compares the shipped ``ecg_foundation`` (classifier outputs and report ids from one encoder pass,
issue 14) with a model repository written before it (``--before``: ``ecg_foundation`` as the
classifier alone plus ``ecg_report``, e.g. ``git archive <commit> deploy/triton/model_repository``
unpacked), on the bundled sample records tiled to ``--batch``:

1. in process (TorchScript, one thread): the two former artifacts called one after the other
   against the one new artifact;
2. through the local Triton (CPU profile, gRPC, one client): two requests against one, each
   repository on its own server, both running at once.

Calls alternate between before and after so that load from other processes hits both alike
(this machine is shared; single calls vary by 2-3x). Also checks that the outputs agree:
probabilities within 1e-5, the same token ids.

Usage: ``PYTHONPATH=. python bench/foundation_one_pass.py --before DIR [--batch 1] [--repeats 30]``.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402 - after the path setup
from gpu_check import model_inputs, sample_ecgs, tiled, torchscript_runner  # noqa: E402

from inference.foundation_postprocessing import FOUNDATION_OUTPUTS_ALL  # noqa: E402
from inference.local_triton import LocalTriton  # noqa: E402
from inference.model_repository import DEFAULT_REPOSITORY, FOUNDATION_MODEL, RETIRED_REPORT_MODEL  # noqa: E402
from inference.triton_client import TritonClient  # noqa: E402

BEFORE_CLASSIFIER_OUTPUTS = FOUNDATION_OUTPUTS_ALL[:5]
BEFORE_REPORT_OUTPUTS = ("token_ids__0",)


def alternate(first: Callable[[], Any], second: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Return the median seconds of ``first`` and of ``second``, called in turn ``repeats`` times each."""
    a, b = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        first()
        a.append(time.perf_counter() - started)
        started = time.perf_counter()
        second()
        b.append(time.perf_counter() - started)
    return statistics.median(a), statistics.median(b)


def split(arrays: dict[str, np.ndarray], measured: bool) -> dict[str, np.ndarray]:
    """Return the arrays a model with (``measured``) or without the measured input takes."""
    return arrays if measured else {k: v for k, v in arrays.items() if k != "measured"}


def compare_outputs(before: list[np.ndarray], after: list[np.ndarray]) -> dict[str, Any]:
    """Return the largest probability difference and whether the token ids are equal."""
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x.astype(np.float64)))  # noqa: E731
    prob_diff = max(float(np.abs(sigmoid(b) - sigmoid(a)).max()) for b, a in zip(before[:3], after[:3], strict=True))
    return {"max_abs_probability_diff": prob_diff, "token_ids_equal": bool(np.array_equal(before[5], after[5]))}


def side_by_side(before_repo: Path, batch: int, repeats: int) -> dict[str, Any]:
    """Return the in-process and Triton medians of before (two models) and after (one), and the agreement."""
    import torch  # noqa: PLC0415 ml extra

    torch.set_num_threads(1)
    conditioned = 'name: "measured"' in (DEFAULT_REPOSITORY / FOUNDATION_MODEL / "config.pbtxt").read_text()
    arrays = tiled(model_inputs(sample_ecgs(), 21 if conditioned else 0)[FOUNDATION_MODEL], batch)
    old_classifier = torchscript_runner(before_repo / FOUNDATION_MODEL / "1" / "model.pt", "cpu")
    old_report = torchscript_runner(before_repo / RETIRED_REPORT_MODEL / "1" / "model.pt", "cpu")
    new = torchscript_runner(DEFAULT_REPOSITORY / FOUNDATION_MODEL / "1" / "model.pt", "cpu")

    def old() -> list[np.ndarray]:
        return old_classifier(split(arrays, False)) + old_report(arrays)

    for _ in range(3):  # the profiling executor specialises over the first calls at a shape
        agreement = compare_outputs(old(), new(arrays))
    here = alternate(old, lambda: new(arrays), repeats)
    with tempfile.TemporaryDirectory() as work:
        servers = [
            LocalTriton(repository=repository, config_name="cpu", load_models=models, work_dir=Path(work) / name)
            for name, repository, models in (
                ("before", before_repo, [FOUNDATION_MODEL, RETIRED_REPORT_MODEL]),
                ("after", DEFAULT_REPOSITORY, [FOUNDATION_MODEL]),
            )
        ]
        with servers[0], servers[1]:
            before_client = TritonClient(grpc_url=servers[0].grpc_url, timeout_s=120)
            after_client = TritonClient(grpc_url=servers[1].grpc_url, timeout_s=120)

            def two_requests() -> None:
                before_client.infer(FOUNDATION_MODEL, split(arrays, False), BEFORE_CLASSIFIER_OUTPUTS)
                before_client.infer(RETIRED_REPORT_MODEL, arrays, BEFORE_REPORT_OUTPUTS)

            def one_request() -> None:
                after_client.infer(FOUNDATION_MODEL, arrays, FOUNDATION_OUTPUTS_ALL)

            for _ in range(3):
                two_requests()
                one_request()
            served = alternate(two_requests, one_request, repeats)
    ms = lambda s: round(s * 1000, 2)  # noqa: E731
    return {
        "batch": batch,
        "repeats": repeats,
        "agreement": agreement,
        "in_process_ms": {"before_two_models": ms(here[0]), "after_one_model": ms(here[1])},
        "triton_ms": {"before_two_requests": ms(served[0]), "after_one_request": ms(served[1])},
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, measure, print JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a model repository with ecg_report")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    print(json.dumps(side_by_side(args.before, args.batch, args.repeats), indent=1))  # noqa: T201


if __name__ == "__main__":
    main()
