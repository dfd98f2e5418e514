"""Turn measurements into AHA/ACC/HRS standard statements, SNOMED CT coded, with their evidence.

:func:`measured_findings` ``(m, *, sex=None, age_years=None) -> list[Finding]``; every finding has
``source="measured"`` and carries the measurements that triggered it in ``evidence``. Criteria
are the published clinical definitions (AHA/ACC/HRS 2009 recommendations for the standardization
and interpretation of the ECG, parts III–VI; Fourth Universal Definition of MI 2018 for ST), not
numbers tuned on data.
"""

from __future__ import annotations

from inference.clinical.atrial import FLUTTER_HZ, FLUTTER_MIN_MV, FLUTTER_ORGANIZATION
from inference.clinical.measurements import IRREGULAR
from inference.clinical.types import EcgMeasurements, Finding, LeadMeasurements

SOURCE = "measured"
# Sinus rate limits 60–100 bpm (AHA/ACC/HRS 2009 part II; the standard statement boundaries).
_BRADY, _TACHY = 60.0, 100.0
# The rhythm statements this module makes, by whether they are sinus. Sinus bradycardia stays an
# abnormal statement at any rate < 60/min: the report must not write "normal ECG" beside a rate
# statement, and other hospitals label it as a finding (in the Chapman-Shaoxing/Ningbo data it is
# the commonest rhythm label). Sinus arrhythmia is the one normal variant (respiratory, gradual
# RR change with normal P waves).
SINUS_RHYTHMS = frozenset({"SR", "SBRAD", "STACH", "SARRH"})
SNOMED_SINUS_FAMILY = frozenset({"426783006", "426177001", "427084000", "427393009"})  # their SNOMED CT
NON_SINUS_RHYTHMS = frozenset({"AFIB", "AFLT", "WCT", "NCT", "RHYTHM_UNCLEAR", "EAR"})
_MAX_PR_TACHY = 250.0  # ms
# Sinus P axis 0 to +90 (part II), widened by about one measurement error each side.
_SINUS_P_AXIS = (-30.0, 105.0)
_RAPID_NCT = 150.0  # 2:1 atrial flutter runs at ~150/min
_RAPID_AF = 110.0  # "AF with rapid ventricular response": >110 bpm (2023 ACC/AHA AF guideline, rate control)
_SINUS_ARRHYTHMIA_MS = 120.0  # P–P (here R–R of sinus beats) varying by > 0.12 s, gradual
_AVB1_PR = 200.0  # PR > 200 ms (part III)
_QRS_COMPLETE, _QRS_INCOMPLETE = 120.0, 110.0  # adult bundle-branch block limits (part III)
_LBBB_RPT = 60.0  # R-peak time > 60 ms in V5/V6 (part III, complete LBBB)
_Q_MV = -0.05  # a q smaller than 0.05 mV is not read as a q wave
# LAD < −30°, RAD > +90° (part II; −30..+90 normal in adults).
_LAD, _RAD = -30.0, 90.0
_QTC_LONG_MALE, _QTC_LONG_FEMALE = 450.0, 460.0  # part IV: prolonged QTc ≥450 men, ≥460 women
_QTC_SHORT = 340.0  # part IV: QTc ≤ 340 ms short (ESC 2022 short-QT criterion uses ≤ 340 ms)
_LOW_LIMB, _LOW_PRECORDIAL = 0.5, 1.0  # part V: QRS amplitude < 0.5 mV in all limb, < 1.0 mV all precordial
_ST_DEPRESSION = -0.05  # UDMI 2018: new horizontal/downsloping ST depression ≥ 0.05 mV, 2 contiguous leads
_LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
_PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")
# Contiguous lead pairs by territory (UDMI 2018: anterior V1–V6 neighbours; lateral I–aVL and
# V5–V6; inferior II, III, aVF). aVR is not part of a territory.
_CONTIGUOUS = {
    "anterior": (("V1", "V2"), ("V2", "V3"), ("V3", "V4")),
    "lateral": (("I", "aVL"), ("V5", "V6")),
    "inferior": (("II", "aVF"), ("aVF", "III"), ("II", "III")),
}


def _f(code: str, text: str, snomed: str | None, category: str, evidence: dict, *, abnormal: bool = True,
       urgent: bool = False) -> Finding:  # fmt: skip
    return Finding(code, text, snomed, category, SOURCE, abnormal, evidence, urgent)


def _rhythm(m: EcgMeasurements) -> Finding | None:
    """Return the one rhythm statement, or None when the rhythm cannot be told."""
    rate = m.heart_rate_bpm
    if rate is None or m.rr_irregularity is None or m.p_wave_present is None:
        return None
    ev = {
        "heart_rate_bpm": rate,
        "rr_irregularity": m.rr_irregularity,
        "p_wave_fraction": m.p_wave_fraction,
        "rr_range_ms": m.rr_range_ms,
    }
    irregular = m.rr_irregularity > IRREGULAR
    # In a tachycardia a "P wave" found more than 250 ms before the QRS lies on the previous T wave
    # (sinus tachycardia shortens PR); conducting it would call a VT or flutter "sinus".
    p_conducted = m.p_wave_present and not (rate > _TACHY and m.pr_ms is not None and m.pr_ms > _MAX_PR_TACHY)
    if not p_conducted:
        wide_fast = rate > _TACHY and m.qrs_ms is not None and m.qrs_ms >= _QRS_COMPLETE
        if _flutter_waves(m) and not wide_fast:  # a wide tachycardia stays "VT not excluded"
            return _flutter(m, ev)
        if irregular:
            rapid = rate > _RAPID_AF
            text = "Atrial fibrillation" + (" with rapid ventricular response" if rapid else "")
            return _f("AFIB", text, "164889003", "rhythm", ev, urgent=rapid)
        if rate > _TACHY:
            return _regular_tachycardia(m, ev)
        # Regular without identifiable P waves: junctional, flutter with fixed block or P hidden
        # in noise. Saying which would be a guess, so the statement says exactly that.
        return _f("RHYTHM_UNCLEAR", "Regular rhythm, atrial activity unclear (no P waves identified)", None,
                  "rhythm", ev)  # fmt: skip
    if m.p_axis_deg is not None and not _SINUS_P_AXIS[0] <= m.p_axis_deg <= _SINUS_P_AXIS[1]:
        # P waves lead the QRS but do not come from the sinus node (inverted in the inferior
        # leads): an ectopic atrial rhythm, not "sinus" (part II: sinus P axis 0 to +75/+90).
        text = f"Ectopic atrial rhythm (P axis {m.p_axis_deg:.0f}°)"
        return _f("EAR", text, None, "rhythm", ev | {"p_axis_deg": m.p_axis_deg})
    if rate < _BRADY:
        return _f("SBRAD", "Sinus bradycardia", "426177001", "rhythm", ev)
    if rate > _TACHY:
        return _f("STACH", "Sinus tachycardia", "427084000", "rhythm", ev)
    if irregular or (m.rr_range_ms is not None and m.rr_range_ms > _SINUS_ARRHYTHMIA_MS):
        # Respiratory sinus arrhythmia is a normal variant (part II): stated, not abnormal.
        return _f("SARRH", "Sinus arrhythmia", "427393009", "rhythm", ev, abnormal=False)
    return _f("SR", "Sinus rhythm", "426783006", "rhythm", ev, abnormal=False)


def _flutter_waves(m: EcgMeasurements) -> bool:
    """Return True when the QRS-cancelled atrial activity is organized flutter (see .atrial)."""
    rate, org, amp = m.atrial_rate_bpm, m.atrial_organization, m.atrial_amplitude_mv
    if rate is None or org is None or amp is None:
        return False
    low, high = 60.0 * FLUTTER_HZ[0], 60.0 * FLUTTER_HZ[1]
    return low <= rate <= high and org >= FLUTTER_ORGANIZATION and amp >= FLUTTER_MIN_MV


def _flutter(m: EcgMeasurements, ev: dict) -> Finding:
    """Return "Atrial flutter" with the atrial rate and, when fixed, the conduction ratio."""
    rate = float(m.heart_rate_bpm or 0.0)
    atrial = float(m.atrial_rate_bpm or 0.0)
    ev = ev | {"atrial_rate_bpm": atrial, "atrial_organization": m.atrial_organization,
               "atrial_amplitude_mv": m.atrial_amplitude_mv}  # fmt: skip
    text = "Atrial flutter"
    ratio = atrial / rate if rate > 0 else 0.0
    regular = m.rr_irregularity is not None and m.rr_irregularity <= IRREGULAR
    if regular and round(ratio) >= 1 and abs(ratio - round(ratio)) <= 0.15:
        ev["conduction_ratio"] = f"{round(ratio)}:1"
        text += f" with {round(ratio)}:1 conduction"
    elif not regular:
        ev["conduction_ratio"] = "variable"
        text += " with variable conduction"
    rapid = rate > _RAPID_AF
    if rapid:
        text += " and rapid ventricular response"
    return _f("AFLT", text, "164890007", "rhythm", ev, urgent=rapid)


def _regular_tachycardia(m: EcgMeasurements, ev: dict) -> Finding:
    """Return the statement for a regular tachycardia without identifiable P waves.

    A wide one is ventricular tachycardia until proven otherwise (AHA/ACC/HRS 2015 SVT guideline:
    treat a wide-complex tachycardia of unknown mechanism as VT), so it is urgent and not called
    sinus; a narrow one is supraventricular (atrial flutter with 2:1 block, AVNRT, ...), urgent at
    150/min and faster, where flutter with 2:1 conduction typically runs.
    """
    rate = float(m.heart_rate_bpm or 0.0)
    ev = ev | {"qrs_ms": m.qrs_ms}
    if m.qrs_ms is not None and m.qrs_ms >= _QRS_COMPLETE:
        text = "Wide QRS tachycardia, no P waves identified: ventricular tachycardia not excluded"
        return _f("WCT", text, None, "rhythm", ev, urgent=True)
    text = "Narrow QRS tachycardia, no P waves identified: supraventricular tachycardia or atrial flutter"
    return _f("NCT", text, None, "rhythm", ev, urgent=rate >= _RAPID_NCT)


def _lead(m: EcgMeasurements, name: str) -> LeadMeasurements | None:
    return m.leads.get(name)


def _rbbb_pattern(m: EcgMeasurements) -> dict | None:
    """Return the evidence of an RBBB morphology, or None (part III criteria)."""
    right = [n for n in ("V1", "V2") if (lm := _lead(m, n)) is not None
             and (lm.r_prime or (lm.terminal_qrs_mv or 0.0) > 0.05)]  # fmt: skip
    left = [n for n in ("I", "V6") if (lm := _lead(m, n)) is not None]
    # Terminal S wave wider than R / slurred: the last 40 ms of QRS negative in I and V6.
    slurred = [n for n in left if (m.leads[n].terminal_qrs_mv or 0.0) < 0.0]
    if not right or not left or len(slurred) < len(left):
        return None
    return {"rsr_prime_or_terminal_r": right, "terminal_s": slurred}


def _lbbb_pattern(m: EcgMeasurements) -> dict | None:
    """Return the evidence of an LBBB morphology, or None (part III criteria)."""
    v1 = _lead(m, "V1")
    if v1 is None or v1.r_amplitude_mv is None or v1.qrs_min_mv is None:
        return None
    # Dominant negative V1 (QS or rS): net negative, the negative wave at least twice any r.
    if not (v1.r_amplitude_mv < 0.5 * abs(v1.qrs_min_mv) and (v1.qrs_area_mv_ms or 0.0) < 0):
        return None
    lateral = [n for n in ("V5", "V6") if _lead(m, n) is not None]
    rpt = {n: m.leads[n].r_peak_time_ms for n in lateral}
    # Delayed R-peak time in V5 or V6 (AHA asks both; one suffices here because V5/V6 placement
    # varies and a small V5 R can peak early while V6 shows the delay).
    if not any((t or 0.0) > _LBBB_RPT for t in rpt.values()):
        return None
    q_leads = [n for n in ("I", "V5", "V6") if (lm := _lead(m, n)) is not None and (lm.q_amplitude_mv or 0.0) <= _Q_MV]
    if q_leads:
        return None
    broad = [n for n in ("I", "aVL", "V5", "V6") if (lm := _lead(m, n)) is not None
             and (lm.r_amplitude_mv or 0.0) > abs(lm.s_amplitude_mv or 0.0)]  # fmt: skip
    if not broad:
        return None
    return {"v1_r_mv": v1.r_amplitude_mv, "v1_negative_mv": v1.qrs_min_mv, "r_peak_time_ms": rpt, "broad_r": broad}


def _conduction(m: EcgMeasurements) -> list[Finding]:
    out: list[Finding] = []
    qrs = m.qrs_ms
    if qrs is None or qrs < _QRS_INCOMPLETE:
        return out
    ev: dict = {"qrs_ms": qrs}
    rbbb, lbbb = _rbbb_pattern(m), _lbbb_pattern(m)
    complete = qrs >= _QRS_COMPLETE
    if rbbb is not None:
        code, text, snomed = (("CRBBB", "Complete right bundle branch block", "59118001") if complete else
                              ("IRBBB", "Incomplete right bundle branch block", "713426002"))  # fmt: skip
        out.append(_f(code, text, snomed, "conduction", {**ev, **rbbb}))
    elif lbbb is not None:
        code, text, snomed = (("CLBBB", "Complete left bundle branch block", "164909002") if complete else
                              ("ILBBB", "Incomplete left bundle branch block", "251120003"))  # fmt: skip
        out.append(_f(code, text, snomed, "conduction", {**ev, **lbbb}))
    else:
        out.append(_f("IVCD", "Nonspecific intraventricular conduction delay", "698252002", "conduction", ev))
    return out


def _qt(m: EcgMeasurements, sex: str | None) -> list[Finding]:
    if m.qtc_ms is None:
        return []
    ev = {"qt_ms": m.qt_ms, "qtc_ms": m.qtc_ms, "qtc_formula": m.qtc_formula, "heart_rate_bpm": m.heart_rate_bpm}
    limit = _QTC_LONG_MALE if sex == "male" else _QTC_LONG_FEMALE  # unknown sex: the female limit
    if m.qrs_ms is not None and m.qrs_ms >= _QRS_COMPLETE:
        # Part IV: with QRS ≥ 120 ms the QT includes the prolonged depolarization; it is reported
        # but not interpreted as long QT.
        if m.qtc_ms >= limit:
            return [_f("QT_NOT_INTERPRETED", "QTc not interpreted because QRS ≥ 120 ms", None, "interval",
                       {**ev, "qrs_ms": m.qrs_ms}, abnormal=False)]  # fmt: skip
        return []
    if m.p_wave_present is False and m.heart_rate_bpm is not None and m.heart_rate_bpm > _TACHY:
        # Fast rhythm without identifiable P waves (atrial flutter, SVT): flutter waves overlap the
        # T wave's end, so a long QT is not stated from it.
        return []
    if m.qtc_ms >= limit:
        return [_f("LQT", "Prolonged QT interval", "111975006", "interval", {**ev, "limit_ms": limit, "sex": sex})]
    if m.qtc_ms <= _QTC_SHORT:
        return [_f("SQT", "Short QT interval", "77867006", "interval", ev)]
    return []


def _voltage(m: EcgMeasurements) -> list[Finding]:
    def ptp(name: str) -> float | None:
        lm = _lead(m, name)
        if lm is None or lm.r_amplitude_mv is None:
            return None
        return lm.r_amplitude_mv - min(lm.q_amplitude_mv or 0.0, lm.s_amplitude_mv or 0.0)

    ev: dict = {}
    for group, names, limit in (("limb", _LIMB, _LOW_LIMB), ("precordial", _PRECORDIAL, _LOW_PRECORDIAL)):
        values = {n: ptp(n) for n in names}
        # "All leads" of a group: every lead must be usable, else the criterion is not testable.
        if all(v is not None for v in values.values()) and all(v < limit for v in values.values()):  # type: ignore[operator]
            ev[f"{group}_qrs_ptp_mv"] = {n: round(v, 3) for n, v in values.items() if v is not None}
    if not ev:
        return []
    return [_f("LVOLT", "Low QRS voltage", "251146004", "voltage", ev)]


def _st(m: EcgMeasurements, sex: str | None, age_years: float | None) -> list[Finding]:
    if m.qrs_ms is None or m.qrs_ms >= _QRS_COMPLETE:
        return []  # secondary ST-T changes of wide QRS are not read as ischaemic ST deviation
    st = {n: lm.st_j60_mv for n, lm in m.leads.items() if lm.st_j60_mv is not None}
    # UDMI 2018 sets its elevation limits at the J point; J+60 ms alone over-reads the concave
    # rising ST of early repolarization in healthy young adults. Elevation must hold at both.
    st_elev = {
        n: min(lm.st_j60_mv, lm.st_j_mv)
        for n, lm in m.leads.items()
        if lm.st_j60_mv is not None and lm.st_j_mv is not None
    }

    def elev_limit(lead: str) -> float:
        # UDMI 2018: ≥0.1 mV in all leads except V2–V3, where ≥0.2 mV (men ≥40), ≥0.25 mV (men <40),
        # ≥0.15 mV (women). Unknown sex: the women's limit, the most sensitive for an urgent finding.
        if lead not in ("V2", "V3"):
            return 0.1
        if sex == "male":
            return 0.25 if age_years is not None and age_years < 40 else 0.2
        return 0.15

    out: list[Finding] = []
    elevated: dict[str, list[str]] = {}
    depressed: dict[str, list[str]] = {}
    for group, pairs in _CONTIGUOUS.items():
        for a, b in pairs:
            if a in st_elev and b in st_elev and st_elev[a] >= elev_limit(a) and st_elev[b] >= elev_limit(b):
                elevated.setdefault(group, []).extend(x for x in (a, b) if x not in elevated.get(group, []))
            if a in st and b in st and st[a] <= _ST_DEPRESSION and st[b] <= _ST_DEPRESSION:
                depressed.setdefault(group, []).extend(x for x in (a, b) if x not in depressed.get(group, []))
    if elevated:
        leads = [n for g in elevated.values() for n in g]
        ev = {"st_j_mv": {n: m.leads[n].st_j_mv for n in leads}, "st_j60_mv": {n: st[n] for n in leads}}
        ev["territories"] = elevated
        out.append(_f("STE", "ST elevation (" + ", ".join(elevated) + ")", "164931005", "st-t", ev, urgent=True))
    if depressed:
        ev = {"st_j60_mv": {n: st[n] for g in depressed.values() for n in g}, "territories": depressed}
        out.append(_f("STD", "ST depression (" + ", ".join(depressed) + ")", "429622005", "st-t", ev))
    return out


def measured_findings(m: EcgMeasurements, *, sex: str | None = None, age_years: float | None = None) -> list[Finding]:
    """Return the coded statements that the measurements of one ECG support (rhythm first)."""
    out: list[Finding] = []
    rhythm = _rhythm(m)
    if rhythm is not None:
        out.append(rhythm)
    sinus = rhythm is not None and rhythm.code in SINUS_RHYTHMS
    if m.pac_count and rhythm is not None and rhythm.code not in ("AFIB", "AFLT"):
        out.append(_f("PAC", f"Premature atrial complexes ({m.pac_count})", "284470004", "rhythm",
                      {"pac_count": m.pac_count, "beats": m.beats}))  # fmt: skip
    if m.pvc_count:
        out.append(_f("PVC", f"Premature ventricular complexes ({m.pvc_count})", "427172004", "rhythm",
                      {"pvc_count": m.pvc_count, "beats": m.beats}))  # fmt: skip
    if sinus and m.pr_ms is not None and m.pr_ms > _AVB1_PR:
        out.append(_f("1AVB", "First-degree AV block", "270492004", "conduction", {"pr_ms": m.pr_ms}))
    out.extend(_conduction(m))
    if m.qrs_axis_deg is not None:
        ev = {"qrs_axis_deg": m.qrs_axis_deg}
        if -90.0 <= m.qrs_axis_deg < _LAD:
            out.append(_f("LAD", "Left axis deviation", "39732003", "axis", ev))
        elif _RAD < m.qrs_axis_deg <= 180.0:
            out.append(_f("RAD", "Right axis deviation", "47665007", "axis", ev))
    out.extend(_qt(m, sex))
    out.extend(_voltage(m))
    out.extend(_st(m, sex, age_years))
    return out
