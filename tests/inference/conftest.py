"""Start one real Triton server for the inference tests (docs/architecture.md §3).

The session fixture builds a tiny model repository with torch from the main venv: a TorchScript
model (``pytorch_libtorch`` platform, dynamic batching, GPU ``config.pbtxt`` with a CPU variant
``configs/cpu.pbtxt``) and the same network exported to ONNX (``onnxruntime_onnx``). It serves them
with the ``tritonserver`` of ``.venv-triton`` on free ports and stops it at the end of the session.
Without a usable ``.venv-triton`` (and no way to create one) the tests that need it are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.local_triton import LocalTriton, TritonSetupError, find_install, install

TS_MODEL = "tiny_ts"  # TorchScript, INPUT__0 / OUTPUT__0..1, dynamic batching, GPU + CPU configs
ONNX_MODEL = "tiny_onnx"  # the same network as ONNX, named tensors
NAMED_MODEL = "tiny_ts_named"  # the TorchScript file again, inputs named after forward's arguments

_GPU_CONFIG = """
platform: "pytorch_libtorch"
max_batch_size: 32
input [ {{ name: "{input}" data_type: TYPE_FP32 dims: [ 12, -1 ] }} ]
output [
  {{ name: "{out0}" data_type: TYPE_FP32 dims: [ 2 ] }},
  {{ name: "{out1}" data_type: TYPE_FP32 dims: [ 4, -1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 20000 }}
instance_group [ {{ kind: KIND_GPU count: 1 }} ]
parameters {{ key: "INTRA_OP_THREAD_COUNT" value {{ string_value: "1" }} }}
"""

_ONNX_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 32
input [ { name: "ecg" data_type: TYPE_FP32 dims: [ 12, -1 ] } ]
output [
  { name: "logits" data_type: TYPE_FP32 dims: [ 2 ] },
  { name: "features" data_type: TYPE_FP32 dims: [ 4, -1 ] }
]
dynamic_batching { max_queue_delay_microseconds: 20000 }
instance_group [ { kind: KIND_CPU count: 1 } ]
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
"""


@dataclass
class TritonFixture:
    """A running server and the eager network its models were exported from."""

    server: LocalTriton
    repository: Path
    net: Any  # torch.nn.Module in eval mode

    def eager(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the eager (logits, features) for ``x`` of shape (batch, 12, samples)."""
        import torch

        with torch.no_grad():
            logits, features = self.net(torch.from_numpy(x))
        return logits.numpy(), features.numpy()


def build_repository(root: Path) -> Any:
    """Write the tiny model repository under ``root`` and return the eager network."""
    import torch

    class TinyCnn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(12, 4, kernel_size=7, padding=3)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, ecg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = torch.relu(self.conv(ecg))  # (batch, 4, samples)
            return self.head(features.mean(dim=-1)), features

    torch.manual_seed(0)
    net = TinyCnn().eval()
    for name, names in [
        (TS_MODEL, ("INPUT__0", "OUTPUT__0", "OUTPUT__1")),
        (NAMED_MODEL, ("ecg", "logits__0", "features__1")),
    ]:
        (root / name / "1").mkdir(parents=True)
        torch.jit.script(net).save(str(root / name / "1" / "model.pt"))
        config = _GPU_CONFIG.format(input=names[0], out0=names[1], out1=names[2])
        (root / name / "config.pbtxt").write_text(config)
        (root / name / "configs").mkdir()
        (root / name / "configs" / "cpu.pbtxt").write_text(config.replace("KIND_GPU", "KIND_CPU"))
    (root / ONNX_MODEL / "1").mkdir(parents=True)
    torch.onnx.export(
        net,
        (torch.zeros(1, 12, 50),),
        str(root / ONNX_MODEL / "1" / "model.onnx"),
        input_names=["ecg"],
        output_names=["logits", "features"],
        dynamic_axes={
            "ecg": {0: "batch", 2: "samples"},
            "logits": {0: "batch"},
            "features": {0: "batch", 2: "samples"},
        },
        dynamo=False,
    )
    (root / ONNX_MODEL / "config.pbtxt").write_text(_ONNX_CONFIG)
    return net


def require_triton_venv() -> None:
    """Skip the calling test unless .venv-triton is usable (creating it if pip can)."""
    try:
        find_install()
    except TritonSetupError:
        try:
            install()
        except (TritonSetupError, OSError) as exc:
            pytest.skip(f"no usable .venv-triton and it cannot be created here: {exc}")


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonFixture]:
    """Serve the tiny repository on free ports for the whole session (CPU config variants)."""
    pytest.importorskip("torch", reason="building the test models needs torch (the ml extra)")
    import torch

    require_triton_venv()
    torch.set_num_threads(1)  # a 2-core machine shared with the server's own stubs
    root = tmp_path_factory.mktemp("triton")
    net = build_repository(root / "models")
    server = LocalTriton(
        repository=root / "models",
        config_name="cpu",
        # Explicit control: the named variant is left for a test to load through the API.
        load_models=[TS_MODEL, ONNX_MODEL],
        work_dir=root / "work",
        log_path=root / "tritonserver.log",
    )
    server.start(timeout_s=90)
    yield TritonFixture(server, root / "models", net)
    server.stop()


@pytest.fixture
def stopped_server(tmp_path: Path) -> LocalTriton:
    """Return a server (explicit mode, no models) that was started, answered, and was stopped."""
    require_triton_venv()
    server = LocalTriton(
        repository=tmp_path / "empty",
        load_models=[],
        work_dir=tmp_path / "work",
        log_path=tmp_path / "tritonserver.log",
    )
    (tmp_path / "empty").mkdir()
    server.start(timeout_s=30)
    server.stop()
    return server
