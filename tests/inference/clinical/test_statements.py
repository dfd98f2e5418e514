"""Coded statements from measurements (inference.clinical.statements)."""

from __future__ import annotations

from inference.clinical.measurements import measure_ecg
from inference.clinical.statements import measured_findings
from inference.clinical.types import EcgMeasurements, LeadMeasurements
from training.synthetic_ecg import synthesize


def _codes(**options: object) -> list[str]:
    ecg = synthesize(**options)  # type: ignore[arg-type]
    return [f.code for f in measured_findings(measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads))]


def test_it_calls_a_normal_ecg_sinus_rhythm_only() -> None:
    ecg = synthesize()
    findings = measured_findings(measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads))
    assert [f.code for f in findings] == ["SR"]
    assert findings[0].snomed == "426783006" and not findings[0].abnormal and findings[0].source == "measured"


def test_it_calls_atrial_fibrillation_not_sinus() -> None:
    codes = _codes(rhythm="af", heart_rate=95, seed=5)
    assert "AFIB" in codes and not {"SR", "SBRAD", "STACH", "SARRH"} & set(codes)


def test_it_marks_fast_atrial_fibrillation_urgent() -> None:
    ecg = synthesize(rhythm="af", heart_rate=130, seed=4)
    af = [f for f in measured_findings(measure_ecg(ecg.signal, 500, ecg.leads)) if f.code == "AFIB"]
    assert af and af[0].urgent and "rapid" in af[0].text


def test_it_keeps_sinus_with_two_pacs() -> None:
    codes = _codes(pac_beats=(3, 8))
    assert codes[0] == "SR" and "PAC" in codes and "AFIB" not in codes


def test_it_calls_wide_rbbb_complete_rbbb() -> None:
    assert "CRBBB" in _codes(conduction="rbbb", qrs_ms=140)


def test_it_calls_wide_lbbb_complete_lbbb() -> None:
    assert "CLBBB" in _codes(conduction="lbbb", qrs_ms=150, qt_ms=440)


def test_it_calls_first_degree_av_block_and_bradycardia() -> None:
    codes = _codes(heart_rate=50, pr_ms=240)
    assert codes[0] == "SBRAD" and "1AVB" in codes


def test_it_calls_left_axis_deviation() -> None:
    assert "LAD" in _codes(qrs_axis_deg=-50)


def test_it_calls_inferior_st_elevation_urgent() -> None:
    ecg = synthesize(st_vector_mv=(0.0, 0.25, 0.0))
    ste = [f for f in measured_findings(measure_ecg(ecg.signal, 500, ecg.leads)) if f.code == "STE"]
    assert ste and ste[0].urgent and "inferior" in ste[0].evidence["territories"]


def test_it_does_not_interpret_qtc_with_wide_qrs() -> None:
    m = EcgMeasurements(qrs_ms=150.0, qt_ms=480.0, qtc_ms=490.0, heart_rate_bpm=70.0)
    codes = [f.code for f in measured_findings(m, sex="male")]
    assert "LQT" not in codes and "QT_NOT_INTERPRETED" in codes


def test_it_uses_sex_specific_qtc_limits() -> None:
    m = EcgMeasurements(qrs_ms=90.0, qt_ms=420.0, qtc_ms=455.0, heart_rate_bpm=70.0)
    assert "LQT" in [f.code for f in measured_findings(m, sex="male")]
    assert "LQT" not in [f.code for f in measured_findings(m, sex="female")]


def test_it_says_nothing_about_rhythm_without_measurements() -> None:
    assert measured_findings(EcgMeasurements()) == []


def _sinus(rate: float, rr_range_ms: float = 40.0, irregularity: float = 0.01) -> EcgMeasurements:
    return EcgMeasurements(heart_rate_bpm=rate, rr_irregularity=irregularity, rr_range_ms=rr_range_ms,
                           p_wave_present=True, p_wave_fraction=1.0, pr_ms=160.0, qrs_ms=90.0)  # fmt: skip


def test_it_states_sinus_bradycardia_below_60_as_abnormal() -> None:
    mild = [f for f in measured_findings(_sinus(55.0)) if f.code == "SBRAD"]
    assert mild and mild[0].abnormal
    assert [f.code for f in measured_findings(_sinus(60.0))] == ["SR"]


def test_it_states_sinus_arrhythmia_as_a_normal_variant() -> None:
    findings = measured_findings(_sinus(75.0, rr_range_ms=200.0))
    assert [f.code for f in findings] == ["SARRH"] and not findings[0].abnormal


def test_it_reads_no_st_deviation_with_a_wide_qrs() -> None:
    elevated = LeadMeasurements(st_j60_mv=0.4, st_j_mv=0.35)
    depressed = LeadMeasurements(st_j60_mv=-0.3)
    leads = {"V1": elevated, "V2": elevated, "V3": elevated, "V5": depressed, "V6": depressed}
    narrow = measured_findings(EcgMeasurements(qrs_ms=100.0, leads=leads))
    assert {"STE", "STD"} <= {f.code for f in narrow}
    wide = measured_findings(EcgMeasurements(qrs_ms=130.0, leads=leads))
    assert not {"STE", "STD"} & {f.code for f in wide} and not any(f.urgent for f in wide)


def test_it_makes_no_st_statement_on_a_synthetic_lbbb_with_discordant_st() -> None:
    ecg = synthesize(conduction="lbbb", qrs_ms=150, qt_ms=440, st_vector_mv=(0.0, 0.0, 0.3))
    findings = measured_findings(measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads))
    assert "CLBBB" in {f.code for f in findings}
    assert not {"STE", "STD"} & {f.code for f in findings} and not any(f.urgent for f in findings)


def test_it_reads_no_st_elevation_when_only_the_st_after_the_j_point_rises() -> None:
    # Early repolarization: the J point near baseline, the concave ST rising by J+60 ms.
    rising = LeadMeasurements(st_j60_mv=0.3, st_j_mv=0.02)
    m = EcgMeasurements(heart_rate_bpm=70, qrs_ms=90, leads={lead: rising for lead in ("V2", "V3", "V4")})
    assert "STE" not in {f.code for f in measured_findings(m, sex="male", age_years=25)}


def test_it_calls_a_regular_wide_tachycardia_without_p_waves_urgent_never_sinus() -> None:
    rhythm = {"heart_rate_bpm": 150.0, "rr_irregularity": 0.01, "p_wave_present": False}
    wide = measured_findings(EcgMeasurements(**rhythm, qrs_ms=150.0))  # type: ignore[arg-type]
    narrow = measured_findings(EcgMeasurements(**rhythm, qrs_ms=90.0))  # type: ignore[arg-type]
    assert wide[0].code == "WCT" and wide[0].urgent and "ventricular tachycardia" in wide[0].text
    assert narrow[0].code == "NCT" and narrow[0].urgent
    assert not {"SR", "STACH"} & {f.code for f in wide + narrow}


def test_it_does_not_call_sinus_tachycardia_on_a_p_wave_too_far_from_the_qrs() -> None:
    m = EcgMeasurements(heart_rate_bpm=152.0, rr_irregularity=0.01, p_wave_present=True, pr_ms=320.0, qrs_ms=130.0)
    codes = [f.code for f in measured_findings(m)]
    assert codes[0] == "WCT" and "STACH" not in codes and "1AVB" not in codes


def test_it_calls_p_waves_inverted_in_the_inferior_leads_an_ectopic_atrial_rhythm_not_sinus() -> None:
    m = EcgMeasurements(
        heart_rate_bpm=70.0, rr_irregularity=0.01, p_wave_present=True, pr_ms=150.0, qrs_ms=90.0, p_axis_deg=-60.0
    )
    findings = measured_findings(m)
    assert findings[0].code == "EAR" and findings[0].abnormal and "-60" in findings[0].text
    assert not {"SR", "SBRAD", "STACH", "SARRH"} & {f.code for f in findings}
