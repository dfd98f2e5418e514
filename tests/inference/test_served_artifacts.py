"""Every artifact in deploy/triton/model_repository runs on any device and in the target Triton release.

CPU only: a device constant is found in the graph, not by running on a GPU (bench/gpu_check.py
does that where one exists). Also checks what the configs promise: the artifact the platform
names, pinned versions, warm-up, and each version's serving facts equal to its serving.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from inference.model_repository import (
    DEFAULT_REPOSITORY,
    ONNX_MAX_IR_VERSION,
    ONNX_OPSET,
    PLATFORMS,
    SERVING_FILE,
    TRITON_RELEASE,
    served_versions,
)

torch = pytest.importorskip("torch", reason="loading TorchScript needs torch (the ml extra)")
pytest.importorskip("onnx", reason="reading ONNX needs onnx (the ml extra)")

from inference.artifact_checks import artifact_problems, graph_device_constants  # noqa: E402 after importorskip

REPO = Path(__file__).resolve().parents[2]
MODEL_DIRS = sorted(path.parent for path in DEFAULT_REPOSITORY.glob("*/config.pbtxt"))
ARTIFACTS = sorted(p for d in MODEL_DIRS for p in d.glob("[0-9]*/model.*"))


def test_the_repository_holds_the_two_served_models() -> None:
    # ecg_foundation gives the classifier outputs and the report from one encoder pass (issue 14).
    assert [d.name for d in MODEL_DIRS] == ["ecg_detector", "ecg_foundation"]
    assert len(ARTIFACTS) >= 2


@pytest.mark.parametrize("artifact", ARTIFACTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_artifact_has_no_device_constant_and_fits_the_target_release(artifact: Path) -> None:
    assert artifact_problems(artifact) == []


def test_the_check_finds_a_traced_device_constant() -> None:
    # The bug the detector had: a device read from an input during tracing becomes a constant.
    def positions(x: torch.Tensor) -> torch.Tensor:
        return x + torch.arange(x.shape[-1], device=x.device)

    traced = torch.jit.trace(positions, (torch.zeros(2, 3),))
    assert any("Device" in line for line in graph_device_constants(traced.inlined_graph))


def test_the_check_finds_a_tensor_constant() -> None:
    table = torch.arange(4.0)

    traced = torch.jit.trace(lambda x: x + table, (torch.zeros(4),))
    assert graph_device_constants(traced.inlined_graph) != []


def test_the_detector_traces_without_a_device_constant() -> None:
    # The model code, not only the shipped file: training.detector_export still writes TorchScript.
    from ecg_models.anomaly_detector import from_checkpoint
    from inference.export import example_inputs, served_detector

    torch.set_num_threads(1)
    model = from_checkpoint(REPO / "ecg_models" / "weights" / "detector.pt").eval()
    with torch.no_grad():
        traced = torch.jit.trace(served_detector(model), example_inputs(model, batch=1))
    assert graph_device_constants(traced.inlined_graph) == []


def test_onnx_artifacts_target_the_release_limits() -> None:
    import onnx

    onnx_files = [p for p in ARTIFACTS if p.suffix == ".onnx"]
    assert onnx_files, "the detector is served as ONNX"
    for path in onnx_files:
        model = onnx.load(str(path), load_external_data=False)
        assert model.ir_version <= ONNX_MAX_IR_VERSION
        assert [(o.domain, o.version) for o in model.opset_import] == [("", ONNX_OPSET)]


def test_deploy_manifests_run_the_release_the_artifacts_target() -> None:
    image = f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
    assert image in (REPO / "deploy" / "compose.yaml").read_text()
    assert image in (REPO / "deploy" / "k8s" / "triton.yaml").read_text()


@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=lambda p: p.name)
def test_configs_pin_versions_warm_up_and_carry_each_versions_serving_facts(model_dir: Path) -> None:
    versions = served_versions(model_dir)
    assert versions, f"{model_dir.name} has no version with a {SERVING_FILE}"
    for config_path in (model_dir / "config.pbtxt", model_dir / "configs" / "cpu.pbtxt"):
        text = config_path.read_text()
        platform = re.search(r'platform: "([^"]+)"', text)
        assert platform is not None
        for version in versions:
            assert (model_dir / str(version) / PLATFORMS[platform.group(1)]).exists()
        pinned = re.search(r"version_policy: \{ specific: \{ versions: \[ ([\d, ]+) \] \} \}", text)
        assert pinned is not None and sorted(int(v) for v in pinned.group(1).split(",")) == sorted(versions)
        assert "model_warmup [" in text and "zeros_batch_1" in text
        for version, facts in versions.items():
            entry = re.search(rf'key: "serving_v{version}" value {{ string_value: ("(?:[^"\\]|\\.)*") }}', text)
            assert entry is not None, f"{config_path}: no serving_v{version}"
            assert json.loads(json.loads(entry.group(1))) == facts
        assert ("KIND_GPU" in text) == (config_path.name == "config.pbtxt")


def test_committed_artifacts_stay_small() -> None:
    # The repository commits its weights: keep each served file well under GitHub's 50 MB warning.
    assert all(path.stat().st_size < 20 * 1024 * 1024 for path in ARTIFACTS)


def test_production_workers_pin_a_served_version_of_every_model() -> None:
    import yaml

    configmap = yaml.safe_load((REPO / "deploy" / "k8s" / "configmap.yaml").read_text())
    pins = dict(item.split("=", 1) for item in configmap["data"]["TRITON_MODEL_VERSIONS"].split(","))
    assert set(pins) == {d.name for d in MODEL_DIRS}
    for model_dir in MODEL_DIRS:
        assert int(pins[model_dir.name]) in served_versions(model_dir)
