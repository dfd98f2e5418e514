"""Export the detector for serving: ``python -m training.detector_export --out DIR``.

Writes ``DIR/detector.torchscript.pt`` (traced) and ``DIR/detector.onnx`` (dynamic batch axis),
then checks both against the eager model on a real-shaped batch and prints the largest
differences. Inputs and outputs keep the names of ``AnomalyDetector.forward``:
record (B, 12, 2400) float32, beats (B, 8, 12, 240) float32, beat_valid (B, 8) bool,
lead_valid (B, 12) bool, sample_valid (B, 2400) bool, r_track (B, 2400) float32 ->
score (B,), anomaly_map (B, 12, 2400), attributes (B, 7).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ecg_models.anomaly_detector import from_checkpoint
from inference.export import example_inputs

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT_NAMES = ["record", "beats", "beat_valid", "lead_valid", "sample_valid", "r_track"]
OUTPUT_NAMES = ["score", "anomaly_map", "attributes"]


def export(checkpoint: Path, out_dir: Path, device: str = "cpu") -> dict[str, float]:
    """Write TorchScript and ONNX files; return the max abs difference of each vs eager.

    The files are device-free (traced on CPU from code that never names a device); ``device`` is
    where the TorchScript file is loaded and checked.
    """
    import onnxruntime as ort

    model = from_checkpoint(checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = example_inputs(model)
    with torch.no_grad():
        eager = model(*args)
        traced = torch.jit.trace(model, args)
        traced.save(str(out_dir / "detector.torchscript.pt"))
        onnx_path = out_dir / "detector.onnx"
        torch.onnx.export(
            model,
            args,
            str(onnx_path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes={name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES},
            dynamo=False,
        )
    check = example_inputs(model, batch=3)
    with torch.no_grad():
        eager = model(*check)
        loaded = torch.jit.load(str(out_dir / "detector.torchscript.pt"), map_location=device)
        scripted = [t.cpu() for t in loaded(*(t.to(device) for t in check))]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {n: a.numpy() for n, a in zip(INPUT_NAMES, check, strict=True)})
    return {
        "torchscript_max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(eager, scripted, strict=True)),
        "onnx_max_abs_diff": max(float(np.abs(a.numpy() - b).max()) for a, b in zip(eager, onnx_out, strict=True)),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse flags, export, print the differences as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "ecg_models" / "weights" / "detector.pt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="where the written TorchScript file is checked (cpu, cuda)")
    args = parser.parse_args(argv)
    print(json.dumps(export(args.checkpoint, args.out, device=args.device)))


if __name__ == "__main__":
    main()
