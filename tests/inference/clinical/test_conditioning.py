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


def serving(measured_codes: tuple[str, ...]) -> FoundationServing:
    classifier = {
        "model_version_label": "f",
        "threshold_prob_abnormal": "0.5",
        "superclasses": json.dumps(["NORM"]),
        "statement_codes": json.dumps(["SR"]),
    }
    report = {"vocabulary": json.dumps(["[PAD]"]), "special_ids": json.dumps({"pad": 0})}
    if measured_codes:
        report["measured_findings"] = json.dumps(list(measured_codes))
    return FoundationServing.from_parameters(classifier, report)


def test_it_sends_the_measured_vector_only_to_a_conditioned_report_model() -> None:
    signal, mask = np.zeros((12, 1000), np.float32), np.ones(12, bool)
    plain = serving(())
    assert plain.measured_codes == ()
    assert set(plain.report_inputs(signal, mask, None)) == {"signal", "lead_mask"}
    conditioned = serving(MEASURED_SNOMED)
    vec = measured_vector([finding("164889003")])
    arrays = conditioned.report_inputs(signal, mask, vec)
    assert list(arrays) == ["signal", "lead_mask", "measured"]
    assert arrays["measured"].shape == (1, 21) and arrays["measured"].dtype == np.float32
    with pytest.raises(InferenceFailed, match="needs the measured"):
        conditioned.report_inputs(signal, mask, None)
    with pytest.raises(InferenceFailed, match="differ"):
        serving(MEASURED_SNOMED[::-1]).report_inputs(signal, mask, vec)


def test_it_sends_the_measured_vector_to_the_served_report_model() -> None:
    from inference.analyzer import TritonAnalyzer
    from inference.preprocessing import FoundationInputs

    class Client:
        def __init__(self) -> None:
            self.sent: dict[str, np.ndarray] = {}

        def infer_result(
            self, model: str, arrays: dict[str, np.ndarray], outputs: tuple[str, ...], *, version: str
        ) -> str:
            self.sent = arrays
            return f"{model}/{version}"

    client = Client()
    analyzer = TritonAnalyzer(client=client)  # type: ignore[arg-type]
    inputs = FoundationInputs(signal=np.zeros((12, 1000), np.float32), lead_mask=np.ones(12, bool))
    vec = measured_vector([finding("164889003")])
    assert analyzer._report(inputs, vec, serving(MEASURED_SNOMED), "2") == "ecg_report/2"
    assert client.sent["measured"][0, 4] == 1.0 and client.sent["signal"].shape == (1, 12, 1000)
