"""Rebuild the Triton model repository from the shipped checkpoints: ``python -m inference.export``.

Writes ``deploy/triton/model_repository/`` (or ``--repository``)::

    ecg_detector/config.pbtxt            GPU production config (KIND_GPU, dynamic batching)
    ecg_detector/configs/cpu.pbtxt       CPU variant (``tritonserver --model-config-name=cpu``)
    ecg_detector/1/model.pt              TorchScript (platform pytorch_libtorch)

and, when the foundation checkpoint exists, the same three files for ``ecg_foundation`` (classifier
heads + embedding) and ``ecg_report`` (server-side greedy report generation in one call).

What the client needs besides the tensors travels in each config's ``parameters`` (read back with
Triton's model-config API), so a model version and its operating point can never be mixed up:
``model_version_label`` (checkpoint name + SHA-256 prefix), and for the detector the score
calibration (``score_mean``, ``score_std`` of validation normals), ``threshold`` (on the calibrated
score) and ``map_threshold`` (anomaly-map level that marks an interval). Both come from the
checkpoint's ``operating_point``, chosen on the validation fold.

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
    WEIGHTS,
    Tensor,
    sha256_prefix,
    write_model,
)


def detector_parameters(checkpoint: Path, operating_point: Mapping[str, Any]) -> dict[str, str]:
    """Return the detector config's parameters (version label and operating point)."""
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


def export_detector(repository: Path, checkpoint: Path) -> dict[str, Any]:
    """Trace the detector into ``repository`` and return the export check (max abs diff vs eager)."""
    import torch  # noqa: PLC0415 ml extra (torch), export only

    from ecg_models.anomaly_detector import from_checkpoint  # noqa: PLC0415 ml extra (torch), export only

    class ServedDetector(torch.nn.Module):
        """Return the score as (batch, 1): Triton configs cannot declare a batched scalar output."""

        def __init__(self, detector: torch.nn.Module) -> None:
            super().__init__()
            self.detector = detector

        # Named arguments: Triton matches input names to them.
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

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = from_checkpoint(checkpoint).eval()
    cfg = model.cfg
    with torch.no_grad():
        traced = torch.jit.trace(ServedDetector(model), example_inputs(model, batch=2))
    inputs = [
        Tensor("record", "TYPE_FP32", (cfg.n_leads, cfg.record_samples)),
        Tensor("beats", "TYPE_FP32", (cfg.max_beats, cfg.n_leads, cfg.beat_samples)),
        Tensor("beat_valid", "TYPE_BOOL", (cfg.max_beats,)),
        Tensor("lead_valid", "TYPE_BOOL", (cfg.n_leads,)),
        Tensor("sample_valid", "TYPE_BOOL", (cfg.record_samples,)),
        Tensor("r_track", "TYPE_FP32", (cfg.record_samples,)),
    ]
    # "<name>__<index>" output names select by position in forward's tuple on the real libtorch
    # backend and on our stand-in alike.
    outputs = [
        Tensor("score__0", "TYPE_FP32", (1,)),
        Tensor("anomaly_map__1", "TYPE_FP32", (cfg.n_leads, cfg.record_samples)),
        Tensor("attributes__2", "TYPE_FP32", (7,)),
    ]
    parameters = detector_parameters(checkpoint, ckpt["operating_point"])
    model_dir = write_model(repository, DETECTOR_MODEL, traced, inputs=inputs, outputs=outputs, parameters=parameters)
    check = example_inputs(model, batch=3)
    with torch.no_grad():
        eager = model(*check)
        loaded = list(torch.jit.load(str(model_dir / "1" / "model.pt"))(*check))
    loaded[0] = loaded[0].squeeze(-1)
    diff = max(float((a - b).abs().max()) for a, b in zip(eager, loaded, strict=True))
    return {"model": DETECTOR_MODEL, "version_label": parameters["model_version_label"], "max_abs_diff": diff}


def export_all(repository: Path, detector: Path, foundation: Path | None) -> list[dict[str, Any]]:
    """Export every model whose checkpoint exists; return one check per model."""
    repository.mkdir(parents=True, exist_ok=True)
    results = [export_detector(repository, detector)]
    if foundation is not None and foundation.exists():
        results.extend(export_foundation(repository, foundation))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, rebuild the repository, print one JSON line per model."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--detector", type=Path, default=WEIGHTS / "detector.pt")
    parser.add_argument("--foundation", type=Path, default=WEIGHTS / "foundation.pt")
    args = parser.parse_args(argv)
    import torch  # noqa: PLC0415 ml extra (torch), export only

    torch.set_num_threads(1)
    for result in export_all(args.repository, args.detector, args.foundation):
        print(json.dumps(result))  # noqa: T201 - a command-line tool's output


if __name__ == "__main__":
    main()
