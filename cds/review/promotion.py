"""Gated promotion (issue 19): a candidate model version is promoted only when its pre-registered criteria pass.

Criteria are stored with the candidate when it is registered, before its results on live traffic
are seen, and cannot be changed afterwards (a new set needs a new version). ``promote`` computes
the candidate's and the serving version's figures on the same signed verdicts (``quality``), checks
each criterion, and records the decision with every figure: promoted or refused, both audited
(django-auditlog on ``PromotionDecision`` and ``ModelCandidate``).

Promotion here is the gate and its record; switching what Triton serves is the deployment's step
(``TRITON_MODEL_VERSIONS``), which should run only after ``promote_model`` exits 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from cds.core.exceptions import ApplicationError
from cds.review.models import ModelCandidate, PromotionDecision
from cds.review.quality import FIGURES, ServedRow, group_figures, served_rows, shadow_model_name
from inference.results import INTERPRETATION_NAME

BOUNDS = ("value", "ci_low", "ci_high")


class CandidateError(ApplicationError):
    """The candidate or its criteria are not acceptable (unknown, already registered, malformed)."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one promotion attempt, with what it was decided on."""

    promoted: bool
    record: PromotionDecision
    reasons: list[str]


def _validate_criteria(criteria: Any) -> list[dict[str, Any]]:
    if not isinstance(criteria, list) or not criteria:
        raise CandidateError("criteria must be a non-empty list", {"criteria": criteria})
    for index, criterion in enumerate(criteria):
        where = f"criteria[{index}]"
        if not isinstance(criterion, dict) or criterion.get("figure") not in FIGURES:
            raise CandidateError(f"{where}.figure must be one of {', '.join(FIGURES)}", {"criterion": criterion})
        if criterion.get("bound", "ci_low") not in BOUNDS:
            raise CandidateError(f"{where}.bound must be one of {', '.join(BOUNDS)}", {"criterion": criterion})
        compare = criterion.get("compare", "serving")
        if compare != "serving" and not isinstance(compare, int | float):
            raise CandidateError(f'{where}.compare must be "serving" or a number', {"criterion": criterion})
        if not isinstance(criterion.get("margin", 0), int | float):
            raise CandidateError(f"{where}.margin must be a number", {"criterion": criterion})
    return criteria


def register_candidate(
    *,
    model_name: str,
    model_version: str,
    criteria: Any,
    min_signed: int,
    detector_version: str = "",
    foundation_version: str = "",
) -> ModelCandidate:
    """Register a candidate with its acceptance criteria; refuse to change a registered candidate's criteria.

    With a Triton ``detector_version`` and/or ``foundation_version`` (numbers; the other model at
    its serving version) the candidate starts in shadow: from the next analysed ECG on, it runs on
    every ECG (``cds.pipeline.shadow``). Only the served verdict has candidates that run.
    """
    criteria = _validate_criteria(criteria)
    for option, version in (("detector_version", detector_version), ("foundation_version", foundation_version)):
        if version and not version.isdigit():
            raise CandidateError(f"{option} must be a Triton version number, got {version!r}", {option: version})
    runs = bool(detector_version or foundation_version)
    if runs and model_name != INTERPRETATION_NAME:
        raise CandidateError(
            f"only {INTERPRETATION_NAME} candidates run in shadow, not {model_name}", {"model_name": model_name}
        )
    if ModelCandidate.objects.filter(model_name=model_name, model_version=model_version).exists():
        raise CandidateError(
            f"{model_name} {model_version} is already registered: pre-registered criteria cannot be changed",
            {"model_version": model_version},
        )
    return ModelCandidate.objects.create(
        model_name=model_name,
        model_version=model_version,
        criteria=criteria,
        min_signed=min_signed,
        detector_version=detector_version,
        foundation_version=foundation_version,
        status=ModelCandidate.Status.SHADOW if runs else ModelCandidate.Status.REGISTERED,
    )


def retire_candidate(*, model_name: str, model_version: str) -> ModelCandidate:
    """Retire a candidate: it stops running in shadow (its stored verdicts stay for the record)."""
    candidate = ModelCandidate.objects.filter(model_name=model_name, model_version=model_version).first()
    if candidate is None:
        raise CandidateError(f"{model_name} {model_version} is not a registered candidate", {})
    candidate.status = ModelCandidate.Status.RETIRED
    candidate.save(update_fields=["status", "updated_at"])
    return candidate


def serving_version(*, model_name: str, exclude: str) -> str | None:
    """Return the version serving ``model_name``: the last promoted one, else the one with most verdicts."""
    promoted = (
        ModelCandidate.objects.filter(model_name=model_name, status=ModelCandidate.Status.PROMOTED)
        .exclude(model_version=exclude)
        .order_by("-updated_at")
        .first()
    )
    if promoted is not None:
        return promoted.model_version
    counts = Counter(r.model_version for r in served_rows(model_name=model_name) if r.model_version != exclude)
    return counts.most_common(1)[0][0] if counts else None


def _check(criterion: dict[str, Any], candidate: dict[str, Any], serving: dict[str, Any] | None) -> dict[str, Any]:
    figure, bound = criterion["figure"], criterion.get("bound", "ci_low")
    compare, margin = criterion.get("compare", "serving"), float(criterion.get("margin", 0))
    value = candidate[figure][bound]
    if compare == "serving":
        reference = serving[figure]["value"] if serving is not None else None
        target = reference - margin if reference is not None else None
    else:
        target = float(compare)
    passed = value is not None and target is not None and value >= target
    return {**criterion, "candidate": value, "target": target, "passed": passed}


def promote(*, model_name: str, model_version: str, decided_by: str = "") -> Decision:
    """Check the candidate's pre-registered criteria and promote it or refuse; record either way."""
    candidate = ModelCandidate.objects.filter(model_name=model_name, model_version=model_version).first()
    if candidate is None:
        raise CandidateError(
            f"{model_name} {model_version} is not a registered candidate (register_model_candidate first)",
            {"model_version": model_version},
        )
    serving = serving_version(model_name=model_name, exclude=model_version)
    candidate_rows = _candidate_rows(model_name, model_version)
    serving_figures = None
    if serving:
        # Paired: the serving version's figures on the very ECGs the candidate saw (same truth).
        jobs = {row.job_id for row in candidate_rows}
        serving_rows = [r for r in served_rows(model_name=model_name, model_version=serving) if r.job_id in jobs]
        serving_figures = group_figures(serving_rows)
    candidate_figures = group_figures(candidate_rows)
    checks = [_check(criterion, candidate_figures, serving_figures) for criterion in candidate.criteria]
    reasons = [
        f"{c['figure']} {c.get('bound', 'ci_low')} = {_fmt(c['candidate'])} below the target {_fmt(c['target'])}"
        for c in checks
        if not c["passed"]
    ]
    if candidate_figures["n_signed"] < candidate.min_signed:
        reasons.insert(
            0, f"{candidate_figures['n_signed']} signed verdicts, fewer than the {candidate.min_signed} required"
        )
    promoted = not reasons
    with transaction.atomic():
        record = PromotionDecision.objects.create(
            candidate=candidate,
            serving_version=serving or "",
            promoted=promoted,
            figures={
                "checks": checks,
                "reasons": reasons,
                "candidate": _headline(candidate_figures),
                "serving": _headline(serving_figures) if serving_figures else None,
            },
            decided_by=decided_by,
        )
        if promoted:
            ModelCandidate.objects.filter(model_name=model_name, status=ModelCandidate.Status.PROMOTED).update(
                status=ModelCandidate.Status.RETIRED
            )
            candidate.status = ModelCandidate.Status.PROMOTED
            candidate.save(update_fields=["status", "updated_at"])
    return Decision(promoted=promoted, record=record, reasons=reasons)


def _candidate_rows(model_name: str, model_version: str) -> list[ServedRow]:
    """Return the candidate's verdicts: its shadow rows, else rows from when it served (a rollback)."""
    rows = served_rows(model_name=shadow_model_name(model_name), model_version=model_version)
    return rows or served_rows(model_name=model_name, model_version=model_version)


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    return {key: figures[key] for key in ("n", "n_signed", "n_signed_abnormal", *FIGURES)}


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
