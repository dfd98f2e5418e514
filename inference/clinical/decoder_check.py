"""Check the foundation model's generated report against the measurements.

The decoder writes PTB-XL statements as sentences ("sinus rhythm. normal ecg."). Every sentence is
parsed back to its SCP code; a statement that the measurements contradict is removed (and listed
with the reason), so the generated text can never state, say, sinus rhythm on an ECG whose RR
intervals are irregular with no P waves, or a complete bundle branch block with a narrow QRS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inference.clinical.scp import CODE_BY_PHRASE
from inference.clinical.statements import NON_SINUS_RHYTHMS, SNOMED_SINUS_FAMILY
from inference.clinical.types import EcgMeasurements, Finding

SNOMED_AF_FLUTTER = frozenset({"164889003", "164890007"})


@dataclass(frozen=True)
class DecoderSentence:
    """One generated sentence, the SCP code it names (None if unknown) and why it was removed."""

    text: str
    code: str | None
    removed_because: str = ""


@dataclass(frozen=True)
class Evidence:
    """What the checker compares a generated statement with."""

    measurements: EcgMeasurements
    measured: Sequence[Finding]
    abnormal: bool  # the one verdict is abnormal (or not normal for any reason)

    @property
    def rhythm_snomed(self) -> set[str]:
        return {f.snomed for f in self.measured if f.category == "rhythm" and f.snomed}


def _value(m: EcgMeasurements, name: str) -> float | None:
    value = getattr(m, name)
    return None if value is None else float(value)


def _sinus_claim(e: Evidence) -> str:
    m = e.measurements
    if e.rhythm_snomed & SNOMED_AF_FLUTTER:
        return "measured rhythm is atrial fibrillation/flutter"
    other = [f.text for f in e.measured if f.code in NON_SINUS_RHYTHMS]
    if other:
        return f"measured rhythm: {other[0].lower()}"
    if m.p_wave_present is False:
        return "no P waves precede the QRS complexes"
    return ""


def _af_claim(e: Evidence) -> str:
    if e.rhythm_snomed & SNOMED_SINUS_FAMILY:
        return "P waves precede regular QRS complexes (measured sinus rhythm)"
    return ""


def _rate_claim(low: float | None, high: float | None) -> Callable[[Evidence], str]:
    def check(e: Evidence) -> str:
        if e.rhythm_snomed & SNOMED_AF_FLUTTER:
            return "measured rhythm is atrial fibrillation/flutter, not sinus"
        rate = _value(e.measurements, "heart_rate_bpm")
        if rate is None:
            return ""
        too_slow = low is not None and rate <= low
        too_fast = high is not None and rate >= high
        return f"heart rate {rate:.0f}/min" if too_slow or too_fast else ""

    return check


def _min_claim(name: str, minimum: float, unit: str, label: str) -> Callable[[Evidence], str]:
    """Contradicted when the measured value is below ``minimum``."""

    def check(e: Evidence) -> str:
        value = _value(e.measurements, name)
        return f"{label} {value:.0f} {unit}" if value is not None and value < minimum else ""

    return check


def _range_claim(name: str, low: float, high: float, unit: str, label: str) -> Callable[[Evidence], str]:
    """Contradicted when the measured value lies outside [low, high)."""

    def check(e: Evidence) -> str:
        value = _value(e.measurements, name)
        return f"{label} {value:.0f} {unit}" if value is not None and not low <= value < high else ""

    return check


def _normal_claim(e: Evidence) -> str:
    return "the ECG is flagged abnormal" if e.abnormal else ""


def _count_claim(name: str, label: str) -> Callable[[Evidence], str]:
    def check(e: Evidence) -> str:
        count = getattr(e.measurements, name)
        return f"no {label} found in {e.measurements.beats} beats" if count == 0 and e.measurements.beats else ""

    return check


def _axis_claim(low: float, high: float) -> Callable[[Evidence], str]:
    def check(e: Evidence) -> str:
        axis = _value(e.measurements, "qrs_axis_deg")
        return f"QRS axis {axis:.0f}°" if axis is not None and not low <= axis <= high else ""

    return check


# SCP code -> check returning why the measurements contradict it ("" = not contradicted). Only
# statements a measurement can refute are here; morphology (infarction, hypertrophy, ischaemia) is
# the model's to state and the report marks it as such. Limits are the AHA/ACC/HRS criteria with a
# tolerance of about one measurement error (±10 ms), so a borderline value does not remove a claim.
CONTRADICTIONS: dict[str, Callable[[Evidence], str]] = {
    "NORM": _normal_claim,
    "SR": _sinus_claim,
    "SARRH": _sinus_claim,
    "STACH": _rate_claim(low=100.0, high=None),
    "SBRAD": _rate_claim(low=None, high=60.0),
    "AFIB": _af_claim,
    "AFLT": _af_claim,
    "1AVB": _min_claim("pr_ms", 190.0, "ms", "PR"),
    "LPR": _min_claim("pr_ms", 190.0, "ms", "PR"),
    "CRBBB": _min_claim("qrs_ms", 110.0, "ms", "QRS"),
    "CLBBB": _min_claim("qrs_ms", 110.0, "ms", "QRS"),
    "IRBBB": _range_claim("qrs_ms", 90.0, 130.0, "ms", "QRS"),
    "ILBBB": _range_claim("qrs_ms", 90.0, 130.0, "ms", "QRS"),
    "IVCD": _min_claim("qrs_ms", 100.0, "ms", "QRS"),
    "LNGQT": _min_claim("qtc_ms", 430.0, "ms", "QTc"),
    "LAFB": _axis_claim(-180.0, -30.0),
    "LPFB": _axis_claim(90.0, 180.0),
    "PVC": _count_claim("pvc_count", "premature ventricular complex"),
    "PAC": _count_claim("pac_count", "premature atrial complex"),
}


def decoder_sentences(text: str) -> list[str]:
    """Split generated text into its sentences (lower-case, no trailing full stop)."""
    parts = [part.strip().rstrip(".").strip() for part in text.replace("\n", " ").split(". ")]
    return [part for part in parts if part]


def decoder_text_check(text: str, evidence: Evidence) -> list[DecoderSentence]:
    """Return each generated sentence with its SCP code and, if contradicted, the reason.

    Unknown sentences (not one of the 71 statements) are kept with code None; the report builder
    leaves them out, since nothing grounds them.
    """
    checked = []
    for sentence in decoder_sentences(text):
        code = CODE_BY_PHRASE.get(sentence.lower())
        reason = CONTRADICTIONS[code](evidence) if code is not None and code in CONTRADICTIONS else ""
        checked.append(DecoderSentence(text=sentence, code=code, removed_because=reason))
    return checked
