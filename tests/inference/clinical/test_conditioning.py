"""The measured-findings vector that conditions the report decoder, and the report request built from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.clinical.conditioning import MEASURED_SNOMED, N_MEASURED, measured_vector, names_of
from inference.clinical.types import Finding
from inference.errors import InferenceFailed
from inference.foundation_postprocessing import FoundationServing


def finding(snomed: str | None, source: str = "measured") -> Finding:
    return Finding(code="X", text="x", snomed=snomed, category="rhythm", source=source, abnormal=False)


def test_it_pins_the_order_of_the_measured_findings() -> None:
    # The order is the served model's input signature: append, never reorder.
    assert N_MEASURED == 21 and len(set(MEASURED_SNOMED)) == 21
    assert MEASURED_SNOMED[:6] == ("426783006", "426177001", "427084000", "427393009", "164889003", "164890007")
    assert MEASURED_SNOMED[-1] == "10370003"


def test_it_sets_only_measured_findings_with_a_known_code() -> None:
    vec = measured_vector(
        [finding("164889003"), finding("59118001"), finding("426783006", source="foundation-model"), finding(None)]
    )
    assert vec.dtype == np.float32 and vec.shape == (21,)
    assert names_of(vec) == ["atrial fibrillation", "right bundle branch block"]


def test_it_leaves_amplitude_findings_out_when_the_signal_is_not_in_mv() -> None:
    findings = [finding("251146004"), finding("164931005"), finding("429622005"), finding("39732003")]
    assert names_of(measured_vector(findings)) == [
        "left axis deviation",
        "low QRS voltage",
        "ST elevation",
        "ST depression",
    ]
    assert names_of(measured_vector(findings, amplitudes_valid=False)) == ["left axis deviation"]


def facts(measured_codes: tuple[str, ...]) -> dict[str, str]:
    served = {
        "model_version_label": "f",
        "threshold_prob_abnormal": "0.5",
        "superclasses": json.dumps(["NORM"]),
        "statement_codes": json.dumps(["SR"]),
        "vocabulary": json.dumps(["[PAD]"]),
        "special_ids": json.dumps({"pad": 0}),
    }
    if measured_codes:
        served["measured_findings"] = json.dumps(list(measured_codes))
    return served


def serving(measured_codes: tuple[str, ...]) -> FoundationServing:
    return FoundationServing.from_parameters(facts(measured_codes))


def test_serving_facts_without_the_vocabulary_fail_naming_it() -> None:
    incomplete = {k: v for k, v in facts(()).items() if k != "vocabulary"}
    with pytest.raises(InferenceFailed, match="vocabulary"):
        FoundationServing.from_parameters(incomplete)


def test_it_sends_the_measured_vector_only_to_a_conditioned_model() -> None:
    signal, mask = np.zeros((12, 1000), np.float32), np.ones(12, bool)
    plain = serving(())
    assert plain.measured_codes == ()
    assert set(plain.inputs(signal, mask, None)) == {"signal", "lead_mask"}
    conditioned = serving(MEASURED_SNOMED)
    vec = measured_vector([finding("164889003")])
    arrays = conditioned.inputs(signal, mask, vec)
    assert list(arrays) == ["signal", "lead_mask", "measured"]
    assert arrays["measured"].shape == (1, 21) and arrays["measured"].dtype == np.float32
    with pytest.raises(InferenceFailed, match="needs the measured"):
        conditioned.inputs(signal, mask, None)
    with pytest.raises(InferenceFailed, match="differ"):
        serving(MEASURED_SNOMED[::-1]).inputs(signal, mask, vec)


def test_it_sends_the_measured_vector_in_the_one_foundation_request() -> None:
    from types import SimpleNamespace

    from inference.analyzer import TritonAnalyzer
    from inference.preprocessing import FoundationInputs

    class Client:
        def __init__(self) -> None:
            self.calls: list[tuple[str, dict[str, np.ndarray], tuple[str, ...], str]] = []

        def model_parameters(self, model: str, version: str) -> dict[str, str]:
            return {f"serving_v{version}": json.dumps(facts(MEASURED_SNOMED))}

        def infer_result(
            self, model: str, arrays: dict[str, np.ndarray], outputs: tuple[str, ...], *, version: str
        ) -> str:
            self.calls.append((model, arrays, outputs, version))
            return f"{model}/{version}"

    client = Client()
    analyzer = TritonAnalyzer(client=client)  # type: ignore[arg-type]
    inputs = FoundationInputs(signal=np.zeros((12, 1000), np.float32), lead_mask=np.ones(12, bool))
    measured = SimpleNamespace(findings=[finding("164889003")])
    assert analyzer._foundation(inputs, measured, "2") == "ecg_foundation/2"  # type: ignore[arg-type]
    [(model, sent, outputs, version)] = client.calls  # one request: classifier and report together
    assert (model, version) == ("ecg_foundation", "2")
    assert "token_ids__5" in outputs and "abnormal_logit__0" in outputs
    assert sent["measured"][0, 4] == 1.0 and sent["signal"].shape == (1, 12, 1000)
