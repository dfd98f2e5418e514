"""What one analysis produces: both models' results, the measurements and the grounded report.

numpy only: the Django service imports this type, and it never imports torch (docs/style.md G14).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.clinical.types import ClinicalReport, EcgMeasurements
from inference.results import DetectorResult, FoundationResult


@dataclass(frozen=True)
class AnalysisResult:
    """Both models' results for one ECG, the measurements and the grounded report built from them."""

    detector: DetectorResult
    foundation: FoundationResult | None = None
    measurements: EcgMeasurements | None = None
    clinical: ClinicalReport | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
