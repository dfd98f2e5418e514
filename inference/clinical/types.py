"""What the clinical analysis of one ECG produces (numpy-free plain data; stored as JSON).

The measurement names below are the keys used everywhere (stored JSON, FHIR Observations, the
review page, ``training.evaluate_report``): rename one only together with all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# How QTc is corrected: Fridericia (QT / RR^(1/3)) over-corrects less than Bazett at the high and
# low rates where QTc matters most (AHA/ACC/HRS 2009 recommendations, part IV).
QTC_FORMULA = "Fridericia"


@dataclass(frozen=True)
class LeadMeasurements:
    """Amplitudes and timings of one lead's representative (median) beat.

    Amplitudes in mV against the PR-segment baseline; times in ms from the global QRS onset.
    None where the lead is unusable or the wave is absent.
    """

    p_amplitude_mv: float | None = None  # signed peak of the P wave (largest deflection)
    q_amplitude_mv: float | None = None  # initial negative deflection before the first R (0 if none)
    q_duration_ms: float | None = None
    r_amplitude_mv: float | None = None  # largest positive QRS deflection
    s_amplitude_mv: float | None = None  # largest negative QRS deflection after R (<= 0)
    r_prime: bool | None = None  # a second positive QRS deflection after an S (rsR' pattern)
    r_peak_time_ms: float | None = None  # QRS onset to the R peak (intrinsicoid deflection)
    terminal_qrs_mv: float | None = None  # mean of the last 40 ms of the QRS (terminal force)
    qrs_area_mv_ms: float | None = None  # net QRS area
    qrs_min_mv: float | None = None  # most negative QRS deflection (QS depth when there is no R)
    st_j60_mv: float | None = None  # ST deviation at J point + 60 ms
    st_j_mv: float | None = None  # ST deviation at the J point (QRS offset), where UDMI sets its limits
    t_amplitude_mv: float | None = None  # signed peak of the T wave


@dataclass(frozen=True)
class EcgMeasurements:
    """Global measurements of one ECG, as computerized ECG programs (GE 12SL, Glasgow) report them.

    Global intervals come from the representative beats of every usable lead together (earliest
    onset, latest offset over leads), not from lead II alone. ``not_measured`` names each
    measurement left None and why; nothing is ever invented.
    """

    heart_rate_bpm: float | None = None  # ventricular rate from all RR intervals
    rr_mean_ms: float | None = None
    rr_irregularity: float | None = None  # median |successive RR difference| / median RR
    rr_range_ms: float | None = None  # longest minus shortest RR between dominant beats
    rhythm_regular: bool | None = None
    p_wave_present: bool | None = None  # a P wave precedes most QRS complexes
    p_wave_fraction: float | None = None  # share of beats whose pre-QRS segment matches the median P
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_ms: float | None = None  # corrected with QTC_FORMULA
    qtc_formula: str = QTC_FORMULA
    p_axis_deg: float | None = None  # frontal plane, -180..180
    qrs_axis_deg: float | None = None
    t_axis_deg: float | None = None
    beats: int = 0  # QRS complexes detected
    pvc_count: int | None = None  # premature wide or differently shaped QRS
    pac_count: int | None = None  # premature narrow QRS of the dominant shape
    atrial_rate_bpm: float | None = None  # dominant atrial frequency × 60 after QRS cancellation
    atrial_organization: float | None = None  # share of 3–12 Hz atrial power at the peak + harmonic
    atrial_amplitude_mv: float | None = None  # peak-to-peak amplitude of the dominant atrial line
    pacing_spikes: int = 0  # narrow high-slew spikes synchronous across leads
    duration_s: float = 0.0
    leads: dict[str, LeadMeasurements] = field(default_factory=dict)  # usable leads only
    unusable_leads: dict[str, str] = field(default_factory=dict)  # lead -> why (missing, flat, noisy)
    not_measured: dict[str, str] = field(default_factory=dict)  # measurement name -> why

    def to_json(self) -> dict[str, Any]:
        """Return the stored form (plain JSON types)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EcgMeasurements:
        """Rebuild from ``to_json`` output (unknown keys ignored, so older rows still load)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["leads"] = {lead: LeadMeasurements(**m) for lead, m in (data.get("leads") or {}).items()}
        return cls(**values)


@dataclass(frozen=True)
class Finding:
    """One coded statement about the ECG, with the evidence that triggered it.

    ``code`` is our stable key (PTB-XL SCP style, e.g. ``AFIB``, ``CRBBB``, ``1AVB``); ``snomed`` the
    SNOMED CT concept id; ``text`` the AHA/ACC/HRS standard statement wording; ``source`` says who
    asserts it: ``measured`` (rules on measurements), ``foundation-model``, ``detector``,
    ``intended-use`` or ``technical``.
    """

    code: str
    text: str
    snomed: str | None
    category: str  # rhythm | conduction | axis | interval | voltage | st-t | morphology | technical | intended-use
    source: str
    abnormal: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    urgent: bool = False  # the finding alone makes the ECG urgent (AF with rapid rate, ST elevation)

    def to_json(self) -> dict[str, Any]:
        """Return the stored form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        """Rebuild from ``to_json`` output."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class Verdict:
    """The one verdict shown everywhere (score Observation, report, Task, card, worklist, review)."""

    NORMAL = "normal"
    ABNORMAL = "abnormal"
    OUTSIDE_INTENDED_USE = "outside-intended-use"  # paced, under 18: measurements only, no AI verdict
    TECHNICAL_PROBLEM = "technical-problem"  # electrode reversal, unreadable: repeat the recording


@dataclass(frozen=True)
class ClinicalReport:
    """The grounded draft report of one ECG and the single verdict behind it."""

    verdict: str  # a Verdict value
    urgency: str  # "urgent" | "routine" (from the findings, not the re-annotation value)
    findings: tuple[Finding, ...]
    text: str  # what the clinician reads and the EHR receives as DiagnosticReport.conclusion
    disagreements: tuple[str, ...] = ()  # where the evidence disagrees, in words
    decoder_text: str = ""  # the foundation model's generated text, as generated
    decoder_removed: tuple[str, ...] = ()  # decoder statements contradicted by measurements
    # The combined evidence behind the verdict (inference.clinical.combined.CombinedScore.to_json()):
    # probability, operating point, each source's contribution; None without a fitted combination.
    combined: dict[str, Any] | None = None

    @property
    def flagged(self) -> bool:
        """Return True when a clinician must look: anything but a normal verdict."""
        return self.verdict != Verdict.NORMAL

    def to_json(self) -> dict[str, Any]:
        """Return the stored form."""
        data = asdict(self)
        data["findings"] = [f.to_json() for f in self.findings]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClinicalReport:
        """Rebuild from ``to_json`` output."""
        return cls(
            verdict=data["verdict"],
            urgency=data.get("urgency", "routine"),
            findings=tuple(Finding.from_json(f) for f in data.get("findings") or []),
            text=data.get("text", ""),
            disagreements=tuple(data.get("disagreements") or ()),
            decoder_text=data.get("decoder_text", ""),
            decoder_removed=tuple(data.get("decoder_removed") or ()),
            combined=data.get("combined"),
        )


# Version of the rule-based interpretation (measurements, findings, grounded report) recorded with
# every interpretation Prediction: bump it whenever a rule, threshold or statement wording changes.
INTERPRETATION_VERSION = "measure-1.1"
