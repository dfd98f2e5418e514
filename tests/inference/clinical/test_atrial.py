"""Atrial flutter from QRS-cancelled atrial activity (inference.clinical.atrial)."""

from __future__ import annotations

from inference.clinical.atrial import atrial_activity
from inference.clinical.beats import beats_analyse
from inference.clinical.measurements import measure_ecg
from inference.clinical.statements import measured_findings
from training.synthetic_ecg import synthesize


def _rhythm(**options: object) -> list:
    ecg = synthesize(**options)  # type: ignore[arg-type]
    return [f for f in measured_findings(measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)) if f.category == "rhythm"]


def test_it_calls_two_to_one_flutter_atrial_flutter() -> None:
    found = _rhythm(rhythm="flutter", flutter_conduction=2, seed=0, flutter_rate=260)
    assert found[0].code == "AFLT" and found[0].snomed == "164890007"
    assert found[0].evidence["conduction_ratio"] == "2:1" and found[0].urgent
    assert 230 <= found[0].evidence["atrial_rate_bpm"] <= 290


def test_it_calls_four_to_one_flutter_atrial_flutter_not_urgent() -> None:
    found = _rhythm(rhythm="flutter", flutter_conduction=4, seed=0, flutter_rate=260)
    assert found[0].code == "AFLT" and found[0].evidence["conduction_ratio"] == "4:1" and not found[0].urgent


def test_it_does_not_call_sinus_or_af_flutter() -> None:
    for options in ({"heart_rate": 70}, {"heart_rate": 95}, {"rhythm": "af", "heart_rate": 90, "seed": 2},
                    {"rhythm": "af", "heart_rate": 130, "seed": 3}):  # fmt: skip
        assert "AFLT" not in [f.code for f in _rhythm(**options)], options


def test_it_measures_an_organized_atrial_rate_in_flutter_only() -> None:
    flutter = atrial_activity(beats_analyse(synthesize(rhythm="flutter", seed=0).signal, 500))
    af = atrial_activity(beats_analyse(synthesize(rhythm="af", heart_rate=90, seed=2).signal, 500))
    assert flutter is not None and af is not None
    assert abs(flutter.rate_bpm - 300) <= 20 and flutter.organization > af.organization
