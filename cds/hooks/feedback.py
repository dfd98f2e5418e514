"""CDS Hooks 2.0 feedback (https://cds-hooks.hl7.org/2.0/#feedback): what clinicians did with our cards.

Cards carry a uuid derived from the detector prediction they were made from; each served card is
recorded (``IssuedCard``) with the organisation it was served to, so feedback resolves its card by
lookup and a client of another organisation cannot reach it (it is an unknown card to them).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from cds.analysis.models import Prediction
from cds.core.exceptions import ApplicationError
from cds.review.models import CardFeedback, IssuedCard

OVERRIDE_REASON_SYSTEM = "urn:ecg-cds:CodeSystem:card-override-reason"
# The reasons a clinician may pick when dismissing a card; the quality team acts on each differently
# (docs/quality.md, "CDS Hooks feedback").
OVERRIDE_REASONS = [
    {"system": OVERRIDE_REASON_SYSTEM, "code": "finding-absent", "display": "Finding not present on the tracing"},
    {"system": OVERRIDE_REASON_SYSTEM, "code": "poor-quality", "display": "Artefact / poor signal quality"},
    {"system": OVERRIDE_REASON_SYSTEM, "code": "already-known", "display": "Already known"},
    {"system": OVERRIDE_REASON_SYSTEM, "code": "not-relevant", "display": "Not clinically relevant now"},
]
_REASONS = {(r["system"], r["code"]): r["display"] for r in OVERRIDE_REASONS}
MAX_ITEMS = 100  # one request; an EHR batches a session's feedback, never thousands of cards
MAX_COMMENT = 2000


class FeedbackInvalid(ApplicationError):
    """Raise for a feedback body that breaks the CDS Hooks shape (400); ``extra.field`` names the element."""


class FeedbackUnknownCard(ApplicationError):
    """Raise when a card uuid is not one we served to the caller's organisation (404)."""

    http_status = 404


def card_uuid(service_id: str, prediction_pk: int) -> uuid.UUID:
    """Return the uuid of the card made from ``prediction_pk`` (stable: the same card every time it is served)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{service_id}/{prediction_pk}")


def cards_issued_record(*, service_id: str, predictions: list[Prediction], organization_id: int) -> None:
    """Record that cards for ``predictions`` were served to ``organization_id`` (once per card)."""
    IssuedCard.objects.bulk_create(
        [
            IssuedCard(uuid=card_uuid(service_id, p.pk), prediction_id=p.pk, organization_id=organization_id)
            for p in predictions
        ],
        ignore_conflicts=True,  # served before: the mapping is already there
    )


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback entry."""

    card: uuid.UUID
    outcome: str
    outcome_at: datetime
    reason: dict[str, str] = field(default_factory=dict)
    comment: str = ""
    accepted_suggestions: list[str] = field(default_factory=list)


def _invalid(field_name: str, message: str) -> FeedbackInvalid:
    return FeedbackInvalid(f"{field_name}: {message}", extra={"field": field_name})


def _item_parse(index: int, raw: Any) -> FeedbackItem:
    where = f"feedback[{index}]"
    if not isinstance(raw, dict):
        raise _invalid(where, "must be an object")
    try:
        card = uuid.UUID(str(raw.get("card", "")).removeprefix("urn:uuid:"))
    except ValueError:
        raise _invalid(f"{where}.card", "must be the uuid of a card we returned") from None
    outcome = raw.get("outcome")
    if outcome not in CardFeedback.Outcome.values:
        raise _invalid(f"{where}.outcome", "must be 'accepted' or 'overridden'")
    stamp = raw.get("outcomeTimestamp")
    outcome_at = parse_datetime(stamp) if isinstance(stamp, str) else None
    if outcome_at is None or outcome_at.tzinfo is None:
        raise _invalid(f"{where}.outcomeTimestamp", "must be an ISO 8601 date-time with a UTC offset")
    suggestions = raw.get("acceptedSuggestions", [])
    if not isinstance(suggestions, list) or not all(
        isinstance(s, dict) and isinstance(s.get("id"), str) for s in suggestions
    ):
        raise _invalid(f"{where}.acceptedSuggestions", "must be a list of objects with a string id")
    reason: dict[str, str] = {}
    comment = ""
    override = raw.get("overrideReason")
    if override is not None:
        if outcome != CardFeedback.Outcome.OVERRIDDEN:
            raise _invalid(f"{where}.overrideReason", "is only allowed with outcome 'overridden'")
        if not isinstance(override, dict):
            raise _invalid(f"{where}.overrideReason", "must be an object")
        comment = override.get("userComment", "")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            raise _invalid(f"{where}.overrideReason.userComment", f"must be a string of at most {MAX_COMMENT}")
        coding = override.get("reason")
        if coding is not None:
            key = (str(coding.get("system")), str(coding.get("code"))) if isinstance(coding, dict) else None
            if key is None or key not in _REASONS:
                offered = ", ".join(r["code"] for r in OVERRIDE_REASONS)
                raise _invalid(
                    f"{where}.overrideReason.reason",
                    f"must be one of the card's overrideReasons ({OVERRIDE_REASON_SYSTEM}: {offered})",
                )
            reason = {"system": key[0], "code": key[1], "display": _REASONS[key]}
    return FeedbackItem(
        card=card,
        outcome=outcome,
        outcome_at=outcome_at,
        reason=reason,
        comment=comment,
        accepted_suggestions=[s["id"] for s in suggestions],
    )


def feedback_parse(body: Any) -> list[FeedbackItem]:
    """Return the validated items of a feedback request body; raise FeedbackInvalid naming the first bad element."""
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise _invalid("feedback", "the body must be an object with a non-empty 'feedback' array")
    if len(body["feedback"]) > MAX_ITEMS:
        raise _invalid("feedback", f"at most {MAX_ITEMS} items per request")
    return [_item_parse(index, raw) for index, raw in enumerate(body["feedback"])]


def feedback_record(*, items: list[FeedbackItem], organization_id: int, client_id: str) -> int:
    """Store the feedback items of one request, all or none; return how many were new.

    Every card must be one served to ``organization_id``: another organisation's card is unknown
    (FeedbackUnknownCard, nothing stored). A repeat of (card, outcomeTimestamp, client) is a no-op.
    """
    cards = IssuedCard.objects.filter(uuid__in={item.card for item in items}, organization_id=organization_id)
    known = {card.uuid: card for card in cards}
    for index, item in enumerate(items):
        if item.card not in known:
            raise FeedbackUnknownCard(
                f"feedback[{index}].card: no card {item.card} was returned to this organisation",
                extra={"field": f"feedback[{index}].card"},
            )
    created = 0
    with transaction.atomic():
        for item in items:
            # One save per row (not bulk_create) so django-auditlog records each write.
            _, new = CardFeedback.objects.get_or_create(
                card=known[item.card],
                outcome_at=item.outcome_at,
                client_id=client_id,
                defaults={
                    "organization_id": organization_id,
                    "outcome": item.outcome,
                    "reason_system": item.reason.get("system", ""),
                    "reason_code": item.reason.get("code", ""),
                    "reason_display": item.reason.get("display", ""),
                    "comment": item.comment,
                    "accepted_suggestions": item.accepted_suggestions,
                },
            )
            created += new
    return created
