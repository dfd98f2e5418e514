"""Run a real Triton server on CPU from the ``tritonserver`` bundled in ``nvidia-pytriton``.

Production runs NVIDIA's Triton container on GPU hosts. Locally and in CI the same model
repository is served by the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships
(Triton 2.51), with small Python stand-ins for the libtorch and ONNX Runtime backends
(``inference/triton_backends/``). docs/architecture.md §3 lists the facts this module encodes:

- the server lives in its own virtualenv (``.venv-triton``): the wheel pins numpy<2, and numpy 2 in
  the server's environment makes models return empty outputs;
- that venv's ``bin`` goes first on ``PATH`` (the embedded interpreter of the Python-backend stub
  finds its ``sys.prefix``, and so the venv's site-packages, through ``python3`` on ``PATH``), and
  the venv Python's own ``libpython`` directory plus ``nvidia_pytriton.libs`` go on
  ``LD_LIBRARY_PATH`` (otherwise the stub loads the system libpython, or hangs at start);
- Triton's default HTTP port 8000 is never used (Django's development port is close by);
- ports open only after the initial model loads unless ``--model-control-mode=explicit``;
- stop with SIGTERM, then SIGKILL.

Command line::

    python -m inference.local_triton install
    python -m inference.local_triton serve --repository deploy/triton/model_repository --config-name cpu

This module imports neither torch nor Django; it runs from the main virtualenv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".venv-triton"
STAND_IN_BACKENDS = Path(__file__).resolve().parent / "triton_backends"
LOCK_FILE = REPO / "deploy" / "triton" / "requirements-triton.lock"
DEFAULT_WORK_DIR = REPO / "var" / "triton"

# Top-level pins of the server venv. torch carries its "+cpu" label so pip can only take the CPU
# wheel from the local wheelhouse and never resolves a CUDA build from the index.
SERVER_PINS = {
    "nvidia-pytriton": "0.7.0",  # bundles tritonserver 2.51, its core library and the Python backend
    "numpy": "1.26.4",  # the wheel requires numpy<2 (numpy 2 gives empty outputs)
    "torch": "2.13.0+cpu",  # runs TorchScript in the pytorch stand-in backend
    "onnxruntime": "1.23.2",  # runs ONNX in the onnxruntime stand-in backend
}
# Ports used by `serve` unless told otherwise: clear of Triton's default 8000-8002 and Django's 8080.
DEFAULT_PORTS = {"http": 8100, "grpc": 8101, "metrics": 8102}
# Shared memory between Triton and each Python stub: 8 MiB holds a batch of 32 12-lead 10 s ECGs at
# 500 Hz without growing the region in small steps.
PYTHON_SHM_DEFAULT_BYTES = 8 * 1024 * 1024
PYTHON_SHM_GROWTH_BYTES = 16 * 1024 * 1024

_PROBE = """
import importlib.metadata as md, json, sys, sysconfig
from pathlib import Path
names = {names!r}
versions = {{}}
for name in names:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        versions[name] = None
site = None
try:
    import pytriton
    site = str(Path(pytriton.__file__).resolve().parents[1])
except ImportError:
    pass
print(json.dumps({{"versions": versions, "site_packages": site, "libdir": sysconfig.get_config_var("LIBDIR"),
                  "python_version": "%d.%d" % sys.version_info[:2]}}))
"""


class TritonSetupError(RuntimeError):
    """The server venv is missing or broken, or the server did not start."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths of a verified ``nvidia-pytriton`` install inside a virtualenv."""

    venv: Path
    site_packages: Path  # holds pytriton/ and nvidia_pytriton.libs/
    python_libdir: Path  # directory of the venv Python's own libpython
    python_version: str  # "3.11": picks the matching Python-backend stub

    @property
    def server_dir(self) -> Path:
        """Return the bundled Triton distribution (bin/, backends/, caches/, stubs)."""
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        """Return the ``tritonserver`` executable."""
        return self.server_dir / "bin" / "tritonserver"

    @property
    def libs_dir(self) -> Path:
        """Return the shared libraries the wheel vendors (``libtritonserver.so`` and its deps)."""
        return self.site_packages / "nvidia_pytriton.libs"

    @property
    def stub(self) -> Path:
        """Return the Python-backend stub built for this venv's Python version."""
        return self.server_dir / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"


def find_install(venv: Path = DEFAULT_VENV) -> TritonInstall:
    """Return the verified install in ``venv``.

    Raises TritonSetupError when the venv is absent, a pinned package is missing or at another
    version, or the bundled binary or stub is missing.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        raise TritonSetupError(f"no Triton virtualenv at {venv}; run `python -m inference.local_triton install`")
    probe = subprocess.run(
        [str(python), "-c", _PROBE.format(names=sorted(SERVER_PINS))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if probe.returncode != 0:
        raise TritonSetupError(f"{python} failed to report its packages: {probe.stderr.strip()[-500:]}")
    facts = json.loads(probe.stdout)
    wrong = {name: facts["versions"][name] for name, pin in SERVER_PINS.items() if facts["versions"][name] != pin}
    if wrong or facts["site_packages"] is None:
        raise TritonSetupError(
            f"{venv} does not match the pins {SERVER_PINS} (found {wrong}); "
            "run `python -m inference.local_triton install`"
        )
    install = TritonInstall(
        venv=venv,
        site_packages=Path(facts["site_packages"]),
        python_libdir=Path(facts["libdir"]),
        python_version=facts["python_version"],
    )
    for path in (install.binary, install.stub, install.libs_dir):
        if not path.exists():
            raise TritonSetupError(f"{path} is missing from the nvidia-pytriton install in {venv}")
    return install


def install(venv: Path = DEFAULT_VENV, *, base_python: str = sys.executable) -> TritonInstall:
    """Create or repair the server virtualenv at ``venv`` and return the verified install.

    The venv is built from ``base_python`` (a venv made from inside another venv uses the same
    base interpreter). Every package is pinned through ``deploy/triton/requirements-triton.lock``.
    Raises TritonSetupError when pip fails (for example without access to the package index).
    """
    with contextlib.suppress(TritonSetupError):
        return find_install(venv)
    if not (venv / "bin" / "python").exists():
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    pins = [f"{name}=={version}" for name, version in SERVER_PINS.items()]
    result = subprocess.run([*pip, "-c", str(LOCK_FILE), *pins], check=False)
    if result.returncode != 0:
        raise TritonSetupError(f"pip could not install {pins} into {venv} (exit {result.returncode})")
    return find_install(venv)


def prepare_backends(install: TritonInstall, work_dir: Path) -> Path:
    """Assemble a ``--backend-directory`` under ``work_dir`` and return it.

    Layout, as Triton's Python-based backends require::

        backends/python/{libtriton_python.so, triton_python_backend_utils.py, triton_python_backend_stub}
        backends/pytorch/model.py       -> inference/triton_backends/pytorch/model.py
        backends/onnxruntime/model.py   -> inference/triton_backends/onnxruntime/model.py

    The stub is the one built for the venv's Python version (the wheel ships one per version).
    Files are copied, not symlinked: Triton rejects a backend library whose resolved path escapes
    the backend directory. Re-run at each start, so edits to the stand-ins take effect.
    """
    backends = work_dir / "backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    bundled = install.server_dir / "backends" / "python"
    files = {
        python_dir / "libtriton_python.so": bundled / "libtriton_python.so",
        python_dir / "triton_python_backend_utils.py": bundled / "triton_python_backend_utils.py",
        python_dir / "triton_python_backend_stub": install.stub,
    }
    for source in sorted(STAND_IN_BACKENDS.glob("*/model.py")):
        (backends / source.parent.name).mkdir(exist_ok=True)
        files[backends / source.parent.name / "model.py"] = source
    for copy, source in files.items():
        if copy.is_symlink() or copy.exists():
            copy.unlink()
        shutil.copy2(source, copy)
    return backends


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalTriton:
    """One ``tritonserver`` process serving ``repository`` on CPU.

    Ports left at 0 are picked free at start. ``load_models`` switches to explicit model control
    (ports open before the models load; ``["*"]`` loads every model); None loads the whole
    repository at start (ports open after the loads). ``config_name`` selects
    ``<model>/configs/<name>.pbtxt`` where it exists (``--model-config-name``), falling back to
    ``config.pbtxt``. Use as a context manager, or call ``start`` and ``stop``.
    """

    repository: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    config_name: str | None = None
    load_models: Sequence[str] | None = None
    venv: Path = DEFAULT_VENV
    work_dir: Path | None = None  # backends directory and log; a temporary directory when None
    log_path: Path | None = None  # server output; inherits this process's stdout/stderr when None
    host: str = "127.0.0.1"
    extra_args: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        """Return ``host:port`` of the HTTP endpoint (tritonclient's URL form)."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """Return ``host:port`` of the gRPC endpoint."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Return the Prometheus metrics URL."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self, install: TritonInstall, backends: Path) -> list[str]:
        """Return the ``tritonserver`` command line."""
        command = [
            str(install.binary),
            f"--model-repository={Path(self.repository).resolve()}",
            f"--backend-directory={backends}",
            f"--cache-directory={install.server_dir / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            # A SIGTERM waits at most this long for in-flight requests before the server exits.
            "--exit-timeout-secs=5",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_DEFAULT_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_GROWTH_BYTES}",
            "--log-verbose=0",
        ]
        if self.config_name:
            command.append(f"--model-config-name={self.config_name}")
        if self.load_models is not None:
            command.append("--model-control-mode=explicit")
            command += [f"--load-model={name}" for name in self.load_models]
        return [*command, *self.extra_args]

    def environment(self, install: TritonInstall) -> dict[str, str]:
        """Return the server's environment (see the module docstring for why each entry)."""
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
        env["VIRTUAL_ENV"] = str(install.venv)
        env["PATH"] = os.pathsep.join([str(install.venv / "bin"), env.get("PATH", "/usr/bin:/bin")])
        library_path = [str(install.python_libdir), str(install.libs_dir)]
        if env.get("LD_LIBRARY_PATH"):
            library_path.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(library_path)
        return env

    def start(self, timeout_s: float = 90.0) -> LocalTriton:
        """Start the server and wait until it is ready; return self.

        Raises TritonSetupError (with the end of the server log) when the venv is not usable,
        the process exits, or it is not ready within ``timeout_s``; the process is stopped then.
        """
        install = find_install(self.venv)
        if self.work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="local-triton-")
            self.work_dir = Path(self._tmp.name)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        backends = prepare_backends(install, self.work_dir)
        self.http_port = self.http_port or free_port(self.host)
        self.grpc_port = self.grpc_port or free_port(self.host)
        self.metrics_port = self.metrics_port or free_port(self.host)
        output = self.log_path.open("ab") if self.log_path else None
        try:
            # A new session makes the server the leader of its own process group, so a SIGKILL
            # fallback also reaches its Python-backend stubs and nothing else.
            self.process = subprocess.Popen(
                self.command(install, backends),
                env=self.environment(install),
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
            )
        finally:
            if output:
                output.close()
        logger.info("tritonserver pid %s: http %s grpc %s", self.process.pid, self.http_url, self.grpc_url)
        try:
            self.wait_ready(timeout_s)
        except TritonSetupError:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``/v2/health/ready`` until it answers 200; raise TritonSetupError otherwise."""
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise TritonSetupError(f"tritonserver exited with {code} before it was ready{self._log_tail()}")
            if _http_status(url) == 200:
                return
            time.sleep(0.2)
        raise TritonSetupError(f"tritonserver not ready within {timeout_s:.0f} s{self._log_tail()}")

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """Stop the server with SIGTERM, then SIGKILL after ``timeout_s``; return its exit code.

        Returns None when it was never started. Safe to call twice.
        """
        process, self.process = self.process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    logger.warning("tritonserver pid %s ignored SIGTERM for %.0f s; killing it", process.pid, timeout_s)
            # Whatever is left of the server's own process group (the server, stubs it started).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.work_dir = None
        return code

    def _log_tail(self, chars: int = 3000) -> str:
        """Return the end of the server log for error messages ('' when it goes to the console)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return ":\n" + self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> LocalTriton:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _http_status(url: str) -> int | None:
    """Return the HTTP status of GET ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


@contextlib.contextmanager
def _terminate_on_signals() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `serve` stops the server on either signal."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``install`` or ``serve`` command; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m inference.local_triton", description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="server virtualenv (default .venv-triton)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="create or verify the server virtualenv")
    serve = commands.add_parser("serve", help="run tritonserver in the foreground until interrupted")
    serve.add_argument("--repository", type=Path, required=True, help="Triton model repository")
    for name, port in DEFAULT_PORTS.items():
        serve.add_argument(f"--{name}-port", type=int, default=port, help=f"(default {port}; 0 = any free port)")
    serve.add_argument("--config-name", help="use <model>/configs/<NAME>.pbtxt where present, e.g. cpu")
    serve.add_argument(
        "--load-model",
        action="append",
        help="explicit model control: load only these models (repeat; '*' = all); ports open before loading",
    )
    serve.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="where the backends dir is assembled")
    serve.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "install":
            found = install(args.venv)
            logger.info("Triton venv ready: %s (tritonserver %s)", found.venv, found.binary)
            return 0
        server = LocalTriton(
            repository=args.repository,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            config_name=args.config_name,
            load_models=args.load_model,
            venv=args.venv,
            work_dir=args.work_dir,
        )
        with _terminate_on_signals(), contextlib.suppress(KeyboardInterrupt), server:
            logger.info(
                "Triton ready: http %s, grpc %s, metrics %s", server.http_url, server.grpc_url, server.metrics_url
            )
            assert server.process is not None
            code = server.process.wait()
            logger.error("tritonserver exited on its own with %s", code)
            return 1
    except TritonSetupError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
