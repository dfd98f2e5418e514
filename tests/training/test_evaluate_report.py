"""Tests of the report evaluation: metrics on hand-built reports, and a smoke run on the samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.clinical.types import ClinicalReport, Finding, Verdict
from training.evaluate_report import (
    FINDINGS,
    ScoredEcg,
    finding_metrics,
    normal_claims,
    report_metrics,
    sinus_claimed_on_af,
    truth_is_normal,
    wilson,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples" / "ptbxl"
WEIGHTS = REPO_ROOT / "ecg_models" / "weights"
SPEC = {spec.name: spec for spec in FINDINGS}

AF = Finding("AFIB", "Atrial fibrillation", "164889003", "rhythm", "measured", True)
SINUS = Finding("SR", "Sinus rhythm", "426783006", "rhythm", "measured", False)
RBBB = Finding("CRBBB", "Right bundle branch block", "59118001", "conduction", "measured", True)
MORPHOLOGY = Finding("LVH", "Possible left ventricular hypertrophy", None, "morphology", "foundation-model", True)


def report(*findings: Finding, verdict: str = Verdict.ABNORMAL) -> ClinicalReport:
    text = " ".join(f"{f.text}." for f in findings) + (" Normal ECG." if verdict == Verdict.NORMAL else "")
    return ClinicalReport(verdict=verdict, urgency="routine", findings=findings, text=text)


def scored(truth: set[str], clinical: ClinicalReport, record_id: str = "r") -> ScoredEcg:
    return ScoredEcg(record_id=record_id, truth=frozenset(truth), clinical=clinical)


def test_it_counts_a_named_af_as_a_true_positive_in_either_dataset() -> None:
    ecgs = [
        scored({"AFIB"}, report(AF)),
        scored({"SNOMED:164890007"}, report(AF)),  # Challenge flutter: AF/flutter is one finding
        scored({"AFIB", "CRBBB"}, report(SINUS, RBBB)),  # missed
        scored({"NORM", "SR"}, report(AF)),  # false positive
        scored({"NORM", "SR"}, report(SINUS, verdict=Verdict.NORMAL)),
    ]
    m = finding_metrics(ecgs, SPEC["af_flutter"])
    assert (m["n_true"], m["n_named"], m["tp"]) == (3, 3, 2)
    assert m["sensitivity"] == pytest.approx(2 / 3, abs=1e-4) and m["ppv"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["named_on_others"] == 0.5 and m["named_without_words"] == 0
    assert m["sensitivity_ci95"][0] < 2 / 3 < m["sensitivity_ci95"][1]


def test_it_names_a_finding_only_by_its_snomed_code_and_checks_the_words() -> None:
    ai_only = Finding("CRBBB", "Right bundle branch block", None, "morphology", "foundation-model", True)
    silent = Finding("CRBBB", "Conduction delay", "59118001", "conduction", "measured", True)
    m = finding_metrics([scored({"CRBBB"}, report(ai_only)), scored({"CRBBB"}, report(silent))], SPEC["rbbb"])
    assert m["tp"] == 1 and m["named_without_words"] == 1


def test_it_counts_a_normal_verdict_on_an_abnormal_ecg() -> None:
    ecgs = [
        scored({"NORM", "SR"}, report(SINUS, verdict=Verdict.NORMAL)),
        scored({"NORM", "SARRH"}, report(SINUS, MORPHOLOGY)),
        scored({"NORM", "SR", "SBRAD"}, report(SINUS, verdict=Verdict.NORMAL)),  # another rhythm: abnormal
        scored({"NORM", "SR", "LVOLT"}, report(SINUS, verdict=Verdict.NORMAL)),  # a form kept under NORM: normal
        scored({"SNOMED:426783006", "SNOMED:427393009"}, report(SINUS, verdict=Verdict.NORMAL)),
        scored({"SNOMED:426783006", "SNOMED:164934002"}, report(SINUS, verdict=Verdict.OUTSIDE_INTENDED_USE)),
        scored(set(), report(SINUS, verdict=Verdict.NORMAL)),  # no statement: not counted
    ]
    m = normal_claims(ecgs)
    assert m["normal_claimed_on_abnormal"] == {"k": 1, "n": 2, "rate": 0.5, "ci95": wilson(1, 2)}
    assert m["normal_claimed_on_normal"]["k"] == 3 and m["normal_claimed_on_normal"]["n"] == 4
    assert m["n_unlabelled"] == 1


def test_it_defines_a_normal_ecg_per_dataset() -> None:
    assert truth_is_normal(frozenset({"NORM"})) and truth_is_normal(frozenset({"NORM", "SR", "SARRH"}))
    assert truth_is_normal(frozenset({"SR"})) is False  # no NORM statement
    assert truth_is_normal(frozenset({"NORM", "SBRAD"})) is False
    assert truth_is_normal(frozenset({"SNOMED:426783006"})) is True
    assert truth_is_normal(frozenset({"SNOMED:426177001"})) is False
    assert truth_is_normal(frozenset()) is None


def test_it_counts_sinus_rhythm_stated_on_af() -> None:
    brady = Finding("SBRAD", "Sinus bradycardia", "426177001", "rhythm", "measured", True)
    ecgs = [scored({"AFLT"}, report(brady)), scored({"AFIB"}, report(AF)), scored({"NORM"}, report(SINUS))]
    assert sinus_claimed_on_af(ecgs) == {"k": 1, "n": 2, "rate": 0.5, "ci95": wilson(1, 2)}


def test_it_reports_verdicts_urgency_and_flag_rates() -> None:
    urgent = ClinicalReport(Verdict.ABNORMAL, "urgent", (AF,), "Atrial fibrillation.")
    ecgs = [
        ScoredEcg("a", frozenset({"AFIB"}), urgent, detector_flagged=True, foundation_flagged=True, measurement_ms=30),
        ScoredEcg("b", frozenset({"NORM"}), report(SINUS, verdict=Verdict.NORMAL), measurement_ms=10),
    ]
    m = report_metrics(ecgs)
    assert m["verdicts"] == {Verdict.ABNORMAL: 1, Verdict.NORMAL: 1} and m["urgent"] == 1
    assert m["detector_flag_rate_abnormal"]["rate"] == 1.0 and m["detector_flag_rate_normal"]["rate"] == 0.0
    assert m["foundation_flag_rate_normal"]["n"] == 0  # no foundation verdict recorded
    assert m["mean_measurement_ms"] == 20.0


def test_it_gives_wilson_intervals() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)


@pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")
@pytest.mark.skipif(not (WEIGHTS / "foundation.pt").exists(), reason="shipped weights not built yet")
def test_it_evaluates_two_sample_ecgs_with_the_shipped_models(tmp_path, capsys) -> None:
    from training import evaluate_report

    result = evaluate_report.main(["--data", str(SAMPLES), "--limit", "2", "--out-dir", str(tmp_path)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(result, default=str))
    assert result["n_records"] == 2 and set(result["findings"]) == set(SPEC)
    rows = (tmp_path / "records.csv").read_text().splitlines()
    assert rows[0].startswith("record_id,truth,truth_codes") and len(rows) >= 3
    if result["n_reports"]:  # once the analyzer builds the clinical report
        assert sum(result["verdicts"].values()) == result["n_reports"] == 2
