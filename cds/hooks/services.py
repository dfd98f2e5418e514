"""Build CDS Hooks 2.0 cards (https://cds-hooks.hl7.org/2.0/) from stored predictions."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from cds.analysis.interpretation import (
    clinical_report_of,
    evidence_text,
    key_measurements_text,
    measurements_of,
    top_findings,
    verdict_words,
)
from cds.analysis.models import Prediction
from cds.core.models import Organization
from cds.fhir.audit import audit_api_access
from cds.hooks.feedback import OVERRIDE_REASONS, card_uuid, cards_issued_record
from cds.hooks.fhir_fallback import prefetched_or_fetched_patient
from cds.hooks.models import CdsClient, fhir_base_normalize
from cds.hooks.selectors import (
    interpretations_by_job,
    latest_detector_predictions,
    patients_for_hook,
    report_text_for,
    signed_review_for,
)
from cds.review.models import Review
from inference.clinical.types import ClinicalReport, EcgMeasurements

SERVICE_ID = "ecg-ai-findings"
SOURCE = {"label": "ecg-cds AI ECG analysis (decision support, preliminary)"}


def discovery() -> dict[str, Any]:
    """Return the CDS Hooks discovery document."""
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": SERVICE_ID,
                "title": "AI findings on resting ECGs",
                "description": (
                    "Shows the AI verdict, coded findings, key measurements and the draft report for the "
                    "patient's recently analysed ECGs, with a link to the clinician review page. Results are "
                    "computed on ingest, so the hook only reads them. Call it as CDS Hooks 2.0 specifies: "
                    "Authorization: Bearer <JWT signed by the CDS client, RS384 or ES384>, with the client's iss "
                    "and JWKS URL registered with this service. Without prefetch.patient, fhirServer and "
                    "fhirAuthorization are used to read the Patient."
                ),
                "prefetch": {"patient": "Patient/{{context.patientId}}"},
            }
        ]
    }


def _app_context(prediction: Prediction) -> str:
    """Name the review (or, before it exists, the ECG) the card's SMART link opens (``cds.smart``)."""
    review = Review.objects.filter(job_id=prediction.job_id).only("pk").first()
    return f"review/{review.pk}" if review is not None else f"ecg/{prediction.recording.logical_id}"


def _indicator(detector: Prediction, clinical: ClinicalReport | None) -> str:
    """Return critical for an urgent verdict, warning for another flagged one, info for normal."""
    if clinical is None:
        return "warning" if detector.flagged else "info"
    if clinical.flagged and clinical.urgency == "urgent":
        return "critical"
    return "warning" if clinical.flagged else "info"


def _summary(when: str, detector: Prediction, clinical: ClinicalReport | None) -> str:
    """Return ``ECG <date>: <verdict or top findings>`` in at most 140 characters."""
    if clinical is None:
        verdict = "AI flagged a possible anomaly" if detector.flagged else "no anomaly flagged by AI"
        return f"ECG {when}: {verdict}"[:140]
    prefix = f"ECG {when}: " + ("URGENT " if clinical.urgency == "urgent" and clinical.flagged else "")
    named = [f.text for f in top_findings(clinical) if f.abnormal or not clinical.flagged]
    text = prefix + ("; ".join(named) if named else verdict_words(clinical.verdict))
    return text if len(text) <= 140 else text[:139] + "…"


def _clinical_detail(clinical: ClinicalReport, measurements: EcgMeasurements | None) -> list[str]:
    lines = [f"**AI verdict**: {verdict_words(clinical.verdict)} ({clinical.urgency})."]
    if clinical.findings:
        findings = []
        for finding in clinical.findings:
            evidence = evidence_text(finding)
            urgent = " (urgent)" if finding.urgent else ""
            findings.append(f"- {finding.text}{urgent}" + (f": {evidence}" if evidence else ""))
        lines.append("**Findings**:\n" + "\n".join(findings))
    if measurements is not None:
        lines.append(f"**Measurements**: {key_measurements_text(measurements)}.")
    if clinical.text:
        lines.append(f"**Draft report**: {clinical.text}")
    return lines


def where_text(intervals: list[dict[str, Any]], limit: int = 4) -> str:
    """Return the localized boxes in words: one per box (its finding, leads and span), at most ``limit``.

    Rows of one box (``box``, issue 12) share a span over several leads; older rows have no box and
    are listed one lead at a time.
    """
    boxes: dict[Any, dict[str, Any]] = {}
    for row_number, row in enumerate(intervals):
        key = row.get("box") or f"row-{row_number}"
        box = boxes.setdefault(
            key, {"finding": row.get("finding", ""), "leads": [], "start": row["start_ms"], "end": row["end_ms"]}
        )
        box["leads"].append(row["lead"])
        box["start"], box["end"] = min(box["start"], row["start_ms"]), max(box["end"], row["end_ms"])
    words = []
    for box in list(boxes.values())[:limit]:
        what = f"{box['finding']} " if box["finding"] else ""
        words.append(f"{what}{'/'.join(box['leads'])} {box['start'] / 1000:.1f}–{box['end'] / 1000:.1f} s")
    return ", ".join(words)


def _card(detector: Prediction, interpretation: Prediction | None) -> dict[str, Any]:
    recording = detector.recording
    when = recording.effective_at.date().isoformat() if recording.effective_at else "undated"
    clinical = clinical_report_of(interpretation) if interpretation is not None else None
    score, threshold = detector.score or 0.0, detector.threshold or 0.0
    detail = []
    if clinical is not None and interpretation is not None:
        detail += _clinical_detail(clinical, measurements_of(interpretation))
    combined = clinical.combined if clinical is not None else None
    if combined:
        detail.append(
            f"**Combined evidence** {combined['probability']:.2f} (operating point {combined['threshold']:.2f}) "
            f"from the anomaly detector (score {score:.2f}), the foundation model and the measurements; "
            f"{combined['combiner_version']}."
        )
    else:
        detail.append(
            f"**Anomaly score** {score:.2f} (operating point {threshold:.2f}); model {detector.model_name} "
            f"{detector.model_version}."
        )
    intervals = where_text(detector.intervals)
    if intervals:
        detail.append(f"**Where**: {intervals}.")
    if clinical is None:
        report = report_text_for(detector)
        if report:
            detail.append(f"**Draft report**: {report}")
    signed = signed_review_for(detector)
    summary = _summary(when, detector, clinical)
    if signed is not None and signed.signed_revision is not None:
        # Once a clinician signed, the card leads with their text: the AI draft is background.
        text = signed.signed_revision.report_text
        verdict = {"accept": "AI call confirmed", "reject": "AI call rejected"}.get(signed.signed_revision.verdict, "")
        summary = f"ECG {when} (signed): {text}"
        summary = summary if len(summary) <= 140 else summary[:139] + "…"
        signed_on = signed.signed_at.date().isoformat() if signed.signed_at else ""
        amended = " An amendment awaits signature." if signed.status == signed.Status.AMENDED else ""
        detail.insert(0, f"**Clinician's signed report** ({signed_on}; {verdict}): {text}{amended}")
    else:
        detail.append("_Preliminary AI decision support: not a diagnosis until a clinician signs._")
    return {
        "uuid": str(card_uuid(SERVICE_ID, detector.pk)),
        "summary": summary,
        "indicator": _indicator(detector, clinical),
        "detail": "\n\n".join(detail),
        "source": SOURCE,
        # CDS Hooks 2.0 Link of type smart: the EHR launches it (iss + launch), appContext comes back
        # in the token response and names the review (docs/fhir.md, "SMART launch").
        "links": [
            {
                "label": "Open the ECG review",
                "url": f"{settings.PUBLIC_BASE_URL}/smart/launch",
                "type": "smart",
                "appContext": _app_context(detector),
            }
        ],
        "overrideReasons": OVERRIDE_REASONS,  # feedback (issue 15): why a clinician dismissed the card
    }


INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


def patient_view_cards(
    *,
    request: dict[str, Any],
    organization_id: int,
    client_id: str = "",
    fhir_servers: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Return the cards for a ``patient-view`` request from ``organization_id`` (critical, warning, info).

    ``fhir_servers``: for a registered CDS client, the FHIR bases its ``fhirServer`` fallback may
    read the Patient from when ``prefetch.patient`` is missing (412 when it cannot); None for our
    own access tokens (no fallback).
    """
    context = request.get("context") or {}
    patient = prefetched_or_fetched_patient(request=request, fhir_servers=fhir_servers)
    patients = patients_for_hook(
        patient_id=str(context.get("patientId", "")),
        prefetch_patient=patient,
        organization_id=organization_id,
    )
    audit_api_access(
        client_id=client_id,
        interaction="cds-hooks patient-view",
        what=f"patient-view {str(context.get('patientId', ''))[:64]}",
        resource_pks=[patient.resource_id for patient in patients],
    )
    detectors = latest_detector_predictions(patients=patients)
    interpretations = interpretations_by_job(detectors)
    cards_issued_record(service_id=SERVICE_ID, predictions=detectors, organization_id=organization_id)
    cards = [_card(p, interpretations.get(p.job_id)) for p in detectors]
    cards.sort(key=lambda card: INDICATOR_ORDER[card["indicator"]])  # stable: newest first within each
    return {"cards": cards}


def cds_client_register(
    *,
    name: str,
    iss: str,
    organization: Organization,
    jwks_url: str = "",
    jwks: dict[str, Any] | None = None,
    fhir_servers: list[str] | None = None,
) -> CdsClient:
    """Register an active CDS client (EHR) of ``organization`` that signs its hook calls with its key.

    Raises ``django.core.exceptions.ValidationError`` for a taken ``iss``, neither ``jwks_url`` nor
    ``jwks``, an unusable JWKS or a FHIR base that is not an http(s) URL.
    """
    client = CdsClient(
        name=name,
        iss=iss,
        organization=organization,
        jwks_url=jwks_url,
        jwks=jwks or {},
        fhir_servers=[fhir_base_normalize(url) for url in fhir_servers or []],
    )
    client.full_clean()
    client.save()
    return client
