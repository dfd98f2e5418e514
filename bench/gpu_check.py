"""GPU check: load every served artifact on a device, compare with CPU, time it by batch size.

One command on a host with an NVIDIA GPU and PyTorch (the ``ml`` extra; ``onnxruntime-gpu`` in
place of ``onnxruntime`` to run the ONNX detector on the GPU)::

    PYTHONPATH=. python bench/gpu_check.py --device cuda --json gpu_check.json

It runs on CPU too (``--device cpu``; tests/bench/test_gpu_check.py runs it with small sizes).
Steps, all on the bundled PTB-XL sample records (samples/ptbxl), never on downloaded data:

1. every artifact of the model repository passes ``inference.artifact_checks`` (no device
   constant, within the target Triton release's limits);
2. each served artifact is loaded on ``--device`` and on CPU, and their outputs on the samples
   compared: float outputs within ``atol + rtol * max|cpu|``, report token ids equal for all but
   ``--max-report-mismatches`` ECGs (a greedy argmax may flip on a near tie under other kernels);
   the detector also as a TorchScript trace of the same checkpoint (the libtorch alternative),
   and the ONNX one on the GPU only when onnxruntime has the CUDA provider (said otherwise);
3. model-only throughput (ECG/s) and latency (ms per batch, median) at each ``--batches`` size:
   the samples tiled to the batch, one warm-up call, then up to ``--repeats`` timed calls within
   ``--seconds`` per size;
4. the whole analyzer (``InProcessAnalyzer`` on the device: measurements, preprocessing, the
   two models, post-processing) per ECG, one ECG at a time: ECG/s, p50 and p95 latency.

Prints one JSON object; exits 1 when an artifact has a problem or a device differs from CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402 - after the path setup

from inference.model_repository import (  # noqa: E402 - after the path setup
    DEFAULT_REPOSITORY,
    DETECTOR_MODEL,
    FOUNDATION_MODEL,
    WEIGHTS,
)

SAMPLES = REPO / "samples" / "ptbxl" / "records500"
LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def sample_ecgs(limit: int | None = None) -> list[Any]:
    """Return the bundled PTB-XL records as ``EcgInput`` (mV, 500 Hz, 12 leads)."""
    import wfdb  # noqa: PLC0415 ml extra

    from inference.analyzer import EcgInput  # noqa: PLC0415 after the path setup

    ecgs = []
    for header in sorted(SAMPLES.glob("*/*_hr.hea"))[:limit]:
        record = wfdb.rdrecord(str(header.with_suffix("")))
        ecgs.append(EcgInput(signal=record.p_signal.T.astype(np.float32), rate_hz=float(record.fs), leads=LEADS_12))
    return ecgs


def model_inputs(ecgs: Sequence[Any], measured_size: int) -> dict[str, dict[str, np.ndarray]]:
    """Return each model's batched request for ``ecgs`` (the arrays Triton would receive)."""
    from inference.analyzer import (  # noqa: PLC0415
        measure_ecg_input,
        prepare_detector_inputs,
        prepare_foundation_inputs,
    )
    from inference.clinical.conditioning import measured_vector  # noqa: PLC0415
    from inference.preprocessing import stack_detector_inputs  # noqa: PLC0415

    detector = stack_detector_inputs([prepare_detector_inputs(ecg) for ecg in ecgs])
    foundation = [prepare_foundation_inputs(ecg) for ecg in ecgs]
    signal = np.stack([f.signal for f in foundation])
    lead_mask = np.stack([f.lead_mask for f in foundation])
    foundation_arrays = {"signal": signal, "lead_mask": lead_mask}
    if measured_size:
        findings = [measure_ecg_input(ecg) for ecg in ecgs]
        foundation_arrays["measured"] = np.stack([measured_vector(m.findings) for m in findings]).astype(np.float32)
    return {DETECTOR_MODEL: detector, FOUNDATION_MODEL: foundation_arrays}


def tiled(arrays: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Return ``arrays`` repeated along the batch axis to exactly ``batch`` rows."""
    n = next(iter(arrays.values())).shape[0]
    index = np.arange(batch) % n
    return {name: np.ascontiguousarray(array[index]) for name, array in arrays.items()}


def torchscript_runner(path_or_module: Any, device: str) -> Runner:
    """Return a function running a TorchScript module on ``device`` (inputs in forward order)."""
    import torch  # noqa: PLC0415 ml extra

    if isinstance(path_or_module, Path):
        module = torch.jit.load(str(path_or_module), map_location=device)
    else:
        module = path_or_module.to(device)

    def run(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            result = module(*(torch.from_numpy(a).to(device) for a in arrays.values()))
        results = [result] if isinstance(result, torch.Tensor) else list(result)
        return [r.cpu().numpy() for r in results]  # .cpu() waits for the device: timings include it

    return run


def onnx_runner(path: Path, device: str) -> Runner:
    """Return a function running an ONNX model with ONNX Runtime on ``device``."""
    from inference.export import onnx_session  # noqa: PLC0415 ml extra

    session = onnx_session(path, device)
    names = [output.name for output in session.get_outputs()]
    return lambda arrays: list(session.run(names, arrays))


def traced_detector() -> Any:
    """Return the served detector traced from its checkpoint on CPU (the libtorch alternative to ONNX)."""
    import torch  # noqa: PLC0415 ml extra

    from ecg_models.anomaly_detector import from_checkpoint  # noqa: PLC0415 ml extra
    from inference.export import example_inputs, served_detector  # noqa: PLC0415 ml extra

    model = from_checkpoint(WEIGHTS / "detector.pt").eval()
    with torch.no_grad():
        return torch.jit.trace(served_detector(model), example_inputs(model, batch=2))


def compare(reference: list[np.ndarray], other: list[np.ndarray], *, atol: float, rtol: float) -> dict[str, Any]:
    """Return the largest differences of ``other`` from ``reference`` and whether they are within tolerance."""
    diffs, within = [], True
    for ref, out in zip(reference, other, strict=True):
        if np.issubdtype(ref.dtype, np.integer):
            same_rows = [bool(np.array_equal(a, b)) for a, b in zip(ref, out, strict=True)]
            diffs.append({"rows_equal": sum(same_rows), "rows": len(same_rows)})
            continue
        diff = float(np.abs(ref.astype(np.float64) - out).max())
        bound = atol + rtol * float(np.abs(ref).max())
        within = within and diff <= bound
        diffs.append({"max_abs_diff": diff, "bound": bound})
    return {"outputs": diffs, "within_tolerance": within}


def time_runner(run: Runner, arrays: dict[str, np.ndarray], batch: int, repeats: int, seconds: float) -> dict[str, Any]:
    """Return ECG/s and median latency of ``run`` at ``batch`` (one warm-up call first)."""
    inputs = tiled(arrays, batch)
    run(inputs)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < repeats and (not times or time.perf_counter() < deadline):
        started = time.perf_counter()
        run(inputs)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "batch": batch,
        "ecg_per_s": round(batch / median, 1),
        "latency_ms": round(median * 1000, 2),
        "runs": len(times),
    }


def analyzer_figures(device: str, ecgs: Sequence[Any], rounds: int) -> dict[str, Any]:
    """Return per-ECG figures of the whole in-process analyzer on ``device``."""
    from inference.analyzer import InProcessAnalyzer  # noqa: PLC0415 ml extra

    analyzer = InProcessAnalyzer(
        detector_checkpoint=WEIGHTS / "detector.pt", foundation_checkpoint=WEIGHTS / "foundation.pt", device=device
    )
    analyzer.analyse(ecgs[0])  # loads the models and warms up
    latencies = []
    for _ in range(rounds):
        for ecg in ecgs:
            started = time.perf_counter()
            analyzer.analyse(ecg)
            latencies.append(time.perf_counter() - started)
    ordered = sorted(latencies)
    return {
        "ecgs": len(latencies),
        "ecg_per_s": round(len(latencies) / sum(latencies), 2),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1),
    }


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Run the four steps and return the report (``ok`` False on any problem)."""
    import torch  # noqa: PLC0415 ml extra

    from inference.artifact_checks import artifact_problems  # noqa: PLC0415 ml extra

    torch.set_num_threads(args.threads)
    repository: Path = args.repository
    artifacts = sorted(repository.glob("*/[0-9]*/model.*"))
    report: dict[str, Any] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "artifact_problems": [problem for path in artifacts for problem in artifact_problems(path)],
        "models": {},
    }
    ecgs = sample_ecgs()
    foundation_model = next(repository.glob(f"{FOUNDATION_MODEL}/[0-9]*/model.pt"), None)
    measured_size = 0
    config = repository / FOUNDATION_MODEL / "config.pbtxt"
    if foundation_model is not None and 'name: "measured"' in config.read_text():
        from inference.clinical.conditioning import MEASURED_SNOMED  # noqa: PLC0415

        measured_size = len(MEASURED_SNOMED)
    inputs = model_inputs(ecgs, measured_size)
    candidates: list[tuple[str, str, Callable[[str], Runner]]] = []
    for path in artifacts:
        model = path.parent.parent.name
        kind = "onnx" if path.suffix == ".onnx" else "torchscript"
        factory = (
            (lambda d, p=path: onnx_runner(p, d)) if kind == "onnx" else (lambda d, p=path: torchscript_runner(p, d))
        )
        candidates.append((f"{model}/{path.parent.name} ({kind})", model, factory))
    if args.with_trace:
        traced = traced_detector()
        candidates.append(
            (f"{DETECTOR_MODEL} (torchscript trace)", DETECTOR_MODEL, lambda d: torchscript_runner(traced, d))
        )
    ok = not report["artifact_problems"]
    for label, model, factory in candidates:
        entry: dict[str, Any] = {}
        report["models"][label] = entry
        try:
            run = factory(args.device)
        except RuntimeError as exc:  # e.g. no CUDA provider in this onnxruntime: said, not hidden
            entry["skipped"] = str(exc)
            continue
        arrays = inputs[model]
        entry["comparison"] = compare(factory("cpu")(arrays), run(arrays), atol=args.atol, rtol=args.rtol)
        mismatches = [o["rows"] - o["rows_equal"] for o in entry["comparison"]["outputs"] if "rows" in o]
        entry["comparison"]["within_tolerance"] &= all(m <= args.max_report_mismatches for m in mismatches)
        ok = ok and entry["comparison"]["within_tolerance"]
        # The foundation model decodes the report inside the call: its batches are capped apart.
        batches = args.batches if model != FOUNDATION_MODEL else [b for b in args.batches if b <= args.max_report_batch]
        entry["throughput"] = [time_runner(run, arrays, b, args.repeats, args.seconds) for b in batches]
    if args.analyzer_ecgs:
        report["analyzer"] = analyzer_figures(args.device, ecgs[: args.analyzer_ecgs], args.analyzer_rounds)
    report["ok"] = ok
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the check, print (and optionally write) the JSON report; return the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 256])
    parser.add_argument(
        "--max-report-batch",
        type=int,
        default=256,
        help="largest batch timed for the foundation model (it decodes the report)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per batch size (at most)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time budget per batch size (one call at least)")
    parser.add_argument("--atol", type=float, default=1e-3)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--max-report-mismatches", type=int, default=1)
    parser.add_argument("--no-trace", dest="with_trace", action="store_false", help="skip the traced detector")
    parser.add_argument("--analyzer-ecgs", type=int, default=8, help="sample ECGs for the whole analyzer (0 = skip)")
    parser.add_argument("--analyzer-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = run_check(args)
    text = json.dumps(report, indent=1)
    print(text)  # noqa: T201 - a command-line tool's output
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
