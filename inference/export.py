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
import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = REPO / "deploy" / "triton" / "model_repository"
WEIGHTS = REPO / "ecg_models" / "weights"
DETECTOR_MODEL = "ecg_detector"
FOUNDATION_MODEL = "ecg_foundation"
REPORT_MODEL = "ecg_report"

# Max batch 32: on this CPU the detector gives 104 ECG/s at batch 1 and 118 ECG/s at batch 32
# (docs/models/detector.md), so larger batches buy nothing here; on a GPU 32 ECGs are
# 32 x 3 masks x 8 beats = 768 sequences per pass, enough to fill an H100-class device without
# making a request wait long for its batch. The queue delay bounds that wait.
MAX_BATCH_SIZE = 32
PREFERRED_BATCH_SIZES = (8, 16, 32)
MAX_QUEUE_DELAY_US = 5000


@dataclass(frozen=True)
class Tensor:
    """One input or output of a Triton model config (dims exclude the batch dimension)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def sha256_prefix(path: Path, chars: int = 12) -> str:
    """Return the first ``chars`` hex digits of the file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:chars]


def _tensor_block(kind: str, tensors: Sequence[Tensor]) -> str:
    rows = [
        f'  {{ name: "{t.name}" data_type: {t.data_type} dims: [ {", ".join(str(d) for d in t.dims)} ] }}'
        for t in tensors
    ]
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def config_pbtxt(
    *,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    parameters: Mapping[str, str],
    gpu: bool,
) -> str:
    """Return the text of a ``pytorch_libtorch`` config for GPU production or its CPU variant."""
    text = 'platform: "pytorch_libtorch"\n'
    text += f"max_batch_size: {MAX_BATCH_SIZE}\n"
    text += _tensor_block("input", inputs) + _tensor_block("output", outputs)
    preferred = ", ".join(str(size) for size in PREFERRED_BATCH_SIZES)
    text += (
        f"dynamic_batching {{ preferred_batch_size: [ {preferred} ] "
        f"max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}\n"
    )
    # GPU: two instances per GPU overlap one batch's host-device copies with the next one's
    # compute. CPU (local/CI, 2 cores): single-threaded instances, one per core. Measured here
    # (bench/bench_pipeline.py, docs/benchmarks.md): with 2 intra-op threads on a busy 2-core
    # machine, OpenMP's threads wait on each other and the detector fell from 71 to 1.5 ECG/s.
    kind, count, threads = ("KIND_GPU", 2, 1) if gpu else ("KIND_CPU", 2, 1)
    text += f"instance_group [ {{ kind: {kind} count: {count} }} ]\n"
    params = {"INTRA_OP_THREAD_COUNT": str(threads), "INFERENCE_MODE": "true", **parameters}
    for key, value in params.items():
        text += f'parameters {{ key: "{key}" value {{ string_value: {json.dumps(value)} }} }}\n'
    return text


def write_model(
    repository: Path,
    name: str,
    module: Any,
    *,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    parameters: Mapping[str, str],
) -> Path:
    """Write ``name``'s directory (version 1, GPU config, CPU variant) and return it."""
    model_dir = repository / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "configs").mkdir()
    module.save(str(model_dir / "1" / "model.pt"))
    for path, gpu in ((model_dir / "config.pbtxt", True), (model_dir / "configs" / "cpu.pbtxt", False)):
        path.write_text(config_pbtxt(inputs=inputs, outputs=outputs, parameters=parameters, gpu=gpu))
    return model_dir


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


def export_detector(repository: Path, checkpoint: Path) -> dict[str, Any]:
    """Trace the detector into ``repository`` and return the export check (max abs diff vs eager)."""
    import torch

    from ecg_models.anomaly_detector import from_checkpoint
    from training.detector_export import example_inputs

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
        from inference.export_foundation import export_foundation

        results.extend(export_foundation(repository, foundation))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags, rebuild the repository, print one JSON line per model."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--detector", type=Path, default=WEIGHTS / "detector.pt")
    parser.add_argument("--foundation", type=Path, default=WEIGHTS / "foundation.pt")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for result in export_all(args.repository, args.detector, args.foundation):
        print(json.dumps(result))  # noqa: T201 - a command-line tool's output


if __name__ == "__main__":
    main()
