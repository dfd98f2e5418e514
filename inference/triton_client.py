"""Call Triton over gRPC, falling back to HTTP, with timeouts and retries on transient errors.

Only numpy and tritonclient are needed here (no torch, no Django: docs/style.md G14). Errors are the
``inference.errors`` classes, each marked transient or permanent:

| what Triton or the network said                        | error                  | retried here |
|--------------------------------------------------------|------------------------|--------------|
| connection refused/reset, gRPC UNAVAILABLE, HTTP 503    | ``TritonUnavailable``  | yes          |
| deadline passed (gRPC DEADLINE_EXCEEDED, socket timeout)| ``TritonUnavailable``  | yes          |
| unknown model, or one with no loaded version            | ``ModelNotFound``      | no           |
| the requested version is not served                     | ``ModelVersionMismatch`` | no         |
| bad input, model error (gRPC INVALID_ARGUMENT/INTERNAL) | ``InferenceFailed``    | no           |

When every try fails transiently the last error is raised as ``TritonUnavailable`` (still
transient, so a Celery task can retry later with its own backoff).

One ``TritonClient`` may be shared between threads: each thread gets its own tritonclient
connections (tritonclient's HTTP client is not thread-safe).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from opentelemetry import trace

from inference.errors import (
    InferenceError,
    InferenceFailed,
    ModelNotFound,
    ModelVersionMismatch,
    TritonUnavailable,
)
from inference.metrics import TRITON_ERRORS, TRITON_REQUEST_SECONDS

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

T = TypeVar("T")

_TRANSIENT_STATUSES = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "503", "504"}
_NOT_FOUND_STATUSES = {"StatusCode.NOT_FOUND", "404"}
# Triton's wording when the model exists but the requested version does not.
_VERSION_NOT_FOUND = re.compile(r"version \S+ is not found")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a call that failed transiently."""

    attempts: int = 3  # tries in all, the first included
    backoff_s: float = 0.2  # wait before the second try; doubles for each further try
    max_backoff_s: float = 2.0  # cap on one wait
    jitter: float = 0.2  # +/- this fraction of each wait, so that workers do not retry in step

    def delay_s(self, retry: int) -> float:
        """Return the wait before retry number ``retry`` (1 = the second try)."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


@dataclass(frozen=True)
class InferResult:
    """Outputs of one inference, with the model version Triton ran and the transport used."""

    outputs: dict[str, np.ndarray]
    model_name: str
    model_version: str
    transport: str  # "grpc" or "http"


class Transport:
    """One tritonclient connection (gRPC or HTTP) that raises only ``InferenceError``.

    This is the seam tests replace (with ``create_autospec``); the retry and fallback logic in
    ``TritonClient`` sits above it.
    """

    name = "abstract"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def live(self) -> bool:
        """Return whether the server answers its liveness probe."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Return whether the server and all its loaded models are ready."""
        raise NotImplementedError

    def model_ready(self, model: str, version: str) -> bool:
        """Return whether ``model`` (at ``version``; '' = Triton's policy) is ready."""
        raise NotImplementedError

    def model_versions(self, model: str) -> list[str]:
        """Return the versions of ``model`` that Triton serves; raise ModelNotFound if none."""
        raise NotImplementedError

    def model_config(self, model: str, version: str) -> dict[str, Any]:
        """Return ``model``'s configuration as Triton's JSON form (``parameters``, ``input``...)."""
        raise NotImplementedError

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        version: str,
        timeout_s: float,
    ) -> InferResult:
        """Run one inference and return the requested outputs."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError


def translate_error(exc: BaseException, what: str) -> InferenceError:
    """Return the ``InferenceError`` for a tritonclient or network exception raised during ``what``."""
    from tritonclient.utils import InferenceServerException  # noqa: PLC0415 serve extra, not in the web image

    if isinstance(exc, InferenceServerException):
        status = str(exc.status())
        message = f"{what}: {exc.message()}"
        if status in _TRANSIENT_STATUSES:
            return TritonUnavailable(message, extra={"status": status})
        if status in _NOT_FOUND_STATUSES:
            if _VERSION_NOT_FOUND.search(exc.message() or ""):
                return ModelVersionMismatch(message, extra={"status": status})
            return ModelNotFound(message, extra={"status": status})
        return InferenceFailed(message, extra={"status": status})
    # OSError covers connection refused/reset and socket timeouts of the HTTP client.
    return TritonUnavailable(f"{what}: {type(exc).__name__}: {exc}")


def _network_errors() -> tuple[type[BaseException], ...]:
    """Return the exception types a tritonclient call may raise for network trouble."""
    from tritonclient.utils import InferenceServerException  # noqa: PLC0415 serve extra, not in the web image

    try:
        # tritonclient[http] runs on gevent, whose Timeout derives from BaseException.
        from gevent import Timeout  # noqa: PLC0415 serve extra, not in the web image
    except ImportError:
        return (InferenceServerException, OSError)
    return (InferenceServerException, OSError, Timeout)


def _guard(what: str, call: Callable[[], T]) -> T:
    """Return ``call()``, turning tritonclient and network exceptions into ``InferenceError``."""
    try:
        return call()
    except _network_errors() as exc:
        raise translate_error(exc, what) from exc


def _collect(result: Any, outputs: Sequence[str], model: str) -> dict[str, np.ndarray]:
    """Return the requested outputs of a tritonclient result; raise InferenceFailed if one is absent."""
    arrays = {}
    for name in outputs:
        array = result.as_numpy(name)
        if array is None:
            raise InferenceFailed(f"{model}: Triton returned no output '{name}'")
        arrays[name] = array
    return arrays


class GrpcTransport(Transport):
    """Transport over tritonclient's gRPC client (per-call deadlines)."""

    name = "grpc"

    def __init__(self, url: str, timeout_s: float) -> None:
        import tritonclient.grpc as grpcclient  # noqa: PLC0415 serve extra, not in the web image

        super().__init__(url, timeout_s)
        self._module = grpcclient
        self._client = grpcclient.InferenceServerClient(url)

    def live(self) -> bool:
        return bool(_guard("live", lambda: self._client.is_server_live(client_timeout=self.timeout_s)))

    def ready(self) -> bool:
        return bool(_guard("ready", lambda: self._client.is_server_ready(client_timeout=self.timeout_s)))

    def model_ready(self, model: str, version: str) -> bool:
        return bool(_guard(model, lambda: self._client.is_model_ready(model, version, client_timeout=self.timeout_s)))

    def model_versions(self, model: str) -> list[str]:
        metadata = _guard(model, lambda: self._client.get_model_metadata(model, client_timeout=self.timeout_s))
        return list(metadata.versions)

    def model_config(self, model: str, version: str) -> dict[str, Any]:
        answer = _guard(
            model, lambda: self._client.get_model_config(model, version, as_json=True, client_timeout=self.timeout_s)
        )
        return dict(answer.get("config", answer))

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        version: str,
        timeout_s: float,
    ) -> InferResult:
        grpc = self._module
        requests = []
        for name, array in inputs.items():
            request = grpc.InferInput(name, list(array.shape), _triton_dtype(array, model, name))
            request.set_data_from_numpy(array)
            requests.append(request)
        wanted = [grpc.InferRequestedOutput(name) for name in outputs]
        result = _guard(
            model,
            lambda: self._client.infer(
                model, requests, model_version=version, outputs=wanted, client_timeout=timeout_s
            ),
        )
        served = result.get_response().model_version
        return InferResult(_collect(result, outputs, model), model, served, self.name)

    def close(self) -> None:
        self._client.close()


class HttpTransport(Transport):
    """Transport over tritonclient's HTTP client (the timeout is fixed when it connects)."""

    name = "http"

    def __init__(self, url: str, timeout_s: float) -> None:
        import tritonclient.http as httpclient  # noqa: PLC0415 serve extra, not in the web image

        super().__init__(url, timeout_s)
        self._module = httpclient
        self._client = httpclient.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)

    def live(self) -> bool:
        return bool(_guard("live", self._client.is_server_live))

    def ready(self) -> bool:
        return bool(_guard("ready", self._client.is_server_ready))

    def model_ready(self, model: str, version: str) -> bool:
        return bool(_guard(model, lambda: self._client.is_model_ready(model, version)))

    def model_versions(self, model: str) -> list[str]:
        metadata = _guard(model, lambda: self._client.get_model_metadata(model))
        return [str(version) for version in metadata.get("versions", [])]

    def model_config(self, model: str, version: str) -> dict[str, Any]:
        return dict(_guard(model, lambda: self._client.get_model_config(model, version)))

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        version: str,
        timeout_s: float,
    ) -> InferResult:
        http = self._module
        requests = []
        for name, array in inputs.items():
            request = http.InferInput(name, list(array.shape), _triton_dtype(array, model, name))
            request.set_data_from_numpy(array, binary_data=True)
            requests.append(request)
        wanted = [http.InferRequestedOutput(name, binary_data=True) for name in outputs]
        result = _guard(model, lambda: self._client.infer(model, requests, model_version=version, outputs=wanted))
        served = str(result.get_response().get("model_version", ""))
        return InferResult(_collect(result, outputs, model), model, served, self.name)

    def close(self) -> None:
        self._client.close()


def _triton_dtype(array: np.ndarray, model: str, name: str) -> str:
    """Return Triton's name for the array's dtype; raise InferenceFailed when it has none."""
    from tritonclient.utils import np_to_triton_dtype  # noqa: PLC0415 serve extra, not in the web image

    dtype = np_to_triton_dtype(array.dtype)
    if dtype is None:
        raise InferenceFailed(f"{model}: input '{name}' has dtype {array.dtype}, which Triton cannot carry")
    return str(dtype)


@dataclass
class TritonClient:
    """Talk to one Triton server over gRPC, with HTTP as fallback.

    ``grpc_url`` and ``http_url`` are ``host:port``; give either or both (gRPC is tried first).
    ``expected_versions`` pins models to the version this service was validated with: inference
    then asks Triton for exactly that version, and ``check_model`` verifies it is served.
    ``transport_factory`` builds the connections for one thread (tests pass autospec mocks).
    """

    grpc_url: str | None = None
    http_url: str | None = None
    timeout_s: float = 10.0  # per call (gRPC deadline; HTTP connect and network timeout)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    expected_versions: Mapping[str, str] = field(default_factory=dict)
    transport_factory: Callable[[], list[Transport]] | None = None
    sleep: Callable[[float], None] = time.sleep
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.transport_factory is None and not (self.grpc_url or self.http_url):
            raise ValueError("TritonClient needs grpc_url, http_url or a transport_factory")
        if self.retry.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.retry.attempts}")

    # --- probes: one quick try each, never raise ---

    def live(self) -> bool:
        """Return whether Triton answers its liveness probe on any transport."""
        return self._probe(lambda transport: transport.live())

    def ready(self) -> bool:
        """Return whether Triton is ready (server up, every loaded model ready)."""
        return self._probe(lambda transport: transport.ready())

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Return whether model ``name`` is ready at ``version`` (default: the expected one)."""
        wanted = self._version(name, version)
        return self._probe(lambda transport: transport.model_ready(name, wanted))

    # --- calls with retries ---

    def model_versions(self, name: str) -> list[str]:
        """Return the versions of ``name`` that Triton serves.

        Raises ModelNotFound, or TritonUnavailable after the retries.
        """
        return self._with_retries(f"model_versions({name})", lambda transport: transport.model_versions(name))

    def check_model(self, name: str, version: str | None = None) -> list[str]:
        """Verify that Triton serves ``name`` at ``version`` (default: the expected one); return its versions.

        Raises ModelNotFound, ModelVersionMismatch (naming the served versions), or
        TritonUnavailable after the retries.
        """
        wanted = self._version(name, version)
        versions = self.model_versions(name)
        if wanted and wanted not in versions:
            raise ModelVersionMismatch(
                f"{name}: expected version {wanted}, Triton serves {versions}",
                extra={"model": name, "expected": wanted, "served": versions},
            )
        return versions

    def model_parameters(self, name: str, version: str | None = None) -> dict[str, str]:
        """Return the string ``parameters`` of ``name``'s config (the operating point travels there).

        Raises ModelNotFound, or TritonUnavailable after the retries.
        """
        wanted = self._version(name, version)
        config = self._with_retries(f"model_config({name})", lambda transport: transport.model_config(name, wanted))
        return {key: str(value.get("string_value", "")) for key, value in config.get("parameters", {}).items()}

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        version: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Return the requested ``outputs`` of ``model`` for ``inputs`` (arrays keyed by tensor name).

        Raises the ``inference.errors`` classes (see the module docstring).
        """
        return self.infer_result(model, inputs, outputs, version=version, timeout_s=timeout_s).outputs

    def infer_result(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        version: str | None = None,
        timeout_s: float | None = None,
    ) -> InferResult:
        """Like ``infer``, but also return the model version Triton ran and the transport used."""
        wanted = self._version(model, version)
        arrays = {name: np.ascontiguousarray(array) for name, array in inputs.items()}
        deadline = self.timeout_s if timeout_s is None else timeout_s
        started = time.perf_counter()
        try:
            # A child of the Celery task's span when tracing is on (cds.core.tracing); a no-op otherwise.
            with _tracer.start_as_current_span("triton infer", attributes={"triton.model": model}):
                result = self._with_retries(
                    f"infer({model})", lambda transport: transport.infer(model, arrays, outputs, wanted, deadline)
                )
        except InferenceError as exc:
            TRITON_ERRORS.labels(model, type(exc).__name__).inc()
            TRITON_REQUEST_SECONDS.labels(model, "error").observe(time.perf_counter() - started)
            raise
        TRITON_REQUEST_SECONDS.labels(model, "ok").observe(time.perf_counter() - started)
        if wanted and result.model_version != wanted:
            raise ModelVersionMismatch(
                f"{model}: asked for version {wanted}, Triton ran version {result.model_version}",
                extra={"model": model, "expected": wanted, "served": [result.model_version]},
            )
        return result

    def close(self) -> None:
        """Close this thread's connections (others close when their threads end)."""
        for transport in getattr(self._local, "transports", []):
            transport.close()
        self._local.__dict__.clear()

    # --- internals ---

    def _version(self, model: str, version: str | None) -> str:
        """Return the version to ask for: the given one, else the expected one, else '' (Triton's policy)."""
        return version if version is not None else self.expected_versions.get(model, "")

    def _transports(self) -> list[Transport]:
        """Return this thread's transports, preferred first, creating them on first use."""
        transports: list[Transport] | None = getattr(self._local, "transports", None)
        if transports is None:
            if self.transport_factory is not None:
                transports = self.transport_factory()
            else:
                transports = []
                if self.grpc_url:
                    transports.append(GrpcTransport(self.grpc_url, self.timeout_s))
                if self.http_url:
                    transports.append(HttpTransport(self.http_url, self.timeout_s))
            self._local.transports = transports
        return transports

    def _each_transport(self, what: str, call: Callable[[Transport], T]) -> T:
        """Return ``call`` on the first transport that is reachable.

        A transient failure moves on to the next transport; a transport that works becomes the
        preferred one for this thread. Raises the last transient error when all fail, and any
        permanent error at once.
        """
        transports = self._transports()
        last: InferenceError | None = None
        for transport in list(transports):
            try:
                value = call(transport)
            except InferenceError as exc:
                if not exc.transient:
                    raise
                last = exc
                logger.debug("%s over %s failed: %s", what, transport.name, exc)
                continue
            if transport is not transports[0]:
                transports.remove(transport)
                transports.insert(0, transport)
                logger.warning("%s: falling back to Triton over %s", what, transport.name)
            return value
        assert last is not None
        raise last

    def _with_retries(self, what: str, call: Callable[[Transport], T]) -> T:
        """Return ``call`` on a reachable transport, retrying transient failures with backoff.

        Raises permanent errors at once, and TritonUnavailable after ``retry.attempts`` tries.
        """
        last: InferenceError | None = None
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1:
                self.sleep(self.retry.delay_s(attempt - 1))
            try:
                return self._each_transport(what, call)
            except InferenceError as exc:
                if not exc.transient:
                    raise
                last = exc
                logger.warning("%s: try %d of %d failed: %s", what, attempt, self.retry.attempts, exc.message)
        raise TritonUnavailable(
            f"{what}: Triton unavailable after {self.retry.attempts} tries: {last.message if last else ''}",
            extra={"attempts": self.retry.attempts, **(last.extra if last else {})},
        )

    def _probe(self, call: Callable[[Transport], bool]) -> bool:
        """Return ``call`` on a reachable transport, or False when none answers or it fails."""
        try:
            return self._each_transport("probe", call)
        except InferenceError:
            return False
