"""The CapabilityStatement: exactly what ``/fhir`` supports, nothing more."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from cds.fhir.searchparams import (
    DATE_PARAMS,
    INCLUDES,
    REFERENCE_PARAMS,
    SORT_PARAMS,
    STRING_PARAMS,
    TOKEN_PARAMS,
    include_targets,
)

_PARAM_DOCS = {
    "_id": "Logical id",
    "identifier": "Business identifier (system|value)",
    "gender": "Administrative gender",
    "code": "Observation code (system|code)",
    "subject": "Subject reference",
    "patient": "Patient reference",
    "derived-from": "Observation this one was derived from",
    "birthdate": "Birth date (prefixes eq, gt, lt, ge, le, sa, eb)",
    "date": "Effective date (prefixes eq, gt, lt, ge, le, sa, eb)",
    "name": "Any part of a name (string: starts with, :exact, :contains)",
    "family": "Family name (string: starts with, :exact, :contains)",
    "given": "Given name (string: starts with, :exact, :contains)",
    "device-name": "Model name (string: starts with, :exact, :contains)",
    "status": "Status",
    "result": "Result Observation",
    "focus": "The report a review task is about",
    "target": "The resource a Provenance is about",
}


def _search_params(resource_type: str) -> list[dict[str, str]]:
    params = []
    kinds = (
        ("token", TOKEN_PARAMS),
        ("reference", REFERENCE_PARAMS),
        ("date", DATE_PARAMS),
        ("string", STRING_PARAMS),
    )
    for kind, table in kinds:
        for name in sorted(table.get(resource_type, set())):
            params.append({"name": name, "type": kind, "documentation": _PARAM_DOCS.get(name, name)})
    return params


def _resource(resource_type: str, profile_note: str, *, creatable: bool = True) -> dict[str, Any]:
    # Patient and Observation (an ECG: retraction only) take version-aware updates (If-Match, 412).
    codes = ("create", "read", "vread", "update", "search-type") if creatable else ("read", "vread", "search-type")
    return {
        "type": resource_type,
        "documentation": profile_note,
        "interaction": [{"code": code} for code in codes],
        "versioning": "versioned-update" if creatable else "versioned",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": creatable,
        "searchParam": _search_params(resource_type),
        "searchInclude": sorted(f"{source}:{param}" for source, param in INCLUDES if source == resource_type),
        "searchRevInclude": include_targets(resource_type),
    }


def capability_statement() -> dict[str, Any]:
    """Return the server's CapabilityStatement (FHIR 4.0.1, JSON only)."""
    sorts = ", ".join(f"{t}: {', '.join(sorted(s))}" for t, s in SORT_PARAMS.items())
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "software": {"name": "ecg-cds", "version": "0.1.0"},
        "implementation": {
            "description": "ECG clinical decision support FHIR facade",
            "url": f"{settings.PUBLIC_BASE_URL}/fhir",
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Searches are strict: an unsupported parameter, modifier or chain is a 400 OperationOutcome "
                    "naming it, unless the request says Prefer: handling=lenient (then it is ignored and named "
                    "in a search-mode outcome entry). Modifiers: :missing on every parameter; :not on tokens; "
                    ":text on code; :exact and :contains on strings; a target type on references "
                    "(subject:Patient). _summary (true, false, data, count), _elements (tagged SUBSETTED); "
                    "searches leave out SampledData.data (the waveform) unless _summary=false or _elements "
                    "names component. Pages: _count (0 = total only); sorted by _lastUpdated (the default), "
                    "pages are keyset pages (_cursor in the next/previous links), stable while data arrives; "
                    f"other sorts page with _offset. _sort supports {sorts}. Each API client "
                    "belongs to one organisation and reads, searches, matches and references only that "
                    "organisation's resources (another's are not found). Conditional create (If-None-Exist, "
                    "Bundle ifNoneExist) returns the match, so it needs read and search scope on the type "
                    "besides create: a create-only client gets 403."
                ),
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                },
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                },
                            ],
                            "text": "SMART Backend Services (OAuth2 client credentials)",
                        }
                    ],
                    "description": (
                        "SMART Backend Services: POST form grant_type=client_credentials with a private_key_jwt "
                        "client_assertion (RS384 or ES384, key registered as a JWKS) to "
                        f"{settings.PUBLIC_BASE_URL}/auth/token; send the token as Bearer. Scopes are SMART "
                        "system scopes per resource type and action (e.g. system/Observation.cr). Discovery: "
                        f"{settings.PUBLIC_BASE_URL}/fhir/.well-known/smart-configuration."
                    ),
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": f"{settings.PUBLIC_BASE_URL}/auth/token"}],
                        }
                    ],
                },
                "resource": [
                    _resource("Patient", "Demographics (gender, birthDate) used to derive age and sex at the ECG."),
                    _resource(
                        "Observation",
                        "Resting ECG: code LOINC 11524-6 (EKG study), LOINC 34534-8 (12 lead EKG panel) or MDC "
                        "131328 (MDC_ECG_ELEC_POTL), any one of them; one component per lead coded in MDC "
                        "(urn:iso:std:iso:11073:10101) with valueSampledData (µV or mV). The service also writes "
                        "read-only AI result Observations (code urn:ecg-cds:CodeSystem:ecg-ai|anomaly-score, "
                        "derivedFrom the ECG).",
                    ),
                    _resource(
                        "DocumentReference",
                        "An ECG document as content[0].attachment (inline data, never a url): contentType "
                        "application/dicom (DICOM 12-Lead or General ECG Waveform Storage, native transfer "
                        "syntax), or text/xml, application/xml or application/hl7-v3+xml holding HL7 aECG "
                        "(AnnotatedECG), GE MUSE (RestingECG) or Philips (restingecgdata) XML. The document is kept and an ECG Observation derivedFrom it is created and "
                        "analysed (search Observation?derived-from=DocumentReference/{id}); the document's sex "
                        "and birth date are used where the Patient lacks them.",
                    ),
                    _resource("DiagnosticReport", "Draft ECG report (preliminary until signed).", creatable=False),
                    _resource("Task", "Review task for a flagged ECG (code approve, focus = report).", creatable=False),
                    _resource("Device", "The AI models (name and version) behind each result.", creatable=False),
                    _resource("Provenance", "Which model produced which results from which ECG.", creatable=False),
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                # Bulk Data Access IG v2, system level only (GET kick-off; _type, _since, _outputFormat).
                "operation": [
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                        "documentation": (
                            "System-level $export of the caller's organisation, the types its token may read "
                            "(system/*.rs or per-type r); NDJSON files, requiresAccessToken true, each resource "
                            "whole as stored (ECG Observations with their waveform)."
                        ),
                    }
                ],
            }
        ],
    }
