"""Each served model version is read with its own operating point and label (issue 14, item 2).

The live test serves the shipped detector as versions 1 and 2 of one model, version 2 with another
threshold and label (as an upgrade to a recalibrated checkpoint would), on the local Triton, and
checks that every prediction records the threshold and label of the version that ran it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from inference.analyzer import EcgInput, TritonAnalyzer
from inference.errors import InferenceFailed
from inference.local_triton import LocalTriton
from inference.model_repository import DEFAULT_REPOSITORY, DETECTOR_MODEL, SERVING_FILE, version_serving, write_configs
from inference.triton_client import InferResult, TritonClient
from tests.conftest import LEADS_12, read_sample_record
from tests.inference.conftest import require_triton_venv

V2_THRESHOLD = 99.0  # no ECG reaches it: every version-2 prediction is unflagged


def sample_input(ecg_id: int) -> EcgInput:
    samples_uv, header = read_sample_record(ecg_id)
    return EcgInput(signal=samples_uv / 1000.0, rate_hz=float(header["fs"]), leads=LEADS_12)


def two_version_repository(root: Path) -> dict[int, dict[str, str]]:
    """Copy the shipped detector as versions 1 and 2 (2 with its own threshold and label); return their facts."""
    pytest.importorskip("torch", reason="the detector's config shape comes from its checkpoint (ml extra)")
    from ecg_models.anomaly_detector import from_checkpoint
    from inference.export import detector_spec
    from inference.model_repository import WEIGHTS

    model_dir = root / DETECTOR_MODEL
    shutil.copytree(DEFAULT_REPOSITORY / DETECTOR_MODEL / "1", model_dir / "1")
    shutil.copytree(model_dir / "1", model_dir / "2")
    facts = {1: json.loads((model_dir / "1" / SERVING_FILE).read_text())}
    facts[2] = {**facts[1], "threshold": repr(V2_THRESHOLD), "model_version_label": "detector-recalibrated"}
    (model_dir / "2" / SERVING_FILE).write_text(json.dumps(facts[2]))
    write_configs(model_dir, detector_spec(from_checkpoint(WEIGHTS / "detector.pt").cfg))
    return facts


@pytest.mark.live
def test_each_prediction_records_the_threshold_and_label_of_the_version_that_ran(tmp_path: Path) -> None:
    require_triton_venv()
    facts = two_version_repository(tmp_path / "models")
    server = LocalTriton(
        repository=tmp_path / "models", config_name="cpu", load_models=[DETECTOR_MODEL], work_dir=tmp_path / "work"
    )
    with server:
        results = {}
        for pinned in ("1", "2", None):
            client = TritonClient(
                grpc_url=server.grpc_url, expected_versions={DETECTOR_MODEL: pinned} if pinned else {}
            )
            analyzer = TritonAnalyzer(client=client, foundation_model=None)
            results[pinned] = analyzer.analyse(sample_input(131)).detector
    one, two, default = results["1"], results["2"], results[None]
    assert (one.server_model_version, one.model_version) == ("ecg_detector/1", facts[1]["model_version_label"])
    assert one.threshold == round(float(facts[1]["threshold"]), 4)
    assert (two.server_model_version, two.model_version) == ("ecg_detector/2", "detector-recalibrated")
    assert two.threshold == V2_THRESHOLD and not two.flagged
    assert one.score == two.score  # the same network: only the reading differs
    # Unpinned, Triton runs the newest served version, and the result is read with its facts.
    assert (default.server_model_version, default.model_version, default.threshold) == (
        "ecg_detector/2",
        "detector-recalibrated",
        V2_THRESHOLD,
    )


class _Client:
    """A TritonClient stand-in at our own seam: serves one config, counts config reads."""

    def __init__(self, parameters: dict[str, str]) -> None:
        self.parameters = parameters
        self.reads: list[tuple[str, str | None]] = []

    def model_parameters(self, name: str, version: str | None = None) -> dict[str, str]:
        self.reads.append((name, version))
        return self.parameters

    def infer_result(self, *args: Any, **kwargs: Any) -> InferResult:
        raise AssertionError("not called")


def _entry(threshold: float, label: str) -> str:
    return json.dumps(
        {
            "model_version_label": label,
            "score_mean": "0",
            "score_std": "1",
            "threshold": str(threshold),
            "map_threshold": "1",
        }
    )


def test_serving_facts_are_looked_up_per_version_and_cached_only_for_that_version() -> None:
    client = _Client({"serving_v1": _entry(0.5, "a"), "serving_v2": _entry(2.0, "b")})
    analyzer = TritonAnalyzer(client=client, foundation_model=None)  # type: ignore[arg-type]
    assert analyzer.detector_serving("1").threshold == 0.5
    assert analyzer.detector_serving("2").version_label == "b"
    assert analyzer.detector_serving("1").version_label == "a"
    assert client.reads == [(DETECTOR_MODEL, "1"), (DETECTOR_MODEL, "2")]


def test_a_version_without_its_own_facts_is_refused_not_read_with_anothers() -> None:
    client = _Client({"serving_v1": _entry(0.5, "a"), "threshold": "0.5"})
    analyzer = TritonAnalyzer(client=client, foundation_model=None)  # type: ignore[arg-type]
    with pytest.raises(InferenceFailed, match=r"no serving facts for version '3'"):
        analyzer.detector_serving("3")
    with pytest.raises(LookupError, match="serving_v1"):
        version_serving({"serving_v1": "{}"}, DETECTOR_MODEL, "2")


def test_with_versions_asks_for_the_candidates_versions_and_leaves_the_served_analyzer_pinned() -> None:
    client = mock.create_autospec(TritonClient, instance=True)
    client.expected_versions = {DETECTOR_MODEL: "1", "ecg_foundation": "1"}
    client.infer_result.side_effect = InferenceFailed("stop after the request")
    served = TritonAnalyzer(client=client)
    shadow = served.with_versions({DETECTOR_MODEL: "2"}).with_versions({"ecg_foundation": "3"})

    assert shadow.client is served.client and served.versions == {}
    assert shadow._foundation_version() == "3" and served._foundation_version() == "1"  # noqa: SLF001
    with pytest.raises(InferenceFailed):
        shadow.analyse(sample_input(9))
    with pytest.raises(InferenceFailed):
        served.analyse(sample_input(9))
    (shadow_call, served_call) = client.infer_result.call_args_list
    assert shadow_call.args[0] == served_call.args[0] == DETECTOR_MODEL
    assert shadow_call.kwargs["version"] == "2"
    assert served_call.kwargs["version"] is None  # the client's pinned version (TRITON_MODEL_VERSIONS)
