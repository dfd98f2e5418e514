"""The served verdict's evidence score: one calibrated combination of both models and the measurements.

Three sources say whether an ECG is abnormal: the anomaly detector (a z-score against validation
normals), the foundation model (its abnormal probability) and the measured statements (how many
abnormal findings, and whether a sinus rhythm was measured). Flagging on any one of them adds up their
false alarms (the detector alone flags about a third of normal ECGs). A logistic combination fitted on
validation ECGs only (``python -m training.fit_verdict``, PTB-XL fold 9; the model card
``docs/models/verdict.md`` gives the figures) turns them into one probability with one operating
point, and says how much each source contributed, so the review page can show why.

The fitted weights are tied to the model versions they were fitted on: with any other detector or
foundation-model version the combination does not apply (``VerdictCombiner.unusable_for`` says why)
and the verdict falls back to "abnormal when any source flags", saying so in the report.

numpy-free and torch-free: the Django service imports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from inference.clinical.statements import SNOMED_SINUS_FAMILY
from inference.clinical.types import Finding
from inference.results import DetectorResult, FoundationResult

COMBINER_PATH = Path(__file__).resolve().parent / "data" / "verdict_combiner.json"
FEATURES = ("detector_z", "foundation_logit", "measured_major", "measured_minor", "no_sinus_rhythm")
DETECTOR_AND_MEASURED = ("detector_z", "measured_major", "measured_minor", "no_sinus_rhythm")
# Major measured abnormalities make an ECG abnormal whatever the models say (as Minnesota-code "major"
# findings do): a rhythm other than sinus, ectopic beats, complete bundle-branch block, ST deviation,
# a long QT. Minor ones (sinus brady-/tachycardia, first-degree AV block, axis deviation, short QT,
# incomplete or nonspecific conduction delay, low voltage) are common in healthy people and only
# add evidence to the combination.
MAJOR_MEASURED = frozenset(
    {"AFIB", "AFLT", "WCT", "NCT", "EAR", "PVC", "PAC", "CRBBB", "CLBBB", "STE", "STD", "LQT", "RHYTHM_UNCLEAR"}
)
# Bounds keep one extreme input from dominating: a z-score of 40 is no more abnormal than one of 20,
# a foundation probability of 1e-9 no more normal than 3e-4, a fourth abnormal finding adds nothing.
Z_BOUNDS = (-5.0, 20.0)
LOGIT_BOUND = 8.0
MAX_FINDINGS = 3


@dataclass(frozen=True)
class VerdictEvidence:
    """The inputs of the combination for one ECG (``foundation_logit`` None: no foundation result)."""

    detector_z: float
    foundation_logit: float | None
    measured_major: int  # major abnormal measured statements (MAJOR_MEASURED)
    measured_minor: int  # other abnormal measured statements
    no_sinus_rhythm: bool  # no sinus rhythm measured (any other rhythm, or none could be classified)

    def features(self) -> dict[str, float]:
        """Return the feature values by name (foundation_logit left out when there is none)."""
        values = {
            "detector_z": min(max(self.detector_z, Z_BOUNDS[0]), Z_BOUNDS[1]),
            "measured_major": float(min(self.measured_major, MAX_FINDINGS)),
            "measured_minor": float(min(self.measured_minor, MAX_FINDINGS)),
            "no_sinus_rhythm": float(self.no_sinus_rhythm),
        }
        if self.foundation_logit is not None:
            values["foundation_logit"] = min(max(self.foundation_logit, -LOGIT_BOUND), LOGIT_BOUND)
        return values


def evidence_words(probability: float) -> str:
    """Return how a report states the combined probability (a recalibration restates it by this text)."""
    return f"combined evidence {probability:.2f}"


def operating_point_words(threshold: float) -> str:
    """Return how a report states the combined operating point (restated with it)."""
    return f"operating point {threshold:.2f}"


def is_major_measured(finding: Finding) -> bool:
    """Return whether ``finding`` makes the ECG abnormal on its own: a major code, or anything urgent."""
    return finding.abnormal and (finding.code in MAJOR_MEASURED or finding.urgent)


def served_abnormal(*, combined_flagged: bool, evidence: VerdictEvidence) -> bool:
    """Return the served verdict's rule: abnormal when the combined probability reaches its operating
    point, a major measured abnormality is present, or no sinus rhythm was measured.

    The one place the rule is written: the report (``inference.clinical.report``) serves it and
    ``training.fit_verdict`` chooses the operating point under it.
    """
    return combined_flagged or evidence.measured_major > 0 or evidence.no_sinus_rhythm


def verdict_evidence(
    detector: DetectorResult, foundation: FoundationResult | None, measured: Sequence[Finding]
) -> VerdictEvidence:
    """Return the combination's inputs from both models' results and the measured statements."""
    logit = None
    if foundation is not None:
        p = min(max(foundation.probability_abnormal, 1e-6), 1 - 1e-6)
        logit = math.log(p / (1 - p))
    sinus = any(f.category == "rhythm" and f.snomed in SNOMED_SINUS_FAMILY for f in measured)
    abnormal = [f for f in measured if f.abnormal and f.source == "measured"]
    return VerdictEvidence(
        detector_z=float(detector.score),
        foundation_logit=logit,
        measured_major=sum(1 for f in abnormal if is_major_measured(f)),
        measured_minor=sum(1 for f in abnormal if not is_major_measured(f)),
        no_sinus_rhythm=not sinus,
    )


@dataclass(frozen=True)
class CombinedScore:
    """One ECG's combined probability, the operating point and each source's share of the logit."""

    probability: float
    threshold: float
    contributions: dict[str, float]  # feature -> weight x value, in logit units
    combiner_version: str
    sources: tuple[str, ...]  # the features used (the detector-and-measured fallback has no foundation)

    @property
    def flagged(self) -> bool:
        """Return True at or above the operating point."""
        return self.probability >= self.threshold

    def to_json(self) -> dict[str, Any]:
        """Return the stored form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CombinedScore:
        """Rebuild from ``to_json`` output."""
        return cls(
            probability=float(data["probability"]),
            threshold=float(data["threshold"]),
            contributions={str(k): float(v) for k, v in data["contributions"].items()},
            combiner_version=str(data["combiner_version"]),
            sources=tuple(data["sources"]),
        )


@dataclass(frozen=True)
class LogisticHead:
    """``sigmoid(intercept + sum(weight * feature))`` over named features, with its operating point."""

    intercept: float
    weights: dict[str, float]
    threshold: float

    def probability(self, features: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """Return the probability and each feature's contribution (logit units)."""
        contributions = {name: weight * features[name] for name, weight in self.weights.items()}
        logit = self.intercept + sum(contributions.values())
        return 1.0 / (1.0 + math.exp(-max(min(logit, 40.0), -40.0))), contributions


@dataclass(frozen=True)
class VerdictCombiner:
    """The fitted combination: one head with the foundation model, one for the detector alone."""

    version: str
    detector_version: str
    foundation_version: str
    full: LogisticHead
    detector_and_measured: LogisticHead
    fitted_on: str

    def unusable_for(self, detector: DetectorResult, foundation: FoundationResult | None) -> str | None:
        """Return why the fitted weights do not apply to these results (None when they do)."""
        if detector.model_version != self.detector_version:
            return f"fitted for detector {self.detector_version}, served {detector.model_version}"
        if foundation is not None and foundation.model_version != self.foundation_version:
            return f"fitted for foundation model {self.foundation_version}, served {foundation.model_version}"
        return None

    def score(self, evidence: VerdictEvidence) -> CombinedScore:
        """Return the combined probability of an abnormal ECG and the operating point."""
        features = evidence.features()
        head = self.full if "foundation_logit" in features else self.detector_and_measured
        probability, contributions = head.probability(features)
        return CombinedScore(
            probability=round(probability, 4),
            threshold=head.threshold,
            contributions={k: round(v, 3) for k, v in contributions.items()},
            combiner_version=self.version,
            sources=tuple(head.weights),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the stored form (what ``training.fit_verdict`` writes)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerdictCombiner:
        """Rebuild from ``to_json`` output; raise ValueError naming a missing or unknown feature."""

        def head(raw: Mapping[str, Any], allowed: Sequence[str]) -> LogisticHead:
            unknown = set(raw["weights"]) - set(allowed)
            if unknown:
                raise ValueError(f"verdict combiner: unknown features {sorted(unknown)}")
            return LogisticHead(
                float(raw["intercept"]), {k: float(v) for k, v in raw["weights"].items()}, float(raw["threshold"])
            )

        return cls(
            version=str(data["version"]),
            detector_version=str(data["detector_version"]),
            foundation_version=str(data["foundation_version"]),
            full=head(data["full"], FEATURES),
            detector_and_measured=head(data["detector_and_measured"], DETECTOR_AND_MEASURED),
            fitted_on=str(data.get("fitted_on", "")),
        )


@lru_cache(maxsize=4)
def load_combiner(path: Path = COMBINER_PATH) -> VerdictCombiner | None:
    """Return the shipped combination, or None when none has been fitted (the any-source fallback)."""
    if not path.is_file():
        return None
    return VerdictCombiner.from_json(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=4)
def load_combiners(primary: Path = COMBINER_PATH) -> tuple[VerdictCombiner, ...]:
    """Return the serving combination first, then those fitted for candidate versions beside it.

    A candidate model version (run in shadow, issue 19) gets a combined verdict only when a
    combination was fitted for its versions (``training.fit_verdict --out
    verdict_combiner-<name>.json``); each file names the versions it applies to.
    """
    first = load_combiner(primary)
    others = (load_combiner(path) for path in sorted(primary.parent.glob(f"{primary.stem}-*.json")) if path != primary)
    return tuple(c for c in (first, *others) if c is not None)


def combiner_for(
    combiners: Sequence[VerdictCombiner], detector: DetectorResult, foundation: FoundationResult | None
) -> tuple[VerdictCombiner | None, str]:
    """Return the combination fitted for these results' model versions, or None and why none applies."""
    for combiner in combiners:
        if combiner.unusable_for(detector, foundation) is None:
            return combiner, ""
    return None, (combiners[0].unusable_for(detector, foundation) or "") if combiners else ""
