"""Write and read Triton model directories: configs (GPU and CPU), versions and their serving facts.

Shared by ``inference.export`` (detector) and ``inference.export_foundation`` (foundation),
so neither export module imports the other's internals; the analyzer reads ``version_serving``.

Layout of one model (``<name>/``)::

    config.pbtxt            GPU production config (KIND_GPU)
    configs/cpu.pbtxt       CPU profile (``tritonserver --model-config-name=cpu``), sites without a GPU
    <N>/model.onnx|model.pt the artifact of version N
    <N>/serving.json        version N's label, operating point and output vocabulary

Triton shares one config between all versions of a model, so what a version needs to be read
(its threshold, calibration, label) cannot be a plain config parameter: serving [N, N+1] would
apply N's threshold to N+1. Each version's ``serving.json`` is the source; the configs carry a
copy of each as the parameter ``serving_v<N>`` (clients only reach Triton's API, not its disk),
and clients pick the entry of the version the response says ran. ``version_policy`` pins the
versions present.

numpy-free and torch-free: the artifact is written by a callback the export passes in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = REPO / "deploy" / "triton" / "model_repository"
WEIGHTS = REPO / "ecg_models" / "weights"
DETECTOR_MODEL = "ecg_detector"
FOUNDATION_MODEL = "ecg_foundation"
# Served the report generator beside ecg_foundation until ecg_foundation ran both from one encoder
# pass (issue 14); the export removes its directory from a fresh repository.
RETIRED_REPORT_MODEL = "ecg_report"
SERVING_FILE = "serving.json"
SERVING_PARAMETER = "serving_v{version}"

# The Triton release the artifacts are built for: the image in deploy/compose.yaml and
# deploy/k8s/triton.yaml. Its backends, per NVIDIA's framework support matrix for 24.10, are
# ONNX Runtime 1.19 (reads ONNX IR <= 10, opsets <= 21) and libtorch from PyTorch 2.5
# (reads TorchScript archives up to file format version 10). tests/inference/test_served_artifacts.py
# checks every artifact against these limits.
TRITON_RELEASE = "24.10"
ONNX_OPSET = 17  # also the opset TensorRT 10 parses fully, for the TensorRT execution provider
ONNX_MAX_IR_VERSION = 10
TORCHSCRIPT_MAX_FILE_VERSION = 10

# Max batch 32: on this CPU the detector gives 104 ECG/s at batch 1 and 118 ECG/s at batch 32
# (docs/models/detector.md), so larger batches buy nothing here; on a GPU 32 ECGs are
# 32 x 3 masks x 8 beats = 768 sequences per pass, enough to fill an H100-class device without
# making a request wait long for its batch. The queue delay bounds that wait. Revisit with the
# figures of bench/gpu_check.py once it has run on a GPU (docs/benchmarks.md).
MAX_BATCH_SIZE = 32
PREFERRED_BATCH_SIZES = (8, 16, 32)
MAX_QUEUE_DELAY_US = 5000
# Warm-up batches run at load, before the model reports ready: the first request otherwise pays
# CUDA context and kernel selection (seconds on GPU). The CPU profile warms batch 1 only, so that
# a CPU-only site (and the test suite) does not spend its start-up running full batches.
GPU_WARMUP_BATCHES = (1, MAX_BATCH_SIZE)
CPU_WARMUP_BATCHES = (1,)

PLATFORMS = {"onnxruntime_onnx": "model.onnx", "pytorch_libtorch": "model.pt"}


@dataclass(frozen=True)
class Tensor:
    """One input or output of a Triton model config (dims exclude the batch dimension)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    """What a model's configs say, apart from its versions."""

    name: str
    platform: str  # a key of PLATFORMS
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    parameters: Mapping[str, str] = field(default_factory=dict)  # shared by every version

    @property
    def filename(self) -> str:
        """Return the artifact's file name inside a version directory."""
        return PLATFORMS[self.platform]


def sha256_prefix(path: Path, chars: int = 12) -> str:
    """Return the first ``chars`` hex digits of the file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:chars]


def _tensor_block(kind: str, tensors: Sequence[Tensor]) -> str:
    rows = [
        f'  {{ name: "{t.name}" data_type: {t.data_type} dims: [ {", ".join(str(d) for d in t.dims)} ] }}'
        for t in tensors
    ]
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def _warmup_block(inputs: Sequence[Tensor], batches: Sequence[int]) -> str:
    """Return ``model_warmup`` entries with zero inputs at each batch size."""
    entries = []
    for batch in batches:
        tensors = " ".join(
            f'inputs {{ key: "{t.name}" value {{ data_type: {t.data_type} '
            f"dims: [ {', '.join(str(d) for d in t.dims)} ] zero_data: true }} }}"
            for t in inputs
        )
        entries.append(f'  {{ name: "zeros_batch_{batch}" batch_size: {batch} {tensors} }}')
    return "model_warmup [\n" + ",\n".join(entries) + "\n]\n"


def _thread_parameters(platform: str) -> dict[str, str]:
    """Return the backend's own thread-count parameters (the two backends spell them differently)."""
    # One intra-op thread per instance. Measured here (bench/bench_pipeline.py, docs/benchmarks.md):
    # with 2 intra-op threads on a busy 2-core machine, OpenMP's threads wait on each other and
    # the detector fell from 71 to 1.5 ECG/s. On GPU the thread pools only feed the device.
    if platform == "onnxruntime_onnx":
        return {"intra_op_thread_count": "1", "inter_op_thread_count": "1"}
    return {"INTRA_OP_THREAD_COUNT": "1", "INFERENCE_MODE": "true"}


def config_pbtxt(spec: ModelSpec, versions: Mapping[int, Mapping[str, str]], *, gpu: bool) -> str:
    """Return the text of ``spec``'s GPU production config or its CPU profile.

    ``versions`` maps each served version to its serving facts (``serving.json``); the config pins
    exactly those versions and carries each one's facts as ``serving_v<N>``.
    """
    if not versions:
        raise ValueError(f"{spec.name}: a config needs at least one version")
    text = f'platform: "{spec.platform}"\n'
    text += f"max_batch_size: {MAX_BATCH_SIZE}\n"
    served = ", ".join(str(v) for v in sorted(versions))
    text += f"version_policy: {{ specific: {{ versions: [ {served} ] }} }}\n"
    text += _tensor_block("input", spec.inputs) + _tensor_block("output", spec.outputs)
    preferred = ", ".join(str(size) for size in PREFERRED_BATCH_SIZES)
    text += (
        f"dynamic_batching {{ preferred_batch_size: [ {preferred} ] "
        f"max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}\n"
    )
    # GPU: two instances per GPU overlap one batch's host-device copies with the next one's
    # compute. CPU (local/CI, 2 cores): single-threaded instances, one per core.
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    text += f"instance_group [ {{ kind: {kind} count: 2 }} ]\n"
    text += _warmup_block(spec.inputs, GPU_WARMUP_BATCHES if gpu else CPU_WARMUP_BATCHES)
    params: dict[str, str] = {**_thread_parameters(spec.platform), **spec.parameters}
    for version in sorted(versions):
        params[SERVING_PARAMETER.format(version=version)] = json.dumps(dict(versions[version]), sort_keys=True)
    for key, value in params.items():
        text += f'parameters {{ key: "{key}" value {{ string_value: {json.dumps(value)} }} }}\n'
    return text


def served_versions(model_dir: Path) -> dict[int, dict[str, str]]:
    """Return ``{version: serving facts}`` for every numbered directory of ``model_dir`` with a serving.json."""
    versions = {}
    for child in model_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and (child / SERVING_FILE).exists():
            versions[int(child.name)] = json.loads((child / SERVING_FILE).read_text())
    return versions


def write_configs(model_dir: Path, spec: ModelSpec) -> None:
    """(Re)write ``config.pbtxt`` and ``configs/cpu.pbtxt`` for the versions now in ``model_dir``."""
    versions = served_versions(model_dir)
    (model_dir / "configs").mkdir(exist_ok=True)
    for path, gpu in ((model_dir / "config.pbtxt", True), (model_dir / "configs" / "cpu.pbtxt", False)):
        path.write_text(config_pbtxt(spec, versions, gpu=gpu))


def write_model(
    repository: Path,
    spec: ModelSpec,
    write_artifact: Callable[[Path], None],
    serving: Mapping[str, str],
    *,
    version: int = 1,
    keep_other_versions: bool = False,
) -> Path:
    """Write version ``version`` of ``spec`` (artifact + serving.json) and its configs; return the version dir.

    Without ``keep_other_versions`` the model directory is replaced (a fresh repository); with it,
    the other versions stay and the configs serve them all (the upgrade path, docs/operations.md §4).
    """
    model_dir = repository / spec.name
    if model_dir.exists() and not keep_other_versions:
        shutil.rmtree(model_dir)
    version_dir = model_dir / str(version)
    if version_dir.exists():
        shutil.rmtree(version_dir)
    version_dir.mkdir(parents=True)
    write_artifact(version_dir / spec.filename)
    (version_dir / SERVING_FILE).write_text(json.dumps(dict(serving), indent=1, sort_keys=True) + "\n")
    write_configs(model_dir, spec)
    return version_dir


def version_serving(parameters: Mapping[str, str], model: str, version: str) -> dict[str, str]:
    """Return the serving facts of ``model`` version ``version`` from its config ``parameters``.

    Raises LookupError when the config has no entry for that version: a response must never be
    read with another version's threshold or label.
    """
    raw = parameters.get(SERVING_PARAMETER.format(version=version))
    if not raw:
        known = sorted(key for key in parameters if key.startswith("serving_v"))
        raise LookupError(
            f"{model}: the config has no serving facts for version {version!r} (has {known}); "
            "rebuild with python -m inference.export"
        )
    facts = json.loads(raw)
    return {str(key): str(value) for key, value in facts.items()}
