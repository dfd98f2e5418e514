"""Write Triton model directories: names, config.pbtxt (GPU and CPU variant), versioned files.

Shared by ``inference.export`` (detector) and ``inference.export_foundation`` (foundation, report),
so neither export module imports the other's internals.
"""

from __future__ import annotations

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
