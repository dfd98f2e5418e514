"""Tests of the local Triton server: the CPU stand-in backends, batching, config variants, start/stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from inference import local_triton
from inference.local_triton import LocalTriton
from tests.inference.conftest import NAMED_MODEL, ONNX_MODEL, TS_MODEL, TritonFixture, require_triton_venv

REPO = Path(__file__).resolve().parents[2]


def grpc_client(triton: TritonFixture):  # type: ignore[no-untyped-def]
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(triton.server.grpc_url)


def infer_raw(
    triton: TritonFixture, model: str, input_name: str, outputs: list[str], x: np.ndarray
) -> list[np.ndarray]:
    """Run ``x`` through ``model`` with plain tritonclient gRPC and return ``outputs``."""
    import tritonclient.grpc as grpcclient

    request = grpcclient.InferInput(input_name, list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    result = grpc_client(triton).infer(model, [request], outputs=[grpcclient.InferRequestedOutput(o) for o in outputs])
    return [result.as_numpy(o) for o in outputs]


def ecgs(batch: int, samples: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 12, samples)).astype(np.float32)


@pytest.mark.live
def test_it_serves_torchscript_like_eager(triton: TritonFixture) -> None:
    x = ecgs(3)
    logits, features = infer_raw(triton, TS_MODEL, "INPUT__0", ["OUTPUT__0", "OUTPUT__1"], x)
    eager_logits, eager_features = triton.eager(x)
    np.testing.assert_allclose(logits, eager_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features, eager_features, rtol=1e-5, atol=1e-6)


@pytest.mark.live
def test_it_serves_onnx_like_eager(triton: TritonFixture) -> None:
    x = ecgs(2, samples=321, seed=1)
    logits, features = infer_raw(triton, ONNX_MODEL, "ecg", ["logits", "features"], x)
    eager_logits, eager_features = triton.eager(x)
    np.testing.assert_allclose(logits, eager_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features, eager_features, rtol=1e-4, atol=1e-5)


@pytest.mark.live
def test_it_returns_only_the_requested_output(triton: TritonFixture) -> None:
    (features,) = infer_raw(triton, TS_MODEL, "INPUT__0", ["OUTPUT__1"], ecgs(1))
    assert features.shape == (1, 4, 500)


@pytest.mark.live
def test_it_loads_the_cpu_variant_of_a_gpu_config(triton: TritonFixture) -> None:
    config = grpc_client(triton).get_model_config(TS_MODEL, as_json=True)["config"]
    assert "KIND_GPU" in (triton.repository / TS_MODEL / "config.pbtxt").read_text()
    assert [group["kind"] for group in config["instance_group"]] == ["KIND_CPU"]
    assert config["platform"] == "pytorch_libtorch"
    assert config["backend"] == "pytorch"


@pytest.mark.live
def test_it_loads_a_model_on_demand_with_forward_argument_names(triton: TritonFixture) -> None:
    client = grpc_client(triton)
    client.load_model(NAMED_MODEL)
    x = ecgs(2, seed=2)
    logits, features = infer_raw(triton, NAMED_MODEL, "ecg", ["logits__0", "features__1"], x)
    eager_logits, eager_features = triton.eager(x)
    np.testing.assert_allclose(logits, eager_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features, eager_features, rtol=1e-5, atol=1e-6)
    client.unload_model(NAMED_MODEL)


@pytest.mark.live
def test_it_batches_concurrent_requests_and_answers_each_correctly(triton: TritonFixture) -> None:
    client = grpc_client(triton)

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics(TS_MODEL, as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    inferences_before, executions_before = counts()
    inputs = [ecgs(1, seed=100 + i) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda x: infer_raw(triton, TS_MODEL, "INPUT__0", ["OUTPUT__0"], x)[0], inputs))
    inferences, executions = counts()

    for x, logits in zip(inputs, results, strict=True):
        np.testing.assert_allclose(logits, triton.eager(x)[0], rtol=1e-5, atol=1e-6)
    assert inferences - inferences_before == 8
    # Eight requests in fewer model executions: the dynamic batcher merged some of them.
    assert executions - executions_before < 8


@pytest.mark.live
def test_it_reports_a_model_failure_to_that_request_and_keeps_serving(triton: TritonFixture) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="inference failed"):
        # A zero-length record passes Triton's shape check but makes the model itself fail.
        infer_raw(triton, TS_MODEL, "INPUT__0", ["OUTPUT__0"], np.zeros((1, 12, 0), np.float32))
    x = ecgs(1)
    np.testing.assert_allclose(
        infer_raw(triton, TS_MODEL, "INPUT__0", ["OUTPUT__0"], x)[0], triton.eager(x)[0], rtol=1e-5, atol=1e-6
    )


@pytest.mark.live
def test_it_stops_cleanly_with_sigterm_and_frees_its_ports(stopped_server: LocalTriton) -> None:
    assert stopped_server.process is None
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", stopped_server.http_port)) != 0
    log = (stopped_server.log_path or Path()).read_text()
    assert "Timeout" in log or "successfully" in log or "Waiting for in-flight" in log


@pytest.mark.live
def test_it_kills_a_server_that_does_not_stop_in_time(tmp_path: Path) -> None:
    require_triton_venv()
    (tmp_path / "empty").mkdir()
    server = LocalTriton(
        repository=tmp_path / "empty", load_models=[], work_dir=tmp_path / "w", log_path=tmp_path / "log"
    )
    server.start(timeout_s=30)
    pid = server.process.pid if server.process else -1
    assert server.stop(timeout_s=0) == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_it_never_uses_triton_default_ports_on_the_command_line() -> None:
    server = LocalTriton(repository=Path("repo"), config_name="cpu", load_models=["detector"])
    install = local_triton.TritonInstall(Path("venv"), Path("site"), Path("lib"), "3.11")
    command = " ".join(server.command(install, Path("backends")))
    assert "--model-config-name=cpu" in command
    assert "--model-control-mode=explicit --load-model=detector" in command
    assert local_triton.DEFAULT_PORTS["http"] not in (8000, 8080)


def test_it_puts_the_venv_first_on_path_and_its_libpython_on_the_library_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/lib")
    install = local_triton.TritonInstall(Path("/v"), Path("/v/site"), Path("/py/lib"), "3.11")
    env = LocalTriton(repository=Path("repo")).environment(install)
    assert env["PATH"].split(os.pathsep)[0] == "/v/bin"
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == ["/py/lib", "/v/site/nvidia_pytriton.libs", "/opt/lib"]
    assert "PYTHONPATH" not in env


def test_it_keeps_the_shared_part_of_the_stand_in_backends_identical() -> None:
    def shared(path: Path) -> str:
        text = path.read_text()
        return text[text.index("\nimport json") : text.index("# --- end of the shared part ---")]

    backends = REPO / "inference" / "triton_backends"
    assert shared(backends / "pytorch" / "model.py") == shared(backends / "onnxruntime" / "model.py")


def test_it_installs_the_server_venv_with_exact_pins() -> None:
    lock = (REPO / "deploy" / "triton" / "requirements-triton.lock").read_text()
    for name, version in local_triton.SERVER_PINS.items():
        assert re.search(rf"^{re.escape(name)}=={re.escape(version)}$", lock, re.MULTILINE), name
    assert local_triton.SERVER_PINS["numpy"].startswith("1.")
    assert local_triton.SERVER_PINS["torch"].endswith("+cpu")


@pytest.mark.live
def test_it_serves_from_the_command_line_until_terminated(tmp_path: Path) -> None:
    require_triton_venv()
    (tmp_path / "empty").mkdir()
    http, grpc, metrics = (str(local_triton.free_port()) for _ in range(3))
    command = [
        str(REPO / ".venv" / "bin" / "python"),
        "-m",
        "inference.local_triton",
        "serve",
        *("--repository", str(tmp_path / "empty"), "--config-name", "cpu", "--work-dir", str(tmp_path / "work")),
        *("--http-port", http, "--grpc-port", grpc, "--metrics-port", metrics),
    ]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        ready = next((line for line in process.stderr if "Triton ready" in line), "")
        assert f"http 127.0.0.1:{http}, grpc 127.0.0.1:{grpc}" in ready
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    assert process.returncode == 0, rest[-2000:]
