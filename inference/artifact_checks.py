"""Check served artifacts before they ship: no device baked in, readable by the target Triton release.

Used by tests/inference/test_served_artifacts.py (on CPU, every commit) and bench/gpu_check.py.
A TorchScript graph traced on one machine records ``x.device`` as a constant wherever code asks
for it (``torch.arange(n, device=x.device)``), and a CPU tensor constant of more than one element
cannot meet a CUDA tensor: either fails every request once the same file runs on a GPU. ONNX
graphs carry no devices; for them the limits of the release's ONNX Runtime (IR version, opset)
are what can go wrong.

torch and onnx are imported by the functions that need them (the ``ml`` extra).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from inference.model_repository import ONNX_MAX_IR_VERSION, ONNX_OPSET, TORCHSCRIPT_MAX_FILE_VERSION


def graph_device_constants(graph: Any) -> list[str]:
    """Return the constants of a TorchScript graph (``module.inlined_graph``) that bake in a device.

    Two kinds: a ``Device`` constant (``prim::Constant[value="cpu"]``) and a tensor constant with at
    least one dimension (0-dim CPU tensors act as scalars on any device). Loop and branch bodies
    (scripted code) are searched too.
    """
    bad = []
    pending = [graph]
    while pending:
        block = pending.pop()
        for node in block.nodes():
            pending.extend(node.blocks())
            if node.kind() != "prim::Constant":
                continue
            kind = node.output().type().kind()
            if kind == "DeviceObjType":
                bad.append(str(node).strip())
            elif kind == "TensorType" and node.hasAttribute("value") and node.t("value").dim() > 0:
                bad.append(str(node).strip()[:200])
    return bad


def torchscript_problems(path: Path) -> list[str]:
    """Return what stops ``path`` (a TorchScript archive) running on another device or older libtorch."""
    import torch  # noqa: PLC0415 ml extra

    problems = []
    with zipfile.ZipFile(path) as archive:
        versions = [name for name in archive.namelist() if name.endswith("/version") and "/.data/" not in name]
        versions = versions or [name for name in archive.namelist() if name.endswith("version")]
        file_version = int(archive.read(versions[0]).decode().strip())
    if file_version > TORCHSCRIPT_MAX_FILE_VERSION:
        problems.append(f"{path}: TorchScript file version {file_version} > {TORCHSCRIPT_MAX_FILE_VERSION}")
    module = torch.jit.load(str(path), map_location="cpu")
    problems += [f"{path}: device constant: {line}" for line in graph_device_constants(module.inlined_graph)]
    return problems


def onnx_problems(path: Path) -> list[str]:
    """Return what stops ``path`` (an ONNX model) loading in the target release's ONNX Runtime."""
    import onnx  # noqa: PLC0415 ml extra

    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    problems = []
    if model.ir_version > ONNX_MAX_IR_VERSION:
        problems.append(f"{path}: ONNX IR version {model.ir_version} > {ONNX_MAX_IR_VERSION}")
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    if opsets.get("ai.onnx") != ONNX_OPSET:
        problems.append(f"{path}: opset {opsets.get('ai.onnx')} != {ONNX_OPSET}")
    extra = sorted(set(opsets) - {"ai.onnx"})
    if extra:
        problems.append(f"{path}: operator domains {extra} beyond the standard one")
    return problems


def artifact_problems(path: Path) -> list[str]:
    """Return the problems of one served artifact (``model.pt`` or ``model.onnx``)."""
    if path.suffix == ".onnx":
        return onnx_problems(path)
    return torchscript_problems(path)
