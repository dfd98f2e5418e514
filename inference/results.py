"""What the models produce for one ECG, independent of where they ran (Triton or in-process).

The whole analysis (these plus the clinical interpretation built from them) is
``inference.analysis_result.AnalysisResult``; ``inference.clinical`` reads these types, so this
module imports nothing from it.

numpy only: the Django service imports these types, and it never imports torch (docs/style.md G14).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DETECTOR_NAME = "ecg-anomaly-detector"  # model_name of every detector Prediction
FOUNDATION_NAME = "ecg-foundation"  # model_name of every foundation-model Prediction
INTERPRETATION_NAME = "ecg-interpretation"  # model_name of every rule-based interpretation Prediction


@dataclass(frozen=True)
class AnomalyInterval:
    """A localized finding: one lead, a time span in ms from the start of the recording.

    ``finding`` names what explains the span (a measured finding code such as ``PVC`` or
    ``CRBBB``, ``model only`` for the detector's map alone, empty in older results); intervals
    with the same ``box`` are one box drawn over several leads (``inference.localization``).
    """

    lead: str
    start_ms: float
    end_ms: float
    score: float
    finding: str = ""
    box: int = 0


@dataclass(frozen=True)
class DetectorResult:
    """The anomaly detector's output for one ECG.

    ``anomaly_map`` is ``(leads, samples)`` at ``map_rate_hz``, in ``leads`` order; ``score`` is the
    raw restoration-based score (higher = more abnormal) and ``threshold`` the operating point it is
    compared with; ``quality`` names input problems (flat lead, NaN stretch, no beats found...).
    """

    model_name: str
    model_version: str
    score: float
    threshold: float
    per_lead_scores: dict[str, float]
    anomaly_map: np.ndarray
    map_rate_hz: float
    leads: tuple[str, ...]
    intervals: tuple[AnomalyInterval, ...] = ()
    quality: tuple[str, ...] = ()
    server_model_version: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """Return True when the score is at or above the operating point."""
        return self.score >= self.threshold


@dataclass(frozen=True)
class FoundationResult:
    """The foundation model's output for one ECG: probabilities, report text, re-annotation value."""

    model_name: str
    model_version: str
    probability_abnormal: float
    superclass_probabilities: dict[str, float]
    report_text: str
    leads_used: tuple[str, ...]
    review_priority: float | None = None  # re-annotation value (active learning), not clinical urgency
    statement_probabilities: dict[str, float] = field(default_factory=dict)  # SCP code -> probability
    threshold: float | None = None  # operating point on probability_abnormal (validation-chosen)
    server_model_version: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
