"""Interpret the foundation model's outputs: probabilities, report text, review priority.

numpy only (docs/style.md G14). What is needed to read the outputs (threshold, class names, vocabulary)
comes with the served model (``FoundationServing.from_parameters``) or from the checkpoint for
the in-process backend, so both backends decode identically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inference.clinical.conditioning import MEASURED_SNOMED
from inference.errors import InferenceFailed
from inference.preprocessing import LEADS_12
from inference.results import FOUNDATION_NAME, FoundationResult

# Every output of the served foundation model (classifier and report from one encoder pass), in
# its tuple order (the in-process backend runs the module itself); the client asks Triton only for
# those it reads (the embedding stays on the server).
FOUNDATION_OUTPUTS_ALL = (
    "abnormal_logit__0",
    "superclass_logits__1",
    "statement_logits__2",
    "embedding__3",
    "novelty__4",
    "token_ids__5",
)
FOUNDATION_OUTPUTS = tuple(name for name in FOUNDATION_OUTPUTS_ALL if name != "embedding__3")
# Metaspace pre-tokenization marks word starts with this piece prefix; decoding turns it into spaces.
_WORD_START = "\u2581"
# Equal weights for the three active-learning terms (training/foundation_simulation.py measured them).
PRIORITY_WEIGHTS = {"uncertainty": 1.0, "disagreement": 1.0, "novelty": 1.0}
NO_TEXT = "No report text was generated for this ECG; review it and write the report."


@dataclass(frozen=True)
class FoundationServing:
    """What the client needs to interpret the foundation model's outputs."""

    version_label: str
    threshold: float  # on the abnormal probability, chosen on validation
    superclasses: tuple[str, ...]
    statement_codes: tuple[str, ...]
    vocabulary: tuple[str, ...]  # token pieces indexed by id
    special_ids: frozenset[int]
    # SNOMED CT codes of the model's ``measured`` input, in order; () = it takes none.
    measured_codes: tuple[str, ...] = ()

    @classmethod
    def from_parameters(cls, facts: Mapping[str, str]) -> FoundationServing:
        """Build from one served version's facts (``serving.json``); raise InferenceFailed naming what is missing."""
        keys = (
            "model_version_label",
            "threshold_prob_abnormal",
            "superclasses",
            "statement_codes",
            "vocabulary",
            "special_ids",
        )
        missing = [key for key in keys if not facts.get(key)]
        if missing:
            raise InferenceFailed(
                f"ecg_foundation: serving facts lack {missing}; rebuild with python -m inference.export",
                extra={"missing": missing},
            )
        return cls(
            version_label=facts["model_version_label"],
            threshold=float(facts["threshold_prob_abnormal"]),
            superclasses=tuple(json.loads(facts["superclasses"])),
            statement_codes=tuple(json.loads(facts["statement_codes"])),
            vocabulary=tuple(json.loads(facts["vocabulary"])),
            special_ids=frozenset(int(i) for i in json.loads(facts["special_ids"]).values()),
            measured_codes=tuple(json.loads(facts.get("measured_findings") or "[]")),
        )

    def inputs(self, signal: np.ndarray, lead_mask: np.ndarray, measured: np.ndarray | None) -> dict[str, np.ndarray]:
        """Return the foundation model's request (batch of one) for one ECG's inputs.

        ``measured`` is ``inference.clinical.conditioning.measured_vector`` of the ECG's measured
        findings. Raises InferenceFailed when the served model needs it and it is missing or was
        built for another list of findings (the client's ``MEASURED_SNOMED`` must match).
        """
        arrays = {"signal": signal[None], "lead_mask": lead_mask[None]}
        if not self.measured_codes:
            return arrays

        if self.measured_codes != MEASURED_SNOMED:
            raise InferenceFailed(
                "ecg_foundation: served measured_findings differ from this client's MEASURED_FINDINGS"
            )
        if measured is None or np.shape(measured) != (len(MEASURED_SNOMED),):
            raise InferenceFailed("ecg_foundation: the served model needs the measured-findings vector")
        return arrays | {"measured": np.asarray(measured, dtype=np.float32)[None]}


def decode_report(token_ids: Sequence[int], vocabulary: Sequence[str], special_ids: frozenset[int]) -> str:
    """Return the text of generated ``token_ids`` (special tokens dropped, Metaspace undone).

    Matches ``tokenizers``' Metaspace decoder on these ids (tests/inference check it).
    """
    pieces = [vocabulary[i] for i in token_ids if i not in special_ids and 0 <= i < len(vocabulary)]
    return "".join(pieces).replace(_WORD_START, " ").strip()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))))


def review_priority(probability: float, detector_z: float | None, novelty: float) -> float:
    """Return how much a clinician's label would help, in [0, 1] (higher = look first).

    The weighted mean of the classifier's uncertainty (1 - |2p - 1|), its disagreement with the
    detector (|p - sigmoid(z)|, left out when there is no detector score) and the embedding's
    novelty (from the served model), as in ``training/foundation_active.py``.
    """
    terms = {"uncertainty": 1.0 - abs(2.0 * probability - 1.0), "novelty": float(np.clip(novelty, 0.0, 1.0))}
    if detector_z is not None:
        terms["disagreement"] = abs(probability - float(_sigmoid(np.array(detector_z))))
    total = sum(PRIORITY_WEIGHTS[k] for k in terms)
    return round(sum(PRIORITY_WEIGHTS[k] * v for k, v in terms.items()) / total, 4)


def foundation_result(
    outputs: Mapping[str, np.ndarray],
    lead_mask: np.ndarray,
    *,
    serving: FoundationServing,
    detector_z: float | None,
    server_model_version: str,
    timings_ms: dict[str, float],
) -> FoundationResult:
    """Turn one ECG's raw outputs (batch row 0; ``FOUNDATION_OUTPUTS``) into the stored result.

    Raises InferenceFailed on a non-finite probability. Text that decodes to nothing is replaced
    by a sentence saying so, so a report is never silently empty.
    """
    probability = float(_sigmoid(outputs["abnormal_logit__0"].reshape(-1)[:1])[0])
    if not np.isfinite(probability):
        raise InferenceFailed("ecg_foundation: non-finite abnormal probability")
    superclass = _sigmoid(outputs["superclass_logits__1"].reshape(-1))
    statements = _sigmoid(outputs["statement_logits__2"].reshape(-1))
    token_ids = outputs["token_ids__5"][0]
    text = decode_report(token_ids.reshape(-1).tolist(), serving.vocabulary, serving.special_ids) or NO_TEXT
    novelty = float(outputs["novelty__4"].reshape(-1)[0])
    return FoundationResult(
        model_name=FOUNDATION_NAME,
        model_version=serving.version_label,
        probability_abnormal=round(probability, 4),
        superclass_probabilities={
            name: round(float(p), 4) for name, p in zip(serving.superclasses, superclass, strict=True)
        },
        report_text=text,
        leads_used=tuple(lead for lead, used in zip(LEADS_12, lead_mask, strict=True) if used),
        review_priority=review_priority(probability, detector_z, novelty),
        statement_probabilities={
            code: round(float(p), 4) for code, p in zip(serving.statement_codes, statements, strict=True)
        },
        threshold=serving.threshold,
        server_model_version=server_model_version,
        timings_ms=timings_ms,
    )
