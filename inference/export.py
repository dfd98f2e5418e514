"""Rebuild the Triton model repository from the shipped checkpoints: ``python -m inference.export``.

Writes ``deploy/triton/model_repository/`` (or ``--repository``), one directory per model in the
layout of ``inference.model_repository`` (GPU ``config.pbtxt``, CPU profile ``configs/cpu.pbtxt``,
``<N>/`` artifact and ``<N>/serving.json``):

- ``ecg_detector``: ONNX (``onnxruntime_onnx``, opset ``ONNX_OPSET``), served by Triton's ONNX
  Runtime backend (CUDA execution provider on GPU, CPU provider on the CPU profile);
- ``ecg_foundation`` when the foundation checkpoint exists: classifier and report generator in one
  TorchScript model, one encoder pass per ECG (``inference.export_foundation``; see there why).

Each version's label and operating point go to its own ``serving.json`` and, copied, to the config
parameter ``serving_v<N>``: for the detector the version label (checkpoint name + SHA-256
prefix), the score calibration (``score_mean``, ``score_std`` of validation normals),
``threshold`` (on the calibrated score) and ``map_threshold`` (anomaly-map level that marks an
interval), from the checkpoint's ``operating_point`` chosen on the validation fold.

``--version N --keep-other-versions`` adds version N beside those already in the repository (the
upgrade path, docs/operations.md §4). ``--device`` is where the written artifacts are loaded and
checked against the eager model (CPU by default; ``cuda`` on a GPU host): every artifact is written
device-free, so the one file runs on either.

Needs torch (the ``ml`` extra); everything else in ``inference/`` stays numpy-only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from inference.export_foundation import export_foundation
from inference.model_repository import (
    DEFAULT_REPOSITORY,
    DETECTOR_MODEL,
    ONNX_OPSET,
    WEIGHTS,
    ModelSpec,
    Tensor,
    sha256_prefix,
    write_model,
)

DETECTOR_INPUTS = ("record", "beats", "beat_valid", "lead_valid", "sample_valid", "r_track")
# The names the analyzer asks for (kept from the TorchScript export, whose backend selects
# outputs by the "__<index>" suffix).
DETECTOR_OUTPUTS = ("score__0", "anomaly_map__1", "attributes__2")


def detector_parameters(checkpoint: Path, operating_point: Mapping[str, Any]) -> dict[str, str]:
    """Return the detector version's serving facts (version label and operating point)."""
    stats = operating_point["score_stats"]
    if "map_threshold" not in operating_point:
        raise ValueError(
            f"{checkpoint}: operating_point has no 'map_threshold'; run "
            "python -m training.evaluate_detector --localization --store-map-threshold first"
        )
    return {
        "model_version_label": f"{checkpoint.stem}-{sha256_prefix(checkpoint)}",
        "score_mean": repr(float(stats["rest_mean"])),
        "score_std": repr(float(stats["rest_std"])),
        "threshold": repr(float(operating_point["threshold_restoration"])),
        "map_threshold": repr(float(operating_point["map_threshold"])),
        "map_rate_hz": "250",
        "operating_point_chosen_on": str(operating_point.get("chosen_on", "validation")),
    }


def example_inputs(model: Any, batch: int = 2) -> tuple[Any, ...]:
    """Return random inputs with the serving shapes of the detector ``model``'s config (for tracing and checks)."""
    # Export needs torch (the ml extra); the rest of inference stays numpy-only.
    import torch  # noqa: PLC0415 ml extra (torch), export only

    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    r_track = torch.zeros(batch, cfg.record_samples)
    r_track[:, 100::200] = 1.0
    return (
        torch.randn(batch, cfg.n_leads, cfg.record_samples, generator=g) * 0.2,
        torch.randn(batch, cfg.max_beats, cfg.n_leads, cfg.beat_samples, generator=g) * 0.2,
        torch.ones(batch, cfg.max_beats, dtype=torch.bool),
        torch.ones(batch, cfg.n_leads, dtype=torch.bool),
        torch.ones(batch, cfg.record_samples, dtype=torch.bool),
        r_track,
    )


def served_detector(model: Any) -> Any:
    """Return ``model`` wrapped to give the score as (batch, 1): Triton configs cannot declare a batched scalar."""
    import torch  # noqa: PLC0415 ml extra (torch), export only

    class ServedDetector(torch.nn.Module):
        def __init__(self, detector: torch.nn.Module) -> None:
            super().__init__()
            self.detector = detector

        def forward(
            self,
            record: torch.Tensor,
            beats: torch.Tensor,
            beat_valid: torch.Tensor,
            lead_valid: torch.Tensor,
            sample_valid: torch.Tensor,
            r_track: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            score, anomaly_map, attributes = self.detector(record, beats, beat_valid, lead_valid, sample_valid, r_track)
            return score.unsqueeze(-1), anomaly_map, attributes

    return ServedDetector(model).eval()


def detector_spec(cfg: Any) -> ModelSpec:
    """Return the served detector's config shape for the model config ``cfg``."""
    return ModelSpec(
        name=DETECTOR_MODEL,
        platform="onnxruntime_onnx",
        inputs=(
            Tensor("record", "TYPE_FP32", (cfg.n_leads, cfg.record_samples)),
            Tensor("beats", "TYPE_FP32", (cfg.max_beats, cfg.n_leads, cfg.beat_samples)),
            Tensor("beat_valid", "TYPE_BOOL", (cfg.max_beats,)),
            Tensor("lead_valid", "TYPE_BOOL", (cfg.n_leads,)),
            Tensor("sample_valid", "TYPE_BOOL", (cfg.record_samples,)),
            Tensor("r_track", "TYPE_FP32", (cfg.record_samples,)),
        ),
        outputs=(
            Tensor("score__0", "TYPE_FP32", (1,)),
            Tensor("anomaly_map__1", "TYPE_FP32", (cfg.n_leads, cfg.record_samples)),
            Tensor("attributes__2", "TYPE_FP32", (cfg.n_attributes,)),
        ),
    )


def onnx_session(path: Path, device: str) -> Any:
    """Return an ONNX Runtime session for ``path`` on ``device`` ("cpu" or "cuda[:i]")."""
    import onnxruntime as ort  # noqa: PLC0415 ml extra, export and checks only

    if device == "cpu":
        providers: list[Any] = ["CPUExecutionProvider"]
    else:
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(f"device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=providers)


def export_detector(
    repository: Path, checkpoint: Path, *, device: str = "cpu", version: int = 1, keep_other_versions: bool = False
) -> dict[str, Any]:
    """Export the detector to ONNX in ``repository``; return the check (max abs diff vs eager on CPU)."""
    import numpy as np  # noqa: PLC0415 export only
    import torch  # noqa: PLC0415 ml extra (torch), export only

    from ecg_models.anomaly_detector import from_checkpoint  # noqa: PLC0415 ml extra (torch), export only

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = from_checkpoint(checkpoint).eval()
    served = served_detector(model)
    spec = detector_spec(model.cfg)

    def write(path: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(
                served,
                example_inputs(model, batch=2),
                str(path),
                input_names=list(DETECTOR_INPUTS),
                output_names=list(DETECTOR_OUTPUTS),
                dynamic_axes={name: {0: "batch"} for name in DETECTOR_INPUTS + DETECTOR_OUTPUTS},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )

    parameters = detector_parameters(checkpoint, ckpt["operating_point"])
    version_dir = write_model(
        repository, spec, write, parameters, version=version, keep_other_versions=keep_other_versions
    )
    check = example_inputs(model, batch=3)
    with torch.no_grad():
        eager = served(*check)
    session = onnx_session(version_dir / spec.filename, device)
    loaded = session.run(list(DETECTOR_OUTPUTS), {n: t.numpy() for n, t in zip(DETECTOR_INPUTS, check, strict=True)})
    diff = max(float(np.abs(a.numpy() - b).max()) for a, b in zip(eager, loaded, strict=True))
    return {
        "model": DETECTOR_MODEL,
        "version": version,
        "version_label": parameters["model_version_label"],
        "device": device,
        "max_abs_diff": diff,
    }


def export_all(
    repository: Path,
    detector: Path,
    foundation: Path | None,
    *,
    device: str = "cpu",
    version: int = 1,
    keep_other_versions: bool = False,
) -> list[dict[str, Any]]:
    """Export every model whose checkpoint exists; return one check per model."""
    repository.mkdir(parents=True, exist_ok=True)
    results = [
        export_detector(repository, detector, device=device, version=version, keep_other_versions=keep_other_versions)
    ]
    if foundation is not None and foundation.exists():
        results.extend(
            export_foundation(
                repository, foundation, device=device, version=version, keep_other_versions=keep_other_versions
            )
        )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, rebuild the repository, print one JSON line per model."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--detector", type=Path, default=WEIGHTS / "detector.pt")
    parser.add_argument("--foundation", type=Path, default=WEIGHTS / "foundation.pt")
    parser.add_argument("--detector-only", action="store_true", help="leave the foundation model as it is")
    parser.add_argument("--device", default="cpu", help="where to load and check the written artifacts (cpu, cuda)")
    parser.add_argument("--version", type=int, default=1, help="version directory to write (default 1)")
    parser.add_argument(
        "--keep-other-versions", action="store_true", help="keep the versions already there and serve them all"
    )
    args = parser.parse_args(argv)
    import torch  # noqa: PLC0415 ml extra (torch), export only

    torch.set_num_threads(1)
    for result in export_all(
        args.repository,
        args.detector,
        None if args.detector_only else args.foundation,
        device=args.device,
        version=args.version,
        keep_other_versions=args.keep_other_versions,
    ):
        print(json.dumps(result))  # noqa: T201 - a command-line tool's output


if __name__ == "__main__":
    main()
