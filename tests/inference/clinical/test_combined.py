"""The served verdict's combination: detector, foundation model and measured findings, one operating point."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from inference.clinical import report as report_module
from inference.clinical.combined import (
    LogisticHead,
    VerdictCombiner,
    VerdictEvidence,
    combiner_for,
    load_combiner,
    load_combiners,
    served_abnormal,
    verdict_evidence,
)
from inference.clinical.report import clinical_report
from inference.clinical.types import Finding, Verdict
from tests.inference.clinical.test_report import AF, SINUS, _detector, _foundation, _measurements

SBRAD = Finding("SBRAD", "Sinus bradycardia", "426177001", "rhythm", "measured", abnormal=True)
COMBINER = VerdictCombiner(
    version="verdict-test",
    detector_version="t",
    foundation_version="t",
    full=LogisticHead(
        0.0,
        {
            "detector_z": 0.3,
            "foundation_logit": 1.0,
            "measured_major": 2.0,
            "measured_minor": 0.5,
            "no_sinus_rhythm": 0.1,
        },
        0.3,
    ),
    detector_and_measured=LogisticHead(
        -1.0, {"detector_z": 0.7, "measured_major": 2.0, "measured_minor": 0.8, "no_sinus_rhythm": 0.1}, 0.3
    ),
    fitted_on="test",
)


@pytest.fixture
def combiner(monkeypatch: pytest.MonkeyPatch) -> VerdictCombiner:
    """Serve the test combination, fitted for the test results' model versions ("t")."""
    monkeypatch.setattr(report_module, "load_combiners", lambda: (COMBINER,))
    return COMBINER


def test_it_adds_each_sources_contribution_to_one_logit() -> None:
    evidence = VerdictEvidence(
        detector_z=2.0, foundation_logit=-1.0, measured_major=0, measured_minor=1, no_sinus_rhythm=False
    )
    score = COMBINER.score(evidence)
    logit = sum(score.contributions.values())
    assert score.contributions == {
        "detector_z": 0.6, "foundation_logit": -1.0, "measured_major": 0.0, "measured_minor": 0.5, "no_sinus_rhythm": 0.0
    }  # fmt: skip
    assert score.probability == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-4)
    assert score.flagged == (score.probability >= 0.3)


def test_it_bounds_extreme_inputs_so_one_source_cannot_dominate() -> None:
    extreme = VerdictEvidence(
        detector_z=400.0, foundation_logit=-50.0, measured_major=9, measured_minor=0, no_sinus_rhythm=False
    )
    assert extreme.features() == {
        "detector_z": 20.0, "foundation_logit": -8.0, "measured_major": 3.0, "measured_minor": 0.0, "no_sinus_rhythm": 0.0
    }  # fmt: skip


def test_it_uses_the_detector_and_measured_head_without_a_foundation_result() -> None:
    evidence = verdict_evidence(_detector(score=3.0), None, [SINUS])
    score = COMBINER.score(evidence)
    assert "foundation_logit" not in score.contributions and score.sources == tuple(
        COMBINER.detector_and_measured.weights
    )


def test_it_counts_major_and_minor_measured_findings_apart() -> None:
    evidence = verdict_evidence(_detector(), _foundation(), [SINUS, SBRAD, AF])
    assert (evidence.measured_major, evidence.measured_minor, evidence.no_sinus_rhythm) == (1, 1, False)


def test_an_urgent_finding_counts_as_major_whatever_its_code() -> None:
    urgent_minor = replace(SBRAD, code="NEW_URGENT", urgent=True)
    evidence = verdict_evidence(_detector(), _foundation(), [SINUS, urgent_minor])
    assert (evidence.measured_major, evidence.measured_minor) == (1, 0)
    assert served_abnormal(combined_flagged=False, evidence=evidence)


def test_the_fitting_script_applies_the_served_rule() -> None:
    """The operating point is chosen under the rule the report serves (one function, both places)."""
    fit_verdict = pytest.importorskip("training.fit_verdict")
    rows = [
        {
            "detector_z": "0.1",
            "foundation_logit": "",
            "measured_major": major,
            "measured_minor": "2",
            "no_sinus_rhythm": no_sinus,
        }
        for major, no_sinus in (("0", "0"), ("1", "0"), ("0", "1"))
    ]
    assert fit_verdict.hard_flags(rows).tolist() == [False, True, True]


def test_a_detector_flag_alone_no_longer_makes_the_ecg_abnormal(combiner: VerdictCombiner) -> None:
    # Detector over its own operating point, foundation model confident it is normal, nothing measured.
    report = clinical_report(
        measurements=_measurements(), findings=[SINUS], detector=_detector(score=2.5), foundation=_foundation(p=0.02)
    )
    assert report.verdict == Verdict.NORMAL and report.text.count("Normal ECG.") == 1
    assert report.combined is not None and report.combined["probability"] < report.combined["threshold"]


def test_agreeing_sources_make_it_abnormal_and_the_text_says_why(combiner: VerdictCombiner) -> None:
    report = clinical_report(
        measurements=_measurements(), findings=[SINUS], detector=_detector(score=3.0), foundation=_foundation(p=0.7)
    )
    assert report.verdict == Verdict.ABNORMAL
    assert f"combined evidence {report.combined['probability']:.2f}" in report.text  # type: ignore[index]


def test_a_major_measured_finding_is_abnormal_whatever_the_models_say(combiner: VerdictCombiner) -> None:
    report = clinical_report(
        measurements=_measurements(p_wave_present=False),
        findings=[AF],
        detector=_detector(score=-1.0),
        foundation=_foundation(p=0.001),
    )
    assert (
        report.verdict == Verdict.ABNORMAL and report.combined is not None and not _probability_flags(report.combined)
    )


def _probability_flags(combined: dict[str, float]) -> bool:
    return combined["probability"] >= combined["threshold"]


def test_a_minor_finding_the_models_do_not_support_reads_otherwise_normal(combiner: VerdictCombiner) -> None:
    report = clinical_report(
        measurements=_measurements(heart_rate_bpm=55.0),
        findings=[replace(SBRAD)],
        detector=_detector(score=-0.5),
        foundation=_foundation(p=0.01),
    )
    assert report.verdict == Verdict.NORMAL
    assert "Sinus bradycardia." in report.text and "Otherwise normal ECG: combined evidence" in report.text


def test_it_falls_back_to_any_source_flagging_for_other_model_versions(combiner: VerdictCombiner) -> None:
    other = replace(_detector(score=2.5), model_version="detector-other")
    report = clinical_report(
        measurements=_measurements(), findings=[SINUS], detector=other, foundation=_foundation(p=0.02)
    )
    assert report.verdict == Verdict.ABNORMAL and report.combined is None
    assert any("does not apply (fitted for detector t, served detector-other)" in d for d in report.disagreements)
    assert "does not apply" not in report.text


def test_a_candidate_version_gets_the_combination_fitted_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shadow candidate's detector version uses its own fitted combination, never the serving one's."""
    candidate = replace(COMBINER, version="verdict-candidate", detector_version="detector-candidate")
    monkeypatch.setattr(report_module, "load_combiners", lambda: (COMBINER, candidate))
    report = clinical_report(
        measurements=_measurements(),
        findings=[SINUS],
        detector=replace(_detector(score=0.5), model_version="detector-candidate"),
        foundation=_foundation(p=0.02),
    )
    assert report.combined is not None and report.combined["combiner_version"] == "verdict-candidate"
    served = clinical_report(
        measurements=_measurements(), findings=[SINUS], detector=_detector(), foundation=_foundation()
    )
    assert served.combined is not None and served.combined["combiner_version"] == "verdict-test"


def test_combinations_fitted_for_candidates_are_found_beside_the_shipped_one(tmp_path: Path) -> None:
    primary = tmp_path / "verdict_combiner.json"
    primary.write_text(json.dumps(COMBINER.to_json()))
    candidate = replace(COMBINER, version="verdict-candidate", detector_version="detector-candidate")
    (tmp_path / "verdict_combiner-candidate.json").write_text(json.dumps(candidate.to_json()))
    combiners = load_combiners(primary)
    assert [c.version for c in combiners] == ["verdict-test", "verdict-candidate"]  # serving one first
    chosen, why_not = combiner_for(combiners, replace(_detector(), model_version="detector-x"), None)
    assert chosen is None and why_not == "fitted for detector t, served detector-x"


def test_the_shipped_combination_loads_and_names_the_shipped_model_versions() -> None:
    shipped = load_combiner()
    assert shipped is not None and shipped.detector_version.startswith("detector-")
    assert shipped.foundation_version.startswith("foundation-") and 0.0 < shipped.full.threshold < 1.0


def test_it_refuses_a_combination_with_an_unknown_feature() -> None:
    data = COMBINER.to_json()
    data["full"]["weights"]["age"] = 1.0
    with pytest.raises(ValueError, match="unknown features"):
        VerdictCombiner.from_json(data)


def test_a_normal_verdict_drops_the_detectors_model_only_boxes_and_keeps_the_measured_ones() -> None:
    from inference.analyzer import boxes_for_verdict
    from inference.localization import MODEL_ONLY
    from inference.results import AnomalyInterval

    boxes = (
        AnomalyInterval(lead="V2", start_ms=1000.0, end_ms=1200.0, score=30.0, finding=MODEL_ONLY, box=1),
        AnomalyInterval(lead="V2", start_ms=3000.0, end_ms=3100.0, score=30.0, finding="PVC", box=2),
    )
    detector = replace(_detector(score=2.5), intervals=boxes)
    assert [i.finding for i in boxes_for_verdict(detector, flagged=False).intervals] == ["PVC"]
    assert boxes_for_verdict(detector, flagged=True).intervals == boxes
