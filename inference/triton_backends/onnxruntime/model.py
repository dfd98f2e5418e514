"""Serve ONNX models on CPU as a stand-in for Triton's ONNX Runtime backend (docs/architecture.md §3).

The ``nvidia-pytriton`` wheel ships ``tritonserver`` with only the Python backend. Triton maps
``platform: "onnxruntime_onnx"`` to the backend name ``onnxruntime`` and, when no
``libtriton_onnxruntime.so`` exists, loads ``<backend-directory>/onnxruntime/model.py`` through the
Python backend (a "Python-based backend"). So a model directory written for the real GPU backend
(``config.pbtxt`` + ``<version>/model.onnx``) loads here unchanged.

Behaviour copied from the ONNX Runtime backend: config inputs and outputs are the graph's tensor
names; ``parameters`` ``intra_op_thread_count`` / ``inter_op_thread_count`` size ONNX Runtime's
thread pools. Only the CPU execution provider is used.

Requests that arrive together (dynamic batching) are concatenated along the batch dimension and run
as one session call when their non-batch shapes agree; each request gets its own response, and an
error is reported per request as a ``TritonError``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# --- shared by every stand-in backend in inference/triton_backends/*/model.py (a test keeps them identical) ---

_INDEXED_NAME = re.compile(r"^.+__(?P<index>\d+)$")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model config."""

    name: str
    dtype: Any  # numpy dtype from the config's data_type
    dims: tuple[int, ...]  # shape without the batch dimension; -1 = variable


class RequestError(Exception):
    """A request this backend cannot run (bad input); reported to that request only."""


def tensor_specs(entries: list[dict[str, Any]]) -> list[TensorSpec]:
    """Return the specs of the config's ``input`` or ``output`` entries, in config order."""
    specs = []
    for entry in entries:
        dims = tuple(int(d) for d in entry.get("dims", []))
        if entry.get("reshape", {}).get("shape"):
            raise ValueError(f"{entry['name']}: 'reshape' is not supported by this stand-in backend")
        specs.append(TensorSpec(entry["name"], np.dtype(pb_utils.triton_string_to_numpy(entry["data_type"])), dims))
    return specs


def indexed_order(names: list[str]) -> list[int] | None:
    """Return the ``__<i>`` index of every name, or None unless all names follow that convention."""
    matches = [_INDEXED_NAME.match(name) for name in names]
    if not names or not all(matches):
        return None
    return [int(m.group("index")) for m in matches if m]


def model_path(args: dict[str, str], config: dict[str, Any], default_filename: str) -> Path:
    """Return the model file of this version: ``<model dir>/<version>/<default_model_filename>``."""
    filename = config.get("default_model_filename") or default_filename
    return Path(args["model_repository"]) / args["model_version"] / filename


def config_parameter(config: dict[str, Any], key: str) -> str | None:
    """Return the string value of a config ``parameters`` entry, or None when absent."""
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return value if value not in (None, "") else None


def read_request(request: Any, specs: list[TensorSpec], batched: bool) -> dict[str, np.ndarray]:
    """Return the request's inputs by name; raise RequestError when one is missing or malformed."""
    inputs = {}
    for spec in specs:
        tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
        if tensor is None:
            raise RequestError(f"missing input '{spec.name}'")
        array = tensor.as_numpy()
        if array.dtype != spec.dtype:
            raise RequestError(f"input '{spec.name}' has dtype {array.dtype}, expected {spec.dtype}")
        expected_rank = len(spec.dims) + (1 if batched else 0)
        if array.ndim != expected_rank:
            raise RequestError(f"input '{spec.name}' has shape {array.shape}, expected rank {expected_rank}")
        inputs[spec.name] = array
    return inputs


def requested_outputs(request: Any, specs: list[TensorSpec]) -> list[TensorSpec]:
    """Return the outputs the request asked for (all of them when it named none)."""
    names = set(request.requested_output_names())
    return [spec for spec in specs if not names or spec.name in names]


def error_response(message: str, internal: bool = False) -> Any:
    """Return an InferenceResponse that carries only an error."""
    code = pb_utils.TritonError.INTERNAL if internal else pb_utils.TritonError.INVALID_ARG
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


class BatchingModel:
    """Run Triton requests through ``self.run`` in shape-compatible batches.

    Subclasses set ``self.inputs``, ``self.outputs``, ``self.batched`` and implement ``run``.
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batched: bool

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return every output of one forward pass over ``inputs``."""
        raise NotImplementedError

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer each request, batching those whose non-batch input shapes agree.

        Steps:
        1. read each request's inputs; a malformed request gets its error now;
        2. group the others by non-batch shapes (without max_batch_size each runs alone);
        3. run each group as one concatenated batch and split the outputs per request;
        4. if a group of several fails, run its requests one by one so that one bad request
           does not fail the others.
        """
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, request in enumerate(requests):
            try:
                inputs = read_request(request, self.inputs, self.batched)
            except RequestError as exc:
                responses[i] = error_response(str(exc))
                continue
            key: tuple[Any, ...] = (i,)
            if self.batched:
                key = tuple((name, array.shape[1:]) for name, array in inputs.items())
            groups.setdefault(key, []).append((i, inputs))
        for members in groups.values():
            try:
                self._run_group(requests, members, responses)
            except Exception as exc:  # noqa: BLE001 - model failures become per-request errors
                if len(members) == 1:
                    responses[members[0][0]] = error_response(f"inference failed: {exc}", internal=True)
                    continue
                for member in members:
                    try:
                        self._run_group(requests, [member], responses)
                    except Exception as single_exc:  # noqa: BLE001
                        responses[member[0]] = error_response(f"inference failed: {single_exc}", internal=True)
        return responses

    def _run_group(
        self, requests: list[Any], members: list[tuple[int, dict[str, np.ndarray]]], responses: list[Any]
    ) -> None:
        """Run ``members`` as one batch and store one response per member in ``responses``."""
        if len(members) == 1:
            batch = members[0][1]
        else:
            batch = {spec.name: np.concatenate([inputs[spec.name] for _, inputs in members]) for spec in self.inputs}
        outputs = self.run(batch)
        sizes = [next(iter(inputs.values())).shape[0] if self.batched else 0 for _, inputs in members]
        total = sum(sizes)
        offset = 0
        for (i, _), size in zip(members, sizes, strict=True):
            tensors = []
            for spec in requested_outputs(requests[i], self.outputs):
                array = outputs[spec.name]
                if self.batched:
                    if array.ndim == 0 or array.shape[0] != total:
                        raise RuntimeError(f"output '{spec.name}' has shape {array.shape}, expected batch {total}")
                    array = array[offset : offset + size]
                tensors.append(pb_utils.Tensor(spec.name, np.ascontiguousarray(array, dtype=spec.dtype)))
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            offset += size


# --- end of the shared part ---


class TritonPythonModel(BatchingModel):
    """Triton's Python-backend entry point, running an ONNX ``model.onnx`` with ONNX Runtime on CPU."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open an ONNX Runtime session and check that the config names match the graph.

        Raises ValueError when a config input or output is not a tensor of the graph.
        """
        import onnxruntime as ort  # noqa: PLC0415 only in the Triton server venv

        config = json.loads(args["model_config"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = tensor_specs(config.get("input", []))
        self.outputs = tensor_specs(config.get("output", []))
        options = ort.SessionOptions()
        intra = config_parameter(config, "intra_op_thread_count")
        if intra:
            options.intra_op_num_threads = int(intra)
        inter = config_parameter(config, "inter_op_thread_count")
        if inter:
            options.inter_op_num_threads = int(inter)
        path = model_path(args, config, "model.onnx")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph_inputs = {node.name for node in self.session.get_inputs()}
        graph_outputs = {node.name for node in self.session.get_outputs()}
        unknown = [spec.name for spec in self.inputs if spec.name not in graph_inputs]
        unknown += [spec.name for spec in self.outputs if spec.name not in graph_outputs]
        if unknown:
            raise ValueError(
                f"{unknown} are not tensors of {path.name} (inputs {graph_inputs}, outputs {graph_outputs})"
            )

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the outputs of one session call, keyed by config output name."""
        names = [spec.name for spec in self.outputs]
        results = self.session.run(names, inputs)
        return dict(zip(names, results, strict=True))

    def finalize(self) -> None:
        """Release the session."""
        self.session = None
